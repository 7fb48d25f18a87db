"""Documentation stays true: every CLI command is documented, every doc link resolves."""

from __future__ import annotations

import re
from pathlib import Path

import click

from bot.cli import main

ROOT = Path(__file__).resolve().parent.parent


def commands(group: click.Group, prefix: str = "carebridge") -> list[str]:
    out = []
    ctx = click.Context(group)
    for name in group.list_commands(ctx):  # the lazily loaded groups too
        cmd = group.get_command(ctx, name)
        assert cmd is not None, name
        full = f"{prefix} {name}"
        if isinstance(cmd, click.Group):
            out += commands(cmd, full)
        else:
            out.append(full)
    return out


def test_every_command_is_documented_in_docs_cli() -> None:
    doc = (ROOT / "docs" / "cli.md").read_text(encoding="utf-8")
    flat = re.sub(r"\s+", " ", doc)
    missing = []
    for cmd in commands(main):
        parts = cmd.split()
        if cmd in flat:
            continue
        # "carebridge flows validate" may appear as a heading "carebridge flows" + a line "validate"
        if f"{' '.join(parts[:-1])}" in flat and re.search(rf"\b{parts[-1]}\b", flat):
            continue
        missing.append(cmd)
    assert not missing, f"undocumented commands: {missing}"


def test_readme_links_point_at_files_that_exist() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for target in re.findall(r"\]\(([^)#]+)\)", readme):
        if target.startswith("http"):
            continue
        assert (ROOT / target).exists(), target


def test_readme_quick_start_is_exactly_make_run_and_make_test() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    block = readme.split("## Quick start", 1)[1].split("```sh", 1)[1].split("```", 1)[0]
    assert [line.split("#")[0].strip() for line in block.strip().splitlines()] == [
        "make run",
        "make test",
    ]


FENCE = re.compile(r"^```[^\n]*\n(.*?)^```", re.S | re.M)
INLINE = re.compile(r"`([^`]+)`")
# A repo path as the docs write it: bot/store/io.py, tests/test_docs.py, scripts/screenshots.py;
# globs and placeholders (tests/test_*.py, bot/{x}.py) are not names of one file.
REPO_PATH = re.compile(
    r"(?<![\w./-])((?:bot|channels|nlu|bench|tests)/[\w./-]*\.py|scripts/[\w./-]*[\w])(?![\w*{}<>])"
)


def named_paths(text: str) -> set[str]:
    """The repo paths a Markdown text names in code: inline `spans` and fenced blocks."""
    code = FENCE.findall(text)
    code += INLINE.findall(FENCE.sub("", text))
    return {path for span in code for path in REPO_PATH.findall(span)}


def test_named_paths_finds_paths_in_code_only() -> None:
    text = "`bot/io/cli.py`, bot/not_code.py\n```sh\npython bench/run.py\n```\n`tests/test_*.py`"
    assert named_paths(text) == {"bot/io/cli.py", "bench/run.py"}


def test_the_files_the_docs_name_exist() -> None:
    missing = []
    for doc in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for path in sorted(named_paths(doc.read_text(encoding="utf-8"))):
            if not (ROOT / path).exists():
                missing.append(f"{doc.relative_to(ROOT)}: {path}")
    assert not missing, "the docs name files that do not exist:\n" + "\n".join(missing)
