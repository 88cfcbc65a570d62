"""Replays through a real MQTT broker: the TCU's telemetry on a socket, acks back.

Theory of operation. The same host as everywhere (``tcu.runtime.host.Host``) is fed by
the replay driver in chunks of frames, in virtual time, as fast as the uplink keeps up;
its transport is the aiomqtt uplink (``TelemetryUplink``), which runs between chunks,
publishes the outbox and hands acks and downlinks to the host at the current vehicle
time. Each trace is one boot of the TCU (a new epoch) on its own virtual clock; the
outbox, the uplink queue and the MQTT session stay. With no broker given, amqtt runs
embedded in the same event loop; with no external backend, the cloud stub runs in the
same loop too, on the vehicle clock, so its signed commands are fresh for the TCU. At
the end the uplink drains: the summary tells what was produced, sent, stored by the
backend, refused and lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import logging
import socket
import tempfile
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cloud_stub.broker import EmbeddedBroker, mqtt_answers
from cloud_stub.errors import CloudError
from cloud_stub.service import Backend, TlsFiles
from tcu.can.setup import load_bus_setup
from tcu.can.sources import open_trace
from tcu.compose.replay import is_epoch
from tcu.errors import ConfigError, TcuError
from tcu.events import Command
from tcu.output import shown_path
from tcu.runtime.host import Host, Sink
from tcu.runtime.mqtt import BrokerURL, TelemetryUplink
from tcu.runtime.replay import ReplayDriver
from tcu.services import DEFAULT_VIN, VehicleConfig
from tcu.telemetry.storage.identity import VehicleIdentity, load_identity, provision
from tcu.telemetry.storage.outbox import Outbox
from tcu.telemetry.storage.sqlite import Synchronous

CHUNK = 2048
HIGH_WATER = 4000
LOG = logging.getLogger("tcu.online")


@dataclass(frozen=True, slots=True, kw_only=True)
class OnlineOptions:
    traces: tuple[Path, ...]
    broker: BrokerURL | None = None
    external_backend: bool = False
    keystore: Path | None = None
    workdir: Path | None = None
    vin: str = DEFAULT_VIN
    dbc: str | None = None
    mapping: str | None = None
    drain_timeout_s: float = 120.0
    protocol: str = "auto"
    commands: tuple[tuple[float, Command], ...] = ()
    """Commands injected at a vehicle time of the first trace, as ``--command`` does."""
    sinks: tuple[Sink, ...] = ()
    """Observers of the host (``tcu.runtime.host.Sink``)."""
    activation_wait_s: float = 5.0
    backend_tls: TlsFiles | None = None  # the backend's own client certificate (mutual TLS)
    synchronous: Synchronous | None = None  # the outbox's; default FULL with a workdir


@dataclass(slots=True)
class TraceResult:
    trace: str
    frames: int = 0
    vehicle_time_s: float = 0.0
    epoch: int = 0
    verdicts: Counter[str] = field(default_factory=Counter)
    records: int = 0
    active: bool = False


@dataclass(slots=True)
class OnlineReport:
    broker: str
    vin: str
    traces: list[TraceResult] = field(default_factory=list)
    records_produced: int = 0
    messages_sent: int = 0
    bytes_sent: int = 0
    records_acked: int = 0
    stored: int | None = None
    duplicates: int | None = None
    refused: dict[str, int] = field(default_factory=dict)
    outbox_depth: int = 0
    drained: bool = False
    wall_s: float = 0.0
    logs: list[str] = field(default_factory=list)
    uplink: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    @property
    def lost(self) -> int | None:
        if self.stored is None:
            return None
        return max(0, self.records_produced - self.stored - self.outbox_depth)

    def as_json(self) -> dict[str, Any]:
        return {
            "broker": self.broker,
            "vin": self.vin,
            "traces": [
                {
                    "trace": t.trace,
                    "frames": t.frames,
                    "vehicle_time_s": round(t.vehicle_time_s, 3),
                    "epoch": t.epoch,
                    "records": t.records,
                    "verdicts": dict(t.verdicts),
                }
                for t in self.traces
            ],
            "records_produced": self.records_produced,
            "messages_sent": self.messages_sent,
            "bytes_sent": self.bytes_sent,
            "records_acked": self.records_acked,
            "records_stored": self.stored,
            "duplicates": self.duplicates,
            "refused": self.refused,
            "outbox_depth": self.outbox_depth,
            "lost": self.lost,
            "drained": self.drained,
            "wall_s": round(self.wall_s, 3),
            "uplink": self.uplink,
            "warnings": self.warnings,
        }


class OnlineReplay:
    def __init__(self, opts: OnlineOptions, *, say: Callable[[str], None] = lambda s: None) -> None:
        self.opts = opts
        self.say = say
        self.setup = load_bus_setup(opts.dbc, opts.mapping)
        for trace in opts.traces:
            open_trace(trace)  # a missing file or unknown format fails before anything starts
        self.driver: ReplayDriver | None = None
        self.host: Host | None = None
        self.origin = 0.0
        self.backend: Backend | None = None

    def vehicle_clock(self) -> float:
        return self.origin + (self.driver.now if self.driver is not None else 0.0)

    async def run(self) -> OnlineReport:
        loop = asyncio.get_running_loop()
        started = loop.time()
        async with contextlib.AsyncExitStack() as stack:
            workdir = self.opts.workdir
            if workdir is None:
                workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="tcu-")))
            broker = self.opts.broker
            if broker is None:
                embedded = EmbeddedBroker()
                await embedded.start()
                stack.push_async_callback(embedded.stop)
                broker = BrokerURL(host=embedded.host, port=embedded.port)
                self.say(f"embedded MQTT broker (amqtt) on {broker.url}")
            else:
                await _reachable(broker)
            protocol = self.opts.protocol
            if self.opts.broker is None and protocol == "auto":
                protocol = "3.1.1"  # amqtt speaks MQTT 3.1.1 only
            identity = await self._identity(stack, workdir, broker)
            durable: Synchronous = self.opts.synchronous or (
                "FULL" if self.opts.workdir is not None else "NORMAL"
            )
            outbox = Outbox(workdir / "outbox.sqlite", synchronous=durable)
            stack.callback(outbox.close)
            uplink = TelemetryUplink(
                identity.vin,
                broker,
                protocol=protocol,  # type: ignore[arg-type]
            )
            task = asyncio.create_task(uplink.run(), name="tcu-uplink")

            async def stop_uplink() -> None:
                await uplink.close()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await asyncio.wait_for(task, 10.0)

            stack.push_async_callback(stop_uplink)
            if not await uplink.wait_connected(15.0):
                raise TcuError(f"cannot connect to the MQTT broker at {broker.url}")
            self.say(f"TCU {identity.vin} connected as tcu-{identity.vin} (QoS 1, persistent)")
            report = OnlineReport(broker=broker.url, vin=identity.vin)
            vehicle = VehicleConfig(vin=identity.vin)
            for n, trace in enumerate(self.opts.traces):
                result = await self._replay_one(trace, vehicle, outbox, identity, uplink, n == 0)
                report.traces.append(result)
                report.records_produced += result.records
            if not any(t.active or t.records for t in report.traces):
                report.warnings.append(
                    f"service never active: the backend did not activate {identity.vin},"
                    " so no telemetry was sent (cloud-stub activate"
                    f" {identity.vin} --broker {broker.url}; --workdir keeps the TCU's"
                    " service state from one replay to the next)"
                )
            self.say("waiting for the backend to acknowledge every record")
            report.drained = await uplink.drain(self.opts.drain_timeout_s)
            report.outbox_depth = outbox.depth()
            stats = uplink.stats
            report.messages_sent = stats.batches
            report.bytes_sent = stats.bytes_sent
            report.records_acked = stats.records_acked
            report.uplink = stats.as_dict()
            if self.backend is not None:
                ingest = self.backend.stats()
                report.stored = self.backend.store.count_records(identity.vin)
                report.duplicates = ingest.duplicates
                report.refused = dict(ingest.refused)
            report.wall_s = loop.time() - started
            return report

    async def _identity(
        self, stack: contextlib.AsyncExitStack, workdir: Path, broker: BrokerURL
    ) -> VehicleIdentity:
        if self.opts.external_backend:
            if self.opts.keystore is None:
                raise ConfigError(
                    "--external-backend needs --keystore: a vehicle provisioned with that "
                    "backend (tcu provision --vin VIN --backend-data DIR)"
                )
            return load_identity(self.opts.keystore)
        tls = self.opts.backend_tls
        if broker.tls and tls is None:
            tls = TlsFiles(
                cafile=str(broker.ca) if broker.ca else None,
                certfile=str(broker.cert) if broker.cert else None,
                keyfile=str(broker.key) if broker.key else None,
            )
        backend = Backend(broker.url, workdir / "backend", clock=self.vehicle_clock, tls=tls)
        try:
            await backend.start(timeout=15.0)
        except CloudError as exc:
            raise TcuError(f"backend on {broker.url}: {exc}") from None
        stack.push_async_callback(backend.stop)
        self.backend = backend
        self.say(f"cloud stub backend connected (data in {workdir / 'backend'})")
        keystore = self.opts.keystore or workdir / "keystore"
        if not (keystore / "vehicle.key").exists():
            provision(
                self.opts.vin,
                keystore,
                register=lambda vin, pem, kid: backend.registry.register(vin, pem, kid),
                backend_pem=lambda: backend.backend_key.public_key_pem,
            )
            self.say(f"provisioned {self.opts.vin}: Ed25519 key pair in {keystore} (mode 0600)")
        return load_identity(keystore)

    async def _replay_one(
        self,
        trace: Path,
        vehicle: VehicleConfig,
        outbox: Outbox,
        identity: VehicleIdentity,
        uplink: TelemetryUplink,
        first_boot: bool,
    ) -> TraceResult:
        source = open_trace(trace)
        frames = iter(source)
        first = next(frames, None)
        self.origin = first.timestamp if first is not None and is_epoch(first.timestamp) else 0.0
        booted = dataclasses.replace(vehicle, origin_epoch=self.origin)
        driver = ReplayDriver()
        host = self.host
        if host is None:
            host = Host(
                self.setup,
                booted,
                clock=driver,
                transport=uplink,
                outbox=outbox,
                identity=identity,
                sinks=self.opts.sinks,
            )
            self.host = host
        else:
            host.clock = driver
            host.boot(0.0, vehicle=booted)
        driver.drive(host)
        self.driver = driver
        if first_boot:
            for t, command in self.opts.commands:
                driver.schedule(t, command)
        tcu = host.tcu
        result = TraceResult(trace=str(trace), epoch=tcu.epoch)
        produced = host.counts.records_produced
        if first_boot and self.backend is not None:
            await self.backend.activate(identity.vin)
            self.say("backend sent a signed activation; waiting for the TCU to accept it")
            await self._until(lambda: bool(tcu.telemetry and tcu.telemetry.active), 15.0)
            self.say("service active: the TCU starts sending")
        elif first_boot and tcu.telemetry is not None and not tcu.telemetry.active:
            # a command that waited for this TCU arrives as it subscribes (cloud_stub.mailbox)
            wait = self.opts.activation_wait_s
            self.say(f"service not active: waiting up to {wait:g} s for the backend's activation")
            if await self._until(lambda: bool(tcu.telemetry and tcu.telemetry.active), wait, False):
                self.say("service active: the TCU starts sending")
        self.say(f"replaying {shown_path(trace)}")
        chunks = itertools.chain([first], frames) if first is not None else frames
        while True:
            chunk = list(itertools.islice(chunks, CHUNK))
            if not chunk:
                break
            more = driver.feed(chunk)
            await asyncio.sleep(0)
            while outbox.depth() > HIGH_WATER:
                await asyncio.sleep(0.01)
            if not more:
                break
        stats = driver.finish()
        for line in host.logs:
            LOG.info("%s", line)
        host.logs.clear()
        result.frames = tcu.core.counts.frames
        result.vehicle_time_s = stats.vehicle_time_s
        result.records = host.counts.records_produced - produced
        result.verdicts = Counter(v.outcome for v in tcu.services.verdicts)
        result.active = bool(tcu.telemetry and tcu.telemetry.active)
        return result

    async def _until(
        self, condition: Callable[[], bool], timeout: float, required: bool = True
    ) -> bool:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not condition():
            if loop.time() > deadline:
                if not required:
                    return False
                raise TcuError(f"timed out after {timeout:g} s waiting for the service activation")
            await asyncio.sleep(0.02)
        return True


async def _reachable(broker: BrokerURL) -> None:
    """Fail fast, with a clear message, when nothing listens at the broker's address."""
    if await asyncio.to_thread(mqtt_answers, broker.host, broker.port, tls=broker.tls):
        return  # an anonymous MQTT CONNECT was accepted
    try:
        with socket.create_connection((broker.host, broker.port), timeout=5.0):
            pass  # something listens (a broker that wants credentials or certificates)
    except OSError as exc:
        reason = exc.strerror or "no answer"
        raise TcuError(f"--broker {broker.url}: cannot connect: {reason}") from None


def run_online(opts: OnlineOptions, say: Callable[[str], None] = lambda s: None) -> OnlineReport:
    """Run an online replay to the end in a fresh event loop."""
    return asyncio.run(OnlineReplay(opts, say=say).run())


def reference_traces(names: Sequence[str] = ()) -> tuple[Path, ...]:
    from tcu.can.setup import TRACES

    chosen = names or ("depot_night.blf", "city_delivery.blf", "cross_border.log")
    paths = tuple(TRACES / n for n in chosen)
    for p in paths:
        if not p.exists():
            raise ConfigError(f"{p}: reference trace not found (run from a checkout)")
    return paths
