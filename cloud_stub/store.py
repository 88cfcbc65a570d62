"""Durable store of telemetry records, drop reports and command results (SQLite, PostgreSQL).

Theory of operation: a record is identified by (vin, epoch, seq) and stored once; the table's
UNIQUE constraint makes a second copy a counted duplicate, not an error (a copy whose content
differs from the first is also counted as a conflict: a TCU that reused a sequence number).
For each (vin, epoch) the ``progress`` table keeps the highest contiguous sequence stored,
starting from 0; after each batch it walks forward over the stored sequences until the first
gap, so a gap holds the acknowledgement back until it is filled. A batch that names
``prev`` (the record sent before it) says that every sequence missing between ``prev``
and its records was dropped by the vehicle's outbox: those ranges are kept in
``released`` and the walk steps over them, so a drop never stalls the acknowledgement.
A batch is one transaction: its records, its drop report and the progress move
together. Drop reports are keyed by the batch's first sequence, so the same batch sent
twice counts its drops once.

Group commit: `RecordStore.add_batches` stores many batches in one transaction (one fsync),
each with its own result, in the order given. Several ingest processes may write at once:
before it touches a (vin, epoch), a transaction takes that (vin, epoch)'s lock (SQLite: the
database write lock of ``BEGIN IMMEDIATE``; PostgreSQL: the row lock of its ``progress`` row,
taken in sorted order so two groups cannot deadlock). Contiguity is therefore decided by one
transaction that sees every record committed before it, whichever process stored them: two
halves of one van's records stored by two workers end with the right ack.

`RecordStore` holds the algorithm and the queries; `Store` (SQLite, the default) and
`cloud_stub.store_pg.PostgresStore` give it a connection and their few dialect words.
`open_store` picks one from a path or a ``postgresql://`` URL.
"""

from __future__ import annotations

import sqlite3
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Final

import cbor2

from cloud_stub.db import SqliteFile
from tcu.lifecycle import Closing
from tcu.telemetry.codec.schema import BatchMessage, StatusMessage, dumps
from tcu.telemetry.records import KIND_CODES

__all__ = ["BatchResult", "Progress", "RecordStore", "Store", "StoredRecord"]

