"""The scale-out store: the same SQL as the SQLite store (`SqlStore`) run on PostgreSQL through
psycopg 3 and a connection pool (psycopg_pool); many processes may share one database.

Imports the standard library, psycopg, psycopg_pool, bot.errors and bot.store.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from decimal import Decimal
from typing import Any

import psycopg
from psycopg.adapt import Dumper, Loader
from psycopg.pq import TransactionStatus
from psycopg_pool import ConnectionPool, PoolTimeout

from bot.errors import ConfigError, StoreError
from bot.store.core import SqlStore
from bot.store.migrations import MIGRATIONS, Migration, PgSchema
from bot.store.sql import POSTGRESQL, Connection, Cursor, Dialect, PgRow

log = logging.getLogger(__name__)

POOL_SIZE = 10  # connections per process; see docs/storage.md ("PostgreSQL")
CONNECT_TIMEOUT_S = 5


class _FlagDumper(Dumper):
    """Python bools as '1'/'0' of unknown type: PostgreSQL reads them as the integer flags
    the schema stores (as SQLite does), or as booleans in a boolean context (CASE WHEN ?)."""

    oid = 0

    def dump(self, obj: Any) -> bytes:
        return b"1" if obj else b"0"


class _NumberLoader(Loader):
    """numeric results (sum(), avg() of integers) as int when whole, else float, as SQLite
    gives them, instead of Decimal."""

    def load(self, data: Any) -> Any:
        value = Decimal(bytes(data).decode())
        return int(value) if value == value.to_integral_value() else float(value)


def _row_factory(cursor: Any) -> Any:
    description = cursor.description
    if description is None:
        return tuple
    index = {column.name: i for i, column in enumerate(description)}
    return lambda values: PgRow(values, index)


def _configure(raw: psycopg.Connection[Any]) -> None:
    raw.adapters.register_dumper(bool, _FlagDumper)
    raw.adapters.register_loader("numeric", _NumberLoader)
    raw.row_factory = _row_factory


class PgConnection:
    """A pooled psycopg connection that takes the store's `?` SQL (see bot.store.sql)."""

    def __init__(self, raw: psycopg.Connection[Any]) -> None:
        self.raw = raw

    def execute(self, sql: str, parameters: Any = (), /) -> Cursor:
        cursor = self.raw.cursor()
        cursor.execute(POSTGRESQL.sql(sql), parameters)
        return cursor

    def executemany(self, sql: str, seq_of_parameters: Iterable[Any], /) -> Cursor:
        cursor = self.raw.cursor()
        cursor.executemany(POSTGRESQL.sql(sql), seq_of_parameters)
        return cursor

    @property
    def in_transaction(self) -> bool:
        return self.raw.info.transaction_status != TransactionStatus.IDLE


class PostgresStore(SqlStore):
    """`Store` on a PostgreSQL database. Thread-safe: each thread borrows a pooled connection
    for a call or a `transaction()` block; any number of processes may share the database."""

    dialect: Dialect = POSTGRESQL

    def __init__(
        self,
        url: str,
        *,
        migrations: tuple[Migration, ...] = MIGRATIONS,
        pool_size: int = POOL_SIZE,
    ) -> None:
        self._local = threading.local()
        self._where = _where(url)
        try:  # one direct attempt first: a clear error now instead of a pool retrying forever
            psycopg.connect(url, connect_timeout=CONNECT_TIMEOUT_S).close()
        except psycopg.ProgrammingError as exc:  # not a valid connection string
            raise ConfigError(
                "storage.url: not a valid PostgreSQL URL; expected"
                " postgresql://user:password@host:port/database"
            ) from exc
        except psycopg.Error as exc:
            raise ConfigError(
                f"storage.url: cannot connect to PostgreSQL {self._where}: {_first_line(exc)}"
            ) from exc
        self._pool = ConnectionPool(
            url,
            min_size=1,
            max_size=pool_size,
            kwargs={"autocommit": True, "connect_timeout": CONNECT_TIMEOUT_S},
            configure=_configure,
            open=False,
            name="carebridge",
        )
        try:
            self._pool.open(wait=True, timeout=CONNECT_TIMEOUT_S * 2)
            self._migrate(migrations)
        except PoolTimeout as exc:
            self._pool.close()
            raise StoreError(f"cannot open the database {self._where}: {exc}") from exc
        except BaseException:
            self._pool.close()
            raise

    @contextmanager
    def _connection(self) -> Iterator[Connection]:
        held: PgConnection | None = getattr(self._local, "conn", None)
        if held is not None:  # this thread is inside a call or a transaction() block
            yield held
            return
        with self._pool.connection() as raw:
            conn = PgConnection(raw)
            self._local.conn = conn
            try:
                yield conn
            finally:
                self._local.conn = None
                if conn.in_transaction:  # never hand a connection back mid-transaction
                    raw.execute("ROLLBACK")

    def _describe(self) -> str:
        return self._where

    def _schema(self, conn: Connection) -> Any:
        return PgSchema(conn)

    def close(self) -> None:
        """Close the pool (idempotent)."""
        self._pool.close()


def _where(url: str) -> str:
    """host:port/database of a connection URL, never the user or password."""
    try:
        info = psycopg.conninfo.conninfo_to_dict(url)
    except psycopg.Error:
        return "(unparseable URL)"
    host = info.get("host") or "localhost"
    port = info.get("port") or 5432
    return f"at {host}:{port}/{info.get('dbname') or info.get('user') or ''}"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


__all__ = ["PostgresStore", "StoreError"]
