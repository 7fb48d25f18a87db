"""Test drivers for the live channels: a phone calling the voice webhook as Twilio would
(signed form posts, TwiML parsed as XML) and a USSD aggregator session (Africa's Talking style).
"""

from __future__ import annotations

import secrets
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpx
from fakes import FakeServer
from fakes.twilio_server import signed_request
from starlette.applications import Starlette

from bot.app import CareBridge
from bot.config import Config
from bot.dispatch import Sender
from bot.web import create_app

PUBLIC = "https://carebridge.example"
TOKEN = "voice-test-token"
ACCOUNT = "AC" + "0" * 32
USSD_SECRET = "ussd-test-secret"
SERVICE = "+15550001111"


def live_config(base: Config, store_url: str, **voice: Any) -> Config:
    """The project config on the store at `store_url`, providers calling `PUBLIC`."""
    return base.model_copy(
        update={
            "storage": base.storage.model_copy(update={"url": store_url}),
            "server": base.server.model_copy(update={"public_url": PUBLIC}),
            "voice": base.voice.model_copy(update=voice),
        }
    )


ENV = {"TWILIO_ACCOUNT_SID": ACCOUNT, "TWILIO_AUTH_TOKEN": TOKEN, "USSD_SHARED_SECRET": USSD_SECRET}


class LiveServer(FakeServer):
    """`carebridge serve`'s app on a loopback socket (with its lifespan); providers' requests
    are signed for `PUBLIC`, the configured public URL, and posted here."""

    lifespan = "on"

    def __init__(
        self,
        config: Config,
        *,
        senders: dict[str, Sender] | None = None,
        dispatch: bool = False,
        env: dict[str, str] | None = None,
    ) -> None:
        super().__init__()
        self.bridge = CareBridge(config)
        self.config = config
        self.senders = senders if senders is not None else {}
        self.dispatch = dispatch
        self.env = env if env is not None else ENV
        self._clients: list[httpx.Client] = []

    def app(self) -> Starlette:
        return create_app(
            self.config,
            bridge=self.bridge,
            env=self.env,
            senders=self.senders,
            dispatch=self.dispatch,
            schedule=False,
        )

    def client(self) -> httpx.Client:
        """An HTTP client to the server, closed when the server stops."""
        client = httpx.Client(base_url=self.url, timeout=30)
        self._clients.append(client)
        return client

    def stop(self) -> None:
        for client in self._clients:
            client.close()
        super().stop()


@dataclass
class Twiml:
    """One TwiML answer, parsed."""

    root: ET.Element

    @classmethod
    def parse(cls, text: str) -> Twiml:
        root = ET.fromstring(text)
        assert root.tag == "Response", text
        return cls(root)

    @property
    def says(self) -> list[ET.Element]:
        return list(self.root.iter("Say"))

    @property
    def text(self) -> str:
        """Everything said, one line per `<Say>`."""
        return "\n".join((s.text or "") for s in self.says)

    @property
    def gather(self) -> ET.Element | None:
        return self.root.find("Gather")

    @property
    def redirect(self) -> str | None:
        found = self.root.find("Redirect")
        return found.text if found is not None else None

    @property
    def dial(self) -> str | None:
        found = self.root.find("Dial")
        return (found.text or "").strip() if found is not None else None

    @property
    def hangup(self) -> bool:
        return self.root.find("Hangup") is not None


@dataclass
class Caller:
    """One phone call to the voice webhook: every request signed as Twilio signs it."""

    client: httpx.Client
    number: str
    call_sid: str = field(default_factory=lambda: "CA" + secrets.token_hex(16))
    outbound: bool = False
    last: Twiml | None = None
    script: list[str] = field(default_factory=list)  # what was said and keyed, in order

    def status(self, url: str, status: str) -> Twiml:
        """The call's final status callback (completed, busy, no-answer, failed)."""
        self.script.append(f"(call {status})")
        return self._post(url, {"CallStatus": status})

    def _post(self, url: str, extra: dict[str, str]) -> Twiml:
        params = {
            "AccountSid": ACCOUNT,
            "ApiVersion": "2010-04-01",
            "CallSid": self.call_sid,
            "CallStatus": "in-progress",
            "Direction": "outbound-api" if self.outbound else "inbound",
            "From": SERVICE if self.outbound else self.number,
            "To": self.number if self.outbound else SERVICE,
            **extra,
        }
        req = signed_request(url, params, TOKEN)
        parts = urlsplit(url)
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        response = self.client.post(path, data=req.data, headers=req.headers)
        assert response.status_code == 200, response.text
        assert response.headers["content-type"].startswith("application/xml")
        self.last = Twiml.parse(response.text)
        self.script.append(f"BOT: {self.last.text}")
        return self.last

    def dial(self, url: str = PUBLIC + "/webhooks/twilio/voice") -> Twiml:
        """The call is answered: Twilio asks the webhook what to say."""
        return self._post(url, {})

    def press(self, digits: str) -> Twiml:
        """Key `digits` at the open `<Gather>` (Twilio drops the final #)."""
        assert self.last is not None
        gather = self.last.gather
        assert gather is not None, f"nothing is waiting for keys:\n{self.last.text}"
        self.script.append(f"KEYS: {digits}")
        return self._post(gather.attrib["action"], {"Digits": digits.rstrip("#")})

    def speak(self, words: str) -> Twiml:
        """Say `words` at the open `<Gather>` (speech recognition's result)."""
        assert self.last is not None and self.last.gather is not None
        assert "speech" in self.last.gather.attrib.get("input", "")
        self.script.append(f"SAYS: {words}")
        return self._post(
            self.last.gather.attrib["action"], {"SpeechResult": words, "Confidence": "0.9"}
        )

    def silence(self) -> Twiml:
        """Nothing keyed: Twilio follows the `<Redirect>` after the `<Gather>`."""
        assert self.last is not None and self.last.redirect
        self.script.append("(silence)")
        return self._post(self.last.redirect, {})


@dataclass
class UssdPhone:
    """One USSD session as an aggregator runs it: cumulative `text`, a new `sessionId` per dial."""

    client: httpx.Client
    number: str
    code: str = "*384*1234#"
    session_id: str = ""
    keyed: list[str] = field(default_factory=list)
    screen: str = ""
    open: bool = False

    def dial(self) -> str:
        self.session_id = "ATUid_" + secrets.token_hex(8)
        self.keyed = []
        return self._post()

    def key(self, keys: str) -> str:
        assert self.open, f"the session is closed:\n{self.screen}"
        self.keyed.append(keys)
        return self._post()

    def _post(self) -> str:
        form = {
            "sessionId": self.session_id,
            "serviceCode": self.code,
            "phoneNumber": self.number,
            "networkCode": "63902",
            "text": "*".join(self.keyed),
        }
        response = self.client.post(
            "/webhooks/ussd", data=form, headers={"X-Carebridge-Ussd-Secret": USSD_SECRET}
        )
        assert response.status_code == 200, response.text
        body = response.text
        assert body.startswith(("CON ", "END ")), body
        self.open = body.startswith("CON ")
        self.screen = body[4:]
        return self.screen
