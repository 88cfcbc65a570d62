"""Live CAN buses: any python-can interface, configured as python-can's tools are, and faults.

Theory of operation. ``resolve_bus`` turns the command line (``-i/-c/-b/--fd``) into a
``BusSpec`` the way python-can's own tools do, through ``can.util.load_config``: what the
command line leaves out comes from ``CAN_INTERFACE``/``CAN_CHANNEL``/``CAN_BITRATE``/
``CAN_CONFIG`` or a python-can config file (``~/.canrc``, ``~/can.conf``, ``/etc/can.conf``).
A spec can be opened any number of times (``open_bus``), which is how a driver reopens the
same channel path after the adapter came back.

``GuardedBus`` wraps an open bus for ``can.Notifier``: python-can raises out of ``recv``
when a USB adapter vanishes (``can.CanOperationError``, ``serial.SerialException``, plain
``OSError``; see docs/bench.md), and a Notifier would let that escape into the event loop or
kill its reader thread. The guard reports the first such fault through ``on_fault`` and from
then on reads nothing; garbage from the adapter (python-can's slcan parser raises
``ValueError`` on a malformed line) is reported through ``on_bad_input`` and skipped.

``BusHealth`` counts what the bus reports about itself. Error frames are classified with
the SocketCAN layout (``linux/can/error.h``: the class in the identifier, controller state
in byte 1), which python-can's socketcan, virtual and udp_multicast interfaces carry as
is; other interfaces' error frames are counted, not classified. The live driver reopens
a lost bus on a ``tcu.runtime.backoff.Backoff`` schedule, reset by a successful open.

A ``udp_multicast`` bus is opened isolated (``isolate_multicast``): Linux delivers to a
socket bound to a port the datagrams of every group any socket on the machine joined on
that port, unless ``IP_MULTICAST_ALL`` is off, so two benches on one machine would hear
each other's vans. With it off, a bus hears only the group it named.
"""

from __future__ import annotations

import contextlib
import socket
import sys
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import can

from tcu.errors import BusError

FAULTS: tuple[type[BaseException], ...] = (can.CanError, OSError)
"""What python-can raises when the adapter or interface under a bus goes away."""

BAD_INPUT: tuple[type[BaseException], ...] = (ValueError, IndexError)
"""What a python-can parser raises on bytes that are not a frame."""

LISTEN_ONLY_OPTIONS: Mapping[str, Mapping[str, Any]] = MappingProxyType(
    {
        "slcan": {"listen_only": True},
        "pcan": {"state": can.BusState.PASSIVE},
        "kvaser": {"driver_mode": False},
    }
)
"""Interfaces whose controller python-can can put in listen-only (silent) mode."""

SOCKETCAN_LAYOUT = frozenset({"socketcan", "virtual", "udp_multicast", "socketcand"})

# linux/can/error.h
CAN_ERR_TX_TIMEOUT = 0x001
CAN_ERR_LOSTARB = 0x002
CAN_ERR_CRTL = 0x004
CAN_ERR_PROT = 0x008
CAN_ERR_TRX = 0x010
CAN_ERR_ACK = 0x020
CAN_ERR_BUSOFF = 0x040
CAN_ERR_BUSERROR = 0x080
CAN_ERR_RESTARTED = 0x100
CAN_ERR_CRTL_RX_OVERFLOW = 0x01
CAN_ERR_CRTL_TX_OVERFLOW = 0x02
CAN_ERR_CRTL_RX_WARNING = 0x04
CAN_ERR_CRTL_TX_WARNING = 0x08
CAN_ERR_CRTL_RX_PASSIVE = 0x10
CAN_ERR_CRTL_TX_PASSIVE = 0x20
CAN_ERR_CRTL_ACTIVE = 0x40

BUS_STATES = ("active", "warning", "passive", "bus-off")
NO_INTERFACE = (
    "no CAN interface: pass -i/--interface (or set CAN_INTERFACE, or write a python-can "
    "config file such as ~/.canrc)"
)


