"""Coordinator broadcasts end to end on a real SQLite file: two-person approval, opt-out and
consent, quiet hours in each recipient's time zone, the kill switch mid-send, corrections, one
message per person across channels, preview, validation and recurrence."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta

import pytest
from broadcast_helpers import (
    T0,
    TEXT,
    Clock,
    approved,
    channels,
    configured,
    coordinators,
    dispatch,
    recipients,
    rows_of,
    service,
    started,
    subscriber,
)

from bot.app import build_broadcasts
from bot.broadcasts.service import BroadcastError, Broadcasts, Draft, Recurrence
from bot.config import Config
from bot.errors import StoreError
from bot.messages import Outbound
from bot.store import Audience, BroadcastStatus, OutboxStatus, SqlStore
from channels.base import CollectingChannel


@pytest.fixture
def store(any_store: SqlStore) -> SqlStore:
    """Once per engine (tests/pg.py): SQLite and PostgreSQL."""
    coordinators(any_store)
    return any_store


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def svc(store: SqlStore, config: Config, clock: Clock) -> Broadcasts:
    return service(store, config, clock)


def sent_to(senders: dict[str, CollectingChannel]) -> set[int | None]:
    return {m.contact_id for s in senders.values() for m in s.sent}


# -- approval ---------------------------------------------------------------------------------


def test_a_broadcast_needs_a_second_person_to_approve_it(store: SqlStore, svc: Broadcasts) -> None:
    subscriber(store, "sms", "+15550000001")
    row = svc.create(Draft("curfew", {"en": "Curfew from 8 pm tonight."}), by="alice")
    assert (row.status, row.created_by_name) == (BroadcastStatus.DRAFT, "alice")
    with pytest.raises(BroadcastError, match="needs a second person"):
        svc.approve(row.id, by="alice")
    with pytest.raises(BroadcastError, match="carol is a clinician"):
        svc.approve(row.id, by="carol")
    with pytest.raises(BroadcastError, match="not approved yet"):
        svc.send(row.id, by="alice")
    assert rows_of(store, row.id) == []

    ok = svc.approve(row.id, by="BOB")
    assert (ok.status, ok.approved_by_name) == (BroadcastStatus.APPROVED, "bob")
    with pytest.raises(BroadcastError, match="only a draft"):
        svc.approve(row.id, by="bob")
    assert [a.action for a in store.audit_log()][:2] == ["broadcast_approve", "broadcast_create"]

    # The schema refuses it too, whoever writes the row.
    other = svc.create(Draft("again", {"en": "Masks on buses."}), by="alice")
    alice = store.find_user("alice")
    assert alice is not None
    with pytest.raises(StoreError, match="approved by its creator"):
        store.approve_broadcast(other.id, alice.id, "alice", T0)


def test_only_known_coordinators_create_broadcasts(svc: Broadcasts) -> None:
    with pytest.raises(BroadcastError, match="no console user 'mallory'"):
        svc.create(Draft("x", {"en": "x"}), by="mallory")
    with pytest.raises(BroadcastError, match="only coordinators and admins"):
        svc.create(Draft("x", {"en": "x"}), by="carol")


def test_create_refuses_what_cannot_be_sent_and_says_how_to_fix_it(
    store: SqlStore, svc: Broadcasts, config: Config
) -> None:
    configured_languages = ", ".join(config.languages)  # en, hi, es in config.yaml
    draft = Draft(
        " ",
        {"fr": "Bonjour", "en": "x" * 600},
        audience=Audience(channels=("fax",), conditions=("flu",)),
        whatsapp_template="nope",
    )
    with pytest.raises(BroadcastError) as err:
        svc.create(draft, by="alice")
    for expected in (
        "name: give the broadcast a name",
        f"text.fr: fr is not in languages ({configured_languages})",
        "sms.en: 4 SMS segments, over broadcast.max_sms_segments (3)",
        "whatsapp template 'nope': not in broadcast.whatsapp_templates",
        "audience.channels: unknown ['fax']",
        "audience.conditions: unknown ['flu']",
    ):
        assert expected in str(err.value)
    # Every configured language is accepted, but a text in the first (the default) is required.
    default, *others = config.languages
    assert others, "config.yaml configures more than one language"
    only_others = Draft("advice", dict.fromkeys(others, "Free testing at the town hall."))
    with pytest.raises(BroadcastError) as err:
        svc.create(only_others, by="alice")
    assert str(err.value) == f"text: a text in {default} (languages[0] in the config) is required"
    every = Draft("advice", dict.fromkeys(config.languages, "Free testing at the town hall."))
    row = svc.create(every, by="alice")
    assert {t.language for t in store.broadcast_texts(row.id)} == set(config.languages)


# -- who receives it ----------------------------------------------------------------------------


def test_opted_out_and_unconsented_contacts_never_receive_it(
    store: SqlStore, svc: Broadcasts, clock: Clock
) -> None:
    yes = subscriber(store, "sms", "+15550000001")
    stopped = subscriber(store, "sms", "+15550000002")
    store.update_contact(stopped, opted_out=True, now=T0)
    subscriber(store, "sms", "+15550000003", consent=None)  # never asked
    withdrew = subscriber(store, "sms", "+15550000004")
    store.update_contact(withdrew, consent_broadcast=False, now=T0)
    late = subscriber(store, "telegram", "5551")

    row = started(svc)
    assert recipients(store, row.id) == {yes, late}
    store.update_contact(late, opted_out=True, now=T0)  # STOP after the fan-out, before the send
    senders = channels()
    dispatch(store, clock, senders)

    assert sent_to(senders) == {yes}
    stats = svc.stats(row.id)
    assert (stats.total.sent, stats.total.opted_out, stats.total.queued) == (1, 1, 0)
    preview = svc.preview(row.id)
    assert (preview.opted_out, preview.no_consent) == (2, 2)


def test_one_person_on_two_channels_gets_it_once_on_the_preferred_channel(
    store: SqlStore, svc: Broadcasts
) -> None:
    sms = subscriber(store, "sms", "+15550300001")
    whatsapp = subscriber(store, "whatsapp", "+15550300001")  # the same number: one person
    telegram = subscriber(store, "telegram", "4242")
    other = subscriber(store, "sms", "+15550300002")
    assert svc.link(telegram, sms) == sms
    people = {i: store.contact_row(i) for i in (sms, whatsapp, telegram)}
    assert {row.person_id for row in people.values() if row} == {sms}

    assert recipients(store, started(svc, whatsapp_template="advice").id) == {whatsapp, other}
    assert recipients(store, started(svc).id) == {telegram, other}  # no template: no WhatsApp
    svc.prefer(sms)
    assert recipients(store, started(svc, whatsapp_template="advice").id) == {sms, other}
    store.update_contact(sms, opted_out=True, now=T0)  # the preferred one stopped: the next best
    row = started(svc, whatsapp_template="advice")
    assert recipients(store, row.id) == {whatsapp, other}
    assert svc.preview(row.id).duplicates == 1  # telegram: reached on WhatsApp instead


def test_audience_filters_narrow_by_language_region_tag_condition_and_channel(
    store: SqlStore, config: Config, clock: Clock
) -> None:
    svc = build_broadcasts(configured(config, languages=["en", "hi"]), store, clock)
    hindi = subscriber(store, "sms", "+919800000001", language="hi")
    pune = subscriber(store, "sms", "+919800000002")
    svc.set_facts(pune, region="Pune")
    nurse = subscriber(store, "telegram", "31")
    assert svc.tag(nurse, add=("Health-Workers",)) == ("health-workers",)
    diabetic = subscriber(store, "sms", "+919800000003")
    store.save_enrollment(
        diabetic,
        status="active",
        conditions=("diabetes",),
        checkin_time="09:00",
        timezone="Asia/Kolkata",
        team=None,
        baselines={},
        now=T0,
    )
    linked = subscriber(store, "telegram", "32")  # the diabetic's Telegram: a person-level match
    svc.link(linked, diabetic)
    svc.prefer(linked)

    def audience(**filters: tuple[str, ...]) -> set[int | None]:
        row = svc.create(Draft("filtered", {"en": TEXT}, audience=Audience(**filters)), "alice")
        svc.approve(row.id, by="bob")
        svc.send(row.id, by="alice")
        svc.fan_out(row.id)
        return recipients(store, row.id)

    assert audience(languages=("hi",)) == {hindi}
    assert audience(regions=("pune",)) == {pune}
    assert audience(tags=("health-workers",)) == {nurse}
    assert audience(conditions=("diabetes",)) == {linked}
    assert audience(channels=("telegram",)) == {nurse, linked}
    assert audience() == {hindi, pune, nurse, linked}


# -- quiet hours ----------------------------------------------------------------------------------


def test_quiet_hours_follow_each_recipients_time_zone(
    store: SqlStore, svc: Broadcasts, clock: Clock
) -> None:
    kolkata = subscriber(store, "sms", "+919800000001", timezone="Asia/Kolkata")  # 21:30
    new_york = subscriber(store, "sms", "+12125550001", timezone="America/New_York")  # 12:00
    tokyo = subscriber(store, "telegram", "777")  # 01:00, the zone of its enrollment
    store.save_enrollment(
        tokyo,
        status="active",
        conditions=("asthma",),
        checkin_time="09:00",
        timezone="Asia/Tokyo",
        team=None,
        baselines={},
        now=T0,
    )
    default = subscriber(store, "sms", "+442070000001")  # checkins.default_timezone: UTC

    row = started(svc)
    due = {r.outbound.contact_id: r.next_attempt_at for r in rows_of(store, row.id)}
    assert due == {
        kolkata: datetime(2024, 5, 2, 2, 30, tzinfo=UTC),  # 08:00 in Kolkata
        tokyo: datetime(2024, 5, 1, 23, 0, tzinfo=UTC),  # 08:00 in Tokyo
        new_york: T0,
        default: T0,
    }
    senders = channels()
    dispatch(store, clock, senders)
    assert sent_to(senders) == {new_york, default}
    clock.now = datetime(2024, 5, 1, 23, 0, tzinfo=UTC)
    dispatch(store, clock, senders)
    assert sent_to(senders) == {new_york, default, tokyo}
    clock.now = datetime(2024, 5, 2, 2, 30, tzinfo=UTC)
    dispatch(store, clock, senders)
    assert sent_to(senders) == {new_york, default, tokyo, kolkata}


def test_an_urgent_broadcast_goes_out_in_quiet_hours(store: SqlStore, svc: Broadcasts) -> None:
    subscriber(store, "sms", "+919800000001", timezone="Asia/Kolkata")
    row = started(svc, urgent=True)
    (only,) = rows_of(store, row.id)
    assert only.next_attempt_at == T0 and "quiet" not in only.outbound.meta
    assert "urgent: quiet hours do not apply" in svc.preview(row.id).notes


def test_a_message_that_waited_into_quiet_hours_is_held_at_send_time(
    store: SqlStore, svc: Broadcasts, clock: Clock
) -> None:
    subscriber(store, "sms", "+12125550001", timezone="America/New_York")
    row = started(svc)  # due at once: 12:00 in New York
    clock.now = datetime(2024, 5, 2, 1, 30, tzinfo=UTC)  # 21:30 there: the dispatcher fell behind
    senders = channels()
    dispatch(store, clock, senders)
    assert senders["sms"].sent == []
    (held,) = rows_of(store, row.id)
    assert (held.status, held.attempts) == (OutboxStatus.QUEUED, 0)
    assert held.next_attempt_at == datetime(2024, 5, 2, 12, 0, tzinfo=UTC)  # 08:00 in New York


# -- the kill switch -------------------------------------------------------------------------------


def test_the_kill_switch_stops_a_running_broadcast_at_once(
    store: SqlStore, config: Config, clock: Clock
) -> None:
    svc = service(store, config, clock, batch_size=10)
    for n in range(30):
        subscriber(store, "sms", f"+1555010{n:04d}")
    row = approved(svc)
    svc.send(row.id, by="alice")
    assert svc.fan_out(row.id, max_batches=1) == 10  # ten people in the outbox, twenty to go
    stopped: list[int] = []

    class KillSwitchAtThree(CollectingChannel):
        async def send(self, msg: Outbound) -> str:
            provider_id = await super().send(msg)
            if len(self.sent) == 3:  # pressed while the third message is with the provider
                stopped.append(svc.cancel(row.id, by="bob"))
            return provider_id

    sms = KillSwitchAtThree("sms")
    dispatch(store, clock, {"sms": sms})

    # all 10 were still `sending`: the sweep records its outcomes in one transaction at its
    # end; the 3 that went come out `sent` all the same (below)
    assert len(sms.sent) == 3 and stopped == [10]
    assert svc.fan_out(row.id) == 0  # the other twenty are never enqueued
    assert dispatch(store, clock, {"sms": sms}) == 0
    stats = svc.stats(row.id)
    assert (stats.total.sent, stats.total.cancelled, stats.total.total) == (3, 7, 10)
    assert stats.done and svc.get(row.id).status is BroadcastStatus.CANCELLED
    assert svc.get(row.id).cancelled_by_name == "bob"


def test_cancelling_during_the_fan_out_stops_it_after_the_batch_in_hand(
    store: SqlStore, config: Config, clock: Clock
) -> None:
    svc = service(store, config, clock, batch_size=10)
    for n in range(30):
        subscriber(store, "sms", f"+1555010{n:04d}")
    row = approved(svc)
    svc.send(row.id, by="alice")
    assert svc.fan_out(row.id, on_batch=lambda step: svc.cancel(row.id, by="bob")) == 10
    assert {r.status for r in rows_of(store, row.id)} == {OutboxStatus.CANCELLED}
    with pytest.raises(BroadcastError, match="was cancelled"):
        svc.send(row.id, by="alice")


# -- corrections ----------------------------------------------------------------------------------


def test_a_correction_goes_to_exactly_the_recipients_the_original_reached(
    store: SqlStore, svc: Broadcasts, clock: Clock
) -> None:
    a, b, c, d, e = (subscriber(store, "sms", f"+155502000{n}") for n in range(5))
    original = started(svc, "Testing at the town hall on Friday.")
    store.update_contact(d, opted_out=True, now=T0)  # before it went: never reached
    dispatch(store, clock, channels())
    provider = {r.outbound.contact_id: r.provider_id for r in rows_of(store, original.id)}
    store.update_status_by_provider_id(str(provider[a]), "delivered", T0)
    store.update_status_by_provider_id(str(provider[c]), "undelivered", T0, error_code="30003")
    store.update_contact(e, opted_out=True, now=T0)  # reached, then replied STOP
    subscriber(store, "sms", "+15550209999")  # subscribed after the original

    fix = svc.correct(
        original.id, Draft("fix", {"en": "Correction: Saturday, not Friday."}), "alice"
    )
    assert fix.correction_of == original.id and svc.preview(fix.id).recipients == 2
    svc.approve(fix.id, by="bob")
    svc.send(fix.id, by="alice")
    svc.fan_out(fix.id)
    assert recipients(store, fix.id) == {a, b}

    stats = svc.stats(original.id).total
    assert (stats.delivered, stats.sent, stats.failed, stats.opted_out) == (1, 2, 1, 1)
    assert stats.stopped_after == 1


def test_a_correction_waits_until_the_original_is_finished_or_stopped(
    store: SqlStore, svc: Broadcasts
) -> None:
    subscriber(store, "sms", "+15550000001")
    original = started(svc)  # still queued
    fix = Draft("fix", {"en": "Correction."})
    with pytest.raises(BroadcastError, match="still has 1 messages queued"):
        svc.correct(original.id, fix, by="alice")
    assert svc.cancel(original.id, by="bob") == 1
    row = svc.correct(original.id, fix, by="alice")
    assert svc.preview(row.id).recipients == 0  # it reached nobody


# -- preview -------------------------------------------------------------------------------------


def test_preview_counts_people_segments_cost_and_time_to_finish(
    store: SqlStore, config: Config, clock: Clock
) -> None:
    svc = build_broadcasts(configured(config, languages=["en", "hi"]), store, clock)
    for n in range(3):
        subscriber(store, "sms", f"+155504000{n}")
    for n in range(2):
        subscriber(store, "sms", f"+919800000{n}", language="hi")
    subscriber(store, "whatsapp", "+1555040000")  # the same person as an SMS contact
    subscriber(store, "telegram", "9001", timezone="Asia/Kolkata")  # in quiet hours
    stopped = subscriber(store, "sms", "+1555049998")
    store.update_contact(stopped, opted_out=True, now=T0)
    subscriber(store, "sms", "+1555049999", consent=False)
    two_segments = "Testing is free at the town hall. " * 5  # 170 GSM-7 characters
    texts = {"en": two_segments, "hi": "जांच मुफ़्त है"}
    row = svc.create(Draft("tests", texts, whatsapp_template="advice"), by="alice")

    preview = svc.preview(row.id)
    by = {c.channel: c for c in preview.channels}
    assert by["sms"].languages == {"en": 2, "hi": 2}
    assert by["sms"].segments == 2 * 2 + 2 * 1
    assert by["sms"].cost == pytest.approx(6 * 0.0079)
    assert by["sms"].finish_at == T0 + timedelta(seconds=4)  # 1 message a second
    assert (by["whatsapp"].recipients, by["whatsapp"].cost) == (1, 0.005)
    assert by["telegram"].deferred == 1
    assert by["telegram"].finish_at > datetime(2024, 5, 2, 2, 30, tzinfo=UTC)  # 08:00 there
    assert preview.finish_at == by["telegram"].finish_at
    assert (preview.recipients, preview.opted_out, preview.no_consent, preview.duplicates) == (
        6,
        1,
        1,
        1,
    )
    sms_en = next(c for c in preview.checks if (c.channel, c.language) == ("sms", "en"))
    assert sms_en.segments == 2 and "2 SMS segments" in sms_en.notes[0]
    sms_hi = next(c for c in preview.checks if (c.channel, c.language) == ("sms", "hi"))
    assert (sms_hi.encoding, sms_hi.segments) == ("ucs2", 1)


# -- scheduling --------------------------------------------------------------------------------


def test_a_scheduled_broadcast_starts_at_its_time(
    store: SqlStore, svc: Broadcasts, clock: Clock
) -> None:
    who = subscriber(store, "sms", "+15550000001")
    row = approved(svc, send_at=T0 + timedelta(hours=2))
    assert svc.sweep().started == 0
    with pytest.raises(BroadcastError, match="send it now with --now"):
        svc.send(row.id, by="alice")
    clock.now = T0 + timedelta(hours=2)
    report = svc.sweep()
    assert (report.started, report.enqueued, report.broadcast_ids) == (1, 1, [row.id])
    assert recipients(store, row.id) == {who}
    assert svc.sweep().enqueued == 0  # a second sweep (or node) changes nothing


def test_a_recurring_broadcast_sends_one_occurrence_per_due_time(
    store: SqlStore, svc: Broadcasts, clock: Clock
) -> None:
    subscriber(store, "sms", "+15550000001")
    weekly = Recurrence(every_days=7, at=time(9, 0), timezone="Asia/Kolkata")
    row = svc.create(Draft("weekly tips", {"en": TEXT}, recurrence=weekly), by="alice")
    svc.approve(row.id, by="bob")
    first = datetime(2024, 5, 8, 3, 30, tzinfo=UTC)  # 09:00 in Kolkata, a week after May 1
    assert svc.get(row.id).next_due_at == first
    assert svc.sweep().occurrences == 0

    clock.now = first
    report = svc.sweep()
    assert (report.occurrences, report.started, report.enqueued) == (1, 1, 1)
    assert svc.sweep().occurrences == 0
    (occurrence,) = store.broadcasts(parent_id=row.id)
    assert (occurrence.status, occurrence.approved_by_name) == (BroadcastStatus.SENT, "bob")
    assert svc.get(row.id).next_due_at == first + timedelta(days=7)

    clock.now = first + timedelta(days=22)  # after downtime, only the latest occurrence goes
    assert svc.sweep().occurrences == 1
    assert svc.get(row.id).next_due_at == first + timedelta(days=28)
    assert svc.cancel(row.id, by="bob") == 2  # the kill switch covers its occurrences too
