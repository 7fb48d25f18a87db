"""A 10,000-row contacts file with known good, duplicate and bad rows, and the people it meets
in the database (tests/test_import*.py). The expected report is counted from how each row was
made, not from the importer."""

from __future__ import annotations

import csv
import io
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime

from bot.store import Store

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
ROWS = 10_000
HEADER = [
    "Phone",
    "channel",
    "language",
    "consent_care",
    "consent_broadcast",
    "region",
    "tags",
    "conditions",
    "checkin_time",
    "name",
]


def phone(i: int) -> str:
    return f"+9198{i:08d}"


@dataclass
class Expected:
    imported: int = 0
    merged: int = 0
    enrolled: int = 0
    rejected: Counter[str] = field(default_factory=Counter)

    def report(self) -> dict[str, object]:
        return {
            "rows": ROWS,
            "imported": self.imported,
            "merged": self.merged,
            "enrolled": self.enrolled,
            "rejected": sum(self.rejected.values()),
            "rejected_by_reason": dict(self.rejected),
        }


def known_people(store: Store) -> None:
    """Rows 0-299 are SMS contacts already; rows 300-349 WhatsApp ones (their rows give no
    channel: they join the person they are); row 350 opted out; row 351 said no to care."""
    with store.transaction():
        for i in range(352):
            channel = "whatsapp" if 300 <= i < 350 else "sms"
            cid = store.get_or_create_contact(channel, phone(i), T0, "en").id
            if i == 350:
                store.update_contact(cid, opted_out=True, now=T0, source="patient")
            if i == 351:
                store.update_contact(cid, consent_care=False, now=T0, source="patient")


def contacts_file() -> tuple[bytes, Expected]:
    """The CSV and the report it must give (after `known_people`)."""
    out = io.StringIO()
    w = csv.writer(out)
    w.writerow(HEADER)
    e = Expected()
    for i in range(ROWS):
        row = [
            phone(i),
            "",
            "hi" if i % 3 == 0 else "en",
            "yes",
            "no",
            "north",
            "camp;2026",
            "",
            "",
            f"Person {i}",
        ]
        if i < 350:
            e.merged += 1
        elif i in (350, 351):
            e.rejected["opted_out" if i == 350 else "declined"] += 1
        elif i % 50 == 0:
            row[0] = "98000-CALL-ME"
            e.rejected["bad_phone"] += 1
        elif i % 50 == 1:
            row[0] = ""
            e.rejected["missing_phone"] += 1
        elif i % 50 == 2:
            row[2] = "fr"
            e.rejected["bad_language"] += 1
        elif i % 50 == 3:
            row[3] = "maybe"
            e.rejected["bad_consent"] += 1
        elif i % 50 == 4:
            row[0] = "0" + phone(i - 5)[3:]  # row i-5 again, written the national way
            e.rejected["duplicate_in_file"] += 1
        elif i % 50 == 5:
            row[7] = "gout"
            e.rejected["bad_enrollment"] += 1
        elif i % 50 == 6:
            row[7], row[8] = "diabetes;hypertension", "08:30"
            e.imported += 1
            e.enrolled += 1
        else:
            e.imported += 1
        w.writerow(row)
    return out.getvalue().encode("utf-8"), e
