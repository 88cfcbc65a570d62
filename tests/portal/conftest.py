"""Fixtures of the portal tests: a backend data directory with registered modules."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from cloud_stub.broker import EmbeddedBroker
from cloud_stub.portal.model import Portal, User
from cloud_stub.portal.server import PortalServer, open_portal
from cloud_stub.registry import Registry
from cloud_stub.service import REGISTRY_FILE, Backend
from cloud_stub.testing import VehicleDouble

VIN_A = "WTCUFLEET00000001"
VIN_B = "WTCUFLEET00000002"
VIN_C = "WTCUFLEET00000003"
PASSWORD = "correct horse battery"


def register_modules(data: Path, *vins: str, active: bool = False) -> list[VehicleDouble]:
    doubles = [VehicleDouble(vin) for vin in vins]
    with Registry(data / REGISTRY_FILE) as registry:
        for double in doubles:
            double.register(registry, active=active)
    return doubles


@pytest.fixture
def data(tmp_path: Path) -> Path:
    return tmp_path / "cloud"


@pytest.fixture
def portal(data: Path) -> Iterator[Portal]:
    register_modules(data, VIN_A, VIN_B, VIN_C)
    portal, reader, registry = open_portal(data)
    try:
        yield portal
    finally:
        portal.close()
        reader.close()
        registry.close()


# --- a served portal ------------------------------------------------------------------------


@dataclass
class Served:
    """A backend on a real broker, and the portal on a real socket in front of it."""

    url: str
    data: Path
    backend: Backend
    server: PortalServer
    broker: EmbeddedBroker
    doubles: dict[str, VehicleDouble]

    @property
    def portal(self) -> Portal:
        return self.server.portal

    def client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.url, timeout=10.0)

    def account(self, name: str, admin: str) -> User:
        """An account with a logged-in-able administrator."""
        _, _, token = self.portal.create_account(name, admin)
        return self.portal.accept_invitation(token, PASSWORD)

    def user(self, admin: User, email: str, role: str) -> User:
        _, token = self.portal.invite(admin, admin.account_id, email, role)
        return self.portal.accept_invitation(token, PASSWORD)


async def login(client: httpx.AsyncClient, email: str, password: str = PASSWORD) -> str:
    """Log in; returns the CSRF token (the client keeps the cookie)."""
    response = await client.post("/api/login", json={"email": email, "password": password})
    assert response.status_code == 200, response.text
    csrf: str = response.json()["csrf_token"]
    client.headers["X-CSRF-Token"] = csrf
    return csrf


@pytest.fixture
async def served(data: Path, embedded_broker: EmbeddedBroker) -> AsyncIterator[Served]:
    doubles = {vin: VehicleDouble(vin) for vin in (VIN_A, VIN_B, VIN_C)}
    with Registry(data / REGISTRY_FILE) as registry:
        for double in doubles.values():
            double.register(registry, active=False)
    async with (
        Backend(embedded_broker.url, data) as backend,
        PortalServer(data, "127.0.0.1", 0, sender=backend) as server,
    ):
        yield Served(
            url=server.url.rstrip("/"),
            data=data,
            backend=backend,
            server=server,
            broker=embedded_broker,
            doubles=doubles,
        )


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Name where the browser tests left their screenshots."""
    from tests.helpers import REPO

    artefacts = REPO / "tmp" / "artefacts" / "portal"
    if artefacts.is_dir() and any(artefacts.glob("*.png")):
        terminalreporter.write_line(f"portal screenshots: {artefacts}")
