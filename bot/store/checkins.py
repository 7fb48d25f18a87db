"""Check-ins and jobs: readings (measurements), scheduled jobs (follow-ups, reminders),
enrollments, their schedules and the check-ins they produce (docs/checkins.md).
Imports the standard library and bot.store (codec, sql)."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, Protocol

from bot.store.codec import _checked, _dt, _dt_req, _json, _ts
from bot.store.sql import NO_LIMIT, Row, SqlMixin

log = logging.getLogger(__name__)


class JobStatus(StrEnum):
    """Where a scheduled job (follow-up, reminder) stands."""

    PENDING = "pending"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"


@dataclass(frozen=True)
class ReadingRow:
    """One measurement (temperature, SpO2, glucose, ...) under a concept id."""

    id: int
    contact_id: int
    session_id: int | None
    concept: str
    value: float
    unit: str | None
    at: datetime


@dataclass(frozen=True)
class JobRow:
    """A follow-up or reminder that is due at some time; claimed by one worker."""

    id: int
    contact_id: int | None
    kind: str
    flow: str | None
    due_at: datetime
    payload: dict[str, Any] = field(hash=False)
    dedupe_key: str | None
    status: JobStatus
    worker: str | None
    claimed_at: datetime | None
    finished_at: datetime | None


class EnrollmentStatus(StrEnum):
    """Where a patient's enrollment in scheduled check-ins stands."""

    INVITED = "invited"  # enrolled by a coordinator; waiting for the patient's consent
    ACTIVE = "active"  # consented: check-ins are scheduled
    PAUSED = "paused"  # the patient opted out or withdrew consent; resumes if they return
    ENDED = "ended"


class ScheduleStatus(StrEnum):
    ACTIVE = "active"
    ENDED = "ended"


class CheckinKind(StrEnum):
    """Why a check-in conversation is started on the bot's initiative."""

    SCHEDULED = "scheduled"  # a recurring check-in; missing it counts
    FOLLOW_UP = "follow_up"  # decided by a flow (re-check in 15 minutes, daily for 10 days)
    ENROLLMENT = "enrollment"  # the enrollment conversation (consent first)
    MANUAL = "manual"  # a coordinator asked for one now


class CheckinStatus(StrEnum):
    """Where one check-in occurrence stands; the last four are final (late may follow missed)."""

    QUEUED = "queued"  # due; waits for quiet hours to end or the patient to be free
    OPEN = "open"  # its conversation has started
    ANSWERED = "answered"
    LATE = "late"  # answered after it had been counted as missed
    MISSED = "missed"
    CANCELLED = "cancelled"  # opted out, no consent, enrollment ended


@dataclass(frozen=True)
class EnrollmentRow:
    """A patient enrolled for check-ins: conditions, when, where, and personal baselines."""

    id: int
    contact_id: int
    status: EnrollmentStatus
    conditions: tuple[str, ...]
    checkin_time: str  # "HH:MM", the patient's local time
    timezone: str  # IANA name
    team: str | None
    baselines: dict[str, Any] = field(hash=False)  # concept id -> value (glucose_unit, ...)
    session_id: int | None  # the enrollment conversation last applied
    enrolled_by: str | None
    created_at: datetime
    updated_at: datetime
    activated_at: datetime | None


@dataclass(frozen=True)
class NewSchedule:
    """A recurring check-in to store (see bot.schedules.Rule for `rule`)."""

    flow: str
    label: str
    rule: dict[str, Any] = field(hash=False)
    timezone: str
    next_due_at: datetime | None


@dataclass(frozen=True)
class ScheduleRow:
    """A recurring check-in; `next_due_at` is the next occurrence not yet turned into a job."""

    id: int
    contact_id: int
    flow: str
    label: str
    rule: dict[str, Any] = field(hash=False)
    timezone: str
    next_due_at: datetime | None
    status: ScheduleStatus
    created_at: datetime
    updated_at: datetime | None


