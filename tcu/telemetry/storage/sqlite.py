"""One SQLite file: opened in WAL mode with its schema, closed by ``close`` or ``with``.

Theory of operation. Every durable store of the project (the vehicle's outbox, the
backend's registry and store) is one SQLite file used from one process at a time,
written in short transactions and read by other processes for statistics. ``SqliteFile``
opens it once: autocommit (transactions are explicit), WAL journal (readers never block
the writer), the given ``synchronous`` level, a busy timeout for the other processes' locks,
then the schema. Any failure to open is the caller's error class, naming the file.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path
from types import TracebackType
from typing import Final, Literal, Self

Synchronous = Literal["FULL", "NORMAL"]
BUSY_TIMEOUT_S: Final = 10.0


class SqliteFile:
    """A SQLite file in WAL mode with its schema; a context manager that closes it."""

    error: type[Exception] = OSError
    what = "database"

    def __init__(
        self, path: str | os.PathLike[str], schema: str, *, synchronous: Synchronous = "NORMAL"
    ) -> None:
        where = os.fspath(path)
        self.path = Path(where)
        if where != ":memory:":
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                message = f"{self.what} {where}: cannot create its directory: {exc.strerror}"
                raise self.error(message) from None
        try:
            self._db = sqlite3.connect(where, timeout=BUSY_TIMEOUT_S, isolation_level=None)
            mode = self._db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if where != ":memory:" and str(mode).lower() != "wal":
                raise sqlite3.OperationalError(f"WAL mode refused (got {mode})")
            self._db.execute(f"PRAGMA synchronous={synchronous}")
            self._db.executescript(schema)
        except (OSError, sqlite3.Error) as exc:
            raise self.error(f"cannot open {self.what} {where}: {exc}") from None

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
