"""A fake Twilio REST API (Messages) on loopback, plus helpers to build signed Twilio webhooks.
Imports starlette, twilio's RequestValidator and the fakes package.

Failure kinds for `fail_next`/`outage`/`fail_when`: "21610" (unsubscribed), "63016" (outside
the WhatsApp window), "21211" (bad number), "429" (with `retry_after=` seconds), "500",
"timeout" (hang). `refuse()`/`resume()` (from FakeServer) close and reopen the port. Every
accepted message records its arrival time (`_at`, time.time()) for latency measurements.
"""

from __future__ import annotations

import base64
import binascii
import itertools
import secrets
import time
from collections.abc import Callable
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any

from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from twilio.request_validator import RequestValidator  # type: ignore[import-untyped]

from . import FakeServer, SignedRequest, _Failure

_ERRORS: dict[str, tuple[int, int, str]] = {  # kind -> (HTTP status, Twilio code, message)
    "21610": (400, 21610, "Attempt to send to unsubscribed recipient"),
    "63016": (400, 63016, "Failed to send freeform message outside the allowed window"),
    "21211": (400, 21211, "The 'To' number is not a valid phone number."),
    "429": (429, 20429, "Too Many Requests"),
    "500": (500, 20500, "An internal server error has occurred"),
}


def new_sid(prefix: str = "SM") -> str:
    """A Twilio-shaped SID: two letters and 32 hex digits."""
    return prefix + secrets.token_hex(16)


