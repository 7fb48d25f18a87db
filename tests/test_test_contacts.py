"""The simulator is a development tool: on only on loopback (or when configured, with a
warning), rate-limited per client; its contacts are test contacts, kept out of on-call, counts,
exports and broadcasts unless asked for, and not held by quiet hours (nobody is asleep)."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from broadcast_helpers import T0, Clock, coordinators, rows_of, service, subscriber
from click.testing import CliRunner
from console_helpers import make_user, served, session_cookie

from bot import app as composition
from bot import enrollment, scheduler
from bot.app import CareBridge, build_broadcasts
from bot.broadcasts.service import Draft
from bot.cli_patients import patients
from bot.config import Config, EscalationConfig, OnCallConfig
from bot.messages import Inbound
from bot.store import Audience, CheckinKind, EnrollmentStatus, open_store
from bot.web import create_app

SIM = "sim-tester0001"
NIGHT = datetime(2024, 5, 1, 23, 30, tzinfo=UTC)  # in quiet hours (21:00-08:00 UTC)


def with_(config: Config, **sections: dict[str, Any]) -> Config:
    """`config` with some settings of some sections changed."""
    return config.model_copy(
        update={k: getattr(config, k).model_copy(update=v) for k, v in sections.items()}
    )


@contextmanager
def app_at(config: Config) -> Iterator[tuple[str, CareBridge]]:
    bridge = CareBridge(config)
    with served(create_app(config, bridge=bridge, env={})) as url:
        yield url, bridge


def test_on_a_public_bind_the_simulator_is_off_and_an_anonymous_post_gets_404(
    tmp_config: Config,
) -> None:
    public = with_(tmp_config, server={"host": "0.0.0.0"})
    assert not public.simulator_on()
    with app_at(public) as (url, bridge):
        post = httpx.post(f"{url}/sim/api/send", json={"address": SIM, "text": "can't breathe"})
        assert post.status_code == 404 and "simulator" not in post.text
        assert httpx.get(f"{url}/").status_code == 404
        assert httpx.get(f"{url}/sim/api/messages?address={SIM}").status_code == 404
        assert bridge.store.find_contact("web", SIM) is None
        assert bridge.store.escalations() == []


def test_simulator_enabled_turns_it_on_anywhere_with_a_warning(
    tmp_config: Config, caplog: pytest.LogCaptureFixture
) -> None:
    config = with_(tmp_config, server={"host": "0.0.0.0"}, simulator={"enabled": True})
    with caplog.at_level(logging.WARNING), app_at(config) as (url, _):
        assert httpx.post(f"{url}/sim/api/send", json={"address": SIM, "text": "hi"}).is_success
    assert any("simulator is on at 0.0.0.0" in r.getMessage() for r in caplog.records)
    off = with_(tmp_config, simulator={"enabled": False})  # and off even on loopback
    assert not off.simulator_on()
    assert composition.channels_off(off, {})["web"] == "simulator.enabled is false"


def test_the_simulator_api_is_rate_limited_per_client(tmp_config: Config) -> None:
    config = with_(tmp_config, simulator={"rate_limit": "3/minute"})
    with app_at(config) as (url, bridge):
        codes = [
            httpx.post(f"{url}/sim/api/send", json={"address": SIM, "text": f"hi {n}"}).status_code
            for n in range(5)
        ]
        assert codes == [200, 200, 200, 429, 429]
        contact = bridge.store.find_contact("web", SIM)
        assert contact is not None
        assert len([e for e in bridge.store.transcript(contact.id) if e.direction == "in"]) == 3


def red_flag(bridge: CareBridge, channel: str, address: str) -> int:
    bridge.handle(Inbound(channel, address, "I can't breathe", T0, f"{channel}-{address}"))
    contact = bridge.store.find_contact(channel, address)
    assert contact is not None
    return contact.id


def test_test_tickets_never_reach_on_call_nor_the_counts(tmp_config: Config) -> None:
    config = tmp_config.model_copy(
        update={
            "escalation": EscalationConfig(on_call=OnCallConfig(channel="sms", address="+1555"))
        }
    )
    bridge = CareBridge(config, clock=lambda: T0)
    sim, real = red_flag(bridge, "web", SIM), red_flag(bridge, "sms", "+919812345678")
    store = bridge.store
    assert store.contact_row(sim).test and not store.contact_row(real).test  # type: ignore[union-attr]
    on_call = [r for r in store.outbox() if r.outbound.address == "+1555"]
    assert len(on_call) == 1 and on_call[0].outbound.text.endswith("/console/tickets/2")
    bridge.tickets.sweep_deadlines(T0.replace(hour=17))  # later sweeps: still only the real one
    assert len([r for r in store.outbox() if r.outbound.address == "+1555"]) == 2
    [test_ticket] = store.escalations(contact_id=sim)
    assert test_ticket.announcements == 0
    assert [t.contact_id for t in bridge.tickets.queue()] == [real, sim]  # real patients first

    app = create_app(config, bridge=bridge, env={}, dispatch=False, schedule=False)
    coordinator = make_user(store, "cora", "coordinator", "a long enough password")
    clinician = make_user(store, "dr.rao", "clinician", "a long enough password")
    from bot.auth import Auth

    auth = Auth(store, config.console, clock=lambda: T0)
    with served(app, lifespan="off") as url:
        counts = httpx.get(f"{url}/api/overview", cookies=session_cookie(auth, coordinator))
        assert counts.json()["waiting"] == 1 and counts.json()["test"] == 1
        queue = httpx.get(f"{url}/api/queue", cookies=session_cookie(auth, clinician)).json()
        assert [(t["contact_id"], t["test"]) for t in queue["tickets"]] == [
            (real, False),
            (sim, True),
        ]


def test_patients_list_leaves_test_contacts_out_unless_asked(tmp_config: Config) -> None:
    bridge = CareBridge(tmp_config)
    for channel, address in (("web", SIM), ("sms", "+919812345678")):
        request = enrollment.EnrollRequest(
            channel=channel, address=address, conditions=("diabetes",), checkin_time="09:00",
            timezone="UTC",
        )  # fmt: skip
        scheduler.enroll(bridge, request, T0)
    bridge.close()
    run, obj = CliRunner(), {"config": tmp_config}
    listed = run.invoke(patients, ["list", "--json"], obj=obj)
    assert [r["channel"] for r in json.loads(listed.output)] == ["sms"]
    everyone = run.invoke(patients, ["list", "--json", "--include-test"], obj=obj)
    assert sorted(r["channel"] for r in json.loads(everyone.output)) == ["sms", "web"]


def test_broadcasts_reach_test_contacts_only_when_asked(tmp_config: Config) -> None:
    store = open_store(tmp_config.storage_url())
    coordinators(store)
    real = subscriber(store, "sms", "+919812345678", timezone="Asia/Kolkata")  # 21:30: quiet
    sim = store.get_or_create_contact("web", SIM, T0, "en").id  # never said yes or no
    svc = service(store, tmp_config, Clock())
    assert "web" in svc.channels and svc.include_test_default  # the simulator is on (loopback)
    for include, reached in ((False, {real}), (True, {real, sim})):
        row = svc.create(
            Draft(
                name="advice", texts={"en": "Drink water."}, audience=Audience(include_test=include)
            ),
            by="alice",
        )
        svc.approve(row.id, by="bob")
        svc.send(row.id, by="alice")
        svc.fan_out(row.id)
        rows = rows_of(store, row.id)
        assert {r.outbound.contact_id for r in rows} == reached
    # the test contact's row goes at once; the real one waits for 08:00 in Kolkata
    due = {r.outbound.contact_id: r.next_attempt_at for r in rows}
    assert due[sim] == T0 and due[real] > T0
    # on a public bind the simulator is off: no web channel, test contacts left out by default
    public = build_broadcasts(with_(tmp_config, server={"host": "0.0.0.0"}), store, Clock())
    assert "web" not in public.channels and not public.include_test_default
    store.close()


def test_a_preview_names_the_channels_that_are_off_and_why(tmp_config: Config) -> None:
    store = open_store(tmp_config.storage_url())
    coordinators(store)
    subscriber(store, "sms", "+919812345678")
    store.get_or_create_contact("web", SIM, T0, "en")
    svc = build_broadcasts(tmp_config, store, Clock(), off=composition.channels_off(tmp_config, {}))
    row = svc.create(
        Draft(name="advice", texts={"en": "Drink water."}, audience=Audience(include_test=True)),
        by="alice",
    )
    preview = svc.preview(row.id)
    by = {c.channel: c for c in preview.channels}
    assert by["sms"].off == "TWILIO_ACCOUNT_SID / TWILIO_AUTH_TOKEN not set"
    assert by["web"].off is None and preview.sendable == 1 and preview.recipients == 2
    notes = " ".join(preview.notes)
    assert "sms is off (TWILIO_ACCOUNT_SID / TWILIO_AUTH_TOKEN not set)" in notes
    assert "telegram is off (TELEGRAM_BOT_TOKEN not set)" in notes
    assert preview.finish_at == by["web"].finish_at  # no promise for the channels that are off
    store.close()


def test_quiet_hours_hold_neither_a_test_contact_nor_a_check_in_asked_for_by_hand(
    tmp_config: Config,
) -> None:
    bridge = CareBridge(tmp_config, clock=lambda: NIGHT)
    store = bridge.store

    def enroll(channel: str, address: str) -> scheduler.Enrolled:
        request = enrollment.EnrollRequest(
            channel=channel, address=address, conditions=("diabetes",), checkin_time="09:00",
            timezone="UTC", language="en",
        )  # fmt: skip
        return scheduler.enroll(bridge, request, NIGHT)

    assert enroll("web", SIM).started  # the simulator: the consent question goes now
    real = enroll("sms", "+919812345678")
    assert not real.started and real.not_before is not None and real.not_before.hour == 8
    # once a real patient agreed, a check-in a coordinator asks for now goes now, at night too
    store.save_enrollment(
        real.contact_id, status=EnrollmentStatus.ACTIVE, conditions=("diabetes",),
        checkin_time="09:00", timezone="UTC", team=None, baselines={}, now=NIGHT,
        enrolled_by="test",
    )  # fmt: skip
    store.update_contact(real.contact_id, consent_care=True, now=NIGHT)
    for row in store.checkins(real.contact_id, kind=CheckinKind.ENROLLMENT):
        store.resolve_checkin(row.id, "cancelled", NIGHT, expected=row.status)
    report = scheduler.checkin_now(bridge, real.contact_id, "diabetes_checkin", NIGHT)
    assert report.started == 1
    bridge.close()


def test_patients_commands_say_where_the_message_will_appear(
    tmp_config: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("TWILIO_ACCOUNT_SID", "TWILIO_AUTH_TOKEN", "TELEGRAM_BOT_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    run, obj = CliRunner(), {"config": tmp_config}
    sms = run.invoke(
        patients,
        ["enroll", "--channel", "sms", "--address", "+919812345678", "--conditions", "copd"],
        obj=obj,
    )
    assert sms.exit_code == 0, sms.output
    assert (
        "see it in: nowhere yet: sms is off (TWILIO_ACCOUNT_SID / TWILIO_AUTH_TOKEN not set)"
        in (sms.output)
    )
    web = run.invoke(
        patients, ["enroll", "--channel", "web", "--address", SIM, "--conditions", "copd"], obj=obj
    )
    assert web.exit_code == 0, web.output
    assert f"see it in: the browser simulator at {tmp_config.server.public_url}/" in web.output
    wrong = run.invoke(
        patients, ["enroll", "--channel", "web", "--address", "x1", "--conditions", "copd"], obj=obj
    )
    assert wrong.exit_code != 0 and "a simulator address starts with sim-" in wrong.output
