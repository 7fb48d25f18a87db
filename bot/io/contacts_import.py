"""Contacts import (docs/import_export.md): a CSV or XLSX file read into rows, each row checked
with its reason when it is refused (numbers normalised by bot.phones, enrollment columns by
bot.enrollment), de-duplicated within the file and into the people already known, then every
good row applied in ONE transaction: an import is whole or not at all.

Imports bot.config, bot.enrollment, bot.phones, bot.schedules, bot.store (and openpyxl for
XLSX, on first use); never channels. Reports carry line numbers and reasons, and logs carry
only counts: never a phone number.
"""

from __future__ import annotations

import csv
import io
import logging
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from bot import enrollment
from bot.config import Config
from bot.enrollment import CHANNELS as ENROLL_CHANNELS
from bot.enrollment import EnrollmentError, EnrollRequest
from bot.errors import CarebridgeError
from bot.phones import PHONE_CHANNELS, PhoneError, address_for
from bot.schedules import zone
from bot.store import CheckinKind, CheckinStatus, EnrollmentStatus, Store
from bot.store.io import IoStore, NewContact, PhoneContact

log = logging.getLogger(__name__)

IMPORT_CHANNELS = ("sms", "whatsapp", "telegram")  # not `web`: the simulator's own contacts
MAX_ROWS = 200_000
SOURCE = "import"  # the consent record's source for consents an import records
BULK = 1000  # new contacts per bulk insert

# column -> the headers accepted for it (lower case, spaces and dashes read as _)
COLUMNS: dict[str, tuple[str, ...]] = {
    "phone": ("phone", "phone_number", "number", "mobile", "msisdn", "address", "chat_id"),
    "channel": ("channel",),
    "language": ("language", "lang"),
    "consent_care": ("consent_care", "consent"),
    "consent_broadcast": ("consent_broadcast", "broadcasts"),
    "region": ("region",),
    "timezone": ("timezone", "tz", "time_zone"),
    "tags": ("tags", "tag"),
    "conditions": ("conditions", "condition"),
    "checkin_time": ("checkin_time", "check_in_time", "time"),
    "team": ("team", "care_team"),
    "glucose_unit": ("glucose_unit",),
    "peak_flow_best": ("peak_flow_best", "peak_flow_best_lpm"),
    "usual_weight_kg": ("usual_weight_kg", "usual_weight"),
    "due_date": ("due_date",),
}
ENROLL_COLUMNS = (
    "conditions",
    "checkin_time",
    "team",
    "glucose_unit",
    "peak_flow_best",
    "usual_weight_kg",
    "due_date",
)
_YES = frozenset({"yes", "y", "true", "1", "si", "sí", "haan", "ha"})
_NO = frozenset({"no", "n", "false", "0", "nahin", "nahi"})
# EnrollRequest names its problems by CLI option; an import names the column
_OPTION_COLUMN = {
    "--channel": "channel",
    "--address": "phone",
    "--conditions": "conditions",
    "--time": "checkin_time",
    "--tz": "timezone",
    "--language": "language",
    "--glucose-unit": "glucose_unit",
    "--peak-flow-best": "peak_flow_best",
    "--usual-weight": "usual_weight_kg",
}

REASONS = {
    "missing_phone": "no phone number or chat id",
    "bad_phone": "the phone number cannot be used",
    "bad_channel": "unknown channel",
    "bad_language": "language not configured",
    "bad_consent": "consent is not yes/no",
    "bad_value": "a value is not valid",
    "bad_enrollment": "the enrollment columns are not valid",
    "duplicate_in_file": "the same contact as an earlier row",
    "opted_out": "the patient opted out (STOP): only they can opt back in",
    "declined": "the patient declined: only they can agree",
}


class ImportFileError(CarebridgeError, ValueError):
    """The file itself cannot be read (not a CSV/XLSX, no phone column, too many rows)."""


