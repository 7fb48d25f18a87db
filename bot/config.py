"""Configuration: config.yaml (structure, no secrets) validated by pydantic, plus secrets from env.

Errors name the file and the dotted key. Imports bot.errors, bot.schedules (pure), pydantic,
PyYAML, limits (to check rate-limit strings), and bot.phones inside the one validator
that needs libphonenumber.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from bot.errors import ConfigError
from bot.schedules import CONDITION_FLOWS, parse_clock, parse_duration, zone

ROOT = Path(__file__).resolve().parent.parent
"""The project checkout: flows/, data/ and config.yaml live here."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class EmergencyConfig(_Model):
    number: str = "112"
    crisis_line: str = "14416"


class StorageConfig(_Model):
    url: str = "sqlite:///data/carebridge.db"


class FlowsConfig(_Model):
    dir: str = "flows"
    first: str = "consent"
    default: str = "menu"
    max_failures: int = Field(3, ge=1, le=10)


class NluConfig(_Model):
    backend: Literal["embedded", "rasa"] = "embedded"
    rasa_url: str | None = None
    rasa_timeout_s: float = 2.0
    confidence_threshold: float = Field(0.25, ge=0.0, le=1.0)


class ChannelSwitch(_Model):
    enabled: bool = True
    rate_per_s: float = Field(1.0, gt=0)


class ChannelsConfig(_Model):
    sms: ChannelSwitch = ChannelSwitch()
    whatsapp: ChannelSwitch = ChannelSwitch()
    telegram: ChannelSwitch = ChannelSwitch(rate_per_s=30.0)
    voice: ChannelSwitch = ChannelSwitch()  # outbound calls per second; answers are synchronous
    ussd: ChannelSwitch = ChannelSwitch()  # pull only: the rate is not used


class DeliveryConfig(_Model):
    """How the dispatcher leases, times out, orders and retries (docs/channels.md, Delivery)."""

    lease_s: float = Field(15.0, ge=2, le=600)
    send_timeout_s: float = Field(5.0, gt=0, le=300)
    order_hold_s: float = Field(20.0, ge=0, le=3600)
    emergency_headroom: float = Field(0.2, ge=0, lt=1)
    max_in_flight: int = Field(16, ge=1, le=500)
    admit_wait_s: float = Field(1.0, ge=0, le=10)
    retry_base_s: float = Field(2.0, gt=0, le=600)
    retry_cap_s: float = Field(300.0, gt=0, le=86_400)
    max_attempts: int = Field(12, ge=1, le=100)

    @model_validator(mode="after")
    def _timeout_within_lease(self) -> DeliveryConfig:
        if self.send_timeout_s * 2 > self.lease_s:
            raise ValueError("send_timeout_s must be at most half of lease_s")
        return self


class TwilioConfig(_Model):
    api_base_url: str | None = None
    sms_from: str | None = None
    whatsapp_from: str | None = None
    whatsapp_template_sid: str | None = None


class SpeechVoiceConfig(_Model):
    """How `<Say>` speaks one language and which language `<Gather>` listens for."""

    language: str  # BCP-47 as Twilio takes it: en-US, hi-IN, es-US
    voice: str | None = None  # e.g. Polly.Aditi; null: Twilio's default voice for the language


def _default_voices() -> dict[str, SpeechVoiceConfig]:
    return {
        "en": SpeechVoiceConfig(language="en-IN", voice="Polly.Raveena"),
        "hi": SpeechVoiceConfig(language="hi-IN", voice="Polly.Aditi"),
        "es": SpeechVoiceConfig(language="es-US", voice="Polly.Lupe"),
    }


class VoiceConfig(_Model):
    """Calls over Twilio Voice (docs/channels.md, Voice)."""

    from_number: str | None = None  # caller id of outbound check-in calls (a Twilio number)
    connect_number: str | None = None  # "press 1 to be connected" dials it; null: emergency

    speech: bool = True  # also listen for speech (`<Gather input="dtmf speech">`)
    gather_timeout_s: int = Field(6, ge=2, le=30)  # silence before the prompt is repeated
    silent_repeats: int = Field(2, ge=0, le=5)  # repeats after silence before hanging up
    voices: dict[str, SpeechVoiceConfig] = Field(default_factory=_default_voices)


class UssdConfig(_Model):
    """USSD through an aggregator (docs/channels.md, USSD). The secret is USSD_SHARED_SECRET."""

    max_chars: int = Field(182, ge=60, le=182)  # one screen, navigation lines included
    allowed_networks: list[str] = Field(default_factory=list)  # aggregator addresses (CIDR)

    @field_validator("allowed_networks")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        import ipaddress

        for net in value:
            try:
                ipaddress.ip_network(net, strict=False)
            except ValueError:
                raise ValueError(f"not an IP network like 203.0.113.0/24: {net!r}") from None
        return value


