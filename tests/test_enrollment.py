"""Enrollment: a coordinator enrolls, the patient consents first, then check-ins are planned in
their time zone; declining, opting out and coming back; self-enrollment through the flow;
baselines that reach the check-in questions; the `carebridge patients` commands."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path

import click
import pytest
import yaml
from checkin_helpers import Clock, Patient, ist, local_hm, reminders, run_until
from click.testing import CliRunner

from bot import scheduler
from bot.app import CareBridge
from bot.cli_patients import patients
from bot.config import Config
from bot.enrollment import EnrollmentError, EnrollRequest, from_answers
from bot.store import CheckinStatus, EnrollmentStatus

ADDRESS = "+919800000001"


@pytest.fixture
def app(tmp_config: Config) -> Iterator[CareBridge]:
    bridge = CareBridge(tmp_config, clock=Clock(ist(1, 10)))
    yield bridge
    bridge.close()


def request(**changes: object) -> EnrollRequest:
    base = {
        "channel": "sms",
        "address": ADDRESS,
        "conditions": ("diabetes", "hypertension"),
        "checkin_time": "09:00",
        "timezone": "Asia/Kolkata",
        "team": "Clinic A",
        "glucose_unit": "mmol/L",
    }
    return EnrollRequest(**{**base, **changes})  # type: ignore[arg-type]


def enroll(app: CareBridge, **changes: object) -> scheduler.Enrolled:
    return scheduler.enroll(app, request(**changes), app.clock())


# --- the request ------------------------------------------------------------------------------


def test_a_request_with_mistakes_names_every_one(app: CareBridge) -> None:
    bad = request(
        channel="fax",
        conditions=("diabetes", "gout"),
        checkin_time="9am",
        timezone="Mars/Base",
        language="xx",
        glucose_unit="mg",
        peak_flow_best=5000.0,
    )
    with pytest.raises(EnrollmentError) as info:
        bad.checked(app.config, app.library.flows)
    options = [p.split(":")[0] for p in info.value.problems]
    assert options == [
        "--channel",
        "--conditions",
        "--time",
        "--tz",
        "--language",
        "--glucose-unit",
        "--peak-flow-best",
    ]


def test_a_request_is_normalised(app: CareBridge) -> None:
    req = request(
        conditions=(" Diabetes", "diabetes", ""), checkin_time="9:05", glucose_unit="MMOL/L"
    )
    checked = req.checked(app.config, app.library.flows)
    assert (checked.conditions, checked.checkin_time, checked.glucose_unit) == (
        ("diabetes",),
        "09:05",
        "mmol/L",
    )


# --- consent first ----------------------------------------------------------------------------


def test_enrolling_sends_only_the_consent_question_and_schedules_nothing(app: CareBridge) -> None:
    done = enroll(app)
    assert done.started
    [first] = app.store.outbox(contact_id=done.contact_id)
    assert first.outbound.kind == "reminder"
    assert first.outbound.text.endswith("Do you agree to continue?")
    assert app.store.get_enrollment(done.contact_id).status is EnrollmentStatus.INVITED  # type: ignore[union-attr]
    run_until(app, ist(3, 10))  # two days pass without an answer
    assert app.store.schedules(done.contact_id) == []
    assert app.store.jobs(done.contact_id, kind="checkin") == []
    assert len(app.store.outbox(contact_id=done.contact_id)) == 1  # no reminder to a stranger


def test_a_new_contact_is_asked_the_check_in_consent_question_after_the_services(
    app: CareBridge,
) -> None:
    done = enroll(app)  # a number the service has never seen
    patient = Patient(app)
    [first] = app.store.outbox(contact_id=done.contact_id)
    assert first.outbound.text.endswith("Do you agree to continue?")  # the service's consent
    assert "Do you agree to get check-in messages" in patient.say("yes")
    run_until(app, ist(1, 10, 5))  # a yes to the service is not a yes to check-ins
    assert app.store.get_enrollment(done.contact_id).status is EnrollmentStatus.INVITED  # type: ignore[union-attr]
    assert app.store.schedules(done.contact_id) == []
    assert "health advice to everyone" in patient.say("yes")  # check-ins, then broadcasts
    assert "you are enrolled" in patient.say("no")
    run_until(app, ist(1, 10, 10))
    assert app.store.get_enrollment(done.contact_id).status is EnrollmentStatus.ACTIVE  # type: ignore[union-attr]


def test_a_new_contact_who_declines_check_ins_keeps_the_service_but_gets_none(
    app: CareBridge,
) -> None:
    done = enroll(app)
    patient = Patient(app)
    patient.say("yes")  # the service
    assert "will not send you check-ins" in patient.say("no")
    run_until(app, ist(3, 10))
    assert app.store.get_enrollment(done.contact_id).status is EnrollmentStatus.INVITED  # type: ignore[union-attr]
    assert app.store.schedules(done.contact_id) == []
    contact = app.store.contact_row(done.contact_id)
    assert contact is not None and contact.consent_care is True


def test_check_ins_are_planned_in_the_patients_zone_once_they_agree(app: CareBridge) -> None:
    done = enroll(app)
    patient = Patient(app)
    patient.say("yes")  # consent to the service
    assert "health advice to everyone" in patient.say("yes")  # check-ins, then broadcasts
    assert "you are enrolled" in patient.say("no")
    run_until(app, ist(1, 10, 15))
    enrolled = app.store.get_enrollment(done.contact_id)
    assert enrolled is not None and enrolled.status is EnrollmentStatus.ACTIVE
    assert enrolled.baselines == {"glucose_unit": "mmol/L"}
    flows = {s.flow: local_hm(s.next_due_at) for s in app.store.schedules(done.contact_id)}  # type: ignore[arg-type]
    assert flows == {"diabetes_checkin": "04-02 09:00", "hypertension_checkin": "04-02 09:00"}
    contact = app.store.contact_row(done.contact_id)
    assert contact is not None and (contact.consent_care, contact.consent_broadcast) == (
        True,
        False,
    )


def test_a_no_means_no_check_in_ever(app: CareBridge) -> None:
    done = enroll(app)
    assert "will not send you care messages" in Patient(app).say("no")
    run_until(app, ist(4, 10))
    assert app.store.get_enrollment(done.contact_id).status is EnrollmentStatus.INVITED  # type: ignore[union-attr]
    assert app.store.schedules(done.contact_id) == []
    assert [r.outbound.kind for r in app.store.outbox(contact_id=done.contact_id)] == [
        "reminder",
        "reply",
    ]


def test_an_enrollment_at_night_waits_for_the_morning(app: CareBridge) -> None:
    app.clock.set(ist(1, 23))  # type: ignore[attr-defined]
    done = enroll(app)
    assert not done.started and local_hm(done.not_before) == "04-02 08:00"  # type: ignore[arg-type]
    run_until(app, ist(2, 7, 55))
    assert app.store.outbox(contact_id=done.contact_id) == []
    run_until(app, ist(2, 8, 0))
    [first] = app.store.outbox(contact_id=done.contact_id)
    assert local_hm(first.created_at) == "04-02 08:00"


def test_consent_to_a_screening_is_not_consent_to_check_ins(app: CareBridge) -> None:
    patient = Patient(app)
    assert "Which language" in patient.say("hi")  # first contact: the language menu
    assert "Do you agree" in patient.say("1")  # English, then the consent question
    patient.say("yes")  # agreed to the service earlier (consent flow)
    done = enroll(app)
    run_until(app, ist(1, 10, 30))
    assert app.store.get_enrollment(done.contact_id).status is EnrollmentStatus.INVITED  # type: ignore[union-attr]
    last = app.store.outbox(contact_id=done.contact_id)[-1].outbound.text
    assert "Do you agree to get check-in messages" in last
    patient.say("yes")
    run_until(app, ist(1, 10, 35))
    assert app.store.get_enrollment(done.contact_id).status is EnrollmentStatus.ACTIVE  # type: ignore[union-attr]


def test_opting_out_pauses_check_ins_and_start_resumes_them(app: CareBridge) -> None:
    done = enroll(app)
    patient = Patient(app)
    patient.say("yes")
    patient.say("yes")
    run_until(app, ist(1, 10, 15))
    patient.say("STOP")
    report = run_until(app, ist(1, 10, 20))
    assert sum(r.paused for r in report) == 1
    assert app.store.schedules(done.contact_id) == []
    run_until(app, ist(2, 10))
    assert reminders(app, done.contact_id)[1:] == []  # nothing after the consent question
    patient.say("START")
    run_until(app, ist(2, 10, 10))
    assert app.store.get_enrollment(done.contact_id).status is EnrollmentStatus.ACTIVE  # type: ignore[union-attr]
    assert {local_hm(s.next_due_at) for s in app.store.schedules(done.contact_id)} == {  # type: ignore[arg-type]
        "04-03 09:00"
    }


def test_an_enrollment_left_half_done_does_not_hold_up_the_check_ins(app: CareBridge) -> None:
    done = enroll(app, glucose_unit=None, checkin_time="11:00")  # the flow asks the unit
    patient = Patient(app)
    patient.say("yes")  # the service
    patient.say("yes")  # check-ins
    assert "meter" in patient.say("no")  # ... and the patient never answers it
    run_until(app, ist(1, 11, 0))  # silent for an hour: not expired, no longer busy
    last = reminders(app, done.contact_id)[-1]
    assert last.outbound.text.startswith("Diabetes check-in")
    assert local_hm(last.created_at) == "04-01 11:00"
    [enrolling] = app.store.checkins(done.contact_id, kind="enrollment")
    assert enrolling.status is CheckinStatus.MISSED


# --- self-enrollment and baselines ------------------------------------------------------------


def test_a_patient_can_enroll_through_the_flow(app: CareBridge) -> None:
    patient = Patient(app, "+919800000001")
    assert "Which language" in patient.say("hi")
    assert "Do you agree" in patient.say("1")  # English
    patient.say("yes")  # consent to the service
    contact_id = patient.contact_id
    app.start_checkin(contact_id, "enrollment", app.clock())
    answers = ["yes", "yes", "1", "3 6", "400", "32", "2", "1", "Sunrise clinic"]
    replies = [patient.say(text) for text in answers]
    assert "you are enrolled" in replies[-1]
    run_until(app, ist(1, 10, 30))
    enrolled = app.store.get_enrollment(contact_id)
    assert enrolled is not None and enrolled.status is EnrollmentStatus.ACTIVE
    assert enrolled.conditions == ("asthma", "pregnancy")
    assert (enrolled.checkin_time, enrolled.timezone, enrolled.team) == (
        "13:00",
        "Asia/Kolkata",
        "Sunrise clinic",
    )
    due = date(2020, 4, 1) + timedelta(weeks=8)
    assert enrolled.baselines == {"peak_flow_best_lpm": 400.0, "due_date": due.isoformat()}
    labels = sorted((s.flow, s.label) for s in app.store.schedules(contact_id))
    assert labels == [
        ("asthma_checkin", "daily"),
        ("pregnancy_checkin", "daily in the last month"),
        ("pregnancy_checkin", "weekly"),
    ]


def test_answers_fill_gaps_from_before_and_none_means_no_team(app: CareBridge) -> None:
    p = from_answers(
        {"hypertension": True, "care_team": "NONE", "checkin_time": "25:99", "pregnancy_weeks": 38},
        config=app.config,
        today=date(2020, 4, 1),
    )
    assert (p.conditions, p.team, p.checkin_time, p.timezone) == (
        ("hypertension",),
        None,
        "09:00",
        "UTC",
    )
    assert p.baselines == {"due_date": "2020-04-15"}


def test_baselines_reach_the_check_in_questions(app: CareBridge) -> None:
    done = enroll(app, conditions=("diabetes", "asthma"), peak_flow_best=400.0)
    patient = Patient(app)
    patient.say("yes")
    patient.say("no")
    run_until(app, ist(1, 10, 15))
    scheduler.checkin_now(app, done.contact_id, "asthma_checkin", app.clock())
    patient.say("0")
    patient.say("300")  # L/min: 75 % of the personal best
    scheduler.checkin_now(app, done.contact_id, "diabetes_checkin", app.clock())
    for text in ("0", "0", "no", "yes"):
        patient.say(text)
    run_until(app, ist(1, 10, 30))
    patient.say("0")
    patient.say("7")  # the meter shows mmol/L: 126 mg/dL
    values = {r.concept: r.value for r in app.store.readings(done.contact_id)}
    assert values["peak_flow_percent"] == 75.0
    assert values["glucose_mg_dl"] == 126.0


# --- the command line -------------------------------------------------------------------------


@pytest.fixture
def cli(tmp_config: Config, tmp_path: Path) -> Iterator[tuple[CliRunner, click.Group]]:
    @click.group()
    @click.pass_context
    def root(ctx: click.Context) -> None:
        ctx.obj = {"config": tmp_config}

    root.add_command(patients)
    yield CliRunner(), root


def test_the_patients_commands(cli: tuple[CliRunner, click.Group], tmp_config: Config) -> None:
    runner, root = cli
    enroll_args = ["patients", "enroll", "--channel", "sms", "--address", "+919800000123"]
    bad = runner.invoke(root, [*enroll_args, "--conditions", "gout", "--tz", "Nowhere"])
    assert bad.exit_code == 1
    assert "--conditions: unknown condition 'gout'" in bad.output
    assert "--tz: unknown time zone 'Nowhere'" in bad.output
    ok = runner.invoke(
        root,
        [*enroll_args, "--conditions", "hypertension", "--time", "08:30", "--tz", "UTC"],
    )
    assert ok.exit_code == 0, ok.output
    assert "patient 1 (sms …0123) enrolled" in ok.output
    assert "+919800000123" not in ok.output  # addresses are masked
    listed = runner.invoke(root, ["patients", "list", "--json"])
    [row] = json.loads(listed.output)
    assert (row["status"], row["conditions"], row["checkin_time"]) == (
        "invited",
        ["hypertension"],
        "08:30",
    )
    text = runner.invoke(root, ["patients", "list"]).output
    assert text.splitlines()[0].split()[:4] == ["ID", "CHANNEL", "ADDRESS", "STATUS"]
    shown = runner.invoke(root, ["patients", "show", "1"])
    assert "patient 1 (sms …0123): invited" in shown.output
    assert "check-in" in shown.output and "(enrollment)" in shown.output
    assert runner.invoke(root, ["patients", "show", "9"]).exit_code == 1
    assert runner.invoke(root, ["patients", "checkin", "1"]).exit_code == 1  # not active yet
    swept = runner.invoke(root, ["patients", "sweep", "--at", "2020-04-01T12:00:00+00:00"])
    assert swept.exit_code == 0, swept.output


def test_the_example_config_has_the_documented_defaults(tmp_config: Config) -> None:
    """config.yaml's checkins section is valid and matches the documented defaults."""
    root = Path(__file__).resolve().parent.parent
    raw = yaml.safe_load((root / "config.yaml").read_text(encoding="utf-8"))["checkins"]
    assert raw["missed_escalation"] == tmp_config.checkins.missed_escalation == 3
    assert tmp_config.checkins.quiet_hours is not None
    assert (tmp_config.checkins.quiet_hours.start, tmp_config.checkins.quiet_hours.end) == (
        "21:00",
        "08:00",
    )


def test_statuses_are_what_the_docs_say() -> None:
    assert [str(s) for s in CheckinStatus] == [
        "queued",
        "open",
        "answered",
        "late",
        "missed",
        "cancelled",
    ]
