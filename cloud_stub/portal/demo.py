"""The portal in ``tcu demo``: a demo account holding the demo van, served beside the backend.

`DemoPortal` is handed the demo's backend once the van is provisioned: it opens the portal on
the backend's data directory, creates the account ``Demo Fleet`` with a known login, buys
every service product, adds the van and assigns the products. The replay itself sends the
signed activation once its TCU runs (and waits for the van to accept it), so the switch the
assignment decides is already on its way and is not sent twice.
"""

from __future__ import annotations

from typing import Final

from cloud_stub.portal.rules import PRODUCTS
from cloud_stub.portal.server import PortalServer
from cloud_stub.service import Backend

__all__ = ["DEMO_ACCOUNT", "DEMO_EMAIL", "DEMO_PASSWORD", "DemoPortal"]

DEMO_ACCOUNT: Final = "Demo Fleet"
DEMO_EMAIL: Final = "admin@demo.example"
DEMO_PASSWORD: Final = "demo-password"


class DemoPortal:
    """Serves the portal for the demo's backend on ``host:port`` (port 0: a free one)."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.server: PortalServer | None = None

    async def attach(self, backend: Backend, vin: str) -> str:
        """Serve the portal for `backend`, with `vin` in the demo account; returns the URL."""
        server = self.server = PortalServer(backend.data_dir, self.host, self.port, sender=backend)
        portal = server.portal
        _, _, token = portal.create_account(DEMO_ACCOUNT, DEMO_EMAIL)
        admin = portal.accept_invitation(token, DEMO_PASSWORD)
        for product in PRODUCTS:
            portal.buy(admin, admin.account_id, product, 10)
        portal.add_vehicle(admin, admin.account_id, vin)
        for product in PRODUCTS:
            portal.assign(admin, admin.account_id, vin, product)
        return await server.start()

    async def stop(self) -> None:
        if self.server is not None:
            await self.server.stop()
            self.server = None
