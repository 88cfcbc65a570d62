from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator

import pytest

from tcu.link.proxy import LinkProxy
from tcu.link.sim import Link

HOST = "127.0.0.1"
TIMEOUT = 5.0


class EchoServer:
    """A real TCP echo server on loopback that closes what it opened."""

    def __init__(self) -> None:
        self.writers: set[asyncio.StreamWriter] = set()
        self.server: asyncio.Server | None = None
        self.port = 0

    async def _echo(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.writers.add(writer)
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()
            self.writers.discard(writer)

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._echo, HOST, 0)
        self.port = self.server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        assert self.server is not None
        self.server.close()
        for writer in list(self.writers):
            writer.transport.abort()
        await self.server.wait_closed()
        await asyncio.sleep(0)


@pytest.fixture
async def echo() -> AsyncIterator[EchoServer]:
    server = EchoServer()
    await server.start()
    yield server
    await server.stop()


async def connect(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.wait_for(asyncio.open_connection(HOST, port), TIMEOUT)


async def close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(ConnectionError):
        await writer.wait_closed()


async def round_trip(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, data: bytes
) -> bytes:
    writer.write(data)
    await writer.drain()
    return await asyncio.wait_for(reader.readexactly(len(data)), TIMEOUT)


async def read_until_closed(reader: asyncio.StreamReader) -> bytes:
    try:
        return await asyncio.wait_for(reader.read(100), TIMEOUT)
    except ConnectionResetError:
        return b""


async def test_data_passes_both_ways_and_is_counted(echo: EchoServer) -> None:
    async with LinkProxy(HOST, 0, HOST, echo.port) as proxy:
        reader, writer = await connect(proxy.port)
        payload = bytes(range(256)) * 400
        assert await round_trip(reader, writer, payload) == payload
        (stats,) = proxy.connections
        assert (stats.up, stats.down) == (len(payload), len(payload))
        await close(writer)
        for _ in range(500):
            if not proxy.connections:
                break
            await asyncio.sleep(0.01)
        assert proxy.history[-1].closed_by == "client"
    assert proxy.counters["bytes_up"] == len(payload)


async def test_cut_drops_the_client_refuses_reconnects_and_restore_heals(echo: EchoServer) -> None:
    async with LinkProxy(HOST, 0, HOST, echo.port) as proxy:
        reader, writer = await connect(proxy.port)
        assert await round_trip(reader, writer, b"ping") == b"ping"

        await proxy.cut()
        assert await read_until_closed(reader) == b""
        await close(writer)
        with pytest.raises(ConnectionRefusedError):
            await connect(proxy.port)
        assert proxy.history[-1].closed_by == "cut"
        assert proxy.counters["dropped_by_cut"] == 1

        await proxy.restore()
        reader, writer = await connect(proxy.port)
        assert await round_trip(reader, writer, b"pong") == b"pong"
        await close(writer)


async def test_latency_delays_each_direction_by_at_least_the_setting(echo: EchoServer) -> None:
    latency = 0.15
    async with LinkProxy(HOST, 0, HOST, echo.port) as proxy:
        proxy.set_latency(latency)
        reader, writer = await connect(proxy.port)
        loop = asyncio.get_running_loop()
        started = loop.time()
        assert await round_trip(reader, writer, b"x" * 10) == b"x" * 10
        assert loop.time() - started >= 2 * latency - 1e-6
        await close(writer)


async def test_bandwidth_throttles_to_at_most_the_setting(echo: EchoServer) -> None:
    rate = 50_000.0
    size = 10_000
    async with LinkProxy(HOST, 0, HOST, echo.port) as proxy:
        proxy.set_bandwidth(rate)
        reader, writer = await connect(proxy.port)
        loop = asyncio.get_running_loop()
        started = loop.time()
        assert await round_trip(reader, writer, b"y" * size) == b"y" * size
        assert loop.time() - started >= size / rate - 1e-6
        await close(writer)


async def test_an_unreachable_upstream_closes_the_client_and_is_counted() -> None:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        dead_port = probe.getsockname()[1]
    async with LinkProxy(HOST, 0, HOST, dead_port) as proxy:
        reader, writer = await connect(proxy.port)
        assert await read_until_closed(reader) == b""
        await close(writer)
        for _ in range(100):
            if proxy.counters["upstream_failures"]:
                break
            await asyncio.sleep(0.01)
        assert proxy.counters["upstream_failures"] == 1


def test_bad_settings_are_rejected() -> None:
    proxy = LinkProxy(HOST, 0, HOST, 1)
    with pytest.raises(ValueError):
        proxy.set_latency(-1.0)
    with pytest.raises(ValueError):
        proxy.set_bandwidth(0.0)
    with pytest.raises(RuntimeError):
        _ = proxy.port


class FakeClock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


async def test_the_model_opens_and_cuts_the_link_and_gets_the_bytes(echo: EchoServer) -> None:
    link = Link.from_dict(
        {"home_plmn": "242-01", "seed": 2, "dead_zones": [{"start": 100, "end": 200}]}
    )
    clock = FakeClock()
    async with LinkProxy(HOST, 0, HOST, echo.port, model=link, clock=clock) as proxy:
        assert not proxy.listening  # still searching at power-on
        with pytest.raises(ConnectionRefusedError):
            await connect(proxy.port)

        clock.t = 30.0
        await proxy.sync()
        assert proxy.listening and link.registered
        reader, writer = await connect(proxy.port)
        assert await round_trip(reader, writer, b"hello") == b"hello"
        usage = link.summary()["bytes_by_plmn"]["242-01"]
        assert (usage["up"], usage["down"]) == (5, 5)

        clock.t = 150.0
        await proxy.sync()
        assert not link.registered
        assert await read_until_closed(reader) == b""
        await close(writer)
        with pytest.raises(ConnectionRefusedError):
            await connect(proxy.port)

        clock.t = 250.0
        await proxy.sync()
        reader, writer = await connect(proxy.port)
        assert await round_trip(reader, writer, b"again") == b"again"
        await close(writer)
    assert link.summary()["bytes_by_plmn"]["242-01"]["up"] == 10
