"""schemathesis against ``/openapi.json``: no 5xx, and every response matches its schema.

The portal runs on a real socket in a thread of its own (its SQLite connections belong to
that thread); the account, the vehicles and the logged-in administrator are made before,
through a second connection to the same files. The live event stream (endless) and the
two calls that would end the session under test (logout, deleting the account) are left
out here; other tests cover them.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from cloud_stub.portal.server import PortalServer, open_portal
from tests.portal.conftest import PASSWORD, VIN_A, VIN_B, register_modules

EXAMPLES = 12
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


class ServerThread:
    """The portal on 127.0.0.1 in a thread with its own event loop."""

    def __init__(self, data: Path) -> None:
        self.data = data
        self.url = ""
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=asyncio.run, args=(self._main(),), daemon=True)

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        async with PortalServer(self.data, "127.0.0.1", 0) as server:
            self.url = server.url.rstrip("/")
            self._ready.set()
            await self._stop.wait()

    def __enter__(self) -> ServerThread:
        self._thread.start()
        assert self._ready.wait(10), "portal did not start"
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._loop is not None and self._stop is not None
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)


@pytest.fixture(scope="module")
def portal_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerThread]:
    data = tmp_path_factory.mktemp("schema") / "cloud"
    register_modules(data, VIN_A, VIN_B)
    portal, reader, registry = open_portal(data)
    try:
        _, _, token = portal.create_account("Fjord", "anne@fjord.example")
        admin = portal.accept_invitation(token, PASSWORD)
        portal.buy(admin, admin.account_id, "vehicle_status", 3)
        portal.add_vehicle(admin, admin.account_id, VIN_A)
        portal.assign(admin, admin.account_id, VIN_A, "vehicle_status")
    finally:
        portal.close()
        reader.close()
        registry.close()
    with ServerThread(data) as server:
        yield server


@pytest.fixture(scope="module")
def admin_session(portal_server: ServerThread) -> dict[str, Any]:
    response = requests.post(
        f"{portal_server.url}/api/login",
        json={"email": "anne@fjord.example", "password": PASSWORD},
        timeout=10,
    )
    response.raise_for_status()
    return {
        "headers": {"X-CSRF-Token": response.json()["csrf_token"]},
        "cookies": {"portal_session": response.cookies["portal_session"]},
    }


@pytest.fixture(scope="module")
def portal_schema(portal_server: ServerThread) -> Any:
    schema = schemathesis.openapi.from_url(f"{portal_server.url}/openapi.json")
    return (
        schema.exclude(path="/api/events")
        .exclude(path="/api/logout")
        .exclude(path="/api/account", method="DELETE")
    )


def test_the_api_keeps_its_contract(portal_schema: Any, admin_session: dict[str, Any]) -> None:
    operations = [result.ok() for result in portal_schema.get_all_operations()]
    assert len(operations) >= 15, [op.label for op in operations]
    tested = []
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def call(case: Any) -> None:
            case.call_and_validate(
                headers=admin_session["headers"],
                cookies=admin_session["cookies"],
                checks=CHECKS,
                timeout=10,
            )

        call()
        tested.append(operation.label)
    assert "POST /api/vehicles/{vin}/commands" in tested
