"""Persistent state behind one `Store` protocol; `open_store(url)` picks the backend.

Imports the standard library, sqlite_utils, bot.messages, bot.session and bot.errors.
"""

from __future__ import annotations

from bot.errors import ConfigError
from bot.store.base import (
    BULK_KINDS,
    FINAL_ESCALATION_STATUSES,
    FINAL_OUTBOX_STATUSES,
    OPEN_ESCALATION_STATUSES,
    TRIAGE_LEVELS,
    Audience,
    AudienceCensus,
    AudienceCount,
    AuditRow,
    AuthSessionRow,
    BroadcastRow,
    BroadcastStatus,
    BroadcastText,
    CheckinKind,
    CheckinRow,
    CheckinStatus,
    ConsentPurpose,
    ConsentRow,
    ContactRow,
    DeliveryCount,
    EnrollmentRow,
    EnrollmentStatus,
    EscalationRow,
    EscalationStatus,
    FanOutPlan,
    FanOutStep,
    InboxRow,
    JobRow,
    JobStatus,
    NewBroadcast,
    NewSchedule,
    NoteRow,
    OutboxGate,
    OutboxRow,
    OutboxStatus,
    PrivacyCounts,
    ReadingRow,
    Role,
    ScheduleRow,
    ScheduleStatus,
    SessionMark,
    Store,
    TranscriptEntry,
    UserRow,
    Variant,
    forgotten_address,
)
from bot.store.sqlite import SqliteStore

__all__ = [
    "BULK_KINDS",
    "FINAL_ESCALATION_STATUSES",
    "FINAL_OUTBOX_STATUSES",
    "OPEN_ESCALATION_STATUSES",
    "TRIAGE_LEVELS",
    "Audience",
    "AudienceCensus",
    "AudienceCount",
    "AuditRow",
    "AuthSessionRow",
    "BroadcastRow",
    "BroadcastStatus",
    "BroadcastText",
    "CheckinKind",
    "CheckinRow",
    "CheckinStatus",
    "ConsentPurpose",
    "ConsentRow",
    "ContactRow",
    "DeliveryCount",
    "EnrollmentRow",
    "EnrollmentStatus",
    "EscalationRow",
    "EscalationStatus",
    "FanOutPlan",
    "FanOutStep",
    "InboxRow",
    "JobRow",
    "JobStatus",
    "NewBroadcast",
    "NewSchedule",
    "NoteRow",
    "OutboxGate",
    "OutboxRow",
    "OutboxStatus",
    "PrivacyCounts",
    "ReadingRow",
    "Role",
    "ScheduleRow",
    "ScheduleStatus",
    "SessionMark",
    "SqliteStore",
    "Store",
    "TranscriptEntry",
    "UserRow",
    "Variant",
    "forgotten_address",
    "open_store",
]

DEFAULT_URL = "sqlite:///data/carebridge.db"
_SQLITE = "sqlite:///"


def open_store(url: str) -> Store:
    """Open (creating and migrating as needed) the store that `storage.url` names.

    `sqlite:///data/carebridge.db` is relative to the working directory;
    `sqlite:////var/lib/carebridge/carebridge.db` (four slashes) is absolute.
    """
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    if scheme in ("postgresql", "postgres") or scheme.startswith("postgresql+"):
        raise ConfigError(
            "storage.url: PostgreSQL is not available yet in this version of carebridge; "
            f"use a SQLite file such as {DEFAULT_URL}"
        )
    if not url.startswith(_SQLITE):
        # Never echo the whole URL: a database URL may carry a password.
        shown = f"a {scheme}:// URL" if scheme else "a value without a scheme"
        raise ConfigError(
            f"storage.url: expected sqlite:///path/to/file.db (for example {DEFAULT_URL}), "
            f"got {shown}"
        )
    path = url[len(_SQLITE) :]
    if not path or path == ":memory:" or path.endswith("/"):
        raise ConfigError(
            f"storage.url: give the path of a database file after sqlite:/// (for example "
            f"{DEFAULT_URL}); in-memory databases are not supported"
        )
    return SqliteStore(path)