@dataclass(frozen=True)
class CheckinRow:
    """One check-in occurrence: a flow the bot starts for a contact, and how it went."""

    id: int
    contact_id: int
    kind: CheckinKind
    flow: str
    schedule_id: int | None
    due_at: datetime  # the occurrence (the patient's local time, in UTC)
    not_before: datetime  # due_at moved out of quiet hours
    status: CheckinStatus
    session_id: int | None
    created_at: datetime
    started_at: datetime | None
    resolved_at: datetime | None


class CheckinStore(Protocol):
    """Readings, jobs, enrollments, schedules and check-ins."""

    # -- readings ------------------------------------------------------------------------------

    def add_reading(
        self,
        contact_id: int,
        session_id: int | None,
        concept: str,
        value: float,
        unit: str | None,
        at: datetime,
    ) -> int:
        """Record one measurement."""
        ...

    def readings(
        self, contact_id: int, concept: str | None = None, limit: int | None = None
    ) -> list[ReadingRow]:
        """A contact's measurements, newest first."""
        ...

    # -- jobs ----------------------------------------------------------------------------------

    def schedule_job(
        self,
        contact_id: int | None,
        kind: str,
        flow: str | None,
        due_at: datetime,
        payload: dict[str, Any],
        dedupe_key: str | None = None,
    ) -> int | None:
        """Schedule a job; None if a job with this `dedupe_key` already exists (in any status)."""
        ...

    def claim_due_jobs(self, now: datetime, limit: int, worker: str) -> list[JobRow]:
        """Atomically move up to `limit` due pending jobs to running; earliest due first."""
        ...

    def finish_job(self, job_id: int, status: str, now: datetime) -> None:
        """Record a job's end: `done`, `failed` or `cancelled` (a pending job may be cancelled)."""
        ...

    def jobs(
        self, contact_id: int | None = None, kind: str | None = None, status: str | None = None
    ) -> list[JobRow]:
        """Jobs, optionally of one contact, kind and/or status, earliest due first."""
        ...

    def requeue_stuck_jobs(self, now: datetime, older_than: timedelta) -> int:
        """Put jobs left `running` (a worker died) for longer than `older_than` back to pending."""
        ...

    # -- enrollments and schedules -------------------------------------------------------------

    def save_enrollment(
        self,
        contact_id: int,
        *,
        status: str,
        conditions: tuple[str, ...],
        checkin_time: str,
        timezone: str,
        team: str | None,
        baselines: dict[str, Any],
        now: datetime,
        session_id: int | None = None,
        enrolled_by: str | None = None,
    ) -> EnrollmentRow:
        """Create or replace the contact's enrollment (one per contact)."""
        ...

    def get_enrollment(self, contact_id: int) -> EnrollmentRow | None:
        """The contact's enrollment, or None."""
        ...

    def enrollments(
        self, status: str | None = None, team: str | None = None
    ) -> list[EnrollmentRow]:
        """Enrollments, optionally with one status and/or team, oldest first."""
        ...

    def enrollments_to_sync(self) -> list[EnrollmentRow]:
        """Enrollments whose status no longer matches the contact: invited or paused with
        consent (and not opted out), or active without consent or opted out."""
        ...

    def set_enrollment_status(self, contact_id: int, status: str, now: datetime) -> None:
        """Change an enrollment's status (active also records activated_at the first time)."""
        ...

    def replace_schedules(
        self, contact_id: int, schedules: list[NewSchedule], now: datetime
    ) -> list[int]:
        """End the contact's active schedules and add these; returns the new ids."""
        ...

    def schedules(
        self, contact_id: int | None = None, status: str | None = "active"
    ) -> list[ScheduleRow]:
        """Schedules (active ones by default), optionally of one contact, by id."""
        ...

    def due_schedules(self, now: datetime, limit: int) -> list[ScheduleRow]:
        """Active schedules whose next occurrence is due, earliest first."""
        ...

    def advance_schedule(
        self, schedule_id: int, expected: datetime, next_due_at: datetime | None, now: datetime
    ) -> bool:
        """Move a schedule to its next occurrence (None ends it) if it still is at `expected`;
        False when another sweep moved it first."""
        ...

    # -- check-ins -----------------------------------------------------------------------------

    def add_checkin(
        self,
        contact_id: int,
        kind: str,
        flow: str,
        due_at: datetime,
        not_before: datetime,
        now: datetime,
        schedule_id: int | None = None,
    ) -> int | None:
        """Queue a check-in occurrence; None if this (contact, kind, flow, due_at) exists."""
        ...

    def checkins(
        self,
        contact_id: int | None = None,
        status: str | None = None,
        kind: str | None = None,
        limit: int | None = None,
    ) -> list[CheckinRow]:
        """Check-in occurrences, latest due first (then latest id)."""
        ...

    def contacts_with_checkins(self, statuses: tuple[str, ...]) -> list[int]:
        """Contacts with at least one check-in in one of these statuses."""
        ...

    def claim_checkin(self, checkin_id: int, now: datetime) -> bool:
        """Claim a queued check-in (queued -> open); False if another sweep claimed it."""
        ...

    def set_checkin_session(self, checkin_id: int, session_id: int) -> None:
        """Record the conversation an open check-in is carried out in."""
        ...

    def resolve_checkin(
        self, checkin_id: int, status: str, now: datetime, *, expected: str
    ) -> bool:
        """Move a check-in from `expected` to `status`; False if it was not in `expected`."""
        ...


