"""pytest plugin: a throw-away PostgreSQL cluster for the test session, and store fixtures
parametrized over both engines (SQLite and PostgreSQL).

The cluster is Debian's `postgresql` (scripts/install-system-deps.sh installs it), started
with initdb + pg_ctl in a temporary folder on a free loopback port, as the unprivileged
`postgres` user when the tests run as root (PostgreSQL refuses to run as root), and stopped
at the end of the session. Migrations run once into a template database; every test gets a
fresh copy (CREATE DATABASE ... TEMPLATE), dropped afterwards.
Every test that touches the store runs once per engine (the `engine` fixture, which
`tmp_config` and `store_url` depend on); `CB_TEST_ENGINES=sqlite` runs them on SQLite only.
"""

from __future__ import annotations

import functools
import itertools
import os
import pwd
import shutil
import socket
import sqlite3
import subprocess
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, closing, contextmanager
from pathlib import Path
from typing import Any

import psycopg
import pytest

from bot.config import Config
from bot.store import SqliteStore, SqlStore, open_store
from bot.store.base import Store
from bot.store.sql import POSTGRESQL

ENGINES = tuple(os.environ.get("CB_TEST_ENGINES", "sqlite,postgresql").split(","))
_TEMPLATE = "cb_template"
# For a test of SQLite's own behaviour (its file, or an upgrade of an old SQLite database).
SQLITE_ONLY = pytest.mark.parametrize("engine", ["sqlite"], indirect=True)


def _pg_bin() -> Path:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: p.parts)
    if not found:
        pytest.fail(
            "PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/initdb): run "
            "scripts/install-system-deps.sh, or set CB_TEST_ENGINES=sqlite"
        )
    return found[-1].parent


class Cluster:
    """One throw-away PostgreSQL cluster on 127.0.0.1."""

    def __init__(self) -> None:
        self.bin = _pg_bin()
        self.root = Path(tempfile.mkdtemp(prefix="carebridge-pg-"))
        self.data = self.root / "data"
        self._as: list[str] = []
        if os.geteuid() == 0:  # PostgreSQL refuses root: run it as the postgres user
            try:
                pwd.getpwnam("postgres")
            except KeyError:
                pytest.fail(
                    "no `postgres` user to run the test cluster as: run "
                    "scripts/install-system-deps.sh (Debian's postgresql creates it)"
                )
            shutil.chown(self.root, "postgres", "postgres")
            self._as = ["setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups"]
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self._names = itertools.count(1)

    def _run(self, *args: str) -> None:
        subprocess.run(
            [*self._as, *args], check=True, capture_output=True, cwd=self.root, timeout=120
        )

    def start(self) -> None:
        self._run(
            str(self.bin / "initdb"),
            "-D",
            str(self.data),
            "-U",
            "carebridge",
            "--auth=trust",
            "--locale=C",
            "--encoding=UTF8",
            "--no-sync",
        )
        options = (
            f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off"
            " -c synchronous_commit=off -c full_page_writes=off -c max_connections=300"
        )
        self._run(
            str(self.bin / "pg_ctl"),
            "-D",
            str(self.data),
            "-o",
            options,
            "-l",
            str(self.root / "log"),
            "-w",
            "start",
        )

    def stop(self) -> None:
        try:
            self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "stop")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    def url(self, database: str) -> str:
        return f"postgresql://carebridge@127.0.0.1:{self.port}/{database}"

    def admin(self, sql: str) -> None:
        with psycopg.connect(self.url("postgres"), autocommit=True) as conn:
            conn.execute(sql)  # type: ignore[arg-type]

    def fresh_database(self) -> str:
        """A new database with every migration applied (a copy of the template); its URL."""
        name = f"t{os.getpid()}_{next(self._names)}"
        self.admin(f'CREATE DATABASE "{name}" TEMPLATE "{_TEMPLATE}"')
        return name

    def drop(self, name: str) -> None:
        self.admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[Cluster]:
    """A running cluster with a migrated template database."""
    cluster = Cluster()
    cluster.start()
    try:
        cluster.admin(f'CREATE DATABASE "{_TEMPLATE}"')
        open_store(cluster.url(_TEMPLATE)).close()
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="module", params=ENGINES)
def engine(request: pytest.FixtureRequest) -> str:
    """The store engine a test runs on: every test that touches the store (through `tmp_config`,
    `store_url`, `new_store_url` or `any_store`) runs once per engine in ENGINES. A test of
    one engine's own behaviour (SQLite's file, WAL or a PostgreSQL pool) pins it with
    `SQLITE_ONLY` / `@pytest.mark.parametrize("engine", [...], indirect=True)`."""
    return str(request.param)


