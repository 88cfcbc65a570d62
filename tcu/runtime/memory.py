"""The in-memory transport: the SIM link model and a backend, on the virtual clock.

Theory of operation. ``MemoryTransport`` is the transport a ``Host`` is handed when
nothing should touch a socket (``tcu replay``, the scenario world, a virtual fleet). A
byte "sent" is handed to the link model (``tcu.link.sim.Link``, or ``IdealLink``),
which says when it arrives, or that it does not, and the arrival is scheduled on the
host's clock at that vehicle time. So a 40-minute dead zone costs no wall time, and the
same trace gives the same bytes every run.

Uplink. When the host stores records, the transport pumps the host's uplink queue after
the link's batch window (longer while roaming). While registered and the broker is up,
batches go out; each arrives at the backend (any ``BackendPort``: the TCU's layers know
no backend), whose replies (signed acks) travel back through the link and reach the host
at their arrival time. The resend timer is the queue's own, on this transport's clock,
which is the vehicle clock. A link or broker outage makes the queue start over from the
oldest unacknowledged record when the TCU is reachable again.

Downlink. Bytes on the commands topic reach the TCU through the link; while it is
unreachable they wait, as in an MQTT persistent session. An optional ``carry`` function
makes every message cross a real broker on its way (the scenario world's relay).
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from tcu.link.modem import RegState
from tcu.link.sim import Link, Position
from tcu.runtime.host import LinkState
from tcu.vehicle import catalogue as cat

if TYPE_CHECKING:
    from tcu.runtime.host import Clock, Host

MQTT_OVERHEAD = 40  # fixed header, topic and packet id of a QoS 1 PUBLISH, roughly
GNSS_PERIOD_S = 10.0
DELAYED_AFTER_S = 60.0
TOPIC_PREFIX = "vehicles"


class Delivered(Protocol):
    """What a backend did with one message: its replies, and how many records it stored."""

    @property
    def replies(self) -> tuple[tuple[str, bytes], ...]: ...

    @property
    def stored(self) -> int: ...


class BackendPort(Protocol):
    """The backend as the in-memory transport reaches it."""

    def receive(self, topic: str, payload: bytes, now: float) -> Delivered: ...


class LinkModel(Protocol):
    """What the transport needs of a SIM link model (``Link`` or ``IdealLink``)."""

    @property
    def registered(self) -> bool: ...

    def advance(self, now: float) -> None: ...

    def next_wakeup(self) -> float | None: ...

    def batch_window(self, now: float) -> float: ...

    def send(self, nbytes: int, now: float) -> float | None: ...

    def receive(self, nbytes: int, now: float) -> float | None: ...

    def handle(self, event: Any, now: float) -> list[Any]: ...

    def summary(self) -> dict[str, Any]: ...


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
class TransportCounts:
    batches_sent: int = 0
    batches_lost: int = 0
    bytes_up: int = 0
    bytes_down: int = 0
    acks_lost: int = 0
    reconnects: int = 0
    records_delayed: int = 0
    largest_delay_s: float = 0.0
    downlinks_sent: int = 0
    downlinks_held: int = 0
    status_sent: int = 0
    status_lost: int = 0


Carry = Callable[[str, bytes], "bytes | None"]


class MemoryTransport:
    """The SIM link model and a backend in memory; see the module docstring."""

    def __init__(
        self,
        clock: Clock,
        backend: BackendPort,
        vin: str,
        *,
        link: LinkModel | None = None,
        follow_gnss: bool = True,
        topic_prefix: str = TOPIC_PREFIX,
    ) -> None:
        self.clock = clock
        self.backend = backend
        self.vin = vin
        self.link: LinkModel = link if link is not None else IdealLink()
        self.topic_prefix = topic_prefix
        self.counts = TransportCounts()
        self.broker_up = True
        self.connected = False
        self.carry: Carry | None = None
        self.host: Host | None = None
        self._held: list[bytes] = []
        self._pump_at: float | None = None
        self._resend_at: float | None = None
        self._link_wake: float | None = None
        self._was_registered = False
        self._told: LinkState | None = None
        self._schedule_link()
        if follow_gnss and isinstance(self.link, Link) and not self.link.config.route:
            clock.schedule(clock.now, self._gnss)

    def topic(self, suffix: str) -> str:
        return f"{self.topic_prefix}/{self.vin}/{suffix}"

    # --- the Transport protocol --------------------------------------------------------------

    def time(self) -> float:
        return self.clock.now

    def attach(self, host: Host) -> None:
        self.host = host
        self.connected = False  # a new boot connects afresh
        self._told = None
        self._tell_link(self.clock.now)
        self._want_pump(self.clock.now)

    def records_ready(self, now: float) -> None:
        self._want_pump(now + self.link.batch_window(now))

    def publish(self, topic_suffix: str, payload: bytes, now: float) -> None:
        if not self._reachable(now):
            self.counts.status_lost += 1  # status replies are not durable (docs/telemetry.md)
            return
        arrival = self.link.send(len(payload) + MQTT_OVERHEAD, now)
        if arrival is None:
            self.counts.status_lost += 1
            return
        self.counts.status_sent += 1
        topic = self.topic(topic_suffix)

        def arrive(t: float) -> None:
            crossed = self._cross(topic, payload)
            if crossed is not None:
                self.backend.receive(topic, crossed, t)

        self.clock.schedule(arrival, arrive)

    # --- uplink ------------------------------------------------------------------------------

    def _reachable(self, now: float) -> bool:
        self.link.advance(now)
        return self.broker_up and self.link.registered

    def _want_pump(self, at: float) -> None:
        if self._pump_at is not None and self._pump_at <= at:
            return
        self._pump_at = at
        self.clock.schedule(at, self._scheduled_pump)

    def _scheduled_pump(self, now: float) -> None:
        if self._pump_at is not None and now < self._pump_at:
            return
        self._pump_at = None
        self.pump(now)

    def _connect(self, now: float) -> None:
        if self.connected:
            return
        host = self.host
        if host is None or host.off:
            return
        self.connected = True
        self.counts.reconnects += 1
        if host.queue is not None:
            host.queue.start_over()
        held, self._held = self._held, []
        for payload in held:
            self._downlink_bytes(payload, now)

    def pump(self, now: float) -> None:
        """Send what the queue has, as far as the link takes it."""
        if not self._reachable(now):
            self.connected = False
            return
        self._connect(now)
        host = self.host
        queue = host.queue if host is not None and not host.off else None
        if queue is None:
            return
        topic = self.topic("telemetry")
        while True:
            cursor = queue.cursor
            batch = queue.next_batch()
            if batch is None:
                break
            message, payload = batch
            nbytes = len(payload) + MQTT_OVERHEAD
            arrival = self.link.send(nbytes, now)
            if arrival is None:
                queue.rewind(cursor)
                self.connected = False
                break
            self.counts.batches_sent += 1
            self.counts.bytes_up += nbytes
            if host is not None:
                for sink in host.sinks:
                    sink.batch_sent(len(message.records), nbytes, now)
            oldest = min(r.t_ms for r in message.records) / 1000.0
            self.clock.schedule(arrival, _Delivery(self, topic, payload, oldest))
        if queue.in_flight() and self._resend_at is None:
            self._resend_at = queue.resend_at()
            self.clock.schedule(self._resend_at, self._resend_check)

    def _resend_check(self, now: float) -> None:
        self._resend_at = None
        host = self.host
        queue = host.queue if host is not None and not host.off else None
        if queue is None or not queue.in_flight():
            return
        if queue.resend_due():
            queue.start_over()
        self.pump(now)

    def _arrived(self, topic: str, payload: bytes, oldest: float, now: float) -> None:
        if not self.broker_up:
            self.counts.batches_lost += 1
            return
        crossed = self._cross(topic, payload)
        if crossed is None:
            self.counts.batches_lost += 1
            return
        delivered = self.backend.receive(topic, crossed, now)
        delay = now - oldest
        if delivered.stored:
            if delay > DELAYED_AFTER_S:
                self.counts.records_delayed += delivered.stored
            self.counts.largest_delay_s = max(self.counts.largest_delay_s, delay)
        for reply_topic, reply in delivered.replies:
            self._ack_to_tcu(reply_topic, reply, now)

    def _cross(self, topic: str, payload: bytes) -> bytes | None:
        """The bytes as the other side receives them: through the real broker if any."""
        return payload if self.carry is None else self.carry(topic, payload)

    def _ack_to_tcu(self, topic: str, payload: bytes, now: float) -> None:
        if not self.broker_up or not self.connected:
            self.counts.acks_lost += 1
            return
        crossed = self._cross(topic, payload)
        if crossed is None:
            self.counts.acks_lost += 1
            return
        arrival = self.link.receive(len(crossed) + MQTT_OVERHEAD, now)
        if arrival is None:
            self.counts.acks_lost += 1
            return
        self.counts.bytes_down += len(crossed) + MQTT_OVERHEAD
        self.clock.schedule(arrival, lambda t: self._ack_arrived(crossed, t))

    def _ack_arrived(self, payload: bytes, now: float) -> None:
        host = self.host
        if host is None or host.off:
            self.counts.acks_lost += 1
            return
        host.receive_ack(payload, now)
        self.pump(now)

    # --- downlink ----------------------------------------------------------------------------

    def deliver_downlink(self, payload: bytes, now: float) -> None:
        """Bytes on the commands topic, signed or not: they reach the TCU when it is online."""
        self.counts.downlinks_sent += 1
        if not self.connected:
            if self._reachable(now):
                self._connect(now)
            if not self.connected:
                self.counts.downlinks_held += 1
                self._held.append(payload)
                return
        self._downlink_bytes(payload, now)

    def _downlink_bytes(self, payload: bytes, now: float) -> None:
        crossed = self._cross(self.topic("commands"), payload)
        arrival = None if crossed is None else self.link.receive(len(crossed) + MQTT_OVERHEAD, now)
        if crossed is None or arrival is None:
            self.counts.downlinks_held += 1
            self._held.append(payload)
            return
        self.counts.bytes_down += len(crossed) + MQTT_OVERHEAD
        self.clock.schedule(arrival, lambda t: self._downlink_arrived(crossed, t))

    def _downlink_arrived(self, payload: bytes, now: float) -> None:
        host = self.host
        if host is None or host.off:
            self._held.append(payload)  # the TCU went off on the way: the broker keeps it
            self.connected = False
            return
        host.receive_downlink(payload, now)

    # --- the world changing ------------------------------------------------------------------

    def set_broker(self, up: bool, now: float) -> None:
        self.broker_up = up
        if up:
            self._want_pump(now)
        else:
            self.connected = False

    def disconnect(self) -> None:
        """The TCU's session ends (it is switched off): it connects afresh later."""
        self.connected = False

    def _schedule_link(self) -> None:
        wake = self.link.next_wakeup()
        if wake is None or (self._link_wake is not None and self._link_wake <= wake):
            return
        self._link_wake = wake
        self.clock.schedule(wake, self._link_wakeup)

    def _link_wakeup(self, now: float) -> None:
        self._link_wake = None
        self.link.advance(now)
        registered = self.link.registered
        if registered and not self._was_registered:
            self._want_pump(now)
        elif not registered:
            self.connected = False
        self._was_registered = registered
        self._tell_link(now)
        self._schedule_link()

    def _tell_link(self, now: float) -> None:
        host = self.host
        if host is None or not host.sinks:
            return
        link = self.link
        if isinstance(link, Link):
            modem = link.modem  # read as it stands: a snapshot would sample the radio
            serving = modem.serving
            state = LinkState(
                state=modem.state.value,
                registered=link.registered,
                plmn=modem.plmn,
                operator=serving.name if serving is not None else None,
                country=link.country,
                roaming=modem.state is RegState.REGISTERED_ROAMING,
            )
        else:
            state = LinkState(state="registered_home", registered=True)
        if state != self._told:
            self._told = state
            for sink in host.sinks:
                sink.link_changed(state, now)

    def link_event(self, event: Any, now: float) -> None:
        """A position, a country, coverage or power for the link model, at ``now``."""
        self.link.advance(now)
        self.link.handle(event, now)
        self._link_wakeup(now)

    def _gnss(self, now: float) -> None:
        host = self.host
        if host is not None:
            state = host.core.state
            lat, lon = state.get(cat.LATITUDE, now), state.get(cat.LONGITUDE, now)
            if isinstance(lat, float) and isinstance(lon, float):
                with contextlib.suppress(Exception):
                    self.link_event(Position(lat=lat, lon=lon), now)
        self.clock.schedule(now + GNSS_PERIOD_S, self._gnss)

    # --- reporting ---------------------------------------------------------------------------

    def summary(self) -> dict[str, Any]:
        link = self.link.summary()
        link.update(
            uplink_connects=self.counts.reconnects,
            records_delayed=self.counts.records_delayed,
            largest_delay_s=round(self.counts.largest_delay_s, 3),
        )
        return link

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self.counts)


class _Delivery:
    """A batch arriving at the backend at its vehicle time."""

    __slots__ = ("oldest", "payload", "topic", "transport")

    def __init__(self, transport: MemoryTransport, topic: str, payload: bytes, oldest: float):
        self.transport, self.topic, self.payload, self.oldest = transport, topic, payload, oldest

    def __call__(self, now: float) -> None:
        self.transport._arrived(self.topic, self.payload, self.oldest, now)
