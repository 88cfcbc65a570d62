"""Fixtures for the backend at scale: a throwaway PostgreSQL cluster and a store of each kind.

``postgres_cluster`` is one cluster for the session (``initdb`` + ``pg_ctl`` in a temporary
folder, 127.0.0.1, a free port); each test that needs it gets its own database. Without
PostgreSQL the tests that need it are skipped, unless ``CI=true``: then they fail.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from cloud_stub.pgserver import PostgresCluster, find_postgres
from cloud_stub.store import RecordStore
from cloud_stub.stores import open_store


def require_service(found: object, message: str) -> None:
    """Skip without the service; fail instead when CI=true (CI installs it)."""
    if found:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(message + " and CI=true")
    pytest.skip(message)


@pytest.fixture(scope="session")
def postgres_cluster() -> Iterator[PostgresCluster]:
    require_service(find_postgres(), "PostgreSQL not found (apt-get install postgresql)")
    with PostgresCluster(fsync=False) as cluster:
        yield cluster


@pytest.fixture
def postgres_url(postgres_cluster: PostgresCluster) -> str:
    return postgres_cluster.database()


@pytest.fixture(params=["sqlite", "postgresql"])
def store_target(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Where a store lives: an SQLite file, or a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return str(tmp_path / "store.sqlite")
    url: str = request.getfixturevalue("postgres_url")
    return url


@pytest.fixture
def any_store(store_target: str) -> Iterator[RecordStore]:
    with open_store(store_target) as store:
        yield store