@pytest.fixture(scope="module")
def module_store_url(
    engine: str, request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """A store shared by the tests of one module (for module-scoped fixtures such as a served
    app), on the module's engine: its tests run on SQLite, then on PostgreSQL."""
    with ExitStack() as cleanup:
        yield _new_store(engine, request, tmp_path_factory.mktemp("store"), cleanup)


@pytest.fixture
def store_url(new_store_url: Callable[[], str]) -> str:
    """A `storage.url` for an empty, migrated store on the test's engine."""
    return new_store_url()


@pytest.fixture
def new_store_url(
    engine: str, request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[Callable[[], str]]:
    """Makes `storage.url`s of empty, migrated stores on the test's engine, as many as a test
    needs (one per process of a multi-site test); PostgreSQL databases are dropped after."""
    with ExitStack() as cleanup:
        yield functools.partial(_new_store, engine, request, tmp_path, cleanup)


def _new_store(
    engine: str, request: pytest.FixtureRequest, folder: Path, cleanup: ExitStack
) -> str:
    if engine == "sqlite":
        return f"sqlite:///{folder / f'store{next(_files)}.db'}"
    cluster: Cluster = request.getfixturevalue("pg_cluster")
    name = cluster.fresh_database()
    cleanup.callback(cluster.drop, name)
    return cluster.url(name)


_files = itertools.count()


@pytest.fixture
def any_store(store_url: str) -> Iterator[Store]:
    """An empty store on each engine in turn."""
    store = open_store(store_url)
    yield store
    store.close()


def dump_all(store: Store) -> str:
    """Every row of every table as text (to check what is never stored)."""
    if isinstance(store, SqliteStore):
        return "\n".join(store.db.iterdump())
    assert isinstance(store, SqlStore)
    tables = store._rows(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()"
    )
    return "\n".join(
        repr(tuple(row)) for (name,) in tables for row in store._rows(f'SELECT * FROM "{name}"')
    )


def db_rows(where: Config | str, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
    """What a query finds in the database itself, bypassing the store: the way a test checks
    what was written (or never written), on either engine. `sql` uses `?` placeholders."""
    url = where.storage_url() if isinstance(where, Config) else where
    if url.startswith("sqlite:///"):
        with closing(sqlite3.connect(url.removeprefix("sqlite:///"), timeout=10)) as conn:
            return [tuple(r) for r in conn.execute(sql, params)]
    with psycopg.connect(url, autocommit=True) as pg:
        return [tuple(r) for r in pg.execute(POSTGRESQL.sql(sql), params)]  # type: ignore[arg-type]


def with_store(config: Config, url: str) -> Config:
    """`config` with its `storage.url` set to `url`."""
    return config.model_copy(update={"storage": config.storage.model_copy(update={"url": url})})


@contextmanager
def write_locked(url: str) -> Iterator[None]:
    """Another client holds what every write of the store needs until the block ends: SQLite's
    write lock (an open exclusive transaction), or on PostgreSQL the migration ledger, which
    the readiness probe writes (an open transaction that locked the table)."""
    if url.startswith("sqlite:///"):
        with closing(sqlite3.connect(url.removeprefix("sqlite:///"), isolation_level=None)) as db:
            db.execute("BEGIN EXCLUSIVE")
            try:
                yield
            finally:
                db.execute("ROLLBACK")
        return
    with psycopg.connect(url) as pg:
        pg.execute("LOCK TABLE schema_migrations IN ACCESS EXCLUSIVE MODE")
        try:
            yield
        finally:
            pg.rollback()
