"""A fleet of vans in one process: N hosts sharing one clock and one backend.

Theory of operation. Every van is a ``Host`` (``tcu.runtime.host``) of its own: its VIN,
an Ed25519 key pair derived from the fleet's seed and the VIN, an outbox (SQLite, held in
memory: a file per van would cost three descriptors each), its uplink queue and its SIM
link state (home operator, position, roaming). Vans live at the signal level: each
follows its own variation of the reference storylines (``tcu.storyline.fleet``), whose
changes are handed to the core as overrides of the bus, all values of a step together
(``core.state.override`` then ``core.signals_changed``), as the scenario world does.
Provisioning is in bulk: every van's public key is registered with the backend before
the fleet starts, and each is activated by the backend's signed command, which the TCU
verifies like any other.

Two modes share all of that:

- In virtual time (``VirtualFleet``): one ``ReplayDriver`` is the clock of every van, one
  ``MemoryBackend`` (the cloud stub in memory, on disk in the work folder) stores what
  they all send, and each van's ``MemoryTransport`` runs its SIM link model on that same
  clock. The driver fires the world's scheduled callbacks and the cores' deadlines in
  time order; the cores' deadlines are kept in one heap (``_Cores``), re-armed after
  every call into a van (``_VanClock`` wraps what a van schedules). Nothing reads the
  wall clock, so the same seed gives the same bytes in the store.
- In real time against a broker (``LiveFleet``): one ``WallClock``, each van its own
  aiomqtt client (``TelemetryUplink``: client id ``tcu-{vin}``, persistent session),
  connected at ``ramp`` connections a second, and the cloud stub ``Backend`` in the same
  process and event loop. A sweep a few times a second ticks the cores whose deadline
  has passed. A reconnect storm (``storm_at``) drops every van's connection at once; each
  reconnects with the same client id and resends what was not acknowledged.

At the end (in real time, once every van is connected and activated), the cores stop (no
more records), and the fleet waits until every outbox is empty, i.e. every record is
stored and acknowledged. Latency is measured from the
moment a record is committed to the van's outbox to the moment the backend stored it
and every record before it (the moment it sends the ack that covers it): the backend's
acks are observed where they are made, in the same process. ``lost`` is what a van
produced that is neither stored nor still in its outbox; it must be 0.
"""

from __future__ import annotations

import array
import asyncio
import contextlib
import hashlib
import heapq
import logging
import os
import resource
import sys
import tempfile
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiomqtt
import can
import cbor2
from cryptography.hazmat.primitives.asymmetric import ed25519

from cloud_stub.commands import CommandBuilder
from cloud_stub.errors import CloudError
from cloud_stub.ingest import Ingest, Publish, Reply
from cloud_stub.keys import load_backend_key
from cloud_stub.memory import MemoryBackend
from cloud_stub.registry import Registry
from cloud_stub.service import REGISTRY_FILE, STORE_FILE, Backend, read_stats
from cloud_stub.store import Store
from tcu.can.setup import BusSetup, load_bus_setup
from tcu.compose.memory import scratch_dir
from tcu.compose.online import _reachable as reachable
from tcu.errors import ConfigError, TcuError
from tcu.events import Action
from tcu.link.sim import Link, LinkConfig, Position
from tcu.runtime.host import Host, Sink, WallClock
from tcu.runtime.memory import Delivered, MemoryTransport
from tcu.runtime.mqtt import BrokerURL, TelemetryUplink
from tcu.runtime.replay import TICK, ReplayDriver
from tcu.services import VehicleConfig
from tcu.storyline import fleet as stories
from tcu.telemetry.codec.cose import key_id, public_key_to_pem
from tcu.telemetry.codec.schema import decode_ack
from tcu.telemetry.policy import TelemetryConfig
from tcu.telemetry.records import Record
from tcu.telemetry.storage.identity import VehicleIdentity
from tcu.telemetry.storage.outbox import MEMORY, Outbox
from tcu.vehicle import catalogue as cat
from tcu.vehicle.catalogue import Value

LOG = logging.getLogger("tcu.fleet")
ORIGIN_EPOCH = 1_780_000_000.0  # 2026-05-28T20:26:40Z: vehicle time 0 of every van
BACKENDS = ("process", "inline")
BACKEND_START_S = 30.0
ACTIVATION_WORKERS = 64  # activations in flight at once (each waits for its PUBACK)
OPERATOR_CLIENTS = 16
FDS_PER_VAN = 1  # the van's MQTT socket (the outbox is in memory)
FDS_SPARE = 64 + 16  # the backend's socket and databases, the interpreter, the terminal
MAX_VANS = 1_000_000


def vin_of(index: int) -> str:
    """The VIN of van ``index`` (17 characters of the ISO 3779 alphabet)."""
    return f"XECFLEET{index:09d}"


