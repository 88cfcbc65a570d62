"""A software slcan (LAWICEL) USB-CAN adapter on a pseudo-terminal.

Theory of operation
-------------------
A USB-CAN adapter such as a CANable is a serial device that speaks LAWICEL: ASCII commands
ended by CR, answered by CR (done) or BELL (refused), and received CAN frames written to the
serial line as ``tIIILDD..`` / ``TIIIIIIIILDD..`` lines while the channel is open.

`SlcanProtocol` is the adapter's firmware as a sans-I/O object. ``receive_data(data)``
takes what the client wrote and returns a `Step`: the bytes to answer and the frames to put on
the CAN bus. ``frame_to_client(msg, now)`` turns a frame seen on the bus into the line the
client reads, or None when the channel is closed or slcan cannot carry the frame. The channel
is a table (`CHANNEL_TRANSITIONS`) over closed, open and listen-only; configuration
(bitrates, timestamps) is refused while the channel is open and frames while it is not, as on
the real adapters. ``now`` only feeds the optional ``Z1`` timestamps.

`SlcanDevice` is the driver. It owns a pty pair (the client opens the slave path as its serial
port), the python-can bus it bridges to (given by the caller, never shut down here), and two
threads: one moves bytes between the pty master and the protocol, one pumps the bus. Frames for
a client that does not read pile up to ``max_pending`` bytes, then are dropped and counted, and
the data-overrun status flag is raised. ``unplug()`` closes the master so the client's port
hangs up; ``replug()`` powers the firmware up again on a new pty, as a real adapter
re-enumerates with a new device node.
"""

from __future__ import annotations

import contextlib
import enum
import os
import re
import select
import threading
import time
import tty
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Final

import can
from can.util import CAN_FD_DLC, len2dlc

from tcu.errors import BusError
from tcu.lifecycle import Running

OK: Final = b"\r"
ERROR: Final = b"\x07"
MAX_LINE: Final = len("B") + 8 + 1 + 2 * 64

MAX_STANDARD_ID: Final = 0x7FF
MAX_EXTENDED_ID: Final = 0x1FFF_FFFF

BITRATES: Final[Mapping[str, int]] = {
    "0": 10_000,
    "1": 20_000,
    "2": 50_000,
    "3": 100_000,
    "4": 125_000,
    "5": 250_000,
    "6": 500_000,
    "7": 750_000,
    "8": 1_000_000,
    "9": 83_300,
}
DATA_BITRATES: Final[Mapping[str, int]] = {
    "0": 500_000,
    "1": 1_000_000,
    "2": 2_000_000,
    "4": 4_000_000,
    "5": 5_000_000,
    "8": 8_000_000,
}
BTR_CLOCK_HZ: Final = 8_000_000


class ChannelState(enum.Enum):
    CLOSED = "closed"
    OPEN = "open"
    LISTEN_ONLY = "listen-only"


CHANNEL_TRANSITIONS: Final[Mapping[ChannelState, Mapping[str, ChannelState]]] = {
    ChannelState.CLOSED: {
        "O": ChannelState.OPEN,
        "L": ChannelState.LISTEN_ONLY,
        "C": ChannelState.CLOSED,
    },
    ChannelState.OPEN: {"O": ChannelState.OPEN, "C": ChannelState.CLOSED},
    ChannelState.LISTEN_ONLY: {"L": ChannelState.LISTEN_ONLY, "C": ChannelState.CLOSED},
}


class StatusFlag(enum.IntFlag):
    """Bits of the ``F`` reply (SJA1000 interrupt register, as LAWICEL reports it)."""

    NONE = 0
    RX_FIFO_FULL = 0x01
    TX_FIFO_FULL = 0x02
    ERROR_WARNING = 0x04
    DATA_OVERRUN = 0x08
    ERROR_PASSIVE = 0x20
    ARBITRATION_LOST = 0x40
    BUS_ERROR = 0x80


