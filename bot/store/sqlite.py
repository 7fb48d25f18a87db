"""The embedded store: one SQLite file in WAL mode, schema via sqlite-utils, writes in SQL
(`SqliteStore`, the SQLite engine under `SqlStore`).

Imports the standard library, sqlite_utils, bot.errors and bot.store.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from sqlite_utils import Database

from bot.errors import StoreError
from bot.store.core import SqlStore
from bot.store.migrations import MIGRATIONS, Migration
from bot.store.sql import Connection

log = logging.getLogger(__name__)

_MIN_SQLITE = (3, 37, 0)

_PRAGMAS = (
    "PRAGMA busy_timeout=5000",  # first, so switching to WAL waits for other writers
    "PRAGMA synchronous=NORMAL",
    "PRAGMA foreign_keys=ON",
    "PRAGMA secure_delete=ON",  # erased and redacted text is overwritten, not left in free pages
)


def _private_file(path: Path) -> None:
    """Create the missing folders of `path` as 0700 and the file as 0600 before SQLite opens
    it (SQLite gives its -wal and -shm files the database file's mode); tighten an existing
    file that others may read."""
    missing = [p for p in (path.parent, *path.parent.parents) if not p.exists()]
    for folder in reversed(missing):
        folder.mkdir(mode=0o700, exist_ok=True)
    os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
    for file in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        with suppress(FileNotFoundError):
            if file.stat().st_mode & 0o077:
                file.chmod(0o600)
                log.warning("store: %s was readable by others; now 0600", file.name)


class SqliteStore(SqlStore):
    """`Store` on one SQLite file. Thread-safe: one connection guarded by a re-entrant lock."""

    def __init__(self, path: str | Path, *, migrations: tuple[Migration, ...] = MIGRATIONS) -> None:
        if "://" in str(path):  # a URL (postgresql://...) is not a file: never create it as one
            raise StoreError(f"not a SQLite file path: {path} (open a URL with open_store)")
        self.path = Path(path)
        self._lock = threading.RLock()
        if sqlite3.sqlite_version_info < _MIN_SQLITE:
            raise StoreError(
                f"carebridge needs SQLite {'.'.join(map(str, _MIN_SQLITE))} or newer (STRICT "
                f"tables, RETURNING); this Python uses SQLite {sqlite3.sqlite_version}"
            )
        try:
            _private_file(self.path)  # health data: 0700 folders, 0600 files (WAL/SHM follow)
            self._conn = sqlite3.connect(
                str(self.path), isolation_level=None, check_same_thread=False
            )
        except (OSError, sqlite3.Error) as exc:
            raise StoreError(f"cannot open the database {self.path}: {exc}") from exc
        try:
            # For DDL, migrations and introspection only: writes go through SQL (docs/storage.md).
            self.db = Database(self._conn, execute_plugins=False)
            for pragma in _PRAGMAS:
                self._conn.execute(pragma)
            for name, pick in (("greatest", max), ("least", min)):  # as PostgreSQL's
                self._conn.create_function(name, -1, _ignoring_nulls(pick), deterministic=True)
            self.db.enable_wal()
            if self.db.journal_mode != "wal":
                log.warning("store: %s cannot use WAL; readers will block writers", self.path)
            self._migrate(migrations)
        except sqlite3.Error as exc:  # e.g. the file is not a database
            self._conn.close()
            raise StoreError(f"cannot open the database {self.path}: {exc}") from exc
        except BaseException:
            self._conn.close()
            raise

    @contextmanager
    def _connection(self) -> Iterator[Connection]:
        with self._lock:
            yield self._conn

    def _describe(self) -> str:
        return str(self.path)

    def _schema(self, conn: Connection) -> Any:
        return self.db

    def close(self) -> None:
        """Close the connection (idempotent)."""
        with self._lock:
            self._conn.close()


def _ignoring_nulls(pick: Callable[..., Any]) -> Callable[..., Any]:
    """SQLite's greatest()/least(): PostgreSQL's, which skip NULL arguments."""

    def chosen(*values: Any) -> Any:
        given = [v for v in values if v is not None]
        return pick(given) if given else None

    return chosen
