"""NLU benchmark: latency (p50/p99), throughput, memory and training time of the embedded
interpreter, its accuracy / macro-F1 / entity F1 on the held-out file, and the same numbers
for Rasa Open Source 3.6 (DIET, default config) trained on the same data when its venv
exists (bench/.rasa-venv, Python 3.10; see docs/nlu.md). Writes docs/benchmarks.md.

Usage: .venv/bin/python bench/nlu.py [--no-rasa] [--reps N]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from nlu import classifier  # noqa: E402
from nlu.evaluate import score_examples  # noqa: E402
from nlu.interpreter import Interpreter  # noqa: E402
from nlu.training import load_training_data  # noqa: E402

DATA = ROOT / "data"
TRAIN = DATA / "nlu" / "en.yml"
HELDOUT = DATA / "nlu" / "tests" / "en_heldout.yml"
RASA_PY = ROOT / "bench" / ".rasa-venv" / "bin" / "python"
WORK = ROOT / "bench" / ".work"

RASA_CONFIG = """\
# Rasa 3.6 default NLU pipeline (what `rasa init` writes), minus ResponseSelector
# (there are no retrieval intents). FallbackClassifier maps low confidence to nlu_fallback.
recipe: default.v1
language: en
pipeline:
  - name: WhitespaceTokenizer
  - name: RegexFeaturizer
  - name: LexicalSyntacticFeaturizer
  - name: CountVectorsFeaturizer
  - name: CountVectorsFeaturizer
    analyzer: char_wb
    min_ngram: 1
    max_ngram: 4
  - name: DIETClassifier
    epochs: 100
    constrain_similarities: true
  - name: EntitySynonymMapper
  - name: FallbackClassifier
    threshold: 0.3
    ambiguity_threshold: 0.1
policies: []
assistant_id: carebridge-bench
"""

RASA_WORKER = """
import asyncio, json, logging, os, sys, time, warnings
warnings.filterwarnings("ignore")
logging.disable(logging.WARNING)
work, train_file, texts_file, reps = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
from rasa.model_training import train_nlu
from rasa.core.agent import Agent
t0 = time.perf_counter()
model = train_nlu(config=os.path.join(work, "config.yml"), nlu_data=train_file,
                  output=os.path.join(work, "models"), fixed_model_name="nlu")
train_s = time.perf_counter() - t0
t0 = time.perf_counter()
agent = Agent.load(model)
load_s = time.perf_counter() - t0
loop = asyncio.new_event_loop()
texts = json.load(open(texts_file))
preds = []
for t in texts:
    r = loop.run_until_complete(agent.parse_message(t))
    ranking = r.get("intent_ranking") or []
    raw = next((i["name"] for i in ranking if i["name"] != "nlu_fallback"), r["intent"]["name"])
    preds.append({"intent": r["intent"]["name"], "raw": raw,
                  "entities": [[e["entity"], e["start"], e["end"]] for e in r.get("entities", [])]})
lat = []
for _ in range(reps):
    for t in texts:
        s = time.perf_counter()
        loop.run_until_complete(agent.parse_message(t))
        lat.append(time.perf_counter() - s)
hwm = [l for l in open("/proc/self/status") if l.startswith("VmHWM:")][0].split()[1]
print(json.dumps({"train_s": train_s, "load_s": load_s, "preds": preds, "latency": lat,
                  "rss_mb": int(hwm) / 1024}))
"""

OURS_MEMORY = """
import sys
sys.path.insert(0, sys.argv[1])
from nlu.interpreter import Interpreter
it = Interpreter()
it.warm("en")
for t in open(sys.argv[2], encoding="utf-8").read().splitlines():
    it.interpret(t)
