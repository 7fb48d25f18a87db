"""DESIGN.md's seams: who may import whom, and no other distribution claims our names."""

from __future__ import annotations

import ast
from importlib import metadata
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("bot", "channels", "nlu")
STDLIB_ONLY = ("bot/messages.py", "bot/errors.py")
# The composition roots, and the simulators' driver of the live channels (voice, USSD) that
# only web.py and cli.py use: none of the core (engine, store, services) sees a channel.
MAY_IMPORT_CHANNELS = {"bot/app.py", "bot/web.py", "bot/cli.py", "bot/live_sim.py"}


def imports(path: Path) -> set[str]:
    """Top-level module names and dotted targets a file imports."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def files(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


def test_nlu_is_a_leaf() -> None:
    for path in files("nlu"):
        bad = {m for m in imports(path) if m.split(".")[0] in ("bot", "channels")}
        assert not bad, f"{path.relative_to(ROOT)} imports {bad}"


def test_channels_import_only_messages_and_errors_of_bot() -> None:
    for path in files("channels"):
        bad = {
            m
            for m in imports(path)
            if m.split(".")[0] == "bot" and m not in ("bot.messages", "bot.errors")
        }
        assert not bad, f"{path.relative_to(ROOT)} imports {bad}"


def test_only_the_composition_roots_import_channels() -> None:
    for path in files("bot"):
        rel = str(path.relative_to(ROOT))
        if rel in MAY_IMPORT_CHANNELS:
            continue
        bad = {m for m in imports(path) if m.split(".")[0] == "channels"}
        assert not bad, f"{rel} imports {bad}"


@pytest.mark.parametrize("rel", STDLIB_ONLY)
def test_core_message_and_error_modules_use_only_the_standard_library(rel: str) -> None:
    import sys

    for name in imports(ROOT / rel):
        top = name.split(".")[0]
        assert top in sys.stdlib_module_names or top == "__future__", f"{rel} imports {name}"


def test_engine_does_no_io() -> None:
    forbidden = {"sqlite3", "sqlite_utils", "httpx", "socket", "random", "time", "os", "bot.store"}
    found = imports(ROOT / "bot" / "engine.py")
    assert not {m for m in found if m in forbidden or m.split(".")[0] in forbidden}


def test_no_other_distribution_claims_our_package_names() -> None:
    owners = metadata.packages_distributions()
    for name in PACKAGES:
        assert set(owners.get(name, ["carebridge"])) == {"carebridge"}, (name, owners.get(name))


def test_flows_and_data_hold_no_python() -> None:
    for folder in ("flows", "data"):
        assert not list((ROOT / folder).rglob("*.py")), folder
