"""Durable store of telemetry records, drop reports and command results (SQLite).

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
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Final, Self

import cbor2

from cloud_stub.db import connect
from tcu.telemetry.codec.schema import BatchMessage, StatusMessage, dumps
from tcu.telemetry.records import KIND_CODES

__all__ = ["BatchResult", "Progress", "Store", "StoredRecord"]

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


class Store:
    """Telemetry records and command results in SQLite at `path`."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self._db = connect(path)
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def add_batch(self, batch: BatchMessage) -> BatchResult:
        """Store the batch's new records and return the (vin, epoch) highest contiguous seq."""
        db = self._db
        stored = duplicates = conflicts = 0
        db.execute("BEGIN IMMEDIATE")
        try:
            for record in batch.records:
                body = dumps(dict(record.body))
                cursor = db.execute(
                    "INSERT OR IGNORE INTO records (vin, epoch, seq, t_ms, kind, body)"
                    " VALUES (?, ?, ?, ?, ?, ?)",
                    (batch.vin, batch.epoch, record.seq, record.t_ms, record.code, body),
                )
                if cursor.rowcount == 1:
                    stored += 1
                    continue
                duplicates += 1
                first = db.execute(
                    "SELECT t_ms, kind, body FROM records WHERE vin = ? AND epoch = ? AND seq = ?",
                    (batch.vin, batch.epoch, record.seq),
                ).fetchone()
                if first != (record.t_ms, record.code, body):
                    conflicts += 1
            first_seq = batch.records[0].seq
            if batch.prev is not None:
                db.executemany(
                    "INSERT INTO released (vin, epoch, lo, hi) VALUES (?, ?, ?, ?)"
                    " ON CONFLICT (vin, epoch, lo) DO UPDATE SET hi = MAX(hi, excluded.hi)",
                    [(batch.vin, batch.epoch, lo, hi) for lo, hi in _missing(batch)],
                )
            db.executemany(
                "INSERT OR IGNORE INTO drops (vin, epoch, batch_seq, name, count)"
                " VALUES (?, ?, ?, ?, ?)",
                [(batch.vin, batch.epoch, first_seq, n, c) for n, c in batch.drops.items()],
            )
            acked = self._advance(batch.vin, batch.epoch, duplicates, conflicts)
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        return BatchResult(stored=stored, duplicates=duplicates, conflicts=conflicts, acked=acked)

    def _advance(self, vin: str, epoch: int, duplicates: int, conflicts: int) -> int:
        row = self._db.execute(
            "SELECT acked FROM progress WHERE vin = ? AND epoch = ?", (vin, epoch)
        ).fetchone()
        acked: int = 0 if row is None else row[0]
        while True:
            start = acked
            released = self._db.execute(
                "SELECT MAX(hi) FROM released WHERE vin = ? AND epoch = ? AND lo <= ? AND hi > ?",
                (vin, epoch, acked + 1, acked),
            ).fetchone()[0]
            if released is not None:
                acked = int(released)
            cursor = self._db.execute(
                "SELECT seq FROM records WHERE vin = ? AND epoch = ? AND seq > ? ORDER BY seq",
                (vin, epoch, acked),
            )
            try:
                for (seq,) in cursor:
                    if seq != acked + 1:
                        break
                    acked = seq
            finally:
                cursor.close()
            if acked == start:
                break
        self._db.execute(
            "INSERT INTO progress (vin, epoch, acked, duplicates, conflicts) VALUES (?, ?, ?, ?, ?)"
            " ON CONFLICT (vin, epoch) DO UPDATE SET acked = excluded.acked,"
            " duplicates = duplicates + excluded.duplicates,"
            " conflicts = conflicts + excluded.conflicts",
            (vin, epoch, acked, duplicates, conflicts),
        )
        return acked

    def released(self, vin: str) -> int:
        """Sequence numbers acknowledged without a record: the vehicle dropped them."""
        row = self._db.execute(
            "SELECT COALESCE(SUM(p.acked - (SELECT COUNT(*) FROM records r"
            " WHERE r.vin = p.vin AND r.epoch = p.epoch AND r.seq <= p.acked)), 0)"
            " FROM progress p WHERE p.vin = ?",
            (vin,),
        ).fetchone()
        return int(row[0])

    def acked(self, vin: str, epoch: int) -> int:
        """Highest contiguous seq stored for (vin, epoch); 0 when none."""
        row = self._db.execute(
            "SELECT acked FROM progress WHERE vin = ? AND epoch = ?", (vin, epoch)
        ).fetchone()
        return 0 if row is None else int(row[0])

    def add_status(self, status: StatusMessage) -> bool:
        """Store a command result; False if this exact result was stored already."""
        cursor = self._db.execute(
            "INSERT OR IGNORE INTO statuses (vin, command_id, counter, outcome, reason, t_ms)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (
                status.vin,
                status.command_id,
                status.counter,
                status.outcome,
                status.reason or "",
                status.t_ms,
            ),
        )
        return cursor.rowcount == 1

    def statuses(self, vin: str) -> list[StatusMessage]:
        rows = self._db.execute(
            "SELECT vin, command_id, counter, outcome, reason, t_ms FROM statuses"
            " WHERE vin = ? ORDER BY id",
            (vin,),
        ).fetchall()
        return [
            StatusMessage(vin=v, command_id=c, counter=n, outcome=o, reason=r or None, t_ms=t)
            for v, c, n, o, r, t in rows
        ]

    def count_records(self, vin: str | None = None) -> int:
        if vin is None:
            row = self._db.execute("SELECT count(*) FROM records").fetchone()
        else:
            row = self._db.execute("SELECT count(*) FROM records WHERE vin = ?", (vin,)).fetchone()
        return int(row[0])

    def records(self, vin: str, epoch: int) -> list[StoredRecord]:
        rows = self._db.execute(
            "SELECT seq, t_ms, kind, body FROM records WHERE vin = ? AND epoch = ? ORDER BY seq",
            (vin, epoch),
        ).fetchall()
        return [
            StoredRecord(vin=vin, epoch=epoch, seq=s, t_ms=t, kind=k, body=cbor2.loads(b))
            for s, t, k, b in rows
        ]

    def service_stopped(self, vin: str, command_id: str) -> bool:
        """Whether the vehicle's record of stopping on ``command_id`` is stored, with all before it.

        A deactivated TCU ends its service with a ``service`` record (``active`` false,
        naming the command). Until that record and every record before it are stored, the
        backend must keep taking the vehicle's telemetry, or that last record is refused
        and resent for ever.
        """
        rows = self._db.execute(
            "SELECT r.seq, r.body, p.acked FROM records r JOIN progress p"
            " ON p.vin = r.vin AND p.epoch = r.epoch WHERE r.vin = ? AND r.kind = ?",
            (vin, KIND_CODES["service"]),
        ).fetchall()
        for seq, body, acked in rows:
            fields = cbor2.loads(body)
            if (
                fields.get("command_id") == command_id
                and fields.get("active") is False
                and seq <= acked
            ):
                return True
        return False

    def progress(self) -> list[Progress]:
        rows = self._db.execute(
            "SELECT p.vin, p.epoch, count(r.id), p.acked, p.duplicates, p.conflicts"
            " FROM progress p LEFT JOIN records r ON r.vin = p.vin AND r.epoch = p.epoch"
            " GROUP BY p.vin, p.epoch ORDER BY p.vin, p.epoch"
        ).fetchall()
        return [
            Progress(vin=v, epoch=e, stored=s, acked=a, duplicates=d, conflicts=c)
            for v, e, s, a, d, c in rows
        ]

    def drops(self, vin: str) -> dict[str, int]:
        rows = self._db.execute(
            "SELECT name, sum(count) FROM drops WHERE vin = ? GROUP BY name ORDER BY name", (vin,)
        ).fetchall()
        return {name: int(total) for name, total in rows}


def _missing(batch: BatchMessage) -> list[tuple[int, int]]:
    """The sequence ranges a batch says its vehicle no longer holds."""
    out = []
    previous = batch.prev or 0
    for record in batch.records:
        if record.seq > previous + 1:
            out.append((previous + 1, record.seq - 1))
        previous = record.seq
    return out
