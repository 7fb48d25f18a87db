"""Results export at scale: 1,000,000 readings (and their 250,000 conversations) on SQLite,
exported as a FHIR R4 Bundle and as CSV by `carebridge export` (the CLI, which writes as it
reads), each run in a fresh child process so its peak RSS (`ru_maxrss`) is its own.

The same exports of a tenth of the data show that memory does not grow with the export: the
peak RSS of 100,000 and of 1,000,000 readings should be about the same.

    .venv/bin/python bench/export.py [--readings 1000000]

Prints a table and rewrites the "export" section of docs/benchmarks.md. Target: peak RSS under
200 MB, and within 20 MB of the tenth-size export.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:] = [str(ROOT), *(p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench")]
sys.path.append(str(ROOT / "bench"))

from report import write_section  # noqa: E402

T0 = datetime(2026, 1, 1, tzinfo=UTC)
TARGET_MB, GROWTH_MB = 200.0, 20.0
PER_SESSION = 4  # systolic, diastolic, temperature, weight


def populate(db: Path, readings: int) -> dict[str, Any]:
    """Contacts (one per 25 conversations), hypertension check-ins with their answers and
    triage, and PER_SESSION readings each, written with INSERT ... SELECT."""
    import sqlite3

    from bot.store import SqliteStore

    started = time.perf_counter()
    SqliteStore(db).close()  # the schema
    sessions = readings // PER_SESSION
    contacts = max(1, sessions // 25)
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA journal_mode=WAL")
    ts = T0.isoformat(timespec="microseconds")
    series = "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?)"
    with conn:
        conn.execute(
            f"{series} INSERT INTO contacts (id, channel, address, language, opted_out,"
            " created_at, updated_at, person_id, region)"
            " SELECT i, 'sms', '+9198' || printf('%08d', i), 'en', 0, ?, ?, i,"
            " CASE i % 3 WHEN 0 THEN 'north' WHEN 1 THEN 'south' ELSE 'east' END FROM n",
            (contacts, ts, ts),
        )
        conn.execute(
            f"{series} INSERT INTO sessions (id, contact_id, flow, node, status, state,"
            " started_at, updated_at)"
            " SELECT i, 1 + i % ?, 'hypertension_checkin', 'done', 'completed',"
            ' \'{"flow":"hypertension_checkin","status":"completed","answers":'
            '{"systolic_bp":\' || (110 + i % 90) || \',"diastolic_bp":\' || (70 + i % 50) ||'
            " ',\"chest_pain\":false,\"severe_headache\":' || CASE WHEN i % 7 = 0 THEN 'true'"
            " ELSE 'false' END || '},\"triage\":\"' || CASE WHEN i % 10 = 0 THEN"
            " 'consultation' ELSE 'self_care' END || '\",\"red_flags\":[]}',"
            " strftime('%Y-%m-%dT%H:%M:%f000+00:00', '2026-01-01', '+' || (i % 300) || ' days'),"
            " strftime('%Y-%m-%dT%H:%M:%f000+00:00', '2026-01-01', '+' || (i % 300) || ' days')"
            " FROM n",
            (sessions, contacts),
        )
        for k, (concept, unit, base, spread) in enumerate(
            (
                ("systolic_bp", "mm[Hg]", 110, 90),
                ("diastolic_bp", "mm[Hg]", 70, 50),
                ("temperature_c", "Cel", 36, 3),
                ("weight_kg", "kg", 50, 60),
            )
        ):
            conn.execute(
                f"{series} INSERT INTO readings (id, contact_id, session_id, concept, value,"
                " unit, at) SELECT (i - 1) * 4 + ? + 1, 1 + i % ?, i, ?, ? + i % ?, ?,"
                " strftime('%Y-%m-%dT%H:%M:%f000+00:00', '2026-01-01', '+' || (i % 300) ||"
                " ' days') FROM n",
                (sessions, k, contacts, concept, base, spread, unit),
            )
    conn.close()
    return {
        "contacts": contacts,
        "sessions": sessions,
        "readings": sessions * PER_SESSION,
        "setup_s": time.perf_counter() - started,
        "db_mb": db.stat().st_size / 2**20,
    }


def run_export(db: Path, kind: str, out: Path) -> dict[str, Any]:
    """`carebridge export KIND` in a child process; its wall time and peak RSS."""
    import yaml

    data = yaml.safe_load((ROOT / "config.yaml").read_text(encoding="utf-8"))
    data["storage"] = {"url": f"sqlite:///{db}"}
    data.setdefault("flows", {})["dir"] = str(ROOT / "flows")
    cfg = db.with_suffix(".yaml")
    cfg.write_text(yaml.safe_dump(data), encoding="utf-8")
    args = ["--flow", "hypertension_checkin"] if kind == "csv" else []
    argv = ["--config", str(cfg), "export", kind, *args, "-o", str(out)]
    code = (
        "import json, resource, sys, time\n"
        "from bot.cli import main\n"
        "t = time.perf_counter()\n"
        f"main({argv!r}, standalone_mode=False)\n"
        "peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024\n"
        "print(json.dumps([time.perf_counter() - t, peak]))\n"
    )
    start_rss = subprocess.run(
        [
            sys.executable,
            "-c",
            "import resource, bot.cli, bot.io.cli, bot.io.results_export, bot.app\n"
            "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)",
        ],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    )
    seconds, peak = json.loads(done.stdout.strip().splitlines()[-1])
    size = out.stat().st_size / 2**20
    return {
        "seconds": seconds,
        "peak_mb": peak,
        "start_mb": float(start_rss.stdout.strip()),
        "out_mb": size,
        "stderr": done.stderr.strip().splitlines()[-1] if done.stderr.strip() else "",
    }


def check_bundle(path: Path) -> int:
    """Count the Observations in the Bundle without loading it (a streaming scan)."""
    needle, count, tail = '"resourceType":"Observation"', 0, ""
    with path.open(encoding="utf-8") as f:
        while chunk := f.read(1 << 20):
            text = tail + chunk
            count += text.count(needle)
            tail = text[-(len(needle) - 1) :]  # a match across two reads is counted once
    return count


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--readings", type=int, default=1_000_000)
    args = parser.parse_args()
    rows: list[tuple[str, ...]] = []
    results: dict[str, Any] = {}
    load = [os.getloadavg()[0]]
    with tempfile.TemporaryDirectory(prefix="cb-export-bench-") as tmp:
        for label, n in (("small", args.readings // 10), ("full", args.readings)):
            db = Path(tmp) / f"{label}.db"
            facts = populate(db, n)
            print(f"{label}: {json.dumps({k: round(v, 1) for k, v in facts.items()})}", flush=True)
            for kind in ("fhir", "csv"):
                out = Path(tmp) / f"{label}.{kind}"
                r = run_export(db, kind, out)
                if kind == "fhir":
                    # 4 readings per conversation: the 2 BP halves become one panel
                    r["observations"] = check_bundle(out)
                    r["rate"] = facts["readings"] / r["seconds"]
                    what = (
                        f"{facts['readings']:,} readings -> {r['observations']:,} Observations"
                        f" + {facts['sessions']:,} QuestionnaireResponses"
                    )
                else:
                    r["rate"] = facts["sessions"] / r["seconds"]
                    what = f"{facts['sessions']:,} conversations -> CSV rows"
                results[f"{label}-{kind}"] = r
                rows.append(
                    (
                        f"{kind} ({label})",
                        what,
                        f"{r['seconds']:.1f}",
                        f"{r['rate']:,.0f}",
                        f"{r['peak_mb']:.0f} (at start {r['start_mb']:.0f})",
                        f"{r['out_mb']:.0f}",
                    )
                )
                print(" | ".join(rows[-1]), flush=True)
                out.unlink()
            db.unlink()
            load.append(os.getloadavg()[0])
    full, small = results["full-fhir"], results["small-fhir"]
    met = full["peak_mb"] < TARGET_MB and full["peak_mb"] - small["peak_mb"] < GROWTH_MB
    header = (
        "| export | what | time s | rows/s | peak RSS MB | output MB |\n|---|---|---|---|---|---|"
    )
    table = "\n".join("| " + " | ".join(r) + " |" for r in rows)
    body = (
        f"`carebridge export fhir` and `carebridge export csv --flow hypertension_checkin`, each in"
        f" a fresh process writing to a file, over {args.readings:,} readings (4 per"
        " conversation: systolic and diastolic, which become one blood-pressure panel,"
        " temperature and weight) and their conversations on SQLite; then over a tenth of"
        " that. rows/s: readings per second for FHIR (the conversations are written too),"
        " conversations per second for CSV. `at start`: the process after importing the"
        " CLI, before reading anything. Load average (1 min) during the run: "
        f"{min(load):.1f} to {max(load):.1f} on {os.cpu_count()} CPUs (times are longer on a"
        " busy machine; memory is not).\n\n"
        f"{header}\n{table}\n\n"
        f"Memory does not grow with the export: peak RSS at {args.readings:,} readings is"
        f" {full['peak_mb']:.0f} MB against {small['peak_mb']:.0f} MB at a tenth."
        f" Targets: peak RSS under {TARGET_MB:.0f} MB and within {GROWTH_MB:.0f} MB of the"
        f" tenth-size export: **{'met' if met else 'NOT met'}**."
    )
    write_section("export", "Results export (`bench/export.py`)", body)
    print(body)
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
