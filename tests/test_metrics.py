"""GET /metrics (docs/operations.md): after real traffic through the simulator it parses with
the Prometheus text parser and has the expected families with sane values; who may read it
follows `metrics.access`; labels never carry text or numbers."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx
from console_helpers import make_user, served
from fakes import wait_for
from prometheus_client.parser import text_string_to_metric_families

from bot.api.service import ApiTokens
from bot.app import CareBridge
from bot.config import Config
from bot.flow import Library
from bot.messages import Outbound
from bot.web import create_app

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(url: str, **headers: str) -> tuple[set[str], Samples]:
    answer = httpx.get(f"{url}/metrics", headers=headers)
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("text/plain")
    families = list(text_string_to_metric_families(answer.text))
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value for f in families for s in f.samples
    }
    return {f.name for f in families}, samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_metrics_after_traffic_parse_and_make_sense(tmp_config: Config, lib: Library) -> None:
    bridge = CareBridge(tmp_config, library=lib)
    app = create_app(tmp_config, bridge=bridge, env={})
    sim = "sim-metrics-01"
    with served(app) as url:
        for text in ("hi", "1", "my lips are blue and I cannot breathe"):
            assert httpx.post(f"{url}/sim/api/send", json={"address": sim, "text": text}).is_success
        # a reply for a channel that is off stays queued: the depth and age gauges show it
        bridge.store.enqueue(Outbound("sms", "+919800000099", "x", kind="reply"), bridge.clock())

        def sent_three() -> bool:
            _, samples = scrape(url)
            return (
                value(samples, "carebridge_outbox_sends_total", channel="web", result="sent") >= 3
                and value(samples, "carebridge_sweep_duration_seconds_count", sweep="checkins") >= 1
            )

        wait_for(sent_three, timeout=30)
        [ticket] = bridge.tickets.queue()
        bridge.tickets.claim(
            ticket.id, make_user(bridge.store, "dr_a", "clinician", "pass phrase 1")
        )
        names, samples = scrape(url)

    assert {
        "carebridge_inbound_messages",
        "carebridge_outbox_sends",
        "carebridge_nlu_latency_seconds",
        "carebridge_sweep_duration_seconds",
        "carebridge_escalation_claim_wait_seconds",
        "carebridge_outbox_queue_depth",
        "carebridge_outbox_oldest_age_seconds",
        "carebridge_escalations_open",
        "carebridge_escalation_oldest_wait_seconds",
    } <= names
    assert (
        value(samples, "carebridge_inbound_messages_total", channel="web", outcome="handled") == 3
    )
    assert value(samples, "carebridge_nlu_latency_seconds_count") >= 3
    assert value(samples, "carebridge_nlu_latency_seconds_sum") > 0
    for sweep in ("checkins", "deadlines", "broadcasts", "retention"):
        assert value(samples, "carebridge_sweep_duration_seconds_count", sweep=sweep) >= 1
    assert value(samples, "carebridge_outbox_queue_depth", channel="sms", lane="conversation") == 1
    assert (
        value(samples, "carebridge_outbox_oldest_age_seconds", channel="sms", lane="conversation")
        >= 0
    )
    assert (
        value(samples, "carebridge_escalations_open", status="claimed", priority="emergency") == 1
    )
    assert (
        value(samples, "carebridge_escalation_claim_wait_seconds_count", priority="emergency") == 1
    )
    labels = " ".join(v for (_, ls) in samples for _, v in ls)
    assert sim not in labels and "lips" not in labels and "+91" not in labels


def test_who_may_read_metrics_follows_metrics_access(tmp_config: Config, lib: Library) -> None:
    config = tmp_config.model_copy(
        update={"metrics": tmp_config.metrics.model_copy(update={"access": "token"})}
    )
    bridge = CareBridge(config, library=lib)
    app = create_app(config, bridge=bridge, env={}, senders={}, dispatch=False, schedule=False)
    service = ApiTokens(bridge.store, lambda: datetime.now(UTC))
    _, metrics_token = service.create("prometheus", ("metrics:read",), "cli")
    _, other_token = service.create("emr", ("contacts:read",), "cli")
    with served(app) as url:
        assert httpx.get(f"{url}/metrics").status_code == 401  # even from loopback
        wrong = httpx.get(f"{url}/metrics", headers={"Authorization": f"Bearer {other_token}"})
        assert wrong.status_code == 401
        names, _ = scrape(url, Authorization=f"Bearer {metrics_token}")
        assert "carebridge_outbox_queue_depth" in names

    off = config.model_copy(
        update={"metrics": config.metrics.model_copy(update={"enabled": False})}
    )
    quiet = create_app(
        off, bridge=CareBridge(off, library=lib), env={}, senders={}, dispatch=False, schedule=False
    )
    with served(quiet) as url:
        assert httpx.get(f"{url}/metrics").status_code == 404


class _Quiet:
    """A channel that is on but never asked to send (dispatch is off)."""

    name = "sms"

    async def send(self, msg: Outbound) -> str:
        raise AssertionError("not expected")


def test_a_forged_webhook_is_counted_as_rejected(tmp_config: Config, lib: Library) -> None:
    bridge = CareBridge(tmp_config, library=lib)
    app = create_app(
        tmp_config,
        bridge=bridge,
        env={"TWILIO_AUTH_TOKEN": "secret"},
        senders={"sms": _Quiet()},
        dispatch=False,
        schedule=False,
    )
    with served(app) as url:
        form = {"From": "+919800000001", "Body": "hello", "MessageSid": "SM1"}
        unsigned = httpx.post(f"{url}/webhooks/twilio/sms", data=form)
        forged = httpx.post(
            f"{url}/webhooks/twilio/sms", data=form, headers={"X-Twilio-Signature": "bad"}
        )
        assert (unsigned.status_code, forged.status_code) == (403, 403)
        _, samples = scrape(url)
    assert (
        value(samples, "carebridge_inbound_messages_total", channel="sms", outcome="rejected") == 2
    )
    assert (
        value(samples, "carebridge_inbound_messages_total", channel="sms", outcome="handled") == 0
    )
