"""Persistent state behind one `Store` protocol; `open_store(url)` picks the engine.

Imports the standard library, sqlite_utils, psycopg (only for a postgresql:// URL),
bot.messages, bot.session and bot.errors.
"""

from __future__ import annotations

from bot.errors import ConfigError
from bot.store.base import Store
from bot.store.broadcasts import (
    Audience,
    AudienceCensus,
    AudienceCount,
    BroadcastRow,
    BroadcastStatus,
    BroadcastText,
    ConsentPurpose,
    ConsentRow,
    DeliveryCount,
    FanOutPlan,
    FanOutStep,
    NewBroadcast,
    OutboxGate,
    Variant,
)
from bot.store.checkins import (
    CheckinKind,
    CheckinRow,
    CheckinStatus,
    EnrollmentRow,
    EnrollmentStatus,
    JobRow,
    JobStatus,
    NewSchedule,
    ReadingRow,
    ScheduleRow,
    ScheduleStatus,
)
from bot.store.contacts import (
    ContactRow,
)
from bot.store.conversations import (
    SessionMark,
    TranscriptEntry,
)
from bot.store.core import SqlStore
from bot.store.messaging import (
    BULK_KINDS,
    FINAL_OUTBOX_STATUSES,
    InboxRow,
    Lane,
    OutboxRow,
    OutboxStatus,
)
from bot.store.privacy import (
    PrivacyCounts,
    forgotten_address,
)
from bot.store.sqlite import SqliteStore
from bot.store.tickets import (
    FINAL_ESCALATION_STATUSES,
    OPEN_ESCALATION_STATUSES,
    TRIAGE_LEVELS,
    AuditRow,
    EscalationRow,
    EscalationStatus,
    NoteRow,
)
from bot.store.users import (
    AuthSessionRow,
    Role,
    UserRow,
)

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
    "Lane",
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
    "SqlStore",
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
    `sqlite:////var/lib/carebridge/carebridge.db` (four slashes) is absolute;
    `postgresql://user:password@host:port/database` opens a PostgreSQL store.
    """
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    if scheme in ("postgresql", "postgres"):
        from bot.store.postgres import PostgresStore

        return PostgresStore(url)
    if scheme.startswith("postgresql+"):
        raise ConfigError(
            f"storage.url: write the PostgreSQL URL as postgresql://... (not {scheme}://); "
            "carebridge always uses psycopg"
        )
    if not url.startswith(_SQLITE):
        # Never echo the whole URL: a database URL may carry a password.
        shown = f"a {scheme}:// URL" if scheme else "a value without a scheme"
        raise ConfigError(
            f"storage.url: expected sqlite:///path/to/file.db (for example {DEFAULT_URL}) "
            f"or postgresql://user:password@host:port/database, got {shown}"
        )
    path = url[len(_SQLITE) :]
    if not path or path == ":memory:" or path.endswith("/"):
        raise ConfigError(
            f"storage.url: give the path of a database file after sqlite:/// (for example "
            f"{DEFAULT_URL}); in-memory databases are not supported"
        )
    return SqliteStore(path)
