"""Contacts and people: one row per patient address on a channel, its language, consent
and audience facts, and the links that make several contacts one person.
Imports the standard library, bot.session and bot.store (broadcasts, codec, sql)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from bot.session import Contact
from bot.store.broadcasts import record_consents
from bot.store.codec import _dt, _dt_req, _flag, _ts
from bot.store.sql import Row, SqlMixin


@dataclass(frozen=True)
class ContactRow:
    """Everything stored about a contact, including what the engine does not see."""

    id: int
    channel: str
    address: str
    language: str
    opted_out: bool
    consent_care: bool | None
    consent_broadcast: bool | None
    created_at: datetime
    updated_at: datetime
    opted_out_at: datetime | None
    consent_care_at: datetime | None
    consent_broadcast_at: datetime | None
    last_inbound_at: datetime | None  # WhatsApp's 24-hour window starts here
    # broadcasts (issue 7): who the contact is across channels, and audience facts
    person_id: int | None = None  # contacts with the same person_id are one person
    region: str | None = None
    timezone: str | None = None  # IANA name; an enrollment's time zone is used when None
    preferred: bool = False  # the person's preferred contact for broadcasts
    language_set: bool = False  # the language was chosen, given or inferred
    test: bool = False  # a test contact (the simulator's): kept out of on-call, counts, broadcasts

    def to_contact(self) -> Contact:
        """The engine's view of this contact."""
        return Contact(
            id=self.id,
            channel=self.channel,
            language=self.language,
            opted_out=self.opted_out,
            consent_care=self.consent_care,
            language_set=self.language_set,
        )


class ContactStore(Protocol):
    """Contacts, their facts and tags, and people across channels."""

    # -- contacts ------------------------------------------------------------------------------

    def get_or_create_contact(
        self, channel: str, address: str, now: datetime, language: str | None = None
    ) -> Contact:
        """The contact for this address on this channel, created on first contact."""
        ...

    def get_contact(self, contact_id: int) -> Contact | None:
        """The engine's view of a contact, or None."""
        ...

    def find_contact(self, channel: str, address: str) -> Contact | None:
        """The contact for this address on this channel, or None (never creates one)."""
        ...

    def contact_row(self, contact_id: int) -> ContactRow | None:
        """Everything stored about a contact, or None."""
        ...

    def contact_address(self, contact_id: int) -> tuple[str, str]:
        """(channel, address) of a contact; KeyError if there is no such contact."""
        ...

    def update_contact(
        self,
        contact_id: int,
        *,
        opted_out: bool | None = None,
        language: str | None = None,
        consent_care: bool | None = None,
        consent_broadcast: bool | None = None,
        now: datetime,
        source: str | None = None,
    ) -> None:
        """Change the given contact-level facts (None leaves a fact as it is); each change of
        consent or opt-out is appended to the consent record with `source`."""
        ...

    def touch_inbound(self, contact_id: int, now: datetime) -> None:
        """Record when the contact last wrote to us."""
        ...

    # -- audience facts, tags and people -------------------------------------------------------

    def set_contact_facts(
        self,
        contact_id: int,
        now: datetime,
        *,
        region: str | None = None,
        timezone: str | None = None,
        clear: tuple[str, ...] = (),
    ) -> None:
        """Set a contact's region and/or time zone (`clear` names facts to unset)."""
        ...

    def set_contact_tags(
        self, contact_id: int, add: tuple[str, ...] = (), remove: tuple[str, ...] = ()
    ) -> tuple[str, ...]:
        """Add and remove tags; returns the contact's tags, sorted."""
        ...

    def linked_contacts(self, contact_id: int) -> list[Contact]:
        """The person's other contacts (same person_id), most recently active first."""
        ...

    def link_contacts(self, contact_id: int, other_id: int, now: datetime) -> int:
        """Make two contacts (and everyone linked to either) one person; returns its id."""
        ...

    def prefer_contact(self, contact_id: int, now: datetime) -> None:
        """Make this the preferred contact of its person for broadcasts."""
        ...


