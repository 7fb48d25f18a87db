"""House rules for the nlu package: a leaf, module docstrings, no text in logs."""

from __future__ import annotations

import ast
from pathlib import Path

import nlu

PACKAGE = Path(nlu.__file__).resolve().parent
MODULES = sorted(PACKAGE.glob("*.py"))


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module.split(".")[0])
    return out


def test_nlu_is_a_leaf() -> None:
    for path in MODULES:
        assert not _imports(path) & {"bot", "channels"}, path.name


def test_every_module_says_what_it_is_for_and_may_import() -> None:
    for path in MODULES:
        doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))) or ""
        assert len(doc.splitlines()) >= 2 and "import" in doc.lower(), path.name


def test_cli_module_imports_only_nlu_and_click() -> None:
    cli = PACKAGE.parent / "bot" / "cli_nlu.py"
    allowed = {"nlu", "click", "__future__", "json", "sys", "pathlib"}
    assert _imports(cli) <= allowed


def test_logging_calls_never_pass_message_text() -> None:
    for path in MODULES:
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and isinstance(node.func.value, ast.Name)
                and node.func.value.id == "log"
            ):
                names = {
                    n.id for arg in node.args for n in ast.walk(arg) if isinstance(n, ast.Name)
                }
                assert not names & {"text", "folded", "message"}, f"{path.name}:{node.lineno}"