def vehicle_key(seed: int, vin: str) -> ed25519.Ed25519PrivateKey:
    """The van's key pair, derived from the fleet's seed and its VIN: the same every run."""
    secret = hashlib.sha256(f"tcu-fleet-key:{seed}:{vin}".encode()).digest()
    return ed25519.Ed25519PrivateKey.from_private_bytes(secret)


# --- options and report -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class FleetOptions:
    vans: int
    duration_s: float = 3600.0
    seed: int = 0
    broker: BrokerURL | None = None
    ramp: float = 500.0
    storm_at: tuple[float, ...] = ()
    period_s: float = stories.DEFAULT_PERIOD_S
    snapshot_period_s: float = 60.0
    workdir: Path | None = None
    drain_timeout_s: float = 120.0
    protocol: str = "auto"
    backend: str = "process"
    """Against a broker: ``process`` (``cloud-stub serve`` in a child process) or ``inline``."""

    def __post_init__(self) -> None:
        if isinstance(self.vans, bool) or not 1 <= self.vans <= MAX_VANS:
            raise ConfigError(f"--vans {self.vans}: must be 1 to {MAX_VANS:,}")
        if isinstance(self.seed, bool) or not 0 <= self.seed < 2**32:
            raise ConfigError(f"--seed {self.seed}: must be 0 to {2**32 - 1}")
        if not 0 < self.duration_s < float("inf"):
            raise ConfigError(f"--duration {self.duration_s}: must be a number of seconds > 0")
        if not 0 < self.ramp < float("inf"):
            raise ConfigError(f"--ramp {self.ramp}: must be connections per second > 0")
        for t in self.storm_at:
            if not 0 <= t < self.duration_s:
                raise ConfigError(
                    f"--storm-at {t:g}: must be within the run (0 to {self.duration_s:g} s)"
                )
        if self.backend not in BACKENDS:
            raise ConfigError(f"--backend {self.backend!r}: choose one of {', '.join(BACKENDS)}")
        if self.storm_at and self.broker is None:
            raise ConfigError("--storm-at needs --broker (a storm of real connections)")
        if not 0 < self.period_s <= 3600:
            raise ConfigError(f"--signal-period {self.period_s}: must be > 0 and <= 3600 s")
        if not 0 < self.snapshot_period_s <= 86400:
            raise ConfigError(f"--snapshot-period {self.snapshot_period_s}: must be > 0 s")
        if not self.drain_timeout_s > 0:
            raise ConfigError(f"--drain-timeout {self.drain_timeout_s}: must be > 0 s")


@dataclass(slots=True)
class FleetReport:
    mode: str
    vans: int
    seed: int
    duration_s: float
    broker: str | None = None
    vans_connected: int = 0
    vans_activated: int = 0
    records_produced: int = 0
    records_stored: int = 0
    records_acked: int = 0
    acks: int = 0
    duplicates: int = 0
    refused: dict[str, int] = field(default_factory=dict)
    outbox_depth: int = 0
    lost: int = 0
    dropped_at_cap: int = 0
    reconnects: int = 0
    storms: int = 0
    roaming_vans: int = 0
    latency_p50_s: float | None = None
    latency_p99_s: float | None = None
    latency_max_s: float | None = None
    latency_samples: int = 0
    latency_measured_at: str = "backend"
    vehicle_hours: float = 0.0
    wall_s: float = 0.0
    connect_s: float | None = None
    drained: bool = False
    cpu_s: float = 0.0
    max_rss_mb: float = 0.0
    rss_growth_mb: float = 0.0
    fd_limit: str = ""
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Nothing lost, every outbox drained, every van activated (and connected, live)."""
        connected = self.broker is None or self.vans_connected == self.vans
        return self.lost == 0 and self.drained and self.vans_activated == self.vans and connected

    @property
    def records_per_s(self) -> float:
        return self.records_stored / self.wall_s if self.wall_s > 0 else 0.0

    @property
    def cpu_ms_per_van_s(self) -> float:
        """CPU milliseconds per van per second of the run."""
        return 1000.0 * self.cpu_s / self.vans / self.wall_s if self.wall_s > 0 else 0.0

    @property
    def cpu_s_per_vehicle_hour(self) -> float:
        return self.cpu_s / self.vehicle_hours if self.vehicle_hours > 0 else 0.0

    @property
    def memory_kb_per_van(self) -> float:
        """Peak memory growth during the run, per van (KiB)."""
        return 1024.0 * self.rss_growth_mb / self.vans

    def as_json(self) -> dict[str, Any]:
        out = {name: getattr(self, name) for name in self.__slots__}
        out["ok"] = self.ok
        out["records_per_s"] = round(self.records_per_s, 1)
        out["cpu_ms_per_van_s"] = round(self.cpu_ms_per_van_s, 4)
        out["memory_kb_per_van"] = round(self.memory_kb_per_van, 1)
        out["cpu_s_per_vehicle_hour"] = round(self.cpu_s_per_vehicle_hour, 5)
        for key in ("wall_s", "cpu_s", "max_rss_mb", "rss_growth_mb", "vehicle_hours"):
            out[key] = round(out[key], 3)
        return out


# --- file descriptors -------------------------------------------------------------------------


def ensure_fds(vans: int, per_van: int = FDS_PER_VAN) -> str:
    """Raise the soft descriptor limit to the hard one if the fleet needs it; say what was done.

    ConfigError when even the hard limit is too low for ``vans``.
    """
    need = vans * per_van + FDS_SPARE
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    ceiling = hard if hard != resource.RLIM_INFINITY else need
    if need > ceiling:
        raise ConfigError(
            f"--vans {vans}: needs about {need:,} file descriptors, the hard limit is "
            f"{ceiling:,} (raise it with ulimit -Hn or limits.conf, or run fewer vans per process)"
        )
    if soft != resource.RLIM_INFINITY and soft < need:
        resource.setrlimit(resource.RLIMIT_NOFILE, (ceiling, hard))
        return f"soft limit raised from {soft:,} to {ceiling:,} (needs about {need:,})"
    return f"soft limit {soft:,} is enough (needs about {need:,})"


# --- latency ----------------------------------------------------------------------------------


class Latency:
    """Record-to-stored latencies (seconds), as the backend's acks cover the records."""

    def __init__(self) -> None:
        self.samples = array.array("d")

    def percentile(self, q: float) -> float | None:
        if not self.samples:
            return None
        ordered = sorted(self.samples)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def parse_ack(payload: bytes) -> tuple[str, int, int] | None:
    """The (VIN, epoch, seq) an ack covers, read without verifying (it is our own backend's)."""
    try:
        message = cbor2.loads(payload)
        ack = decode_ack(message.value[2])
    except (cbor2.CBORError, TcuError, AttributeError, IndexError, TypeError):
        return None
    return ack.vin, ack.epoch, ack.seq


