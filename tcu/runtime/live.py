"""The live driver: the TCU core on a real CAN bus, with the wall clock as vehicle time.

Theory of operation. ``LiveDriver`` owns a python-can bus (any interface, see
``tcu.runtime.bus``), the monotonic clock and an asyncio loop. Vehicle time ``now`` is the
monotonic time since the driver was made. Frames arrive through ``can.Notifier`` into a
``can.AsyncBufferedReader``; the driver drains the reader into the host's fast path
(``host.frame(msg, now)``) and, when the buffer is empty, waits for the next frame or the
core's ``next_deadline``, whichever comes first, and fires a ``Tick`` then. Events from
elsewhere (commands injected by a bench) go through ``inject``; the MQTT transport hands
acks and downlinks to the host itself. Every action is carried out by the ``Host``
(``tcu.runtime.host``), as in every other driver; the driver is its bus port
(``SendFrame`` onto the bus, counted as suppressed in listen-only mode).

The bus sits behind a ``GuardedBus``, so an adapter that vanishes is a report, not an
exception: the driver counts it, stops the Notifier, closes what is left of the bus and
reopens the same ``BusSpec`` with exponential backoff in a worker thread, while timers keep
firing (a lock request still times out, telemetry still snapshots). A bus-off error frame
takes the same path, which re-initialises the controller on interfaces that need it. A
request frame that cannot be sent while the adapter is away is counted, not queued: a
lock request delivered late is worse than one reported as failed.

``LiveSession`` assembles a bench around it: the host on the wall clock (the TCU every
driver runs: the services, and with an outbox the telemetry policy, and with a keystore
the signed downlink), the durable outbox, and the MQTT transport through a ``LinkProxy``
when a broker is given; ``serve`` adds the signal handlers and the status line.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import can

from tcu.can.setup import load_bus_setup
from tcu.errors import BusError, ConfigError
from tcu.events import Tick
from tcu.link.proxy import LinkProxy
from tcu.link.sim import Link, LinkConfig, Position
from tcu.runtime.backoff import Backoff
from tcu.runtime.bus import (
    SOCKETCAN_LAYOUT,
    BusHealth,
    BusSpec,
    GuardedBus,
    close_bus,
    describe_fault,
    open_bus,
)
from tcu.runtime.host import Host, NoTransport, Sink, WallClock
from tcu.runtime.mqtt import BrokerURL, TelemetryUplink
from tcu.runtime.mqtt import Protocol as MqttProtocol
from tcu.services import DEFAULT_VIN, VehicleConfig
from tcu.telemetry.policy import TelemetryConfig
from tcu.telemetry.storage.identity import load_identity, validate_vin
from tcu.telemetry.storage.outbox import Outbox
from tcu.vehicle.catalogue import CATALOGUE, LATITUDE, LONGITUDE

TICK = Tick()
NOTIFIER_TIMEOUT = 0.1
SEND_TIMEOUT = 0.1
MAX_IDLE_WAIT = 0.5
DRAIN_BATCH = 512
RATE_WINDOW = 2


@dataclass(slots=True)
class LiveStats:
    frames: int = 0
    frames_sent: int = 0
    sends_suppressed: int = 0
    send_failures: int = 0
    ticks: int = 0
    events: int = 0
    last_frame_at: float | None = None
    faults: list[str] = field(default_factory=list)


_WAKE = can.Message(arbitration_id=0, data=b"")


class LiveDriver:
    """The TCU core on a live bus; ``await run()`` until ``request_stop``."""

    def __init__(
        self,
        host: Host,
        spec: BusSpec,
        *,
        on_report: Callable[[str], None] | None = None,
        backoff: Backoff | None = None,
        opener: Callable[[BusSpec], can.BusABC] = open_bus,
        notifier_timeout: float = NOTIFIER_TIMEOUT,
        send_timeout: float = SEND_TIMEOUT,
    ) -> None:
        self.host = host
        self.clock = host.clock
        self.spec = spec
        self.listen_only = spec.listen_only
        self.on_report = on_report
        self.backoff = backoff or Backoff(0.1, 5.0, jitter=False)
        self.opener = opener
        self.notifier_timeout = notifier_timeout
        self.send_timeout = send_timeout
        self.health = BusHealth()
        self.stats = LiveStats()
        self.reports: deque[str] = deque(maxlen=500)
        self._classify = spec.interface in SOCKETCAN_LAYOUT
        self._bus: GuardedBus | None = None
        self._notifier: can.Notifier | None = None
        self._reader: can.AsyncBufferedReader | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()
        self._reopening: asyncio.Task[None] | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._per_second: deque[list[int]] = deque(maxlen=RATE_WINDOW + 2)
        host.send_frame = self._send_frame
        host.add_sink(_Reports(self))
        self.running = asyncio.Event()

    # --- public face ---------------------------------------------------------------------

    @property
    def now(self) -> float:
        """Vehicle time: the host's wall clock."""
        return self.clock.now

    @property
    def bus_open(self) -> bool:
        return self._bus is not None

    def frame_rate(self) -> float:
        """Frames per second over the last few whole seconds."""
        second = int(self.now)
        span = min(RATE_WINDOW, second)
        if span <= 0:
            return 0.0
        return sum(n for s, n in self._per_second if second - span <= s < second) / span

    def inject(self, event: Any) -> None:
        """Hand ``event`` to the host now; it carries out what the core returns."""
        now = self.now
        self.stats.events += 1
        self.host.handle(event, now)
        self._tick_if_due(now)

    def request_stop(self) -> None:
        """Stop ``run`` soon; safe from a signal handler and from other threads."""
        loop = self._loop
        if loop is None or loop.is_closed():
            self._stopping.set()
            return
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(self._stop_now)

    # --- the loop ------------------------------------------------------------------------

    async def run(self) -> LiveStats:
        """Open the bus (BusError if it cannot be opened at all) and serve until stopped."""
        self._loop = asyncio.get_running_loop()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tcu-bus-open")
        try:
            if not self._stopping.is_set():
                self.health.open_attempts += 1
                inner = await self._loop.run_in_executor(self._executor, self.opener, self.spec)
                self._attach(inner)
                self._report(f"CAN bus {self.spec.describe()} open")
            self.running.set()
            await self._serve()
        finally:
            self._stopping.set()
            self._wake.set()
            if self._reopening is not None:
                await self._reopening
                self._reopening = None
            self._detach()
            self._executor.shutdown(wait=True)
            self.health.state = "closed"
        return self.stats

    async def _serve(self) -> None:
        while not self._stopping.is_set():
            reader = self._reader
            if reader is not None and not reader.buffer.empty():
                self._drain(reader)
                await asyncio.sleep(0)
                continue
            now = self.now
            self._tick_if_due(now)
            wait = min(MAX_IDLE_WAIT, max(0.0, self.host.core.next_deadline - self.now))
            if reader is None:
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), wait)
                continue
            try:
                msg = await asyncio.wait_for(reader.buffer.get(), wait)
            except TimeoutError:
                continue
            if msg is not _WAKE:
                self._frame(msg)

    def _drain(self, reader: can.AsyncBufferedReader) -> None:
        buffer = reader.buffer
        for _ in range(DRAIN_BATCH):
            try:
                msg = buffer.get_nowait()
            except asyncio.QueueEmpty:
                return
            if msg is not _WAKE:
                self._frame(msg)

    def _frame(self, msg: can.Message) -> None:
        now = self.now
        stats = self.stats
        stats.frames += 1
        stats.last_frame_at = now
        per_second = self._per_second
        second = int(now)
        if per_second and per_second[-1][0] == second:
            per_second[-1][1] += 1
        else:
            per_second.append([second, 1])
        if msg.is_error_frame:
            for change in self.health.on_error_frame(msg, layout_known=self._classify):
                self._report(change)
            if self.health.state == "bus-off":
                self._lose("bus-off", adapter=False)
        host = self.host
        actions = host.frame(msg, now)
        if actions:
            host.carry_out(actions, now)
        self._tick_if_due(now)

    def _tick_if_due(self, now: float) -> None:
        host = self.host
        for _ in range(8):
            if host.core.next_deadline > now:
                return
            self.stats.ticks += 1
            host.handle(TICK, now)

    def _send_frame(self, msg: can.Message, now: float) -> None:
        self._send(msg)

    def _send(self, msg: can.Message) -> None:
        if self.listen_only:
            self.stats.sends_suppressed += 1
            return
        bus = self._bus
        if bus is None:
            self.stats.send_failures += 1
            self.health.send_errors += 1
            self._report(f"error: frame 0x{msg.arbitration_id:X} not sent: the CAN bus is away")
            return
        try:
            bus.send(msg, self.send_timeout)
        except BusError as e:
            self.stats.send_failures += 1
            self.health.send_errors += 1
            self._report(f"error: frame 0x{msg.arbitration_id:X} not sent: {e}")
        else:
            self.stats.frames_sent += 1

    # --- the bus and its faults ------------------------------------------------------------

    def _attach(self, inner: can.BusABC) -> None:
        loop = self._loop
        assert loop is not None

        def on_fault(exc: BaseException) -> None:
            loop.call_soon_threadsafe(self._on_fault, exc)

        def on_bad_input(exc: BaseException) -> None:
            loop.call_soon_threadsafe(self._on_bad_input, exc)

        bus = GuardedBus(inner, on_fault=on_fault, on_bad_input=on_bad_input)
        reader = can.AsyncBufferedReader()
        try:
            notifier = can.Notifier(bus, [reader], timeout=self.notifier_timeout, loop=loop)
        except Exception:
            bus.shutdown()
            raise
        self._bus, self._reader, self._notifier = bus, reader, notifier
        previous = self.health.state
        change = self.health.enter("active")
        if change and previous not in ("closed", "lost"):
            self._report(change)
        self._wake.set()

    def _detach(self) -> None:
        bus, notifier, reader = self._bus, self._notifier, self._reader
        self._bus = self._notifier = self._reader = None
        if bus is not None:
            bus.close_reads()
        if notifier is not None:
            notifier.stop(timeout=self.notifier_timeout * 10)
        if reader is not None:
            self._drain(reader)
            reader.buffer.put_nowait(_WAKE)
        if bus is not None:
            bus.shutdown()

    def _on_fault(self, exc: BaseException) -> None:
        self._lose(describe_fault(exc), adapter=True)

    def _on_bad_input(self, exc: BaseException) -> None:
        self.health.bad_input += 1
        if self.health.bad_input <= 5:
            self._report(f"warning: unreadable input from the adapter: {describe_fault(exc)}")

    def _lose(self, why: str, *, adapter: bool) -> None:
        if self._bus is None or self._stopping.is_set():
            return
        if adapter:
            self.health.adapter_lost += 1
        self.health.last_fault = why
        self.stats.faults.append(f"t={self.now:.3f}s {why}")
        self._report(f"error: CAN bus {self.spec.describe()} lost: {why}")
        self._detach()
        self.health.state = "lost" if adapter else self.health.state
        self._wake.set()
        if self._reopening is None:
            self._reopening = asyncio.get_running_loop().create_task(self._reopen())

    async def _reopen(self) -> None:
        loop = asyncio.get_running_loop()
        assert self._executor is not None
        try:
            while not self._stopping.is_set():
                delay = self.backoff.next_delay()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), delay)
                if self._stopping.is_set():
                    return
                self.health.open_attempts += 1
                try:
                    inner = await loop.run_in_executor(self._executor, self.opener, self.spec)
                except BusError as e:
                    self.health.open_failures += 1
                    failures = self.health.open_failures
                    if failures <= 3 or failures % 10 == 0:
                        wait = self.backoff.ceiling(self.backoff.attempt)
                        self._report(f"warning: reopen failed, next try in {wait:.2g} s: {e}")
                    continue
                if self._stopping.is_set():
                    close_bus(inner)
                    return
                self._attach(inner)
                self.health.reopened += 1
                self.backoff.reset()
                self._report(f"CAN bus {self.spec.describe()} reopened")
                return
        finally:
            self._reopening = None

    def _stop_now(self) -> None:
        self._stopping.set()
        self._wake.set()
        if self._reader is not None:
            self._reader.buffer.put_nowait(_WAKE)

    def _report(self, text: str) -> None:
        line = f"t={self.now:9.3f}s {text}"
        self.reports.append(line)
        if self.on_report is not None:
            self.on_report(line)


