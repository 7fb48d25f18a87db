"""The messy-patient driver: plays every vignette in flows/tests/*.yaml as a patient who texts,
in en/hi/es and three answer styles (worded, messy, volunteered), reading `expecting` from
each `chat --jsonl` line to decide what to type. Phrases: tests/data/patient_phrases.yml.

Imports bot.flow/loader via tests.chat_driver (tests only); run directly for the table.
"""

from __future__ import annotations

import hashlib
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
LEVELS = ("emergency_ambulance", "emergency", "consultation_24", "consultation", "self_care")
EMERGENCIES = frozenset(LEVELS[:2])
STYLES = ("worded", "messy", "volunteered")
LANGUAGES = ("en", "hi", "es")
MAX_TURNS = 60
PHRASES: dict[str, Any] = yaml.safe_load(
    (ROOT / "tests" / "data" / "patient_phrases.yml").read_text(encoding="utf-8")
)
CONDITION_OF_FLOW = {
    "pregnancy_checkin": ("pregnant", "pregnancy"),
    "diabetes_checkin": ("diabetes", "diabetes"),
    "hypertension_checkin": ("hypertension", "hypertension"),
    "asthma_checkin": ("asthma", "asthma"),
    "copd_checkin": ("copd", "copd"),
    "heart_failure_checkin": ("heart_failure", "heart_failure"),
}

# Words per language and style: [worded, messy]. Written for patients, not from the lexicons.
WORDS: dict[str, dict[str, tuple[str, str]]] = {
    "en": {
        "yes": ("yes", "yep"),
        "no": ("no", "nop"),
        "none": ("none of these", "nope nothing"),
        "unknown": ("I don't know", "dunno"),
        "temperature_c": ("I don't know", "dont have a thermometer"),
        "spo2_percent": ("I don't know", "i dont have an oximeter"),
        "bp": ("I don't know", "no bp machine at home"),
        "and": (" and ", ", "),
        "hello": ("hello", "hii"),
        "language": ("English", "english pls"),
        "covid": ("COVID-19 check", "covid chek"),
        "checkin": ("check-in for my condition", "chekin for my condition"),
        "unwell": ("something is wrong with my health", "feelin rly unwell"),
        "want_covid": ("I want a covid check.", "covid check pls."),
    },
    "hi": {
        "yes": ("haan", "haan ji"),
        "no": ("nahi", "ji nahi"),
        "none": ("kuch nahi", "nahi kuch nahi"),
        "unknown": ("pata nahi", "nahi pata"),
        "temperature_c": ("pata nahi", "thermometer nahi hai"),
        "spo2_percent": ("pata nahi", "oximeter nahi hai"),
        "bp": ("pata nahi", "bp machine nahi hai"),
        "and": (" aur ", " aur "),
        "hello": ("namaste", "namaste ji"),
        "language": ("हिन्दी", "hindi"),
        "covid": ("COVID-19 जांच", "covid jaanch"),
        "checkin": ("मेरी बीमारी की जांच", "meri bimari ki jaanch"),
        "unwell": ("meri tabiyat bigdi hui hai", "tabiyat bahut kharab h"),
        "want_covid": ("covid jaanch karni hai.", "covid test karna h."),
    },
    "es": {
        "yes": ("sí", "sip"),
        "no": ("no", "no nada"),
        "none": ("ninguno", "no nada"),
        "unknown": ("no sé", "ni idea"),
        "temperature_c": ("no sé", "no tengo termómetro"),
        "spo2_percent": ("no sé", "no tengo oxímetro"),
        "bp": ("no sé", "no tengo aparato de presión"),
        "and": (" y ", ", "),
        "hello": ("hola", "hola buenas"),
        "language": ("Español", "espanol"),
        "covid": ("Chequeo de COVID-19", "chequeo covid"),
        "checkin": ("Control de mi enfermedad", "control de mi enfermedad"),
        "unwell": ("me encuentro muy mal", "me siento fatal"),
        "want_covid": ("quiero un chequeo de covid.", "chequeo de covid porfa."),
    },
}
CONDITION_WORDS = {  # the check-in menu, [worded, messy]
    "en": {
        "hypertension": ("High blood pressure", "high bp"),
        "diabetes": ("Diabetes", "diabetis"),
        "asthma": ("Asthma", "asthama"),
        "copd": ("COPD", "copd"),
        "heart_failure": ("Heart failure", "heart faliure"),
        "pregnancy": ("Pregnancy", "pregnancy"),
    },
    "hi": {
        "hypertension": ("हाई BP", "high bp"),
        "diabetes": ("शुगर (डायबिटीज)", "sugar"),
        "asthma": ("दमा (अस्थमा)", "dama"),
        "copd": ("COPD (फेफड़ों की पुरानी बीमारी)", "copd"),
        "heart_failure": ("हार्ट फेल्योर (दिल की कमजोरी)", "heart failure"),
        "pregnancy": ("गर्भावस्था", "pregnancy"),
    },
    "es": {
        "hypertension": ("Presión alta", "presion alta"),
        "diabetes": ("Diabetes", "diabetis"),
        "asthma": ("Asma", "asma"),
        "copd": ("EPOC", "epoc"),
        "heart_failure": ("Insuficiencia cardíaca", "insuficiencia cardiaca"),
        "pregnancy": ("Embarazo", "embarazo"),
    },
}