@dataclass(frozen=True)
class Rejected:
    """A row that is not imported: its line in the file, the reason code and what is wrong."""

    line: int
    reason: str
    detail: str
    raw: dict[str, str] = field(hash=False, default_factory=dict)


@dataclass(frozen=True)
class Good:
    """A checked row, ready to apply; `existing` is the contact it merges into (None: new)."""

    line: int
    channel: str
    address: str
    existing: int | None
    language: str | None = None
    consent_care: bool | None = None
    consent_broadcast: bool | None = None
    region: str | None = None
    timezone: str | None = None
    tags: tuple[str, ...] = ()
    enroll: EnrollRequest | None = None


@dataclass
class ImportPlan:
    """What an import will do: the good rows, the refused ones, and the columns it ignores."""

    rows: list[Good]
    rejected: list[Rejected]
    columns: list[str]
    ignored: list[str]

    @property
    def total(self) -> int:
        return len(self.rows) + len(self.rejected)

    @property
    def new(self) -> int:
        return sum(1 for g in self.rows if g.existing is None)

    @property
    def merged(self) -> int:
        return sum(1 for g in self.rows if g.existing is not None)

    @property
    def enrolled(self) -> int:
        return sum(1 for g in self.rows if g.enroll is not None)

    def by_reason(self) -> dict[str, int]:
        """Refused rows per reason code, most frequent first."""
        return dict(Counter(r.reason for r in self.rejected).most_common())

    def report(self, *, applied: bool) -> dict[str, Any]:
        """The counts as JSON (what the CLI prints with --json and the console shows)."""
        return {
            "applied": applied,
            "rows": self.total,
            "imported": self.new,
            "merged": self.merged,
            "enrolled": self.enrolled,
            "rejected": len(self.rejected),
            "rejected_by_reason": self.by_reason(),
            "ignored_columns": self.ignored,
            "errors": [
                {"line": r.line, "reason": r.reason, "detail": r.detail} for r in self.rejected
            ],
        }


Progress = Callable[[int], object]


def _header(name: str) -> str:
    return name.strip().lstrip("\ufeff").lower().replace(" ", "_").replace("-", "_")


def read_table(data: bytes, filename: str = "") -> tuple[list[str], Iterator[dict[str, str]]]:
    """The header and the rows (column -> text) of a CSV (UTF-8, `,` or `;` or tab) or an
    XLSX file; ImportFileError if it is neither."""
    if filename.lower().endswith(".xlsx") or data[:4] == b"PK\x03\x04":
        return _read_xlsx(data)
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ImportFileError("the file is not UTF-8 text (save the sheet as CSV UTF-8)") from None
    sample = text[:4096]
    try:
        dialect: Any = csv.Sniffer().sniff(sample, delimiters=",;\t")
    except csv.Error:
        dialect = csv.excel
    reader = csv.reader(io.StringIO(text, newline=""), dialect)
    header = next(reader, None)
    if header is None:
        raise ImportFileError("the file is empty")
    names = [_header(h) for h in header]

    def rows() -> Iterator[dict[str, str]]:
        for values in reader:
            yield {n: (values[i].strip() if i < len(values) else "") for i, n in enumerate(names)}

    return names, rows()


def _read_xlsx(data: bytes) -> tuple[list[str], Iterator[dict[str, str]]]:
    try:
        from openpyxl import load_workbook
    except ImportError:  # pragma: no cover - openpyxl is a dependency
        raise ImportFileError("XLSX needs openpyxl; save the sheet as CSV instead") from None
    try:
        book = load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    except Exception as exc:  # openpyxl raises many kinds for a file that is not a workbook
        raise ImportFileError(f"not a readable XLSX workbook ({type(exc).__name__})") from None
    sheet = book.worksheets[0]
    it = sheet.iter_rows(values_only=True)
    first = next(it, None)
    if first is None:
        raise ImportFileError("the first sheet is empty")
    names = [_header(str(h or "")) for h in first]

    def cell(v: Any) -> str:
        if v is None:
            return ""
        if isinstance(v, float) and v.is_integer():
            return str(int(v))
        if isinstance(v, datetime):
            return v.date().isoformat()
        return str(v).strip()

    def rows() -> Iterator[dict[str, str]]:
        for values in it:
            yield {n: cell(values[i]) if i < len(values) else "" for i, n in enumerate(names)}

    return names, rows()


