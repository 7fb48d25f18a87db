"""The console's broadcast pages, route by route: who may read and who may act, the create form
read into a draft, live text checks matching the service, preview, two-person approval, send and
its fan-out, the kill switch's confirm step, corrections, stats as JSON and CSV, CSRF, and no
message text or phone numbers in the logs."""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime

import httpx
import pytest
from broadcast_helpers import T0, TEXT, Clock, channels, configured, dispatch, rows_of, subscriber
from console_helpers import make_user, served, session_cookie

from bot.app import CareBridge, Interpreter, load_flows
from bot.auth import Auth
from bot.broadcasts.console import READ, WRITE, pages
from bot.broadcasts.service import Broadcasts
from bot.config import Config
from bot.console import ROUTE_ROLES
from bot.flow import Library
from bot.store import BroadcastStatus, OutboxStatus, Role, SqlStore
from bot.web import create_app

PASSWORD = "a long enough password"
PHONES = ("+15550000001", "+15550000002", "+15550000003")
HINDI_PHONE = "+919800000004"
WA_PHONE = "+919800000005"


@dataclass
class Site:
    bridge: CareBridge
    clock: Clock
    clients: dict[str, httpx.Client]  # username -> a logged-in browser
    csrf: dict[str, str]

    @property
    def store(self) -> SqlStore:
        store = self.bridge.store
        assert isinstance(store, SqlStore)
        return store

    @property
    def svc(self) -> Broadcasts:
        return build(self)

    def post(self, who: str, path: str, data: dict[str, str] | None = None) -> httpx.Response:
        return self.clients[who].post(path, data={"csrf": self.csrf[who], **(data or {})})


def build(site: Site) -> Broadcasts:
    from bot.app import build_broadcasts

    return build_broadcasts(site.bridge.config, site.bridge.store, site.clock)


class Unread:
    """The interpreter: broadcasts never read a message (and no warm-up to wait for)."""

    def interpret(self, text: str, expecting: object, language: str = "en") -> object:
        raise AssertionError("no message is interpreted on the broadcast pages")


@pytest.fixture(scope="module")
def parts(config: Config) -> tuple[Library, Interpreter]:
    """Flows loaded once for the module (no test sends a message)."""
    return load_flows(configured(config, languages=["en", "hi"])), Unread()  # type: ignore[return-value]


@contextmanager
def running(base: Config, url: str, parts: tuple[Library, Interpreter]) -> Iterator[Site]:
    """The console on a new database: five subscribers (one in Hindi, one on WhatsApp), one
    without consent, one opted out; coordinators alice and bob, clinician carol, admin root."""
    clock = Clock(T0)  # 16:00 UTC: not quiet for UTC recipients
    storage = base.storage.model_copy(update={"url": url})
    config = configured(base.model_copy(update={"storage": storage}), languages=["en", "hi"])
    library, interpreter = parts
    bridge = CareBridge(config, library=library, interpreter=interpreter, clock=clock)
    auth = Auth(bridge.store, config.console, clock=clock, env={})
    store = bridge.store
    assert isinstance(store, SqlStore)
    for phone in PHONES:
        subscriber(store, "sms", phone)
    subscriber(store, "sms", HINDI_PHONE, language="hi")
    subscriber(store, "whatsapp", WA_PHONE)
    subscriber(store, "sms", "+15550000008", consent=False)
    opted = subscriber(store, "sms", "+15550000009")
    store.update_contact(opted, opted_out=True, now=T0)
    clients, csrf = {}, {}
    for name, role in (
        ("alice", "coordinator"),
        ("bob", "coordinator"),
        ("carol", "clinician"),
        ("root", "admin"),
    ):
        user = make_user(store, name, role, PASSWORD)
        cookies = session_cookie(auth, user)
        login = auth.session_for(next(iter(cookies.values())))
        assert login is not None
        csrf[name] = login.csrf
        clients[name] = httpx.Client(cookies=cookies, follow_redirects=False, timeout=10)
    app = create_app(config, bridge=bridge, env={}, senders={}, dispatch=False, schedule=False)
    with served(app) as url:
        for client in clients.values():
            client.base_url = httpx.URL(url)
        yield Site(bridge, clock, clients, csrf)
    for client in clients.values():
        client.close()
    bridge.close()


@pytest.fixture(scope="module")
def site(
    config: Config, parts: tuple[Library, Interpreter], module_store_url: str
) -> Iterator[Site]:
    """Shared by the tests that only add broadcasts of their own (and read only those)."""
    with running(config, module_store_url, parts) as shared:
        yield shared