class _Reports(Sink):
    """The core's log lines as the driver's reports."""

    def __init__(self, driver: LiveDriver) -> None:
        self.driver = driver

    def logged(self, level: str, text: str, now: float) -> None:
        self.driver._report(f"{level}: {text}")


class StatusLine:
    """One line on a terminal's stderr, redrawn in place; silent when not a terminal."""

    def __init__(self, stream: IO[str] | None = None, *, enabled: bool | None = None) -> None:
        self.stream = stream or sys.stderr
        self.enabled = self.stream.isatty() if enabled is None else enabled
        self._width = 0

    def show(self, text: str) -> None:
        if not self.enabled:
            return
        self.stream.write("\r" + text.ljust(self._width))
        self._width = len(text)
        self.stream.flush()

    def clear(self) -> None:
        if self.enabled and self._width:
            self.stream.write("\r" + " " * self._width + "\r")
            self.stream.flush()
            self._width = 0

    def print(self, text: str) -> None:
        """A report line above the status line."""
        self.clear()
        print(text, file=self.stream, flush=True)


def render_status(
    *,
    bus: str,
    state: str,
    registration: str | None,
    outbox_depth: int | None,
    last_frame_age: float | None,
    frames_per_s: float,
    last_verdict: str | None,
) -> str:
    """The status line's text."""
    age = "never" if last_frame_age is None else f"{last_frame_age:.1f}s ago"
    parts = [
        f"{bus} {state}",
        f"reg {registration or 'unknown'}",
        f"outbox {'-' if outbox_depth is None else outbox_depth}",
        f"last frame {age}",
        f"{frames_per_s:,.0f} fr/s",
        f"verdict {last_verdict or '-'}",
    ]
    return " | ".join(parts)