class CheckinSql(SqlMixin):
    """`CheckinStore` in SQL written once; a mixin of `SqlStore`."""

    # -- readings ------------------------------------------------------------------------------

    def add_reading(
        self,
        contact_id: int,
        session_id: int | None,
        concept: str,
        value: float,
        unit: str | None,
        at: datetime,
    ) -> int:
        """Record one measurement."""
        with self._atomic("add_reading") as conn:
            row = conn.execute(
                "INSERT INTO readings (contact_id, session_id, concept, value, unit, at)"
                " VALUES (?, ?, ?, ?, ?, ?) RETURNING id",
                (contact_id, session_id, concept, float(value), unit, _ts(at)),
            ).fetchone()
        return int(row[0])

    def readings(
        self, contact_id: int, concept: str | None = None, limit: int | None = None
    ) -> list[ReadingRow]:
        """A contact's measurements, newest first."""
        where = "contact_id = ?"
        params: list[Any] = [contact_id]
        if concept is not None:
            where += " AND concept = ?"
            params.append(concept)
        params.append(NO_LIMIT if limit is None else limit)
        rows = self._rows(
            f"SELECT * FROM readings WHERE {where} ORDER BY at DESC, id DESC LIMIT ?",
            tuple(params),
        )
        return [
            ReadingRow(
                id=r["id"],
                contact_id=r["contact_id"],
                session_id=r["session_id"],
                concept=r["concept"],
                value=r["value"],
                unit=r["unit"],
                at=_dt_req(r["at"]),
            )
            for r in rows
        ]

    # -- jobs ----------------------------------------------------------------------------------

    def schedule_job(
        self,
        contact_id: int | None,
        kind: str,
        flow: str | None,
        due_at: datetime,
        payload: dict[str, Any],
        dedupe_key: str | None = None,
    ) -> int | None:
        """Schedule a job; None if a job with this `dedupe_key` already exists (in any status)."""
        with self._atomic("schedule_job") as conn:
            row = conn.execute(
                "INSERT INTO jobs (contact_id, kind, flow, due_at, payload, dedupe_key, status)"
                " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (dedupe_key) DO NOTHING RETURNING id",
                (
                    contact_id,
                    kind,
                    flow,
                    _ts(due_at),
                    _json(payload),
                    dedupe_key,
                    JobStatus.PENDING,
                ),
            ).fetchone()
        return None if row is None else int(row[0])

    def claim_due_jobs(self, now: datetime, limit: int, worker: str) -> list[JobRow]:
        """Atomically move up to `limit` due pending jobs to running; earliest due first."""
        if limit <= 0:
            return []
        with self._atomic("claim_due_jobs") as conn:
            rows = self._write_rows(
                conn,
                "WITH picked AS MATERIALIZED (SELECT id FROM jobs WHERE status = ?"
                f" AND due_at <= ? ORDER BY due_at, id LIMIT ?{self.dialect.skip_locked})"
                " UPDATE jobs SET status = ?, worker = ?, claimed_at = ?"
                " WHERE id IN (SELECT id FROM picked) AND status = ? RETURNING *",
                (
                    JobStatus.PENDING,
                    _ts(now),
                    limit,
                    JobStatus.RUNNING,
                    worker,
                    _ts(now),
                    JobStatus.PENDING,
                ),
            )
        return sorted((_job_row(r) for r in rows), key=lambda j: (j.due_at, j.id))

    def finish_job(self, job_id: int, status: str, now: datetime) -> None:
        """Record a job's end: `done`, `failed` or `cancelled` (a pending job may be cancelled)."""
        _checked(status, (JobStatus.DONE, JobStatus.FAILED, JobStatus.CANCELLED), "status")
        with self._atomic("finish_job") as conn:
            self._require(conn, "jobs", job_id)
            conn.execute(
                "UPDATE jobs SET status = ?, finished_at = ? WHERE id = ? AND status IN (?, ?)",
                (status, _ts(now), job_id, JobStatus.PENDING, JobStatus.RUNNING),
            )

    def jobs(
        self, contact_id: int | None = None, kind: str | None = None, status: str | None = None
    ) -> list[JobRow]:
        """Jobs, optionally of one contact, kind and/or status, earliest due first."""
        where: list[str] = ["1 = 1"]
        params: list[Any] = []
        if contact_id is not None:
            where.append("contact_id = ?")
            params.append(contact_id)
        if kind is not None:
            where.append("kind = ?")
            params.append(kind)
        if status is not None:
            where.append("status = ?")
            params.append(_checked(status, JobStatus, "status"))
        rows = self._rows(
            f"SELECT * FROM jobs WHERE {' AND '.join(where)} ORDER BY due_at, id", tuple(params)
        )
        return [_job_row(r) for r in rows]

    def requeue_stuck_jobs(self, now: datetime, older_than: timedelta) -> int:
        """Put jobs left `running` (a worker died) for longer than `older_than` back to pending.

        Safe because a job's effects and its `finish_job` commit in one transaction: a job
        still running after a crash has no effects yet.
        """
        with self._atomic("requeue_stuck_jobs") as conn:
            cursor = conn.execute(
                "UPDATE jobs SET status = ?, worker = NULL, claimed_at = NULL"
                " WHERE status = ? AND claimed_at <= ?",
                (JobStatus.PENDING, JobStatus.RUNNING, _ts(now - older_than)),
            )
        if cursor.rowcount:
            log.warning("store: requeued %d jobs stuck in running", cursor.rowcount)
        return cursor.rowcount

    # -- enrollments and schedules -------------------------------------------------------------

    def save_enrollment(
        self,
        contact_id: int,
        *,
        status: str,
        conditions: tuple[str, ...],
        checkin_time: str,
        timezone: str,
        team: str | None,
        baselines: dict[str, Any],
        now: datetime,
        session_id: int | None = None,
        enrolled_by: str | None = None,
    ) -> EnrollmentRow:
        """Create or replace the contact's enrollment (one per contact)."""
        new = EnrollmentStatus(_checked(status, EnrollmentStatus, "status"))
        at = _ts(now)
        with self._atomic("save_enrollment") as conn:
            rows = self._write_rows(
                conn,
                "INSERT INTO enrollments (contact_id, status, conditions, checkin_time, timezone,"
                " team, baselines, session_id, enrolled_by, created_at, updated_at,"
                " activated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (contact_id) DO UPDATE SET status = excluded.status,"
                " conditions = excluded.conditions, checkin_time = excluded.checkin_time,"
                " timezone = excluded.timezone, team = excluded.team,"
                " baselines = excluded.baselines,"
                " session_id = coalesce(excluded.session_id, enrollments.session_id),"
                " enrolled_by = coalesce(excluded.enrolled_by, enrollments.enrolled_by),"
                " updated_at = excluded.updated_at,"
                " activated_at = coalesce(enrollments.activated_at, excluded.activated_at)"
                " RETURNING *",
                (
                    contact_id,
                    new,
                    _json(list(conditions)),
                    checkin_time,
                    timezone,
                    team,
                    _json(baselines),
                    session_id,
                    enrolled_by,
                    at,
                    at,
                    at if new == EnrollmentStatus.ACTIVE else None,
                ),
            )
        return _enrollment_row(rows[0])

    def get_enrollment(self, contact_id: int) -> EnrollmentRow | None:
        """The contact's enrollment, or None."""
        rows = self._rows("SELECT * FROM enrollments WHERE contact_id = ?", (contact_id,))
        return _enrollment_row(rows[0]) if rows else None

    def enrollments(
        self, status: str | None = None, team: str | None = None
    ) -> list[EnrollmentRow]:
        """Enrollments, optionally with one status and/or team, oldest first."""
        checked = None if status is None else _checked(status, EnrollmentStatus, "status")
        rows = self._filtered("enrollments", status=checked, team=team)
        return [_enrollment_row(r) for r in rows]

    def enrollments_to_sync(self) -> list[EnrollmentRow]:
        """Enrollments whose status no longer matches the contact: invited or paused with
        consent (and not opted out), or active without consent or opted out."""
        rows = self._rows(
            "SELECT e.* FROM enrollments e JOIN contacts c ON c.id = e.contact_id WHERE"
            " (e.status IN (?, ?) AND c.consent_care = 1 AND c.opted_out = 0)"
            " OR (e.status = ? AND (c.opted_out = 1 OR coalesce(c.consent_care, 0) = 0))"
            " ORDER BY e.id",
            (EnrollmentStatus.INVITED, EnrollmentStatus.PAUSED, EnrollmentStatus.ACTIVE),
        )
        return [_enrollment_row(r) for r in rows]

    def set_enrollment_status(self, contact_id: int, status: str, now: datetime) -> None:
        """Change an enrollment's status (active also records activated_at the first time)."""
        new = EnrollmentStatus(_checked(status, EnrollmentStatus, "status"))
        with self._atomic("set_enrollment_status") as conn:
            cursor = conn.execute(
                "UPDATE enrollments SET status = ?, updated_at = ?, activated_at ="
                " coalesce(activated_at, CASE WHEN ? = 1 THEN ? END) WHERE contact_id = ?",
                (new, _ts(now), new == EnrollmentStatus.ACTIVE, _ts(now), contact_id),
            )
            if cursor.rowcount == 0:
                raise KeyError(f"no enrollment for contact {contact_id}")

    def replace_schedules(
        self, contact_id: int, schedules: list[NewSchedule], now: datetime
    ) -> list[int]:
        """End the contact's active schedules and add these; returns the new ids."""
        at = _ts(now)
        ids = []
        with self._atomic("replace_schedules") as conn:
            conn.execute(
                "UPDATE schedules SET status = ?, updated_at = ?"
                " WHERE contact_id = ? AND status = ?",
                (ScheduleStatus.ENDED, at, contact_id, ScheduleStatus.ACTIVE),
            )
            for s in schedules:
                status = ScheduleStatus.ACTIVE if s.next_due_at else ScheduleStatus.ENDED
                row = conn.execute(
                    "INSERT INTO schedules (contact_id, flow, label, rule, timezone, next_due_at,"
                    " status, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
                    " RETURNING id",
                    (
                        contact_id,
                        s.flow,
                        s.label,
                        _json(s.rule),
                        s.timezone,
                        _ts(s.next_due_at) if s.next_due_at else None,
                        status,
                        at,
                        at,
                    ),
                ).fetchone()
                ids.append(int(row[0]))
        return ids

    def schedules(
        self, contact_id: int | None = None, status: str | None = "active"
    ) -> list[ScheduleRow]:
        """Schedules (active ones by default), optionally of one contact, by id."""
        where: list[str] = ["1 = 1"]
        params: list[Any] = []
        if contact_id is not None:
            where.append("contact_id = ?")
            params.append(contact_id)
        if status is not None:
            where.append("status = ?")
            params.append(_checked(status, ScheduleStatus, "status"))
        rows = self._rows(
            f"SELECT * FROM schedules WHERE {' AND '.join(where)} ORDER BY id", tuple(params)
        )
        return [_schedule_row(r) for r in rows]

    def due_schedules(self, now: datetime, limit: int) -> list[ScheduleRow]:
        """Active schedules whose next occurrence is due, earliest first."""
        rows = self._rows(
            "SELECT * FROM schedules WHERE status = ? AND next_due_at <= ?"
            " ORDER BY next_due_at, id LIMIT ?",
            (ScheduleStatus.ACTIVE, _ts(now), limit),
        )
        return [_schedule_row(r) for r in rows]

    def advance_schedule(
        self, schedule_id: int, expected: datetime, next_due_at: datetime | None, now: datetime
    ) -> bool:
        """Move a schedule to its next occurrence (None ends it) if it still is at `expected`;
        False when another sweep moved it first."""
        with self._atomic("advance_schedule") as conn:
            cursor = conn.execute(
                "UPDATE schedules SET next_due_at = ?, updated_at = ?,"
                " status = CASE WHEN ? = 1 THEN ? ELSE status END"
                " WHERE id = ? AND status = ? AND next_due_at = ?",
                (
                    _ts(next_due_at) if next_due_at else None,
                    _ts(now),
                    int(next_due_at is None),
                    ScheduleStatus.ENDED,
                    schedule_id,
                    ScheduleStatus.ACTIVE,
                    _ts(expected),
                ),
            )
        return cursor.rowcount == 1

    # -- check-ins -----------------------------------------------------------------------------

    def add_checkin(
        self,
        contact_id: int,
        kind: str,
        flow: str,
        due_at: datetime,
        not_before: datetime,
        now: datetime,
        schedule_id: int | None = None,
    ) -> int | None:
        """Queue a check-in occurrence; None if this (contact, kind, flow, due_at) exists."""
        _checked(kind, CheckinKind, "kind")
        with self._atomic("add_checkin") as conn:
            row = conn.execute(
                "INSERT INTO checkins (contact_id, kind, flow, schedule_id, due_at, not_before,"
                " status, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (contact_id, kind, flow, due_at) DO NOTHING RETURNING id",
                (
                    contact_id,
                    kind,
                    flow,
                    schedule_id,
                    _ts(due_at),
                    _ts(not_before),
                    CheckinStatus.QUEUED,
                    _ts(now),
                ),
            ).fetchone()
        return None if row is None else int(row[0])

    def checkins(
        self,
        contact_id: int | None = None,
        status: str | None = None,
        kind: str | None = None,
        limit: int | None = None,
    ) -> list[CheckinRow]:
        """Check-in occurrences, latest due first (then latest id)."""
        where: list[str] = ["1 = 1"]
        params: list[Any] = []
        if contact_id is not None:
            where.append("contact_id = ?")
            params.append(contact_id)
        if status is not None:
            where.append("status = ?")
            params.append(_checked(status, CheckinStatus, "status"))
        if kind is not None:
            where.append("kind = ?")
            params.append(_checked(kind, CheckinKind, "kind"))
        params.append(NO_LIMIT if limit is None else limit)
        rows = self._rows(
            f"SELECT * FROM checkins WHERE {' AND '.join(where)}"
            " ORDER BY due_at DESC, id DESC LIMIT ?",
            tuple(params),
        )
        return [_checkin_row(r) for r in rows]

    def contacts_with_checkins(self, statuses: tuple[str, ...]) -> list[int]:
        """Contacts with at least one check-in in one of these statuses."""
        for status in statuses:
            _checked(status, CheckinStatus, "status")
        marks = ", ".join("?" for _ in statuses) or "NULL"
        rows = self._rows(
            f"SELECT DISTINCT contact_id FROM checkins WHERE status IN ({marks})"
            " ORDER BY contact_id",
            tuple(statuses),
        )
        return [int(r["contact_id"]) for r in rows]

    def claim_checkin(self, checkin_id: int, now: datetime) -> bool:
        """Claim a queued check-in (queued -> open); False if another sweep claimed it."""
        with self._atomic("claim_checkin") as conn:
            cursor = conn.execute(
                "UPDATE checkins SET status = ?, started_at = ? WHERE id = ? AND status = ?",
                (CheckinStatus.OPEN, _ts(now), checkin_id, CheckinStatus.QUEUED),
            )
        return cursor.rowcount == 1

    def set_checkin_session(self, checkin_id: int, session_id: int) -> None:
        """Record the conversation an open check-in is carried out in."""
        with self._atomic("set_checkin_session") as conn:
            cursor = conn.execute(
                "UPDATE checkins SET session_id = ? WHERE id = ?", (session_id, checkin_id)
            )
            if cursor.rowcount == 0:
                raise KeyError(f"no checkins row with id {checkin_id}")

    def resolve_checkin(
        self, checkin_id: int, status: str, now: datetime, *, expected: str
    ) -> bool:
        """Move a check-in from `expected` to `status`; False if it was not in `expected`."""
        _checked(status, CheckinStatus, "status")
        _checked(expected, CheckinStatus, "expected")
        with self._atomic("resolve_checkin") as conn:
            cursor = conn.execute(
                "UPDATE checkins SET status = ?, resolved_at = ? WHERE id = ? AND status = ?",
                (status, _ts(now), checkin_id, expected),
            )
        return cursor.rowcount == 1