# --- one van ----------------------------------------------------------------------------------


class Van(Sink):
    """One van: its plan, its host, what it produced and when (for latency)."""

    def __init__(self, fleet: _Fleet, index: int) -> None:
        self.fleet = fleet
        self.index = index
        self.vin = vin_of(index)
        self.plan = stories.plan(fleet.opts.seed, index)
        self.steps: Iterator[tuple[float, dict[str, Value | None]]] = stories.van_steps(
            self.plan, fleet.opts.duration_s, fleet.opts.period_s
        )
        self.pending: deque[tuple[int, int, float]] = deque()
        self.host: Host
        self.armed = float("inf")
        self.acks = 0
        self.roamed = False
        self.activated = False
        self.t0 = 0.0  # when its storyline started (real time: when it was switched on)

    # Sink: what the host tells
    def stored(self, records: tuple[Record, ...], dropped: dict[str, int], now: float) -> None:
        t = self.fleet.stamp(now)
        pending = self.pending
        for r in records:
            pending.append((r.epoch, r.seq, t))

    def acked(self, epoch: int, sequence: int, deleted: int, now: float) -> None:
        self.acks += 1
        if self.fleet.latency_at_ack:
            self.covered(epoch, sequence, self.fleet.stamp(now))

    def link_changed(self, link: Any, now: float) -> None:
        if link.roaming:
            self.roamed = True

    def covered(self, epoch: int, seq: int, t: float) -> None:
        """The backend stored every record of ``epoch`` up to ``seq`` at time ``t``."""
        pending = self.pending
        samples = self.fleet.latency.samples
        while pending:
            e, s, t0 = pending[0]
            if e > epoch or (e == epoch and s > seq):
                break
            pending.popleft()
            samples.append(max(0.0, t - t0))

    def apply(self, values: dict[str, Value | None], now: float) -> None:
        """One storyline step: the values override the bus together."""
        host = self.host
        if host.off:
            return
        core = host.core
        state = core.state
        for path, value in values.items():
            state.override(path, value)
        actions = core.signals_changed(list(values), now)
        if actions:
            host.carry_out(actions, now)

    def next_step(self) -> tuple[float, dict[str, Value | None]] | None:
        return next(self.steps, None)