def fmt_verdict(verdict: Any) -> str | None:
    """``service outcome (codes)`` for a services Verdict, duck-typed."""
    if verdict is None:
        return None
    codes = ", ".join(getattr(verdict, "codes", ()) or ())
    text = f"{getattr(verdict, 'service', '?')} {getattr(verdict, 'outcome', '?')}"
    return f"{text} ({codes})" if codes else text


def install_signal_handlers(stop: Callable[[], None]) -> Callable[[], None]:
    """SIGINT and SIGTERM call ``stop``; returns the function that restores the defaults."""
    loop = asyncio.get_running_loop()
    installed: list[int] = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop)
            installed.append(sig)

    def restore() -> None:
        for sig in installed:
            loop.remove_signal_handler(sig)

    return restore


def check_listen_only_note(spec: BusSpec) -> str | None:
    """A note when listen-only mode can only be kept by not sending."""
    if spec.listen_only and not spec.hardware_listen_only:
        return (
            f"{spec.interface}: python-can cannot make this controller silent; "
            "listen-only here means the TCU sends nothing (counted as suppressed)"
        )
    return None


# --- a bench, assembled --------------------------------------------------------------------

OUTBOX_FILE = "outbox.sqlite"
STATUS_EVERY_S = 0.5
LINK_PROXY_HOST = "127.0.0.1"
UPLINK_CLOSE_S = 3.0
GNSS_EVERY_S = 1.0


