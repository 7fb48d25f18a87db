"""The check-in scheduler: one idempotent `sweep(now)` over rows, and APScheduler 3 used only as
the metronome that calls it. What is due lives in rows (schedules -> jobs -> check-ins ->
conversations); every step is a claim or a compare-and-set, so a restart, a missed tick or two
schedulers at once neither lose nor duplicate a reminder (docs/checkins.md).

Imports bot.app (CareBridge), bot.store, bot.schedules, bot.lifecycle, bot.enrollment,
bot.session and APScheduler. No clock of its own: `now` comes in.
"""

from __future__ import annotations

import logging
import os
import socket
import traceback
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from bot import enrollment, lifecycle
from bot.app import CareBridge
from bot.schedules import (
    QuietHours,
    Rule,
    defer_quiet,
    in_quiet_hours,
    latest_due,
    parse_clock,
    zone,
)
from bot.session import SessionStatus
from bot.store import (
    CheckinKind,
    CheckinRow,
    CheckinStatus,
    ContactRow,
    EnrollmentRow,
    EnrollmentStatus,
    JobRow,
    JobStatus,
)

log = logging.getLogger(__name__)

REVIEW_WINDOW = timedelta(days=7)  # finished conversations older than this are not reviewed
_ENDED = (SessionStatus.COMPLETED, SessionStatus.HANDED_OFF)


@dataclass
class SweepReport:
    """What one sweep did (ids only: for logs, tests and the CLI)."""

    requeued: int = 0
    activated: int = 0
    paused: int = 0
    nudged: int = 0
    expired: int = 0
    reviewed: int = 0
    materialized: int = 0
    skipped: int = 0  # occurrences too late to send after downtime (misfire_grace)
    jobs: int = 0
    started: int = 0
    answered: int = 0
    missed: int = 0
    escalated: int = 0
    failed: int = 0
    outbox_ids: list[int] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        """The non-zero counters."""
        return {k: v for k, v in vars(self).items() if isinstance(v, int) and v}


def missed_streak(rows: Iterable[CheckinRow]) -> int:
    """Scheduled check-in times missed in a row, latest first: several flows due at the same
    time count once; a time with any answer ends the run; one still open is not counted yet."""
    groups: dict[datetime, set[CheckinStatus]] = {}
    for row in rows:
        if row.kind is CheckinKind.SCHEDULED:
            groups.setdefault(row.due_at, set()).add(row.status)
    streak = 0
    for due in sorted(groups, reverse=True):
        statuses = groups[due]
        if statuses & {CheckinStatus.ANSWERED, CheckinStatus.LATE}:
            break
        if statuses & {CheckinStatus.OPEN, CheckinStatus.QUEUED}:
            continue
        if CheckinStatus.MISSED in statuses:
            streak += 1
    return streak


