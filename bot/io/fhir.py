"""FHIR R4 resources for exported results, as plain JSON-ready dicts (docs/import_export.md):
Patient, QuestionnaireResponse per conversation, Observation per reading (LOINC codes, UCUM
units; systolic and diastolic of one conversation as one blood-pressure panel) and
ServiceRequest per escalation. Built by hand for speed (a million readings); tests validate
every kind with the fhir.resources models.

Imports bot.console_view (masking) and bot.store.io (the export rows) only; no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from bot.console_view import mask_address
from bot.store.io import (
    ExportContact,
    ExportConversation,
    ExportEscalation,
    ExportReading,
)

LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
CONCEPT_SYSTEM = "urn:carebridge:concept"  # concept ids of data/concepts.yaml
CONTACT_SYSTEM = "urn:carebridge:contact"  # the contact id: stable, not identifying
LEVEL_SYSTEM = "urn:carebridge:triage-level"
OBS_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
BP_PANEL = ("85354-9", "Blood pressure panel with all children optional")


@dataclass(frozen=True)
class Code:
    """A reading concept's LOINC code, display and UCUM unit."""

    loinc: str
    display: str
    unit: str
    vital: bool = True


# concept id -> LOINC (as in data/concepts.yaml; tests/test_export_fhir.py checks they agree)
READING_CODES: dict[str, Code] = {
    "temperature_c": Code("8310-5", "Body temperature", "Cel"),
    "spo2_percent": Code("59408-5", "Oxygen saturation in Arterial blood by Pulse oximetry", "%"),
    "systolic_bp": Code("8480-6", "Systolic blood pressure", "mm[Hg]"),
    "diastolic_bp": Code("8462-4", "Diastolic blood pressure", "mm[Hg]"),
    "heart_rate": Code("8867-4", "Heart rate", "/min"),
    "glucose_mg_dl": Code("2339-0", "Glucose [Mass/volume] in Blood", "mg/dL", vital=False),
    "weight_kg": Code("29463-7", "Body weight", "kg"),
    "age_years": Code("30525-0", "Age", "a", vital=False),
}
PEAK_FLOW = Code(
    "19935-6",
    "Maximum expiratory gas flow Respiratory system airway by Peak flow meter",
    "L/min",
    vital=False,
)
# the peak flow is asked as % of the personal best; with the best known it is exported in L/min
PEAK_FLOW_PERCENT = "peak_flow_percent"
PEAK_FLOW_BEST = "peak_flow_best_lpm"
BP_PARTS = ("systolic_bp", "diastolic_bp")

_QR_STATUS = {
    "active": "in-progress",
    "completed": "completed",
    "handed_off": "completed",
    "expired": "stopped",
}
_PRIORITY = {"emergency": "stat", "urgent": "urgent", "routine": "routine"}
_SR_STATUS = {
    "waiting": "active",
    "claimed": "active",
    "resolved": "completed",
    "returned_to_bot": "completed",
    "closed": "completed",
}


def ts(when: datetime | None) -> str | None:
    """A FHIR dateTime/instant (with its zone)."""
    return None if when is None else when.isoformat()


def patient_ref(contact_id: int) -> dict[str, str]:
    return {"reference": f"Patient/p{contact_id}"}


def patient(contact: ExportContact, *, real_ids: bool) -> dict[str, Any]:
    """The contact as a Patient: the contact id always; the phone number or chat id only with
    `real_ids` (otherwise a masked form in the identifier's text)."""
    identifiers: list[dict[str, Any]] = [{"system": CONTACT_SYSTEM, "value": str(contact.id)}]
    res: dict[str, Any] = {
        "resourceType": "Patient",
        "id": f"p{contact.id}",
        "identifier": identifiers,
        "communication": [
            {
                "language": {"coding": [{"system": "urn:ietf:bcp:47", "code": contact.language}]},
                "preferred": True,
            }
        ],
    }
    if contact.forgotten:
        res["active"] = False
        return res
    if real_ids:
        system = "phone" if contact.channel in ("sms", "whatsapp") else "other"
        res["telecom"] = [{"system": system, "value": contact.address, "use": "mobile"}]
    else:
        identifiers.append(
            {
                "type": {"text": f"{contact.channel} address (masked)"},
                "value": mask_address(contact.address),
            }
        )
    if contact.region:
        res["address"] = [{"district": contact.region}]
    return res


def _answer(value: Any) -> list[dict[str, Any]]:
    if isinstance(value, bool):
        return [{"valueBoolean": value}]
    if isinstance(value, int | float):
        return [{"valueDecimal": value}]
    if isinstance(value, list | tuple):
        return [a for v in value for a in _answer(v)]
    if value is None or value == "":
        return []
    return [{"valueString": str(value)}]


def questionnaire_response(
    conv: ExportConversation, concepts: list[str], labels: dict[str, str]
) -> dict[str, Any]:
    """A conversation: one item per answered concept (in `concepts` order, then the rest),
    the triage level and red flags as items of their own."""
    items: list[dict[str, Any]] = []
    order = [c for c in concepts if c in conv.answers]
    order += sorted(c for c in conv.answers if c not in set(concepts))
    for concept in order:
        answer = _answer(conv.answers[concept])
        if answer:
            items.append(
                {"linkId": concept, "text": labels.get(concept, concept), "answer": answer}
            )
    if conv.triage:
        items.append(
            {
                "linkId": "triage_level",
                "text": "Triage level",
                "answer": [{"valueCoding": {"system": LEVEL_SYSTEM, "code": conv.triage}}],
            }
        )
    if conv.red_flags:
        items.append(
            {
                "linkId": "red_flags",
                "text": "Red flags",
                "answer": [
                    {"valueCoding": {"system": CONCEPT_SYSTEM, "code": f}} for f in conv.red_flags
                ],
            }
        )
    res: dict[str, Any] = {
        "resourceType": "QuestionnaireResponse",
        "id": f"qr{conv.id}",
        "identifier": {"system": "urn:carebridge:conversation", "value": str(conv.id)},
        "status": _QR_STATUS.get(conv.status, "completed"),
        "subject": patient_ref(conv.contact.id),
        "authored": ts(conv.updated_at),
    }
    if conv.flow:
        res["questionnaire"] = f"urn:carebridge:flow:{conv.flow}"
    if items:
        res["item"] = items
    return res