class TelegramConfig(_Model):
    api_base_url: str | None = None


class ServerConfig(_Model):
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    public_url: str = "http://127.0.0.1:8000"


class SimulatorConfig(_Model):
    """The browser simulator at `/` (a development tool; docs/channels.md)."""

    # null: on only when the server binds to loopback (`make run`); true: on anywhere
    # (a warning is logged when that is not loopback); false: off.
    enabled: bool | None = None
    rate_limit: str = "30/minute;300/hour"  # per client address, `limits` notation

    @field_validator("rate_limit")
    @classmethod
    def _limits(cls, value: str) -> str:
        from limits import parse_many

        try:
            parse_many(value)
        except ValueError:
            raise ValueError(f"not a rate limit like '30/minute;300/hour': {value!r}") from None
        return value


LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})


def is_loopback(host: str) -> bool:
    """True when a bind address only accepts connections from this machine."""
    return host in LOOPBACK_HOSTS or host.startswith("127.")


class OnCallConfig(_Model):
    """Where unclaimed tickets are announced (a link and the priority only, never health data)."""

    channel: Literal["telegram", "sms"] | None = None  # None: announce to nobody
    address: str | None = None  # a Telegram group chat id ("-100...") or an E.164 number


class DeadlinesConfig(_Model):
    """Minutes a ticket of each priority may wait unclaimed (0: announce at once)."""

    emergency: int = Field(0, ge=0)
    urgent: int = Field(60, ge=0)
    routine: int = Field(480, ge=0)


class EscalationConfig(_Model):
    deadlines_minutes: DeadlinesConfig = DeadlinesConfig()
    reannounce_minutes: int = Field(15, ge=1)  # repeat while a ticket stays unclaimed
    on_call: OnCallConfig = OnCallConfig()


class ConsoleConfig(_Model):
    session_hours: float = Field(12.0, gt=0, le=24 * 7)  # absolute lifetime of a log-in
    idle_minutes: float = Field(30.0, gt=0)  # a log-in unused this long ends
    poll_seconds: float = Field(5.0, ge=1, le=60)  # queue and transcript refresh
    timezone: str = "UTC"  # how times are shown, e.g. Asia/Kolkata
    # Failed log-ins allowed per moving window (the `limits` notation, tightest first), counted
    # per client address, per username from one address, and per username from anywhere (a
    # browser that logged in as that user before is exempt from the last). Over a limit, a
    # try gets the usual "wrong" answer without its password being checked. Nothing locks.
    login_limits_address: str = "10/minute;50/hour;200/day"
    login_limits_account: str = "5/minute;20/hour;100/day"
    login_limits_account_anywhere: str = "30/hour;100/day"
    login_answer_ms: int = Field(500, ge=0, le=10_000)  # a failed log-in never answers sooner
    login_hash_threads: int = Field(2, ge=1, le=16)  # password hashes at once (webhooks first)
    totp_issuer: str = "carebridge"  # the name authenticator apps show

    @field_validator(
        "login_limits_address", "login_limits_account", "login_limits_account_anywhere"
    )
    @classmethod
    def _limits(cls, value: str) -> str:
        from limits import parse_many

        try:
            parse_many(value)
        except ValueError:
            raise ValueError(
                f"{value!r} is not a list of limits such as '10/minute;50/hour'"
            ) from None
        return value

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"unknown time zone {value!r} (use an IANA name such as UTC)"
            ) from None
        return value


# --- checkins (issue 5): schedules, quiet hours, session lifecycle ----------------------------

Duration = Annotated[timedelta, BeforeValidator(parse_duration)]  # "15m", "2h", "1d" or seconds


class QuietHoursConfig(_Model):
    """Local hours (patient's time zone) in which reminders wait; they are deferred, not dropped."""

    start: str = "21:00"
    end: str = "08:00"
    # A follow-up due this soon after the patient's last message goes out even in quiet
    # hours (the 15-minute glucose re-check after a low must not wait for the morning).
    urgent_within: Duration = timedelta(minutes=60)

    @field_validator("start", "end")
    @classmethod
    def _clock(cls, value: str) -> str:
        parse_clock(value)
        return value


