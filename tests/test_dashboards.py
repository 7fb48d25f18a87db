"""The console dashboards on a seeded store (tests/dash_seed.py): counts per level, day and region,
red flags by kind, time to claim p50/p90 against the deadlines, check-in adherence and missed
streaks, broadcast reach; every chart's CSV has exactly the numbers of its table and its SVG; and
who may see which dashboard."""

from __future__ import annotations

import csv
import html
import io
import random
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx
import pytest
from console_helpers import make_user, served
from dash_seed import NOW, seed
from pg import with_store

from bot.app import CareBridge
from bot.auth import SESSION_COOKIE, Auth
from bot.config import Config, load_config
from bot.console_view import concept_labels
from bot.dashboards.service import BOARD, BOARDS, Dashboards, Filters, Table, percentile, runs
from bot.scheduler import missed_streak
from bot.store import CheckinKind, CheckinRow, CheckinStatus, Role
from bot.web import create_app

PASSWORD = "a long enough password"


@dataclass
class Site:
    url: str
    bridge: CareBridge
    cookies: dict[str, dict[str, str]]

    def get(self, role: str | None, path: str) -> httpx.Response:
        cookies = self.cookies[role] if role else {}
        with httpx.Client(base_url=self.url, cookies=cookies, timeout=10) as client:
            return client.get(path, follow_redirects=False)


@pytest.fixture(scope="module")
def site(module_store_url: str) -> Iterator[Site]:
    base = load_config(Path(__file__).resolve().parent.parent / "config.yaml", env={})
    config = with_store(base, module_store_url)
    bridge = CareBridge(config, clock=lambda: NOW)
    seed(bridge.store, config)  # type: ignore[arg-type]
    app = create_app(config, bridge=bridge, env={}, senders={}, dispatch=False, schedule=False)
    auth = Auth(bridge.store, config.console, clock=lambda: NOW, env={})
    cookies = {}
    for role in Role:
        user = make_user(bridge.store, f"dash_{role}", role, PASSWORD)
        token, _ = auth.start_session(user)
        cookies[role.value] = {SESSION_COOKIE: token}
    with served(app) as url:
        yield Site(url, bridge, cookies)
    bridge.close()


def dashboards(site: Site) -> Dashboards:
    bridge = site.bridge
    return Dashboards(bridge.store, bridge.config, lambda: NOW, ZoneInfo("UTC"), {})  # type: ignore[arg-type]


# -- the numbers ------------------------------------------------------------------------------


def test_triage_outcomes_are_counted_per_level_day_and_region(site: Site) -> None:
    dash = dashboards(site).build("triage", Filters(7), Role.CLINICIAN)
    levels = dash.table("levels")
    assert [day for day, _ in levels.rows][-3:] == ["2026-06-15", "2026-06-16", "2026-06-17"]
    assert len(levels.rows) == 7  # every day of the range, empty ones too
    assert levels.value("2026-06-17", "emergency_ambulance") == 1
    assert levels.value("2026-06-17", "self_care") == 1
    assert levels.value("2026-06-17", "emergency") == 0  # the test contact's is left out
    assert levels.value("2026-06-16", "consultation_24") == 1
    assert levels.value("2026-06-15", "consultation") == 1
    assert sum(sum(v) for _, v in levels.rows) == 5  # six conversations, one without an outcome
    regions = dash.table("regions")
    assert dict(regions.rows) == {
        "north": (1, 0, 1, 0, 1),
        "south": (0, 0, 0, 0, 1),
        "(no region)": (0, 0, 0, 1, 0),
    }
    flags = dict(dash.table("flags").rows)
    assert flags == {"Severe dyspnea": (1,), "Cyanosis": (1,), "Chest pain": (1,)}
    month = dashboards(site).build("triage", Filters(30), Role.CLINICIAN)
    assert month.table("levels").value("2026-06-07", "emergency") == 1
    assert dict(month.table("flags").rows)["Cyanosis"] == (2,)
    quarter = dashboards(site).build("triage", Filters(90), Role.CLINICIAN).table("levels")
    assert quarter.label == "Week from" and quarter.rows[-1][0] == "2026-06-15"  # a Monday
    assert sum(sum(v) for _, v in quarter.rows) == 7
    north = dashboards(site).build("triage", Filters(7, "north"), Role.CLINICIAN)
    assert [r for r, _ in north.table("regions").rows] == ["north"]
    assert sum(sum(v) for _, v in north.table("levels").rows) == 3


