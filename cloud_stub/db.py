"""SQLite connections shared by the registry and the store."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path
from typing import Final

from cloud_stub.errors import CloudError

__all__ = ["connect"]

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