class Sweeper:
    """Runs sweeps for one CareBridge. `strict=True` (tests) lets errors out instead of logging
    them and carrying on with the next row."""

    def __init__(
        self,
        bridge: CareBridge,
        *,
        worker: str | None = None,
        batch: int = 200,
        strict: bool = False,
    ) -> None:
        self.bridge = bridge
        self.store = bridge.store
        self.config = bridge.config
        self.cfg = bridge.config.checkins
        self.worker = worker or f"{socket.gethostname()}:{os.getpid()}:{id(self):x}"
        self.batch = batch
        self.strict = strict
        self.policy = lifecycle.Lifecycle(
            self.cfg.nudge_after, self.cfg.expire_after, self.cfg.busy_grace
        )
        q = self.cfg.quiet_hours
        self.quiet = QuietHours(parse_clock(q.start), parse_clock(q.end)) if q else None
        self.urgent_within = q.urgent_within if q else timedelta(0)

    # --- the sweep -------------------------------------------------------------------------

    def sweep(self, now: datetime) -> SweepReport:
        """One pass over everything due at `now`; safe to repeat and to run on many nodes."""
        r = SweepReport()
        r.requeued = self.store.requeue_stuck_jobs(now, self.cfg.stuck_after)
        self.sync_enrollments(now, r)
        self.expire_and_nudge(now, r)
        self.review(now, r)
        self.materialize(now, r)
        touched = self.run_jobs(now, r)
        busy = self.store.contacts_with_checkins((CheckinStatus.OPEN, CheckinStatus.QUEUED))
        for contact_id in sorted({*touched, *busy}):
            with self._guard("advance", contact_id, r):
                self.advance(contact_id, now, r)
        if r.counts():
            log.info("sweep %s", " ".join(f"{k}={v}" for k, v in sorted(r.counts().items())))
        return r

    # 1. enrollments follow the contact's consent
    def sync_enrollments(self, now: datetime, r: SweepReport) -> None:
        """Activate an enrollment once the patient consents in its conversation; pause it
        when they opt out or withdraw consent; resume it when they come back."""
        for candidate in self.store.enrollments_to_sync():
            with self._guard("enrollment", candidate.contact_id, r), self.store.transaction():
                contact_id = candidate.contact_id
                current = self.store.get_enrollment(contact_id)
                contact = self.store.contact_row(contact_id)
                if current is None or contact is None:
                    continue
                reachable = contact.consent_care is True and not contact.opted_out
                if current.status is EnrollmentStatus.ACTIVE and not reachable:
                    enrollment.pause(self.store, contact_id, now)
                    r.paused += 1
                    continue
                comes_back = current.status is EnrollmentStatus.PAUSED and reachable
                agrees = current.status is EnrollmentStatus.INVITED and self._agreed(contact_id)
                if comes_back or agrees:
                    enrollment.activate(self.store, self.config, contact_id, now)
                    r.activated += 1

    def _agreed(self, contact_id: int) -> bool:
        """The patient said yes to check-ins in the enrollment conversation itself (an earlier
        consent, e.g. to a COVID-19 screening or at first contact, is not consent to them)."""
        for row in self.store.checkins(contact_id, kind=CheckinKind.ENROLLMENT, limit=3):
            session = self.store.get_session(row.session_id) if row.session_id else None
            if session is not None and session.answers.get("consent_checkins") is True:
                return True
        return False

    # 2. the session lifecycle: one nudge, then expiry
    def expire_and_nudge(self, now: datetime, r: SweepReport) -> None:
        """Nudge silent conversations once (out of quiet hours); expire them later."""
        for mark in self.store.idle_sessions(now - self.policy.nudge_after, self.batch):
            with self._guard("lifecycle", mark.contact_id, r), self.store.transaction():
                contact = self.store.contact_row(mark.contact_id)
                if contact is None:
                    continue
                step = lifecycle.next_step(
                    mark.updated_at,
                    mark.nudged_at,
                    now,
                    self.tz_of(mark.contact_id),
                    self.quiet,
                    self.policy,
                    can_nudge=_may_nudge(contact) and mark.flow != self.bridge.library.default_flow,
                )
                if step is lifecycle.Step.EXPIRE:
                    if self.store.expire_session(mark.id, mark.updated_at, now):
                        r.expired += 1
                        log.info("session expired contact=%s session=%s", contact.id, mark.id)
                elif step is lifecycle.Step.NUDGE:
                    session = self.store.get_session(mark.id)
                    if session is None or not self.store.mark_session_nudged(
                        mark.id, mark.updated_at, now
                    ):
                        continue
                    checkin = any(
                        c.session_id == mark.id
                        for c in self.store.checkins(contact.id, status=CheckinStatus.OPEN)
                    )
                    text, choices = lifecycle.nudge_text(
                        self.bridge.library, session, checkin=checkin
                    )
                    r.outbox_ids += self.bridge.send_reminder(session, text, choices, now)
                    r.nudged += 1
                    log.info("session nudged contact=%s session=%s", contact.id, mark.id)

    # 3. conversations that ended: enrollment, trend rule, late answers
    def review(self, now: datetime, r: SweepReport) -> None:
        """Once per finished conversation: apply an enrollment, the blood-pressure trend rule,
        and turn a check-in counted as missed into a late answer."""
        for mark in self.store.unreviewed_sessions(now - REVIEW_WINDOW, self.batch):
            with self._guard("review", mark.contact_id, r), self.store.transaction():
                if not self.store.mark_session_reviewed(mark.id, mark.updated_at):
                    continue
                r.reviewed += 1
                session = self.store.get_session(mark.id)
                if session is None:
                    continue
                applied = enrollment.apply_session(self.store, self.config, session, now)
                if applied is not None and applied.status is EnrollmentStatus.ACTIVE:
                    r.activated += 1
                if self.bridge.apply_trend_rule(session, now) is not None:
                    r.escalated += 1
                for row in self.store.checkins(mark.contact_id, CheckinStatus.MISSED, limit=20):
                    if row.session_id == mark.id and mark.status == SessionStatus.COMPLETED:
                        self.store.resolve_checkin(
                            row.id, CheckinStatus.LATE, now, expected=CheckinStatus.MISSED
                        )

    # 4. recurring schedules become jobs
    def materialize(self, now: datetime, r: SweepReport) -> None:
        """Turn each due occurrence of an active schedule into one `checkin` job (dedupe key
        `checkin:{contact}:{flow}:{due}`) and move the schedule on, compare-and-set. After
        downtime only the latest occurrence is considered, and only within misfire_grace."""
        for sched in self.store.due_schedules(now, self.batch):
            assert sched.next_due_at is not None
            with self._guard("schedule", sched.contact_id, r), self.store.transaction():
                rule, tz = Rule.from_json(sched.rule), zone(sched.timezone)
                due, nxt = latest_due(rule, tz, sched.next_due_at, now)
                if not self.store.advance_schedule(sched.id, sched.next_due_at, nxt, now):
                    continue  # another sweep took it
                if now - due > self.cfg.misfire_grace:
                    r.skipped += 1
                    log.warning("check-in skipped (too late) contact=%s", sched.contact_id)
                    continue
                key = f"checkin:{sched.contact_id}:{sched.flow}:{due.isoformat()}"
                payload = {"schedule_id": sched.id}
                job = self.store.schedule_job(
                    sched.contact_id, "checkin", sched.flow, due, payload, dedupe_key=key
                )
                r.materialized += job is not None

    # 5. due jobs become queued check-ins
    def run_jobs(self, now: datetime, r: SweepReport) -> set[int]:
        """Claim due jobs; each one's effect and its finish commit together (exactly once)."""
        touched: set[int] = set()
        for job in self.store.claim_due_jobs(now, self.batch, self.worker):
            try:
                with self.store.transaction():
                    status = self._run_job(job, now)
                    self.store.finish_job(job.id, status, now)
                r.jobs += 1
                if job.contact_id is not None:
                    touched.add(job.contact_id)
            except Exception as exc:
                if self.strict:
                    raise
                _log_failure("job", job.id, exc)
                self.store.finish_job(job.id, JobStatus.FAILED, now)
                r.failed += 1
        return touched

    def _run_job(self, job: JobRow, now: datetime) -> JobStatus:
        contact = self.store.contact_row(job.contact_id) if job.contact_id is not None else None
        if contact is None or job.flow is None or job.flow not in self.bridge.library.flows:
            return JobStatus.CANCELLED
        if contact.opted_out or contact.consent_care is not True:
            return JobStatus.CANCELLED
        tz = self.tz_of(contact.id)
        if job.kind == "checkin":
            current = self.store.get_enrollment(contact.id)
            if current is None or current.status is not EnrollmentStatus.ACTIVE:
                return JobStatus.CANCELLED
            not_before = defer_quiet(job.due_at, tz, self.quiet)
            schedule_id = job.payload.get("schedule_id")
            self.store.add_checkin(
                contact.id,
                CheckinKind.SCHEDULED,
                job.flow,
                job.due_at,
                not_before,
                now,
                schedule_id=int(schedule_id) if schedule_id is not None else None,
            )
            return JobStatus.DONE
        if job.kind == "follow_up":
            urgent = self._talking(contact, job.due_at)
            not_before = job.due_at if urgent else defer_quiet(job.due_at, tz, self.quiet)
            self.store.add_checkin(
                contact.id, CheckinKind.FOLLOW_UP, job.flow, job.due_at, not_before, now
            )
            every_s, times = job.payload.get("every_s"), int(job.payload.get("times") or 1)
            if every_s and times > 1:
                nxt = job.due_at + timedelta(seconds=float(every_s))
                self.store.schedule_job(
                    contact.id,
                    "follow_up",
                    job.flow,
                    nxt,
                    {"every_s": every_s, "times": times - 1},
                    dedupe_key=f"follow_up:{contact.id}:{job.flow}:{nxt.isoformat()}",
                )
            return JobStatus.DONE
        log.warning("job of unknown kind id=%s kind=%s", job.id, job.kind)
        return JobStatus.FAILED

    # 6. queued check-ins start, open ones are resolved
    def advance(self, contact_id: int, now: datetime, r: SweepReport) -> None:
        """Resolve the contact's open check-in (answered, missed), then start the next queued
        one that is due, if quiet hours allow and the patient is not busy talking."""
        with self.store.transaction():
            contact = self.store.contact_row(contact_id)
            if contact is None:
                return
            still_open = [
                row
                for row in self.store.checkins(contact_id, CheckinStatus.OPEN)
                if self._resolve(row, contact, now, r) is None
            ]
            queued = self.store.checkins(contact_id, CheckinStatus.QUEUED)
            due = sorted(
                (row for row in queued if row.not_before <= now),
                key=lambda row: (row.kind is not CheckinKind.FOLLOW_UP, row.not_before, row.id),
            )
            if not due:
                return
            if still_open and not self._supersede(still_open[0], due, now, r):
                for row in due:
                    self._drop_if_stale(row, now, r)
                return
            self._start_next(contact, due, now, r)

    def _start_next(
        self, contact: ContactRow, due: Sequence[CheckinRow], now: datetime, r: SweepReport
    ) -> None:
        current = self.store.get_enrollment(contact.id)
        tz = self.tz_of(contact.id, current)
        for row in due:
            if self._drop_if_stale(row, now, r):
                continue
            if not _may_start(row, contact, current):
                self._finish(row, CheckinStatus.CANCELLED, now, r)
                continue
            urgent = row.kind is CheckinKind.FOLLOW_UP and self._talking(contact, now)
            # Quiet hours hold what the bot starts on its own; not a check-in someone asked
            # for now (manual), nor anything for a test contact (the simulator: nobody sleeps).
            exempt = urgent or contact.test or row.kind is CheckinKind.MANUAL
            if in_quiet_hours(now, tz, self.quiet) and not exempt:
                return  # wait for the morning
            if self._busy(contact, now):
                return
            if not self.store.claim_checkin(row.id, now):
                return
            answers = (
                enrollment.prefill(current, contact.language)
                if row.kind is CheckinKind.ENROLLMENT and current is not None
                else enrollment.baselines_of(current)
            )
            handled = self.bridge.start_checkin(contact.id, row.flow, now, answers=answers)
            if handled.session is None or handled.session.id is None:
                self.store.resolve_checkin(
                    row.id, CheckinStatus.CANCELLED, now, expected=CheckinStatus.OPEN
                )
                return
            self.store.set_checkin_session(row.id, handled.session.id)
            r.started += 1
            r.outbox_ids += handled.outbox_ids
            log.info("check-in started contact=%s checkin=%s kind=%s", contact.id, row.id, row.kind)
            return

    def _resolve(
        self, row: CheckinRow, contact: ContactRow, now: datetime, r: SweepReport
    ) -> CheckinStatus | None:
        """How an open check-in ended, or None while its conversation is still going."""
        if row.session_id is None:
            return self._finish(row, CheckinStatus.CANCELLED, now, r)
        mark = self.store.session_mark(row.session_id)
        latest = self.store.current_session(contact.to_contact())
        if mark is None:
            return self._finish(row, CheckinStatus.CANCELLED, now, r)
        if latest.id != row.session_id and mark.status == SessionStatus.ACTIVE:
            newer = self.store.session_mark(latest.id) if latest.id is not None else None
            if newer is not None and newer.flow == row.flow and newer.id > mark.id:
                self.store.set_checkin_session(row.id, newer.id)  # RESTART: same check-in
                mark = newer
            else:
                return self._finish(row, CheckinStatus.MISSED, now, r)  # moved on
        if mark.status in _ENDED:
            outcome = CheckinStatus.CANCELLED if contact.opted_out else CheckinStatus.ANSWERED
            return self._finish(row, outcome, now, r)
        if mark.status == SessionStatus.EXPIRED:
            return self._finish(row, CheckinStatus.MISSED, now, r)
        return None

    def _supersede(
        self, current: CheckinRow, due: Sequence[CheckinRow], now: datetime, r: SweepReport
    ) -> bool:
        """An open check-in silent for busy_grace gives way to a due follow-up (time-critical,
        e.g. the glucose re-check) or to the next occurrence of the same flow; an enrollment
        or manual conversation left half-done gives way to anything due."""
        mark = self.store.session_mark(current.session_id) if current.session_id else None
        idle = mark is None or mark.updated_at <= now - self.policy.busy_grace
        minor = current.kind in (CheckinKind.ENROLLMENT, CheckinKind.MANUAL)
        wanted = minor or any(
            row.kind is CheckinKind.FOLLOW_UP or row.flow == current.flow for row in due
        )
        if not (idle and wanted):
            return False
        self._finish(current, CheckinStatus.MISSED, now, r)
        return True

    def _drop_if_stale(self, row: CheckinRow, now: datetime, r: SweepReport) -> bool:
        if now - row.not_before <= self.cfg.misfire_grace:
            return False
        self._finish(row, CheckinStatus.MISSED, now, r)
        return True

    def _talking(self, contact: ContactRow, at: datetime) -> bool:
        """The patient wrote to us within `quiet_hours.urgent_within` before `at`: a follow-up
        for them is not held back by quiet hours (they are awake, e.g. treating a low)."""
        last = contact.last_inbound_at
        return last is not None and last >= at - self.urgent_within

    def _busy(self, contact: ContactRow, now: datetime) -> bool:
        """The patient is in the middle of another conversation (active, recently; a menu
        waiting for a choice is not a conversation)."""
        latest = self.store.current_session(contact.to_contact())
        return (
            latest.id is not None
            and latest.status is SessionStatus.ACTIVE
            and latest.flow != self.bridge.library.default_flow
            and latest.updated_at is not None
            and latest.updated_at > now - self.policy.busy_grace
        )

    def _finish(
        self, row: CheckinRow, status: CheckinStatus, now: datetime, r: SweepReport
    ) -> CheckinStatus:
        if not self.store.resolve_checkin(row.id, status, now, expected=row.status):
            return status
        if status is CheckinStatus.ANSWERED:
            r.answered += 1
        elif status is CheckinStatus.MISSED:
            r.missed += 1
            log.info("check-in missed contact=%s checkin=%s", row.contact_id, row.id)
            if row.kind is CheckinKind.SCHEDULED:
                self._after_missed(row, now, r)
        return status

    def _after_missed(self, row: CheckinRow, now: datetime, r: SweepReport) -> None:
        """`checkins.missed_escalation` scheduled check-ins missed in a row alert a clinician
        (and again at every further multiple)."""
        rows = self.store.checkins(row.contact_id, kind=CheckinKind.SCHEDULED, limit=100)
        streak = missed_streak(rows)
        n = self.cfg.missed_escalation
        if streak < n or streak % n:
            return
        answered = [c for c in rows if c.status in (CheckinStatus.ANSWERED, CheckinStatus.LATE)]
        session = self.store.get_session(row.session_id) if row.session_id else None
        extra: dict[str, Any] = {
            "missed_checkins": streak,
            "last_answered_at": answered[0].due_at.isoformat() if answered else None,
        }
        self.bridge.escalate(
            row.contact_id, session, self.cfg.missed_level, "missed_checkins", row.flow, extra, now
        )
        r.escalated += 1

    # --- helpers ------------------------------------------------------------------------------

    def tz_of(self, contact_id: int, current: EnrollmentRow | None = None) -> ZoneInfo:
        """The patient's time zone (enrollment), else checkins.default_timezone."""
        current = current or self.store.get_enrollment(contact_id)
        return zone(current.timezone if current else self.cfg.default_timezone)

    @contextmanager
    def _guard(self, what: str, contact_id: int, r: SweepReport) -> Iterator[None]:
        """One row's failure is logged (ids only) and the sweep goes on; strict re-raises."""
        try:
            yield
        except Exception as exc:
            if self.strict:
                raise
            r.failed += 1
            _log_failure(what, contact_id, exc)


