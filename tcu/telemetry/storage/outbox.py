"""The durable outbox: every record is on disk before it may leave, until it is acknowledged.

Theory of operation. One SQLite file in WAL mode holds the records (their wire encoding,
keyed by boot epoch and seq, which is also production order), the drop counters and a
few persisted values (boot epoch, last accepted downlink counter, service state).
``append`` commits a batch of records in one transaction before it returns, so a record
the uplink can see is a committed record; ``ack(epoch, seq)`` deletes the records of that
epoch up to seq, and nothing else deletes a record except the drop policy.

Durability: ``synchronous=FULL`` by default. In WAL mode NORMAL already survives the
process being killed (the WAL is written before the commit returns), but a commit may be
lost if the power goes before the next checkpoint; a van's 12 V supply does go, and
commits are few (one per tick that produced records), so the fsync per commit is cheap
insurance. NORMAL is available for benches where speed matters more. ``MEMORY`` (the path
``":memory:"``) keeps the same tables in the process's memory, for fleets of thousands of
simulated vans where a file per van would exhaust the file descriptors.

Bounds: past ``cap`` records the outbox drops the oldest routine snapshots, then the
oldest change events; verdicts, sessions, alarms, command results, service and link
records are dropped (oldest first) only past ``hard_cap``. Every drop is counted by kind.
The uplink attaches the counters to the next batch (``drops_for_batch``) and the
counters are reduced by what was reported only once that batch is acknowledged, so a
count is never lost, though it may be reported twice if an ack is lost.
"""

from __future__ import annotations

import os
import sqlite3
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Final

from tcu.errors import ConfigError, DecodeError, TcuError
from tcu.telemetry.codec.schema import decode_record, encode_record
from tcu.telemetry.records import KIND_CODES, KIND_NAMES, Record, drop_class
from tcu.telemetry.storage.sqlite import SqliteFile, Synchronous