class FakeTwilio(FakeServer):
    """`POST /2010-04-01/Accounts/{sid}/Messages.json` and `GET .../Messages/{sid}.json`."""

    def __init__(self, account_sid: str = "AC" + "0" * 32, auth_token: str = "test-token") -> None:
        super().__init__()
        self.account_sid = account_sid
        self.auth_token = auth_token
        self.messages: list[dict[str, Any]] = []  # accepted messages, Twilio JSON shape
        self.calls: list[dict[str, Any]] = []  # placed calls (Calls.json), Twilio JSON shape
        self._seq = itertools.count(1)
        self._rules: list[tuple[Callable[[dict[str, str]], bool], str]] = []

    def fail_when(self, matches: Callable[[dict[str, str]], bool], kind: str = "500") -> None:
        """Fail, for as long as the fake runs, every message whose form fields (To, Body, ...)
        `matches`: a reply that keeps failing."""
        with self.lock:
            self._rules.append((matches, kind))

    def app(self) -> Starlette:
        base = "/2010-04-01/Accounts/{account}/Messages"
        return Starlette(
            routes=[
                Route(base + ".json", self._create, methods=["POST"]),
                Route(base + "/{sid}.json", self._fetch, methods=["GET"]),
                Route(
                    "/2010-04-01/Accounts/{account}/Calls.json", self._create_call, methods=["POST"]
                ),
            ]
        )

    @property
    def api_base_url(self) -> str:
        """What `twilio.api_base_url` should be set to."""
        return self.url

    def message(self, sid: str) -> dict[str, Any]:
        """The accepted message with this SID."""
        with self.lock:
            return next(m for m in self.messages if m["sid"] == sid)

    def _authorized(self, request: Request) -> bool:
        scheme, _, encoded = request.headers.get("authorization", "").partition(" ")
        try:
            user, _, password = base64.b64decode(encoded).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return False
        return (
            scheme.lower() == "basic"
            and user == self.account_sid == request.path_params["account"]
            and password == self.auth_token
        )

    async def _create(self, request: Request) -> Response:
        if not self._authorized(request):
            await self._record(request, "401")
            return _error(401, 20003, "Authenticate")
        failure = self._take_failure("Messages.json")
        if failure is None and self._rules:
            try:
                async with request.form() as form:
                    sent = {k: v for k, v in form.items() if isinstance(v, str)}
            except ClientDisconnect:
                return _error(400, 20001, "client disconnected")
            with self.lock:
                kinds = [kind for matches, kind in self._rules if matches(sent)]
            failure = _Failure(kinds[0], None) if kinds else None
        recorded = await self._record(request, failure.kind if failure else "ok")
        if recorded.outcome == "disconnected":
            return _error(400, 20001, "client disconnected")
        if failure is not None:
            if failure.kind == "timeout":
                await self._hang()
                return _error(504, 20504, "Gateway timeout")
            status, code, text = _ERRORS[failure.kind]
            headers = {}
            if "retry_after" in failure.options:
                headers["Retry-After"] = str(failure.options["retry_after"])
            return _error(status, code, text, headers)
        async with request.form() as form:
            fields = {k: v for k, v in form.items() if isinstance(v, str)}
        if not fields.get("To") or not (fields.get("Body") or fields.get("ContentSid")):
            return _error(400, 21602, "Message body is required.")
        now = format_datetime(datetime.now(UTC), usegmt=True)
        sid = new_sid()
        message = {
            "sid": sid,
            "account_sid": self.account_sid,
            "api_version": "2010-04-01",
            "body": fields.get("Body", ""),
            "date_created": now,
            "date_updated": now,
            "date_sent": None,
            "direction": "outbound-api",
            "error_code": None,
            "error_message": None,
            "from": fields.get("From"),
            "messaging_service_sid": None,
            "num_media": "0",
            "num_segments": "1",
            "price": None,
            "price_unit": "USD",
            "status": "queued",
            "subresource_uris": {
                "media": f"/2010-04-01/Accounts/{self.account_sid}/Messages/{sid}/Media.json"
            },
            "to": fields["To"],
            "uri": f"/2010-04-01/Accounts/{self.account_sid}/Messages/{sid}.json",
            # not in Twilio's response; kept for assertions
            "_form": fields,
            "_seq": next(self._seq),
            "_at": time.time(),
        }
        with self.lock:
            self.messages.append(message)
        return JSONResponse(_public(message), status_code=201)

    async def _fetch(self, request: Request) -> Response:
        if not self._authorized(request):
            return _error(401, 20003, "Authenticate")
        try:
            return JSONResponse(_public(self.message(request.path_params["sid"])))
        except StopIteration:
            return _error(404, 20404, "The requested resource was not found")

    async def _create_call(self, request: Request) -> Response:
        """`POST .../Calls.json`: an outbound call (To, From, Url); failures as for messages."""
        if not self._authorized(request):
            await self._record(request, "401")
            return _error(401, 20003, "Authenticate")
        failure = self._take_failure("Calls.json")
        await self._record(request, failure.kind if failure else "ok")
        if failure is not None:
            if failure.kind == "timeout":
                await self._hang()
                return _error(504, 20504, "Gateway timeout")
            status, code, text = _ERRORS[failure.kind]
            return _error(status, code, text)
        async with request.form() as form:
            fields = {k: v for k, v in form.items() if isinstance(v, str)}
        if not fields.get("To") or not fields.get("From"):
            return _error(400, 21201, "No 'To' number is specified")
        if not (fields.get("Url") or fields.get("Twiml")):
            return _error(400, 21205, "Url parameter is required.")
        now = format_datetime(datetime.now(UTC), usegmt=True)
        sid = new_sid("CA")
        call = {
            "sid": sid,
            "account_sid": self.account_sid,
            "api_version": "2010-04-01",
            "date_created": now,
            "date_updated": now,
            "direction": "outbound-api",
            "from": fields["From"],
            "to": fields["To"],
            "status": "queued",
            "uri": f"/2010-04-01/Accounts/{self.account_sid}/Calls/{sid}.json",
            "_form": fields,
            "_at": time.time(),
        }
        with self.lock:
            self.calls.append(call)
        return JSONResponse(_public(call), status_code=201)

    def status_callback(
        self, sid: str, status: str, *, error_code: str | None = None, url: str | None = None
    ) -> SignedRequest:
        """The signed status callback Twilio would POST for message `sid`.

        Sent to the message's StatusCallback unless `url` is given.
        """
        message = self.message(sid)
        target = url or message["_form"].get("StatusCallback")
        if not target:
            raise ValueError(f"message {sid} had no StatusCallback and no url was given")
        params = {
            "AccountSid": self.account_sid,
            "ApiVersion": "2010-04-01",
            "From": message["from"] or "",
            "MessageSid": sid,
            "MessageStatus": status,
            "SmsSid": sid,
            "SmsStatus": status,
            "To": message["to"],
        }
        if error_code:
            params["ErrorCode"] = error_code
        return signed_request(target, params, self.auth_token)


def _public(message: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in message.items() if not k.startswith("_")}


def _error(
    status: int, code: int, message: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    body = {
        "code": code,
        "message": message,
        "more_info": f"https://www.twilio.com/docs/errors/{code}",
        "status": status,
    }
    return JSONResponse(body, status_code=status, headers=headers)


def signed_request(url: str, params: dict[str, str], auth_token: str) -> SignedRequest:
    """A form POST to `url` signed as Twilio signs webhooks (X-Twilio-Signature)."""
    signature = RequestValidator(auth_token).compute_signature(url, params)
    return SignedRequest(url, dict(params), {"X-Twilio-Signature": signature})


def inbound_params(
    sender: str,
    body: str,
    *,
    to: str = "+15550001111",
    kind: str = "sms",
    message_sid: str | None = None,
    account_sid: str = "AC" + "0" * 32,
) -> dict[str, str]:
    """The form fields of an incoming SMS or WhatsApp message webhook."""
    prefix = "whatsapp:" if kind == "whatsapp" else ""
    sid = message_sid or new_sid()
    return {
        "AccountSid": account_sid,
        "ApiVersion": "2010-04-01",
        "Body": body,
        "From": prefix + sender,
        "MessageSid": sid,
        "NumMedia": "0",
        "NumSegments": "1",
        "SmsMessageSid": sid,
        "SmsSid": sid,
        "SmsStatus": "received",
        "To": prefix + to,
    }