@dataclass(frozen=True)
class Vignette:
    flow: str
    name: str
    facts: dict[str, Any]
    expect: str

    @property
    def half(self) -> int:
        """0: tuning half, 1: held-out half (fixed by the vignette's name)."""
        return hashlib.sha256(f"{self.flow}:{self.name}".encode()).digest()[0] % 2


@dataclass
class Outcome:
    vignette: Vignette
    style: str
    language: str
    triage: str | None
    flows: list[str]
    turns: int
    transcript: list[tuple[str, str]]
    reasked: int = 0  # questions the bot had to ask again (the patient then said it plainer)

    @property
    def under_triaged(self) -> bool:
        if self.triage is None:
            return True
        return LEVELS.index(self.triage) > LEVELS.index(self.vignette.expect)

    @property
    def emergency_expected(self) -> bool:
        return self.vignette.expect in EMERGENCIES

    @property
    def emergency_caught(self) -> bool:
        return self.triage in EMERGENCIES


def vignettes() -> list[Vignette]:
    out = []
    for path in sorted((ROOT / "flows" / "tests").glob("*.yaml")):
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
        for case in doc["cases"]:
            out.append(Vignette(doc["flow"], case["name"], dict(case["facts"]), case["expect"]))
    return out


def _flow_files() -> dict[str, dict[str, Any]]:
    docs = {}
    for path in sorted((ROOT / "flows").glob("*.yaml")):
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
        if isinstance(doc, dict) and "id" in doc:
            docs[str(doc["id"])] = doc
    return docs


def _option_labels() -> dict[str, dict[str, dict[str, str]]]:
    """Per flow: option label (per language, as shown) -> value, from the flow files."""
    labels: dict[str, dict[str, dict[str, str]]] = {}
    for fid, doc in FLOW_DOCS.items():
        for node in (doc.get("nodes") or {}).values():
            for opt in node.get("options", ()) if isinstance(node, dict) else ():
                value = opt.get("concept") or opt.get("value")
                for lang, text in (opt.get("text") or {}).items():
                    labels.setdefault(fid, {}).setdefault(lang, {})[str(text)] = str(value)
    return labels


def _asked() -> dict[str, set[str]]:
    """Per flow: the concepts its questions ask (options of multi-selects included)."""
    out: dict[str, set[str]] = {}
    for fid, doc in FLOW_DOCS.items():
        seen = out.setdefault(fid, set())
        for node in (doc.get("nodes") or {}).values():
            if not isinstance(node, dict) or "ask" not in node:
                continue
            seen.update([node["concept"]] if "concept" in node else node.get("concepts", []))
            seen.update(str(o.get("concept")) for o in node.get("options", ()) if "concept" in o)
    return out


