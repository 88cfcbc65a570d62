"""The host: the one place where the TCU core's actions are carried out.

Theory of operation. The core (``TcuCore.handle(event, now)``) only says what should
happen; ``Host`` makes it happen, the same way for every driver. It owns the TCU as
``build_tcu`` makes it (core and parts), the durable outbox and the uplink queue, and is
handed two things from outside:

- a *clock*: anything with ``now`` (vehicle seconds) and ``schedule(t, callback)``; the
  replay driver is the virtual clock, the live driver the wall clock;
- a *transport*: how records and status replies leave the TCU (``records_ready``,
  ``publish``) and when its own time runs (``time``): in memory through the SIM link
  model to a backend, over MQTT, or none at all.

Actions, in the order the core returned them:

- ``StoreRecords``: committed to the outbox in one transaction; what the outbox dropped
  at its cap is forgotten by the telemetry policy (never a delta base), and the
  transport is told there is something to send;
- ``Publish``: handed to the transport (a signed status reply);
- ``SaveDownlink``: the accepted downlink's counter committed to the outbox file, before
  what the downlink asks for is carried out;
- ``Dispatch``: queued, and handed back to the core at the same ``now`` once the actions
  of the current call are carried out (first in, first out, for every driver);
- ``SendFrame``: to the bus port the driver gave (a live bus, an out-trace, a vehicle
  simulator), counted;
- ``Emit`` (a verdict, session transition, alarm, command result or downlink outcome)
  and ``Log``: shown to the sinks.

Acks and downlinks come back through ``receive_ack`` and ``receive_downlink``. A power
cycle (``power_off``, then ``boot``) keeps the outbox and builds a new TCU on it; while
off, frames and events reach nobody. Observers subscribe with ``add_sink``: a ``Sink``
hears boots, stored records, emits, frames and logs, so a summary, a scenario's
expectations or a plot never reach into the core.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

import can

from tcu.can.setup import BusSetup
from tcu.events import (
    Action,
    Dispatch,
    Downlink,
    Emit,
    Log,
    Publish,
    SaveDownlink,
    SendFrame,
    StoreRecords,
)
from tcu.runtime.assembly import Tcu, build_tcu
from tcu.services import VehicleConfig
from tcu.telemetry.policy import TelemetryConfig
from tcu.telemetry.records import Record
from tcu.telemetry.storage.identity import VehicleIdentity
from tcu.telemetry.storage.outbox import Outbox
from tcu.telemetry.uplink import UplinkQueue
from tcu.vehicle.state import VehicleState

NO_ACTIONS: list[Action] = []


class Clock(Protocol):
    """Vehicle time and a way to be called back at a vehicle time."""

    @property
    def now(self) -> float: ...

    def schedule(self, t: float, callback: Callable[[float], object]) -> None: ...


class Transport(Protocol):
    """How the TCU's messages leave it. The host tells it; it answers through the host."""

    def time(self) -> float:
        """Seconds on the transport's own clock (the resend timer runs on it)."""
        ...

    def attach(self, host: Host) -> None:
        """The host is ready (or booted again on the same outbox): start over."""
        ...

    def records_ready(self, now: float) -> None:
        """The outbox holds new records."""
        ...

    def publish(self, topic_suffix: str, payload: bytes, now: float) -> None:
        """Signed bytes for ``{prefix}/{vin}/{topic_suffix}`` (status replies)."""
        ...


@dataclass(frozen=True, slots=True, kw_only=True)
class LinkState:
    """What a transport knows of the SIM link: registration, network, roaming."""

    state: str
    registered: bool
    plmn: str | None = None
    operator: str | None = None
    country: str | None = None
    roaming: bool = False


class Sink:
    """An observer of a host; override what you want to hear about."""

    def booted(self, tcu: Tcu, now: float) -> None:
        """A TCU was built (at start and after every power cycle)."""

    def stored(self, records: tuple[Record, ...], dropped: dict[str, int], now: float) -> None:
        """Records were committed to the outbox; ``dropped`` is what its cap dropped."""

    def emitted(self, emit: Emit, now: float) -> None:
        """A part reported a fact: a verdict, session, alarm, command result, downlink."""

    def frame_sent(self, message: can.Message, now: float) -> None:
        """The TCU put a frame on the bus."""

    def logged(self, level: str, text: str, now: float) -> None:
        """A log line from the core."""

    def batch_sent(self, records: int, nbytes: int, now: float) -> None:
        """The transport sent a signed batch of ``records`` records."""

    def acked(self, epoch: int, sequence: int, deleted: int, now: float) -> None:
        """The backend acknowledged up to ``sequence``; the outbox deleted ``deleted``."""

    def link_changed(self, link: LinkState, now: float) -> None:
        """The SIM link's registration, network or roaming changed."""