@pytest.fixture
def fresh(config: Config, parts: tuple[Library, Interpreter], store_url: str) -> Iterator[Site]:
    """For a test that changes the subscribers."""
    with running(config, store_url, parts) as own:
        yield own


FORM = {
    "name": "Testing centre",
    "text_en": TEXT,
    "text_hi": "टाउन हॉल में मुफ्त जांच",
    "whatsapp_template": "advice",
    "when": "now",
}


def create(site: Site, who: str = "alice", **fields: str) -> int:
    response = site.post(who, "/console/broadcasts", {**FORM, **fields})
    assert response.status_code == 303, response.text
    location = response.headers["location"]
    match = re.fullmatch(r"/console/broadcasts/(\d+)/preview", location)
    assert match, location
    return int(match[1])


def send(site: Site, broadcast_id: int, **fields: str) -> httpx.Response:
    """Alice presses Send; the fan-out runs after the response, so wait for it to finish."""
    response = site.post("alice", f"/console/broadcasts/{broadcast_id}/send", fields)
    deadline = time.monotonic() + 5
    while site.svc.get(broadcast_id).status is BroadcastStatus.SENDING:
        assert time.monotonic() < deadline, "the fan-out did not finish"
        time.sleep(0.01)
    return response


def approved(site: Site) -> int:
    broadcast_id = create(site)
    assert site.post("bob", f"/console/broadcasts/{broadcast_id}/approve").status_code == 303
    return broadcast_id


# -- the route table ------------------------------------------------------------------------------


def test_every_broadcast_route_is_in_the_role_table(site: Site) -> None:
    for method, path, roles, _, _ in pages():
        assert ROUTE_ROLES[(method, path)] == roles, (method, path)
        assert roles in (READ, WRITE)
        if method == "POST":
            assert roles == WRITE, path  # every change: coordinators and admins only
    assert frozenset({Role.COORDINATOR, Role.ADMIN}) == WRITE and frozenset(Role) == READ


def test_a_clinician_reads_broadcasts_but_cannot_create_approve_send_or_stop(site: Site) -> None:
    broadcast_id = create(site)
    carol = site.clients["carol"]
    assert carol.get("/console/broadcasts").status_code == 200
    page = carol.get(f"/console/broadcasts/{broadcast_id}")
    assert page.status_code == 200 and "Read-only" in page.text and 'id="approve"' not in page.text
    assert carol.get("/console/broadcasts/new").status_code == 403
    for action in ("approve", "send", "cancel", "correct"):
        refused = site.post(
            "carol", f"/console/broadcasts/{broadcast_id}/{action}", {"confirm": "1"}
        )
        assert refused.status_code == 403, action
    assert site.post("carol", "/console/broadcasts", FORM).status_code == 403
    assert site.svc.get(broadcast_id).status is BroadcastStatus.DRAFT


def test_a_coordinator_lands_on_the_broadcasts(site: Site) -> None:
    assert site.clients["alice"].get("/console").headers["location"] == "/console/broadcasts"


# -- create ----------------------------------------------------------------------------------------


def test_the_form_becomes_a_draft_with_audience_schedule_and_template(site: Site) -> None:
    broadcast_id = create(
        site,
        sms_en="Free testing, town hall, 9-5",
        regions="Pune, Nashik",
        tags="volunteers",
        channel_sms="1",
        condition_diabetes="1",
        language_hi="1",
        urgent="1",
        when="at",
        send_at="2024-05-02T09:30",
        send_tz="Asia/Kolkata",
    )
    row = site.svc.get(broadcast_id)
    assert row.status is BroadcastStatus.DRAFT and row.created_by_name == "alice"
    assert row.audience.regions == ("nashik", "pune") and row.audience.tags == ("volunteers",)
    assert row.audience.channels == ("sms",) and row.audience.conditions == ("diabetes",)
    assert row.audience.languages == ("hi",) and row.urgent
    assert row.send_at == datetime(2024, 5, 2, 4, 0, tzinfo=UTC)  # 09:30 in Kolkata
    assert row.whatsapp_template == "advice"
    texts = {t.language: t for t in site.store.broadcast_texts(broadcast_id)}
    assert texts["en"].sms_text == "Free testing, town hall, 9-5" and texts["hi"].text
    [entry] = [e for e in site.store.audit_log() if e.detail == {"broadcast": broadcast_id}]
    assert entry.username == "alice" and entry.detail == {"broadcast": broadcast_id}