def _may_nudge(contact: ContactRow) -> bool:
    """A nudge goes to someone who talks with us: not opted out, and either consented or wrote
    to us themselves (an unanswered invitation gets no reminder)."""
    if contact.opted_out or contact.consent_care is False:
        return False
    return contact.consent_care is True or contact.last_inbound_at is not None


def _may_start(row: CheckinRow, contact: ContactRow, current: EnrollmentRow | None) -> bool:
    if contact.opted_out:
        return False
    if row.kind is CheckinKind.ENROLLMENT:
        return contact.consent_care is not False
    if contact.consent_care is not True:
        return False
    return row.kind is not CheckinKind.SCHEDULED or (
        current is not None and current.status is EnrollmentStatus.ACTIVE
    )


def _log_failure(what: str, ident: int, exc: BaseException) -> None:
    # The traceback without the exception's message, which might quote patient data.
    log.error(
        "sweep step failed step=%s id=%s error=%s\n%s",
        what,
        ident,
        type(exc).__name__,
        "".join(traceback.format_tb(exc.__traceback__)),
    )


def sweep(bridge: CareBridge, now: datetime, *, strict: bool = False) -> SweepReport:
    """One sweep at `now` (tests, `carebridge patients sweep`, cron)."""
    return Sweeper(bridge, strict=strict).sweep(now)


