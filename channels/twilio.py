"""Twilio SMS and WhatsApp: verify and parse inbound and status webhooks, send through the REST API.
Imports the `twilio` library, aiohttp, `bot.messages`, `bot.errors` and the rest of `channels`.

Addresses: `Inbound.address` and `Outbound.address` are E.164 numbers ("+15551234567") on both
SMS and WhatsApp; the `whatsapp:` prefix exists only on the wire and is added/removed here.
"""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Literal, NamedTuple
from urllib.parse import urlencode, urlsplit

import aiohttp
from twilio.base.exceptions import TwilioException  # type: ignore[import-untyped]
from twilio.http import AsyncHttpClient  # type: ignore[import-untyped]
from twilio.http.response import Response  # type: ignore[import-untyped]
from twilio.request_validator import RequestValidator  # type: ignore[import-untyped]
from twilio.rest import Client  # type: ignore[import-untyped]

from bot.errors import ChannelError, ConfigError, PermanentChannelError, TransientChannelError
from bot.messages import Inbound, Outbound
from channels.base import SignatureError
from channels.render import WHATSAPP_MAX_CHARS, render

log = logging.getLogger(__name__)

TwilioKind = Literal["sms", "whatsapp"]

OPT_OUT_CODES = frozenset({"21610"})  # recipient replied STOP: never send again
OUTSIDE_WINDOW = "63016"  # WhatsApp free text outside the 24-hour session window
_KNOWN_CODES = {
    "20003": "authentication failed: check TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN",
    "20429": "too many requests",
    "21211": "invalid 'To' number",
    "21408": "sending to this region is not enabled",
    "21610": "the recipient has unsubscribed (replied STOP)",
    "21614": "'To' is not a mobile number",
    "21617": "body too long (over 1600 characters)",
    OUTSIDE_WINDOW: "outside the WhatsApp 24-hour window: send the approved template",
}
_SMS_MAX_CHARS = 1600

# Every MessageStatus Twilio documents, and the outbox status it means for a reply we sent
# (docs/channels.md). None: nothing to record (statuses of inbound messages). Twilio only
# ever moves a message forward; the store never moves a row backwards either.
OUTBOX_STATUS_OF: dict[str, str | None] = {
    "accepted": "sent",  # taken by a Messaging Service: the provider has it
    "scheduled": "sent",
    "queued": "sent",
    "sending": "sent",
    "sent": "sent",
    "delivered": "delivered",
    "read": "delivered",  # WhatsApp read receipt: delivered, and more
    "partially_delivered": "undelivered",  # not all of it arrived: do not claim delivery
    "undelivered": "undelivered",
    "failed": "failed",
    "canceled": "failed",  # a scheduled message cancelled before sending: it never arrives
    "receiving": None,
    "received": None,
}


class DeliveryStatus(NamedTuple):
    """A parsed status callback; `status` is Twilio's MessageStatus, lowercase."""

    message_sid: str
    status: str  # queued | sending | sent | delivered | undelivered | failed | read | ...
    error_code: str | None

    @property
    def known(self) -> bool:
        """Whether `status` is one of the MessageStatus values Twilio documents."""
        return self.status in OUTBOX_STATUS_OF

    @property
    def outbox_status(self) -> str | None:
        """The outbox status this callback means (see OUTBOX_STATUS_OF); None: record nothing."""
        return OUTBOX_STATUS_OF.get(self.status)