def test_names_and_texts_are_shown_escaped(site: Site) -> None:
    broadcast_id = create(site, name="<script>alert(2)</script>", text_en="<img src=x onerror=1>")
    for path in ("", "/preview"):
        page = site.clients["bob"].get(f"/console/broadcasts/{broadcast_id}{path}").text
        assert "<script>alert(2)" not in page and "&lt;script&gt;alert(2)" in page
        assert "<img src=x" not in page and "&lt;img src=x onerror=1&gt;" in page


def test_a_recurring_broadcast_from_the_form(site: Site) -> None:
    broadcast_id = create(
        site, when="every", every_days="7", every_time="09:00", every_tz="Asia/Kolkata"
    )
    row = site.svc.get(broadcast_id)
    assert row.recurrence is not None and row.recurrence["every_days"] == 7
    assert row.timezone == "Asia/Kolkata" and row.next_due_at is not None
    page = site.clients["alice"].get(f"/console/broadcasts/{broadcast_id}")
    assert "every 7 days at 09:00 Asia/Kolkata" in page.text and "Occurrences" in page.text


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"text_en": ""}, "a text in en (languages[0] in the config) is required"),
        ({"name": " "}, "name: give the broadcast a name"),
        ({"when": "at", "send_at": "tomorrow"}, "send at: &#39;tomorrow&#39; is not a date"),
        ({"when": "every", "every_days": "0"}, "repeat every: a whole number of days"),
        ({"sms_en": "x" * 500}, "over broadcast.max_sms_segments"),
    ],
)
def test_a_form_with_problems_comes_back_with_them_and_the_values(
    site: Site, fields: dict[str, str], message: str
) -> None:
    before = [r.name for r in site.svc.recent()].count("Testing centre")
    response = site.post("alice", "/console/broadcasts", {**FORM, **fields})
    assert response.status_code == 400
    assert message in response.text
    assert "Testing centre" in response.text or fields.get("name")
    assert [r.name for r in site.svc.recent()].count("Testing centre") == before


def test_the_live_check_gives_the_services_numbers(site: Site) -> None:
    long_text = "Testing at the town hall " * 8  # 199 characters once trimmed: 2 GSM-7 segments
    data = {"text_en": "Café “open” now 😷", "sms_en": long_text, "whatsapp_template": "advice"}
    response = site.post("alice", "/api/broadcasts/check", data)
    assert response.status_code == 200
    checks = response.json()["checks"]
    expected = site.svc.check({"en": data["text_en"]}, {"en": long_text}, "advice")
    by = {c["channel"]: c for c in checks["en"]}
    assert set(by) == {c.channel for c in expected} == {"sms", "whatsapp", "telegram"}
    for want in expected:
        got = by[want.channel]
        assert (got["segments"], got["encoding"], got["cost"]) == (
            want.segments,
            want.encoding,
            want.cost,
        )
    assert by["sms"]["line"] == "SMS: 199 characters · GSM-7 · 2 segments · 0.0158 USD each"
    assert by["sms"]["notes"] and checks["hi"] == []
    emoji = site.post("alice", "/api/broadcasts/check", {"text_en": "Stay home 😷"})
    [sms] = [c for c in emoji.json()["checks"]["en"] if c["channel"] == "sms"]
    assert sms["encoding"] == "ucs2" and "UCS-2" in sms["line"]


def test_the_live_check_needs_the_csrf_token(site: Site) -> None:
    response = site.clients["alice"].post("/api/broadcasts/check", data={"text_en": "hi"})
    assert response.status_code == 403


# -- preview and approval --------------------------------------------------------------------------


def test_the_preview_counts_recipients_per_channel_and_language_and_who_is_left_out(
    site: Site,
) -> None:
    broadcast_id = create(site)
    page = site.clients["alice"].get(f"/console/broadcasts/{broadcast_id}/preview")
    assert page.status_code == 200
    preview = site.svc.preview(broadcast_id)
    by = {c.channel: c for c in preview.channels}
    assert by["sms"].languages == {"en": 3, "hi": 1} and by["whatsapp"].recipients == 1
    assert 'id="preview-recipients">5<' in page.text
    assert "en 3, hi 1" in page.text
    assert "1 opted out (STOP) · 1 without broadcast consent" in page.text
    assert f">{preview.cost:,.2f}<" in page.text and "to finish, done by" in page.text


