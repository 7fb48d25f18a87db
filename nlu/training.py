"""Read NLU training data in Rasa YAML (`version: "3.1"`, `nlu:` with intent, synonym,
lookup and regex entries, inline `[text](entity)` annotations), the format a team can also
train a real Rasa server on.

Imports only the standard library and PyYAML.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

_ANNOTATION = re.compile(
    r"\[(?P<text>[^\]]+)\]"
    r"(?:\((?P<entity>[^)]+)\)|(?P<json>\{[^}]*\}))"
)


class TrainingDataError(ValueError):
    """A training-data file is malformed; the message names file, entry and example."""


@dataclass(frozen=True)
class Span:
    """An annotated entity in an example, offsets in the plain text."""

    entity: str
    start: int
    end: int
    value: str


@dataclass(frozen=True)
class Example:
    """One training or test utterance."""

    text: str
    intent: str
    entities: tuple[Span, ...] = ()


@dataclass
class TrainingData:
    """Everything in one or more Rasa YAML NLU files."""

    examples: list[Example] = field(default_factory=list)
    synonyms: dict[str, str] = field(default_factory=dict)  # lower-cased text -> value
    lookups: dict[str, list[str]] = field(default_factory=dict)
    regexes: dict[str, list[str]] = field(default_factory=dict)

    @property
    def intents(self) -> list[str]:
        """Intent names in first-seen order."""
        return list(dict.fromkeys(e.intent for e in self.examples))


def parse_example(line: str) -> tuple[str, tuple[Span, ...]]:
    """Strip the `[text](entity)` / `[text]{"entity": ..}` markup from one example."""
    out: list[str] = []
    spans: list[Span] = []
    pos = 0
    length = 0
    for m in _ANNOTATION.finditer(line):
        before = line[pos : m.start()]
        out.append(before)
        length += len(before)
        text = m.group("text")
        if m.group("json"):
            try:
                spec = json.loads(m.group("json"))
            except json.JSONDecodeError as exc:
                raise TrainingDataError(f"bad entity JSON {m.group('json')!r}: {exc}") from exc
            entity, value = str(spec.get("entity", "")), str(spec.get("value", text))
        else:
            entity, _, value = (m.group("entity") or "").partition(":")
            value = value or text
        if not entity:
            raise TrainingDataError(f"annotation {m.group(0)!r} names no entity")
        spans.append(Span(entity, length, length + len(text), value))
        out.append(text)
        length += len(text)
        pos = m.end()
    out.append(line[pos:])
    return "".join(out), tuple(spans)


def _lines(examples: Any, where: str) -> list[str]:
    if isinstance(examples, str):
        items = []
        for raw in examples.splitlines():
            stripped = raw.strip()
            if not stripped:
                continue
            if not stripped.startswith("- "):
                if stripped == "-":
                    continue
                raise TrainingDataError(f"{where}: example lines start with '- ': {stripped!r}")
            items.append(stripped[2:].strip())
        return items
    if isinstance(examples, list):
        return [str(e["text"]) if isinstance(e, dict) else str(e) for e in examples]
    raise TrainingDataError(f"{where}: `examples` must be a block of '- ' lines")


def load_training_data(*paths: Path) -> TrainingData:
    """Read Rasa YAML NLU files into one TrainingData; every error names its file."""
    data = TrainingData()
    for path in paths:
        try:
            with path.open(encoding="utf-8") as fh:
                doc = yaml.load(fh, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
        except yaml.YAMLError as exc:
            raise TrainingDataError(f"{path}: not valid YAML: {exc}") from exc
        if not isinstance(doc, dict) or not isinstance(doc.get("nlu"), list):
            raise TrainingDataError(f"{path}: expected `nlu:` with a list of entries")
        for i, entry in enumerate(doc["nlu"]):
            where = f"{path}: nlu[{i}]"
            if not isinstance(entry, dict):
                raise TrainingDataError(f"{where}: expected a mapping")
            lines = _lines(entry.get("examples"), where)
            if "intent" in entry:
                intent = str(entry["intent"])
                for line in lines:
                    try:
                        text, spans = parse_example(line)
                    except TrainingDataError as exc:
                        raise TrainingDataError(f"{where} ({intent}): {exc}") from exc
                    data.examples.append(Example(text, intent, spans))
            elif "synonym" in entry:
                for line in lines:
                    data.synonyms[line.lower()] = str(entry["synonym"])
            elif "lookup" in entry:
                data.lookups.setdefault(str(entry["lookup"]), []).extend(lines)
            elif "regex" in entry:
                data.regexes.setdefault(str(entry["regex"]), []).extend(lines)
            else:
                raise TrainingDataError(f"{where}: expected one of intent, synonym, lookup, regex")
    return data


BASE_LANGUAGE = "en"


def training_files(data_dir: Path, language: str) -> list[Path]:
    """The training files of a language: data/nlu/<lang>.yml, plus the English file for
    any other language, because patients mix ("mujhe doctor se baat karni hai", "ok",
    "stop"); empty when the language has no file of its own. tests/ is never included."""
    path = data_dir / "nlu" / f"{language}.yml"
    if not path.exists():
        return []
    base = data_dir / "nlu" / f"{BASE_LANGUAGE}.yml"
    if language != BASE_LANGUAGE and base.exists():
        return [path, base]
    return [path]
