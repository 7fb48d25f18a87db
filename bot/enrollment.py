"""Enrollment in scheduled check-ins: a coordinator's request checked and turned into the
enrollment flow's pre-filled answers, and a patient's consent or finished enrollment
conversation turned into an active enrollment and its schedules.

Imports bot.config, bot.phones, bot.schedules, bot.session and bot.store (no engine, no
channels).
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from bot.config import Config
from bot.phones import PhoneError, address_for
from bot.schedules import (
    CONDITION_CONCEPTS,
    CONDITION_FLOWS,
    format_clock,
    next_due,
    parse_clock,
    plan,
    zone,
)
from bot.session import Session
from bot.store import EnrollmentRow, EnrollmentStatus, NewSchedule, Store

log = logging.getLogger(__name__)

ENROLLMENT_FLOW = "enrollment"
# web: the browser simulator (test contacts); voice and ussd: calls and USSD (docs/channels.md)
CHANNELS = ("sms", "whatsapp", "telegram", "voice", "ussd", "web")
GLUCOSE_UNITS = ("mg/dL", "mmol/L")
BASELINES = ("glucose_unit", "peak_flow_best_lpm", "usual_weight_kg", "due_date")
"""Concepts kept per patient and put into every check-in conversation's answers."""
FULL_TERM_WEEKS = 40
_NONE_WORDS = frozenset({"", "-", "na", "n/a", "no", "none", "skip", "nil"})


class EnrollmentError(ValueError):
    """An enrollment request a coordinator must correct; lists every problem at once."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


@dataclass(frozen=True)
class EnrollRequest:
    """What a coordinator gives to enroll a patient (`carebridge patients enroll`)."""

    channel: str
    address: str
    conditions: tuple[str, ...]
    checkin_time: str
    timezone: str
    language: str | None = None
    team: str | None = None
    glucose_unit: str | None = None
    peak_flow_best: float | None = None
    usual_weight_kg: float | None = None
    due_date: date | None = None

    def checked(self, config: Config, flows: Collection[str]) -> EnrollRequest:
        """This request normalised, or EnrollmentError naming every wrong option."""
        problems: list[str] = []
        if self.channel not in CHANNELS:
            problems.append(f"--channel: use one of {', '.join(CHANNELS)}, not {self.channel!r}")
        address = self.address.strip()
        if not address:
            problems.append("--address: give the patient's number or chat id")
        elif self.channel == "web" and not self.address.strip().startswith("sim-"):
            problems.append("--address: a simulator address starts with sim- (see the simulator)")
        else:
            try:
                address = address_for(self.channel, address, config.phones.default_region)
            except PhoneError as exc:
                problems.append(f"--address: {exc}")
        conditions = tuple(dict.fromkeys(c.strip().lower() for c in self.conditions if c.strip()))
        if not conditions:
            problems.append(f"--conditions: give at least one of {', '.join(CONDITION_FLOWS)}")
        for c in conditions:
            if c not in CONDITION_FLOWS:
                problems.append(
                    f"--conditions: unknown condition {c!r} (use {', '.join(CONDITION_FLOWS)})"
                )
            elif CONDITION_FLOWS[c] not in flows:
                problems.append(f"--conditions: the flow {CONDITION_FLOWS[c]} is not installed")
        at = self.checkin_time
        try:
            at = format_clock(parse_clock(self.checkin_time))
        except ValueError as exc:
            problems.append(f"--time: {exc}")
        try:
            zone(self.timezone)
        except ValueError as exc:
            problems.append(f"--tz: {exc}")
        if self.language is not None and self.language not in config.languages:
            problems.append(
                f"--language: {self.language!r} is not configured "
                f"(languages: {', '.join(config.languages)})"
            )
        unit = self.glucose_unit
        if unit is not None:
            unit = next((u for u in GLUCOSE_UNITS if u.lower() == unit.strip().lower()), None)
            if unit is None:
                problems.append(f"--glucose-unit: use {' or '.join(GLUCOSE_UNITS)}")
        if self.peak_flow_best is not None and not 50 <= self.peak_flow_best <= 900:
            problems.append("--peak-flow-best: give the personal best in L/min (50 to 900)")
        if self.usual_weight_kg is not None and not 1 <= self.usual_weight_kg <= 400:
            problems.append("--usual-weight: give the usual weight in kg (1 to 400)")
        if problems:
            raise EnrollmentError(problems)
        team = self.team.strip() if self.team and self.team.strip() else None
        return EnrollRequest(
            self.channel,
            address,
            conditions,
            at,
            self.timezone,
            self.language,
            team,
            unit,
            self.peak_flow_best,
            self.usual_weight_kg,
            self.due_date,
        )

    def baselines(self) -> dict[str, Any]:
        """The per-patient baselines this request gives (concept id -> value)."""
        values: dict[str, Any] = {
            "glucose_unit": self.glucose_unit,
            "peak_flow_best_lpm": self.peak_flow_best,
            "usual_weight_kg": self.usual_weight_kg,
            "due_date": self.due_date.isoformat() if self.due_date else None,
        }
        return {k: v for k, v in values.items() if v is not None}


def prefill(enrollment: EnrollmentRow, language: str | None = None) -> dict[str, Any]:
    """Answers for the enrollment conversation from what the coordinator gave, so the patient
    is asked only what is missing (consent first, always)."""
    answers: dict[str, Any] = {
        concept: condition in enrollment.conditions
        for condition, concept in CONDITION_CONCEPTS.items()
    }
    answers.update(checkin_time=enrollment.checkin_time, timezone=enrollment.timezone)
    if enrollment.team:
        answers["care_team"] = enrollment.team
    if language:
        answers["preferred_language"] = language
    answers.update(enrollment.baselines)
    return answers


def baselines_of(enrollment: EnrollmentRow | None) -> dict[str, Any]:
    """What every check-in conversation of this patient starts with in its answers."""
    if enrollment is None:
        return {}
    return {k: v for k, v in enrollment.baselines.items() if k in BASELINES and v is not None}


@dataclass(frozen=True)
class EnrollmentPlan:
    """An enrollment as the patient's answers define it."""

    conditions: tuple[str, ...]
    checkin_time: str
    timezone: str
    team: str | None
    baselines: dict[str, Any]


