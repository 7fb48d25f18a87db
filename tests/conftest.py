"""Shared fixtures: the project's flow library and a config on a temporary database."""

from __future__ import annotations

import os
from collections.abc import Iterator
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
def tmp_config(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Config]:
    """The project config with the database in a temporary folder (`CB_TEST_STORE=postgresql`:
    in a fresh database of the test PostgreSQL cluster instead, tests/pg.py)."""
    base = load_config(os.environ.get("CB_TEST_CONFIG", ROOT / "config.yaml"), env={})
    url = f"sqlite:///{tmp_path / 'carebridge.db'}"
    cluster = None
    if os.environ.get("CB_TEST_STORE") == "postgresql":
        cluster = request.getfixturevalue("pg_cluster")
        name = cluster.fresh_database()
        url = cluster.url(name)
    yield base.model_copy(update={"storage": base.storage.model_copy(update={"url": url})})
    if cluster is not None:
        cluster.drop(name)


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