_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS records (
    id INTEGER PRIMARY KEY,
    vin TEXT NOT NULL,
    epoch INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    t_ms INTEGER NOT NULL,
    kind INTEGER NOT NULL,
    body BLOB NOT NULL,
    UNIQUE (vin, epoch, seq)
) STRICT;
CREATE TABLE IF NOT EXISTS progress (
    vin TEXT NOT NULL,
    epoch INTEGER NOT NULL,
    acked INTEGER NOT NULL,
    duplicates INTEGER NOT NULL DEFAULT 0,
    conflicts INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (vin, epoch)
) STRICT;
CREATE TABLE IF NOT EXISTS drops (
    vin TEXT NOT NULL,
    epoch INTEGER NOT NULL,
    batch_seq INTEGER NOT NULL,
    name TEXT NOT NULL,
    count INTEGER NOT NULL,
    PRIMARY KEY (vin, epoch, batch_seq, name)
) STRICT;
CREATE TABLE IF NOT EXISTS released (
    vin TEXT NOT NULL,
    epoch INTEGER NOT NULL,
    lo INTEGER NOT NULL,
    hi INTEGER NOT NULL,
    PRIMARY KEY (vin, epoch, lo)
) STRICT;
CREATE TABLE IF NOT EXISTS statuses (
    id INTEGER PRIMARY KEY,
    vin TEXT NOT NULL,
    command_id TEXT NOT NULL,
    counter INTEGER NOT NULL,
    outcome TEXT NOT NULL,
    reason TEXT NOT NULL,
    t_ms INTEGER NOT NULL,
    UNIQUE (vin, command_id, counter, outcome, reason, t_ms)
) STRICT;
CREATE TABLE IF NOT EXISTS downlink_refusals (
    id INTEGER PRIMARY KEY,
    vin TEXT NOT NULL,
    reason TEXT NOT NULL,
    t_ms INTEGER NOT NULL,
    claimed_command_id TEXT NOT NULL,
    claimed_counter INTEGER NOT NULL,
    UNIQUE (vin, reason, t_ms, claimed_command_id, claimed_counter)
) STRICT;
"""


@dataclass(frozen=True, slots=True, kw_only=True)
class BatchResult:
    """What storing one batch did: new records, duplicates, conflicts, and the new ack."""

    stored: int
    duplicates: int
    conflicts: int
    acked: int


@dataclass(frozen=True, slots=True, kw_only=True)
class StoredRecord:
    vin: str
    epoch: int
    seq: int
    t_ms: int
    kind: int
    body: Mapping[Any, Any]


@dataclass(frozen=True, slots=True, kw_only=True)
class Progress:
    """Per (vin, epoch): records stored, highest contiguous seq, duplicates and conflicts."""

    vin: str
    epoch: int
    stored: int
    acked: int
    duplicates: int
    conflicts: int


class RecordStore(Closing, ABC):
    """The store's contract and its algorithm; subclasses bring a connection and a dialect.

    Queries are written with ``?`` placeholders; `_sql` translates them for the driver.
    """

    #: SQL function giving the larger of two values
    GREATEST: ClassVar[str] = "MAX"
    #: rows per multi-row INSERT (SQLite allows 32,766 parameters per statement)
    ROWS_PER_INSERT: ClassVar[int] = 500

    @abstractmethod
    def close(self) -> None: ...

    @abstractmethod
    def _execute(self, sql: str, params: Sequence[Any] = ()) -> Any:
        """Run one statement; returns a cursor with fetchone/fetchall/rowcount."""

    @abstractmethod
    def _executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None: ...

    @abstractmethod
    def _begin(self, keys: Sequence[tuple[str, int]]) -> None:
        """Open the transaction and lock the sorted (vin, epoch) keys it will touch."""

    @abstractmethod
    def _commit(self) -> None: ...

    @abstractmethod
    def _rollback(self) -> None: ...

    def _one(self, sql: str, params: Sequence[Any] = ()) -> Any:
        return self._execute(sql, params).fetchone()

    def _all(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        return list(self._execute(sql, params).fetchall())

    def add_batch(self, batch: BatchMessage) -> BatchResult:
        """Store the batch's new records and return the (vin, epoch) highest contiguous seq."""
        return self.add_batches([batch])[0]

    def add_batches(self, batches: Sequence[BatchMessage]) -> list[BatchResult]:
        """Store several batches in one transaction; one result per batch, in order."""
        if not batches:
            return []
        keys = sorted({(b.vin, b.epoch) for b in batches})
        try:
            self._begin(keys)
            results = [self._add(batch) for batch in batches]
            self._commit()
        except BaseException:
            self._rollback()
            raise
        return results

    def _add(self, batch: BatchMessage) -> BatchResult:
        bodies = {r.seq: dumps(dict(r.body)) for r in batch.records}
        rows = [
            (batch.vin, batch.epoch, r.seq, r.t_ms, r.code, bodies[r.seq]) for r in batch.records
        ]
        new: set[int] = set()
        for start in range(0, len(rows), self.ROWS_PER_INSERT):
            chunk = rows[start : start + self.ROWS_PER_INSERT]
            values = ", ".join(["(?, ?, ?, ?, ?, ?)"] * len(chunk))
            new.update(
                seq
                for (seq,) in self._all(
                    "INSERT INTO records (vin, epoch, seq, t_ms, kind, body) VALUES "
                    + values
                    + " ON CONFLICT (vin, epoch, seq) DO NOTHING RETURNING seq",
                    [value for row in chunk for value in row],
                )
            )
        # a seq twice in one batch: the second copy is a duplicate of the first
        stored = len(new)
        duplicates = len(rows) - stored
        conflicts = 0
        for record in batch.records:
            if record.seq in new:
                new.discard(record.seq)
                continue
            first = self._one(
                "SELECT t_ms, kind, body FROM records WHERE vin = ? AND epoch = ? AND seq = ?",
                (batch.vin, batch.epoch, record.seq),
            )
            if tuple(first) != (record.t_ms, record.code, bodies[record.seq]):
                conflicts += 1
        first_seq = batch.records[0].seq
        if batch.prev is not None:
            self._executemany(
                "INSERT INTO released (vin, epoch, lo, hi) VALUES (?, ?, ?, ?)"
                f" ON CONFLICT (vin, epoch, lo) DO UPDATE SET hi = {self.GREATEST}"
                "(released.hi, excluded.hi)",
                [(batch.vin, batch.epoch, lo, hi) for lo, hi in _missing(batch)],
            )
        self._executemany(
            "INSERT INTO drops (vin, epoch, batch_seq, name, count) VALUES (?, ?, ?, ?, ?)"
            " ON CONFLICT (vin, epoch, batch_seq, name) DO NOTHING",
            [(batch.vin, batch.epoch, first_seq, n, c) for n, c in batch.drops.items()],
        )
        acked = self._advance(batch.vin, batch.epoch, duplicates, conflicts)
        return BatchResult(stored=stored, duplicates=duplicates, conflicts=conflicts, acked=acked)

    def _advance(self, vin: str, epoch: int, duplicates: int, conflicts: int) -> int:
        row = self._one("SELECT acked FROM progress WHERE vin = ? AND epoch = ?", (vin, epoch))
        acked: int = 0 if row is None else int(row[0])
        while True:
            start = acked
            released = self._one(
                "SELECT MAX(hi) FROM released WHERE vin = ? AND epoch = ? AND lo <= ? AND hi > ?",
                (vin, epoch, acked + 1, acked),
            )[0]
            if released is not None:
                acked = int(released)
            for (seq,) in self._all(
                "SELECT seq FROM records WHERE vin = ? AND epoch = ? AND seq > ?"
                " ORDER BY seq LIMIT 1000",
                (vin, epoch, acked),
            ):
                if seq != acked + 1:
                    break
                acked = int(seq)
            if acked == start:
                break
        self._execute(
            "INSERT INTO progress (vin, epoch, acked, duplicates, conflicts) VALUES (?, ?, ?, ?, ?)"
            " ON CONFLICT (vin, epoch) DO UPDATE SET acked = excluded.acked,"
            " duplicates = progress.duplicates + excluded.duplicates,"
            " conflicts = progress.conflicts + excluded.conflicts",
            (vin, epoch, acked, duplicates, conflicts),
        )
        return acked

    def released(self, vin: str) -> int:
        """Sequence numbers acknowledged without a record: the vehicle dropped them."""
        row = self._one(
            "SELECT COALESCE(SUM(p.acked - (SELECT COUNT(*) FROM records r"
            " WHERE r.vin = p.vin AND r.epoch = p.epoch AND r.seq <= p.acked)), 0)"
            " FROM progress p WHERE p.vin = ?",
            (vin,),
        )
        return int(row[0])

    def acked(self, vin: str, epoch: int) -> int:
        """Highest contiguous seq stored for (vin, epoch); 0 when none."""
        row = self._one("SELECT acked FROM progress WHERE vin = ? AND epoch = ?", (vin, epoch))
        return 0 if row is None else int(row[0])

    def add_status(self, status: StatusMessage) -> bool:
        """File a command result in the command's history; False if stored already.

        The caller (`Ingest`) decides what is history: only answers that name a verified
        command (`docs/backend.md`, "Command history").
        """
        cursor = self._execute(
            "INSERT INTO statuses (vin, command_id, counter, outcome, reason, t_ms)"
            " VALUES (?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (vin, command_id, counter, outcome, reason, t_ms) DO NOTHING",
            (
                status.vin,
                status.command_id,
                status.counter,
                status.outcome,
                status.reason or "",
                status.t_ms,
            ),
        )
        return int(cursor.rowcount) == 1

    def answered_otherwise(self, status: StatusMessage) -> bool:
        """Whether the command's history holds an answer other than this very one."""
        row = self._one(
            "SELECT 1 FROM statuses WHERE vin = ? AND command_id = ? AND counter = ?"
            " AND NOT (outcome = ? AND reason = ? AND t_ms = ?) LIMIT 1",
            (
                status.vin,
                status.command_id,
                status.counter,
                status.outcome,
                status.reason or "",
                status.t_ms,
            ),
        )
        return row is not None

    def add_downlink_refusal(self, status: StatusMessage) -> bool:
        """Store a refusal that names no verified command; False if stored already.

        The command id and counter are kept as the vehicle claimed them, never as a key
        of any command's history.
        """
        cursor = self._execute(
            "INSERT INTO downlink_refusals"
            " (vin, reason, t_ms, claimed_command_id, claimed_counter) VALUES (?, ?, ?, ?, ?)"
            " ON CONFLICT (vin, reason, t_ms, claimed_command_id, claimed_counter) DO NOTHING",
            (status.vin, status.reason or "", status.t_ms, status.command_id, status.counter),
        )
        return int(cursor.rowcount) == 1

    def downlink_refusals(self, vin: str) -> list[StatusMessage]:
        """Refused downlinks that name no verified command, as the vehicle reported them."""
        rows = self._all(
            "SELECT reason, t_ms, claimed_command_id, claimed_counter FROM downlink_refusals"
            " WHERE vin = ? ORDER BY id",
            (vin,),
        )
        return [
            StatusMessage(
                vin=vin, command_id=c, counter=n, outcome="refused", reason=r or "unknown", t_ms=t
            )
            for r, t, c, n in rows
        ]

    def statuses(self, vin: str) -> list[StatusMessage]:
        rows = self._all(
            "SELECT vin, command_id, counter, outcome, reason, t_ms FROM statuses"
            " WHERE vin = ? ORDER BY id",
            (vin,),
        )
        return [
            StatusMessage(vin=v, command_id=c, counter=n, outcome=o, reason=r or None, t_ms=t)
            for v, c, n, o, r, t in rows
        ]

    def count_records(self, vin: str | None = None) -> int:
        if vin is None:
            row = self._one("SELECT count(*) FROM records")
        else:
            row = self._one("SELECT count(*) FROM records WHERE vin = ?", (vin,))
        return int(row[0])

    def records(self, vin: str, epoch: int) -> list[StoredRecord]:
        rows = self._all(
            "SELECT seq, t_ms, kind, body FROM records WHERE vin = ? AND epoch = ? ORDER BY seq",
            (vin, epoch),
        )
        return [
            StoredRecord(vin=vin, epoch=epoch, seq=s, t_ms=t, kind=k, body=cbor2.loads(bytes(b)))
            for s, t, k, b in rows
        ]

    def service_stopped(self, vin: str, command_id: str) -> bool:
        """Whether the vehicle's record of stopping on ``command_id`` is stored, with all before it.

        A deactivated TCU ends its service with a ``service`` record (``active`` false,
        naming the command). Until that record and every record before it are stored, the
        backend must keep taking the vehicle's telemetry, or that last record is refused
        and resent for ever.
        """
        rows = self._all(
            "SELECT r.seq, r.body, p.acked FROM records r JOIN progress p"
            " ON p.vin = r.vin AND p.epoch = r.epoch WHERE r.vin = ? AND r.kind = ?",
            (vin, KIND_CODES["service"]),
        )
        for seq, body, acked in rows:
            fields = cbor2.loads(bytes(body))
            if (
                fields.get("command_id") == command_id
                and fields.get("active") is False
                and seq <= acked
            ):
                return True
        return False

    def progress(self) -> list[Progress]:
        rows = self._all(
            "SELECT p.vin, p.epoch, count(r.id), p.acked, p.duplicates, p.conflicts"
            " FROM progress p LEFT JOIN records r ON r.vin = p.vin AND r.epoch = p.epoch"
            " GROUP BY p.vin, p.epoch, p.acked, p.duplicates, p.conflicts"
            " ORDER BY p.vin, p.epoch"
        )
        return [
            Progress(vin=v, epoch=e, stored=int(s), acked=a, duplicates=d, conflicts=c)
            for v, e, s, a, d, c in rows
        ]

    def drops(self, vin: str) -> dict[str, int]:
        rows = self._all(
            "SELECT name, sum(count) FROM drops WHERE vin = ? GROUP BY name ORDER BY name", (vin,)
        )
        return {name: int(total) for name, total in rows}


class Store(SqliteFile, RecordStore):
    """Telemetry records and command results in SQLite at `path` (the default store)."""

    SCHEMA = _SCHEMA

    def _execute(self, sql: str, params: Sequence[Any] = ()) -> sqlite3.Cursor:
        return self._db.execute(sql, params)

    def _executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        self._db.executemany(sql, rows)

    def _begin(self, keys: Sequence[tuple[str, int]]) -> None:
        self._db.execute("BEGIN IMMEDIATE")  # the database's write lock covers every key

    def _commit(self) -> None:
        self._db.execute("COMMIT")

    def _rollback(self) -> None:
        if self._db.in_transaction:
            self._db.execute("ROLLBACK")


def _missing(batch: BatchMessage) -> list[tuple[int, int]]:
    """The sequence ranges a batch says its vehicle no longer holds."""
    out = []
    previous = batch.prev or 0
    for record in batch.records:
        if record.seq > previous + 1:
            out.append((previous + 1, record.seq - 1))
        previous = record.seq
    return out