class CheckinsConfig(_Model):
    missed_escalation: int = Field(3, ge=1)  # missed check-ins in a row before a clinician is told
    missed_level: Literal["consultation", "consultation_24"] = "consultation"
    default_time: str = "09:00"  # check-in time when an enrollment does not say
    default_timezone: str = "UTC"  # for contacts who never said (IANA name)
    quiet_hours: QuietHoursConfig | None = QuietHoursConfig()  # null: no quiet hours
    cadence: dict[str, Literal["daily", "weekly"]] = Field(default_factory=dict)
    nudge_after: Duration = timedelta(hours=2)  # silence before the one nudge
    expire_after: Duration = timedelta(hours=10)  # after the nudge, the conversation expires
    busy_grace: Duration = timedelta(minutes=30)  # a check-in waits while the patient is talking
    misfire_grace: Duration = timedelta(hours=6)  # a check-in this late is skipped, not sent
    stuck_after: Duration = timedelta(minutes=10)  # a job claimed this long ago is run again
    sweep_every_s: float = Field(60.0, ge=1.0, le=3600.0)

    @field_validator("default_time")
    @classmethod
    def _clock(cls, value: str) -> str:
        parse_clock(value)
        return value

    @field_validator("default_timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        zone(value)
        return value

    @field_validator("cadence")
    @classmethod
    def _conditions(cls, value: dict[str, str]) -> dict[str, str]:
        unknown = sorted(set(value) - set(CONDITION_FLOWS))
        if unknown:
            raise ValueError(f"unknown condition(s) {unknown} (use {', '.join(CONDITION_FLOWS)})")
        return value


# --- broadcasts (issue 7): coordinator campaigns (docs/broadcasts.md) ---------------------


class BroadcastQuietHours(_Model):
    """Local hours (each recipient's time zone) in which broadcasts wait; urgent ones do not."""

    start: str = "21:00"
    end: str = "08:00"

    @field_validator("start", "end")
    @classmethod
    def _clock(cls, value: str) -> str:
        parse_clock(value)
        return value


BroadcastChannel = Literal["whatsapp", "telegram", "sms", "web"]


def _broadcast_channels() -> list[BroadcastChannel]:
    return ["whatsapp", "telegram", "sms"]


class BroadcastConfig(_Model):
    # Channels broadcasts use, in order of preference: a person reachable on several gets it
    # once, on the first of these (unless a coordinator marked another contact preferred).
    channels: list[BroadcastChannel] = Field(default_factory=_broadcast_channels, min_length=1)
    batch_size: int = Field(5000, ge=1, le=100_000)  # people enqueued per transaction
    cost_per_segment: dict[str, float] = Field(  # per SMS segment; per message elsewhere
        default_factory=lambda: {"sms": 0.0079, "whatsapp": 0.005, "telegram": 0.0}
    )
    currency: str = "USD"
    max_sms_segments: int = Field(3, ge=1, le=10)  # a longer SMS variant is refused
    quiet_hours: BroadcastQuietHours | None = BroadcastQuietHours()  # null: none
    # Approved WhatsApp templates: name -> {language: Content SID}. The template's one
    # variable {{1}} carries the broadcast's text; without one, WhatsApp is not used.
    whatsapp_templates: dict[str, dict[str, str]] = Field(default_factory=dict)

    @field_validator("channels")
    @classmethod
    def _unique(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError("list each channel once")
        return value

    @field_validator("cost_per_segment")
    @classmethod
    def _costs(cls, value: dict[str, float]) -> dict[str, float]:
        negative = sorted(k for k, v in value.items() if v < 0)
        if negative:
            raise ValueError(f"costs cannot be negative: {negative}")
        return value


class RetentionConfig(_Model):
    """How long message text is kept (docs/security.md); counts, levels and readings stay."""

    message_days: int = Field(90, ge=1, le=3650)  # inbox, transcripts and outbox text


class PhonesConfig(_Model):
    """How phone numbers are read (bot/phones.py): a number written without + and a country
    code ("09800000031") is a number of this region (ISO 3166 code, e.g. IN, KE, GB)."""

    default_region: str = "IN"

    @field_validator("default_region")
    @classmethod
    def _region(cls, value: str) -> str:
        from bot.phones import is_region  # phonenumbers: only when a config is validated

        if not is_region(value.upper()):
            raise ValueError(f"{value!r} is not a region code (use e.g. IN, KE, GB, US)")
        return value.upper()


# -- the API for other systems, outgoing events, /metrics and logs (issue 16; docs/api.md,
# docs/operations.md) ----------------------------------------------------------------------------

EVENT_TYPES: tuple[str, ...] = (
    "escalation.opened",
    "escalation.claimed",
    "escalation.resolved",
    "triage.decided",
    "reading.recorded",
    "contact.opted_out",
)
"""What a subscription may ask for (docs/api.md, Events); "*" means all of them."""


class EventSubscription(_Model):
    """One receiver of signed event webhooks."""

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,39}$")
    url: str = Field(pattern=r"^https?://")
    secret_env: str = Field(pattern=r"^[A-Z][A-Z0-9_]*$")  # the HMAC key, from the environment
    events: list[str] = Field(min_length=1)
    include_phone: bool = False  # add the contact's phone number / chat id to payloads

    @field_validator("events")
    @classmethod
    def _known(cls, value: list[str]) -> list[str]:
        bad = [e for e in value if e != "*" and e not in EVENT_TYPES]
        if bad:
            raise ValueError(f"unknown event {bad[0]!r}; use {', '.join(EVENT_TYPES)} or '*'")
        return value

    def wants(self, event: str) -> bool:
        return "*" in self.events or event in self.events


class EventsConfig(_Model):
    """Outgoing event webhooks, delivered through the outbox (channel `webhook`)."""

    rate_per_s: float = Field(20.0, gt=0)
    subscriptions: list[EventSubscription] = Field(default_factory=list)

    @field_validator("subscriptions")
    @classmethod
    def _unique(cls, value: list[EventSubscription]) -> list[EventSubscription]:
        names = [s.name for s in value]
        if len(set(names)) != len(names):
            raise ValueError("two subscriptions have the same name")
        return value


class ApiConfig(_Model):
    """The token-authenticated API under /api/v1."""

    enabled: bool = True
    page_size: int = Field(100, ge=1, le=1000)  # rows per page unless ?limit= asks for fewer
    max_page_size: int = Field(1000, ge=1, le=10_000)


class MetricsConfig(_Model):
    """GET /metrics (Prometheus text format)."""

    enabled: bool = True
    # open: anyone who can reach the server; loopback: requests from this machine, or with an
    # API token that has the metrics:read scope; token: only with such a token
    access: Literal["open", "loopback", "token"] = "loopback"


class LoggingConfig(_Model):
    json_lines: bool = Field(False, alias="json")  # one JSON object per log line


class Config(_Model):
    service_name: str = "carebridge"
    languages: list[str] = Field(default_factory=lambda: ["en"], min_length=1)
    emergency: EmergencyConfig = EmergencyConfig()
    storage: StorageConfig = StorageConfig()
    flows: FlowsConfig = FlowsConfig()
    nlu: NluConfig = NluConfig()
    channels: ChannelsConfig = ChannelsConfig()
    delivery: DeliveryConfig = DeliveryConfig()
    twilio: TwilioConfig = TwilioConfig()
    telegram: TelegramConfig = TelegramConfig()
    voice: VoiceConfig = VoiceConfig()
    ussd: UssdConfig = UssdConfig()
    server: ServerConfig = ServerConfig()
    escalation: EscalationConfig = EscalationConfig()
    console: ConsoleConfig = ConsoleConfig()
    checkins: CheckinsConfig = CheckinsConfig()
    broadcast: BroadcastConfig = BroadcastConfig()
    phones: PhonesConfig = PhonesConfig()
    retention: RetentionConfig = RetentionConfig()
    simulator: SimulatorConfig = SimulatorConfig()
    api: ApiConfig = ApiConfig()
    events: EventsConfig = EventsConfig()
    metrics: MetricsConfig = MetricsConfig()
    logging: LoggingConfig = LoggingConfig()

    def simulator_on(self) -> bool:
        """Whether the browser simulator runs: `simulator.enabled`, or when that is null, only
        when the server binds to loopback (`carebridge serve --host` sets server.host)."""
        if self.simulator.enabled is not None:
            return self.simulator.enabled
        return is_loopback(self.server.host)

    def path(self, relative: str) -> Path:
        """A path from the config, relative to the project root unless absolute."""
        p = Path(relative)
        return p if p.is_absolute() else ROOT / p

    def storage_url(self) -> str:
        """storage.url with a relative sqlite path anchored at the project root."""
        prefix = "sqlite:///"
        url = self.storage.url
        if url.startswith(prefix) and not url.startswith(prefix + "/"):
            return prefix + str(ROOT / url[len(prefix) :])
        return url


def load_config(path: Path | str | None = None, env: Mapping[str, str] | None = None) -> Config:
    """Read and validate a config file (CAREBRIDGE_CONFIG, else config.yaml at the root)."""
    env = os.environ if env is None else env
    chosen = Path(path or env.get("CAREBRIDGE_CONFIG") or ROOT / "config.yaml")
    try:
        raw = yaml.safe_load(chosen.read_text(encoding="utf-8")) or {}
    except FileNotFoundError:
        raise ConfigError(f"{chosen}: config file not found") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{chosen}: not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{chosen}: must be a mapping of settings")
    try:
        return Config.model_validate(raw)
    except ValidationError as exc:
        lines = [
            f"{chosen}: {'.'.join(str(p) for p in err['loc'])}: {err['msg']}"
            for err in exc.errors()
        ]
        raise ConfigError("\n".join(lines)) from None


def secret(name: str, env: Mapping[str, str] | None = None) -> str:
    """A secret from the environment; a clear error names the missing variable."""
    env = os.environ if env is None else env
    value = env.get(name)
    if not value:
        raise ConfigError(
            f"environment variable {name} is not set (secrets never go in config.yaml)"
        )
    return value