class TwilioChannel:
    """Sends SMS or WhatsApp messages through Twilio's REST API (or a compatible gateway)."""

    def __init__(
        self,
        kind: TwilioKind,
        account_sid: str,
        auth_token: str,
        from_number: str,
        *,
        api_base_url: str | None = None,
        status_callback_url: str | None = None,
        whatsapp_template_sid: str | None = None,
        timeout: float = 10.0,
    ) -> None:
        if kind not in ("sms", "whatsapp"):
            raise ConfigError(f"twilio channel kind must be 'sms' or 'whatsapp', not {kind!r}")
        if not account_sid or not auth_token:
            raise ConfigError("set TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN in the environment")
        if not from_number:
            key = "twilio.sms_from" if kind == "sms" else "twilio.whatsapp_from"
            raise ConfigError(f"{key} is not set in the config file")
        self.name: str = kind
        self._from = _wire_address(kind, from_number)
        self._status_callback_url = status_callback_url
        self._template_sid = whatsapp_template_sid
        self._http = _AiohttpTwilioClient(api_base_url, timeout)
        self._client = Client(account_sid, auth_token, http_client=self._http)
        # twilio builds its REST tree lazily: the first send imports about 400 modules (0.2-0.3
        # s of CPU). Left there on purpose: at start-up it would delay /readyz by as much.

    async def start(self) -> None:
        """Nothing to open: the HTTP session opens on first use, in the sending loop."""

    async def stop(self) -> None:
        """Close the HTTP session and its connection pool."""
        await self._http.close()

    async def send(self, msg: Outbound) -> str:
        """Create one Message and return its SID (`SM...`); raise a `ChannelError` on failure."""
        params: dict[str, Any] = {"to": _wire_address(self.name, msg.address), "from_": self._from}
        if self._status_callback_url:
            params["status_callback"] = self._status_callback_url
        if self.name == "whatsapp" and msg.meta.get("template") == "1":
            params.update(self._template_params(msg))
        else:
            body = render(msg, self.name).text
            limit = WHATSAPP_MAX_CHARS if self.name == "whatsapp" else _SMS_MAX_CHARS
            if len(body) > limit:
                raise PermanentChannelError(
                    f"{self.name} body has {len(body)} characters, over Twilio's {limit}; "
                    "split it with channels.render.split_outbound",
                    code="21617",
                )
            params["body"] = body
        try:
            message = await self._client.messages.create_async(**params)
        except ChannelError as exc:
            log.warning("twilio %s send failed: %s", self.name, exc)
            raise
        except TwilioException as exc:  # not an HTTP error (those are mapped in the client)
            raise PermanentChannelError(f"twilio client error: {type(exc).__name__}") from exc
        sid = str(message.sid)
        log.debug("twilio %s sent %s", self.name, sid)
        return sid

    def _template_params(self, msg: Outbound) -> dict[str, str]:
        """ContentSid + ContentVariables for a send outside the 24-hour window; a broadcast
        names its own approved template in `meta["template_sid"]`."""
        sid = msg.meta.get("template_sid") or self._template_sid
        if not sid:
            raise PermanentChannelError(
                "a WhatsApp template send needs twilio.whatsapp_template_sid in the config file",
                code=OUTSIDE_WINDOW,
            )
        variables = msg.meta.get("template_variables")
        if variables is None:  # template variables may not hold newlines or tabs
            variables = json.dumps({"1": " ".join(msg.text.split())}, ensure_ascii=False)
        return {"content_sid": sid, "content_variables": variables}


class _AiohttpTwilioClient(AsyncHttpClient):  # type: ignore[misc]
    """Twilio's async HTTP seam over one aiohttp session per channel (the HTTP library
    twilio's own `AsyncTwilioHttpClient` uses, measured at about a quarter of httpx's CPU
    per send: docs/channels.md).

    Points requests at `api_base_url` when set (Twilio's documented way to reach a proxy or a
    mock) and turns HTTP and transport failures into carebridge's channel errors. Logs nothing:
    twilio's own request and response logging (URLs and headers at INFO) is bypassed. The
    session is opened on first use, inside the event loop that sends.
    """

    def __init__(self, api_base_url: str | None, timeout: float) -> None:
        super().__init__(logger=log, is_async=True, timeout=timeout)
        self._base = api_base_url.rstrip("/") if api_base_url else None
        self._session: aiohttp.ClientSession | None = None
        self._timeouts: dict[float, aiohttp.ClientTimeout] = {}
        self._auth_headers: dict[tuple[str, str], str] = {}  # (sid, secret) -> "Basic ..."

    async def request(
        self,
        method: str,
        uri: str,
        params: dict[str, object] | None = None,
        data: dict[str, object] | None = None,
        headers: dict[str, str] | None = None,
        auth: tuple[str, str] | None = None,
        timeout: float | None = None,
        allow_redirects: bool = False,
    ) -> Response:
        seconds = timeout or self.timeout
        if self._session is None:
            self._session = aiohttp.ClientSession(skip_auto_headers=("User-Agent",))
        limit = self._timeouts.get(seconds)
        if limit is None:
            limit = self._timeouts[seconds] = aiohttp.ClientTimeout(total=seconds)
        headers = dict(headers or {})
        if auth:
            headers["Authorization"] = self._basic(auth)
        body: bytes | None = None
        if data:  # encoded here: aiohttp's FormData draws a random multipart boundary per
            # request, and os.urandom cost 0.6 ms per call on the benchmark machine
            body = urlencode(data, doseq=True).encode()
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        try:
            async with self._session.request(
                method,
                self._rewrite(uri),
                params=params,  # type: ignore[arg-type]
                data=body,
                headers=headers,
                timeout=limit,
                allow_redirects=allow_redirects,
            ) as response:
                status, text = response.status, await response.text()
                answer_headers = response.headers
        except TimeoutError as exc:
            raise TransientChannelError(
                f"Twilio did not answer within {seconds} s", code="timeout"
            ) from exc
        except aiohttp.ClientError as exc:
            raise TransientChannelError(
                f"cannot reach Twilio: {type(exc).__name__}", code="network"
            ) from exc
        if status >= 400:
            raise _error_for(status, text, answer_headers)
        return Response(status, text, answer_headers)

    def _basic(self, auth: tuple[str, str]) -> str:
        value = self._auth_headers.get(auth)
        if value is None:
            token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode("ascii")
            value = self._auth_headers[auth] = f"Basic {token}"
        return value

    def _rewrite(self, uri: str) -> str:
        if self._base is None:
            return uri
        parts = urlsplit(uri)
        if not (parts.hostname or "").endswith("twilio.com"):
            return uri
        query = f"?{parts.query}" if parts.query else ""
        return f"{self._base}{parts.path}{query}"

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