class _Fleet:
    """What both modes share: options, vans, identities, latency."""

    def __init__(self, opts: FleetOptions, progress: Callable[[Any], None] | None) -> None:
        self.opts = opts
        self.progress = progress
        self.latency = Latency()
        self.setup: BusSetup = load_bus_setup(None, None)
        self.vans: list[Van] = []
        self.by_vin: dict[str, Van] = {}
        self.cores_running = True
        self.latency_at_ack = False  # True when the backend's acks cannot be seen being made
        self.rss0_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

    def stamp(self, now: float) -> float:
        return now

    def identity(self, van: Van, backend_key: Any) -> VehicleIdentity:
        key = vehicle_key(self.opts.seed, van.vin)
        return VehicleIdentity(vin=van.vin, key=key, kid=key_id(key), backend_key=backend_key)

    def telemetry(self, vin: str) -> TelemetryConfig:
        return TelemetryConfig(vin=vin, snapshot_period=self.opts.snapshot_period_s)

    def observe(self, replies: list[tuple[str, bytes]], t: float) -> None:
        """The backend's acks: every record they cover is stored."""
        for topic, payload in replies:
            if not topic.endswith("/ack"):
                continue
            ack = parse_ack(payload)
            if ack is None:
                continue
            van = self.by_vin.get(ack[0])
            if van is not None:
                van.covered(ack[1], ack[2], t)

    def report(self, mode: str, started_cpu: float, wall: float) -> FleetReport:
        opts = self.opts
        usage = resource.getrusage(resource.RUSAGE_SELF)
        report = FleetReport(
            mode=mode,
            vans=opts.vans,
            seed=opts.seed,
            duration_s=opts.duration_s,
            broker=opts.broker.url if opts.broker is not None else None,
            wall_s=wall,
            cpu_s=usage.ru_utime + usage.ru_stime - started_cpu,
            max_rss_mb=usage.ru_maxrss / 1024.0,
            rss_growth_mb=(usage.ru_maxrss - self.rss0_kb) / 1024.0,
        )
        for van in self.vans:
            host = van.host
            report.records_produced += host.counts.records_produced
            report.dropped_at_cap += host.counts.records_dropped_at_cap
            if host.outbox is not None:
                report.outbox_depth += host.outbox.depth()
            if host.queue is not None:
                report.records_acked += host.queue.stats.records_acked
            report.acks += van.acks
            report.roaming_vans += van.roamed
            report.vans_activated += van.activated
        lat = self.latency
        report.latency_samples = len(lat.samples)
        report.latency_p50_s = _round(lat.percentile(0.50))
        report.latency_p99_s = _round(lat.percentile(0.99))
        report.latency_max_s = _round(max(lat.samples) if lat.samples else None)
        report.vehicle_hours = opts.vans * opts.duration_s / 3600.0
        return report


def _round(x: float | None) -> float | None:
    return None if x is None else round(x, 4)


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _finish(report: FleetReport, stored: int, duplicates: int, refused: dict[str, int]) -> None:
    report.records_stored = stored
    report.duplicates = duplicates
    report.refused = refused
    report.lost = max(0, report.records_produced - stored - report.outbox_depth)
    if report.lost:
        report.warnings.append(f"{report.lost} records lost")
    if report.outbox_depth:
        report.warnings.append(f"{report.outbox_depth} records still in the vans' outboxes")
    if refused:
        report.warnings.append(f"the backend refused messages: {refused}")
    if report.dropped_at_cap:
        report.warnings.append(f"{report.dropped_at_cap} records dropped at the outbox caps")
    if report.vans_activated < report.vans:
        report.warnings.append(
            f"{report.vans - report.vans_activated} vans never activated their service"
        )


# --- virtual time -----------------------------------------------------------------------------


class _VanClock:
    """The shared virtual clock as one van sees it: what it schedules re-arms its core."""

    __slots__ = ("driver", "van")

    def __init__(self, driver: ReplayDriver, van: Van) -> None:
        self.driver, self.van = driver, van

    @property
    def now(self) -> float:
        return self.driver.now

    def schedule(self, t: float, callback: Callable[[float], object]) -> None:
        self.driver.schedule(t, _Call(self.van, callback))


class _Call:
    __slots__ = ("callback", "van")

    def __init__(self, van: Van, callback: Callable[[float], object]) -> None:
        self.van, self.callback = van, callback

    def __call__(self, now: float) -> None:
        actions = self.callback(now)
        van = self.van
        if isinstance(actions, list) and actions:
            van.host.carry_out(actions, now)
        van.fleet.rearm(van)  # type: ignore[attr-defined]


class _Cores:
    """What the replay driver drives: every van's core deadline, in one heap.

    The driver asks ``core.next_deadline`` and hands ``Tick`` to ``handle``; this ticks
    the vans whose deadline has come, in deadline order (then van order), and re-arms
    them. An entry whose van has since re-armed earlier or later is stale and skipped.
    """

    def __init__(self, fleet: VirtualFleet) -> None:
        self.fleet = fleet
        self.heap: list[tuple[float, int]] = []
        self.frame: Callable[[can.Message, float], list[Action]] = self._no_frame

    @property
    def core(self) -> _Cores:
        return self

    @property
    def next_deadline(self) -> float:
        heap, vans = self.heap, self.fleet.vans
        while heap and heap[0][0] != vans[heap[0][1]].armed:
            heapq.heappop(heap)
        if not heap or not self.fleet.cores_running:
            return float("inf")
        return heap[0][0]

    def handle(self, event: Any, now: float) -> list[Any]:
        if event is not TICK:
            raise TypeError(f"a fleet's clock hands only ticks to its cores, not {event!r}")
        heap, vans = self.heap, self.fleet.vans
        while heap and heap[0][0] <= now:
            d, i = heapq.heappop(heap)
            van = vans[i]
            if d != van.armed:
                continue
            van.armed = float("inf")
            if van.host.core.next_deadline <= now:
                van.host.handle(TICK, now)
            self.fleet.rearm(van)
        return []

    def carry_out(self, actions: Any, now: float) -> None:
        raise TypeError("the fleet's callbacks carry out their own actions")

    def _no_frame(self, msg: can.Message, now: float) -> list[Action]:
        raise TypeError("a fleet's vans live at the signal level: no frames on the shared clock")


