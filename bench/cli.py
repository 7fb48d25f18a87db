"""CLI start-up: wall-clock medians of `carebridge --help` and `carebridge nlu parse` against
the bare interpreter, with hyperfine when it is installed (Debian package), else a simple
loop. Prints the table and rewrites its section of docs/benchmarks.md.
"""

from __future__ import annotations

import json
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from report import write_section

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
COMMANDS = {
    "python -c pass": f"{shlex.quote(sys.executable)} -c pass",
    "carebridge --help": f"{shlex.quote(str(BIN / 'carebridge'))} --help",
    "carebridge nlu parse": (
        f"{shlex.quote(str(BIN / 'carebridge'))} nlu parse 'fever and cough since 3 days' --json"
    ),
}
RUNS = 20


def with_hyperfine() -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "runs.json"
        args = ["hyperfine", "--warmup", "3", "--runs", str(RUNS), "-N", "--export-json", str(out)]
        for name, command in COMMANDS.items():
            args += ["-n", name, command]
        subprocess.run(args, check=True, cwd=ROOT, capture_output=True)
        results = json.loads(out.read_text(encoding="utf-8"))["results"]
    return {r["command"]: float(r["median"]) for r in results}


def with_a_loop() -> dict[str, float]:
    medians = {}
    for name, command in COMMANDS.items():
        times = []
        for i in range(RUNS + 3):
            start = time.perf_counter()
            subprocess.run(shlex.split(command), check=True, cwd=ROOT, capture_output=True)
            if i >= 3:  # warm-up runs are not counted
                times.append(time.perf_counter() - start)
        medians[name] = statistics.median(times)
    return medians


def main() -> int:
    tool = "hyperfine" if shutil.which("hyperfine") else "a subprocess loop"
    medians = with_hyperfine() if tool == "hyperfine" else with_a_loop()
    base = medians["python -c pass"]
    lines = ["| command | median | x the interpreter |", "|---|---:|---:|"]
    for name, median in medians.items():
        lines.append(f"| `{name}` | {median * 1000:.0f} ms | {median / base:.1f} |")
    table = "\n".join(lines)
    print(table)
    body = (
        f"{table}\n\nMeasured with {tool} ({RUNS} runs after 3 warm-ups, `bench/cli.py`). "
        "The command groups load lazily (`bot/cli.py`), so `--help` imports neither numpy nor "
        "sqlite-utils; `nlu parse` skips the configuration and spends its time in the NLU's "
        "own warm-up (lexicon patterns, the cached classifier)."
    )
    write_section("cli", "CLI start-up (`bench/cli.py`)", body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
