"""Load, migrate and validate flow files, the interrupts file and the concept vocabulary.

Every problem is collected and reported at once as `file:node:field: message`.
Imports bot.flow, bot.errors, the standard library and PyYAML.
"""

from __future__ import annotations

import re
import string
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import yaml

from bot.errors import FlowError
from bot.flow import (
    LEVELS,
    AllOf,
    Answered,
    AnyOf,
    AskNode,
    Case,
    ClassifyNode,
    Compare,
    ConceptDef,
    Condition,
    Count,
    EndNode,
    EnterNode,
    EscalateNode,
    Flow,
    FollowUp,
    Interrupts,
    Library,
    Node,
    Not,
    Option,
    Outcome,
    RedFlagSpec,
    RouteNode,
    Row,
    SayNode,
    Text,
    TriageNode,
    Truthy,
    keyword_form,
)
from nlu.types import GLOBAL_RED_FLAGS

SPEC_VERSION = 2
PLACEHOLDERS = frozenset(
    {
        "emergency_number",
        "crisis_line",
        "service_name",
        "level_label",
        "items",
        "retention_days",
        "question",
    }
)
NODE_KINDS = ("say", "ask", "route", "triage", "classify", "escalate", "enter", "end")
QUESTION_TYPES = ("bool", "number", "choice", "multi", "text", "bp")
COMPARE_OPS = ("lt", "le", "gt", "ge", "eq", "ne", "between")
INTERRUPT_KEYS = ("stop", "start", "help", "agent", "restart", "menu", "language")
OPTIONAL_INTERRUPT_KEYS = (
    "join",  # subscribe to broadcasts (docs/broadcasts.md)
    "mydata",  # what is kept, and for how long (docs/security.md)
    "forget",  # erase me, after a yes from `confirm`
    "confirm",
)
REQUIRED_MESSAGES = (
    "red_flag",
    "red_flag_emergency",
    "confirm_red_flag",
    "crisis",
    "emergency_instruction",
    "stopped",
    "started",
    "help",
    "agent",
    "restart",
    "hint_bool",
    "hint_number",
    "hint_bp",
    "hint_choice",
    "hint_multi",
    "hint_text",
    "out_of_range",
    "offer_human",
    "handed_off",
    "unknown_allowed",
    "error",
    "resume",
    "nudge",
    "checkin_nudge",
)
_SLUG = re.compile(r"^[a-z][a-z0-9_]*$")
_DURATION = re.compile(r"^(\d+)\s*(m|min|h|d|w)$")
_DURATION_UNITS = {"m": "minutes", "min": "minutes", "h": "hours", "d": "days", "w": "weeks"}


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that keeps line numbers for error messages."""


@dataclass
class Problems:
    """Collects validation problems for one file."""

    file: str
    items: list[str] = field(default_factory=list)

    def add(self, node: str, field_: str, message: str) -> None:
        self.items.append(f"{self.file}:{node}:{field_}: {message}")


# --- vocabulary ---------------------------------------------------------------


def load_concepts(path: Path) -> tuple[dict[str, ConceptDef], tuple[str, ...]]:
    """Read data/concepts.yaml: concept definitions and the triage levels in order."""
    problems = Problems(str(path))
    raw = _read_yaml(path, problems)
    concepts: dict[str, ConceptDef] = {}
    levels: tuple[str, ...] = ()
    if isinstance(raw, dict):
        levels = tuple(str(item.get("id")) for item in raw.get("triage_levels") or [])
        if levels != LEVELS:
            problems.add("-", "triage_levels", f"expected {list(LEVELS)}, found {list(levels)}")
        for cid, spec in (raw.get("concepts") or {}).items():
            if not isinstance(spec, dict) or spec.get("type") not in (
                "bool",
                "number",
                "choice",
                "text",
            ):
                problems.add(str(cid), "type", "must be bool, number, choice or text")
                continue
            rng = spec.get("range")
            concepts[str(cid)] = ConceptDef(
                id=str(cid),
                type=str(spec["type"]),
                unit=str(spec["unit"]) if spec.get("unit") is not None else None,
                values=tuple(str(v) for v in spec.get("values") or ()),
                range=(float(rng[0]), float(rng[1])) if rng else None,
            )
    elif not problems.items:
        problems.add("-", "-", "expected a mapping with 'triage_levels' and 'concepts'")
    if problems.items:
        raise FlowError(problems.items)
    return concepts, levels


# --- entry point ------------------------------------------------------------------


def load_library(
    flows_dir: Path,
    concepts_path: Path,
    *,
    languages: Iterable[str] = ("en",),
    placeholders: dict[str, str] | None = None,
    first_flow: str = "consent",
    default_flow: str = "menu",
    max_failures: int = 3,
) -> Library:
    """Load every flow in `flows_dir`; raise FlowError listing every problem found."""
    concepts, _ = load_concepts(concepts_path)
    langs = tuple(languages)
    problems: list[str] = []
    flows: dict[str, Flow] = {}
    if not flows_dir.is_dir():
        raise FlowError([f"{flows_dir}:-:-: flows directory not found"])
    for path in sorted(flows_dir.glob("*.yaml")):
        if path.name.startswith("_"):
            continue
        flow, errs = _load_flow(path, concepts, langs)
        problems.extend(errs)
        if flow is not None:
            flows[flow.id] = flow
    interrupts, errs = _load_interrupts(flows_dir / "_interrupts.yaml", langs)
    problems.extend(errs)
    for flow in flows.values():
        for node in flow.nodes.values():
            targets: list[tuple[str, str]] = []
            if isinstance(node, EnterNode):
                targets.append(("enter", node.flow))
            if isinstance(node, TriageNode):
                targets += [
                    ("outcomes", o.follow_up.flow)
                    for opts in node.outcomes.values()
                    for o in opts
                    if o.follow_up
                ]
            for field_, target in targets:
                if target not in flows:
                    problems.append(f"{flow.path}:{node.id}:{field_}: unknown flow '{target}'")
    for key, name in (("first_flow", first_flow), ("default_flow", default_flow)):
        if name not in flows:
            problems.append(f"{flows_dir}:-:{key}: flow '{name}' is not defined")
    if problems:
        raise FlowError(problems)
    return Library(
        flows=flows,
        interrupts=interrupts,
        concepts=concepts,
        languages=langs,
        placeholders=dict(placeholders or {}),
        first_flow=first_flow,
        default_flow=default_flow,
        max_failures=max_failures,
    )


def _read_yaml(path: Path, problems: Problems) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        problems.add("-", "-", f"cannot read file: {exc.strerror}")
        return None
    try:
        data = yaml.load(text, Loader=_StrictLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark is not None else "-"
        problems.add(where, "-", f"YAML syntax error: {getattr(exc, 'problem', exc)}")
        return None
    _check_keys(data, problems, "-")
    return data


def _check_keys(data: Any, problems: Problems, where: str) -> None:
    """Reject non-string mapping keys (YAML 1.1 reads yes/no/on/off as booleans)."""
    if isinstance(data, dict):
        for key, value in data.items():
            if not isinstance(key, str):
                problems.add(
                    where,
                    repr(key),
                    "mapping key is not a string (quote yes/no/on/off and numbers)",
                )
            _check_keys(value, problems, where)
    elif isinstance(data, list):
        for item in data:
            _check_keys(item, problems, where)


# --- migrations -----------------------------------------------------------------------


def _migrate_1_to_2(raw: dict[str, Any]) -> dict[str, Any]:
    """v1 allowed plain strings for English texts and called options `choices`."""

    def text(value: Any) -> Any:
        return {"en": value} if isinstance(value, str) else value

    raw = dict(raw)
    raw["title"] = text(raw.get("title"))
    nodes = {}
    for nid, node in (raw.get("nodes") or {}).items():
        if isinstance(node, dict):
            node = dict(node)
            for key in ("say", "ask", "hint"):
                if key in node:
                    node[key] = text(node[key])
            if isinstance(node.get("end"), str):
                node["end"] = {"say": text(node["end"])}
            if "choices" in node and "options" not in node:
                node["options"] = node.pop("choices")
            for opt in node.get("options") or []:
                if isinstance(opt, dict) and "text" in opt:
                    opt["text"] = text(opt["text"])
        nodes[nid] = node
    raw["nodes"] = nodes
    raw["spec_version"] = 2
    return raw


MIGRATIONS: dict[int, Callable[[dict[str, Any]], dict[str, Any]]] = {1: _migrate_1_to_2}


def migrate(raw: dict[str, Any]) -> dict[str, Any]:
    """Bring a flow document up to SPEC_VERSION."""
    version = raw.get("spec_version")
    while isinstance(version, int) and version < SPEC_VERSION:
        raw = MIGRATIONS[version](raw)
        version = raw["spec_version"]
    return raw


# --- flows ------------------------------------------------------------------------------


def _load_flow(
    path: Path, concepts: dict[str, ConceptDef], languages: tuple[str, ...]
) -> tuple[Flow | None, list[str]]:
    problems = Problems(str(path))
    raw = _read_yaml(path, problems)
    if problems.items:
        return None, problems.items
    if not isinstance(raw, dict):
        problems.add("-", "-", "a flow file must be a mapping")
        return None, problems.items
    version = raw.get("spec_version")
    if not isinstance(version, int) or version < 1 or version > SPEC_VERSION:
        problems.add("-", "spec_version", f"must be an integer from 1 to {SPEC_VERSION}")
        return None, problems.items
    raw = migrate(raw)
    known = {"spec_version", "id", "title", "start", "define", "nodes"}
    for key in raw:
        if key not in known:
            problems.add("-", key, f"unknown field (expected one of {sorted(known)})")
    flow_id = raw.get("id")
    if flow_id != path.stem:
        problems.add("-", "id", f"must equal the file name '{path.stem}'")
    nodes_raw = raw.get("nodes")
    if not isinstance(nodes_raw, dict) or not nodes_raw:
        problems.add("-", "nodes", "must be a non-empty mapping of node id -> node")
        return None, problems.items
    v = _Validator(problems, concepts, languages, set(nodes_raw))
    title = v.text("-", "title", raw.get("title"))
    defines_raw = raw.get("define") or {}
    if not isinstance(defines_raw, dict):
        problems.add("-", "define", "must be a mapping of name -> condition")
        defines_raw = {}
    v.defines = set(defines_raw)
    for name in defines_raw:
        if name in concepts or name == "red_flag":
            problems.add("-", f"define.{name}", "a defined name may not shadow a concept")
    defines = {name: v.condition("-", f"define.{name}", c) for name, c in defines_raw.items()}
    start = raw.get("start")
    if start not in nodes_raw:
        problems.add("-", "start", f"unknown node '{start}'")
    nodes: dict[str, Node] = {}
    for nid, node_raw in nodes_raw.items():
        if not _SLUG.match(str(nid)):
            problems.add(str(nid), "-", "node ids are lowercase slugs like ask_fever")
        node = v.node(str(nid), node_raw)
        if node is not None:
            nodes[str(nid)] = node
    if problems.items:
        return None, problems.items
    return (
        Flow(
            id=str(flow_id),
            spec_version=SPEC_VERSION,
            title=title or {},
            start=str(start),
            nodes=nodes,
            defines=defines,
            path=str(path),
            spoken=v.spoken,
        ),
        [],
    )


class _Validator:
    """Turns raw node mappings into typed nodes, recording every problem."""

    def __init__(
        self,
        problems: Problems,
        concepts: dict[str, ConceptDef],
        languages: tuple[str, ...],
        node_ids: set[str],
    ) -> None:
        self.p = problems
        self.concepts = concepts
        self.languages = languages
        self.node_ids = node_ids
        self.defines: set[str] = set()
        self.spoken: dict[str, dict[str, str]] = {}  # language -> written -> read aloud

    def spoken_of(self, node: str, field_: str, value: Any, written: Text) -> None:
        """An optional `spoken:` variant of `written`: some languages, same placeholders."""
        if value is None:
            return
        if not isinstance(value, dict) or not value:
            self.p.add(node, field_, "must be a mapping of language -> text read aloud")
            return
        for lang, txt in value.items():
            lang = str(lang)
            if lang not in written:
                self.p.add(node, f"{field_}.{lang}", f"there is no written '{lang}' text to read")
                continue
            if not isinstance(txt, str) or not txt.strip():
                self.p.add(node, f"{field_}.{lang}", "must be a non-empty string")
                continue
            try:
                names = {n for _, n, _, _ in string.Formatter().parse(txt) if n is not None}
                want = {n for _, n, _, _ in string.Formatter().parse(written[lang]) if n}
            except ValueError as exc:
                self.p.add(node, f"{field_}.{lang}", f"bad placeholder syntax: {exc}")
                continue
            if names != want:
                self.p.add(
                    node,
                    f"{field_}.{lang}",
                    f"placeholders {sorted(names)} differ from the written text's {sorted(want)}",
                )
                continue
            self.spoken.setdefault(lang, {})[written[lang]] = " ".join(txt.split())

    # texts ---------------------------------------------------------------------------
    def text(self, node: str, field_: str, value: Any) -> Text | None:
        if not isinstance(value, dict) or not value:
            self.p.add(node, field_, "must be a mapping of language -> text, e.g. {en: ...}")
            return None
        out: Text = {}
        found: dict[str, set[str]] = {}
        for lang, txt in value.items():
            if not isinstance(txt, str) or not txt.strip():
                self.p.add(node, f"{field_}.{lang}", "must be a non-empty string")
                continue
            try:
                names = {n for _, n, _, _ in string.Formatter().parse(txt) if n is not None}
            except ValueError as exc:
                self.p.add(node, f"{field_}.{lang}", f"bad placeholder syntax: {exc}")
                continue
            bad = names - PLACEHOLDERS
            if bad:
                self.p.add(
                    node,
                    f"{field_}.{lang}",
                    f"unknown placeholder(s) {sorted(bad)}; allowed: {sorted(PLACEHOLDERS)}",
                )
            out[str(lang)], found[str(lang)] = txt, names
        for lang in self.languages:
            if lang not in out and lang not in found:
                self.p.add(node, field_, f"missing the '{lang}' text")
        first = self.languages[0] if self.languages else None
        for lang, names in found.items():
            if first in found and lang != first and names != found[first]:
                self.p.add(
                    node,
                    f"{field_}.{lang}",
                    f"placeholders {sorted(names)} differ from the '{first}' text's "
                    f"{sorted(found[first])}",
                )
        return out

    # conditions ------------------------------------------------------------------------
    def condition(self, node: str, field_: str, raw: Any) -> Condition:
        if isinstance(raw, str):
            if raw != "red_flag" and raw not in self.concepts and raw not in self.defines:
                self.p.add(node, field_, f"unknown concept or name '{raw}'")
            return Truthy(raw)
        if isinstance(raw, dict) and len(raw) == 1:
            (key, arg), *_ = raw.items()
            if key in ("any", "all"):
                items = self._items(node, field_, key, arg)
                return AnyOf(items) if key == "any" else AllOf(items)
            if key == "not":
                return Not(self.condition(node, f"{field_}.not", arg))
            if key == "answered":
                if arg not in self.concepts:
                    self.p.add(node, f"{field_}.answered", f"unknown concept '{arg}'")
                return Answered(str(arg))
            if isinstance(arg, dict) and key != "count":
                if key not in self.concepts:
                    self.p.add(node, f"{field_}.{key}", f"unknown concept '{key}'")
                    return Truthy("red_flag")
                return Compare(key, self._ops(node, f"{field_}.{key}", arg, self.concepts[key]))
        if isinstance(raw, dict) and "count" in raw:
            items = self._items(node, field_, "count", raw["count"])
            rest = {k: v for k, v in raw.items() if k != "count"}
            return Count(items, self._ops(node, f"{field_}.count", rest, None))
        self.p.add(node, field_, f"not a condition: {raw!r} (see docs/flows.md#conditions)")
        return Truthy("red_flag")

    def _items(self, node: str, field_: str, key: str, arg: Any) -> tuple[Condition, ...]:
        if not isinstance(arg, list) or not arg:
            self.p.add(node, f"{field_}.{key}", "must be a non-empty list of conditions")
            return ()
        return tuple(self.condition(node, f"{field_}.{key}[{i}]", c) for i, c in enumerate(arg))

    def _ops(
        self, node: str, field_: str, arg: dict[str, Any], concept: ConceptDef | None
    ) -> tuple[tuple[str, Any], ...]:
        ops: list[tuple[str, Any]] = []
        if not arg:
            self.p.add(node, field_, f"needs at least one of {list(COMPARE_OPS)}")
        numeric = concept is None or concept.type == "number"
        for op, value in arg.items():
            if op not in COMPARE_OPS:
                self.p.add(node, f"{field_}.{op}", f"unknown operator; use one of {COMPARE_OPS}")
                continue
            if op == "between":
                ok = (
                    isinstance(value, list)
                    and len(value) == 2
                    and all(isinstance(x, int | float) for x in value)
                )
                if not ok or not numeric:
                    self.p.add(node, f"{field_}.between", "needs [low, high] numbers")
                    continue
                ops.append((op, (float(value[0]), float(value[1]))))
            elif numeric:
                if not isinstance(value, int | float) or isinstance(value, bool):
                    self.p.add(node, f"{field_}.{op}", f"needs a number, got {value!r}")
                    continue
                ops.append((op, float(value)))
            else:
                assert concept is not None
                if op not in ("eq", "ne"):
                    self.p.add(node, f"{field_}.{op}", f"{concept.type} concepts allow eq/ne only")
                    continue
                if concept.values and value not in concept.values:
                    self.p.add(node, f"{field_}.{op}", f"'{value}' is not one of {concept.values}")
                ops.append((op, value))
        return tuple(ops)

    # next ----------------------------------------------------------------------------------
    def next_(self, node: str, raw: Any) -> tuple[Case, ...]:
        if isinstance(raw, str):
            if raw not in self.node_ids:
                self.p.add(node, "next", f"unknown node '{raw}'")
            return (Case(None, raw),)
        if not isinstance(raw, list) or not raw:
            self.p.add(node, "next", "must be a node id or a list of {when, goto} cases")
            return ()
        cases: list[Case] = []
        for i, case in enumerate(raw):
            f = f"next[{i}]"
            if not isinstance(case, dict) or "goto" not in case:
                self.p.add(node, f, "each case needs 'goto' (and 'when' except the last)")
                continue
            if case["goto"] not in self.node_ids:
                self.p.add(node, f"{f}.goto", f"unknown node '{case['goto']}'")
            when = self.condition(node, f"{f}.when", case["when"]) if "when" in case else None
            cases.append(Case(when, str(case["goto"])))
        if cases and cases[-1].when is not None:
            self.p.add(node, "next", "the last case must be a default (no 'when')")
        return tuple(cases)

    # nodes ---------------------------------------------------------------------------------------
    def node(self, nid: str, raw: Any) -> Node | None:
        if not isinstance(raw, dict):
            self.p.add(nid, "-", "a node must be a mapping")
            return None
        kinds = [k for k in NODE_KINDS if k in raw]
        if len(kinds) != 1:
            self.p.add(nid, "-", f"needs exactly one of {list(NODE_KINDS)}, found {kinds}")
            return None
        kind = kinds[0]
        allowed = {kind, "next", "note"} | _EXTRA_FIELDS.get(kind, set())
        for key in raw:
            if key not in allowed:
                self.p.add(nid, str(key), f"unknown field for a '{kind}' node")
        if kind != "end" and "next" not in raw:
            self.p.add(nid, "next", "missing")
        nxt = self.next_(nid, raw.get("next")) if kind != "end" and "next" in raw else ()
        builder: Callable[[str, dict[str, Any], tuple[Case, ...]], Node | None] = getattr(
            self, f"_{kind}"
        )
        return builder(nid, raw, nxt)

    def _say(self, nid: str, raw: dict[str, Any], nxt: tuple[Case, ...]) -> Node | None:
        text = self.text(nid, "say", raw["say"]) or {}
        self.spoken_of(nid, "spoken", raw.get("spoken"), text)
        return SayNode(nid, text, nxt)

    def _route(self, nid: str, raw: dict[str, Any], nxt: tuple[Case, ...]) -> Node | None:
        return RouteNode(nid, nxt)

    def _enter(self, nid: str, raw: dict[str, Any], nxt: tuple[Case, ...]) -> Node | None:
        return EnterNode(nid, str(raw["enter"]), nxt)

    def _end(self, nid: str, raw: dict[str, Any], nxt: tuple[Case, ...]) -> Node | None:
        spec = raw["end"]
        if spec is True or spec is None or spec == {}:
            return EndNode(nid)
        if not isinstance(spec, dict):
            self.p.add(nid, "end", "must be true or a mapping {say, exit}")
            return None
        for key in spec:
            if key not in ("say", "exit", "spoken"):
                self.p.add(nid, f"end.{key}", "unknown field (say, exit, spoken)")
        exit_ = spec.get("exit", "flow")
        if exit_ not in ("flow", "all", "human"):
            self.p.add(nid, "end.exit", "must be 'flow', 'all' or 'human'")
        text = self.text(nid, "end.say", spec["say"]) if "say" in spec else None
        self.spoken_of(nid, "end.spoken", spec.get("spoken"), text or {})
        return EndNode(nid, text, exit_ in ("all", "human"), exit_ == "human")

    def _escalate(self, nid: str, raw: dict[str, Any], nxt: tuple[Case, ...]) -> Node | None:
        spec = raw["escalate"]
        if not isinstance(spec, dict) or "reason" not in spec:
            self.p.add(nid, "escalate", "must be a mapping {reason, level}")
            return None
        level = spec.get("level", "consultation_24")
        if level not in LEVELS:
            self.p.add(nid, "escalate.level", f"unknown level '{level}'")
        return EscalateNode(nid, str(spec["reason"]), str(level), nxt)

    def _ask(self, nid: str, raw: dict[str, Any], nxt: tuple[Case, ...]) -> Node | None:
        text = self.text(nid, "ask", raw["ask"]) or {}
        self.spoken_of(nid, "spoken", raw.get("spoken"), text)
        qtype = raw.get("type")
        if qtype not in QUESTION_TYPES:
            self.p.add(nid, "type", f"must be one of {list(QUESTION_TYPES)}")
            return None
        options: tuple[Option, ...] = ()
        if qtype == "multi":
            if "concept" in raw:
                self.p.add(nid, "concept", "a multi question records one concept per option")
            options = self._options(nid, raw, "concept")
            concepts = tuple(o.value for o in options)
            for i, o in enumerate(options):
                self._concept(nid, f"options[{i}].concept", o.value, ("bool",))
        elif qtype == "bp":
            pair = raw.get("concepts")
            if not isinstance(pair, list) or len(pair) != 2:
                self.p.add(nid, "concepts", "a bp question needs [systolic, diastolic] concepts")
                return None
            concepts = (str(pair[0]), str(pair[1]))
            for i, c in enumerate(concepts):
                self._concept(nid, f"concepts[{i}]", c, ("number",))
        else:
            concept = raw.get("concept")
            want = {"bool": ("bool",), "number": ("number",), "choice": ("choice",)}
            self._concept(nid, "concept", concept, want.get(qtype, ("text", "choice")))
            concepts = (str(concept),)
            if qtype == "choice":
                options = self._options(nid, raw, "value")
                cdef = self.concepts.get(str(concept))
                for i, o in enumerate(options):
                    if cdef and cdef.values and o.value not in cdef.values:
                        self.p.add(
                            nid,
                            f"options[{i}].value",
                            f"'{o.value}' is not a value of {concept} {list(cdef.values)}",
                        )
        if options and qtype not in ("choice", "multi"):
            self.p.add(nid, "options", f"a {qtype} question has no options")
        hint = self.text(nid, "hint", raw["hint"]) if "hint" in raw else None
        rng = raw.get("range")
        if rng is not None and not (
            isinstance(rng, list) and len(rng) == 2 and all(isinstance(x, int | float) for x in rng)
        ):
            self.p.add(nid, "range", "must be [low, high]")
            rng = None
        if rng is None and qtype == "number":
            cdef = self.concepts.get(concepts[0])
            rng = list(cdef.range) if cdef and cdef.range else None
        unknown = raw.get("unknown", False)
        if not isinstance(unknown, bool):
            self.p.add(nid, "unknown", "must be true or false")
        return AskNode(
            id=nid,
            text=text,
            type=str(qtype),
            concepts=concepts,
            next=nxt,
            options=options,
            allow_unknown=bool(unknown),
            hint=hint,
            range=(float(rng[0]), float(rng[1])) if rng else None,
            input_unit=str(raw["input_unit"]) if raw.get("input_unit") else None,
        )

    def _concept(self, nid: str, field_: str, concept: Any, types: tuple[str, ...]) -> None:
        cdef = self.concepts.get(str(concept)) if isinstance(concept, str) else None
        if cdef is None:
            self.p.add(nid, field_, f"unknown concept '{concept}' (see data/concepts.yaml)")
        elif cdef.type not in types:
            self.p.add(nid, field_, f"concept '{concept}' is {cdef.type}, expected {types}")

    def _options(self, nid: str, raw: dict[str, Any], key: str) -> tuple[Option, ...]:
        opts = raw.get("options")
        if not isinstance(opts, list) or not opts:
            self.p.add(nid, "options", "must be a non-empty list")
            return ()
        out = []
        for i, opt in enumerate(opts):
            if not isinstance(opt, dict) or key not in opt or "text" not in opt:
                self.p.add(nid, f"options[{i}]", f"needs '{key}' and 'text'")
                continue
            text = self.text(nid, f"options[{i}].text", opt["text"]) or {}
            out.append(Option(str(opt[key]), text))
        return tuple(out)

    def _rows(self, nid: str, raw: Any, key: str, allowed: tuple[str, ...]) -> tuple[Row, ...]:
        if not isinstance(raw, list) or not raw:
            self.p.add(nid, key, "must be a non-empty list of rows")
            return ()
        rows = []
        for i, row in enumerate(raw):
            f = f"{key}[{i}]"
            value_key = "level" if key == "triage" else "value"
            if not isinstance(row, dict) or value_key not in row:
                self.p.add(nid, f, f"each row needs '{value_key}'")
                continue
            for k in row:
                if k not in ("when", value_key, "note"):
                    self.p.add(nid, f"{f}.{k}", "unknown field")
            if row[value_key] not in allowed:
                self.p.add(nid, f"{f}.{value_key}", f"'{row[value_key]}' not in {list(allowed)}")
            when = self.condition(nid, f"{f}.when", row["when"]) if "when" in row else None
            rows.append(Row(when, str(row[value_key]), str(row.get("note", ""))))
        return tuple(rows)

    def _triage(self, nid: str, raw: dict[str, Any], nxt: tuple[Case, ...]) -> Node | None:
        rows = self._rows(nid, raw["triage"], "triage", LEVELS)
        outcomes_raw = raw.get("outcomes")
        outcomes: dict[str, tuple[Outcome, ...]] = {}
        if not isinstance(outcomes_raw, dict):
            self.p.add(nid, "outcomes", "must map each reachable level to an outcome")
            outcomes_raw = {}
        for level in {r.value for r in rows}:
            if level not in outcomes_raw:
                self.p.add(nid, f"outcomes.{level}", "missing: the table can reach this level")
        for level, spec in outcomes_raw.items():
            if level not in LEVELS:
                self.p.add(nid, f"outcomes.{level}", "unknown level")
                continue
            outcomes[level] = self._outcomes(nid, f"outcomes.{level}", spec)
        return TriageNode(nid, rows, outcomes, nxt)

    def _outcomes(self, nid: str, field_: str, spec: Any) -> tuple[Outcome, ...]:
        items = spec if isinstance(spec, list) else [spec]
        out = []
        for i, item in enumerate(items):
            f = f"{field_}[{i}]" if isinstance(spec, list) else field_
            if not isinstance(item, dict):
                self.p.add(nid, f, "must be a mapping {say, follow_up, next}")
                continue
            for k in item:
                if k not in ("when", "say", "follow_up", "next", "spoken"):
                    self.p.add(nid, f"{f}.{k}", "unknown field")
            when = self.condition(nid, f"{f}.when", item["when"]) if "when" in item else None
            text = self.text(nid, f"{f}.say", item["say"]) if "say" in item else None
            self.spoken_of(nid, f"{f}.spoken", item.get("spoken"), text or {})
            nxt = item.get("next")
            if nxt is not None and nxt not in self.node_ids:
                self.p.add(nid, f"{f}.next", f"unknown node '{nxt}'")
            follow = self._follow_up(nid, f"{f}.follow_up", item.get("follow_up"))
            out.append(Outcome(when, text, follow, str(nxt) if nxt else None))
        if out and out[-1].when is not None:
            self.p.add(nid, field_, "the last outcome must have no 'when' (the default)")
        return tuple(out)

    def _follow_up(self, nid: str, field_: str, spec: Any) -> FollowUp | None:
        if spec is None:
            return None
        if not isinstance(spec, dict) or "flow" not in spec:
            self.p.add(nid, field_, "must be {flow, after} or {flow, every, times}")
            return None
        after = self._duration(nid, f"{field_}.after", spec.get("after"))
        every = self._duration(nid, f"{field_}.every", spec.get("every"))
        if (after is None) == (every is None):
            self.p.add(nid, field_, "needs exactly one of 'after' or 'every'")
        times = spec.get("times", 1)
        if not isinstance(times, int) or times < 1:
            self.p.add(nid, f"{field_}.times", "must be a positive integer")
            times = 1
        return FollowUp(str(spec["flow"]), after, every, times)

    def _duration(self, nid: str, field_: str, raw: Any) -> timedelta | None:
        if raw is None:
            return None
        m = _DURATION.match(str(raw).strip())
        if not m:
            self.p.add(nid, field_, f"'{raw}' is not a duration like 15m, 4h, 24h, 7d")
            return None
        return timedelta(**{_DURATION_UNITS[m.group(2)]: int(m.group(1))})

    def _classify(self, nid: str, raw: dict[str, Any], nxt: tuple[Case, ...]) -> Node | None:
        spec = raw["classify"]
        if not isinstance(spec, dict) or "concept" not in spec or "order" not in spec:
            self.p.add(nid, "classify", "must be {concept, order}")
            return None
        self._concept(nid, "classify.concept", spec["concept"], ("choice",))
        order = tuple(str(v) for v in spec["order"] or ())
        rows = self._rows(nid, raw.get("rules"), "rules", order)
        return ClassifyNode(nid, str(spec["concept"]), order, rows, nxt)


_EXTRA_FIELDS: dict[str, set[str]] = {
    "say": {"spoken"},
    "ask": {
        "concept",
        "concepts",
        "type",
        "options",
        "unknown",
        "hint",
        "range",
        "input_unit",
        "spoken",
    },
    "triage": {"outcomes"},
    "classify": {"rules"},
}


# --- interrupts ---------------------------------------------------------------------------------


def _load_interrupts(path: Path, languages: tuple[str, ...]) -> tuple[Interrupts, list[str]]:
    problems = Problems(str(path))
    empty = Interrupts({}, {})
    if not path.exists():
        problems.add("-", "-", "missing: the global interrupts file is required")
        return empty, problems.items
    raw = _read_yaml(path, problems)
    if problems.items:
        return empty, problems.items
    if not isinstance(raw, dict):
        problems.add("-", "-", "must be a mapping with 'keywords' and 'messages'")
        return empty, problems.items
    v = _Validator(problems, {}, languages, set())
    keywords: dict[str, dict[str, tuple[str, ...]]] = {}
    for key in (*INTERRUPT_KEYS, *OPTIONAL_INTERRUPT_KEYS):
        spec = (raw.get("keywords") or {}).get(key)
        if spec is None and key in OPTIONAL_INTERRUPT_KEYS:
            continue
        if not isinstance(spec, dict) or not spec:
            problems.add("keywords", key, "missing keyword list")
            continue
        keywords[key] = {
            str(lang): tuple(keyword_form(str(w)) for w in words or ())
            for lang, words in spec.items()
        }
        for lang in languages:
            if not keywords[key].get(lang):
                problems.add("keywords", f"{key}.{lang}", f"missing the '{lang}' keywords")
    messages: dict[str, Text] = {}
    for key, spec in (raw.get("messages") or {}).items():
        text = v.text("messages", str(key), spec)
        if text:
            messages[str(key)] = text
    for key in REQUIRED_MESSAGES:
        if key not in (raw.get("messages") or {}):
            problems.add("messages", key, "missing message")
    for key in ("red_flag", "red_flag_emergency"):
        for lang, txt in messages.get(key, {}).items():
            if "{emergency_number}" not in txt:
                problems.add("messages", f"{key}.{lang}", "must contain {emergency_number}")
    return Interrupts(keywords, messages, _red_flag_specs(raw, v, problems)), problems.items


def _red_flag_specs(
    raw: dict[str, Any], v: _Validator, problems: Problems
) -> dict[str, RedFlagSpec]:
    """`red_flags:`: a level in the two emergency levels and a confirmation question for
    every global red flag (bot.flow.GLOBAL_RED_FLAGS), and no other id."""
    section = raw.get("red_flags")
    if not isinstance(section, dict):
        problems.add("red_flags", "-", "missing: a mapping of red-flag id -> {level, ask}")
        return {}
    out: dict[str, RedFlagSpec] = {}
    for flag, spec in section.items():
        flag = str(flag)
        if flag not in GLOBAL_RED_FLAGS:
            problems.add("red_flags", flag, "not a global red flag (bot/flow.py GLOBAL_RED_FLAGS)")
            continue
        if not isinstance(spec, dict):
            problems.add("red_flags", flag, "must be a mapping with 'level' and 'ask'")
            continue
        level = spec.get("level")
        if level not in LEVELS[:2]:
            problems.add("red_flags", f"{flag}.level", f"must be one of {', '.join(LEVELS[:2])}")
            continue
        ask = v.text("red_flags", f"{flag}.ask", spec.get("ask"))
        if ask:
            out[flag] = RedFlagSpec(str(level), ask)
    for flag in GLOBAL_RED_FLAGS:
        if flag not in section:
            problems.add("red_flags", flag, "missing: every global red flag needs a level")
    return out


# --- texts for the live channels (voice, USSD): what `flows validate` checks -----------------


@dataclass(frozen=True)
class WrittenText:
    """One text a patient is told, as the validator sees it for voice and USSD."""

    where: str  # file:node:field
    language: str
    text: str  # with the library's placeholders filled in
    spoken: bool  # a `spoken:` variant exists for it
    choices: tuple[str, ...] = ()  # an ask node's option labels


def written_texts(lib: Library) -> Iterator[WrittenText]:
    """Every node and outcome text of every flow, per language, placeholders filled."""
    fill = _Filled(lib.placeholders)
    for flow in lib.flows.values():
        for node in flow.nodes.values():
            texts: list[tuple[str, Text | None, tuple[Option, ...]]] = []
            if isinstance(node, SayNode):
                texts.append(("say", node.text, ()))
            elif isinstance(node, AskNode):
                texts.append(("ask", node.text, node.options))
            elif isinstance(node, EndNode):
                texts.append(("end.say", node.text, ()))
            elif isinstance(node, TriageNode):
                for level, outcomes in node.outcomes.items():
                    texts += [
                        (f"outcomes.{level}[{i}].say", o.text, ()) for i, o in enumerate(outcomes)
                    ]
            for field_, text, options in texts:
                for lang, template in (text or {}).items():
                    spoken = template in flow.spoken.get(lang, {})
                    labels = tuple(o.text.get(lang, "") for o in options)
                    yield WrittenText(
                        f"{flow.path}:{node.id}:{field_}.{lang}",
                        lang,
                        template.format_map(fill),
                        spoken,
                        labels,
                    )


class _Filled(dict[str, str]):
    """Placeholders the library knows filled in; the others (answers) left as `{name}`."""

    def __missing__(self, key: str) -> str:
        return "{" + key + "}"