@dataclass(frozen=True, slots=True, kw_only=True)
class FrameKind:
    letter: str
    extended: bool
    remote: bool = False
    fd: bool = False
    bitrate_switch: bool = False

    def __post_init__(self) -> None:
        if len(self.letter) != 1 or self.letter.lower() not in "trdb":
            raise ValueError(f"not an slcan frame letter: {self.letter!r}")
        if self.fd and self.remote:
            raise ValueError("CAN FD has no remote frames")
        if self.bitrate_switch and not self.fd:
            raise ValueError("bitrate switch needs CAN FD")

    @property
    def id_digits(self) -> int:
        return 8 if self.extended else 3

    @property
    def max_id(self) -> int:
        return MAX_EXTENDED_ID if self.extended else MAX_STANDARD_ID

    @property
    def max_dlc(self) -> int:
        return 15 if self.fd else 8


FRAME_KINDS: Final[Mapping[str, FrameKind]] = {
    kind.letter: kind
    for kind in (
        FrameKind(letter="t", extended=False),
        FrameKind(letter="T", extended=True),
        FrameKind(letter="r", extended=False, remote=True),
        FrameKind(letter="R", extended=True, remote=True),
        FrameKind(letter="d", extended=False, fd=True),
        FrameKind(letter="D", extended=True, fd=True),
        FrameKind(letter="b", extended=False, fd=True, bitrate_switch=True),
        FrameKind(letter="B", extended=True, fd=True, bitrate_switch=True),
    )
}
_KIND_OF_FLAGS: Final = {
    (k.extended, k.remote, k.fd, k.bitrate_switch): k for k in FRAME_KINDS.values()
}
_HEX: Final = re.compile(r"[0-9A-Fa-f]*")
_SERIAL_NUMBER: Final = re.compile(r"[0-9A-Za-z]{4}")


@dataclass(frozen=True, slots=True, kw_only=True)
class Step:
    """What the firmware does with the bytes it received: answer, and frames to transmit."""

    reply: bytes = b""
    transmit: tuple[can.Message, ...] = ()

    def __post_init__(self) -> None:
        if not all(isinstance(msg, can.Message) for msg in self.transmit):
            raise TypeError("transmit holds can.Message objects only")


def parse_frame(line: str) -> can.Message | None:
    """The frame an slcan transmit command (without its CR) stands for, or None if malformed."""
    kind = FRAME_KINDS.get(line[:1])
    if kind is None or not _HEX.fullmatch(line, 1):
        return None
    dlc_at = 1 + kind.id_digits
    if len(line) <= dlc_at:
        return None
    can_id = int(line[1:dlc_at], 16)
    dlc = int(line[dlc_at], 16)
    if can_id > kind.max_id or dlc > kind.max_dlc:
        return None
    length = CAN_FD_DLC[dlc]
    payload = line[dlc_at + 1 :]
    if len(payload) != (0 if kind.remote else 2 * length):
        return None
    return can.Message(
        arbitration_id=can_id,
        is_extended_id=kind.extended,
        is_remote_frame=kind.remote,
        is_fd=kind.fd,
        bitrate_switch=kind.bitrate_switch,
        dlc=length,
        data=bytes.fromhex(payload),
    )


def format_frame(msg: can.Message) -> str | None:
    """The slcan line (without CR) for a frame, or None if slcan cannot carry it."""
    if msg.is_error_frame:
        return None
    flags = (msg.is_extended_id, msg.is_remote_frame, msg.is_fd, msg.is_fd and msg.bitrate_switch)
    kind = _KIND_OF_FLAGS.get(flags)
    if kind is None or not 0 <= msg.arbitration_id <= kind.max_id:
        return None
    data = bytes(msg.data or b"")
    if kind.remote:
        if data or not 0 <= msg.dlc <= kind.max_dlc:
            return None
        dlc = msg.dlc
    else:
        dlc = len2dlc(len(data))
        if dlc > kind.max_dlc or CAN_FD_DLC[dlc] != len(data):
            return None
    return f"{kind.letter}{msg.arbitration_id:0{kind.id_digits}X}{dlc:X}{data.hex().upper()}"


def _bitrate_of_btr(btr: str) -> int | None:
    try:
        timing = can.BitTiming.from_registers(BTR_CLOCK_HZ, int(btr[:2], 16), int(btr[2:], 16))
    except ValueError:
        return None
    return int(timing.bitrate)


