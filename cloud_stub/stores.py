"""Choosing the store: SQLite at a file path, PostgreSQL for a ``postgresql://`` URL."""

from __future__ import annotations

import os

from cloud_stub.errors import CloudError
from cloud_stub.store import RecordStore, Store


def open_store(target: str | os.PathLike[str]) -> RecordStore:
    """`Store` at a file path, or `PostgresStore` for a ``postgresql://`` URL."""
    where = os.fspath(target)
    if where.startswith(("postgresql://", "postgres://")):
        try:
            from cloud_stub.store_pg import PostgresStore
        except ImportError:
            raise CloudError(
                "a postgresql:// store needs psycopg: pip install 'tcu-sim[scale]'"
            ) from None
        return PostgresStore(where)
    return Store(where)