def test_the_creator_sees_why_they_cannot_approve_and_is_refused(site: Site) -> None:
    broadcast_id = create(site)
    page = site.clients["alice"].get(f"/console/broadcasts/{broadcast_id}/preview")
    assert 'id="approve" disabled' in page.text
    assert "You created this broadcast, so you cannot approve it" in page.text
    refused = site.post("alice", f"/console/broadcasts/{broadcast_id}/approve")
    assert refused.status_code == 409
    assert "it needs a second person" in refused.text
    bob = site.clients["bob"].get(f"/console/broadcasts/{broadcast_id}/preview")
    assert '<button type="submit" class="primary" id="approve">' in bob.text
    assert site.post("bob", f"/console/broadcasts/{broadcast_id}/approve").status_code == 303
    row = site.svc.get(broadcast_id)
    assert row.status is BroadcastStatus.APPROVED and row.approved_by_name == "bob"


def test_an_admin_may_approve_too(site: Site) -> None:
    broadcast_id = create(site)
    assert site.post("root", f"/console/broadcasts/{broadcast_id}/approve").status_code == 303
    assert site.svc.get(broadcast_id).approved_by_name == "root"


def test_a_forged_csrf_token_approves_nothing(site: Site) -> None:
    broadcast_id = create(site)
    bob = site.clients["bob"]
    response = bob.post(f"/console/broadcasts/{broadcast_id}/approve", data={"csrf": "forged"})
    assert response.status_code == 403
    assert site.svc.get(broadcast_id).status is BroadcastStatus.DRAFT


# -- send, stats, kill switch ----------------------------------------------------------------------


def test_sending_fans_out_and_the_stats_count_it(site: Site) -> None:
    broadcast_id = approved(site)
    response = send(site, broadcast_id)
    assert response.headers["location"] == f"/console/broadcasts/{broadcast_id}"
    assert site.svc.get(broadcast_id).status is BroadcastStatus.SENT  # fanned out after the 303
    assert len(rows_of(site.store, broadcast_id)) == 5
    dispatch(site.store, site.clock, channels())
    stats = site.clients["alice"].get(f"/api/broadcasts/{broadcast_id}/stats").json()
    assert stats["status"] == "sent" and stats["done"] and stats["enqueued"] == 5
    by = {c["channel"]: c for c in stats["channels"]}
    assert by["sms"]["sent"] == 4 and by["whatsapp"]["sent"] == 1 and by["total"]["total"] == 5
    assert [s["key"] for s in stats["chart"]["bars"][0]["segments"]] == ["sent"]
    page = site.clients["carol"].get(f"/console/broadcasts/{broadcast_id}")
    assert '<svg id="stats-chart"' in page.text and "4 sent" in page.text
    actions = [e.action for e in site.store.audit_log() if e.detail == {"broadcast": broadcast_id}]
    assert actions == ["broadcast_send", "broadcast_approve", "broadcast_create"]


def test_a_scheduled_broadcast_offers_send_now_instead(site: Site) -> None:
    broadcast_id = create(site, when="at", send_at="2024-05-03T09:00", send_tz="UTC")
    site.post("bob", f"/console/broadcasts/{broadcast_id}/approve")
    page = site.clients["alice"].get(f"/console/broadcasts/{broadcast_id}")
    assert "Send now instead" in page.text and "it starts by itself then" in page.text
    early = send(site, broadcast_id, early="1")
    assert early.status_code == 303
    assert site.svc.get(broadcast_id).status is BroadcastStatus.SENT


def test_sending_a_draft_is_refused_with_the_reason(site: Site) -> None:
    broadcast_id = create(site)
    response = send(site, broadcast_id)
    assert response.status_code == 409
    assert "is not approved yet" in response.text


def test_the_kill_switch_asks_first_then_stops_every_queued_message(site: Site) -> None:
    broadcast_id = approved(site)
    send(site, broadcast_id)
    page = site.clients["bob"].get(f"/console/broadcasts/{broadcast_id}")
    assert "Kill switch: stop sending" in page.text
    ask = site.post("bob", f"/console/broadcasts/{broadcast_id}/cancel")
    assert ask.status_code == 200 and "Yes, stop sending now" in ask.text
    assert "<b>5</b> queued messages will not be sent" in ask.text
    assert site.svc.get(broadcast_id).status is BroadcastStatus.SENT  # nothing changed yet
    done = site.post("bob", f"/console/broadcasts/{broadcast_id}/cancel", {"confirm": "1"})
    assert done.headers["location"] == f"/console/broadcasts/{broadcast_id}?stopped=5"
    assert {r.status for r in rows_of(site.store, broadcast_id)} == {OutboxStatus.CANCELLED}
    shown = site.clients["bob"].get(done.headers["location"])
    assert "Stopped: 5 queued messages will not be sent" in shown.text
    assert "stopped by bob" in shown.text
    assert site.store.audit_log()[0].action == "broadcast_cancel"


