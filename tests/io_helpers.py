"""Shared by the import and export tests: a 10,000-row contacts file with known good, duplicate
and bad rows and the people it meets in the database (the expected report is counted from how
each row was made, not from the importer), and the console served on loopback with one logged-in
browser per role."""

from __future__ import annotations

import csv
import io
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from console_helpers import make_user, served, session_cookie

from bot.app import CareBridge, load_flows
from bot.auth import Auth
from bot.config import Config
from bot.session import Contact, Session, SessionStatus
from bot.store import SqlStore, Store

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
ROWS = 10_000
HEADER = [
    "Phone",
    "channel",
    "language",
    "consent_care",
    "consent_broadcast",
    "region",
    "tags",
    "conditions",
    "checkin_time",
    "name",
]


def phone(i: int) -> str:
    return f"+9198{i:08d}"


@dataclass
class Expected:
    imported: int = 0
    merged: int = 0
    enrolled: int = 0
    rejected: Counter[str] = field(default_factory=Counter)

    def report(self) -> dict[str, object]:
        return {
            "rows": ROWS,
            "imported": self.imported,
            "merged": self.merged,
            "enrolled": self.enrolled,
            "rejected": sum(self.rejected.values()),
            "rejected_by_reason": dict(self.rejected),
        }


def known_people(store: Store) -> None:
    """Rows 0-299 are SMS contacts already; rows 300-349 WhatsApp ones (their rows give no
    channel: they join the person they are); row 350 opted out; row 351 said no to care."""
    with store.transaction():
        for i in range(352):
            channel = "whatsapp" if 300 <= i < 350 else "sms"
            cid = store.get_or_create_contact(channel, phone(i), T0, "en").id
            if i == 350:
                store.update_contact(cid, opted_out=True, now=T0, source="patient")
            if i == 351:
                store.update_contact(cid, consent_care=False, now=T0, source="patient")


def contacts_file() -> tuple[bytes, Expected]:
    """The CSV and the report it must give (after `known_people`)."""
    out = io.StringIO()
    w = csv.writer(out)
    w.writerow(HEADER)
    e = Expected()
    for i in range(ROWS):
        row = [
            phone(i),
            "",
            "hi" if i % 3 == 0 else "en",
            "yes",
            "no",
            "north",
            "camp;2026",
            "",
            "",
            f"Person {i}",
        ]
        if i < 350:
            e.merged += 1
        elif i in (350, 351):
            e.rejected["opted_out" if i == 350 else "declined"] += 1
        elif i % 50 == 0:
            row[0] = "98000-CALL-ME"
            e.rejected["bad_phone"] += 1
        elif i % 50 == 1:
            row[0] = ""
            e.rejected["missing_phone"] += 1
        elif i % 50 == 2:
            row[2] = "fr"
            e.rejected["bad_language"] += 1
        elif i % 50 == 3:
            row[3] = "maybe"
            e.rejected["bad_consent"] += 1
        elif i % 50 == 4:
            row[0] = "0" + phone(i - 5)[3:]  # row i-5 again, written the national way
            e.rejected["duplicate_in_file"] += 1
        elif i % 50 == 5:
            row[7] = "gout"
            e.rejected["bad_enrollment"] += 1
        elif i % 50 == 6:
            row[7], row[8] = "diabetes;hypertension", "08:30"
            e.imported += 1
            e.enrolled += 1
        else:
            e.imported += 1
        w.writerow(row)
    return out.getvalue().encode("utf-8"), e


class Unread:
    """The interpreter: these pages never read a message (and no warm-up to wait for)."""

    def interpret(self, text: str, expecting: object, language: str = "en") -> object:
        raise AssertionError("no message is interpreted here")


PASSWORD = "a long enough password"
ROLES = {"cora": "coordinator", "root": "admin", "carol": "clinician"}


@dataclass
class Site:
    bridge: CareBridge
    clients: dict[str, httpx.Client]
    csrf: dict[str, str]

    @property
    def store(self) -> SqlStore:
        store = self.bridge.store
        assert isinstance(store, SqlStore)
        return store