_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS records (
    epoch INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    vin TEXT NOT NULL,
    kind INTEGER NOT NULL,
    class INTEGER NOT NULL,
    wire BLOB NOT NULL,
    PRIMARY KEY (epoch, seq)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS records_by_class ON records (class, epoch, seq);
CREATE TABLE IF NOT EXISTS drops (kind TEXT PRIMARY KEY, count INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""

EPOCH: Final = "epoch"
DOWNLINK_COUNTER: Final = "downlink_counter"
SERVICE_ACTIVE: Final = "service_active"
MEMORY: Final = ":memory:"


class OutboxError(TcuError):
    """The outbox file cannot be opened or written."""


class Outbox(SqliteFile):
    """Records waiting for the backend's acknowledgement, in production order."""

    error = OutboxError
    what = "outbox"

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        cap: int = 10_000,
        hard_cap: int | None = None,
        synchronous: Synchronous = "FULL",
    ) -> None:
        if cap < 1:
            raise ConfigError(f"outbox cap must be >= 1, got {cap}")
        hard = hard_cap if hard_cap is not None else cap + cap // 2
        if hard < cap:
            raise ConfigError(f"outbox hard cap {hard} is below the cap {cap}")
        if synchronous not in ("FULL", "NORMAL"):
            raise ConfigError(f"outbox synchronous must be FULL or NORMAL, not {synchronous!r}")
        super().__init__(path, _SCHEMA, synchronous=synchronous)
        self.cap = cap
        self.hard_cap = hard
        try:
            self._depth: int = self._db.execute("SELECT COUNT(*) FROM records").fetchone()[0]
        except sqlite3.Error as exc:
            raise OutboxError(f"outbox {self.path}: {exc}") from None
        self.max_depth_seen = self._depth
        self.dropped: Counter[str] = Counter()
        self.last_dropped: list[tuple[int, int, str]] = []  # (epoch, seq, kind), last append
        self._report: tuple[int, int, dict[str, int]] | None = None

    # --- lifecycle ----------------------------------------------------------------------------

    def start_epoch(self) -> int:
        """A new boot: the persisted epoch plus one, committed before it is returned."""
        with self._transaction():
            epoch = self._meta(EPOCH, 0) + 1
            self._set_meta(EPOCH, epoch)
        return epoch

    @property
    def epoch(self) -> int:
        """The epoch of the latest boot (0 before the first)."""
        return self._meta(EPOCH, 0)

    # --- records ------------------------------------------------------------------------------

    def append(self, records: Sequence[Record]) -> dict[str, int]:
        """Commit `records` in one transaction; returns what the caps dropped, by kind."""
        if not records:
            return {}
        rows = [
            (r.epoch, r.seq, r.vin, KIND_CODES[r.kind], drop_class(r.kind), encode_record(r))
            for r in records
        ]
        try:
            with self._transaction():
                self._db.executemany("INSERT INTO records VALUES (?, ?, ?, ?, ?, ?)", rows)
                depth = self._depth + len(rows)
                dropped: Counter[str] = Counter()
                self.last_dropped = []
                for cls, limit in ((0, self.cap), (1, self.cap), (2, self.hard_cap)):
                    if depth > limit:
                        for code, epoch, seq in self._drop_oldest(cls, depth - limit):
                            kind = KIND_NAMES[code]
                            dropped[kind] += 1
                            self.last_dropped.append((epoch, seq, kind))
                            depth -= 1
                for kind, count in dropped.items():
                    self._db.execute(
                        "INSERT INTO drops VALUES (?, ?)"
                        " ON CONFLICT (kind) DO UPDATE SET count = count + excluded.count",
                        (kind, count),
                    )
        except sqlite3.IntegrityError as exc:
            raise ValueError(f"record already in the outbox: {exc}") from None
        except sqlite3.Error as exc:
            raise OutboxError(f"outbox {self.path}: cannot store records: {exc}") from None
        self._depth = depth
        self.max_depth_seen = max(self.max_depth_seen, depth)
        self.dropped.update(dropped)
        return dict(dropped)

    def _drop_oldest(self, cls: int, n: int) -> list[tuple[int, int, int]]:
        rows = self._db.execute(
            "DELETE FROM records WHERE (epoch, seq) IN"
            " (SELECT epoch, seq FROM records WHERE class = ? ORDER BY epoch, seq LIMIT ?)"
            " RETURNING kind, epoch, seq",
            (cls, n),
        ).fetchall()
        return [(kind, epoch, seq) for kind, epoch, seq in rows]

    def pending(self, limit: int = 100, *, after: tuple[int, int] | None = None) -> list[Record]:
        """Up to `limit` unacknowledged records in production order, after (epoch, seq)."""
        return [record for record, _ in self.pending_wire(limit, after=after)]

    def pending_wire(
        self, limit: int = 100, *, after: tuple[int, int] | None = None
    ) -> list[tuple[Record, bytes]]:
        """As `pending`, each record with its wire encoding."""
        epoch, seq = after if after is not None else (-1, 0)
        rows = self._db.execute(
            "SELECT epoch, vin, wire FROM records WHERE (epoch, seq) > (?, ?)"
            " ORDER BY epoch, seq LIMIT ?",
            (epoch, seq, limit),
        ).fetchall()
        out = []
        for row_epoch, vin, wire in rows:
            try:
                out.append((decode_record(wire, vin=vin, epoch=row_epoch), bytes(wire)))
            except DecodeError as exc:
                raise OutboxError(f"outbox {self.path}: damaged record: {exc}") from None
        return out

    def count_through(self, epoch: int, seq: int) -> int:
        """How many records are held up to and including (epoch, seq) in production order."""
        row = self._db.execute(
            "SELECT COUNT(*) FROM records WHERE (epoch, seq) <= (?, ?)", (epoch, seq)
        ).fetchone()
        return int(row[0])

    def ack(self, epoch: int, seq: int) -> int:
        """The backend holds every record of `epoch` up to `seq`: delete them. Returns how many."""
        with self._transaction():
            deleted = self._db.execute(
                "DELETE FROM records WHERE epoch = ? AND seq <= ?", (epoch, seq)
            ).rowcount
            report = self._report
            if report is not None and report[0] == epoch and report[1] <= seq:
                for kind, count in report[2].items():
                    self._db.execute(
                        "UPDATE drops SET count = MAX(0, count - ?) WHERE kind = ?", (count, kind)
                    )
                self._db.execute("DELETE FROM drops WHERE count = 0")
                self._report = None
        self._depth -= deleted
        return int(deleted)

    def depth(self) -> int:
        return self._depth

    # --- drop counters ------------------------------------------------------------------------

    def drop_counts(self) -> dict[str, int]:
        """Drops not yet reported in an acknowledged batch, by kind."""
        rows = self._db.execute("SELECT kind, count FROM drops ORDER BY kind").fetchall()
        return {kind: count for kind, count in rows if count > 0}

    def drops_for_batch(self, epoch: int, last_seq: int) -> dict[str, int]:
        """The counters to put in the batch ending at (epoch, last_seq); {} if one is in flight.

        They are subtracted when an ack covers that batch; `resend` makes them due again.
        """
        if self._report is not None:
            return {}
        counts = self.drop_counts()
        if counts:
            self._report = (epoch, last_seq, counts)
        return counts

    def resend(self) -> None:
        """The uplink starts over from the oldest pending record (reconnect, ack timeout)."""
        self._report = None

    # --- persisted values ---------------------------------------------------------------------

    def get(self, key: str, default: int = 0) -> int:
        return self._meta(key, default)

    def save_downlink(self, counter: int, active: bool | None) -> None:
        """Persist the last accepted downlink counter and, when given, the service state."""
        with self._transaction():
            self._set_meta(DOWNLINK_COUNTER, counter)
            if active is not None:
                self._set_meta(SERVICE_ACTIVE, int(active))

    def _meta(self, key: str, default: int) -> int:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return default if row is None else int(row[0])

    def _set_meta(self, key: str, value: int) -> None:
        self._db.execute(
            "INSERT INTO meta VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (key, value),
        )

    def _transaction(self) -> _Transaction:
        return _Transaction(self._db, self.path)

    def stats(self) -> dict[str, object]:
        return {
            "depth": self._depth,
            "max_depth_seen": self.max_depth_seen,
            "cap": self.cap,
            "hard_cap": self.hard_cap,
            "dropped": dict(sorted(self.dropped.items())),
            "unreported_drops": self.drop_counts(),
        }


class _Transaction:
    def __init__(self, db: sqlite3.Connection, path: Path) -> None:
        self.db = db
        self.path = path

    def __enter__(self) -> None:
        try:
            self.db.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise OutboxError(f"outbox {self.path}: {exc}") from None

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            try:
                self.db.execute("COMMIT")
                return
            except sqlite3.Error as commit_exc:
                self.db.execute("ROLLBACK")
                raise OutboxError(f"outbox {self.path}: commit failed: {commit_exc}") from None
        self.db.execute("ROLLBACK")
