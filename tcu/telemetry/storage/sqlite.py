"""One SQLite file: opened in WAL mode with its schema, closed by ``close`` or ``with``.

Theory of operation. Every durable store of the project (the vehicle's outbox, the
backend's registry and store) is one SQLite file used from one process at a time,
written in short transactions and read by other processes for statistics. ``SqliteFile``
opens it once: autocommit (transactions are explicit), WAL journal (readers never block
the writer), the given ``synchronous`` level, a busy timeout for the other processes' locks,
then the schema. Any failure to open is the caller's error class, naming the file.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Final, Literal

from tcu.lifecycle import Closing

Synchronous = Literal["FULL", "NORMAL"]
BUSY_TIMEOUT_S: Final = 10.0


def connect(where: str, *, synchronous: Synchronous = "NORMAL") -> sqlite3.Connection:
    """An autocommit connection in WAL mode that waits for other processes' locks.

    Raises ``sqlite3.Error`` (or ``OSError``); the callers name the file in their own error.
    """
    db = sqlite3.connect(where, timeout=BUSY_TIMEOUT_S, isolation_level=None)
    try:
        mode = db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if where != ":memory:" and str(mode).lower() != "wal":
            raise sqlite3.OperationalError(f"WAL mode refused (got {mode})")
        db.execute(f"PRAGMA synchronous={synchronous}")
    except BaseException:
        db.close()
        raise
    return db


@contextlib.contextmanager
def transaction(db: sqlite3.Connection) -> Iterator[None]:
    """``BEGIN IMMEDIATE`` ... ``COMMIT``; ``ROLLBACK`` on any exception."""
    db.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


class SqliteFile(Closing):
    """A SQLite file in WAL mode with its schema; a context manager that closes it.

    The schema is the ``schema`` argument, else the class's ``SCHEMA``; a failure to open is
    the class's ``error``, naming the file as ``what`` it is.
    """

    SCHEMA: str = ""
    error: type[Exception] = OSError
    what = "database"

    def __init__(
        self,
        path: str | os.PathLike[str],
        schema: str | None = None,
        *,
        synchronous: Synchronous = "NORMAL",
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
            self._db = connect(where, synchronous=synchronous)
            self._db.executescript(self.SCHEMA if schema is None else schema)
        except (OSError, sqlite3.Error) as exc:
            raise self.error(f"cannot open {self.what} {where}: {exc}") from None

    def close(self) -> None:
        self._db.close()