def from_answers(
    answers: Mapping[str, Any],
    *,
    config: Config,
    today: date,
    previous: EnrollmentRow | None = None,
) -> EnrollmentPlan:
    """Read a finished enrollment conversation; what it lacks comes from the previous
    enrollment, then from the configuration defaults."""
    cfg = config.checkins
    conditions = tuple(c for c, concept in CONDITION_CONCEPTS.items() if answers.get(concept))
    at = _valid(answers.get("checkin_time"), parse_clock)
    at = at or (previous.checkin_time if previous else None) or cfg.default_time
    tz = _valid(answers.get("timezone"), zone)
    tz = tz or (previous.timezone if previous else None) or cfg.default_timezone
    team_raw = str(answers.get("care_team") or "").strip()
    team = team_raw if team_raw.lower() not in _NONE_WORDS else None
    team = team or (previous.team if previous else None)
    baselines = dict(previous.baselines) if previous else {}
    for key in BASELINES:
        if answers.get(key) is not None:
            baselines[key] = answers[key]
    weeks = answers.get("pregnancy_weeks")
    if "due_date" not in answers and isinstance(weeks, int | float) and 0 < weeks <= 45:
        due = today + timedelta(weeks=max(0.0, FULL_TERM_WEEKS - float(weeks)))
        baselines["due_date"] = due.isoformat()
    return EnrollmentPlan(conditions, format_clock(parse_clock(at)), tz, team, baselines)


def schedules_for(enrollment: EnrollmentRow, config: Config, now: datetime) -> list[NewSchedule]:
    """The recurring check-ins of an enrollment, each with its first occurrence after `now`."""
    tz = zone(enrollment.timezone)
    enrolled_on = (enrollment.activated_at or now).astimezone(tz).date()
    due_raw = enrollment.baselines.get("due_date")
    due = _date(due_raw)
    planned = plan(
        enrollment.conditions,
        at=parse_clock(enrollment.checkin_time),
        enrolled_on=enrolled_on,
        due_date=due,
        cadence=config.checkins.cadence,
    )
    return [
        NewSchedule(
            p.flow, p.label, p.rule.to_json(), enrollment.timezone, next_due(p.rule, tz, now)
        )
        for p in planned
    ]


def activate(store: Store, config: Config, contact_id: int, now: datetime) -> EnrollmentRow:
    """Make an enrollment active and (re)plan its check-ins from `now`."""
    store.set_enrollment_status(contact_id, EnrollmentStatus.ACTIVE, now)
    enrollment = store.get_enrollment(contact_id)
    assert enrollment is not None
    store.replace_schedules(contact_id, schedules_for(enrollment, config, now), now)
    log.info("enrollment active contact=%s", contact_id)
    return enrollment


def pause(store: Store, contact_id: int, now: datetime) -> None:
    """Stop scheduling check-ins (the patient opted out or withdrew consent)."""
    store.set_enrollment_status(contact_id, EnrollmentStatus.PAUSED, now)
    store.replace_schedules(contact_id, [], now)
    log.info("enrollment paused contact=%s", contact_id)


def apply_session(
    store: Store, config: Config, session: Session, now: datetime
) -> EnrollmentRow | None:
    """A finished enrollment conversation (its answers carry `enrollment_status: complete`)
    becomes the contact's enrollment, active if they consented. None if it is not one, or
    was applied already."""
    if session.answers.get("enrollment_status") != "complete" or session.id is None:
        return None
    contact_id = session.contact.id
    previous = store.get_enrollment(contact_id)
    if previous is not None and previous.session_id == session.id:
        return None
    contact = store.contact_row(contact_id)
    assert contact is not None
    tz_name = previous.timezone if previous else config.checkins.default_timezone
    today = now.astimezone(zone(tz_name)).date()
    p = from_answers(session.answers, config=config, today=today, previous=previous)
    consented = contact.consent_care is True and not contact.opted_out
    status = EnrollmentStatus.ACTIVE if consented else EnrollmentStatus.INVITED
    enrollment = store.save_enrollment(
        contact_id,
        status=status,
        conditions=p.conditions,
        checkin_time=p.checkin_time,
        timezone=p.timezone,
        team=p.team,
        baselines=p.baselines,
        now=now,
        session_id=session.id,
        enrolled_by=None if previous else "patient",
    )
    if status is EnrollmentStatus.ACTIVE:
        store.replace_schedules(contact_id, schedules_for(enrollment, config, now), now)
    log.info("enrollment applied contact=%s status=%s", contact_id, status)
    return enrollment


def _valid(value: Any, parse: Any) -> Any:
    """`value` if `parse` accepts it, else None."""
    if value is None or value == "":
        return None
    try:
        parse(value)
    except (TypeError, ValueError):
        return None
    return value


def _date(value: Any) -> date | None:
    """An ISO date, or None."""
    if not isinstance(value, str):
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        return None