FLOW_DOCS = _flow_files()
OPTION_LABELS = _option_labels()
ASKED = _asked()
GLOBAL_RED_FLAGS = (
    "severe_dyspnea",
    "chest_pain",
    "confusion",
    "hard_to_wake",
    "cyanosis",
    "stroke_signs",
    "convulsions",
    "suicidal_thoughts",
)


class Patient:
    """Decides what to type for one vignette, one language, one style."""

    def __init__(self, v: Vignette, language: str, style: str) -> None:
        self.v, self.lang, self.style = v, language, style
        self.messy = style != "worded"
        self.k = 1 if self.messy else 0
        self.facts = v.facts
        self.flow: str | None = None
        self.volunteered = style == "volunteered"

    def w(self, key: str) -> str:
        return WORDS[self.lang][key][self.k]

    def phrase(self, group: str, concept: str) -> str | None:
        item = PHRASES[group].get(concept)
        return None if item is None else str(item[self.lang][self.v.half])

    def opening(self) -> str:
        if self.style != "volunteered":
            return self.w("hello")
        parts: list[str] = []
        cond = CONDITION_OF_FLOW.get(self.v.flow)
        if self.v.flow == "covid_screening":
            parts.append(self.w("want_covid"))
        if cond is not None:
            parts.append(self.phrase("conditions", cond[0]) or cond[0])
        for concept, value in self.facts.items():
            if value is True and cond is not None and concept == cond[0]:
                continue
            if value is True:
                said = self.phrase("conditions", concept) or self.phrase("symptoms", concept)
                if said:
                    parts.append(said)
        parts.extend(self.readings())
        bare = len(parts) == (1 if cond or self.v.flow == "covid_screening" else 0)
        if bare and (self.v.flow == "general_triage" or not parts):
            parts.append(self.w("unwell"))
        return self.w("and").join(parts) if self.lang != "en" else ", ".join(parts)

    def readings(self) -> list[str]:
        f, lang = self.facts, self.lang
        out = []
        if f.get("systolic_bp") is not None and f.get("diastolic_bp") is not None:
            out.append(f"bp {f['systolic_bp']:g}/{f['diastolic_bp']:g}")
        if f.get("age_years") is not None:
            out.append(
                {"en": "age ", "hi": "umar ", "es": "edad "}[lang] + self.age(float(f["age_years"]))
            )
        if f.get("glucose_mg_dl") is not None:
            out.append(
                {"en": "sugar", "hi": "sugar", "es": "azúcar"}[lang]
                + f" {f['glucose_mg_dl']:g} mg/dl"
            )
        if f.get("temperature_c") is not None:
            out.append(
                {"en": "temp", "hi": "bukhar", "es": "temperatura"}[lang]
                + f" {f['temperature_c']:g}"
            )
        if f.get("spo2_percent") is not None:
            out.append(f"spo2 {f['spo2_percent']:g}%")
        return out

    # --- answering ----------------------------------------------------------------------
    def answer(self, exp: dict[str, Any], attempt: int = 0) -> str:
        """What to type; asked again, the patient says it plainer: first in the worded
        style, then (a choice or checklist) with the option numbers, as the hint asks."""
        concept, kind, choices = exp["concept"], exp["type"], exp.get("choices") or []
        if attempt and self.messy:
            plain = Patient(self.v, self.lang, "worded")
            plain.flow = self.flow
            if attempt >= 2 and kind in ("multi", "choice"):
                return plain.numbers(exp)
            return plain.answer(exp)
        if kind == "bool":
            return (
                self.w("yes")
                if self.facts.get(concept) or concept == "consent_care"
                else self.w("no")
            )
        if kind == "number":
            return self.number(concept)
        if kind == "bp":
            s, d = self.facts.get("systolic_bp"), self.facts.get("diastolic_bp")
            if s is None or d is None:
                return self.w("bp")
            return f"{s:g}/{d:g}" if self.messy else f"{s:g} over {d:g}"
        if kind == "multi":
            return self.multi(choices)
        if kind == "choice":
            return self.choice(concept, choices)
        return self.w("no")

    def numbers(self, exp: dict[str, Any]) -> str:
        choices = exp.get("choices") or []
        values = self.values(choices)
        if exp["type"] == "multi":
            picked = [str(i) for i, v in enumerate(values, 1) if self.facts.get(v)]
            return " ".join(picked) or "0"
        text = self.choice(exp["concept"], choices)
        return str(choices.index(text) + 1) if text in choices else text

    def values(self, choices: list[str]) -> list[str]:
        per_lang = OPTION_LABELS.get(self.flow, {})
        table, en = per_lang.get(self.lang, {}), per_lang.get("en", {})
        return [table.get(c) or en.get(c, c) for c in choices]

    def volunteer(self, flow: str | None) -> str | None:
        """A red flag the flow never asks about, said in free text once the flow starts
        (as `carebridge triage` does)."""
        if self.volunteered or flow != self.v.flow:
            return None
        self.volunteered = True
        said = [
            self.phrase("symptoms", rf) or rf
            for rf in GLOBAL_RED_FLAGS
            if self.facts.get(rf) and rf not in ASKED.get(flow, set())
        ]
        return self.w("and").join(said) if said else None

    def multi(self, choices: list[str]) -> str:
        chosen = [
            (c, v) for c, v in zip(choices, self.values(choices), strict=True) if self.facts.get(v)
        ]
        if not chosen:
            return self.w("none")
        if not self.messy:
            return self.w("and").join(label for label, _ in chosen)
        said = [
            self.phrase("symptoms", v) or self.phrase("conditions", v) or label
            for label, v in chosen
        ]
        lead = {"en": "yes ", "hi": "haan ", "es": "sí, "}[self.lang]
        return lead + self.w("and").join(said)

    def choice(self, concept: str, choices: list[str]) -> str:
        values = self.values(choices)
        if concept == "preferred_language":
            return self.w("language")
        if concept == "menu_choice":
            cond = CONDITION_OF_FLOW.get(self.v.flow)
            if self.v.flow == "covid_screening":
                return self.w("covid")
            if cond is not None:
                return self.w("checkin")
            return self.w("unwell")
        if concept == "checkin_condition":
            cond = CONDITION_OF_FLOW.get(self.v.flow)
            name = cond[1] if cond else "diabetes"
            return CONDITION_WORDS[self.lang][name][self.k]
        wanted = self.facts.get(concept)
        if wanted in values:
            return choices[values.index(wanted)]
        return choices[0] if choices else self.w("unknown")

    def number(self, concept: str) -> str:
        value = self.facts.get(concept)
        if value is None:
            key = concept if concept in ("temperature_c", "spo2_percent") else "unknown"
            return self.w(key)
        lang, messy = self.lang, self.messy
        if concept == "age_years":
            return self.age(float(value))
        if concept == "temperature_c":
            if messy:
                return f"{float(value) * 9 / 5 + 32:.1f}F"
            return {
                "en": f"{value:g} degrees",
                "hi": f"{value:g} degree",
                "es": f"{value:g} grados",
            }[lang]
        unit = {
            "spo2_percent": {"en": "percent", "hi": "percent", "es": "por ciento"},
            "glucose_mg_dl": {"en": "mg/dl", "hi": "mg/dl", "es": "mg/dl"},
            "peak_flow_percent": {"en": "percent", "hi": "percent", "es": "por ciento"},
            "rescue_inhaler_uses_day": {"en": "times", "hi": "baar", "es": "veces"},
            "weight_gain_kg_week": {"en": "kg", "hi": "kilo", "es": "kilos"},
        }.get(concept, {"en": "", "hi": "", "es": ""})[lang]
        return (
            f"{value:g}{'' if messy else ' '}{unit}".strip()
            if not messy
            else f"{value:g} {unit}".strip()
        )

    def age(self, years: float) -> str:
        lang = self.lang
        months_w = {"en": "months", "hi": "mahine", "es": "meses"}[lang]
        weeks_w = {"en": "weeks", "hi": "hafte", "es": "semanas"}[lang]
        years_w = {"en": "years", "hi": "saal", "es": "años"}[lang]
        if years < 5 and years != int(years):
            months = years * 12
            if abs(months - round(months)) < 0.05:
                return f"{round(months)} {months_w}"
            if years < 1:
                return f"{int(years * 52.18)} {weeks_w}"
            return f"{round(months)} {months_w}"
        return f"{years:g} {years_w}" if not self.messy else f"{years:g}"


