"""`carebridge --help` and `carebridge nlu parse` start without the heavy imports: the command
groups load lazily, and their one-line help in `carebridge --help` is the real one."""

from __future__ import annotations

import json
import subprocess
import sys

import click
import pytest
from click.testing import CliRunner

from bot.cli import LAZY_GROUPS, main

HEAVY = ("numpy", "sqlite_utils", "sklearn", "pydantic", "starlette", "telegram", "twilio")


def imported_by(code: str) -> set[str]:
    """The top-level modules a fresh interpreter has imported after running `code`."""
    probe = f"{code}\nimport json, sys; print(json.dumps(sorted(sys.modules)))"
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout
    return {name.split(".")[0] for name in json.loads(out.splitlines()[-1])}


def test_help_imports_none_of_the_heavy_libraries() -> None:
    code = (
        "from click.testing import CliRunner\nfrom bot.cli import main\n"
        "r = CliRunner().invoke(main, ['--help'])\nassert r.exit_code == 0, r.output\n"
        "assert 'patients' in r.output and 'broadcast' in r.output\n"
    )
    assert not imported_by(code) & set(HEAVY)


def test_nlu_parse_reads_no_configuration_and_needs_no_store_or_web() -> None:
    code = (
        "from click.testing import CliRunner\nfrom bot.cli import main\n"
        "r = CliRunner().invoke(main, ['nlu', 'parse', 'I have fever', '--json'])\n"
        "assert r.exit_code == 0, r.output\nassert 'intent' in r.output\n"
    )
    assert not imported_by(code) & {"sqlite_utils", "pydantic", "starlette", "telegram", "twilio"}


@pytest.mark.parametrize("name", sorted(LAZY_GROUPS))
def test_the_help_of_a_lazy_group_is_its_own(name: str) -> None:
    ctx = click.Context(main)
    command = main.get_command(ctx, name)
    assert isinstance(command, click.Group)
    assert command.help is not None
    assert LAZY_GROUPS[name][1] == command.help.strip().splitlines()[0]


def test_lazy_groups_run_like_any_other_command() -> None:
    result = CliRunner().invoke(main, ["users", "--help"])
    assert result.exit_code == 0 and "Console users" in result.output
    result = CliRunner().invoke(main, ["nlu", "parse", "no fever", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["text"] == "no fever"