class _ObservedMemoryBackend:
    """The in-memory backend, with its acks observed for latency."""

    def __init__(self, inner: MemoryBackend, fleet: _Fleet) -> None:
        self.inner, self.fleet = inner, fleet

    def receive(self, topic: str, payload: bytes, now: float) -> Delivered:
        delivered = self.inner.receive(topic, payload, now)
        if delivered.replies:
            self.fleet.observe(list(delivered.replies), now)
        return delivered


class VirtualFleet(_Fleet):
    """N vans, their SIM links and one backend in virtual time (module docstring)."""

    STEP_S = 60.0

    def __init__(
        self, opts: FleetOptions, *, progress: Callable[[VirtualFleet], None] | None = None
    ) -> None:
        super().__init__(opts, progress)
        self.driver = ReplayDriver()
        self.cores = _Cores(self)
        self.driver.drive(self.cores)
        self.workdir: Path | None = None
        self.backend: MemoryBackend | None = None

    def rearm(self, van: Van) -> None:
        d = van.host.core.next_deadline
        if d < van.armed:
            van.armed = d
            heapq.heappush(self.cores.heap, (d, van.index))

    def run(self) -> FleetReport:
        started, cpu0 = time.perf_counter(), _cpu()
        with contextlib.ExitStack() as stack:
            workdir = self.opts.workdir
            if workdir is None:
                scratch = tempfile.TemporaryDirectory(prefix="tcu-fleet-", dir=scratch_dir())
                workdir = Path(stack.enter_context(scratch))
            self.workdir = workdir
            backend = MemoryBackend(workdir / "backend", origin_epoch=ORIGIN_EPOCH)
            stack.callback(backend.close)
            self.backend = backend
            port = _ObservedMemoryBackend(backend, self)
            backend_key = backend.backend_key.key.public_key()
            for index in range(self.opts.vans):
                van = Van(self, index)
                self.vans.append(van)
                self.by_vin[van.vin] = van
                identity = self.identity(van, backend_key)
                backend.register(van.vin, public_key_to_pem(identity.key), identity.kid)
                clock = _VanClock(self.driver, van)
                seed = self.opts.seed * MAX_VANS + index
                link = Link(LinkConfig(home_plmn=van.plan.home_plmn, seed=seed))
                transport = MemoryTransport(clock, port, van.vin, link=link, follow_gnss=False)
                outbox = Outbox(MEMORY, synchronous="NORMAL")
                stack.callback(outbox.close)
                van.host = Host(
                    self.setup,
                    VehicleConfig(vin=van.vin, origin_epoch=ORIGIN_EPOCH),
                    clock=clock,
                    transport=transport,
                    outbox=outbox,
                    identity=identity,
                    telemetry=self.telemetry(van.vin),
                    sinks=[van],
                )
                self._schedule_step(van, transport)
                clock.schedule(0.0, _Activate(van, backend, transport))
                self.rearm(van)
            end = self.opts.duration_s
            while self.driver.now < end:
                self.driver.advance(min(end, self.driver.now + self.STEP_S))
                if self.progress is not None:
                    self.progress(self)
            self.cores_running = False
            drained = self._drain()
            report = self.report("virtual", cpu0, time.perf_counter() - started)
            report.drained = drained
            ingest = backend.ingest.stats()
            _finish(report, backend.store.count_records(), ingest.duplicates, dict(backend.refused))
            report.vans_connected = sum(
                1
                for v in self.vans
                if isinstance(v.host.transport, MemoryTransport) and v.host.transport.connected
            )
            report.reconnects = sum(
                max(0, v.host.transport.counts.reconnects - 1)  # type: ignore[attr-defined]
                for v in self.vans
            )
            return report

    def _drain(self) -> bool:
        limit = self.driver.now + self.opts.drain_timeout_s
        while self.driver.now < limit:
            if not any(v.host.outbox is not None and v.host.outbox.depth() for v in self.vans):
                return True
            self.driver.advance(min(limit, self.driver.now + 5.0))
        return not any(v.host.outbox is not None and v.host.outbox.depth() for v in self.vans)

    def _schedule_step(self, van: Van, transport: MemoryTransport) -> None:
        step = van.next_step()
        if step is not None:
            t, values = step
            van.host.clock.schedule(t, _Step(self, van, transport, values))


