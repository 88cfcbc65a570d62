"""The TCU, its SIM link and the backend, wired in memory on one virtual clock.

Theory of operation. ``World`` is the in-memory pair (as h11's ``ConnectionPair``): the
TCU core with its parts, the durable outbox, the sans-I/O uplink queue, the link model
and the cloud stub's ingest, registry and command builder, all driven by one
``ReplayDriver``. Nothing here opens a socket or reads a clock: a byte "sent" is handed
to the link model, which says when it arrives (or that it does not), and the arrival is
scheduled on the driver's queue at that vehicle time. So a 40-minute dead zone costs
no wall time, and the same trace gives the same bytes every run.

Flow. ``StoreRecords`` actions are committed to the outbox, then the uplink is pumped
(after the link policy's batch window: longer while roaming). While registered and the
broker is up, batches go out through ``link.send``; the backend stores each
(VIN, epoch, seq) once and answers with a signed ack that travels back through
``link.receive`` and deletes what it covers. A link or broker outage makes the uplink
start over from the oldest unacknowledged record when it comes back. Downlinks
(activation, commands, forged or replayed messages) travel the other way and wait, as
in an MQTT persistent session, while the TCU is unreachable.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import can

from cloud_stub.commands import CommandBuilder
from cloud_stub.ingest import Ingest, Refused
from cloud_stub.ingest import Publish as BackendPublish
from cloud_stub.keys import load_backend_key
from cloud_stub.registry import Registry
from cloud_stub.store import Store
from tcu.can.setup import BusSetup
from tcu.events import (
    Action,
    Dispatch,
    Downlink,
    Log,
    Publish,
    SendFrame,
    StoreRecords,
)
from tcu.link.model import Link, LinkConfig, Position
from tcu.runtime.assembly import Tcu, build_tcu
from tcu.runtime.relay import BrokerRelay
from tcu.runtime.replay import ReplayDriver
from tcu.services import VehicleConfig
from tcu.telemetry.identity import load_identity, provision
from tcu.telemetry.outbox import Outbox
from tcu.telemetry.policy import TelemetryConfig
from tcu.telemetry.uplink import UplinkQueue
from tcu.vehicle import catalogue as cat

MQTT_OVERHEAD = 40  # fixed header, topic and packet id of a QoS 1 PUBLISH, roughly
GNSS_PERIOD_S = 10.0
RESEND_AFTER_S = 30.0
DELAYED_AFTER_S = 60.0


class IdealLink:
    """A link that is always registered at home with a small fixed latency."""

    def __init__(self, latency: float = 0.05) -> None:
        self.latency = latency
        self.up = 0
        self.down = 0

    @property
    def registered(self) -> bool:
        return True

    def advance(self, now: float) -> None:
        pass

    def next_wakeup(self) -> float | None:
        return None

    def batch_window(self, now: float) -> float:
        return 0.0

    def send(self, nbytes: int, now: float) -> float | None:
        self.up += nbytes
        return now + self.latency

    def receive(self, nbytes: int, now: float) -> float | None:
        self.down += nbytes
        return now + self.latency

    def handle(self, event: Any, now: float) -> list[Any]:
        return []

    def summary(self) -> dict[str, Any]:
        return {"model": "ideal", "bytes_up": self.up, "bytes_down": self.down}


@dataclass(slots=True)
class WorldCounts:
    records_produced: int = 0
    records_dropped_at_cap: int = 0
    batches_sent: int = 0
    bytes_up: int = 0
    bytes_down: int = 0
    acks_lost: int = 0
    batches_lost: int = 0
    reconnects: int = 0
    max_outbox_depth: int = 0
    records_delayed: int = 0
    largest_delay_s: float = 0.0
    downlinks_sent: int = 0
    downlinks_held: int = 0
    status_sent: int = 0
    power_cycles: int = 0
    frames_sent: int = 0
    refused_by_backend: dict[str, int] = field(default_factory=dict)


class World:
    """One van, its link and the backend, in virtual time."""

    def __init__(
        self,
        setup: BusSetup,
        vehicle: VehicleConfig,
        workdir: Path,
        *,
        telemetry: TelemetryConfig | None = None,
        link: LinkConfig | None = None,
        outbox_cap: int = 10_000,
        follow_gnss: bool = True,
        activate: bool = True,
    ) -> None:
        self.setup = setup
        self.vehicle = vehicle
        self.workdir = workdir
        self.telemetry_config = telemetry or TelemetryConfig(vin=vehicle.vin)
        self.outbox_cap = outbox_cap
        self.follow_gnss = follow_gnss
        self.counts = WorldCounts()
        self.logs: list[str] = []
        self.sent_frames: list[tuple[float, can.Message]] = []
        self.on_frame: Callable[[can.Message, float], None] | None = None
        self.topic_prefix = "vehicles"
        # backend
        data = workdir / "backend"
        self.registry = Registry(_mkdir(data) / "registry.sqlite")
        self.store = Store(data / "store.sqlite")
        self.backend_key = load_backend_key(data)
        self.ingest = Ingest(self.registry, self.store, backend_key=self.backend_key)
        self.commands = CommandBuilder(self.registry, self.backend_key)
        # vehicle identity, provisioned with the backend
        keystore = workdir / "keystore"
        if not (keystore / "vehicle.key").exists():
            provision(
                vehicle.vin,
                keystore,
                register=lambda vin, pem, kid: self.registry.register(vin, pem, kid),
                backend_pem=lambda: self.backend_key.public_key_pem,
            )
        self.identity = load_identity(keystore, vehicle.vin)
        self.link: Link | IdealLink = Link(link) if link is not None else IdealLink()
        self.link_config = link
        self.broker_up = True
        self.relay: BrokerRelay | None = None  # messages cross a real broker when set
        self.connected = False
        self._held_downlinks: list[bytes] = []
        self._pump_at: float | None = None
        self._resend_at: float | None = None
        self._link_wake: float | None = None
        self._last_progress = 0.0
        self._was_registered = False
        self._deactivating: str | None = None
        self.tcu: Tcu
        self.outbox: Outbox
        self.queue: UplinkQueue
        self._boot()
        self.driver = ReplayDriver(self.tcu.core, (), on_action=self.on_action)
        self._schedule_link()
        if follow_gnss and (link is None or not link.route):
            self.driver.schedule(0.0, self._gnss)
        if activate:
            self.driver.schedule(0.0, lambda t: self.activate(t))

    # --- building ---------------------------------------------------------------------------

    def _boot(self) -> None:
        self.outbox = Outbox(
            self.workdir / "outbox.sqlite", cap=self.outbox_cap, synchronous="NORMAL"
        )
        self.tcu = build_tcu(
            self.setup,
            self.vehicle,
            outbox=self.outbox,
            identity=self.identity,
            telemetry=self.telemetry_config,
        )
        self.queue = UplinkQueue(
            self.outbox, self.identity, clock_ms=lambda: self.driver.now * 1000.0
        )
        self.connected = False

    @property
    def core(self) -> Any:
        return self.tcu.core

    @property
    def now(self) -> float:
        return self.driver.now

    def replay(
        self,
        frames: Iterable[can.Message],
        *,
        start: float | None = None,
        stop: float | None = None,
        speed: float | None = None,
        on_progress: Callable[[int, float], None] | None = None,
    ) -> Any:
        """Run the trace's frames through the world; the driver's stats."""
        d = self.driver
        d.frames, d.start, d.stop, d.speed, d.on_progress = frames, start, stop, speed, on_progress
        return d.run()

    def advance(self, until: float) -> None:
        self.driver.advance(until)

    def drain(self, limit_s: float = 3600.0, step_s: float = 5.0) -> bool:
        """Let virtual time run until the backend holds every record (or ``limit_s``)."""
        end = self.now + limit_s
        while self.outbox.depth() and self.now < end:
            self.advance(min(end, self.now + step_s))
        return self.outbox.depth() == 0

    def close(self) -> None:
        closers = [self.outbox.close, self.store.close, self.registry.close]
        if self.relay is not None:
            closers.append(self.relay.close)
        for closer in closers:
            with contextlib.suppress(Exception):
                closer()

    # --- actions from the core ---------------------------------------------------------------

    def on_action(self, action: Action, now: float) -> None:
        if isinstance(action, StoreRecords):
            before = self.outbox.depth()
            dropped = self.outbox.append(action.records)
            if self.tcu.telemetry is not None:
                self.tcu.telemetry.forget_dropped(self.outbox.last_dropped)
            self.counts.records_produced += len(action.records)
            self.counts.records_dropped_at_cap += sum(dropped.values())
            depth = self.outbox.depth()
            self.counts.max_outbox_depth = max(self.counts.max_outbox_depth, depth)
            if depth > before or dropped:
                self._want_pump(now + self.link.batch_window(now))
        elif isinstance(action, Publish):
            self._uplink_status(action.payload, now)
        elif isinstance(action, Dispatch):
            self.driver.schedule(now, action.event)
        elif isinstance(action, SendFrame):
            self.counts.frames_sent += 1
            self.sent_frames.append((now, action.message))
            if self.on_frame is not None:
                self.on_frame(action.message, now)
        elif isinstance(action, Log):
            self.logs.append(f"t={now:9.3f}s {action.level}: {action.text}")

    # --- uplink ------------------------------------------------------------------------------

    def _reachable(self, now: float) -> bool:
        self.link.advance(now)
        return self.broker_up and self.link.registered

    def _want_pump(self, at: float) -> None:
        if self._pump_at is not None and self._pump_at <= at:
            return
        self._pump_at = at
        self.driver.schedule(at, self._scheduled_pump)

    def _scheduled_pump(self, now: float) -> None:
        if self._pump_at is not None and now < self._pump_at:
            return
        self._pump_at = None
        self._pump(now)

    def _connect(self, now: float) -> None:
        if self.connected:
            return
        self.connected = True
        self.counts.reconnects += 1
        self.queue.start_over()
        self._last_progress = now
        held, self._held_downlinks = self._held_downlinks, []
        for payload in held:
            self._downlink_bytes(payload, now)

    def _disconnect(self) -> None:
        self.connected = False

    def _pump(self, now: float) -> None:
        if not self._reachable(now):
            self._disconnect()
            return
        self._connect(now)
        topic = f"{self.topic_prefix}/{self.identity.vin}/telemetry"
        while True:
            cursor = self.queue.cursor
            batch = self.queue.next_batch()
            if batch is None:
                break
            message, payload = batch
            arrival = self.link.send(len(payload) + MQTT_OVERHEAD, now)
            if arrival is None:
                self.queue.rewind(cursor)
                self._disconnect()
                break
            self.counts.batches_sent += 1
            self.counts.bytes_up += len(payload) + MQTT_OVERHEAD
            oldest = min(r.t_ms for r in message.records) / 1000.0
            self.driver.schedule(
                arrival, _Delivery(self, topic, payload, oldest, len(message.records))
            )
        if self.queue.in_flight() and self._resend_at is None:
            self._resend_at = now + RESEND_AFTER_S
            self.driver.schedule(self._resend_at, self._resend_check)

    def _resend_check(self, now: float) -> None:
        self._resend_at = None
        if not self.queue.in_flight():
            return
        if now - self._last_progress >= RESEND_AFTER_S:
            self.queue.start_over()
            self._last_progress = now
        self._pump(now)
        if self.queue.in_flight() and self._resend_at is None:
            self._resend_at = now + RESEND_AFTER_S
            self.driver.schedule(self._resend_at, self._resend_check)

    def backend_receive(self, topic: str, payload: bytes, now: float) -> list[BackendPublish]:
        """The backend takes a message off the broker; returns what it publishes."""
        out: list[BackendPublish] = []
        for reply in self.ingest.receive(topic, payload):
            if isinstance(reply, Refused):
                refused = self.counts.refused_by_backend
                refused[reply.reason] = refused.get(reply.reason, 0) + 1
            else:
                out.append(reply)
        return out

    def _cross_broker(self, topic: str, payload: bytes) -> bytes | None:
        """The bytes as the other side receives them: through the real broker if any."""
        if self.relay is None:
            return payload
        return self.relay.carry(topic, payload)

    def _ack_to_tcu(self, payload: bytes, now: float) -> None:
        if not self.broker_up or not self.connected:
            self.counts.acks_lost += 1
            return
        crossed = self._cross_broker(f"{self.topic_prefix}/{self.identity.vin}/ack", payload)
        if crossed is None:
            self.counts.acks_lost += 1
            return
        payload = crossed
        arrival = self.link.receive(len(payload) + MQTT_OVERHEAD, now)
        if arrival is None:
            self.counts.acks_lost += 1
            return
        self.counts.bytes_down += len(payload) + MQTT_OVERHEAD
        self.driver.schedule(arrival, lambda t: self._tcu_ack(payload, t))

    def _tcu_ack(self, payload: bytes, now: float) -> list[Action]:
        before = self.queue.stats.records_acked
        ack = self.queue.receive_ack(payload)
        if ack is None:
            return []
        if self.queue.stats.records_acked > before:
            self._last_progress = now
        actions = self.tcu.core.handle(ack, now)
        self._pump(now)
        return actions

    def _uplink_status(self, payload: bytes, now: float) -> None:
        if not self._reachable(now):
            return  # status replies are not durable (see docs/telemetry.md)
        arrival = self.link.send(len(payload) + MQTT_OVERHEAD, now)
        if arrival is None:
            return
        self.counts.status_sent += 1
        topic = f"{self.topic_prefix}/{self.identity.vin}/status"

        def arrive(t: float) -> None:
            crossed = self._cross_broker(topic, payload)
            if crossed is not None:
                self.backend_receive(topic, crossed, t)

        self.driver.schedule(arrival, arrive)

    # --- downlink ----------------------------------------------------------------------------

    def send_command(self, name: str, argument: str | None, now: float) -> str:
        """The backend signs ``name`` and publishes it; returns the command id."""
        signed = self.commands.build(
            self.identity.vin, name, argument, now_epoch=self.vehicle.origin_epoch + now
        )
        self.deliver_downlink(signed.payload, now)
        return signed.downlink.command_id

    def activate(self, now: float) -> None:
        self._deactivating = None
        self.registry.activate(self.identity.vin)
        self.send_command("activate", None, now)

    def deactivate(self, now: float) -> None:
        """Tell the TCU to stop; the backend takes telemetry until the TCU's last record.

        The TCU ends its service with a ``service`` record; the registry switches the
        service off once that record, and every record before it, is stored. Switched off
        at once, the backend would refuse that record and the TCU would resend it forever.
        """
        self._deactivating = self.send_command("deactivate", None, now)

    def _check_deactivated(self) -> None:
        vin = self.identity.vin
        if self._deactivating is not None and self.store.service_stopped(vin, self._deactivating):
            self._deactivating = None
            self.registry.deactivate(vin)

    def deliver_downlink(self, payload: bytes, now: float) -> None:
        """Bytes on the commands topic, signed or not: they reach the TCU when it is online."""
        self.counts.downlinks_sent += 1
        if not self.broker_up or not self._reachable(now) or not self.connected:
            if self.broker_up and self._reachable(now):
                self._connect(now)
            else:
                self.counts.downlinks_held += 1
                self._held_downlinks.append(payload)
                return
        self._downlink_bytes(payload, now)

    def _downlink_bytes(self, payload: bytes, now: float) -> None:
        crossed = self._cross_broker(f"{self.topic_prefix}/{self.identity.vin}/commands", payload)
        if crossed is None:
            self.counts.downlinks_held += 1
            self._held_downlinks.append(payload)
            return
        arrival = self.link.receive(len(payload) + MQTT_OVERHEAD, now)
        if arrival is None:
            self.counts.downlinks_held += 1
            self._held_downlinks.append(payload)
            return
        self.counts.bytes_down += len(payload) + MQTT_OVERHEAD
        self.driver.schedule(arrival, Downlink(payload=payload))

    # --- the world changing -----------------------------------------------------------------

    def set_broker(self, up: bool, now: float) -> None:
        if self.relay is not None and up != self.broker_up:
            (self.relay.up if up else self.relay.down)()
        self.broker_up = up
        if up:
            self._want_pump(now)
        else:
            self._disconnect()

    def power_cycle(self, now: float) -> None:
        """The TCU restarts: the core and its state are new, the outbox file stays."""
        self.counts.power_cycles += 1
        self.outbox.close()
        self._boot()
        self.driver.core = self.tcu.core
        self._want_pump(now)

    def _schedule_link(self) -> None:
        wake = self.link.next_wakeup()
        if wake is None or (self._link_wake is not None and self._link_wake <= wake):
            return
        self._link_wake = wake
        self.driver.schedule(wake, self._link_wakeup)

    def _link_wakeup(self, now: float) -> None:
        self._link_wake = None
        self.link.advance(now)
        registered = self.link.registered
        if registered and not self._was_registered:
            self._want_pump(now)
        elif not registered:
            self._disconnect()
        self._was_registered = registered
        self._schedule_link()

    def link_event(self, event: Any, now: float) -> None:
        self.link.advance(now)
        self.link.handle(event, now)
        self._link_wakeup(now)

    def _gnss(self, now: float) -> None:
        state = self.tcu.core.state
        lat, lon = state.get(cat.LATITUDE, now), state.get(cat.LONGITUDE, now)
        if isinstance(lat, float) and isinstance(lon, float) and isinstance(self.link, Link):
            with contextlib.suppress(Exception):
                self.link_event(Position(lat=lat, lon=lon), now)
        self.driver.schedule(now + GNSS_PERIOD_S, self._gnss)

    # --- reporting ---------------------------------------------------------------------------

    def summary(self) -> dict[str, Any]:
        vin = self.identity.vin
        stats = self.ingest.stats()
        stored = self.store.count_records(vin)
        progress = [
            {"epoch": p.epoch, "acked": p.acked, "stored": p.stored}
            for p in self.store.progress()
            if p.vin == vin
        ]
        gaps = sum(max(0, p["stored"] - p["acked"]) for p in progress)
        telemetry = dataclasses.asdict(self.counts)
        telemetry.update(
            outbox_depth=self.outbox.depth(),
            outbox_dropped=dict(self.outbox.dropped),
            uplink=self.queue.stats.as_dict(),
            lost=max(0, self.counts.records_produced - stored - self.outbox.depth()),
        )
        backend = {
            "records_stored": stored,
            "duplicates": stats.duplicates,
            "refused": dict(stats.refused),
            "statuses": stats.statuses,
            "epochs": progress,
            "records_beyond_a_gap": gaps,
        }
        link = self.link.summary()
        link.update(
            uplink_connects=self.counts.reconnects,
            largest_outbox_depth=self.counts.max_outbox_depth,
            records_delayed=self.counts.records_delayed,
            largest_delay_s=round(self.counts.largest_delay_s, 3),
        )
        return {"telemetry": telemetry, "backend": backend, "link": link}


class _Delivery:
    """A batch arriving at the backend at its vehicle time."""

    __slots__ = ("n", "oldest", "payload", "topic", "world")

    def __init__(self, world: World, topic: str, payload: bytes, oldest: float, n: int) -> None:
        self.world, self.topic, self.payload, self.oldest, self.n = world, topic, payload, oldest, n

    def __call__(self, now: float) -> None:
        w = self.world
        if not w.broker_up:
            w.counts.batches_lost += 1
            return
        payload = w._cross_broker(self.topic, self.payload)
        if payload is None:
            w.counts.batches_lost += 1
            return
        before = w.store.count_records(w.identity.vin)
        replies = w.backend_receive(self.topic, payload, now)
        if w._deactivating is not None:
            w._check_deactivated()
        stored = w.store.count_records(w.identity.vin) - before
        delay = now - self.oldest
        if stored and delay > DELAYED_AFTER_S:
            w.counts.records_delayed += stored
        w.counts.largest_delay_s = max(w.counts.largest_delay_s, delay if stored else 0.0)
        for reply in replies:
            w._ack_to_tcu(reply.payload, now)


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path