@dataclass(frozen=True, slots=True, kw_only=True)
class LiveOptions:
    bus: BusSpec
    dbc: str | None = None
    mapping: str | None = None
    vin: str | None = None
    keystore: Path | None = None
    outbox: Path | None = None
    broker: BrokerURL | None = None
    link_proxy: bool = True
    link: LinkConfig | None = None
    topic_prefix: str = "vehicles"
    mqtt_protocol: MqttProtocol = "auto"
    snapshot_period: float = 60.0
    lock_timeout_s: float = 5.0


@dataclass(slots=True, kw_only=True)
class LiveReport:
    bus: str
    vin: str
    wall_s: float
    counts: dict[str, int]
    bus_health: dict[str, int]
    driver: dict[str, Any]
    state: dict[str, Any]
    faults: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)
    sections: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {
            "bus": self.bus,
            "vin": self.vin,
            "wall_s": round(self.wall_s, 3),
            **self.counts,
            "bus_health": self.bus_health,
            "driver": self.driver,
            "faults": self.faults,
            "warnings": self.warnings,
            "state": self.state,
            **self.extra,
        }


class LiveSession:
    """One bench: the core with its parts, the outbox, the uplink and the live driver."""

    def __init__(
        self,
        opts: LiveOptions,
        *,
        on_report: Callable[[str], None] | None = None,
        backoff: Backoff | None = None,
        opener: Callable[[BusSpec], can.BusABC] = open_bus,
        clock: Callable[[], float] = time.monotonic,
        origin_epoch: float | None = None,
    ) -> None:
        self.opts = opts
        setup = load_bus_setup(opts.dbc, opts.mapping)
        self.warnings = list(setup.warnings)
        note = check_listen_only_note(opts.bus)
        if note:
            self.warnings.append(note)
        self.origin_epoch = time.time() if origin_epoch is None else origin_epoch
        self.identity = load_identity(opts.keystore, opts.vin) if opts.keystore else None
        if opts.link is not None and (opts.broker is None or not opts.link_proxy):
            raise ConfigError("--link needs --broker and the link proxy: it shapes that path")
        if opts.broker is not None and self.identity is None:
            raise ConfigError(
                "--broker needs --keystore: telemetry is signed with the vehicle key "
                "(make one with tcu provision)"
            )
        self.vin = validate_vin(self.identity.vin if self.identity else opts.vin or DEFAULT_VIN)
        vehicle = VehicleConfig(
            vin=self.vin, origin_epoch=self.origin_epoch, lock_timeout_s=opts.lock_timeout_s
        )
        outbox_path = opts.outbox
        if outbox_path is None and opts.keystore is not None:
            outbox_path = opts.keystore / OUTBOX_FILE
        self.outbox: Outbox | None = None
        if outbox_path is not None:
            self.outbox = Outbox(outbox_path)
        self.offline = NoTransport()
        try:
            self.host = Host(
                setup,
                vehicle,
                clock=WallClock(clock),
                transport=self.offline,
                outbox=self.outbox,
                identity=self.identity,
                telemetry=TelemetryConfig(vin=self.vin, snapshot_period=opts.snapshot_period),
            )
        except BaseException:
            if self.outbox is not None:
                self.outbox.close()
            raise
        tcu = self.host.tcu
        self.tcu = tcu
        self.core = tcu.core
        self.services = tcu.services
        self.telemetry = tcu.telemetry
        self.downlink = tcu.downlink
        self.driver = LiveDriver(
            self.host,
            opts.bus,
            on_report=on_report,
            backoff=backoff,
            opener=opener,
        )
        self.uplink: TelemetryUplink | None = None
        self.proxy: LinkProxy | None = None
        self._gnss_task: asyncio.Future[None] | None = None

    # --- running ---------------------------------------------------------------------------

    def request_stop(self) -> None:
        self.driver.request_stop()

    async def run(self) -> LiveReport:
        """Serve until ``request_stop``; the report. The outbox is closed at the end."""
        started = time.monotonic()
        driver_task = asyncio.ensure_future(self.driver.run())
        uplink_task: asyncio.Task[None] | None = None
        try:
            running = asyncio.ensure_future(self.driver.running.wait())
            await asyncio.wait({driver_task, running}, return_when=asyncio.FIRST_COMPLETED)
            running.cancel()
            if not driver_task.done() and self.opts.broker is not None:
                uplink_task = await self._start_uplink(self.opts.broker)
            await driver_task
        finally:
            if not driver_task.done():
                self.driver.request_stop()
                with contextlib.suppress(Exception):
                    await driver_task
            if self.uplink is not None:
                await self.uplink.close()
            if uplink_task is not None:
                with contextlib.suppress(Exception, asyncio.CancelledError):
                    await asyncio.wait_for(uplink_task, UPLINK_CLOSE_S)
            if self._gnss_task is not None:
                self._gnss_task.cancel()
                await asyncio.gather(self._gnss_task, return_exceptions=True)
            if self.proxy is not None:
                await self.proxy.close()
            try:
                report = self.report(time.monotonic() - started)
            finally:
                if self.outbox is not None:
                    self.outbox.close()
        return report

    async def _start_uplink(self, broker: BrokerURL) -> asyncio.Task[None]:
        assert self.outbox is not None and self.identity is not None
        target = broker
        if self.opts.link_proxy and not broker.tls:
            model = Link(self.opts.link) if self.opts.link is not None else None
            self.proxy = LinkProxy(LINK_PROXY_HOST, 0, broker.host, broker.port, model)
            await self.proxy.start()
            target = BrokerURL(host=LINK_PROXY_HOST, port=self.proxy.port)
            if model is not None and not model.config.route:
                self._gnss_task = asyncio.ensure_future(self._follow_gnss(self.proxy, model))
        self.uplink = TelemetryUplink(
            self.vin,
            target,
            topic_prefix=self.opts.topic_prefix,
            protocol=self.opts.mqtt_protocol,
        )
        self.host.connect(self.uplink)
        if self.outbox.depth():
            self.uplink.notify()
        return asyncio.ensure_future(self.uplink.run())

    async def _follow_gnss(self, proxy: LinkProxy, model: Link) -> None:
        """Tell the link model where the van is, from the GNSS fixes on the bus."""
        state = self.core.state
        last: tuple[float, float] | None = None
        while True:
            now = self.driver.now
            lat, lon = state.get(LATITUDE, now), state.get(LONGITUDE, now)
            if isinstance(lat, float) and isinstance(lon, float) and (lat, lon) != last:
                last = (lat, lon)
                model.handle(Position(lat=lat, lon=lon), proxy.now())
                await proxy.sync()
            await asyncio.sleep(GNSS_EVERY_S)

    # --- what it looks like ------------------------------------------------------------------

    def status_text(self) -> str:
        driver = self.driver
        last = driver.stats.last_frame_at
        verdicts = self.services.verdicts
        return render_status(
            bus=self.opts.bus.describe(),
            state=driver.health.state,
            registration=self.registration(),
            outbox_depth=self.outbox.depth() if self.outbox is not None else None,
            last_frame_age=None if last is None else driver.now - last,
            frames_per_s=driver.frame_rate(),
            last_verdict=fmt_verdict(verdicts[-1] if verdicts else None),
        )

    def registration(self) -> str | None:
        """The SIM link's registration when a link model runs, else the MQTT connection."""
        proxy = self.proxy
        if proxy is not None and proxy.model is not None:
            snap = proxy.model.snapshot(proxy.now())
            if not snap.registered:
                return str(snap.state)
            where = "roaming" if snap.roaming else "home"
            return f"{snap.operator or snap.plmn} ({where})"
        if self.uplink is not None:
            return "mqtt up" if self.uplink.connected else "mqtt down"
        return None

    def report(self, wall_s: float) -> LiveReport:
        driver = self.driver
        now = driver.now
        stats = driver.stats
        report = LiveReport(
            bus=self.opts.bus.describe(),
            vin=self.vin,
            wall_s=wall_s,
            counts=self.core.summary_counts(),
            bus_health=driver.health.counters(),
            driver={
                "frames_sent": stats.frames_sent,
                "sends_suppressed": stats.sends_suppressed,
                "send_failures": stats.send_failures,
                "events": stats.events,
                "ticks": stats.ticks,
                "listen_only": self.opts.bus.listen_only,
            },
            state={p: self.core.state.get(p, now) for p in CATALOGUE},
            faults=list(stats.faults),
            warnings=list(self.warnings),
        )
        for part in self.core.parts:
            contribute = getattr(part, "contribute", None)
            if contribute is not None:
                contribute(report, now)
        if self.outbox is not None:
            stored = self.host.counts.records_produced
            report.extra["outbox"] = {**self.outbox.stats(), "stored": stored}
        if self.uplink is not None:
            report.extra["uplink"] = self.uplink.stats.as_dict()
        if self.proxy is not None:
            report.extra["link_proxy"] = dict(self.proxy.counters)
            if self.proxy.model is not None:
                report.extra["link"] = self.proxy.model.summary()
        if self.offline.unsent:
            report.extra["status_unsent"] = self.offline.unsent
        return report


async def serve(
    session: LiveSession,
    *,
    status: StatusLine | None = None,
    duration: float | None = None,
) -> LiveReport:
    """Run ``session`` with SIGINT/SIGTERM stopping it, a status line and an optional limit."""
    restore = install_signal_handlers(session.request_stop)
    tasks: list[asyncio.Task[None]] = []

    async def refresh() -> None:
        assert status is not None
        while True:
            status.show(session.status_text())
            await asyncio.sleep(STATUS_EVERY_S)

    async def limit() -> None:
        assert duration is not None
        await asyncio.sleep(duration)
        session.request_stop()

    if status is not None and status.enabled:
        tasks.append(asyncio.ensure_future(refresh()))
    if duration is not None:
        tasks.append(asyncio.ensure_future(limit()))
    try:
        return await session.run()
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if status is not None:
            status.clear()
        restore()