class ContactSql(SqlMixin):
    """`ContactStore` in SQL written once; a mixin of `SqlStore`."""

    # -- contacts ------------------------------------------------------------------------------

    def get_or_create_contact(
        self, channel: str, address: str, now: datetime, language: str | None = None
    ) -> Contact:
        """The contact for this address on this channel, created on first contact."""
        sql = "SELECT * FROM contacts WHERE channel = ? AND address = ?"
        rows = self._rows(sql, (channel, address))
        if not rows:
            with self._atomic("get_or_create_contact") as conn:
                conn.execute(
                    "INSERT INTO contacts (channel, address, language, language_set,"
                    " created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?)"
                    " ON CONFLICT (channel, address) DO NOTHING",
                    (
                        channel,
                        address,
                        language or "en",
                        int(language is not None),
                        _ts(now),
                        _ts(now),
                    ),
                )
                if language is None:  # the same person on another channel: their language
                    conn.execute(
                        "UPDATE contacts SET (language, language_set) = (SELECT o.language,"
                        " o.language_set FROM contacts o WHERE o.person_id = contacts.person_id"
                        " AND o.id <> contacts.id AND o.language_set = 1"
                        " ORDER BY o.updated_at DESC LIMIT 1)"
                        " WHERE channel = ? AND address = ? AND EXISTS (SELECT 1 FROM contacts o"
                        " WHERE o.person_id = contacts.person_id AND o.id <> contacts.id"
                        " AND o.language_set = 1)",
                        (channel, address),
                    )
                rows = self._write_rows(conn, sql, (channel, address))
        return _contact_row(rows[0]).to_contact()

    def get_contact(self, contact_id: int) -> Contact | None:
        """The engine's view of a contact, or None."""
        row = self.contact_row(contact_id)
        return None if row is None else row.to_contact()

    def find_contact(self, channel: str, address: str) -> Contact | None:
        """The contact for this address on this channel, or None (never creates one)."""
        rows = self._rows(
            "SELECT * FROM contacts WHERE channel = ? AND address = ?", (channel, address)
        )
        return _contact_row(rows[0]).to_contact() if rows else None

    def contact_row(self, contact_id: int) -> ContactRow | None:
        """Everything stored about a contact, or None."""
        rows = self._rows("SELECT * FROM contacts WHERE id = ?", (contact_id,))
        return _contact_row(rows[0]) if rows else None

    def contact_address(self, contact_id: int) -> tuple[str, str]:
        """(channel, address) of a contact; KeyError if there is no such contact."""
        rows = self._rows("SELECT channel, address FROM contacts WHERE id = ?", (contact_id,))
        if not rows:
            raise KeyError(f"no contacts row with id {contact_id}")
        return rows[0]["channel"], rows[0]["address"]

    def update_contact(
        self,
        contact_id: int,
        *,
        opted_out: bool | None = None,
        language: str | None = None,
        consent_care: bool | None = None,
        consent_broadcast: bool | None = None,
        now: datetime,
        source: str | None = None,
    ) -> None:
        """Change the given contact-level facts (None leaves a fact as it is); each change of
        consent or opt-out is appended to the consent record with `source`."""
        at = _ts(now)
        with self._atomic("update_contact") as conn:
            current = self._require(conn, "contacts", contact_id)
            changes: dict[str, Any] = {}
            if opted_out is not None and bool(current["opted_out"]) != opted_out:
                changes["opted_out"] = int(opted_out)
                changes["opted_out_at"] = at if opted_out else None
            if language is not None and language != current["language"]:
                changes["language"] = language
            if language is not None and not current["language_set"]:
                changes["language_set"] = 1
            if consent_care is not None and _flag(current["consent_care"]) != consent_care:
                changes["consent_care"] = int(consent_care)
                changes["consent_care_at"] = at
            if consent_broadcast is not None and (
                _flag(current["consent_broadcast"]) != consent_broadcast
            ):
                changes["consent_broadcast"] = int(consent_broadcast)
                changes["consent_broadcast_at"] = at
            if not changes:
                return
            changes["updated_at"] = at
            assignments = ", ".join(f"{column} = ?" for column in changes)
            conn.execute(
                f"UPDATE contacts SET {assignments} WHERE id = ?", (*changes.values(), contact_id)
            )
            record_consents(conn, contact_id, changes, source, at)

    def touch_inbound(self, contact_id: int, now: datetime) -> None:
        """Record when the contact last wrote to us."""
        with self._atomic("touch_inbound") as conn:
            cursor = conn.execute(
                "UPDATE contacts SET last_inbound_at = greatest(coalesce(last_inbound_at, ''), ?)"
                " WHERE id = ?",
                (_ts(now), contact_id),
            )
            if cursor.rowcount == 0:
                raise KeyError(f"no contacts row with id {contact_id}")

    # -- audience facts, tags and people -------------------------------------------------------

    def set_contact_facts(
        self,
        contact_id: int,
        now: datetime,
        *,
        region: str | None = None,
        timezone: str | None = None,
        clear: tuple[str, ...] = (),
    ) -> None:
        """Set a contact's region and/or time zone (`clear` names facts to unset)."""
        changes: dict[str, str | None] = {}
        for name in clear:
            if name not in ("region", "timezone"):
                raise ValueError(f"clear: region or timezone, not {name!r}")
            changes[name] = None
        if region is not None:
            changes["region"] = region
        if timezone is not None:
            changes["timezone"] = timezone
        if not changes:
            return
        assignments = ", ".join(f"{name} = ?" for name in changes)
        with self._atomic("set_contact_facts") as conn:
            cursor = conn.execute(
                f"UPDATE contacts SET {assignments}, updated_at = ? WHERE id = ?",
                (*changes.values(), _ts(now), contact_id),
            )
            if cursor.rowcount == 0:
                raise KeyError(f"no contacts row with id {contact_id}")

    def set_contact_tags(
        self, contact_id: int, add: tuple[str, ...] = (), remove: tuple[str, ...] = ()
    ) -> tuple[str, ...]:
        """Add and remove tags; returns the contact's tags, sorted."""
        with self._atomic("set_contact_tags") as conn:
            if not self._write_rows(conn, "SELECT 1 FROM contacts WHERE id = ?", (contact_id,)):
                raise KeyError(f"no contacts row with id {contact_id}")
            conn.executemany(
                "INSERT INTO contact_tags (contact_id, tag) VALUES (?, ?)"
                " ON CONFLICT (contact_id, tag) DO NOTHING",
                [(contact_id, tag) for tag in add],
            )
            conn.executemany(
                "DELETE FROM contact_tags WHERE contact_id = ? AND tag = ?",
                [(contact_id, tag) for tag in remove],
            )
            rows = self._write_rows(
                conn,
                "SELECT tag FROM contact_tags WHERE contact_id = ? ORDER BY tag",
                (contact_id,),
            )
        return tuple(str(r["tag"]) for r in rows)

    def linked_contacts(self, contact_id: int) -> list[Contact]:
        """The person's other contacts (same person_id), most recently active first."""
        rows = self._rows(
            "SELECT o.* FROM contacts c JOIN contacts o ON o.person_id = c.person_id"
            " AND o.id <> c.id WHERE c.id = ?"
            " ORDER BY coalesce(o.last_inbound_at, o.updated_at) DESC",
            (contact_id,),
        )
        return [_contact_row(r).to_contact() for r in rows]

    def link_contacts(self, contact_id: int, other_id: int, now: datetime) -> int:
        """Make two contacts (and everyone linked to either) one person; returns its id."""
        with self._atomic("link_contacts") as conn:
            people = []
            for cid in (contact_id, other_id):
                row = self._write_rows(conn, "SELECT person_id FROM contacts WHERE id = ?", (cid,))
                if not row:
                    raise KeyError(f"no contacts row with id {cid}")
                people.append(int(row[0]["person_id"]))
            person = min(people)
            conn.execute(
                "UPDATE contacts SET person_id = ?, updated_at = ? WHERE person_id IN (?, ?)",
                (person, _ts(now), *people),
            )
        return person

    def prefer_contact(self, contact_id: int, now: datetime) -> None:
        """Make this the preferred contact of its person for broadcasts."""
        with self._atomic("prefer_contact") as conn:
            cursor = conn.execute(
                "UPDATE contacts SET preferred = CASE WHEN id = ? THEN 1 ELSE 0 END, updated_at = ?"
                " WHERE person_id = (SELECT person_id FROM contacts WHERE id = ?)",
                (contact_id, _ts(now), contact_id),
            )
            if cursor.rowcount == 0:
                raise KeyError(f"no contacts row with id {contact_id}")


def _contact_row(r: Row) -> ContactRow:
    return ContactRow(
        id=r["id"],
        channel=r["channel"],
        address=r["address"],
        language=r["language"],
        opted_out=bool(r["opted_out"]),
        consent_care=_flag(r["consent_care"]),
        consent_broadcast=_flag(r["consent_broadcast"]),
        created_at=_dt_req(r["created_at"]),
        updated_at=_dt_req(r["updated_at"]),
        opted_out_at=_dt(r["opted_out_at"]),
        consent_care_at=_dt(r["consent_care_at"]),
        consent_broadcast_at=_dt(r["consent_broadcast_at"]),
        last_inbound_at=_dt(r["last_inbound_at"]),
        person_id=r["person_id"],
        region=r["region"],
        timezone=r["timezone"],
        preferred=bool(r["preferred"]),
        language_set=bool(r["language_set"]),
        test=bool(r["test"]),
    )