@dataclass(frozen=True, slots=True, kw_only=True)
class BusSpec:
    """How to open one bus: what ``can.Bus(interface=..., channel=..., **options)`` gets."""

    interface: str
    channel: Any = None
    options: Mapping[str, Any] = field(default_factory=dict)
    listen_only: bool = False

    def __post_init__(self) -> None:
        if self.interface not in can.VALID_INTERFACES:
            raise BusError(_unknown_interface(self.interface))
        object.__setattr__(self, "options", MappingProxyType(dict(self.options)))

    @property
    def hardware_listen_only(self) -> bool:
        """Whether the controller itself is silent (else the driver just never sends)."""
        return self.listen_only and self.interface in LISTEN_ONLY_OPTIONS

    @property
    def fd(self) -> bool:
        return bool(self.options.get("fd", False))

    def describe(self) -> str:
        return f"{self.interface}:{self.channel}" if self.channel is not None else self.interface


def _unknown_interface(name: object) -> str:
    known = ", ".join(sorted(can.VALID_INTERFACES))
    return f"unknown CAN interface {name!r} (python-can knows: {known})"


def resolve_bus(
    *,
    interface: str | None = None,
    channel: str | None = None,
    bitrate: int | None = None,
    fd: bool = False,
    listen_only: bool = False,
    config_file: str | None = None,
    context: str | None = None,
) -> BusSpec:
    """The bus the command line means, completed from python-can's environment and files."""
    given: dict[str, Any] = {}
    if interface:
        given["interface"] = interface
    if channel is not None:
        given["channel"] = channel
    if bitrate is not None:
        if bitrate <= 0:
            raise BusError(f"bitrate must be > 0, got {bitrate}")
        given["bitrate"] = bitrate
    if fd:
        given["fd"] = True
    try:
        config = dict(can.util.load_config(path=config_file, config=given, context=context))
    except can.CanInterfaceNotImplementedError:
        name = interface or _configured_interface(config_file, context)
        if not name:
            raise BusError(NO_INTERFACE) from None
        raise BusError(_unknown_interface(name)) from None
    except (ValueError, TypeError, OSError) as e:
        raise BusError(f"CAN bus configuration: {e}") from None
    name = config.pop("interface", None)
    where = config.pop("channel", None)
    if not name:
        raise BusError(NO_INTERFACE)
    if listen_only:
        config.update(LISTEN_ONLY_OPTIONS.get(name, {}))
    return BusSpec(interface=name, channel=where, options=config, listen_only=listen_only)


def _configured_interface(config_file: str | None, context: str | None) -> str | None:
    """The interface python-can's environment or config files name, if any."""
    sources: list[dict[str, Any]] = [
        dict(can.rc),
        can.util.load_environment_config(context),
        can.util.load_environment_config(),
    ]
    with contextlib.suppress(ValueError, OSError):
        if context:
            sources.append(can.util.load_file_config(config_file, context))
        sources.append(can.util.load_file_config(config_file))
    for source in sources:
        name = source.get("interface") or source.get("bustype")
        if name:
            return str(name)
    return None


def open_bus(spec: BusSpec) -> can.BusABC:
    """Open the bus ``spec`` describes; BusError says why it cannot be opened."""
    try:
        bus: can.BusABC = can.Bus(interface=spec.interface, channel=spec.channel, **spec.options)
    except (can.CanError, ValueError, TypeError, OSError, ImportError, NotImplementedError) as e:
        text = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise BusError(f"cannot open CAN bus {spec.describe()}: {text}") from None
    if spec.interface == "udp_multicast":
        isolate_multicast(bus)
    return bus


# linux/in.h and linux/in6.h; Python's socket module names neither
IP_MULTICAST_ALL: int | None = 49 if sys.platform.startswith("linux") else None
IPV6_MULTICAST_ALL: int | None = 29 if sys.platform.startswith("linux") else None


def isolate_multicast(bus: Any) -> bool:
    """Make a python-can ``udp_multicast`` bus drop other groups' datagrams on its port.

    True when done; False where the platform has no such option (elsewhere than Linux the
    socket already receives only the groups it joined) or the bus has no such socket.
    """
    sock = getattr(getattr(bus, "_multicast", None), "_socket", None)
    return isinstance(sock, socket.socket) and isolate_socket(sock)


def isolate_socket(sock: socket.socket) -> bool:
    """``IP_MULTICAST_ALL`` (or its IPv6 twin) off on ``sock``; False where there is none."""
    if sock.family == socket.AF_INET6:
        level, option = socket.IPPROTO_IPV6, IPV6_MULTICAST_ALL
    else:
        level, option = socket.IPPROTO_IP, IP_MULTICAST_ALL
    if option is None:
        return False
    sock.setsockopt(level, option, 0)
    return True