# --- coordinator actions ----------------------------------------------------------------------


@dataclass(frozen=True)
class Enrolled:
    """The outcome of `enroll`."""

    contact_id: int
    checkin_id: int | None  # the enrollment conversation's check-in row
    started: bool  # the first message is in the outbox (False: waiting for quiet hours)
    not_before: datetime | None


def enroll(
    bridge: CareBridge,
    request: enrollment.EnrollRequest,
    now: datetime,
    *,
    enrolled_by: str = "cli",
) -> Enrolled:
    """Enroll a patient for a coordinator: the enrollment conversation (consent first) is
    queued and started at once unless quiet hours hold it; no check-in is scheduled before
    the patient agrees (EnrollmentError when the request is wrong)."""
    req = request.checked(bridge.config, bridge.library.flows)
    store = bridge.store
    with store.transaction():
        contact = store.get_or_create_contact(req.channel, req.address, now, req.language)
        if req.language is not None:
            store.update_contact(contact.id, language=req.language, now=now)
        previous = store.get_enrollment(contact.id)
        status = EnrollmentStatus.INVITED
        if previous is not None and previous.status is EnrollmentStatus.ACTIVE:
            status = EnrollmentStatus.ACTIVE  # already agreed: a change of plan, not a new start
        store.save_enrollment(
            contact.id,
            status=status,
            conditions=req.conditions,
            checkin_time=req.checkin_time,
            timezone=req.timezone,
            team=req.team,
            baselines={**(previous.baselines if previous else {}), **req.baselines()},
            now=now,
            enrolled_by=enrolled_by,
        )
        if status is EnrollmentStatus.ACTIVE:
            enrollment.activate(store, bridge.config, contact.id, now)
            return Enrolled(contact.id, None, False, None)
        sweeper = Sweeper(bridge)
        row = store.contact_row(contact.id)
        test = row is not None and row.test  # the simulator: no quiet hours
        not_before = now if test else defer_quiet(now, zone(req.timezone), sweeper.quiet)
        checkin_id = store.add_checkin(
            contact.id, CheckinKind.ENROLLMENT, enrollment.ENROLLMENT_FLOW, now, not_before, now
        )
        report = SweepReport()
        sweeper.advance(contact.id, now, report)
    log.info("patient enrolled contact=%s started=%s", contact.id, report.started)
    return Enrolled(contact.id, checkin_id, report.started > 0, not_before)


