"""The SIM link made real: a TCP proxy that delays, throttles and cuts connections.

Theory of operation: `LinkProxy` listens on a local port and opens one upstream
connection per client (the TCU's MQTT client to the broker). Each direction is a pump
and a deliverer joined by a queue: the pump reads a chunk, waits for the chunk's
serialisation time at the current bandwidth (so a slow link pushes back on the
sender), and queues it with a due time one latency later; the deliverer writes each
chunk at its due time, preserving order. The link is up while it is not cut by hand
and, when a `Link` model is attached, while the model's modem is registered. When it
goes down the proxy stops listening, so new connections are refused, and aborts every
open connection, so clients see a reset or EOF; when it comes back the proxy listens
on the same port again. With a model, the proxy is the model's driver: it maps its
clock to vehicle time (``speed`` vehicle seconds per clock second), advances the model
at each of its wake-ups (and at least every `poll_s`), takes latency and bandwidth
from it unless set by hand, and charges the bytes it delivers to it.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from types import TracebackType

from tcu.link.sim import Link

CHUNK_BYTES = 65536
CHUNK_SECONDS = 0.02
MIN_CHUNK_BYTES = 256
HISTORY_KEPT = 1000


@dataclass(slots=True)
class ConnectionStats:
    """Bytes carried by one proxied connection, and how it ended."""

    id: int
    peer: str
    opened_at: float
    up: int = 0
    down: int = 0
    closed_at: float | None = None
    closed_by: str | None = None


@dataclass(slots=True, eq=False)
class _Conn:
    stats: ConnectionStats
    client: asyncio.StreamWriter
    upstream: asyncio.StreamWriter
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    finished: asyncio.Event = field(default_factory=asyncio.Event)


class LinkProxy:
    """Asyncio TCP proxy whose latency, bandwidth and availability follow the link."""

    def __init__(
        self,
        listen_host: str,
        listen_port: int,
        upstream_host: str,
        upstream_port: int,
        model: Link | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        speed: float = 1.0,
        poll_s: float = 0.25,
    ) -> None:
        if not speed > 0 or not math.isfinite(speed):
            raise ValueError(f"proxy: speed must be a positive number, got {speed!r}")
        self._listen_host = listen_host
        self._port = listen_port
        self._upstream = (upstream_host, upstream_port)
        self.model = model
        self._clock = clock
        self._speed = speed
        self._poll_s = poll_s
        self._latency: float | None = None
        self._bandwidth: float | None = None
        self._cut = False
        self._closed = False
        self._started = False
        self._server: asyncio.Server | None = None
        self._conns: set[_Conn] = set()
        self._ids = itertools.count(1)
        self._lock = asyncio.Lock()
        self._follower: asyncio.Task[None] | None = None
        self._wall0 = 0.0
        self._vehicle0 = 0.0
        self.history: deque[ConnectionStats] = deque(maxlen=HISTORY_KEPT)
        self.counters = {
            "accepted": 0,
            "turned_away": 0,
            "upstream_failures": 0,
            "dropped_by_cut": 0,
            "bytes_up": 0,
            "bytes_down": 0,
        }

    # -- lifecycle ------------------------------------------------------------

    @property
    def port(self) -> int:
        """The port clients connect to (known once started, also for port 0)."""
        if not self._started:
            raise RuntimeError("proxy: not started")
        return self._port

    @property
    def listening(self) -> bool:
        return self._server is not None

    @property
    def connections(self) -> list[ConnectionStats]:
        """Stats of the connections open now."""
        return [conn.stats for conn in self._conns]

    async def start(self) -> None:
        if self._started:
            raise RuntimeError("proxy: already started")
        self._wall0 = self._clock()
        self._vehicle0 = self.model.t if self.model is not None else 0.0
        await self._listen()
        self._started = True
        if self.model is not None:
            await self.sync()
            self._follower = asyncio.create_task(self._follow())

    async def close(self) -> None:
        self._closed = True
        if self._follower is not None:
            self._follower.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._follower
            self._follower = None
        async with self._lock:
            await self._go_down("proxy")

    async def __aenter__(self) -> LinkProxy:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # -- controls -------------------------------------------------------------

    async def cut(self) -> None:
        """Close every connection and refuse new ones until `restore`."""
        self._cut = True
        await self._apply()

    async def restore(self) -> None:
        """Undo `cut` (the model, if any, must also be registered for service)."""
        self._cut = False
        await self._apply()

    def set_latency(self, seconds: float | None) -> None:
        """One-way delay added to each direction; None: take it from the model (or 0)."""
        if seconds is not None and not (seconds >= 0 and math.isfinite(seconds)):
            raise ValueError(f"proxy: latency must be >= 0 seconds, got {seconds!r}")
        self._latency = seconds

    def set_bandwidth(self, bytes_per_s: float | None) -> None:
        """Throughput of each direction; None: take it from the model (or unlimited)."""
        if bytes_per_s is not None and not (bytes_per_s > 0 and math.isfinite(bytes_per_s)):
            raise ValueError(f"proxy: bandwidth must be > 0 bytes/s, got {bytes_per_s!r}")
        self._bandwidth = bytes_per_s

    # -- the model ------------------------------------------------------------

    def now(self) -> float:
        """Vehicle time: the model's start plus clock time elapsed times `speed`."""
        t = self._vehicle0 + (self._clock() - self._wall0) * self._speed
        return max(t, self.model.t) if self.model is not None else t

    async def sync(self) -> None:
        """Run the model up to now and open or close the link to match it."""
        if self.model is not None:
            self.model.advance(self.now())
        await self._apply()

    async def _follow(self) -> None:
        model = self.model
        assert model is not None
        while True:
            await self.sync()
            delay = self._poll_s
            wake = model.next_wakeup()
            if wake is not None:
                delay = min(delay, max(0.0, (wake - self.now()) / self._speed))
            await asyncio.sleep(delay)

    def _up(self) -> bool:
        if self._cut or self._closed:
            return False
        return self.model is None or self.model.registered

    def _latency_now(self) -> float:
        if self._latency is not None:
            return self._latency
        if self.model is not None:
            return self.model.snapshot(self.now()).latency_s or 0.0
        return 0.0

    def _bandwidth_now(self, up: bool) -> float | None:
        if self._bandwidth is not None:
            return self._bandwidth
        if self.model is not None:
            snap = self.model.snapshot(self.now())
            rate = snap.uplink_bytes_per_s if up else snap.downlink_bytes_per_s
            return rate if rate > 0 else None
        return None

    # -- listening ------------------------------------------------------------

    async def _apply(self) -> None:
        async with self._lock:
            if self._up():
                if self._server is None:
                    await self._listen()
            elif self._server is not None:
                await self._go_down("cut")

    async def _listen(self) -> None:
        self._server = await asyncio.start_server(
            self._on_client, self._listen_host, self._port, reuse_address=True
        )
        if self._port == 0:
            self._port = self._server.sockets[0].getsockname()[1]

    async def _go_down(self, reason: str) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()
        conns = list(self._conns)
        for conn in conns:
            conn.stats.closed_by = conn.stats.closed_by or reason
            if reason == "cut":
                self.counters["dropped_by_cut"] += 1
            for task in conn.tasks:
                task.cancel()
            conn.client.transport.abort()
            conn.upstream.transport.abort()
        for conn in conns:
            await conn.finished.wait()
        if server is not None:
            await server.wait_closed()

    # -- connections ----------------------------------------------------------

    async def _on_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not self._up():
            self.counters["turned_away"] += 1
            writer.transport.abort()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(*self._upstream)
        except OSError:
            self.counters["upstream_failures"] += 1
            writer.transport.abort()
            return
        if not self._up():
            self.counters["turned_away"] += 1
            writer.transport.abort()
            up_writer.transport.abort()
            return
        peer = writer.get_extra_info("peername")
        stats = ConnectionStats(
            id=next(self._ids), peer=f"{peer[0]}:{peer[1]}" if peer else "?", opened_at=self.now()
        )
        conn = _Conn(stats=stats, client=writer, upstream=up_writer)
        self._conns.add(conn)
        self.counters["accepted"] += 1
        conn.tasks = [
            asyncio.create_task(self._pump(reader, up_writer, conn, up=True)),
            asyncio.create_task(self._pump(up_reader, writer, conn, up=False)),
        ]
        graceful = False
        try:
            await asyncio.wait(conn.tasks, return_when=asyncio.FIRST_EXCEPTION)
            graceful = all(
                t.done() and not t.cancelled() and t.exception() is None for t in conn.tasks
            )
        finally:
            for task in conn.tasks:
                task.cancel()
            await asyncio.gather(*conn.tasks, return_exceptions=True)
            for w in (writer, up_writer):
                if graceful:
                    w.close()
                    with contextlib.suppress(OSError):
                        await w.wait_closed()
                else:
                    w.transport.abort()
            if stats.closed_by is None:
                stats.closed_by = "client" if graceful else "error"
            stats.closed_at = self.now()
            self._conns.discard(conn)
            self.history.append(stats)
            conn.finished.set()

    async def _pump(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        conn: _Conn,
        *,
        up: bool,
    ) -> None:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[float, bytes] | None] = asyncio.Queue()
        sender = asyncio.create_task(self._deliver(queue, writer, conn, up=up))
        busy = loop.time()
        try:
            while not sender.done():
                rate = self._bandwidth_now(up)
                size = (
                    CHUNK_BYTES if rate is None else max(MIN_CHUNK_BYTES, int(rate * CHUNK_SECONDS))
                )
                data = await reader.read(size)
                if not data:
                    break
                now = loop.time()
                done = max(now, busy) + (len(data) / rate if rate is not None else 0.0)
                busy = done
                queue.put_nowait((done + self._latency_now(), data))
                if done > now:
                    await asyncio.sleep(done - now)
            queue.put_nowait(None)
            await sender
        finally:
            if not sender.done():
                sender.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await sender

    async def _deliver(
        self,
        queue: asyncio.Queue[tuple[float, bytes] | None],
        writer: asyncio.StreamWriter,
        conn: _Conn,
        *,
        up: bool,
    ) -> None:
        loop = asyncio.get_running_loop()
        while True:
            item = await queue.get()
            if item is None:
                if writer.can_write_eof() and not writer.transport.is_closing():
                    writer.write_eof()
                return
            due, data = item
            delay = due - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            writer.write(data)
            await writer.drain()
            n = len(data)
            if up:
                conn.stats.up += n
                self.counters["bytes_up"] += n
            else:
                conn.stats.down += n
                self.counters["bytes_down"] += n
            if self.model is not None:
                self.model.account(self.now(), up=n if up else 0, down=0 if up else n)
