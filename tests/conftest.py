"""Shared fixtures: the project's flow library and a config on a temporary database."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from bot.config import Config, load_config
from bot.flow import Library

ROOT = Path(__file__).resolve().parent.parent
pytest_plugins = ["pg"]  # tests/pg.py: the throw-away PostgreSQL cluster, engine fixtures


@pytest.fixture(scope="session")
def config() -> Config:
    return load_config(os.environ.get("CB_TEST_CONFIG", ROOT / "config.yaml"), env={})


@pytest.fixture(scope="session")
def lib(config: Config) -> Library:
    from bot.app import load_flows

    return load_flows(config)


@pytest.fixture
def tmp_config(store_url: str) -> Config:
    """The project config with an empty, migrated database of its own, on each store engine
    in turn (SQLite in a temporary folder, then a fresh database of the test PostgreSQL
    cluster: tests/pg.py)."""
    base = load_config(os.environ.get("CB_TEST_CONFIG", ROOT / "config.yaml"), env={})
    return base.model_copy(update={"storage": base.storage.model_copy(update={"url": store_url})})


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--update-golden",
        action="store_true",
        default=False,
        help="Rewrite golden transcripts in tests/golden/ from the current behaviour.",
    )


@pytest.fixture
def update_golden(request: pytest.FixtureRequest) -> bool:
    return bool(request.config.getoption("--update-golden"))