class SlcanProtocol:
    """The adapter's firmware: LAWICEL commands in, replies and frames out. No I/O."""

    def __init__(
        self,
        *,
        serial_number: str = "TCU0",
        hardware_version: int = 1,
        software_version: int = 2,
    ) -> None:
        if not _SERIAL_NUMBER.fullmatch(serial_number):
            raise ValueError(f"serial number must be 4 letters or digits: {serial_number!r}")
        for name, version in (("hardware", hardware_version), ("software", software_version)):
            if not 0 <= version <= 99:
                raise ValueError(f"{name} version must be 0..99: {version}")
        self.serial_number = serial_number
        self.hardware_version = hardware_version
        self.software_version = software_version
        self.protocol_errors = 0
        self.power_cycle()

    def power_cycle(self) -> None:
        """Back to the power-on state: channel closed, 125 kbit/s, no timestamps, no flags."""
        self._state = ChannelState.CLOSED
        self._bitrate: int | None = BITRATES["4"]
        self._btr: str | None = None
        self._data_bitrate = DATA_BITRATES["2"]
        self._timestamps = False
        self._flags = StatusFlag.NONE
        self._line = bytearray()
        self._overlong = False

    @property
    def state(self) -> ChannelState:
        return self._state

    @property
    def bitrate(self) -> int | None:
        """Nominal bitrate; None after an ``s`` BTR value that is no valid 8 MHz timing."""
        return self._bitrate

    @property
    def btr(self) -> str | None:
        return self._btr

    @property
    def data_bitrate(self) -> int:
        return self._data_bitrate

    @property
    def timestamps(self) -> bool:
        return self._timestamps

    @property
    def flags(self) -> StatusFlag:
        return self._flags

    def raise_flags(self, flags: StatusFlag) -> None:
        self._flags |= flags

    def receive_data(self, data: bytes) -> Step:
        replies: list[bytes] = []
        frames: list[can.Message] = []
        for byte in data:
            if byte != OK[0]:
                if len(self._line) < MAX_LINE:
                    self._line.append(byte)
                else:
                    self._overlong = True
                continue
            line, overlong = bytes(self._line).lstrip(b"\n"), self._overlong
            self._line.clear()
            self._overlong = False
            reply, frame = (ERROR, None) if overlong else self._execute(line)
            if reply == ERROR:
                self.protocol_errors += 1
            replies.append(reply)
            if frame is not None:
                frames.append(frame)
        return Step(reply=b"".join(replies), transmit=tuple(frames))

    def frame_to_client(self, msg: can.Message, now: float) -> bytes | None:
        if self._state is ChannelState.CLOSED:
            return None
        line = format_frame(msg)
        if line is None:
            return None
        if self._timestamps:
            line += f"{int(now * 1000) % 60_000:04X}"
        return line.encode("ascii") + OK

    def _execute(self, raw: bytes) -> tuple[bytes, can.Message | None]:
        if not raw:
            return OK, None
        if not raw.isascii():
            return ERROR, None
        line = raw.decode("ascii")
        command, argument = line[0], line[1:]
        if command in FRAME_KINDS:
            frame = parse_frame(line) if self._state is ChannelState.OPEN else None
            return (ERROR, None) if frame is None else (OK, frame)
        return self._configure(command, argument), None

    def _configure(self, command: str, argument: str) -> bytes:
        closed = self._state is ChannelState.CLOSED
        if command in "OLC":
            following = CHANNEL_TRANSITIONS[self._state].get(command)
            if argument or following is None:
                return ERROR
            self._state = following
            return OK
        if command == "S" and closed and argument in BITRATES:
            self._bitrate, self._btr = BITRATES[argument], None
            return OK
        if command == "s" and closed and len(argument) == 4 and _HEX.fullmatch(argument):
            self._bitrate, self._btr = _bitrate_of_btr(argument), argument.upper()
            return OK
        if command == "Y" and closed and argument in DATA_BITRATES:
            self._data_bitrate = DATA_BITRATES[argument]
            return OK
        if command == "Z" and closed and argument in ("0", "1"):
            self._timestamps = argument == "1"
            return OK
        if command == "F" and not closed and not argument:
            flags, self._flags = self._flags, StatusFlag.NONE
            return f"F{flags:02X}".encode("ascii") + OK
        if command in "Vv" and not argument:
            return f"{command}{self.hardware_version:02d}{self.software_version:02d}".encode() + OK
        if command == "N" and not argument:
            return f"N{self.serial_number}".encode("ascii") + OK
        return ERROR


