"""SQLite files of the backend: the registry, the store and the mailbox share one shape."""

from __future__ import annotations

import contextlib
import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import Final, Self

from cloud_stub.errors import CloudError

__all__ = ["SqliteFile", "connect", "transaction"]

_BUSY_TIMEOUT_S: Final = 10.0


def connect(path: str | os.PathLike[str]) -> sqlite3.Connection:
    """An autocommit connection in WAL mode, waiting politely for other processes' locks."""
    where = os.fspath(path)
    try:
        if where != ":memory:":
            Path(where).parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(where, timeout=_BUSY_TIMEOUT_S, isolation_level=None)
        db.execute("PRAGMA journal_mode = WAL")
        db.execute("PRAGMA synchronous = NORMAL")
    except (OSError, sqlite3.Error) as exc:
        raise CloudError(f"cannot open database {where}: {exc}") from None
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


class SqliteFile:
    """One SQLite file in WAL mode with its schema; a context manager that closes it."""

    SCHEMA: str = ""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self._db = connect(path)
        self._db.executescript(self.SCHEMA)

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