@contextmanager
def console_site(base: Config, store_url: str, seed: Any = None) -> Iterator[Site]:
    """The console on a new database (`seed(store)` first), one logged-in browser per role."""
    from bot.web import create_app

    config = base.model_copy(update={"storage": base.storage.model_copy(update={"url": store_url})})
    bridge = CareBridge(
        config,
        library=load_flows(config),
        interpreter=Unread(),
        clock=lambda: T0,  # type: ignore[arg-type]
    )
    store = bridge.store
    assert isinstance(store, SqlStore)
    if seed is not None:
        seed(store)
    auth = Auth(store, config.console, clock=lambda: T0, env={})
    clients, csrf = {}, {}
    for name, role in ROLES.items():
        cookies = session_cookie(auth, make_user(store, name, role, PASSWORD))
        login = auth.session_for(next(iter(cookies.values())))
        assert login is not None
        csrf[name] = login.csrf
        clients[name] = httpx.Client(cookies=cookies, follow_redirects=False, timeout=60)
    app = create_app(config, bridge=bridge, env={}, senders={}, dispatch=False, schedule=False)
    with served(app) as url:
        for client in clients.values():
            client.base_url = httpx.URL(url)
        yield Site(bridge, clients, csrf)
    for client in clients.values():
        client.close()
    bridge.close()


ALICE = "+919800000031"
BOB = "+919800000032"


def conversation(
    store: Store,
    contact_id: int,
    flow: str,
    answers: dict[str, Any],
    triage: str | None,
    at: datetime,
    red_flags: tuple[str, ...] = (),
) -> int:
    """A finished conversation as the app stores it, with its number answers as readings."""
    contact = store.get_contact(contact_id)
    assert contact is not None
    session = Session(
        contact=Contact(id=contact_id, channel=contact.channel),
        flow=flow,
        node="done",
        status=SessionStatus.COMPLETED,
        answers=answers,
        triage=triage,
        red_flags=red_flags,
        started_at=at,
    )
    sid = store.save_session(session, at + timedelta(minutes=3)).id
    assert sid is not None
    units = {
        "systolic_bp": "mm[Hg]",
        "diastolic_bp": "mm[Hg]",
        "temperature_c": "Cel",
        "spo2_percent": "%",
        "glucose_mg_dl": "mg/dL",
        "weight_kg": "kg",
        "peak_flow_percent": "%",
        "heart_rate": "/min",
        "age_years": "a",
    }
    for i, (concept, value) in enumerate(answers.items()):
        if concept in units:
            store.add_reading(
                contact_id, sid, concept, float(value), units[concept], at + timedelta(seconds=i)
            )
    return sid


def seed_results(store: Store) -> dict[str, int]:
    """Alice (SMS, north): a hypertension check-in with a crisis escalated, claimed after 10
    minutes, answered, resolved; a diabetes and an asthma check-in. Bob (WhatsApp, south): a
    COVID-19 screening. A simulator contact (test): a screening that no export shows."""
    ids: dict[str, int] = {}
    alice = store.get_or_create_contact("sms", ALICE, T0, "en").id
    bob = store.get_or_create_contact("whatsapp", BOB, T0, "hi").id
    sim = store.get_or_create_contact("web", "sim-abc", T0).id
    store.set_contact_facts(alice, T0, region="north")
    store.set_contact_facts(bob, T0, region="south")
    ids["bp"] = conversation(
        store,
        alice,
        "hypertension_checkin",
        {"systolic_bp": 185, "diastolic_bp": 95, "chest_pain": False, "severe_headache": True},
        "consultation_24",
        T0,
    )
    ticket = store.open_escalation(
        alice, ids["bp"], "consultation_24", "triage", "hypertension_checkin", (), {}, T0
    )
    store.plan_escalation(ticket, "urgent", T0 + timedelta(hours=1), T0)
    user = store.add_user("dr.rao", "x", "clinician", T0)
    assert user is not None
    store.claim_escalation(ticket, user, "dr.rao", T0 + timedelta(minutes=10))
    store.note_first_response(ticket, T0 + timedelta(minutes=12))
    store.finish_escalation(ticket, "resolved", T0 + timedelta(minutes=30))
    ids["ticket"] = ticket
    ids["sugar"] = conversation(
        store,
        alice,
        "diabetes_checkin",
        {"glucose_mg_dl": 250, "ketones": False, "glucose_unit": "mg/dL"},
        "self_care",
        T0 + timedelta(days=1),
    )
    ids["asthma"] = conversation(
        store,
        alice,
        "asthma_checkin",
        {"peak_flow_percent": 60, "peak_flow_best_lpm": 400, "night_symptoms": True},
        "consultation",
        T0 + timedelta(days=2),
    )
    ids["covid"] = conversation(
        store,
        bob,
        "covid_screening",
        {"fever": True, "cough": True, "temperature_c": 38.6, "spo2_percent": 93, "age_years": 70},
        "consultation_24",
        T0 + timedelta(days=3),
        red_flags=(),
    )
    ids["simulated"] = conversation(
        store, sim, "covid_screening", {"temperature_c": 39.0}, "self_care", T0
    )
    ids.update(alice=alice, bob=bob, sim=sim)
    return ids