def _columns(names: list[str]) -> tuple[dict[str, str], list[str]]:
    """Our column -> the file's header for it, and the headers we ignore."""
    found: dict[str, str] = {}
    for column, aliases in COLUMNS.items():
        for alias in aliases:
            if alias in names and column not in found:
                found[column] = alias
    used = set(found.values())
    return found, [n for n in names if n and n not in used]


def _yes_no(value: str) -> bool | None:
    v = value.strip().lower()
    if not v:
        return None
    if v in _YES:
        return True
    if v in _NO:
        return False
    raise ValueError(value)


def _split(value: str) -> tuple[str, ...]:
    return tuple(dict.fromkeys(p.strip() for p in value.replace(";", ",").split(",") if p.strip()))


class _RowError(Exception):
    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


def plan_import(
    store: Store,
    config: Config,
    flows: Collection[str],
    data: bytes,
    filename: str = "",
    *,
    default_channel: str = "sms",
    progress: Progress | None = None,
) -> ImportPlan:
    """Read and check every row (nothing is written): the plan an import would apply."""
    io = _io(store)
    names, rows = read_table(data, filename)
    found, ignored = _columns(names)
    if "phone" not in found:
        raise ImportFileError(
            "no phone column: name one of the columns phone (or number, mobile, address, chat_id)"
        )
    good: list[Good] = []
    rejected: list[Rejected] = []
    seen: dict[tuple[str, str], int] = {}  # (channel, address) -> the line that has it
    for n, raw in enumerate(rows, start=2):  # line 1 is the header
        if n - 1 > MAX_ROWS:
            raise ImportFileError(f"more than {MAX_ROWS} rows: split the file")
        values = {column: raw.get(header, "") for column, header in found.items()}
        if not any(raw.values()):
            continue  # a blank line
        try:
            row = _check(io, config, flows, n, values, default_channel)
            key = (row.channel, row.address)
            if key in seen:
                raise _RowError("duplicate_in_file", f"the same contact as line {seen[key]}")
            seen[key] = n
            good.append(row)
        except _RowError as exc:
            rejected.append(Rejected(n, exc.reason, exc.detail, raw))
        if progress is not None:
            progress(1)
    log.info(
        "import planned rows=%d good=%d rejected=%d",
        len(good) + len(rejected),
        len(good),
        len(rejected),
    )
    return ImportPlan(good, rejected, sorted(found), ignored)


