"""What understanding a message costs in process, with no HTTP at all: full COVID-19 screenings
handled by `CareBridge.handle_group` (groups of 8, as `serve` runs them) on a SQLite file, the
replies queued in the outbox and never sent. CPU per message (time.process_time) of the whole
pipeline: store, NLU, engine, rendering.

    .venv/bin/python bench/handle.py [--patients 64] [--runs 3]

It bounds the webhook bench's messages/s from above: one process can handle at most
1 s / (this CPU + the bare handler's CPU per request) messages a second, however it sends.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[0] = str(ROOT)  # not bench/, whose nlu.py would hide the nlu package
sys.path.insert(0, str(ROOT / "tests"))

from patients import COVID_SCREENING  # noqa: E402

from bot.app import CareBridge  # noqa: E402
from bot.config import load_config  # noqa: E402
from bot.messages import Inbound  # noqa: E402

GROUP = 8


def one_run(patients: int) -> tuple[float, int]:
    """CPU ms per message and the message count."""
    base = load_config(ROOT / "config.yaml", env={})
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{tmp}/handle.db"
        config = base.model_copy(update={"storage": base.storage.model_copy(update={"url": url})})
        bridge = CareBridge(config)
        bridge.interpreter.warm_all(("en",))  # type: ignore[attr-defined]
        waves = [
            [
                Inbound("sms", f"+1555{n:07d}", text, datetime.now(UTC), f"SM{n:08d}{i:04d}")
                for n in range(patients)
            ]
            for i, text in enumerate(COVID_SCREENING)
        ]
        start = time.process_time()
        count = 0
        for wave in waves:
            for k in range(0, len(wave), GROUP):
                results = bridge.handle_group(wave[k : k + GROUP])
                bad = [r for r in results if isinstance(r, Exception)]
                if bad:
                    raise bad[0]
                count += len(results)
        whole = (time.process_time() - start) * 1000 / count
        bridge.close()
    return whole, count


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--patients", type=int, default=64)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    runs = [one_run(args.patients) for _ in range(args.runs)]
    whole = statistics.median(r[0] for r in runs)
    print(
        f"{runs[0][1]} messages ({args.patients} full screenings) per run, {args.runs} runs,"
        f" groups of {GROUP}: CPU per message, median: whole pipeline {whole:.2f} ms"
        f" (runs: {', '.join(f'{r[0]:.2f}' for r in runs)});"
        f" one process's ceiling without any HTTP: {1000 / whole:.0f} messages/s"
    )


if __name__ == "__main__":
    main()