@dataclass(frozen=True, slots=True, kw_only=True)
class SlcanCounters:
    frames_to_bus: int
    frames_to_client: int
    protocol_errors: int
    frames_discarded: int
    frames_overrun: int
    replies_dropped: int
    bus_errors: int

    def __post_init__(self) -> None:
        for field in fields(self):
            if getattr(self, field.name) < 0:
                raise ValueError(f"{field.name} cannot be negative")


@dataclass(slots=True)
class _Pty:
    master: int
    slave: int
    port: str
    thread: threading.Thread | None = None


class SlcanDevice(Running):
    """An slcan adapter on a pty, bridged to a python-can bus (which stays the caller's).

    The bridged bus must allow ``send`` from one thread while another is in ``recv``
    (virtual and socketcan do; wrap others in ``can.ThreadSafeBus``).
    """

    def __init__(
        self,
        bus: can.BusABC,
        *,
        serial_number: str = "TCU0",
        hardware_version: int = 1,
        software_version: int = 2,
        link: str | os.PathLike[str] | None = None,
        max_pending: int = 64 * 1024,
        send_timeout: float = 0.05,
        poll_interval: float = 0.02,
    ) -> None:
        if max_pending < MAX_LINE + 1:
            raise ValueError(f"max_pending must hold at least one frame ({MAX_LINE + 1} bytes)")
        self._bus = bus
        self._protocol = SlcanProtocol(
            serial_number=serial_number,
            hardware_version=hardware_version,
            software_version=software_version,
        )
        self._link = None if link is None else Path(link)
        self._max_pending = max_pending
        self._send_timeout = send_timeout
        self._poll_interval = poll_interval
        self._lock = threading.Lock()
        self._pending = bytearray()
        self._pty: _Pty | None = None
        self._wake: tuple[int, int] | None = None
        self._stopping = threading.Event()
        self._unplugging = False
        self._pump: threading.Thread | None = None
        self._frames_to_bus = 0
        self._frames_to_client = 0
        self._frames_discarded = 0
        self._frames_overrun = 0
        self._replies_dropped = 0
        self._bus_errors = 0

    @property
    def port(self) -> str:
        """Path of the serial port the client opens (``/dev/pts/N``)."""
        pty = self._pty
        if pty is None:
            raise BusError("slcan adapter is not plugged in")
        return pty.port

    @property
    def plugged(self) -> bool:
        return self._pty is not None

    @property
    def state(self) -> ChannelState:
        return self._protocol.state

    @property
    def bitrate(self) -> int | None:
        return self._protocol.bitrate

    @property
    def frames_to_bus(self) -> int:
        return self._frames_to_bus

    @property
    def frames_to_client(self) -> int:
        return self._frames_to_client

    @property
    def protocol_errors(self) -> int:
        return self._protocol.protocol_errors

    @property
    def frames_discarded(self) -> int:
        """Bus frames seen while the channel was closed or unplugged, or not sayable in slcan."""
        return self._frames_discarded

    @property
    def frames_overrun(self) -> int:
        """Bus frames dropped because the client did not read its port."""
        return self._frames_overrun

    @property
    def replies_dropped(self) -> int:
        return self._replies_dropped

    @property
    def bus_errors(self) -> int:
        """Client frames the bridged bus refused to send."""
        return self._bus_errors

    def counters(self) -> SlcanCounters:
        with self._lock:
            return SlcanCounters(
                frames_to_bus=self._frames_to_bus,
                frames_to_client=self._frames_to_client,
                protocol_errors=self._protocol.protocol_errors,
                frames_discarded=self._frames_discarded,
                frames_overrun=self._frames_overrun,
                replies_dropped=self._replies_dropped,
                bus_errors=self._bus_errors,
            )

    def start(self) -> None:
        if self._wake is not None:
            raise BusError("slcan adapter already started")
        self._wake = os.pipe()
        for fd in self._wake:
            os.set_blocking(fd, False)
        self._stopping.clear()
        try:
            self._plug()
        except BusError:
            self.stop()
            raise
        self._pump = threading.Thread(target=self._pump_bus, name="slcan-bus", daemon=True)
        self._pump.start()

    def stop(self) -> None:
        if self._wake is None:
            return
        self._stopping.set()
        self._unplug()
        if self._pump is not None:
            self._pump.join()
            self._pump = None
        for fd in self._wake:
            os.close(fd)
        self._wake = None

    def unplug(self) -> None:
        """Pull the adapter out: the pty master closes and the client's port hangs up."""
        if self._wake is None:
            raise BusError("slcan adapter is not started")
        self._unplug()

    def replug(self) -> str:
        """Plug the adapter in again, powered up afresh on a new pty; returns its path."""
        if self._wake is None:
            raise BusError("slcan adapter is not started")
        if self._pty is None:
            self._plug()
        return self.port

    def _plug(self) -> None:
        try:
            master, slave = os.openpty()
        except OSError as exc:
            raise BusError(f"cannot allocate a pseudo-terminal: {exc}") from None
        pty = _Pty(master=master, slave=slave, port=os.ttyname(slave))
        try:
            tty.setraw(slave)
            os.set_blocking(master, False)
            if self._link is not None:
                staging = self._link.with_name(f".{self._link.name}.{os.getpid()}")
                staging.unlink(missing_ok=True)
                staging.symlink_to(pty.port)
                staging.replace(self._link)
        except OSError as exc:
            os.close(master)
            os.close(slave)
            raise BusError(f"cannot set up the adapter on {pty.port}: {exc}") from None
        with self._lock:
            self._protocol.power_cycle()
            self._pending.clear()
            self._unplugging = False
            self._pty = pty
        pty.thread = threading.Thread(
            target=self._serve, args=(pty,), name="slcan-pty", daemon=True
        )
        pty.thread.start()

    def _unplug(self) -> None:
        with self._lock:
            pty, self._pty = self._pty, None
            self._unplugging = True
        if pty is None:
            return
        self._wakeup()
        if pty.thread is not None:
            pty.thread.join()
        if self._link is not None and self._link.is_symlink():
            with contextlib.suppress(OSError):
                if os.readlink(self._link) == pty.port:
                    self._link.unlink()
        os.close(pty.master)
        os.close(pty.slave)

    def _wakeup(self) -> None:
        if self._wake is not None:
            with contextlib.suppress(BlockingIOError):
                os.write(self._wake[1], b"\0")

    def _serve(self, pty: _Pty) -> None:
        assert self._wake is not None
        wake = self._wake[0]
        while True:
            with self._lock:
                if self._unplugging:
                    return
                writing = [pty.master] if self._pending else []
            readable, writable, _ = select.select([pty.master, wake], writing, [])
            if wake in readable:
                with contextlib.suppress(BlockingIOError):
                    os.read(wake, 512)
            try:
                if pty.master in readable and (data := os.read(pty.master, 4096)):
                    self._from_client(data)
                if writable:
                    self._to_client(pty.master)
            except BlockingIOError:
                continue
            except OSError:
                time.sleep(self._poll_interval)

    def _from_client(self, data: bytes) -> None:
        with self._lock:
            step = self._protocol.receive_data(data)
        for msg in step.transmit:
            try:
                self._bus.send(msg, timeout=self._send_timeout)
            except can.CanError:
                with self._lock:
                    self._bus_errors += 1
                    self._protocol.raise_flags(StatusFlag.BUS_ERROR)
            else:
                with self._lock:
                    self._frames_to_bus += 1
        with self._lock:
            if len(self._pending) + len(step.reply) <= self._max_pending:
                self._pending += step.reply
            else:
                self._replies_dropped += 1

    def _to_client(self, master: int) -> None:
        with self._lock:
            chunk = bytes(self._pending[:4096])
        written = os.write(master, chunk)
        with self._lock:
            del self._pending[:written]

    def _pump_bus(self) -> None:
        while not self._stopping.is_set():
            try:
                msg = self._bus.recv(timeout=self._poll_interval)
            except (can.CanError, OSError):
                with self._lock:
                    self._bus_errors += 1
                self._stopping.wait(self._poll_interval)
                continue
            if msg is not None:
                self._to_pending(msg)

    def _to_pending(self, msg: can.Message) -> None:
        with self._lock:
            line = None
            if self._pty is not None:
                line = self._protocol.frame_to_client(msg, time.monotonic())
            if line is None:
                self._frames_discarded += 1
                return
            if len(self._pending) + len(line) > self._max_pending:
                self._frames_overrun += 1
                self._protocol.raise_flags(StatusFlag.DATA_OVERRUN)
                return
            self._pending += line
            self._frames_to_client += 1
        self._wakeup()