def test_time_to_claim_p50_and_p90_per_priority_against_the_deadlines(site: Site) -> None:
    dash = dashboards(site).build("escalations", Filters(7), Role.COORDINATOR)
    claim = dict(dash.table("claim").rows)
    # (opened, claimed, p50, p90, deadline, claimed within it): claims after 2, 4, 10 minutes
    # (emergency, deadline 0), 30 and 90 (urgent, deadline 60); nearest rank.
    assert claim["emergency"] == (3, 3, 4, 10, 0, 0)
    assert claim["urgent"] == (2, 2, 30, 90, 60, 1)
    assert claim["routine"] == (2, 0, None, None, 480, 0)  # both still waiting: not timed
    waiting = dict(dash.table("waiting").rows)
    assert waiting["routine"] == (1, 1)  # 1 h (in time) and 10 h (past the 8 h deadline)
    assert [t.value for t in dash.tiles[:3]] == ["2", "1", "10 h"]
    south = dashboards(site).build("escalations", Filters(7, "south"), Role.COORDINATOR)
    assert dict(south.table("claim").rows)["emergency"] == (1, 1, 4, 4, 0, 0)


def test_percentiles_are_nearest_rank() -> None:
    assert percentile([10, 2, 4], 50) == 4 and percentile([10, 2, 4], 90) == 10
    assert percentile(list(range(1, 101)), 90) == 90 and percentile([7], 50) == 7
    with pytest.raises(ValueError):
        percentile([], 50)


def test_checkin_adherence_and_missed_streaks(site: Site) -> None:
    dash = dashboards(site).build("checkins", Filters(7), Role.CLINICIAN)
    adherence = dict(dash.table("adherence").rows)
    assert adherence["2026-06-16"] == (1, 1, 1, 66.7)  # c1 late, c2 missed, c3 answered
    assert adherence["2026-06-14"] == (0, 0, 2, 0)
    assert adherence["2026-06-17"] == (0, 0, 0, None)  # nothing due yet today
    totals = [sum(v[i] or 0 for _, v in adherence.items()) for i in range(3)]
    assert totals == [5, 1, 6]
    assert dash.tiles[0].value == "50%"  # (5 answered + 1 late) of 12
    assert dict(dash.table("streaks").rows)["3"] == (2,)  # c1 and c2 missed 3 in a row
    assert sum(v[0] for _, v in dash.table("streaks").rows) == 2
    assert dash.tiles[3].value == "1"  # c2 is missing its last three now


def test_missed_runs_end_where_the_scheduler_says_they_do() -> None:
    """`runs` counts the current run exactly as bot.scheduler.missed_streak does."""
    rng = random.Random(16)
    start = datetime(2026, 1, 1, 9, tzinfo=UTC)
    for _ in range(300):
        rows, times = [], {}
        for day in range(rng.randint(0, 9)):
            due = start + timedelta(days=day)
            for flow in rng.sample(["a", "b"], rng.randint(1, 2)):
                status = rng.choice(["answered", "late", "missed", "missed", "open", "queued"])
                times.setdefault(due, set()).add(status)
                rows.append(
                    CheckinRow(
                        len(rows),
                        1,
                        CheckinKind.SCHEDULED,
                        flow,
                        None,
                        due,
                        due,
                        CheckinStatus(status),
                        None,
                        due,
                        None,
                        None,
                    )
                )
        assert runs(times)[1] == missed_streak(rows), times