def _quantity(value: float, unit: str) -> dict[str, Any]:
    return {"value": round(value, 3), "unit": unit, "system": UCUM, "code": unit}


def _concept_code(concept: str, label: str, unit: str | None) -> tuple[dict[str, Any], str | None]:
    code = READING_CODES.get(concept)
    if code is None:
        return {"coding": [{"system": CONCEPT_SYSTEM, "code": concept}], "text": label}, unit
    coding = {"system": LOINC, "code": code.loinc, "display": code.display}
    return {"coding": [coding], "text": label}, code.unit


def _observation_base(r: ExportReading, obs_id: str, vital: bool) -> dict[str, Any]:
    res: dict[str, Any] = {
        "resourceType": "Observation",
        "id": obs_id,
        "status": "final",
        "subject": patient_ref(r.contact.id),
        "effectiveDateTime": ts(r.at),
    }
    if vital:
        res["category"] = [
            {"coding": [{"system": OBS_CATEGORY, "code": "vital-signs", "display": "Vital Signs"}]}
        ]
    if r.session_id is not None:
        res["derivedFrom"] = [{"reference": f"QuestionnaireResponse/qr{r.session_id}"}]
    return res


def observation(r: ExportReading, labels: dict[str, str]) -> dict[str, Any]:
    """One reading as an Observation with its LOINC code and UCUM unit (a concept without a
    LOINC code is coded with its concept id)."""
    if r.concept == PEAK_FLOW_PERCENT and r.peak_flow_best:
        res = _observation_base(r, f"o{r.id}", vital=False)
        res["code"] = {
            "coding": [{"system": LOINC, "code": PEAK_FLOW.loinc, "display": PEAK_FLOW.display}],
            "text": "Peak flow",
        }
        res["valueQuantity"] = _quantity(r.value * r.peak_flow_best / 100, PEAK_FLOW.unit)
        res["note"] = [{"text": f"{r.value:g} % of the personal best ({r.peak_flow_best:g} L/min)"}]
        return res
    code = READING_CODES.get(r.concept)
    res = _observation_base(r, f"o{r.id}", vital=code.vital if code else False)
    res["code"], unit = _concept_code(r.concept, labels.get(r.concept, r.concept), r.unit)
    if unit:
        res["valueQuantity"] = _quantity(r.value, unit)
    else:
        res["valueQuantity"] = {"value": round(r.value, 3)}
    return res


def bp_panel(systolic: ExportReading, diastolic: ExportReading) -> dict[str, Any]:
    """A systolic and a diastolic reading of one conversation as a blood-pressure panel."""
    res = _observation_base(systolic, f"bp{systolic.id}-{diastolic.id}", vital=True)
    res["effectiveDateTime"] = ts(max(systolic.at, diastolic.at))
    res["code"] = {
        "coding": [{"system": LOINC, "code": BP_PANEL[0], "display": BP_PANEL[1]}],
        "text": "Blood pressure",
    }
    res["component"] = [
        {
            "code": {
                "coding": [
                    {
                        "system": LOINC,
                        "code": READING_CODES[r.concept].loinc,
                        "display": READING_CODES[r.concept].display,
                    }
                ]
            },
            "valueQuantity": _quantity(r.value, "mm[Hg]"),
        }
        for r in (systolic, diastolic)
    ]
    return res


def service_request(t: ExportEscalation, contact_id: int, session_id: int) -> dict[str, Any]:
    """An escalation as a ServiceRequest for a clinician's review: priority from the ticket,
    reason = the triage level and red flags, authored when opened, and its timings (claimed,
    first response, resolved) as the occurrence period and notes."""
    reasons = [{"coding": [{"system": LEVEL_SYSTEM, "code": t.level}], "text": t.reason}]
    reasons += [{"coding": [{"system": CONCEPT_SYSTEM, "code": f}]} for f in t.red_flags]
    res: dict[str, Any] = {
        "resourceType": "ServiceRequest",
        "id": f"sr{t.id}",
        "identifier": [{"system": "urn:carebridge:escalation", "value": str(t.id)}],
        "status": _SR_STATUS.get(t.status, "unknown"),
        "intent": "order",
        "priority": _PRIORITY.get(t.priority or "", "routine"),
        "code": {"text": "Clinician review (carebridge escalation)"},
        "subject": patient_ref(contact_id),
        "authoredOn": ts(t.opened_at),
        "reasonCode": reasons,
        "supportingInfo": [{"reference": f"QuestionnaireResponse/qr{session_id}"}],
    }
    if t.claimed_at is not None:
        period: dict[str, str] = {"start": t.claimed_at.isoformat()}
        end = t.resolved_at or t.closed_at
        if end is not None:
            period["end"] = end.isoformat()
        res["occurrencePeriod"] = period
    notes = [f"status {t.status}"]
    for name, when in (
        ("claimed", t.claimed_at),
        ("first response", t.first_response_at),
        ("resolved", t.resolved_at),
    ):
        if when is not None:
            notes.append(f"{name} after {int((when - t.opened_at).total_seconds())} s")
    res["note"] = [{"text": "; ".join(notes)}]
    return res
