"""The PostgreSQL engine's own behaviour: the schema from the one migration source matches
SQLite's, and processes starting together migrate once (the advisory lock)."""

from __future__ import annotations

import inspect
import sqlite3
import threading
from contextlib import closing
from pathlib import Path

import psycopg
from pg import Cluster

from bot.store import SqliteStore, open_store
from bot.store.base import Store


def columns_sqlite(path: Path) -> dict[str, set[str]]:
    with closing(sqlite3.connect(path)) as conn:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        return {t: {r[1] for r in conn.execute(f'PRAGMA table_info("{t}")')} for t in tables}


def columns_postgres(url: str) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    with psycopg.connect(url) as conn:
        for table, column in conn.execute(
            "SELECT table_name, column_name FROM information_schema.columns"
            " WHERE table_schema = current_schema()"
        ):
            found.setdefault(table, set()).add(column)
    return found


def test_both_engines_get_the_same_tables_and_columns(pg_cluster: Cluster, tmp_path: Path) -> None:
    SqliteStore(tmp_path / "s.db").close()
    name = pg_cluster.fresh_database()
    try:
        assert columns_postgres(pg_cluster.url(name)) == columns_sqlite(tmp_path / "s.db")
    finally:
        pg_cluster.drop(name)


def test_processes_opening_a_new_database_together_migrate_it_once(pg_cluster: Cluster) -> None:
    name = "fresh_concurrent"
    pg_cluster.admin(f'CREATE DATABASE "{name}"')  # empty: no migration applied yet
    url = pg_cluster.url(name)
    start = threading.Barrier(3)
    opened: list[Store] = []
    errors: list[BaseException] = []

    def open_one() -> None:
        try:
            start.wait(10)
            opened.append(open_store(url))
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=open_one) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    try:
        assert errors == [] and len(opened) == 3
        with psycopg.connect(url) as conn:
            versions = [r[0] for r in conn.execute("SELECT version FROM schema_migrations")]
        assert sorted(versions) == sorted(set(versions)) and len(versions) >= 9
    finally:
        for store in opened:
            store.close()
        pg_cluster.drop(name)


def test_every_store_method_is_implemented_once_for_both_engines() -> None:
    """Each method of the `Store` protocol resolves, on both engines, to one capability
    mixin's real code: no placeholder or protocol stub shadows it, whatever the bases' order."""
    from bot.store import SqlStore
    from bot.store.postgres import PostgresStore

    names = sorted(n for n in dir(Store) if not n.startswith("_") and callable(getattr(Store, n)))
    assert len(names) > 100
    for name in names:
        owners = {getattr(engine, name).__qualname__ for engine in (SqliteStore, PostgresStore)}
        engine_own = name in ("close", "check_writable", "transaction")
        assert len(owners) == 1 or engine_own, (name, owners)
        for engine in (SqliteStore, PostgresStore):
            body = inspect.getsource(getattr(engine, name)).rstrip()
            assert "raise NotImplementedError" not in body and not body.endswith("..."), (
                engine.__name__,
                name,
            )
        assert getattr(SqlStore, name).__module__.startswith("bot.store."), name
