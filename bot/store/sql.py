"""The dialect seam: store SQL is written once (`?` placeholders, portable SQL) and each engine's
`Dialect` turns it into what its driver runs, plus the few fragments where engines differ.

Imports the standard library and, lazily, psycopg (only when a PostgreSQL store opens).
See docs/storage.md ("One SQL, two engines") for the rules a store module follows.
"""

from __future__ import annotations

import functools
import re
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from typing import Any, Protocol

# A LIMIT that means "no limit" on both engines (SQLite refuses LIMIT NULL, PostgreSQL -1).
NO_LIMIT = 2**62


class Row(Protocol):
    """A result row: by position (`row[0]`) or by column name (`row["id"]`)."""

    def __getitem__(self, key: Any, /) -> Any: ...

    def keys(self) -> list[str]: ...


class Cursor(Protocol):
    """What `Connection.execute` returns (a DB-API cursor)."""

    @property
    def rowcount(self) -> int: ...

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...

    def __iter__(self) -> Iterator[Any]: ...


class Connection(Protocol):
    """The part of a DB-API connection the store uses; `sql` is written with `?` (or `:name`
    with a dict) whatever the engine."""

    def execute(self, sql: str, parameters: Any = (), /) -> Cursor: ...

    def executemany(self, sql: str, seq_of_parameters: Iterable[Any], /) -> Cursor: ...

    @property
    def in_transaction(self) -> bool: ...


class Dialect:
    """SQLite: the SQL as written. Subclasses translate for other engines."""

    name = "sqlite"
    # Opens a write transaction: SQLite takes the write lock at once (two writers queue on
    # the busy timeout instead of deadlocking on a read-to-write upgrade).
    begin = "BEGIN IMMEDIATE"
    # Appended to a SELECT that claims rows: PostgreSQL lets concurrent claimers skip each
    # other's rows; SQLite has one writer at a time, so there is nothing to skip.
    skip_locked = ""
    # Appended to a SELECT that reads rows the transaction will change (a read-modify-write):
    # PostgreSQL locks them against a concurrent transaction; SQLite's write transaction
    # already excludes every other writer.
    for_update = ""

    def sql(self, text: str) -> str:
        """The statement as this engine's driver takes it."""
        return text

    def json_set(self, document: str, key: str, value: str = "?") -> str:
        """An expression: the JSON object text `document` with top-level `key` set to the text
        expression `value` (a placeholder by default)."""
        return f"json_set({document}, '$.{key}', {value})"

    def unindexed(self, expression: str) -> str:
        """`expression`, hinting the planner not to use its index (SQLite's unary +; the hint
        a query written for SQLite's planner needs; PostgreSQL plans on statistics)."""
        return f"+{expression}"

    def json_each(self, expression: str, alias: str) -> str:
        """A FROM item: one row per element of the JSON array text `expression`, with the
        element's text in `alias.value`."""
        return f"json_each({expression}) {alias}"

    def changed(self, conn: Connection, cursor: Cursor) -> int:
        """How many rows the statement just run on `cursor` changed. (Python's sqlite3 gives
        -1 as the rowcount of a `WITH ... INSERT`; SQLite's changes() knows.)"""
        return int(conn.execute("SELECT changes()").fetchone()[0])

    def advisory_lock(self, conn: Connection, key: int) -> None:
        """Serialise transactions on `key` until this transaction ends. SQLite: a no-op (its
        write transaction already holds the one write lock)."""

    def driver_errors(self) -> tuple[type[Exception], ...]:
        """The driver's exception classes (turned into StoreError by the store)."""
        return (sqlite3.Error,)


class PostgresDialect(Dialect):
    """PostgreSQL through psycopg 3: `?` -> `%s`, `:name` -> `%(name)s`, `%` -> `%%`."""

    name = "postgresql"
    begin = "BEGIN"
    skip_locked = " FOR UPDATE SKIP LOCKED"
    for_update = " FOR UPDATE"

    def sql(self, text: str) -> str:
        return _to_pyformat(text)

    def json_set(self, document: str, key: str, value: str = "?") -> str:
        return f"jsonb_set(({document})::jsonb, '{{{key}}}', to_jsonb(({value})::text))::text"

    def unindexed(self, expression: str) -> str:
        return expression

    def json_each(self, expression: str, alias: str) -> str:
        return f"jsonb_array_elements_text({expression}::jsonb) AS {alias}(value)"

    def changed(self, conn: Connection, cursor: Cursor) -> int:
        return cursor.rowcount

    def advisory_lock(self, conn: Connection, key: int) -> None:
        conn.execute("SELECT pg_advisory_xact_lock(?)", (key,))

    def driver_errors(self) -> tuple[type[Exception], ...]:
        import psycopg

        return (sqlite3.Error, psycopg.Error)


SQLITE = Dialect()
POSTGRESQL = PostgresDialect()


class SqlMixin:
    """What a capability's SQL mixin (`ContactSql`, `BroadcastSql`, ...) uses of the store;
    `SqlStore` (bot.store.core) provides it: the engine's dialect, transactions and reads."""

    dialect: Dialect = SQLITE

    def _atomic(self, op: str) -> AbstractContextManager[Connection]:
        """One write transaction, or the caller's (`SqlStore._atomic`)."""
        raise NotImplementedError

    def _rows(self, sql: str, params: Any = ()) -> list[Row]:
        """The rows of a read."""
        raise NotImplementedError

    def _write_rows(self, conn: Connection, sql: str, params: Any = ()) -> list[Row]:
        """The rows of a statement run inside a write transaction."""
        raise NotImplementedError

    def _require(self, conn: Connection, table: str, row_id: int) -> Row:
        """The row, locked for a read-modify-write; KeyError when there is none."""
        raise NotImplementedError

    def _filtered(self, table: str, **equal: Any) -> list[Row]:
        """The rows of `table` whose columns equal the given non-None values."""
        raise NotImplementedError


# String literals, quoted identifiers and comments pass through untouched; a `?`, a `:name`
# (not `::type`) or a `%` outside them is rewritten.
_TOKENS = re.compile(
    r"""('(?:[^']|'')*')|("(?:[^"]|"")*")|(--[^\n]*)|(\?)|(?<![:\w]):([A-Za-z_]\w*)|(%)"""
)


@functools.lru_cache(maxsize=4096)
def _to_pyformat(text: str) -> str:
    def swap(match: re.Match[str]) -> str:
        if match.group(4):
            return "%s"
        if match.group(5):
            return f"%({match.group(5)})s"
        if match.group(6):
            return "%%"
        return match.group(0)

    return _TOKENS.sub(swap, text)


class PgRow(tuple[Any, ...]):
    """A psycopg row that reads like sqlite3.Row: by position or by column name."""

    _index: dict[str, int]

    def __new__(cls, values: Sequence[Any], index: dict[str, int]) -> PgRow:
        row = super().__new__(cls, values)
        row._index = index
        return row

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, str):
            return tuple.__getitem__(self, self._index[key])
        return tuple.__getitem__(self, key)

    def keys(self) -> list[str]:
        return list(self._index)