def close_bus(bus: can.BusABC) -> None:
    """Shut ``bus`` down, also when its adapter is gone; never raises.

    python-can's slcan ``shutdown`` writes a close command first and leaves the serial port
    open when that write fails on a vanished adapter: the port is then closed here.
    """
    try:
        bus.shutdown()
    except FAULTS:
        port = getattr(bus, "serialPortOrig", None)
        if port is not None:
            with contextlib.suppress(Exception):
                port.close()


class GuardedBus(can.BusABC):
    """A bus for ``can.Notifier`` whose reads never raise: faults go to ``on_fault`` once."""

    def __init__(
        self,
        inner: can.BusABC,
        *,
        on_fault: Callable[[BaseException], None],
        on_bad_input: Callable[[BaseException], None] | None = None,
    ) -> None:
        self.inner = inner
        self._on_fault = on_fault
        self._on_bad_input = on_bad_input
        self._fault_lock = threading.Lock()
        self._faulted = threading.Event()
        self._closed = threading.Event()
        super().__init__(channel=inner.channel_info)
        self.channel_info = inner.channel_info

    @property
    def faulted(self) -> bool:
        return self._faulted.is_set()

    def recv(self, timeout: float | None = None) -> can.Message | None:
        if self._faulted.is_set() or self._closed.is_set():
            self._closed.wait(timeout)
            return None
        try:
            msg: can.Message | None = self.inner.recv(timeout)
        except FAULTS as exc:
            if not self._closed.is_set():
                self.fault(exc)
            return None
        except BAD_INPUT as exc:
            if self._on_bad_input is not None:
                self._on_bad_input(exc)
            return None
        return msg

    def _recv_internal(self, timeout: float | None) -> tuple[can.Message | None, bool]:
        return self.recv(timeout), True

    def send(self, msg: can.Message, timeout: float | None = None) -> None:
        """Send through the inner bus; BusError if the adapter is gone or refuses the frame."""
        if self._faulted.is_set() or self._closed.is_set():
            raise BusError("the CAN adapter is not available")
        try:
            self.inner.send(msg, timeout)
        except FAULTS as exc:
            raise BusError(f"send failed: {describe_fault(exc)}") from None

    def fault(self, exc: BaseException) -> None:
        """Mark the bus lost and report ``exc``, once."""
        with self._fault_lock:
            if self._faulted.is_set():
                return
            self._faulted.set()
        self._on_fault(exc)

    def fileno(self) -> int:
        fileno: int = self.inner.fileno()
        return fileno

    @property
    def state(self) -> can.BusState:
        try:
            state: can.BusState = self.inner.state
        except NotImplementedError:
            return can.BusState.ACTIVE
        except FAULTS:
            return can.BusState.ERROR
        return state

    @state.setter
    def state(self, new_state: can.BusState) -> None:
        self.inner.state = new_state

    def close_reads(self) -> None:
        """Make ``recv`` return None at once from now on (before stopping the Notifier)."""
        self._closed.set()

    def shutdown(self) -> None:
        self._closed.set()
        super().shutdown()
        close_bus(self.inner)


