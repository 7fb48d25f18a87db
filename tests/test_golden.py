"""Golden transcripts: whole conversations through the app, rendered per channel.

Rewrite them after an intended change with `pytest tests/test_golden.py --update-golden`
and review the diff like any other change.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml

from bot.app import CareBridge
from bot.cli import _deliver, render_text
from bot.config import Config
from bot.messages import Inbound

GOLDEN = Path(__file__).resolve().parent / "golden"
SCRIPTS = sorted(GOLDEN.glob("*.yaml"))


def run_script(config: Config, script: Path) -> str:
    spec = yaml.safe_load(script.read_text(encoding="utf-8"))
    channel = spec["channel"]
    ticks = iter(range(10_000))

    def clock() -> datetime:
        return datetime(2020, 4, 1, 9, 0, tzinfo=UTC) + timedelta(seconds=next(ticks))

    app = CareBridge(config, clock=clock)
    out: list[str] = []
    try:
        for n, line in enumerate(spec["lines"]):
            out.append(f"> {line}")
            handled = app.handle(Inbound(channel, "+15550100", line, clock(), f"g{n}"))
            for msg in _deliver(app, handled.contact_id):
                out.append(render_text(msg, channel))
            out.append("")
    finally:
        app.close()
    return "\n".join(out)


@pytest.mark.parametrize("script", SCRIPTS, ids=[s.stem for s in SCRIPTS])
def test_golden_transcript(script: Path, tmp_config: Config, update_golden: bool) -> None:
    got = run_script(tmp_config, script)
    expected_file = script.with_suffix(".txt")
    if update_golden or not expected_file.exists():
        expected_file.write_text(got, encoding="utf-8")
        if not update_golden:
            pytest.fail(f"{expected_file.name} was missing and has been written: review it")
    assert got == expected_file.read_text(encoding="utf-8")
