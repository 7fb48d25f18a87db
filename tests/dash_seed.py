"""A store seeded with known numbers for the dashboard tests (tests/test_dashboards*.py) and the
dashboard screenshots (scripts/dash_screenshots.py): conversations with triage levels and red
flags in three regions, tickets with known claim times, scheduled check-ins with known outcomes
and one broadcast with known delivery statuses. Every count the tests expect is written here."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from bot.app import build_broadcasts
from bot.broadcasts.service import Draft
from bot.config import Config
from bot.session import Contact, Session
from bot.store import Lane, SqlStore

NOW = datetime(2026, 6, 17, 12, 0, tzinfo=UTC)  # a Wednesday, noon UTC
DAY = timedelta(days=1)
MIN = timedelta(minutes=1)

# (days ago, hour, contact, level, red flags)
OUTCOMES = [
    (0, 10, "c1", "emergency_ambulance", ("severe_dyspnea", "cyanosis")),
    (0, 9, "c3", "self_care", ()),
    (1, 11, "c2", "consultation_24", ("chest_pain",)),
    (1, 15, "c1", "self_care", ()),
    (2, 8, "c4", "consultation", ()),
    (2, 9, "c3", None, ()),  # a conversation that never reached an outcome
    (10, 9, "c2", "emergency", ("cyanosis",)),  # in 30 days, not in 7
    (40, 9, "c1", "self_care", ()),  # in 90 days only
    (0, 11, "sim", "emergency", ("cyanosis",)),  # a test contact: never counted
]
REGIONS = {"c1": "north", "c2": "north", "c3": "south", "c4": None}
# (contact, opened days/minutes before NOW, level, minutes until claimed or None = still waiting)
TICKETS = [
    ("c1", 1 * DAY, "emergency_ambulance", 2),
    ("c2", 1 * DAY - 60 * MIN, "emergency", 10),
    ("c3", 2 * DAY, "emergency", 4),
    ("c1", 3 * DAY, "consultation_24", 30),
    ("c2", 3 * DAY, "consultation_24", 90),
    ("c4", 600 * MIN, "consultation", None),  # waiting 10 h: past the 8 h routine deadline
    ("c3", 60 * MIN, "self_care", None),  # waiting 1 h: in time
]
# contact -> statuses of its daily 09:00 check-ins, oldest first, ending yesterday
CHECKINS = {
    "c1": ["answered", "missed", "missed", "missed", "answered", "late"],  # longest run 3
    "c2": ["answered", "missed", "missed", "missed"],  # longest 3, and missing now
    "c3": ["answered", "answered"],
}
# broadcast recipients -> what became of the message
REACH = {"c1": "delivered", "c2": "sent", "c3": "failed"}


def seed(store: SqlStore, config: Config) -> dict[str, int]:
    """Write the rows above; returns contact ids by name."""
    ids: dict[str, int] = {}
    for n, name in enumerate(("c1", "c2", "c3", "c4"), start=1):
        contact = store.get_or_create_contact("sms", f"+1555000000{n}", NOW - 60 * DAY)
        ids[name] = contact.id
        if REGIONS[name]:
            store.set_contact_facts(contact.id, NOW - 60 * DAY, region=REGIONS[name])
    ids["sim"] = store.get_or_create_contact("web", "sim-1", NOW - 60 * DAY).id
    for ago, hour, who, level, flags in OUTCOMES:
        at = (NOW - ago * DAY).replace(hour=hour)
        contact = store.get_contact(ids[who])
        assert isinstance(contact, Contact)
        session = Session(
            contact=contact, flow="covid_screening", triage=level, red_flags=flags, started_at=at
        )
        store.save_session(session, at)
    user = store.add_user("dash.clinician", "argon2-hash", "clinician", NOW - 60 * DAY)
    assert user is not None
    for who, before, level, claim in TICKETS:
        opened = NOW - before
        ticket = store.open_escalation(ids[who], None, level, "triage", None, (), {}, opened)
        if claim is not None:
            assert store.claim_escalation(ticket, user, "dash.clinician", opened + claim * MIN)
            assert store.finish_escalation(ticket, "resolved", opened + (claim + 5) * MIN)
    for who, statuses in CHECKINS.items():
        for i, status in enumerate(statuses):
            due = (NOW - (len(statuses) - i) * DAY).replace(hour=9)
            checkin = store.add_checkin(ids[who], "scheduled", "diabetes_checkin", due, due, due)
            assert checkin is not None
            assert store.claim_checkin(checkin, due)
            first = "missed" if status == "late" else status
            assert store.resolve_checkin(checkin, first, due + 60 * MIN, expected="open")
            if status == "late":
                assert store.resolve_checkin(checkin, "late", due + DAY, expected="missed")
    _broadcast(store, config, ids)
    return ids


def _broadcast(store: SqlStore, config: Config, ids: dict[str, int]) -> None:
    """One broadcast, started yesterday, to c1-c3: delivered, sent (no receipt), failed."""
    for name in ("alice", "bob"):
        store.add_user(
            name, "argon2-hash", "coordinator", NOW - 60 * DAY, must_change_password=False
        )
    for who in REACH:
        store.update_contact(ids[who], consent_broadcast=True, now=NOW - 60 * DAY)
    started = NOW - DAY
    svc = build_broadcasts(config, store, lambda: started)
    row = svc.create(Draft(name="Heat advice", texts={"en": "Drink water often."}), by="alice")
    svc.approve(row.id, by="bob")
    svc.send(row.id, by="alice")
    svc.fan_out(row.id)
    by_contact = {r.outbound.contact_id: r.id for r in store.outbox() if r.lane == Lane.BULK}
    for who, status in REACH.items():
        outbox_id = by_contact[ids[who]]
        if status == "failed":
            store.mark_failed(outbox_id, "failed", "unreachable", started)
            continue
        store.mark_sent(outbox_id, f"SM{outbox_id}", started)
        if status == "delivered":
            store.update_status_by_provider_id(f"SM{outbox_id}", "delivered", started)