def test_broadcast_reach_counts_what_became_of_each_message(site: Site) -> None:
    dash = dashboards(site).build("reach", Filters(7), Role.ADMIN)
    # delivered, sent (no receipt), failed, stopped, queued, total, reach %
    assert dict(dash.table("reach").rows) == {"#1 Heat advice": (1, 1, 1, 0, 0, 3, 33.3)}
    north = dashboards(site).build("reach", Filters(7, "north"), Role.ADMIN)
    assert dict(north.table("reach").rows) == {"#1 Heat advice": (1, 1, 0, 0, 0, 2, 50.0)}


# -- pages and downloads ------------------------------------------------------------------------


def rendered_tables(page: str) -> dict[str, list[list[str]]]:
    """Each chart's visible table on a dashboard page: header then rows, as text."""
    out = {}
    for key, body in re.findall(r'<table [^>]*id="table-(\w+)">(.*?)</table>', page, re.S):
        rows = []
        for row in re.findall(r"<tr[^>]*>(.*?)</tr>", body, re.S):
            cells = re.findall(r"<t[hd][^>]*>(.*?)</t[hd]>", row, re.S)
            rows.append([html.unescape(c.strip()) for c in cells])
        out[key] = rows
    return out


def bar_titles(page: str, key: str) -> set[str]:
    svg = re.search(rf'<svg [^>]*data-chart="{key}">(.*?)</svg>', page, re.S)
    assert svg is not None, key
    return {html.unescape(t) for t in re.findall(r"<rect [^>]*><title>(.*?)</title>", svg[1])}


@pytest.mark.parametrize("query", ["days=7", "days=30", "days=90&region=north"])
def test_every_chart_downloads_the_numbers_it_shows(site: Site, query: str) -> None:
    checked = 0
    for board in BOARDS:
        page = site.get("clinician", f"/console/dashboards/{board.key}?{query}")
        assert page.status_code == 200, board.key
        assert "Content-Security-Policy" in page.headers
        tables = rendered_tables(page.text)
        assert set(tables) == set(board.charts)
        for chart in board.charts:
            response = site.get("clinician", f"/console/dashboards/{board.key}/{chart}.csv?{query}")
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/csv")
            assert f"{board.key}-{chart}-" in response.headers["content-disposition"]
            lines = list(csv.reader(io.StringIO(response.text)))
            shown = [r for r in tables[chart] if not r[0].startswith("No data")]
            if len(lines) == 1:  # a chart with no rows shows "No data in this period."
                assert shown == [lines[0]]
                continue
            assert lines == shown, (board.key, chart)
            titles = bar_titles(page.text, chart)
            header, *rows = lines
            for row in rows:  # every non-zero drawn number is a bar with that number
                for heading, value in zip(header[1:], row[1:], strict=True):
                    if (
                        chart == "claim"
                        and heading.startswith(("p50", "p90"))
                        and value not in ("0", "")
                    ):
                        assert f"{row[0]} · {heading[:3]}: {value} min" in titles
                        checked += 1
                    elif f"{row[0]} · {heading}: {value}" in titles:
                        checked += 1
    assert checked >= 10


def test_filters_fall_back_to_defaults_on_anything_unknown(site: Site) -> None:
    page = site.get("coordinator", "/console/dashboards/triage?days=1000&region=<b>mars</b>")
    assert page.status_code == 200
    assert 'value="30" selected' in page.text and "mars" not in page.text
    week = site.get("coordinator", "/console/dashboards/triage?days=7&region=south")
    assert 'value="south" selected' in week.text
    assert re.findall(r'<tr><th scope="row">([^<]+)</th>', week.text).count("south") == 1