def _check(
    store: IoStore,
    config: Config,
    flows: Collection[str],
    line: int,
    v: Mapping[str, str],
    default_channel: str,
) -> Good:
    """One row checked and resolved to its contact; _RowError with the first problem."""
    raw_phone = v.get("phone", "")
    if not raw_phone:
        raise _RowError("missing_phone", "no phone number or chat id")
    channel = v.get("channel", "").strip().lower() or None
    if channel is not None and channel not in IMPORT_CHANNELS:
        raise _RowError(
            "bad_channel", f"channel {channel!r}: use one of {', '.join(IMPORT_CHANNELS)}"
        )
    region = config.phones.default_region
    try:
        address = address_for(channel or default_channel, raw_phone, region)
    except PhoneError as exc:
        raise _RowError("bad_phone", str(exc)) from None
    existing: PhoneContact | None
    if channel is None and default_channel in PHONE_CHANNELS:
        # No channel given: the person this number already is, on whichever phone channel
        known = store.phone_contacts(address)
        existing = known[0] if known else None
        channel = existing.channel if existing else default_channel
    else:
        channel = channel or default_channel
        existing = store.contact_by_address(channel, address)
    language = v.get("language", "").strip().lower() or None
    if language is not None and language not in config.languages:
        raise _RowError(
            "bad_language",
            f"language {language!r} is not configured (languages: {', '.join(config.languages)})",
        )
    try:
        consent_care = _yes_no(v.get("consent_care", ""))
        consent_broadcast = _yes_no(v.get("consent_broadcast", ""))
    except ValueError as exc:
        raise _RowError("bad_consent", f"consent {exc.args[0]!r}: write yes or no") from None
    tz = v.get("timezone", "").strip() or None
    if tz is not None:
        try:
            zone(tz)
        except ValueError as exc:
            raise _RowError("bad_value", f"timezone: {exc}") from None
    enroll = _enrollment(config, flows, v, channel, address, language, tz)
    if existing is not None:
        grants = consent_care is True or consent_broadcast is True or enroll is not None
        if existing.opted_out and grants:
            raise _RowError("opted_out", REASONS["opted_out"])
        if (existing.consent_care is False and (consent_care is True or enroll is not None)) or (
            existing.consent_broadcast is False and consent_broadcast is True
        ):
            raise _RowError("declined", REASONS["declined"])
    return Good(
        line=line,
        channel=channel,
        address=address,
        existing=existing.id if existing else None,
        language=language,
        consent_care=consent_care,
        consent_broadcast=consent_broadcast,
        region=v.get("region", "").strip() or None,
        timezone=tz,
        tags=_split(v.get("tags", "")),
        enroll=enroll,
    )


def _enrollment(
    config: Config,
    flows: Collection[str],
    v: Mapping[str, str],
    channel: str,
    address: str,
    language: str | None,
    tz: str | None,
) -> EnrollRequest | None:
    """The row's enrollment (checked by bot.enrollment), or None when it has no conditions."""
    conditions = _split(v.get("conditions", ""))
    if not conditions:
        extra = [c for c in ENROLL_COLUMNS if c != "conditions" and v.get(c)]
        if extra:
            raise _RowError("bad_enrollment", f"{extra[0]} is given but conditions is empty")
        return None
    if channel not in ENROLL_CHANNELS:
        raise _RowError("bad_enrollment", f"channel {channel} cannot be enrolled")
    try:
        peak = float(v["peak_flow_best"]) if v.get("peak_flow_best") else None
        weight = float(v["usual_weight_kg"]) if v.get("usual_weight_kg") else None
    except ValueError:
        raise _RowError(
            "bad_enrollment", "peak_flow_best and usual_weight_kg are numbers"
        ) from None
    try:
        due = date.fromisoformat(v["due_date"]) if v.get("due_date") else None
    except ValueError:
        raise _RowError("bad_enrollment", "due_date: write it as YYYY-MM-DD") from None
    cfg = config.checkins
    request = EnrollRequest(
        channel=channel,
        address=address,
        conditions=conditions,
        checkin_time=v.get("checkin_time") or cfg.default_time,
        timezone=tz or cfg.default_timezone,
        language=language,
        team=v.get("team") or None,
        glucose_unit=v.get("glucose_unit") or None,
        peak_flow_best=peak,
        usual_weight_kg=weight,
        due_date=due,
    )
    try:
        return request.checked(config, flows)
    except EnrollmentError as exc:
        first = exc.problems[0]
        option, _, rest = first.partition(": ")
        column = _OPTION_COLUMN.get(option, option)
        raise _RowError("bad_enrollment", f"{column}: {rest}") from None