class _Step:
    __slots__ = ("fleet", "transport", "values", "van")

    def __init__(
        self,
        fleet: VirtualFleet,
        van: Van,
        transport: MemoryTransport,
        values: dict[str, Value | None],
    ) -> None:
        self.fleet, self.van, self.transport, self.values = fleet, van, transport, values

    def __call__(self, now: float) -> None:
        values = self.values
        self.van.apply(values, now)
        if cat.LATITUDE in values or cat.LONGITUDE in values:
            state = self.van.host.core.state
            lat, lon = state.get(cat.LATITUDE, now), state.get(cat.LONGITUDE, now)
            if isinstance(lat, float) and isinstance(lon, float):
                self.transport.link_event(Position(lat=lat, lon=lon), now)
        self.fleet._schedule_step(self.van, self.transport)


class _Activate:
    __slots__ = ("backend", "transport", "van")

    def __init__(self, van: Van, backend: MemoryBackend, transport: MemoryTransport) -> None:
        self.van, self.backend, self.transport = van, backend, transport

    def __call__(self, now: float) -> None:
        self.transport.deliver_downlink(self.backend.activate(self.van.vin, now).payload, now)
        self.van.activated = True


# --- real time against a broker ---------------------------------------------------------------


class _ObservedIngest(Ingest):
    """The backend's ingest, with its acks observed for latency (same process)."""

    fleet: _Fleet

    def receive_many(self, messages: Sequence[tuple[str, bytes]]) -> list[list[Reply]]:
        replies = super().receive_many(messages)
        acks = [(r.topic, r.payload) for rs in replies for r in rs if isinstance(r, Publish)]
        if acks:
            self.fleet.observe(acks, time.monotonic())
        return replies