def test_who_may_see_which_dashboard(site: Site) -> None:
    for key in ("triage", "escalations", "checkins"):  # aggregates of health outcomes
        paths = [f"/console/dashboards/{key}"]
        paths += [f"/console/dashboards/{key}/{c}.csv" for c in BOARD[key].charts]
        for path in paths:
            refused = site.get("admin", path)
            assert refused.status_code == 403 and "your role may not" in refused.text, path
            for role in ("clinician", "coordinator"):
                assert site.get(role, path).status_code == 200, (role, path)
    assert site.get("admin", "/console/dashboards/escalations/claim.csv").status_code == 403
    assert site.get("admin", "/console/dashboards/reach").status_code == 200
    assert site.get("admin", "/console/dashboards").headers["location"].endswith("/reach")
    assert site.get("coordinator", "/console/dashboards").headers["location"].endswith("/triage")
    anonymous = site.get(None, "/console/dashboards/reach/reach.csv")
    assert anonymous.status_code == 303 and "/console/login" in anonymous.headers["location"]
    admin_page = site.get("admin", "/console/dashboards/reach").text
    assert 'href="/console/dashboards/reach' in admin_page
    assert 'href="/console/dashboards/triage' not in admin_page  # no tab it may not open


def test_no_phone_number_or_message_text_on_any_dashboard(site: Site) -> None:
    for role in ("clinician", "coordinator"):
        for board in BOARDS:
            page = site.get(role, f"/console/dashboards/{board.key}?days=90").text
            assert "+1555" not in page and "5550000" not in page
            assert "Drink water often" not in page and "sim-1" not in page
            for chart in board.charts:
                body = site.get(role, f"/console/dashboards/{board.key}/{chart}.csv?days=90").text
                assert "5550000" not in body and "Drink water" not in body


def test_rare_red_flag_kinds_are_grouped_for_roles_without_patient_data(site: Site) -> None:
    labels = concept_labels(site.bridge.library)
    kinds = [labels[k] for k in ("cyanosis", "chest_pain", "severe_dyspnea")]
    coordinator = site.get("coordinator", "/console/dashboards/triage?days=30")
    assert not [k for k in kinds if html.escape(k) in coordinator.text]
    assert "Other kinds" in coordinator.text and "fewer than 5 times" in coordinator.text
    csv_rows = site.get("coordinator", "/console/dashboards/triage/flags.csv?days=30").text
    assert csv_rows.splitlines() == ["Red flag,Conversations", "Other kinds,4"]
    clinician = site.get("clinician", "/console/dashboards/triage?days=30")
    assert all(html.escape(k) in clinician.text for k in kinds)


def test_config_deadlines_are_the_ones_compared(tmp_config: Config) -> None:
    config = tmp_config.model_copy(
        update={
            "escalation": tmp_config.escalation.model_copy(
                update={
                    "deadlines_minutes": tmp_config.escalation.deadlines_minutes.model_copy(
                        update={"urgent": 120}
                    )
                }
            )
        }
    )
    bridge = CareBridge(config, clock=lambda: NOW)
    try:
        seed(bridge.store, config)  # type: ignore[arg-type]
        svc = Dashboards(bridge.store, config, lambda: NOW, ZoneInfo("UTC"), {})  # type: ignore[arg-type]
        claim = dict(svc.build("escalations", Filters(7), Role.CLINICIAN).table("claim").rows)
        assert claim["urgent"][4:] == (120, 2)
    finally:
        bridge.close()


def test_a_label_that_a_spreadsheet_would_run_is_defused_in_the_csv() -> None:
    table = Table("t", "T", "bars", "Broadcast", ("n",), ("N",), (("=HYPERLINK(1)", (2,)),))
    assert table.to_csv().splitlines()[1] == "'=HYPERLINK(1),2"


def test_days_are_the_consoles_days(site: Site) -> None:
    """Noon UTC is midnight in Auckland: the week there ends on 06-18, and yesterday's 15:00 UTC
    conversation falls on 06-17 local time."""
    bridge = site.bridge
    svc = Dashboards(bridge.store, bridge.config, lambda: NOW, ZoneInfo("Pacific/Auckland"), {})  # type: ignore[arg-type]
    levels = svc.build("triage", Filters(7), Role.CLINICIAN).table("levels")
    assert (levels.rows[0][0], levels.rows[-1][0]) == ("2026-06-12", "2026-06-18")
    assert levels.value("2026-06-17", "self_care") == 2
    assert levels.value("2026-06-17", "emergency_ambulance") == 1
    assert levels.value("2026-06-16", "consultation_24") == 1
