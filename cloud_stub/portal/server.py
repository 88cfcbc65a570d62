"""Serving the portal: uvicorn in the backend's event loop, on a socket we bind ourselves.

`open_portal` opens the portal's database next to the backend's registry and store (in
the same data directory); `PortalServer` runs the web application until stopped. Binding
the socket here lets ``--http 127.0.0.1:0`` pick a free port and report the real one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import Final, Self

import uvicorn

from cloud_stub.errors import CloudError
from cloud_stub.portal.model import PORTAL_FILE, Portal
from cloud_stub.portal.view import StoreReader
from cloud_stub.portal.web import CommandSender, PortalContext, create_app
from cloud_stub.registry import Registry
from cloud_stub.service import REGISTRY_FILE, STORE_FILE

__all__ = ["PortalServer", "open_portal", "parse_http"]

_STOP_S: Final = 5.0


def open_portal(data_dir: str | os.PathLike[str]) -> tuple[Portal, StoreReader, Registry]:
    """The portal, a store reader and a registry, all on the backend's data directory."""
    data = Path(data_dir)
    registry = Registry(data / REGISTRY_FILE)
    reader = StoreReader(data / STORE_FILE)
    portal = Portal(
        data / PORTAL_FILE,
        is_registered=lambda vin: registry.find(vin) is not None,
        record_mark=reader.mark,
    )
    return portal, reader, registry


def parse_http(text: str) -> tuple[str, int]:
    """``HOST:PORT`` for ``--http``; port 0 picks a free one."""
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise CloudError(f"--http {text!r}: expected HOST:PORT, e.g. 127.0.0.1:8080")
    return host.strip("[]"), int(port)


class _Server(uvicorn.Server):
    """uvicorn without its own signal handlers: the command that runs it owns the signals."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class PortalServer:
    """The portal's web application on ``host:port`` until `stop`."""

    def __init__(
        self,
        data_dir: str | os.PathLike[str],
        host: str,
        port: int,
        *,
        sender: CommandSender | None = None,
    ) -> None:
        self.portal, self.reader, self._registry = open_portal(data_dir)
        self.context = PortalContext(portal=self.portal, reader=self.reader, sender=sender)
        self._host, self._port = host, port
        self._server: uvicorn.Server | None = None
        self._task: asyncio.Task[None] | None = None
        self._socket: socket.socket | None = None
        self.url = ""

    async def start(self) -> str:
        family = socket.AF_INET6 if ":" in self._host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((self._host, self._port))
            sock.listen(128)
            sock.setblocking(False)
        except OSError as exc:
            sock.close()
            raise CloudError(f"--http {self._host}:{self._port}: {exc.strerror}") from None
        self._socket = sock
        port = sock.getsockname()[1]
        shown = f"[{self._host}]" if family == socket.AF_INET6 else self._host
        self.url = f"http://{shown}:{port}/"
        config = uvicorn.Config(
            create_app(self.context),
            log_level=logging.WARNING,
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=1,
        )
        server = self._server = _Server(config)
        self._task = asyncio.create_task(server.serve(sockets=[sock]), name="portal-http")
        while not server.started:
            if self._task.done():
                self._task.result()
                raise CloudError("the portal's web server stopped at start")
            await asyncio.sleep(0.01)
        return self.url

    async def stop(self) -> None:
        self.context.stopping.set()
        if self._server is not None:
            self._server.should_exit = True
        if self._task is not None:
            try:
                await asyncio.wait_for(self._task, _STOP_S)
            except TimeoutError:
                self._task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._task
            self._task = None
        if self._socket is not None:
            self._socket.close()
        self.portal.close()
        self.reader.close()
        self._registry.close()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()