class LiveFleet(_Fleet):
    """N vans in real time, each its own MQTT client, against a broker (module docstring)."""

    SWEEP_S = 0.2

    def __init__(
        self, opts: FleetOptions, *, progress: Callable[[LiveFleet], None] | None = None
    ) -> None:
        if opts.broker is None:
            raise ConfigError("a live fleet needs --broker")
        super().__init__(opts, progress)
        self.broker: BrokerURL = opts.broker
        self.clock = WallClock()
        self.uplinks: list[TelemetryUplink] = []
        self.tasks: list[asyncio.Task[None] | None] = []
        self.fd_note = ""
        self.storms = 0
        self.connect_s: float | None = None
        self.backend: Backend | None = None
        self._activations: asyncio.Queue[Van] = asyncio.Queue()
        self._waiters: set[asyncio.Task[None]] = set()
        self.activation_retries = 0
        self.helpers: list[asyncio.Task[None]] = []
        self.backend_process: asyncio.subprocess.Process | None = None
        self.operators: list[aiomqtt.Client] = []
        self.commands: CommandBuilder
        self.registry: Registry

    def stamp(self, now: float) -> float:
        return time.monotonic()

    def connected(self) -> int:
        return sum(1 for u in self.uplinks if u.connected)

    def produced(self) -> int:
        return sum(v.host.counts.records_produced for v in self.vans)

    async def run(self) -> FleetReport:
        self.fd_note = ensure_fds(self.opts.vans)
        await reachable(self.broker)  # fail fast, before thousands of vans are built
        started, cpu0 = time.perf_counter(), _cpu()
        async with contextlib.AsyncExitStack() as stack:
            workdir = self.opts.workdir
            if workdir is None:
                workdir = Path(
                    stack.enter_context(tempfile.TemporaryDirectory(prefix="tcu-fleet-"))
                )
            data = workdir / "backend"
            backend: Backend | None = None
            if self.opts.backend == "inline":
                backend = Backend(self.broker.url, data, clock=time.time)
                stack.callback(backend.store.close)
                stack.callback(backend.registry.close)
                observed = _ObservedIngest(
                    backend.registry, backend.store, backend_key=backend.backend_key
                )
                observed.fleet = self
                backend.ingest = observed
                registry, backend_key_pair = backend.registry, backend.backend_key
            else:
                self.latency_at_ack = True
                registry = Registry(data / REGISTRY_FILE)
                stack.callback(registry.close)
                backend_key_pair = load_backend_key(data)
            self.backend = backend
            self.commands = CommandBuilder(registry, backend_key_pair)
            self.registry = registry
            backend_key = backend_key_pair.key.public_key()
            for index in range(self.opts.vans):
                van = Van(self, index)
                self.vans.append(van)
                self.by_vin[van.vin] = van
                identity = self.identity(van, backend_key)
                registry.register(van.vin, public_key_to_pem(identity.key), identity.kid)
                outbox = Outbox(MEMORY, synchronous="NORMAL")
                stack.callback(outbox.close)
                uplink = self._uplink(van)
                van.host = Host(
                    self.setup,
                    VehicleConfig(vin=van.vin, origin_epoch=time.time() - self.clock.now),
                    clock=self.clock,
                    transport=uplink,
                    outbox=outbox,
                    identity=identity,
                    telemetry=self.telemetry(van.vin),
                    sinks=[van],
                )
                self.uplinks.append(uplink)
                self.tasks.append(None)
            # The backend connects once the vans are built: building blocks the loop.
            if backend is not None:
                try:
                    await backend.start(timeout=15.0)
                except CloudError as exc:
                    raise TcuError(f"backend on {self.broker.url}: {exc}") from None
                stack.push_async_callback(backend.stop)
            else:
                await self._start_backend_process(stack, data)
            try:
                self.operators = [
                    await stack.enter_async_context(self._operator_client(i))
                    for i in range(OPERATOR_CLIENTS)
                ]
            except aiomqtt.MqttError as exc:
                raise TcuError(f"--broker {self.broker.url}: {exc}") from None
            stack.push_async_callback(self._stop_all)
            helpers = self.helpers = [
                asyncio.create_task(self._ramp()),
                asyncio.create_task(self._sweep()),
                *(asyncio.create_task(self._activate(i)) for i in range(ACTIVATION_WORKERS)),
            ]
            try:
                t0 = time.monotonic()
                end = t0 + self.opts.duration_s
                storms = sorted(self.opts.storm_at)
                while (now := time.monotonic()) < end:
                    if storms and now - t0 >= storms[0]:
                        storms.pop(0)
                        await self._storm()
                    wait = end - now
                    if storms:
                        wait = min(wait, t0 + storms[0] - now)
                    await asyncio.sleep(min(wait, 0.5))
                    if self.progress is not None:
                        self.progress(self)
                drained = await self._drain()
            finally:
                for task in (*helpers, *self._waiters):
                    task.cancel()
                await asyncio.gather(*helpers, *self._waiters, return_exceptions=True)
            report = self.report("live", cpu0, time.perf_counter() - started)
            report.drained = drained
            report.fd_limit = self.fd_note
            report.connect_s = _round(self.connect_s)
            report.storms = self.storms
            report.vans_connected = self.connected()
            if report.vans_connected < report.vans:
                report.warnings.append(
                    f"{report.vans - report.vans_connected} vans not connected at the end"
                )
            report.reconnects = sum(max(0, u.stats.connects - 1) for u in self.uplinks)
            if backend is not None:
                ingest = backend.stats().as_dict()
            else:
                await self._stop_backend_process()
                ingest = read_stats(data) or {}
            with Store(data / STORE_FILE) as store:
                stored = store.count_records()
        report.latency_measured_at = "ack at the van" if self.latency_at_ack else "backend"
        _finish(report, stored, int(ingest.get("duplicates", 0)), dict(ingest.get("refused", {})))
        return report

    async def _start_backend_process(self, stack: contextlib.AsyncExitStack, data: Path) -> None:
        """``cloud-stub serve`` on the broker, in a child process (the second core)."""
        command = [
            sys.executable,
            "-c",
            "import sys; from cloud_stub.cli import main; sys.exit(main())",
            "serve",
            "--broker",
            self.broker.url,
            "--data",
            str(data),
        ]
        for flag, path in (
            ("--ca", self.broker.ca),
            ("--cert", self.broker.cert),
            ("--key", self.broker.key),
        ):
            if path is not None:
                command += [flag, str(path)]
        process = await asyncio.create_subprocess_exec(
            *command, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
        )
        self.backend_process = process
        stack.push_async_callback(self._stop_backend_process)
        assert process.stdout is not None
        try:
            async with asyncio.timeout(BACKEND_START_S):
                line = await process.stdout.readline()
        except TimeoutError:
            line = b""
        if not line.startswith(b"cloud-stub: serving"):
            assert process.stderr is not None
            await self._stop_backend_process()
            raise TcuError(f"backend on {self.broker.url} did not start: {line!r}")

    async def _stop_backend_process(self) -> None:
        process, self.backend_process = self.backend_process, None
        if process is None or process.returncode is not None:
            return
        process.terminate()
        try:
            async with asyncio.timeout(30.0):
                await process.communicate()
        except TimeoutError:
            process.kill()
            await process.wait()

    def _operator_client(self, n: int) -> aiomqtt.Client:
        """A client of the fleet operator's: it sends the backend's signed activations.

        Several of them, because a client takes one packet (a PUBACK) per turn of a loop
        that serves thousands of sockets.
        """
        return aiomqtt.Client(
            self.broker.host,
            self.broker.port,
            identifier=f"tcu-fleet-operator-{os.getpid()}-{n}",
            protocol=aiomqtt.ProtocolVersion.V311,
            tls_context=self.broker.tls_context(),
            timeout=30.0,
        )

    def _uplink(self, van: Van) -> TelemetryUplink:
        return TelemetryUplink(
            van.vin,
            self.broker,
            protocol=self.opts.protocol,  # type: ignore[arg-type]
            connect_timeout=30.0,
        )

    def _start(self, index: int) -> None:
        self.tasks[index] = asyncio.create_task(self.uplinks[index].run())

    async def _ramp(self) -> None:
        """Start the vans' connections at ``ramp`` a second; then wait for all of them."""
        t0 = time.monotonic()
        gap = 1.0 / self.opts.ramp
        for index, van in enumerate(self.vans):
            due = t0 + index * gap
            delay = due - time.monotonic()
            if delay > 0.001:
                await asyncio.sleep(delay)
            self._start(index)
            van.t0 = self.clock.now  # the van is switched on: its storyline starts
            self._schedule_step(van)
            waiter = asyncio.create_task(self._when_connected(van))
            self._waiters.add(waiter)
            waiter.add_done_callback(self._waiters.discard)
        while self.connected() < len(self.vans):
            await asyncio.sleep(0.05)
        self.connect_s = time.monotonic() - t0

    async def _when_connected(self, van: Van) -> None:
        await self.uplinks[van.index].wait_connected(3600.0)
        self._activations.put_nowait(van)

    async def _activate(self, worker: int) -> None:
        """The backend activates each van as soon as its session (and subscription) exists."""
        while True:
            van = await self._activations.get()
            try:
                self.registry.activate(van.vin)
                signed = self.commands.build(van.vin, "activate", None, now_epoch=time.time())
                operator = self.operators[worker % len(self.operators)]
                await operator.publish(signed.topic, signed.payload, qos=1)
            except (CloudError, aiomqtt.MqttError) as exc:  # the connection is down: again
                self.activation_retries += 1
                LOG.warning("activation of %s: %s; trying again", van.vin, exc)
                self._activations.put_nowait(van)
                await asyncio.sleep(0.5)
                continue
            van.activated = True

    async def _sweep(self) -> None:
        """Tick the cores whose deadline has passed, a few times a second."""
        while True:
            await asyncio.sleep(self.SWEEP_S)
            if not self.cores_running:
                continue
            now = self.clock.now
            for van in self.vans:
                host = van.host
                if host.core.next_deadline <= now:
                    host.handle(TICK, now)

    def _schedule_step(self, van: Van) -> None:
        step = van.next_step()
        if step is not None:
            t, values = step
            self.clock.schedule(van.t0 + t, lambda now: self._step(van, values, now))

    def _step(self, van: Van, values: dict[str, Value | None], now: float) -> None:
        if not self.cores_running:
            return
        van.apply(values, now)
        self._schedule_step(van)

    async def _storm(self) -> None:
        """Every van's connection is cut at once, as a network failure would cut it.

        Each uplink reconnects after its backoff (exponential, full jitter) with the same
        client id and persistent session, and resends what was not acknowledged.
        """
        self.storms += 1
        for uplink in self.uplinks:
            uplink.drop()

    async def _drain(self) -> bool:
        """Wait until every van is connected and activated and its outbox is empty."""
        deadline = time.monotonic() + self.opts.drain_timeout_s
        while time.monotonic() < deadline:
            if all(v.activated for v in self.vans) and self.connected() == len(self.vans):
                self.cores_running = False
                if not any(v.host.outbox is not None and v.host.outbox.depth() for v in self.vans):
                    return True
            await asyncio.sleep(0.1)
            if self.progress is not None:
                self.progress(self)
        return False

    async def _stop_all(self) -> None:
        await asyncio.gather(*(u.close() for u in self.uplinks))
        tasks = [t for t in self.tasks if t is not None]
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(30.0):
                await asyncio.gather(*tasks, return_exceptions=True)
        for task in tasks:
            task.cancel()


def run_fleet(opts: FleetOptions, progress: Callable[[Any], None] | None = None) -> FleetReport:
    """Run the fleet in the mode its options ask for (a broker: real time)."""
    if opts.broker is None:
        return VirtualFleet(opts, progress=progress).run()
    return asyncio.run(LiveFleet(opts, progress=progress).run())


def status_line(fleet: VirtualFleet | LiveFleet, wall_s: float) -> str:
    """Where the fleet is, in one line: vans, records and their rate, acks, reconnects."""
    produced = acks = pending = 0
    for v in fleet.vans:
        produced += v.host.counts.records_produced
        acks += v.acks
        pending += v.host.outbox.depth() if v.host.outbox is not None else 0
    rate = produced / wall_s if wall_s > 0 else 0.0
    common = f"records {produced:,} ({rate:,.0f}/s)  acks {acks:,}  pending {pending:,}"
    if isinstance(fleet, VirtualFleet):
        return f"t={fleet.driver.now:,.0f}/{fleet.opts.duration_s:,.0f} s  {common}"
    reconnects = sum(max(0, u.stats.connects - 1) for u in fleet.uplinks)
    return (
        f"connected {fleet.connected():,}/{len(fleet.vans):,}  {common}  reconnects {reconnects:,}"
    )
