"""Every clinician vignette in flows/tests gives its expected level, and the same level in
every configured language (`carebridge triage --lang L`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from bot.flow import Library
from bot.simulate import simulate

ROOT = Path(__file__).resolve().parent.parent
CASES = [
    (path.stem, case)
    for path in sorted((ROOT / "flows" / "tests").glob("*.yaml"))
    for case in yaml.safe_load(path.read_text(encoding="utf-8"))["cases"]
]


@pytest.mark.parametrize("flow_file", sorted({stem for stem, _ in CASES}))
def test_vignettes_give_the_same_level_in_every_language(lib: Library, flow_file: str) -> None:
    doc: dict[str, Any] = yaml.safe_load(
        (ROOT / "flows" / "tests" / f"{flow_file}.yaml").read_text(encoding="utf-8")
    )
    flow = doc["flow"]
    mismatches = []
    for case in doc["cases"]:
        levels = {lang: simulate(lib, flow, case["facts"], lang).triage for lang in lib.languages}
        if set(levels.values()) != {case["expect"]}:
            mismatches.append((case["name"], case["expect"], levels))
    assert not mismatches
    assert len(lib.languages) == 3