def apply_import(
    store: Store,
    config: Config,
    plan: ImportPlan,
    now: datetime,
    *,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Apply every good row of `plan` in one transaction (an error anywhere, or a crash, rolls
    the whole import back) and return the report. Enrollments are invited: the next
    scheduler sweep sends each patient the enrollment conversation, consent first."""
    io = _io(store)
    new = [row for row in plan.rows if row.existing is None]
    with store.transaction():
        for start in range(0, len(new), BULK):  # new contacts in bulk: the lock is held less
            chunk = new[start : start + BULK]
            io.add_contacts([_new_contact(row) for row in chunk], now, SOURCE)
            if progress is not None:
                progress(len(chunk))
        for row in plan.rows:
            if row.existing is None and row.enroll is None:
                continue
            if row.existing is not None:
                _apply(store, config, row, now)
                if progress is not None:
                    progress(1)
            if row.enroll is not None:
                found = io.contact_by_address(row.channel, row.address)
                assert found is not None
                _enroll(store, config, found.id, row.enroll, now)
    report = plan.report(applied=True)
    log.info(
        "import applied imported=%d merged=%d enrolled=%d rejected=%d",
        report["imported"],
        report["merged"],
        report["enrolled"],
        report["rejected"],
    )
    return report


def _apply(store: Store, config: Config, row: Good, now: datetime) -> None:
    """A row that merges into a known contact: only what it changes is written."""
    contact = store.get_or_create_contact(row.channel, row.address, now, row.language)
    store.update_contact(
        contact.id,
        language=row.language if row.existing is not None else None,
        consent_care=row.consent_care,
        consent_broadcast=row.consent_broadcast,
        now=now,
        source=SOURCE,
    )
    if row.region is not None or row.timezone is not None:
        store.set_contact_facts(contact.id, now, region=row.region, timezone=row.timezone)
    if row.tags:
        store.set_contact_tags(contact.id, add=row.tags)


def _new_contact(row: Good) -> NewContact:
    return NewContact(
        channel=row.channel,
        address=row.address,
        language=row.language,
        consent_care=row.consent_care,
        consent_broadcast=row.consent_broadcast,
        region=row.region,
        timezone=row.timezone,
        tags=row.tags,
    )


def _io(store: Store) -> IoStore:
    if not isinstance(store, IoStore):
        raise TypeError("this store cannot import contacts")
    return store


def _enroll(
    store: Store, config: Config, contact_id: int, req: EnrollRequest, now: datetime
) -> None:
    """Like `carebridge patients enroll`, without starting the conversation here: the
    enrollment is invited and its conversation queued for the next sweep (quiet hours apply)."""
    previous = store.get_enrollment(contact_id)
    active = previous is not None and previous.status is EnrollmentStatus.ACTIVE
    store.save_enrollment(
        contact_id,
        status=EnrollmentStatus.ACTIVE if active else EnrollmentStatus.INVITED,
        conditions=req.conditions,
        checkin_time=req.checkin_time,
        timezone=req.timezone,
        team=req.team,
        baselines={**(previous.baselines if previous else {}), **req.baselines()},
        now=now,
        enrolled_by=SOURCE,
    )
    if active:  # already agreed: a change of plan, not a new start
        enrollment.activate(store, config, contact_id, now)
        return
    waiting = store.checkins(contact_id, CheckinStatus.QUEUED, CheckinKind.ENROLLMENT)
    waiting += store.checkins(contact_id, CheckinStatus.OPEN, CheckinKind.ENROLLMENT)
    if waiting:
        return
    store.add_checkin(contact_id, CheckinKind.ENROLLMENT, "enrollment", now, now, now)


def rejects_csv(plan: ImportPlan) -> Iterable[str]:
    """The refused rows as CSV lines (their own columns plus line, reason and detail), to fix
    and import again."""
    columns: list[str] = []
    for r in plan.rejected:
        for k in r.raw:
            if k not in columns:
                columns.append(k)
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["line", "reason", "detail", *columns])
    yield out.getvalue()
    for r in plan.rejected:
        out.seek(0)
        out.truncate()
        writer.writerow([r.line, r.reason, r.detail, *(r.raw.get(c, "") for c in columns)])
        yield out.getvalue()