Say = Callable[[str, str], dict[str, Any]]


def play(say: Say, address: str, v: Vignette, language: str, style: str) -> Outcome:
    """One conversation to its end; `say(address, text)` returns the `chat --jsonl` object."""
    patient = Patient(v, language, style)
    text = patient.opening()
    transcript: list[tuple[str, str]] = []
    flows: list[str] = []
    state: dict[str, Any] = {}
    triage: str | None = None
    last_q: tuple[str, ...] | None = None
    repeats = reasked = 0
    for turn in range(MAX_TURNS):
        state = say(address, text)
        transcript.append((text, " / ".join(state["replies"])))
        if state.get("flow") and (not flows or flows[-1] != state["flow"]):
            flows.append(state["flow"])
        triage = state.get("triage") or triage
        exp = state.get("expecting")
        if exp is None or state.get("status") in ("completed", "handed_off"):
            return Outcome(
                v, style, language, state.get("triage"), flows, turn + 1, transcript, reasked
            )
        q = (exp["concept"], *exp.get("choices", ()))
        repeats = repeats + 1 if q == last_q else 0
        last_q = q
        if repeats >= 3:
            break  # the bot keeps asking the same thing: the patient gives up
        patient.flow = state.get("flow")
        if repeats:
            reasked += 1
        text = patient.volunteer(patient.flow) or patient.answer(exp, repeats)
    return Outcome(v, style, language, None, flows, MAX_TURNS, transcript, reasked)