def _job_row(r: Row) -> JobRow:
    return JobRow(
        id=r["id"],
        contact_id=r["contact_id"],
        kind=r["kind"],
        flow=r["flow"],
        due_at=_dt_req(r["due_at"]),
        payload=json.loads(r["payload"]),
        dedupe_key=r["dedupe_key"],
        status=JobStatus(r["status"]),
        worker=r["worker"],
        claimed_at=_dt(r["claimed_at"]),
        finished_at=_dt(r["finished_at"]),
    )


def _enrollment_row(r: Row) -> EnrollmentRow:
    return EnrollmentRow(
        id=r["id"],
        contact_id=r["contact_id"],
        status=EnrollmentStatus(r["status"]),
        conditions=tuple(json.loads(r["conditions"])),
        checkin_time=r["checkin_time"],
        timezone=r["timezone"],
        team=r["team"],
        baselines=json.loads(r["baselines"]),
        session_id=r["session_id"],
        enrolled_by=r["enrolled_by"],
        created_at=_dt_req(r["created_at"]),
        updated_at=_dt_req(r["updated_at"]),
        activated_at=_dt(r["activated_at"]),
    )


def _schedule_row(r: Row) -> ScheduleRow:
    return ScheduleRow(
        id=r["id"],
        contact_id=r["contact_id"],
        flow=r["flow"],
        label=r["label"],
        rule=json.loads(r["rule"]),
        timezone=r["timezone"],
        next_due_at=_dt(r["next_due_at"]),
        status=ScheduleStatus(r["status"]),
        created_at=_dt_req(r["created_at"]),
        updated_at=_dt(r["updated_at"]),
    )


def _checkin_row(r: Row) -> CheckinRow:
    return CheckinRow(
        id=r["id"],
        contact_id=r["contact_id"],
        kind=CheckinKind(r["kind"]),
        flow=r["flow"],
        schedule_id=r["schedule_id"],
        due_at=_dt_req(r["due_at"]),
        not_before=_dt_req(r["not_before"]),
        status=CheckinStatus(r["status"]),
        session_id=r["session_id"],
        created_at=_dt_req(r["created_at"]),
        started_at=_dt(r["started_at"]),
        resolved_at=_dt(r["resolved_at"]),
    )
