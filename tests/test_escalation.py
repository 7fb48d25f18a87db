"""The ticket service: priority and deadlines, on-call announcements without health details,
claim / reply / resolve / return, notes, the handoff to a human, and the audit trail."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from itertools import count
from pathlib import Path

import pytest

from bot.app import CareBridge, Interpreter, default_interpreter
from bot.config import Config, EscalationConfig, OnCallConfig, load_config
from bot.dispatch import Dispatcher
from bot.errors import StoreError
from bot.escalation import Priority, TicketError, priority_for
from bot.flow import Library
from bot.messages import Inbound, Outbound
from bot.session import SessionStatus
from bot.store import EscalationStatus, Lane, SqliteStore, SqlStore, UserRow
from bot.store.migrations import MIGRATIONS

ON_CALL = "+15550009999"
PATIENT = "+15557654321"
T0 = datetime(2024, 5, 1, 9, 0, tzinfo=UTC)


class Clock:
    """Time stands still until a test moves it."""

    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> datetime:
        self.now += timedelta(**delta)
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture(scope="module")
def interpreter() -> Interpreter:
    return default_interpreter(load_config(env={}))


@pytest.fixture
def app(
    tmp_config: Config, clock: Clock, lib: Library, interpreter: Interpreter
) -> Iterator[CareBridge]:
    config = tmp_config.model_copy(
        update={
            "escalation": EscalationConfig(on_call=OnCallConfig(channel="sms", address=ON_CALL))
        }
    )
    bridge = CareBridge(config, clock=clock, library=lib, interpreter=interpreter)
    yield bridge
    bridge.close()


_ids = count()


def send(app: CareBridge, text: str, address: str = PATIENT, channel: str = "sms") -> list[str]:
    handled = app.handle(Inbound(channel, address, text, app.clock(), f"SM{next(_ids)}"))
    return [m.text for m in handled.replies]


def clinician(app: CareBridge, name: str = "dr_rao") -> UserRow:
    user_id = app.store.add_user(name, "not-a-real-hash", "clinician", app.clock())
    assert user_id is not None
    user = app.store.get_user(user_id)
    assert user is not None
    return user


def red_flag(app: CareBridge, address: str = PATIENT) -> int:
    send(app, "my father can't breathe and his lips are blue", address)
    contact = app.store.find_contact("sms", address)
    assert contact is not None
    [ticket] = [t for t in app.store.escalations(contact_id=contact.id) if t.is_open]
    return ticket.id


def open_ticket(app: CareBridge, level: str, address: str) -> int:
    """A ticket opened the way bot.app opens one (without a conversation)."""
    now = app.clock()
    contact = app.store.get_or_create_contact("sms", address, now)
    with app.store.transaction():
        ticket_id = app.store.open_escalation(
            contact.id, None, level, "triage", "covid_screening", (), {}, now
        )
        app.tickets.opened(ticket_id, now)
    return ticket_id


def on_call(app: CareBridge) -> list[Outbound]:
    return [r.outbound for r in app.store.outbox() if r.outbound.kind == "on_call"]


def session_status(app: CareBridge, address: str = PATIENT) -> SessionStatus:
    contact = app.store.find_contact("sms", address)
    assert contact is not None
    return app.store.current_session(contact).status


# -- priority, deadlines, announcements ----------------------------------------------------------


@pytest.mark.parametrize(
    ("level", "priority"),
    [
        ("emergency_ambulance", Priority.EMERGENCY),
        ("emergency", Priority.EMERGENCY),
        ("consultation_24", Priority.URGENT),
        ("consultation", Priority.ROUTINE),
        ("self_care", Priority.ROUTINE),
    ],
)
def test_priority_comes_from_the_triage_level(level: str, priority: Priority) -> None:
    assert priority_for(level) is priority


def test_a_red_flag_ticket_is_an_emergency_announced_to_on_call_at_once(app: CareBridge) -> None:
    ticket = app.store.get_escalation(red_flag(app))
    assert ticket is not None
    assert (ticket.priority, ticket.deadline_at) == ("emergency", ticket.opened_at)
    [alert] = on_call(app)
    assert (alert.channel, alert.address, alert.contact_id) == ("sms", ON_CALL, None)
    assert "EMERGENCY" in alert.text
    assert alert.text.endswith(f"/console/tickets/{ticket.id}")


def test_an_announcement_carries_no_health_details(app: CareBridge) -> None:
    red_flag(app)
    [alert] = on_call(app)
    text = alert.text.lower()
    for secret in ("breathe", "lips", "blue", "dyspnea", "cyanosis", "7654321", "ambulance"):
        assert secret not in text


def test_an_urgent_ticket_is_announced_and_raised_at_its_deadline_not_before(
    app: CareBridge, clock: Clock
) -> None:
    ticket_id = open_ticket(app, "consultation_24", "+15550000001")
    assert on_call(app) == []
    assert app.tickets.sweep_deadlines(clock.advance(minutes=59, seconds=59)) == []
    assert app.tickets.sweep_deadlines(clock.advance(seconds=1)) == [ticket_id]
    ticket = app.store.get_escalation(ticket_id)
    assert ticket is not None and ticket.raised_at == clock.now
    [alert] = on_call(app)
    assert alert.text.startswith("carebridge: new URGENT ticket")


def test_the_sweep_is_idempotent_and_reannounces_after_the_quiet_interval(
    app: CareBridge, clock: Clock
) -> None:
    ticket_id = open_ticket(app, "consultation_24", "+15550000001")
    clock.advance(minutes=60)
    assert app.tickets.sweep_deadlines(clock.now) == [ticket_id]
    assert app.tickets.sweep_deadlines(clock.now) == []  # another node, the same minute
    assert app.tickets.sweep_deadlines(clock.advance(minutes=14)) == []
    assert app.tickets.sweep_deadlines(clock.advance(minutes=1)) == [ticket_id]
    assert "still unclaimed after 75 min" in on_call(app)[-1].text
    assert len(on_call(app)) == 2


def test_a_claimed_ticket_is_never_announced(app: CareBridge, clock: Clock) -> None:
    ticket_id = open_ticket(app, "consultation_24", "+15550000001")
    app.tickets.claim(ticket_id, clinician(app))
    assert app.tickets.sweep_deadlines(clock.advance(hours=3)) == []
    assert on_call(app) == []


def test_without_an_on_call_contact_nothing_is_sent(
    tmp_config: Config, clock: Clock, lib: Library, caplog: pytest.LogCaptureFixture
) -> None:
    bridge = CareBridge(tmp_config, clock=clock, library=lib)
    try:
        red_flag(bridge)
        assert on_call(bridge) == []
        assert "escalation.on_call is not set" in caplog.text
    finally:
        bridge.close()


def test_a_folded_escalation_that_raises_the_level_moves_the_deadline_up(
    app: CareBridge, clock: Clock
) -> None:
    ticket_id = open_ticket(app, "consultation", "+15550000002")
    first = app.store.get_escalation(ticket_id)
    assert first is not None and first.deadline_at == T0 + timedelta(minutes=480)
    clock.advance(minutes=5)
    assert open_ticket(app, "consultation_24", "+15550000002") == ticket_id
    raised = app.store.get_escalation(ticket_id)
    assert raised is not None
    assert (raised.priority, raised.deadline_at) == ("urgent", clock.now + timedelta(minutes=60))


def test_the_queue_is_ordered_by_priority_then_waiting_time(app: CareBridge, clock: Clock) -> None:
    routine_old = open_ticket(app, "consultation", "+15550000011")
    clock.advance(minutes=1)
    urgent_old = open_ticket(app, "consultation_24", "+15550000012")
    clock.advance(minutes=1)
    urgent_new = open_ticket(app, "consultation_24", "+15550000013")
    clock.advance(minutes=50)
    emergency = red_flag(app, "+15550000014")
    claimed = open_ticket(app, "emergency", "+15550000015")
    app.tickets.claim(claimed, clinician(app))
    assert [t.id for t in app.tickets.queue()] == [
        emergency,
        urgent_old,
        urgent_new,
        routine_old,
        claimed,
    ]
    app.tickets.sweep_deadlines(clock.advance(minutes=10))  # urgent_old is now overdue
    order = [t.id for t in app.tickets.queue()]
    assert order[:3] == [emergency, urgent_old, urgent_new]


def test_migration_3_keeps_old_tickets_and_gives_them_a_priority(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    before = tuple(m for m in MIGRATIONS if m.version < 3)
    with SqliteStore(path, migrations=before) as old:  # rows as the code before 3 wrote them
        at = T0.isoformat()
        for n, (phone, level, status) in enumerate(
            [(PATIENT, "consultation_24", "waiting"), ("+15550000003", "emergency", "closed")], 1
        ):
            old.db.execute(
                "INSERT INTO contacts (id, channel, address, created_at, updated_at)"
                " VALUES (?, 'sms', ?, ?, ?)",
                (n, phone, at, at),
            )
            old.db.execute(
                "INSERT INTO escalations (id, contact_id, level, reason, status, opened_at,"
                " updated_at) VALUES (?, ?, ?, 'triage', ?, ?, ?)",
                (n, n, level, status, at, at),
            )
        old.db.conn.commit()
    with SqliteStore(path) as store:
        ticket = store.get_escalation(1)
        assert ticket is not None
        assert (ticket.priority, ticket.deadline_at, ticket.status) == ("urgent", None, "waiting")
        assert [t.id for t in store.escalations("closed")] == [2]  # still a (final) status


def test_the_sweep_plans_a_ticket_that_has_no_deadline(app: CareBridge, clock: Clock) -> None:
    contact = app.store.get_or_create_contact("sms", PATIENT, T0)
    ticket_id = app.store.open_escalation(contact.id, None, "emergency", "flow", None, (), {}, T0)
    assert app.tickets.sweep_deadlines(clock.advance(seconds=30)) == [ticket_id]
    ticket = app.store.get_escalation(ticket_id)
    assert ticket is not None and (ticket.priority, ticket.deadline_at) == ("emergency", T0)


# -- claiming and the handoff --------------------------------------------------------------------


def test_claiming_hands_the_patient_to_the_clinician_and_the_bot_steps_back(
    app: CareBridge,
) -> None:
    ticket_id = red_flag(app)
    ticket = app.tickets.claim(ticket_id, clinician(app))
    assert (ticket.status, ticket.claimed_by) == (EscalationStatus.CLAIMED, "dr_rao")
    assert session_status(app) is SessionStatus.HANDED_OFF
    assert send(app, "he is a bit better now") == []
    contact = app.store.find_contact("sms", PATIENT)
    assert contact is not None
    assert app.store.transcript(contact.id)[-1].text == "he is a bit better now"


def test_a_red_flag_while_claimed_is_answered_and_the_clinician_keeps_the_patient(
    app: CareBridge,
) -> None:
    ticket_id = open_ticket(app, "consultation_24", PATIENT)
    app.tickets.claim(ticket_id, clinician(app))
    reply = send(app, "now I have crushing chest pain")
    assert any("112" in r for r in reply)
    assert session_status(app) is SessionStatus.HANDED_OFF
    ticket = app.store.get_escalation(ticket_id)
    assert ticket is not None and (ticket.level, ticket.status) == (
        "emergency_ambulance",
        "claimed",
    )


def test_a_ticket_claimed_by_someone_else_must_be_taken_over(app: CareBridge) -> None:
    ticket_id = red_flag(app)
    rao, sen = clinician(app, "dr_rao"), clinician(app, "dr_sen")
    app.tickets.claim(ticket_id, rao)
    with pytest.raises(TicketError, match="claimed by dr_rao") as err:
        app.tickets.claim(ticket_id, sen)
    assert err.value.code == "claimed_by_other"
    with pytest.raises(TicketError):
        app.tickets.resolve(ticket_id, sen)
    assert app.tickets.claim(ticket_id, sen, take_over=True).claimed_by == "dr_sen"
    claim = app.store.audit_log(user_id=sen.id)[0]
    assert (claim.action, claim.detail) == ("claim", {"took_over_from": "dr_rao"})


def test_release_puts_the_ticket_back_in_the_queue(app: CareBridge) -> None:
    ticket_id = red_flag(app)
    rao = clinician(app)
    with pytest.raises(TicketError):
        app.tickets.release(ticket_id, rao)
    app.tickets.claim(ticket_id, rao)
    released = app.tickets.release(ticket_id, rao)
    assert (released.status, released.claimed_by) == (EscalationStatus.WAITING, None)


# -- replies -------------------------------------------------------------------------------------


def test_a_reply_goes_out_through_the_patients_channel_via_the_outbox(
    app: CareBridge, clock: Clock
) -> None:
    ticket_id = red_flag(app)
    rao = clinician(app)
    with pytest.raises(TicketError, match="claim it before replying"):
        app.tickets.reply(ticket_id, rao, "Hello")
    app.tickets.claim(ticket_id, rao)
    clock.advance(minutes=2)
    [outbox_id] = app.tickets.reply(ticket_id, rao, "  Is the ambulance there?  ")
    row = app.store.get_outbox(outbox_id)
    assert row is not None
    assert (row.outbound.channel, row.outbound.address, row.outbound.kind) == (
        "sms",
        PATIENT,
        "clinician",
    )
    assert row.outbound.text == "Is the ambulance there?"
    assert row.lane is Lane.EMERGENCY  # words on an open emergency ticket jump the queue
    line = app.store.transcript(row.outbound.contact_id or 0)[-1]
    assert (line.direction, line.text, line.author) == ("out", "Is the ambulance there?", "dr_rao")
    clock.advance(minutes=1)
    app.tickets.reply(ticket_id, rao, "Please call 112 again if needed.")
    ticket = app.store.get_escalation(ticket_id)
    assert ticket is not None and ticket.first_response_at == T0 + timedelta(minutes=2)
    entry = app.store.audit_log(user_id=rao.id)[0]
    assert entry.action == "reply" and "ambulance" not in repr(entry.detail)


def test_a_long_reply_is_split_for_sms_and_an_empty_one_refused(app: CareBridge) -> None:
    ticket_id = red_flag(app)
    rao = clinician(app)
    app.tickets.claim(ticket_id, rao)
    with pytest.raises(TicketError, match="empty"):
        app.tickets.reply(ticket_id, rao, "   ")
    with pytest.raises(TicketError, match="1601 characters"):
        app.tickets.reply(ticket_id, rao, "x" * 1601)
    assert len(app.tickets.reply(ticket_id, rao, "word " * 300)) > 1


def test_no_reply_reaches_a_patient_who_sent_stop(app: CareBridge) -> None:
    ticket_id = red_flag(app)
    rao = clinician(app)
    app.tickets.claim(ticket_id, rao)
    send(app, "STOP")
    with pytest.raises(TicketError, match="opted out") as err:
        app.tickets.reply(ticket_id, rao, "Hello?")
    assert err.value.code == "opted_out"


def test_a_whatsapp_reply_outside_the_24_hour_window_waits_behind_a_template_notice(
    app: CareBridge, clock: Clock
) -> None:
    send(app, "my father can't breathe and his lips are blue", "+15550000042", "whatsapp")
    [ticket] = app.tickets.queue()
    rao = clinician(app)
    app.tickets.claim(ticket.id, rao)
    clock.advance(hours=25)
    app.tickets.reply(ticket.id, rao, "Checking on you and your father.")
    sent: list[Outbound] = []

    class Recorder:
        name = "whatsapp"

        async def send(self, msg: Outbound) -> str:
            sent.append(msg)
            return "SM1"

    senders = {"whatsapp": Recorder(), "sms": Recorder()}
    rates = {"whatsapp": 100.0, "sms": 100.0}
    dispatcher = Dispatcher(app.store, senders, rates=rates, clock=clock)

    async def drain() -> None:
        while await dispatcher.run_once():  # one sweep may take one message per chat
            pass

    async def scenario() -> None:
        await drain()
        assert not [m for m in sent if m.kind == "clinician"]  # held: no free text outside
        [notice] = [m for m in sent if m.kind == "notice"]
        assert notice.meta.get("template") == "1" and "father" not in notice.text
        send(app, "ok what is it", "+15550000042", "whatsapp")  # the patient replies
        await drain()

    asyncio.run(scenario())
    [reply] = [m for m in sent if m.kind == "clinician"]
    assert reply.text == "Checking on you and your father."
    assert reply.meta.get("template") is None


# -- closing -------------------------------------------------------------------------------------


def test_resolving_gives_the_patient_back_to_the_bot(app: CareBridge, clock: Clock) -> None:
    ticket_id = red_flag(app)
    rao = clinician(app)
    app.tickets.claim(ticket_id, rao)
    clock.advance(minutes=30)
    ticket = app.tickets.resolve(ticket_id, rao)
    assert ticket.status is EscalationStatus.RESOLVED
    assert ticket.resolved_at == ticket.closed_at == clock.now
    assert session_status(app) is SessionStatus.COMPLETED
    assert send(app, "hi") != []
    with pytest.raises(TicketError, match="already resolved") as err:
        app.tickets.claim(ticket_id, rao)
    assert err.value.code == "final"


def test_a_waiting_ticket_may_be_resolved_without_a_claim(app: CareBridge) -> None:
    ticket_id = red_flag(app)
    assert app.tickets.resolve(ticket_id, clinician(app)).status is EscalationStatus.RESOLVED


def test_returning_to_a_flow_starts_it_for_the_patient(app: CareBridge) -> None:
    assert "Which language" in send(app, "hi")[0]  # first contact: the language menu
    assert "Do you agree" in send(app, "1")[0]  # English, then the consent question
    send(app, "yes")  # consent
    ticket_id = red_flag(app)
    rao = clinician(app)
    app.tickets.claim(ticket_id, rao)
    with pytest.raises(TicketError, match="no flow 'nope'"):
        app.tickets.return_to_bot(ticket_id, rao, "nope")
    before = len(app.store.outbox())
    ticket = app.tickets.return_to_bot(ticket_id, rao, "covid_screening")
    assert ticket.status is EscalationStatus.RETURNED_TO_BOT
    assert ticket.resolved_at is None and ticket.closed_at is not None
    assert session_status(app) is SessionStatus.ACTIVE
    [question] = app.store.outbox()[before:]
    assert "any of these right now" in question.outbound.text
    entry = app.store.audit_log(user_id=rao.id)[0]
    assert (entry.action, entry.detail) == ("returned_to_bot", {"flow": "covid_screening"})


def test_returning_to_the_bot_without_a_flow_waits_for_the_patient(app: CareBridge) -> None:
    ticket_id = red_flag(app)
    rao = clinician(app)
    app.tickets.claim(ticket_id, rao)
    before = len(app.store.outbox())
    app.tickets.return_to_bot(ticket_id, rao)
    assert len(app.store.outbox()) == before
    assert session_status(app) is SessionStatus.COMPLETED


# -- notes and the audit log -----------------------------------------------------------------------


def test_notes_are_kept_in_order_and_never_sent(app: CareBridge) -> None:
    ticket_id = red_flag(app)
    rao = clinician(app)
    before = len(app.store.outbox())
    app.tickets.add_note(ticket_id, rao, "Called the family.")
    app.tickets.add_note(ticket_id, rao, "Ambulance arrived.")
    with pytest.raises(TicketError, match="empty"):
        app.tickets.add_note(ticket_id, rao, " ")
    notes = app.store.ticket_notes(ticket_id)
    assert [(n.username, n.text) for n in notes] == [
        ("dr_rao", "Called the family."),
        ("dr_rao", "Ambulance arrived."),
    ]
    assert len(app.store.outbox()) == before


def test_every_change_is_audited_and_the_audit_log_cannot_be_changed(app: CareBridge) -> None:
    ticket_id = red_flag(app)
    rao = clinician(app)
    app.tickets.claim(ticket_id, rao)
    app.tickets.reply(ticket_id, rao, "Hello")
    app.tickets.add_note(ticket_id, rao, "note")
    app.tickets.resolve(ticket_id, rao)
    actions = [e.action for e in reversed(app.store.audit_log(user_id=rao.id))]
    assert actions == ["claim", "reply", "note", "resolved"]
    assert isinstance(app.store, SqlStore)  # either engine (CB_TEST_STORE, tests/pg.py)
    for sql in ("UPDATE audit_log SET action = 'x'", "DELETE FROM audit_log"):
        with pytest.raises(StoreError, match="append-only"), app.store._atomic("test") as conn:
            conn.execute(sql)
    assert len(app.store.audit_log()) >= 4


def test_red_flag_replies_go_in_the_emergency_lane_and_ordinary_ones_do_not(
    app: CareBridge,
) -> None:
    send(app, "hi", "+15550002222")
    someone = app.store.find_contact("sms", "+15550002222")
    assert someone is not None
    ordinary = app.store.outbox(contact_id=someone.id)
    assert ordinary and {r.lane for r in ordinary} == {Lane.CONVERSATION}
    red_flag(app)
    contact = app.store.find_contact("sms", PATIENT)
    assert contact is not None
    urgent = [r for r in app.store.outbox(contact_id=contact.id) if "112" in r.outbound.text]
    assert urgent and {r.lane for r in urgent} == {Lane.EMERGENCY}
