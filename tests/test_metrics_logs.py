"""JSON logs on request (docs/operations.md): `--log-format json` or `logging.json: true` makes
every log line one JSON object, and still no line carries message text or a phone number."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PHONE = "+919812345678"
LINES = ("hi", "1", "my lips are blue and I cannot breathe, call 9812345678")


@pytest.mark.parametrize("how", ["flag", "config"])
def test_json_log_lines_parse_and_carry_no_text_or_numbers(
    tmp_path: Path, store_url: str, how: str
) -> None:
    config = tmp_path / "config.yaml"
    body = f"storage:\n  url: {store_url}\n"
    if how == "config":
        body += "logging:\n  json: true\n"
    config.write_text(body, encoding="utf-8")
    script = tmp_path / "patient.txt"
    script.write_text("\n".join(LINES) + "\n", encoding="utf-8")
    flag = ["--log-format", "json"] if how == "flag" else []
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "bot.cli",
            "--config",
            str(config),
            *flag,
            "-v",
            "chat",
            "--as",
            PHONE,
            "--script",
            str(script),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    lines = run.stderr.splitlines()
    records = [json.loads(line) for line in lines]  # every line is one JSON object
    assert {"time", "level", "logger", "message"} <= set(records[0])
    messages = [r["message"] for r in records]
    assert any("escalation opened contact=" in m for m in messages)
    assert any(r["level"] == "WARNING" for r in records)
    for line in lines:
        assert "9812345678" not in line and "lips" not in line and "breathe" not in line
