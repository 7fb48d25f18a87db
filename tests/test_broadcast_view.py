"""What the broadcast pages show, without a server: the chart's geometry, progress in words,
who may press which button and why not, the form read into a draft."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, time, timedelta

import pytest
from broadcast_helpers import T0, Clock, coordinators, service, started

from bot.broadcasts import view as bv
from bot.broadcasts.service import ChannelStats, Stats
from bot.config import Config
from bot.store import BroadcastRow, BroadcastStatus, SqlStore, UserRow


@pytest.fixture
def store(any_store: SqlStore) -> SqlStore:
    coordinators(any_store)
    return any_store


def user(store: SqlStore, name: str) -> UserRow:
    found = store.find_user(name)
    assert found is not None
    return found


def when(at: datetime) -> str:
    return at.strftime("%H:%M")


def test_the_chart_puts_every_channel_on_one_scale() -> None:
    chart = bv.stats_chart(
        [ChannelStats("sms", sent=30, delivered=50, queued=20), ChannelStats("telegram", sent=50)]
    )
    sms, telegram = chart.bars
    assert [s.key for s in sms.segments] == ["delivered", "sent", "queued"]
    full = chart.right - chart.left
    assert sum(s.width for s in sms.segments) == pytest.approx(full)
    assert telegram.segments[0].width == pytest.approx(full / 2)
    assert sms.segments[1].x == pytest.approx(sms.segments[0].x + sms.segments[0].width)
    assert chart.label == "SMS: 50 delivered, 30 sent, 20 queued; Telegram: 50 sent"
    assert bv.stats_chart([]).label == "no messages"


def test_progress_says_what_the_status_alone_does_not(store: SqlStore, config: Config) -> None:
    svc = service(store, config, Clock())
    row = started(svc)
    stats = svc.stats(row.id)
    assert row.status is BroadcastStatus.SENT
    assert bv.progress_text(stats) == "Done: all 0 handed to the providers"
    queued = Stats(row, (ChannelStats("sms", queued=3, sent=1),))
    assert bv.progress_text(queued) == "Sending: 3 of 4 still queued"
    stopped = Stats(replace(row, status=BroadcastStatus.CANCELLED), (ChannelStats("sms", sent=1),))
    assert bv.progress_text(stopped) == "Stopped: nothing left in the queue"


def draft_row(store: SqlStore, config: Config) -> BroadcastRow:
    from bot.broadcasts.service import Draft

    svc = service(store, config, Clock())
    return svc.create(Draft("advice", {"en": "Stay safe."}), by="alice")


def test_the_creator_is_told_why_they_cannot_approve(store: SqlStore, config: Config) -> None:
    row = draft_row(store, config)
    empty = Stats(row, ())
    mine = bv.actions(empty, user(store, "alice"), T0, when)
    assert not mine.approve and "You created this broadcast" in mine.approve_why
    assert mine.cancel == "Cancel this broadcast" and not mine.kill
    theirs = bv.actions(empty, user(store, "bob"), T0, when)
    assert theirs.approve and not theirs.approve_why and not theirs.send
    assert not bv.actions(empty, user(store, "carol"), T0, when).may_act  # a clinician


def test_send_later_sending_and_the_kill_switch(store: SqlStore, config: Config) -> None:
    row = replace(
        draft_row(store, config), status=BroadcastStatus.APPROVED, send_at=T0 + timedelta(hours=2)
    )
    bob = user(store, "bob")
    later = bv.actions(Stats(row, ()), bob, T0, when)
    assert (
        later.send
        and later.send_early
        and later.send_why == "Scheduled for 18:00: it starts by itself then."
    )
    sending = bv.actions(Stats(replace(row, status=BroadcastStatus.SENDING), ()), bob, T0, when)
    assert sending.kill and sending.cancel == "Kill switch: stop sending" and not sending.correct
    done = Stats(replace(row, status=BroadcastStatus.SENT), (ChannelStats("sms", sent=2),))
    finished = bv.actions(done, bob, T0, when)
    assert finished.correct and not finished.cancel


def test_the_form_reads_local_times_and_recurrence() -> None:
    form = {
        "name": "Camp",
        "text_en": " Vaccination camp ",
        "sms_en": "",
        "when": "at",
        "send_at": "2024-05-02T09:30",
        "send_tz": "Asia/Kolkata",
        "channel_sms": "1",
        "regions": "Pune, ,Nashik",
        "whatsapp_template": "unknown",
    }
    options = {
        "languages": ["en"],
        "channels": ["whatsapp", "sms"],
        "conditions": ["diabetes"],
        "templates": ["advice"],
        "default_tz": "UTC",
    }
    draft = bv.draft_from_form(form, **options)  # type: ignore[arg-type]
    assert draft.texts == {"en": "Vaccination camp"} and draft.sms_texts == {}
    assert draft.send_at == datetime(2024, 5, 2, 4, 0, tzinfo=UTC)
    assert draft.audience.channels == ("sms",) and draft.audience.regions == ("pune", "nashik")
    assert draft.whatsapp_template is None
    every = {"when": "every", "every_days": "7", "every_time": "09:00", "every_until": "2024-12-31"}
    recurrence = bv.draft_from_form(every, **options).recurrence  # type: ignore[arg-type]
    assert recurrence is not None and (recurrence.every_days, recurrence.at) == (7, time(9))
    assert recurrence.timezone == "UTC" and recurrence.until is not None
    with pytest.raises(bv.FormError, match="repeat at"):
        bv.draft_from_form({**every, "every_time": "9 am"}, **options)  # type: ignore[arg-type]