def checkin_now(bridge: CareBridge, contact_id: int, flow: str, now: datetime) -> SweepReport:
    """A coordinator asks for a check-in now (kind `manual`: missing it does not count)."""
    if flow not in bridge.library.flows:
        raise ValueError(f"unknown flow {flow!r}")
    sweeper = Sweeper(bridge)
    report = SweepReport()
    with bridge.store.transaction():
        bridge.store.add_checkin(contact_id, CheckinKind.MANUAL, flow, now, now, now)
        sweeper.advance(contact_id, now, report)
    return report


# --- APScheduler as the metronome -------------------------------------------------------------


class SweepScheduler:
    """Calls `sweep(clock())` every `checkins.sweep_every_s` from an APScheduler 3 background
    thread; a tick that is late or overlaps another is coalesced, never queued up.

    `also` are further sweeps to run on the same tick (e.g. the escalation deadline sweep,
    `bridge.tickets.sweep_deadlines`); `on_sweep` receives each report (e.g. to wake the outbox
    dispatcher: `lambda r: r.outbox_ids and loop.call_soon_threadsafe(dispatcher.wake)`).

    APScheduler is only the trigger: each sweep (`checkins`, then each of `also` by its name)
    first claims its lease row in the store (bot.store.work), so of many processes
    ticking at once only one runs a given sweep, and after a run nobody runs it again within
    about one interval. A holder that crashes loses the lease after `lease_s`.
    """

    def __init__(
        self,
        bridge: CareBridge,
        *,
        clock: Callable[[], datetime] | None = None,
        interval_s: float | None = None,
        also: Sequence[Callable[[datetime], object]] = (),
        on_sweep: Callable[[SweepReport], object] | None = None,
        holder: str | None = None,
    ) -> None:
        from apscheduler.schedulers.background import BackgroundScheduler

        self.sweeper = Sweeper(bridge)
        self.store = bridge.store
        self.clock = clock or bridge.clock
        self.interval_s = interval_s or bridge.config.checkins.sweep_every_s
        self.also = tuple(also)
        names = [sweep_name(fn) for fn in self.also]
        if len(set(names)) != len(names) or "checkins" in names:
            # one lease per name: two sweeps under one name would starve all but the first
            raise ValueError(f"sweeps need distinct lease names, got {names}")
        self.on_sweep = on_sweep
        self.holder = holder or self.sweeper.worker
        self.lease = timedelta(seconds=max(120.0, 5 * self.interval_s))
        self.ran: dict[str, int] = {}  # sweeps this process ran, by name (tests, logs)
        self._started: dict[str, datetime] = {}
        self._aps: Any = BackgroundScheduler(
            timezone=UTC,
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": None},
        )

    def start(self) -> None:
        """Start ticking (the first sweep runs at once)."""
        self._aps.add_job(
            self.tick,
            "interval",
            seconds=self.interval_s,
            id="carebridge-sweep",
            next_run_time=datetime.now(UTC),
            replace_existing=True,
        )
        self._aps.start()

    def shutdown(self, wait: bool = True) -> None:
        """Stop ticking (waits for a running sweep by default)."""
        if self._aps.running:
            self._aps.shutdown(wait=wait)

    @property
    def running(self) -> bool:
        return bool(self._aps.running)

    def tick(self) -> SweepReport | None:
        """One round of sweeps now, each only if this process wins its lease; never raises
        (the scheduler thread must keep ticking). The report is empty when another process
        holds the check-in sweep."""
        try:
            report = SweepReport()
            if self._leased("checkins"):
                try:
                    report = self.sweeper.sweep(self.clock())
                finally:
                    self._release("checkins")
            for extra in self.also:
                name = sweep_name(extra)
                if not self._leased(name):
                    continue
                try:
                    extra(self.clock())
                finally:
                    self._release(name)
            if self.on_sweep is not None:
                self.on_sweep(report)
            return report
        except Exception as exc:
            _log_failure("tick", 0, exc)
            return None

    def _leased(self, name: str) -> bool:
        claim = getattr(self.store, "claim_sweep", None)
        if claim is None:  # a store without leases (a test double): run every tick
            return True
        now = self.clock()
        won = bool(claim(name, self.holder, now, self.lease))
        if won:
            self.ran[name] = self.ran.get(name, 0) + 1
            self._started[name] = now
        return won

    def _release(self, name: str) -> None:
        release = getattr(self.store, "release_sweep", None)
        if release is not None:
            now = self.clock()
            # due again a little before the next tick, so the winner's own tick may take it
            started = self._started.pop(name, now)
            release(name, self.holder, now, started + timedelta(seconds=self.interval_s * 0.9))


def sweep_name(fn: Callable[..., object]) -> str:
    """The lease name of a sweep callable: its qualified name (`Tickets.sweep_deadlines`)."""
    return str(getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None) or repr(fn))