def describe_fault(exc: BaseException) -> str:
    """One line for a python-can/pyserial fault, with the OS error under it when there is one."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    cause = exc.__cause__ or exc.__context__
    if cause is not None and str(cause).strip() and str(cause) not in text:
        text += f" ({str(cause).strip().splitlines()[0]})"
    return text


@dataclass(frozen=True, slots=True)
class ErrorFrameInfo:
    """What one error frame says, in SocketCAN terms."""

    bus_off: bool = False
    passive: bool = False
    warning: bool = False
    back_to_active: bool = False
    restarted: bool = False
    protocol: bool = False
    no_ack: bool = False
    lost_arbitration: bool = False
    tx_timeout: bool = False
    overflow: bool = False


def classify_error_frame(msg: can.Message) -> ErrorFrameInfo:
    """Decode a SocketCAN-layout error frame (class in the id, controller state in byte 1)."""
    cls = msg.arbitration_id
    data = bytes(msg.data or b"")
    ctrl = data[1] if len(data) > 1 and cls & CAN_ERR_CRTL else 0
    return ErrorFrameInfo(
        bus_off=bool(cls & CAN_ERR_BUSOFF),
        passive=bool(ctrl & (CAN_ERR_CRTL_RX_PASSIVE | CAN_ERR_CRTL_TX_PASSIVE)),
        warning=bool(ctrl & (CAN_ERR_CRTL_RX_WARNING | CAN_ERR_CRTL_TX_WARNING)),
        back_to_active=bool(ctrl & CAN_ERR_CRTL_ACTIVE),
        restarted=bool(cls & CAN_ERR_RESTARTED),
        protocol=bool(cls & (CAN_ERR_PROT | CAN_ERR_BUSERROR | CAN_ERR_TRX)),
        no_ack=bool(cls & CAN_ERR_ACK),
        lost_arbitration=bool(cls & CAN_ERR_LOSTARB),
        tx_timeout=bool(cls & CAN_ERR_TX_TIMEOUT),
        overflow=bool(ctrl & (CAN_ERR_CRTL_RX_OVERFLOW | CAN_ERR_CRTL_TX_OVERFLOW)),
    )


def error_frame(
    *,
    bus_off: bool = False,
    passive: bool = False,
    warning: bool = False,
    back_to_active: bool = False,
    restarted: bool = False,
) -> can.Message:
    """A SocketCAN-layout error frame, as the kernel reports a controller state change."""
    cls = 0
    ctrl = 0
    if bus_off:
        cls |= CAN_ERR_BUSOFF
    if restarted:
        cls |= CAN_ERR_RESTARTED
    if passive:
        ctrl |= CAN_ERR_CRTL_RX_PASSIVE | CAN_ERR_CRTL_TX_PASSIVE
    if warning:
        ctrl |= CAN_ERR_CRTL_RX_WARNING | CAN_ERR_CRTL_TX_WARNING
    if back_to_active:
        ctrl |= CAN_ERR_CRTL_ACTIVE
    if ctrl:
        cls |= CAN_ERR_CRTL
    return can.Message(
        arbitration_id=cls,
        is_extended_id=False,
        is_error_frame=True,
        data=bytes([0, ctrl, 0, 0, 0, 0, 0, 0]),
    )


@dataclass(slots=True)
class BusHealth:
    """Everything the bus and the adapter reported, counted; ``state`` is the latest."""

    state: str = "closed"
    error_frames: int = 0
    error_warning: int = 0
    error_passive: int = 0
    bus_off: int = 0
    restarted: int = 0
    protocol_errors: int = 0
    adapter_lost: int = 0
    open_attempts: int = 0
    open_failures: int = 0
    reopened: int = 0
    send_errors: int = 0
    bad_input: int = 0
    last_fault: str = ""

    def on_error_frame(self, msg: can.Message, *, layout_known: bool) -> list[str]:
        """Count one error frame; the state changes it causes, as short texts."""
        self.error_frames += 1
        if not layout_known:
            return []
        info = classify_error_frame(msg)
        changes: list[str] = []
        if info.protocol or info.no_ack:
            self.protocol_errors += 1
        if info.bus_off:
            self.bus_off += 1
            changes.append(self.enter("bus-off"))
        elif info.passive:
            self.error_passive += 1
            changes.append(self.enter("passive"))
        elif info.warning:
            self.error_warning += 1
            changes.append(self.enter("warning"))
        if info.restarted or info.back_to_active:
            if info.restarted:
                self.restarted += 1
            changes.append(self.enter("active"))
        return [c for c in changes if c]

    def enter(self, state: str) -> str:
        """Move to ``state``; the change as text, empty when it was the state already."""
        if state == self.state:
            return ""
        previous, self.state = self.state, state
        return f"bus state {previous} -> {state}"

    def counters(self) -> dict[str, int]:
        return {
            "error_frames": self.error_frames,
            "error_warning": self.error_warning,
            "error_passive": self.error_passive,
            "bus_off": self.bus_off,
            "restarted": self.restarted,
            "protocol_errors": self.protocol_errors,
            "adapter_lost": self.adapter_lost,
            "open_attempts": self.open_attempts,
            "open_failures": self.open_failures,
            "reopened": self.reopened,
            "send_errors": self.send_errors,
            "bad_input": self.bad_input,
        }
