"""SQLite files of the backend: the registry, the store and the mailbox share one shape."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

from cloud_stub.errors import CloudError
from tcu.telemetry.storage.sqlite import SqliteFile as BaseSqliteFile
from tcu.telemetry.storage.sqlite import connect as open_connection
from tcu.telemetry.storage.sqlite import transaction

__all__ = ["SqliteFile", "connect", "transaction"]


def connect(path: str | os.PathLike[str]) -> sqlite3.Connection:
    """An autocommit connection in WAL mode, waiting politely for other processes' locks."""
    where = os.fspath(path)
    try:
        if where != ":memory:":
            Path(where).parent.mkdir(parents=True, exist_ok=True)
        return open_connection(where)
    except (OSError, sqlite3.Error) as exc:
        raise CloudError(f"cannot open database {where}: {exc}") from None


class SqliteFile(BaseSqliteFile):
    """One SQLite file of the backend in WAL mode with its ``SCHEMA``; closes on ``with``."""

    error = CloudError
