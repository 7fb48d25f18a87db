"""`make run` installs only what running needs (the `dependencies` of pyproject.toml), the
test tools come with `make test`, and nothing in bot, channels or nlu needs a test tool."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def dry_run(target: str, tmp_path: Path) -> list[str]:
    """What `make TARGET` would run on a fresh clone (no venv yet)."""
    venv = tmp_path / "fresh-venv"
    out = subprocess.run(
        ["make", "-n", "-C", str(ROOT), target, f"VENV={venv}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return [line for line in out.splitlines() if "pip install" in line]


def test_make_run_installs_the_runtime_dependencies_only(tmp_path: Path) -> None:
    installs = dry_run("run", tmp_path)
    assert installs and installs[-1].endswith("pip install --quiet -e .")
    assert not any("dev" in line for line in installs)


def test_make_test_adds_the_test_tools(tmp_path: Path) -> None:
    assert any(line.endswith("-e '.[dev]'") for line in dry_run("test", tmp_path))


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~\[; ]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def test_the_running_code_imports_only_runtime_dependencies() -> None:
    runtime = {_name(r) for r in PYPROJECT["project"]["dependencies"]}
    owners = {m: [d.lower() for d in ds] for m, ds in packages_distributions().items()}
    ours = {"bot", "channels", "nlu"}
    outside: dict[str, str] = {}
    for package in ours:
        for path in (ROOT / package).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                names: list[str] = []
                if isinstance(node, ast.Import):
                    names = [a.name for a in node.names]
                elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                    names = [node.module]
                for name in names:
                    top = name.split(".")[0]
                    if top in ours or top in sys.stdlib_module_names or top == "__future__":
                        continue
                    dists = owners.get(top, [top])
                    if not any(d.replace("_", "-") in runtime for d in dists):
                        outside[top] = str(path.relative_to(ROOT))
    assert outside == {}
