"""Results export (docs/import_export.md): conversations as CSV per flow (one row per
conversation, one column per concept the flow asks, plus triage, red flags and the escalation's
timings) and everything as one FHIR R4 Bundle. Both are generators of text chunks over the
store's batched reads, so a million rows never sit in memory: the CLI writes as it reads, the
console streams a response. Shared by the console, the CLI and the API.

Imports bot.console_view, bot.engine (asked_concepts), bot.io.fhir, bot.flow, bot.store and
orjson; no I/O of its own.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

from bot.console_view import concept_labels, mask_address
from bot.engine import asked_concepts
from bot.flow import Library
from bot.io import fhir
from bot.store import Store
from bot.store.io import (
    ExportConversation,
    ExportEscalation,
    ExportFilter,
    ExportReading,
    IoStore,
)

CHUNK = 500  # resources or rows per yielded chunk
BP_PENDING = 5000  # unpaired blood-pressure halves kept waiting for their other half
BASE_COLUMNS = (
    "conversation_id",
    "patient_id",
    "patient",
    "channel",
    "language",
    "region",
    "flow",
    "status",
    "started_at",
    "updated_at",
    "triage",
    "red_flags",
    "escalation_id",
    "escalation_status",
    "priority",
    "escalated_at",
    "claimed_at",
    "first_response_at",
    "resolved_at",
    "wait_to_claim_s",
    "to_first_response_s",
    "to_resolve_s",
)


@dataclass
class ExportCounts:
    """What an export wrote (filled in while it streams)."""

    conversations: int = 0
    observations: int = 0
    patients: int = 0
    service_requests: int = 0


def describe(flt: ExportFilter) -> dict[str, Any]:
    """A filter as JSON (for the audit log)."""
    return {
        "since": flt.since.isoformat() if flt.since else None,
        "until": flt.until.isoformat() if flt.until else None,
        "flows": list(flt.flows),
        "levels": list(flt.levels),
        "regions": list(flt.regions),
        "include_test": flt.include_test,
    }


def _io(store: Store) -> IoStore:
    if not isinstance(store, IoStore):
        raise TypeError("this store cannot export")
    return store


def concept_columns(library: Library, flow: str) -> list[str]:
    """The concepts a flow (and the flows it enters) asks, in data/concepts.yaml order."""
    asked = asked_concepts(library, flow)
    return [c for c in library.concepts if c in asked]


def who(address: str, *, real_ids: bool) -> str:
    """A phone number or chat id as exported: itself, or masked."""
    return address if real_ids else mask_address(address)


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, list | tuple):
        return ";".join(_cell(v) for v in value)
    return str(value)


def _secs(start: datetime, end: datetime | None) -> str:
    return "" if end is None else str(int((end - start).total_seconds()))


def _ticket_cells(t: ExportEscalation | None) -> list[str]:
    if t is None:
        return [""] * 10
    return [
        str(t.id),
        t.status,
        t.priority or "",
        fhir.ts(t.opened_at) or "",
        fhir.ts(t.claimed_at) or "",
        fhir.ts(t.first_response_at) or "",
        fhir.ts(t.resolved_at) or "",
        _secs(t.opened_at, t.claimed_at),
        _secs(t.opened_at, t.first_response_at),
        _secs(t.opened_at, t.resolved_at or t.closed_at),
    ]


def conversation_row(conv: ExportConversation, concepts: list[str], *, real_ids: bool) -> list[str]:
    """One conversation as CSV cells (BASE_COLUMNS, then one per concept)."""
    ticket = conv.escalations[-1] if conv.escalations else None
    c = conv.contact
    return [
        str(conv.id),
        str(c.id),
        "" if c.forgotten else who(c.address, real_ids=real_ids),
        c.channel,
        c.language,
        c.region or "",
        conv.flow or "",
        conv.status,
        fhir.ts(conv.started_at) or "",
        fhir.ts(conv.updated_at) or "",
        conv.triage or "",
        ";".join(conv.red_flags),
        *_ticket_cells(ticket),
        *(_cell(conv.answers.get(concept)) for concept in concepts),
    ]


def conversations_csv(
    store: Store,
    library: Library,
    flt: ExportFilter,
    *,
    real_ids: bool = False,
    counts: ExportCounts | None = None,
) -> Iterator[str]:
    """CSV text of one flow's conversations (`flt.flows` must name exactly one), the header
    first, then about CHUNK rows per chunk."""
    if len(flt.flows) != 1:
        raise ValueError("a CSV export is per flow: give exactly one flow")
    concepts = concept_columns(library, flt.flows[0])
    counts = counts if counts is not None else ExportCounts()
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow([*BASE_COLUMNS, *concepts])
    pending = 0
    for conv in _io(store).export_conversations(flt):
        writer.writerow(conversation_row(conv, concepts, real_ids=real_ids))
        counts.conversations += 1
        pending += 1
        if pending >= CHUNK:
            yield out.getvalue()
            out.seek(0)
            out.truncate()
            pending = 0
    yield out.getvalue()


def fhir_bundle(
    store: Store,
    library: Library,
    flt: ExportFilter,
    *,
    real_ids: bool = False,
    counts: ExportCounts | None = None,
    now: datetime | None = None,
) -> Iterator[str]:
    """A FHIR R4 Bundle (type collection) as JSON text chunks: each Patient once (before its
    first resource), a QuestionnaireResponse per conversation with a ServiceRequest per
    escalation, then an Observation per reading (blood pressure as one panel per
    conversation). Memory: the ids of the patients written so far, and at most BP_PENDING
    unpaired blood-pressure readings."""
    src = _io(store)
    counts = counts if counts is not None else ExportCounts()
    labels = concept_labels(library)
    seen: set[int] = set()
    stamp = (now or datetime.now(UTC)).isoformat()
    yield '{"resourceType":"Bundle","type":"collection","timestamp":' + json.dumps(stamp)
    yield ',"entry":['
    first = True
    batch: list[str] = []

    def emit(resource: dict[str, Any]) -> None:
        batch.append(orjson.dumps({"resource": resource}).decode())  # 5x the json module

    def flush() -> str:
        nonlocal first
        text = ("" if first else ",") + ",".join(batch)
        first = False
        batch.clear()
        return text

    def patient_of(contact: Any) -> None:
        if contact.id not in seen:
            seen.add(contact.id)
            counts.patients += 1
            emit(fhir.patient(contact, real_ids=real_ids))

    columns: dict[str, list[str]] = {}
    for conv in src.export_conversations(flt):
        patient_of(conv.contact)
        flow = conv.flow or ""
        if flow not in columns:
            columns[flow] = concept_columns(library, flow) if flow in library.flows else []
        emit(fhir.questionnaire_response(conv, columns[flow], labels))
        counts.conversations += 1
        for t in conv.escalations:
            emit(fhir.service_request(t, conv.contact.id, conv.id))
            counts.service_requests += 1
        if len(batch) >= CHUNK:
            yield flush()
    halves: dict[tuple[int | None, int, str], ExportReading] = {}  # (session, contact, part)

    def observe(r: ExportReading) -> None:
        emit(fhir.observation(r, labels))
        counts.observations += 1

    for r in src.export_readings(flt):
        patient_of(r.contact)
        if r.concept in fhir.BP_PARTS and r.session_id is not None:
            other = "diastolic_bp" if r.concept == "systolic_bp" else "systolic_bp"
            mate = halves.pop((r.session_id, r.contact.id, other), None)
            if mate is None:
                old = halves.pop((r.session_id, r.contact.id, r.concept), None)
                if old is not None:  # measured again before its other half: the first alone
                    observe(old)
                halves[(r.session_id, r.contact.id, r.concept)] = r
                if len(halves) > BP_PENDING:
                    observe(halves.pop(next(iter(halves))))
            else:
                sys_r, dia_r = (r, mate) if r.concept == "systolic_bp" else (mate, r)
                emit(fhir.bp_panel(sys_r, dia_r))
                counts.observations += 1
        else:
            observe(r)
        if len(batch) >= CHUNK:
            yield flush()
    for r in halves.values():
        observe(r)
    if batch:
        yield flush()
    yield "]}"