hwm = [l for l in open("/proc/self/status") if l.startswith("VmHWM:")][0].split()[1]
print(int(hwm) / 1024)  # peak RSS of this process (ru_maxrss would include the parent's)
"""


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def ours(reps: int) -> dict[str, Any]:
    examples = load_training_data(HELDOUT).examples
    texts = [e.text for e in examples]
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        classifier.load_or_train("en", DATA, cache_dir=Path(tmp), force=True)
        train_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    it = Interpreter()
    it.warm("en")
    load_s = time.perf_counter() - t0

    def predict(text: str) -> tuple[str, list[tuple[str, int, int]]]:
        u = it.interpret(text)
        return u.intent.name, [(e.entity, e.start, e.end) for e in u.entities]

    def predict_raw(text: str) -> tuple[str, list[tuple[str, int, int]]]:
        u = it.interpret(text)
        raw = u.intent_ranking[0].name if u.intent_ranking else u.intent.name
        return raw, [(e.entity, e.start, e.end) for e in u.entities]

    thresholded = score_examples(examples, predict)
    raw = score_examples(examples, predict_raw)
    for t in texts:  # warm caches before timing
        it.interpret(t)
    lat: list[float] = []
    for _ in range(reps):
        for t in texts:
            s = time.perf_counter()
            it.interpret(t)
            lat.append(time.perf_counter() - s)
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False, encoding="utf-8") as fh:
        fh.write("\n".join(texts))
    try:
        out = subprocess.run(
            [sys.executable, "-c", OURS_MEMORY, str(ROOT), fh.name],
            capture_output=True,
            text=True,
            check=True,
        )
        rss = float(out.stdout.strip().splitlines()[-1])
    finally:
        os.unlink(fh.name)
    return {
        "raw": raw,
        "thresholded": thresholded,
        "latency": lat,
        "train_s": train_s,
        "load_s": load_s,
        "rss_mb": rss,
    }


def rasa(reps: int) -> dict[str, Any] | str:
    """Rasa's numbers, or a reason why there are none."""
    if not RASA_PY.exists():
        return "not installed"
    probe = subprocess.run(
        [str(RASA_PY), "-c", "import rasa; print(rasa.__version__)"],
        capture_output=True,
        text=True,
    )
    if probe.returncode != 0:
        return "not installed"
    work = WORK / "rasa"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    (work / "config.yml").write_text(RASA_CONFIG, encoding="utf-8")
    (work / "worker.py").write_text(textwrap.dedent(RASA_WORKER), encoding="utf-8")
    examples = load_training_data(HELDOUT).examples
    (work / "texts.json").write_text(json.dumps([e.text for e in examples]), encoding="utf-8")
    env = {
        **os.environ,
        "RASA_TELEMETRY_ENABLED": "false",
        "TF_CPP_MIN_LOG_LEVEL": "3",
        "SQLALCHEMY_SILENCE_UBER_WARNING": "1",
        "PYTHONWARNINGS": "ignore",
    }
    print(f"rasa {probe.stdout.strip()}: training and parsing (a few minutes)...", flush=True)
    proc = subprocess.run(
        [
            str(RASA_PY),
            str(work / "worker.py"),
            str(work),
            str(TRAIN),
            str(work / "texts.json"),
            str(reps),
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=work,
    )
    if proc.returncode != 0:
        (work / "stderr.log").write_text(proc.stderr, encoding="utf-8")
        return f"failed (see {work / 'stderr.log'})"
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    preds = result.pop("preds")
    by_text = {e.text: p for e, p in zip(examples, preds, strict=True)}

    def fallback_mapped(name: str) -> str:
        return "out_of_scope" if name == "nlu_fallback" else name

    result["thresholded"] = score_examples(
        examples,
        lambda t: (
            fallback_mapped(by_text[t]["intent"]),
            [tuple(e) for e in by_text[t]["entities"]],
        ),
    )
    result["raw"] = score_examples(
        examples, lambda t: (by_text[t]["raw"], [tuple(e) for e in by_text[t]["entities"]])
    )
    result["version"] = probe.stdout.strip()
    return result


def table(our: dict[str, Any], theirs: dict[str, Any] | str) -> str:
    def col(r: dict[str, Any] | str, key: str) -> str:
        if isinstance(r, str):
            return f"rasa: {r}"
        lat = r["latency"]
        p50, p99 = percentile(lat, 0.5), percentile(lat, 0.99)
        values = {
            "accuracy": f"{r['raw'].accuracy:.3f}",
            "macro-F1": f"{r['raw'].macro_f1:.3f}",
            "macro-F1 (with fallback)": f"{r['thresholded'].macro_f1:.3f}",
            "entity F1": f"{r['raw'].entity_f1:.3f}",
            "p50 latency": f"{p50 * 1000:.3f} ms",
            "p99 latency": f"{p99 * 1000:.3f} ms",
            "throughput (1 thread)": f"{1 / statistics.fmean(lat):,.0f} msg/s",
            "peak RSS": f"{r['rss_mb']:.0f} MB",
            "training time": f"{r['train_s']:.1f} s",
            "load time": f"{r['load_s']:.2f} s",
        }
        return values[key]

    rows = [
        "accuracy",
        "macro-F1",
        "macro-F1 (with fallback)",
        "entity F1",
        "p50 latency",
        "p99 latency",
        "throughput (1 thread)",
        "peak RSS",
        "training time",
        "load time",
    ]
    head = "| metric | carebridge embedded | Rasa 3.6 DIET |\n|---|---|---|\n"
    body = "\n".join(f"| {r} | {col(our, r)} | {col(theirs, r)} |" for r in rows)
    note = ""
    if not isinstance(theirs, str):
        speedup = percentile(theirs["latency"], 0.5) / percentile(our["latency"], 0.5)
        note = f"\n\np50 speed-up over Rasa's in-process parse: **{speedup:.0f}x**."
    return head + body + note


def notes(our: dict[str, Any]) -> str:
    n = our["raw"].total
    return (
        f"\n\nHeld-out file: `data/nlu/tests/en_heldout.yml` ({n} messages, never trained on); "
        "both trained on `data/nlu/en.yml`. macro-F1 is over the top-ranked intent; "
        '"with fallback" applies each system\'s low-confidence rule (ours: '
        "`Interpreter.threshold`, Rasa: FallbackClassifier 0.3 -> out_of_scope). Entity F1: a "
        "predicted entity counts when name and span overlap a gold annotation (names that "
        "occur in the gold file only). Latency is one `interpret()` / `Agent.parse_message` "
        "call in process, over every held-out message; ours includes red flags, findings and "
        "readings (no question pending). Peak RSS is of a fresh process that loads the "
        "model and parses the file."
    )


def write_doc(body: str) -> None:
    try:
        sys.path.insert(0, str(ROOT / "bench"))
        from report import write_section  # the project's shared section writer

        write_section("nlu", "NLU: embedded interpreter vs Rasa 3.6", body)
    except ImportError:
        doc = ROOT / "docs" / "benchmarks.md"
        text = doc.read_text(encoding="utf-8") if doc.exists() else "# Benchmarks\n"
        start, end = "<!-- nlu:start -->", "<!-- nlu:end -->"
        block = f"{start}\n## NLU: embedded interpreter vs Rasa 3.6\n\n{body}\n{end}"
        if start in text and end in text:
            text = text[: text.index(start)] + block + text[text.index(end) + len(end) :]
        else:
            text = text.rstrip() + "\n\n" + block + "\n"
        doc.write_text(text, encoding="utf-8")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--no-rasa", action="store_true", help="skip the Rasa side")
    ap.add_argument("--reps", type=int, default=20, help="timing passes over the file (ours)")
    ap.add_argument("--rasa-reps", type=int, default=3, help="timing passes (Rasa)")
    ap.add_argument("--no-write", action="store_true", help="print only")
    args = ap.parse_args()
    our = ours(args.reps)
    theirs: dict[str, Any] | str = "skipped" if args.no_rasa else rasa(args.rasa_reps)
    body = table(our, theirs) + notes(our)
    print(body)
    if not isinstance(theirs, str):
        print("\nrasa confusions:", theirs["raw"].confusions[:10])
    print("ours confusions:", our["raw"].confusions[:10])
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"bench process peak RSS {peak:.0f} MB")
    if not args.no_write:
        write_doc(body)


if __name__ == "__main__":
    main()