def table(outcomes: list[Outcome]) -> str:
    """Under-triaged and emergencies caught, by style x language (and held-out half)."""
    lines = [
        "| style | language | conversations | under-triaged | emergencies caught "
        "| held-out: under / caught | asked again |",
        "|---|---|---|---|---|---|---|",
    ]
    for style in STYLES:
        for lang in LANGUAGES:
            rows = [o for o in outcomes if o.style == style and o.language == lang]
            if not rows:
                continue
            em = [o for o in rows if o.emergency_expected]
            held = [o for o in rows if o.vignette.half == 1]
            hem = [o for o in held if o.emergency_expected]
            lines.append(
                f"| {style} | {lang} | {len(rows)} | {sum(o.under_triaged for o in rows)} | "
                f"{sum(o.emergency_caught for o in em)}/{len(em)} | "
                f"{sum(o.under_triaged for o in held)} / "
                f"{sum(o.emergency_caught for o in hem)}/{len(hem)} | "
                f"{sum(o.reasked for o in rows)} |"
            )
    return "\n".join(lines)


def main() -> int:  # pragma: no cover - run by hand: python tests/messy_patients.py
    import tempfile

    sys.path.insert(0, str(ROOT / "tests"))
    from chat_driver import InProcess

    from bot.config import load_config

    base = load_config(ROOT / "config.yaml", env={})
    folder = Path(tempfile.mkdtemp())
    cfg = base.model_copy(
        update={"storage": base.storage.model_copy(update={"url": f"sqlite:///{folder / 'm.db'}"})}
    )
    driver = InProcess(cfg)
    outcomes = []
    only = sys.argv[1:]
    for i, v in enumerate(vignettes()):
        for style in STYLES:
            for lang in LANGUAGES:
                if only and f"{style}:{lang}" not in only and v.flow not in only:
                    continue
                o = play(driver.say, f"p{i}-{style}-{lang}", v, lang, style)
                outcomes.append(o)
                if o.under_triaged or (o.emergency_expected and not o.emergency_caught):
                    print(
                        f"UNDER {style} {lang} {v.flow} / {v.name}: "
                        f"{o.triage} < {v.expect} via {o.flows}"
                    )
                    for said, got in o.transcript:
                        print(f"   > {said}\n     {got[:160]!r}")
    print(table(outcomes))
    driver.close()
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