def _error_for(status: int, text: str, headers: Mapping[str, str]) -> ChannelError:
    """Map a Twilio error response (legacy or RFC 9457 JSON) to a channel error.

    The message names the HTTP status and Twilio's code, never the provider's text, which can
    quote the phone number.
    """
    try:
        payload = json.loads(text)
        code = str(payload.get("code") or status)
    except (ValueError, AttributeError):
        code = str(status)
    what = _KNOWN_CODES.get(code, f"see https://www.twilio.com/docs/errors/{code}")
    message = f"Twilio answered HTTP {status}, error {code}: {what}"
    if status == 429:
        retry_after = _parse_retry_after(headers.get("Retry-After"))
        return TransientChannelError(message, code=code, retry_after=retry_after)
    if status >= 500:
        return TransientChannelError(message, code=code)
    return PermanentChannelError(message, code=code, opt_out=code in OPT_OUT_CODES)


def _parse_retry_after(value: str | None) -> float | None:
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None  # an HTTP date: rare from Twilio; let the dispatcher's backoff decide


def _wire_address(kind: str, address: str) -> str:
    number = strip_whatsapp_prefix(address.strip())
    return f"whatsapp:{number}" if kind == "whatsapp" else number


def strip_whatsapp_prefix(address: str) -> str:
    """`whatsapp:+15551234567` -> `+15551234567`; other addresses unchanged."""
    return address.removeprefix("whatsapp:")


def verify_twilio_signature(
    form: Mapping[str, str], signature: str | None, url: str, auth_token: str
) -> None:
    """Raise `SignatureError` unless `signature` signs `url` + `form` with `auth_token`.

    `url` is the public URL Twilio was configured to call (`server.public_url` + path, with
    any query string), not the URL a proxy shows the app.
    """
    if not auth_token:
        raise ConfigError("TWILIO_AUTH_TOKEN is not set in the environment")
    if not signature:
        raise SignatureError("missing X-Twilio-Signature header", code="signature_missing")
    if not RequestValidator(auth_token).validate(url, dict(form), signature):
        raise SignatureError("X-Twilio-Signature does not match", code="signature_invalid")


def parse_twilio_webhook(
    form: Mapping[str, str],
    signature: str | None,
    url: str,
    auth_token: str,
    kind: TwilioKind,
    *,
    now: datetime | None = None,
) -> Inbound:
    """Verify and parse an incoming SMS or WhatsApp message webhook.

    `provider_id` is `MessageSid`; `address` is `From` without `whatsapp:`; a media-only
    message has `text == ""`.
    """
    verify_twilio_signature(form, signature, url, auth_token)
    sid, sender = form.get("MessageSid") or form.get("SmsSid"), form.get("From")
    if not sid or not sender:
        raise ChannelError("Twilio webhook lacks MessageSid or From", code="malformed")
    return Inbound(
        channel=kind,
        address=strip_whatsapp_prefix(sender),
        text=(form.get("Body") or "").strip(),
        received_at=now or datetime.now(UTC),
        provider_id=sid,
    )


def parse_twilio_status(
    form: Mapping[str, str], signature: str | None, url: str, auth_token: str
) -> DeliveryStatus:
    """Verify and parse a status callback: (MessageSid, MessageStatus, ErrorCode or None)."""
    verify_twilio_signature(form, signature, url, auth_token)
    sid = form.get("MessageSid") or form.get("SmsSid")
    status = form.get("MessageStatus") or form.get("SmsStatus")
    if not sid or not status:
        raise ChannelError(
            "Twilio status callback lacks MessageSid or MessageStatus", code="malformed"
        )
    return DeliveryStatus(sid, status.lower(), form.get("ErrorCode") or None)
