"""The store in PostgreSQL (psycopg 3): the same contract and queries as the SQLite store.

Theory of operation: one autocommit connection per store; `add_batches` opens a transaction
(READ COMMITTED), makes sure a ``progress`` row exists for every (vin, epoch) it will touch
and locks those rows with ``SELECT ... FOR UPDATE`` in sorted order, then runs the shared
algorithm of `RecordStore`. A second process writing the same (vin, epoch) waits on that
lock; once it has it, each of its statements sees every record committed before, so the
walk over contiguous sequence numbers is exact whichever process stored which record.
Locks in one order for everybody: two groups never deadlock.

psycopg 3 rather than asyncpg: the ingest is synchronous, sans-I/O code that calls the store
like sqlite3, and psycopg's blocking connection keeps that contract as it is (asyncpg is
asyncio only). Its binary build needs no libpq on the machine.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar, Final

import psycopg

from cloud_stub.errors import CloudError
from cloud_stub.store import RecordStore

__all__ = ["PostgresStore"]

_SCHEMA: Final = (
    """CREATE TABLE IF NOT EXISTS records (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    vin TEXT NOT NULL,
    epoch BIGINT NOT NULL,
    seq BIGINT NOT NULL,
    t_ms BIGINT NOT NULL,
    kind INTEGER NOT NULL,
    body BYTEA NOT NULL,
    UNIQUE (vin, epoch, seq))""",
    """CREATE TABLE IF NOT EXISTS progress (
    vin TEXT NOT NULL,
    epoch BIGINT NOT NULL,
    acked BIGINT NOT NULL,
    duplicates BIGINT NOT NULL DEFAULT 0,
    conflicts BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (vin, epoch))""",
    """CREATE TABLE IF NOT EXISTS drops (
    vin TEXT NOT NULL,
    epoch BIGINT NOT NULL,
    batch_seq BIGINT NOT NULL,
    name TEXT NOT NULL,
    count BIGINT NOT NULL,
    PRIMARY KEY (vin, epoch, batch_seq, name))""",
    """CREATE TABLE IF NOT EXISTS released (
    vin TEXT NOT NULL,
    epoch BIGINT NOT NULL,
    lo BIGINT NOT NULL,
    hi BIGINT NOT NULL,
    PRIMARY KEY (vin, epoch, lo))""",
    """CREATE TABLE IF NOT EXISTS statuses (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    vin TEXT NOT NULL,
    command_id TEXT NOT NULL,
    counter BIGINT NOT NULL,
    outcome TEXT NOT NULL,
    reason TEXT NOT NULL,
    t_ms BIGINT NOT NULL,
    UNIQUE (vin, command_id, counter, outcome, reason, t_ms))""",
    """CREATE TABLE IF NOT EXISTS downlink_refusals (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    vin TEXT NOT NULL,
    reason TEXT NOT NULL,
    t_ms BIGINT NOT NULL,
    claimed_command_id TEXT NOT NULL,
    claimed_counter BIGINT NOT NULL,
    UNIQUE (vin, reason, t_ms, claimed_command_id, claimed_counter))""",
)
# several processes may create the schema at once; one of them does it
_SCHEMA_LOCK: Final = 0x7463_7573_746F_7265  # "tcustore"


class PostgresStore(RecordStore):
    """Telemetry records and command results in PostgreSQL at `url` (``postgresql://...``)."""

    GREATEST: ClassVar[str] = "GREATEST"

    def __init__(self, url: str, *, connect_timeout: float = 10.0) -> None:
        try:
            self._db = psycopg.connect(url, autocommit=True, connect_timeout=int(connect_timeout))
        except psycopg.Error as exc:
            raise CloudError(f"cannot open database {_redacted(url)}: {exc}".strip()) from None
        try:
            with self._db.transaction():
                self._db.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK,))
                for statement in _SCHEMA:
                    self._db.execute(statement)
        except psycopg.Error as exc:
            self._db.close()
            raise CloudError(f"cannot create the store in {_redacted(url)}: {exc}") from None

    def close(self) -> None:
        self._db.close()

    def _execute(self, sql: str, params: Sequence[Any] = ()) -> psycopg.Cursor[Any]:
        return self._db.execute(sql.replace("?", "%s"), tuple(params))

    def _executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        if rows:
            with self._db.cursor() as cursor:
                cursor.executemany(sql.replace("?", "%s"), rows)

    def _begin(self, keys: Sequence[tuple[str, int]]) -> None:
        self._db.execute("BEGIN")
        for vin, epoch in keys:
            self._db.execute(
                "INSERT INTO progress (vin, epoch, acked) VALUES (%s, %s, 0)"
                " ON CONFLICT (vin, epoch) DO NOTHING",
                (vin, epoch),
            )
            self._db.execute(
                "SELECT acked FROM progress WHERE vin = %s AND epoch = %s FOR UPDATE", (vin, epoch)
            )

    def _commit(self) -> None:
        self._db.execute("COMMIT")

    def _rollback(self) -> None:
        if not self._db.closed:
            self._db.execute("ROLLBACK")

    def clear(self) -> None:
        """Empty every table (tests and benchmarks reuse one database)."""
        self._db.execute("TRUNCATE records, progress, drops, released, statuses, downlink_refusals")


def _redacted(url: str) -> str:
    """The URL without its password."""
    head, sep, rest = url.partition("://")
    if "@" not in rest:
        return url
    userinfo, _, host = rest.rpartition("@")
    return f"{head}{sep}{userinfo.split(':', 1)[0]}@{host}"
