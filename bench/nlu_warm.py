"""Warm-up benchmark: seconds to load and warm the embedded NLU for every configured
language in a fresh process (lexicons, classifiers, composition rules, time triggers and
the red-flag second opinion; models from the disk cache), and the first message after it.

Usage: .venv/bin/python bench/nlu_warm.py [--runs N]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CHILD = """
import time
t0 = time.perf_counter()
from nlu.interpreter import Interpreter
it = Interpreter()
took = it.warm_all()
t1 = time.perf_counter()
it.interpret("my chest hurts and i am sweating", None, "en")
t2 = time.perf_counter()
print(f"{took:.3f} {t1 - t0:.3f} {t2 - t1:.4f}")
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    # one run first so the model caches exist (a fresh checkout trains once)
    subprocess.run([sys.executable, "-c", CHILD], cwd=ROOT, check=True, capture_output=True)
    warm, total, first = [], [], []
    for _ in range(args.runs):
        out = subprocess.run(
            [sys.executable, "-c", CHILD], cwd=ROOT, check=True, capture_output=True, text=True
        ).stdout.split()
        warm.append(float(out[0]))
        total.append(float(out[1]))
        first.append(float(out[2]))
    print(f"warm_all (all languages): median {statistics.median(warm):.2f} s")
    print(f"import + warm_all:        median {statistics.median(total):.2f} s")
    print(f"first message after warm: median {statistics.median(first) * 1000:.1f} ms")


if __name__ == "__main__":
    main()
