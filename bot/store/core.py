"""`SqlStore`: the store in SQL written once, composed of one mixin per capability (contacts,
conversations, messaging, tickets, check-ins, users, broadcasts, ...) plus the shared plumbing
(migrations, transactions, reads). Engines subclass it (bot.store.sqlite, bot.store.postgres).
Imports the standard library, bot.errors and bot.store."""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from datetime import UTC, datetime
from typing import Any, Self

from bot.errors import StoreError
from bot.store.api import ApiSql
from bot.store.broadcasts import BroadcastSql
from bot.store.checkins import CheckinSql
from bot.store.codec import _ts
from bot.store.contacts import ContactSql
from bot.store.conversations import ConversationSql
from bot.store.dashboards import DashSql
from bot.store.io import IoSql
from bot.store.live import LiveSql
from bot.store.messaging import MessagingSql
from bot.store.migrations import MIGRATION_LOCK, Migration, ledger_sql
from bot.store.privacy import PrivacySql
from bot.store.sql import SQLITE, Connection, Dialect, Row
from bot.store.tickets import TicketSql
from bot.store.users import UserSql
from bot.store.work import WorkSql

log = logging.getLogger(__name__)


class SqlStore(
    ContactSql,
    ConversationSql,
    MessagingSql,
    TicketSql,
    CheckinSql,
    UserSql,
    BroadcastSql,
    PrivacySql,
    IoSql,
    ApiSql,
    DashSql,
    LiveSql,
    WorkSql,
):
    """`Store` in SQL written once (docs/storage.md, "One SQL, two engines"): every query
    method lives in a capability's mixin; this class adds the shared plumbing, and an engine
    subclass (`SqliteStore`, `PostgresStore`) supplies the connection and its `dialect`.
    A mixin that calls another's method declares it for the type checker only, so the order
    of the bases does not matter.
    """

    dialect: Dialect = SQLITE

    # -- plumbing: what an engine provides ---------------------------------------

    def _connection(self) -> AbstractContextManager[Connection]:
        """Hold this thread's connection for the block (an engine guards it its own way)."""
        raise NotImplementedError

    def _describe(self) -> str:
        """The database, for error messages (never a password)."""
        raise NotImplementedError

    def _schema(self, conn: Connection) -> Any:
        """What a migration function receives (see bot.store.migrations)."""
        raise NotImplementedError

    def close(self) -> None:
        """Release the connection(s) (idempotent)."""
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- plumbing: shared -------------------------------------------------------

    def _migrate(self, migrations: tuple[Migration, ...]) -> None:
        """Apply the missing migrations in one transaction; refuse a newer schema."""
        known = max((m.version for m in migrations), default=0)
        with self._atomic("migrate") as conn:
            # Two processes starting together: the second waits, then finds it all applied.
            self.dialect.advisory_lock(conn, MIGRATION_LOCK)
            conn.execute(ledger_sql(self.dialect))
            applied = {r[0] for r in conn.execute("SELECT version FROM schema_migrations")}
            newest = max(applied, default=0)
            if newest > known:
                raise StoreError(
                    f"the database {self._describe()} has schema version {newest}, but this "
                    f"version of carebridge knows only up to {known}: upgrade carebridge, or set "
                    "storage.url to another database"
                )
            schema = self._schema(conn)
            for migration in sorted(migrations, key=lambda m: m.version):
                if migration.version in applied:
                    continue
                try:
                    migration.apply(schema)
                except self.dialect.driver_errors() as exc:
                    raise StoreError(
                        f"cannot migrate the database {self._describe()} to version "
                        f"{migration.version} ({migration.name}): {exc}"
                    ) from exc
                conn.execute(
                    "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)",
                    (migration.version, migration.name, _ts(datetime.now(UTC))),
                )
                log.info("store: applied migration %d (%s)", migration.version, migration.name)

    @contextmanager
    def _atomic(self, op: str) -> Iterator[Connection]:
        """Run the block in one write transaction, or join the one this thread has open.

        One store call inside a `transaction()` joins it as is (no savepoint per call: it
        cost 2 statements per call and the message transaction makes ~17 calls); an error
        propagates and the transaction block rolls everything back. Only a nested
        `transaction()` opens a savepoint."""
        with self._connection() as conn:
            if conn.in_transaction:
                with self._translated(op):
                    yield conn
                return
            with self._begun(conn, op):
                yield conn

    @contextmanager
    def _savepoint(self, op: str) -> Iterator[None]:
        """A `transaction()`: a new write transaction, or a savepoint that rolls back on its
        own when one is already open."""
        with self._connection() as conn:
            if not conn.in_transaction:
                with self._begun(conn, op):
                    yield
                return
            conn.execute("SAVEPOINT store_op")
            try:
                with self._translated(op):
                    yield
            except BaseException:
                if conn.in_transaction:  # an error may have ended the whole transaction
                    conn.execute("ROLLBACK TO SAVEPOINT store_op")
                    conn.execute("RELEASE SAVEPOINT store_op")
                raise
            conn.execute("RELEASE SAVEPOINT store_op")

    @contextmanager
    def _begun(self, conn: Connection, op: str) -> Iterator[Connection]:
        """BEGIN (IMMEDIATE on SQLite) ... COMMIT, rolled back on an exception."""
        with self._translated(op):
            conn.execute(self.dialect.begin)
        try:
            with self._translated(op):
                yield conn
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        try:
            with self._translated(op):
                conn.execute("COMMIT")
        finally:
            if conn.in_transaction:
                conn.execute("ROLLBACK")

    @contextmanager
    def _translated(self, op: str) -> Iterator[None]:
        """Turn a driver error into StoreError naming the operation (never the values)."""
        try:
            yield
        except self.dialect.driver_errors() as exc:
            raise StoreError(f"store.{op}: {exc}") from exc

    def _rows(self, sql: str, params: Any = ()) -> list[Row]:
        with self._connection() as conn, self._translated("read"):
            return self._write_rows(conn, sql, params)

    def _write_rows(self, conn: Connection, sql: str, params: Any = ()) -> list[Row]:
        if isinstance(conn, sqlite3.Connection):
            cursor = conn.cursor()
            cursor.row_factory = sqlite3.Row
            return cursor.execute(sql, params).fetchall()
        return list(conn.execute(sql, params).fetchall())

    def _require(self, conn: Connection, table: str, row_id: int) -> Row:
        """The row, locked until the transaction ends (PostgreSQL) for a read-modify-write."""
        sql = f'SELECT * FROM "{table}" WHERE id = ?{self.dialect.for_update}'
        rows = self._write_rows(conn, sql, (row_id,))
        if not rows:
            raise KeyError(f"no {table} row with id {row_id}")
        return rows[0]

    # -- transactions -----------------------------------------------------------

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """One write transaction; nested blocks become savepoints."""
        with self._savepoint("transaction"):
            yield

    def check_writable(self) -> None:
        """Commit one tiny real write (the readiness probe): a row is added to the migration
        ledger and removed again in one transaction, so the commit must reach the disk;
        nothing is left behind."""
        with self._atomic("check_writable") as conn:
            conn.execute(
                "INSERT INTO schema_migrations (version, name, applied_at)"
                " VALUES (-1, 'readiness probe', '')"
            )
            conn.execute("DELETE FROM schema_migrations WHERE version = -1")

    def _filtered(self, table: str, **equal: Any) -> list[Row]:
        """Rows of `table` whose columns equal the given values (None: any), by id."""
        given = {column: value for column, value in equal.items() if value is not None}
        where = " AND ".join([f'"{column}" = ?' for column in given] or ["1 = 1"])
        return self._rows(
            f'SELECT * FROM "{table}" WHERE {where} ORDER BY id', tuple(given.values())
        )
