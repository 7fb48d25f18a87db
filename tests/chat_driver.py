"""Talking to the bot as a program does: `carebridge chat --jsonl` in a subprocess, or the same
calls in-process (CareBridge.handle + the CLI's delivery and JSON state) for large batches.

Imports bot.app, bot.cli, bot.config, bot.messages (tests only).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from bot.config import Config
from bot.messages import Inbound

ROOT = Path(__file__).resolve().parent.parent


def write_config(config: Config, folder: Path) -> Path:
    """The project's config.yaml with the given config's (temporary) database, for a
    subprocess; flows from this checkout."""
    data = yaml.safe_load((ROOT / "config.yaml").read_text(encoding="utf-8"))
    data["storage"] = {"url": config.storage.url}
    data.setdefault("flows", {})["dir"] = str(ROOT / "flows")
    path = folder / "config.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return path


class InProcess:
    """Many patients (one address each) on one app, answered as `chat --jsonl` answers."""

    def __init__(self, config: Config) -> None:
        from bot.app import CareBridge

        self.app = CareBridge(config)
        self.n = 0

    def say(self, address: str, text: str) -> dict[str, Any]:
        from bot.cli import _deliver, _jsonl_state

        self.n += 1
        now = self.app.clock()
        handled = self.app.handle(Inbound("sms", address, text, now, f"drv-{self.n}"))
        return _jsonl_state(self.app, handled, _deliver(self.app, handled.contact_id))

    def close(self) -> None:
        self.app.close()


class Subprocess:
    """One patient talking to `carebridge chat --jsonl` in its own process."""

    def __init__(self, config_path: Path, address: str) -> None:
        exe = Path(sys.executable).with_name("carebridge")
        self.proc = subprocess.Popen(
            [str(exe), "--config", str(config_path), "chat", "--jsonl", "--as", address],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            encoding="utf-8",
            cwd=ROOT,
        )

    def say(self, address: str, text: str) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(text.replace("\n", " ") + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            err = self.proc.stderr.read() if self.proc.stderr else ""
            raise RuntimeError(f"chat --jsonl ended: {err[-500:]}")
        out: dict[str, Any] = json.loads(line)
        return out

    def close(self) -> None:
        """End the conversation: close its input, wait for the process, close its pipes."""
        self.proc.communicate(timeout=60)