def test_a_draft_can_be_cancelled_and_a_finished_one_has_no_kill_switch(site: Site) -> None:
    draft = create(site)
    site.post("alice", f"/console/broadcasts/{draft}/cancel", {"confirm": "1"})
    assert site.svc.get(draft).status is BroadcastStatus.CANCELLED
    finished = approved(site)
    send(site, finished)
    dispatch(site.store, site.clock, channels())
    page = site.clients["alice"].get(f"/console/broadcasts/{finished}")
    assert 'id="kill"' not in page.text
    late = site.post("alice", f"/console/broadcasts/{finished}/cancel", {"confirm": "1"})
    assert late.status_code == 409 and "nothing left to stop" in late.text


def test_the_csv_holds_counts_only(site: Site) -> None:
    broadcast_id = approved(site)
    send(site, broadcast_id)
    dispatch(site.store, site.clock, channels())
    csv = site.clients["carol"].get(f"/console/broadcasts/{broadcast_id}/stats.csv")
    assert csv.headers["content-type"].startswith("text/csv")
    assert f'filename="broadcast-{broadcast_id}-stats.csv"' in csv.headers["content-disposition"]
    assert csv.text == site.svc.stats(broadcast_id).to_csv()
    assert not any(phone[-7:] in csv.text for phone in PHONES) and "town hall" not in csv.text


def test_an_unknown_broadcast_is_404(site: Site) -> None:
    alice = site.clients["alice"]
    assert alice.get("/console/broadcasts/999").status_code == 404
    assert alice.get("/api/broadcasts/999/stats").status_code == 404
    assert site.post("alice", "/console/broadcasts/999/approve").status_code == 404


# -- corrections ---------------------------------------------------------------------------------


def test_a_correction_goes_to_exactly_the_people_the_original_reached(fresh: Site) -> None:
    site = fresh
    original = approved(site)
    send(site, original)
    dispatch(site.store, site.clock, channels())
    latecomer = subscriber(site.store, "sms", "+15550000010")  # subscribed after it went
    form = site.clients["alice"].get(f"/console/broadcasts/{original}/correct")
    assert form.status_code == 200 and "exactly the 5 people" in form.text
    assert 'value="Correction: Testing centre"' in form.text
    response = site.post(
        "alice",
        f"/console/broadcasts/{original}/correct",
        {"name": "Correction", "text_en": "Correction: the town hall is open until Saturday."},
    )
    assert response.status_code == 303
    correction = int(response.headers["location"].split("/")[3])
    row = site.svc.get(correction)
    assert row.correction_of == original and row.whatsapp_template == "advice"
    site.post("bob", f"/console/broadcasts/{correction}/approve")
    send(site, correction)
    reached = {r.outbound.contact_id for r in rows_of(site.store, original)}
    assert {r.outbound.contact_id for r in rows_of(site.store, correction)} == reached
    assert latecomer not in reached


def test_a_correction_of_a_broadcast_still_sending_says_stop_it_first(site: Site) -> None:
    original = approved(site)
    send(site, original)  # fanned out, nothing sent yet
    page = site.clients["alice"].get(f"/console/broadcasts/{original}")
    assert 'id="correct"' not in page.text and "stop it first (kill switch)" in page.text
    form = site.clients["alice"].get(f"/console/broadcasts/{original}/correct")
    assert "<b>Not yet:</b> 5 messages are still queued" in form.text
    refused = site.post("alice", f"/console/broadcasts/{original}/correct", {"text_en": "Fix"})
    assert refused.status_code == 400
    assert "still has 5 messages queued" in refused.text


# -- logs ------------------------------------------------------------------------------------------


def test_logs_carry_ids_never_text_or_numbers(site: Site, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    broadcast_id = approved(site)
    site.post("alice", "/api/broadcasts/check", {"text_en": TEXT})
    send(site, broadcast_id)
    dispatch(site.store, site.clock, channels())
    site.post("alice", f"/console/broadcasts/{broadcast_id}/cancel", {"confirm": "1"})
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert f"broadcast={broadcast_id}" in logged
    assert "town hall" not in logged and "टाउन" not in logged
    assert not any(phone in logged or phone[-7:] in logged for phone in (*PHONES, WA_PHONE))
