"""Write one benchmark's section of docs/benchmarks.md, keeping the other sections."""

from __future__ import annotations

import platform
import re
from datetime import UTC, datetime
from pathlib import Path

DOC = Path(__file__).resolve().parent.parent / "docs" / "benchmarks.md"
HEADER = (
    "# Benchmarks\n\n"
    "Written by `make bench` (each script rewrites its own section). Medians and ratios are\n"
    "from one run on one machine; these machines are noisy, so compare within a section.\n"
)


def write_section(key: str, title: str, body: str) -> None:
    """Replace (or add) the section marked with `key`."""
    text = DOC.read_text(encoding="utf-8") if DOC.exists() else HEADER
    when = f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC"
    stamp = f"{when}, {platform.machine()}, Python {platform.python_version()}"
    block = f"<!-- {key}:start -->\n## {title}\n\n_{stamp}_\n\n{body}\n<!-- {key}:end -->"
    pattern = re.compile(rf"<!-- {key}:start -->.*?<!-- {key}:end -->", re.S)
    text = (
        pattern.sub(lambda _: block, text)
        if pattern.search(text)
        else text.rstrip() + "\n\n" + block + "\n"
    )
    DOC.write_text(text, encoding="utf-8")