class WallClock:
    """Vehicle time as monotonic seconds since the clock was made; callbacks on the loop."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._t0 = clock()

    @property
    def now(self) -> float:
        return self._clock() - self._t0

    def schedule(self, t: float, callback: Callable[[float], object]) -> None:
        loop = asyncio.get_running_loop()
        loop.call_later(max(0.0, t - self.now), lambda: callback(self.now))


class NoTransport:
    """Nothing leaves: records stay in the outbox, status replies are counted."""

    def __init__(self) -> None:
        self.unsent = 0

    def time(self) -> float:
        return time.monotonic()

    def attach(self, host: Host) -> None:
        pass

    def records_ready(self, now: float) -> None:
        pass

    def publish(self, topic_suffix: str, payload: bytes, now: float) -> None:
        self.unsent += 1


@dataclass(slots=True)
class HostCounts:
    records_produced: int = 0
    records_dropped_at_cap: int = 0
    max_outbox_depth: int = 0
    frames_sent: int = 0
    status_published: int = 0
    power_cycles: int = 0
    dispatched: int = 0
    events_while_off: int = 0


def _ignore(msg: can.Message, now: float) -> list[Action]:
    return NO_ACTIONS


class _Off:
    """The TCU while it is off: no timers, and it knows nothing of the vehicle."""

    next_deadline = float("inf")

    def __init__(self) -> None:
        self.state = VehicleState()


class Host:
    """One TCU, its outbox and uplink queue; carries out every action (module docstring)."""

    def __init__(
        self,
        setup: BusSetup,
        vehicle: VehicleConfig,
        *,
        clock: Clock,
        transport: Transport | None = None,
        outbox: Outbox | None = None,
        identity: VehicleIdentity | None = None,
        telemetry: TelemetryConfig | None = None,
        send_frame: Callable[[can.Message, float], None] | None = None,
        sinks: Iterable[Sink] = (),
    ) -> None:
        self.setup = setup
        self.vehicle = vehicle
        self.clock = clock
        self.transport: Transport = transport if transport is not None else NoTransport()
        self.outbox = outbox
        self.identity = identity
        self.telemetry_config = telemetry
        self.send_frame = send_frame
        self.sinks: list[Sink] = list(sinks)
        self.counts = HostCounts()
        self.logs: list[str] = []
        self.off = False
        self._off = _Off()
        self.queue: UplinkQueue | None = None
        self._pending: deque[Any] = deque()
        self._carrying = False
        self.tcu: Tcu
        self.frame: Callable[[can.Message, float], list[Action]]
        self._build(clock.now)

    # --- the TCU's life ----------------------------------------------------------------------

    def _build(self, now: float) -> None:
        self.tcu = build_tcu(
            self.setup,
            self.vehicle,
            outbox=self.outbox,
            identity=self.identity,
            telemetry=self.telemetry_config,
        )
        self.frame = self.tcu.core.frame
        self.off = False
        if self.queue is None and self.outbox is not None and self.identity is not None:
            self.queue = UplinkQueue(
                self.outbox,
                self.identity,
                clock_ms=lambda: self.clock.now * 1000.0,
                clock=lambda: self.transport.time(),
            )
        for sink in self.sinks:
            sink.booted(self.tcu, now)
        self.transport.attach(self)

    def connect(self, transport: Transport) -> None:
        """Hand the host its transport (when it can only be made after the host)."""
        self.transport = transport
        transport.attach(self)

    def add_sink(self, sink: Sink) -> None:
        self.sinks.append(sink)
        sink.booted(self.tcu, self.clock.now)

    @property
    def core(self) -> Any:
        """The running core (``TcuCore``), or while off a stand-in with no timers."""
        return self._off if self.off else self.tcu.core

    @property
    def epoch(self) -> int:
        return self.tcu.epoch

    def power_off(self) -> None:
        """The TCU is off: it hears no frame and no message until ``boot``."""
        self._off = _Off()
        self.off = True
        self.frame = _ignore
        self._pending.clear()

    def boot(self, now: float, *, vehicle: VehicleConfig | None = None) -> None:
        """Power on again: a new TCU (a new boot epoch) on the same outbox and queue."""
        self.counts.power_cycles += 1
        if vehicle is not None:
            self.vehicle = vehicle
        self._build(now)

    # --- into the core -----------------------------------------------------------------------

    def handle(self, event: Any, now: float) -> list[Action]:
        """Hand ``event`` to the core and carry out what it returns."""
        if self.off:
            self.counts.events_while_off += 1
            return NO_ACTIONS
        actions: list[Action] = self.tcu.core.handle(event, now)
        if actions:
            self.carry_out(actions, now)
        return actions

    def receive_ack(self, payload: bytes, now: float) -> bool:
        """A signed ack from the backend: delete what it covers, tell the core. False if refused."""
        if self.queue is None or self.off:
            return False
        before = self.queue.stats.records_acked
        ack = self.queue.receive_ack(payload)
        if ack is None:
            return False
        deleted = self.queue.stats.records_acked - before
        for sink in self.sinks:
            sink.acked(ack.epoch, ack.sequence, deleted, now)
        self.handle(ack, now)
        return True

    def receive_downlink(self, payload: bytes, now: float) -> None:
        """Bytes from the commands topic, signed or not; the downlink part judges them."""
        self.handle(Downlink(payload=payload), now)

    # --- carrying out ------------------------------------------------------------------------

    def carry_out(self, actions: Iterable[Action], now: float) -> None:
        """Carry out ``actions``; dispatched events follow at the same ``now``, in order."""
        self._run(actions, now)
        if self._carrying:
            return
        self._carrying = True
        try:
            pending = self._pending
            while pending and not self.off:
                self.counts.dispatched += 1
                self._run(self.tcu.core.handle(pending.popleft(), now), now)
        finally:
            self._carrying = False

    def _run(self, actions: Iterable[Action], now: float) -> None:
        for action in actions:
            kind = type(action)
            if kind is StoreRecords:
                self._store(action.records, now)  # type: ignore[union-attr]
            elif kind is Emit:
                for sink in self.sinks:
                    sink.emitted(action, now)  # type: ignore[arg-type]
            elif kind is SaveDownlink:
                if self.outbox is None:
                    raise RuntimeError("a downlink accepted by a TCU without an outbox")
                self.outbox.save_downlink(action.counter, action.active)  # type: ignore[union-attr]
            elif kind is Dispatch:
                self._pending.append(action.event)  # type: ignore[union-attr]
            elif kind is Publish:
                self.counts.status_published += 1
                self.transport.publish(action.topic_suffix, action.payload, now)  # type: ignore[union-attr]
            elif kind is SendFrame:
                message = action.message  # type: ignore[union-attr]
                self.counts.frames_sent += 1
                if self.send_frame is not None:
                    self.send_frame(message, now)
                for sink in self.sinks:
                    sink.frame_sent(message, now)
            elif kind is Log:
                level, text = action.level, action.text  # type: ignore[union-attr]
                self.logs.append(f"t={now:9.3f}s {level}: {text}")
                for sink in self.sinks:
                    sink.logged(level, text, now)
            else:
                raise TypeError(f"the host cannot carry out {action!r}")

    def _store(self, records: tuple[Record, ...], now: float) -> None:
        outbox = self.outbox
        if outbox is None:
            raise RuntimeError("records produced by a TCU without an outbox")
        before = outbox.depth()
        dropped = outbox.append(records)
        telemetry = self.tcu.telemetry
        if telemetry is not None and outbox.last_dropped:
            telemetry.forget_dropped(outbox.last_dropped)
        counts = self.counts
        counts.records_produced += len(records)
        counts.records_dropped_at_cap += sum(dropped.values())
        depth = outbox.depth()
        counts.max_outbox_depth = max(counts.max_outbox_depth, depth)
        for sink in self.sinks:
            sink.stored(records, dropped, now)
        if depth > before or dropped:
            self.transport.records_ready(now)
