"""Shared by the check-in tests: a clock moved by hand, a patient who texts, and a scheduler
that ticks every few minutes of simulated time."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from itertools import count
from zoneinfo import ZoneInfo

from bot.app import CareBridge
from bot.messages import Inbound
from bot.scheduler import Sweeper, SweepReport
from bot.store import OutboxRow

KOLKATA = ZoneInfo("Asia/Kolkata")
TICK = timedelta(minutes=5)


class Clock:
    """Reads the same instant until the test moves it (never backwards)."""

    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def set(self, when: datetime) -> None:
        assert when >= self.now, (when, self.now)
        self.now = when

    def advance(self, delta: timedelta) -> None:
        self.now += delta


def ist(day: int, hour: int, minute: int = 0, month: int = 4) -> datetime:
    """A wall-clock time in Kolkata (2020), as UTC."""
    return datetime(2020, month, day, hour, minute, tzinfo=KOLKATA).astimezone(UTC)


def local_hm(when: datetime, tz: ZoneInfo = KOLKATA) -> str:
    """ "MM-DD HH:MM" in the patient's zone, for readable assertions."""
    return when.astimezone(tz).strftime("%m-%d %H:%M")


_ids = count()


class Patient:
    """Someone texting the bot on one channel; each message is a few seconds after the last."""

    def __init__(
        self, app: CareBridge, address: str = "+919800000001", channel: str = "sms"
    ) -> None:
        self.app = app
        self.address = address
        self.channel = channel

    def say(self, text: str, *, after: timedelta = timedelta(seconds=10)) -> str:
        """Send `text`; the bot's replies, joined."""
        clock = self.app.clock
        assert isinstance(clock, Clock)
        clock.advance(after)
        pid = f"SM{next(_ids)}"
        handled = self.app.handle(Inbound(self.channel, self.address, text, clock(), pid))
        return "\n---\n".join(m.text for m in handled.replies)

    @property
    def contact_id(self) -> int:
        contact = self.app.store.find_contact(self.channel, self.address)
        assert contact is not None
        return contact.id


def tick_until(
    app: CareBridge, until: datetime, *, sweepers: tuple[Sweeper, ...] = ()
) -> Iterator[SweepReport]:
    """Move the clock to each 5-minute mark up to `until` and sweep there (with every sweeper
    given: several schedulers at once); yields the reports."""
    clock = app.clock
    assert isinstance(clock, Clock)
    runners = sweepers or (Sweeper(app, strict=True),)
    start = clock.now  # the first mark is the next 5-minute boundary after it
    mark = start.replace(minute=0, second=0, microsecond=0)
    mark += timedelta(minutes=(start.minute // 5 + 1) * 5)
    while mark <= until:
        clock.set(mark)
        for runner in runners:
            yield runner.sweep(mark)
        mark += TICK
    clock.set(max(clock.now, until))


def run_until(app: CareBridge, until: datetime, **kw: tuple[Sweeper, ...]) -> list[SweepReport]:
    """`tick_until`, all at once."""
    return list(tick_until(app, until, **kw))


def reminders(app: CareBridge, contact_id: int) -> list[OutboxRow]:
    """What the bot sent on its own initiative (check-ins, follow-ups, nudges), oldest first."""
    return [r for r in app.store.outbox(contact_id=contact_id) if r.outbound.kind == "reminder"]
