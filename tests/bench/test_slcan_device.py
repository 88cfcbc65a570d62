"""The software slcan adapter, driven by python-can's own slcan client over a real pty."""

from __future__ import annotations

import contextlib
import errno
import os
import select
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import can
import pytest
import serial
from can.interfaces.slcan import slcanBus
from can.util import CAN_FD_DLC
from hypothesis import given
from hypothesis import strategies as st

from tcu.bench.slcan_device import (
    CHANNEL_TRANSITIONS,
    ERROR,
    MAX_EXTENDED_ID,
    MAX_STANDARD_ID,
    OK,
    ChannelState,
    SlcanDevice,
    SlcanProtocol,
    StatusFlag,
    format_frame,
)
from tcu.cli.main import main
from tcu.errors import BusError

REPO = Path(__file__).resolve().parents[2]
BELL = ERROR


def identity(msg: can.Message) -> tuple[object, ...]:
    return (
        msg.arbitration_id,
        msg.is_extended_id,
        msg.is_remote_frame,
        msg.is_fd,
        msg.bitrate_switch,
        msg.is_error_frame,
        msg.dlc,
        bytes(msg.data or b""),
    )


def wait_for(condition: Callable[[], bool], timeout: float = 1.5) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.005)
    return True


def opened(*commands: bytes) -> SlcanProtocol:
    protocol = SlcanProtocol()
    for command in commands:
        assert protocol.receive_data(command).reply == OK
    return protocol


# --- the firmware, sans I/O ---------------------------------------------------------------


@pytest.mark.parametrize("state", list(ChannelState))
@pytest.mark.parametrize("command", ["O", "L", "C"])
def test_channel_commands_follow_the_table(state: ChannelState, command: str) -> None:
    protocol = SlcanProtocol()
    enter = {ChannelState.CLOSED: b"", ChannelState.OPEN: b"O\r", ChannelState.LISTEN_ONLY: b"L\r"}
    protocol.receive_data(enter[state])
    assert protocol.state is state
    expected = CHANNEL_TRANSITIONS[state].get(command)

    reply = protocol.receive_data(command.encode() + b"\r").reply

    assert reply == (BELL if expected is None else OK)
    assert protocol.state is (state if expected is None else expected)
    assert protocol.protocol_errors == (expected is None)


@pytest.mark.parametrize(
    ("command", "attribute", "value"),
    [
        (b"S0", "bitrate", 10_000),
        (b"S6", "bitrate", 500_000),
        (b"S8", "bitrate", 1_000_000),
        (b"s001C", "bitrate", 500_000),
        (b"s011C", "bitrate", 250_000),
        (b"s001c", "btr", "001C"),
        (b"Y5", "data_bitrate", 5_000_000),
        (b"Z1", "timestamps", True),
    ],
)
def test_configuration_only_while_closed(command: bytes, attribute: str, value: object) -> None:
    protocol = SlcanProtocol()
    assert getattr(protocol, attribute) != value
    protocol.receive_data(b"O\r")

    assert protocol.receive_data(command + b"\r").reply == BELL
    assert getattr(protocol, attribute) != value

    protocol.receive_data(b"C\r")
    assert protocol.receive_data(command + b"\r").reply == OK
    assert getattr(protocol, attribute) == value
    assert protocol.protocol_errors == 1


@pytest.mark.parametrize(
    "line",
    [
        b"X",
        b"t12",
        b"t1230FF",
        b"t1231",
        b"t12310000",
        b"t1231G0",
        b"t1_231",
        b"t 1231",
        b"t8000",
        b"t1239",
        b"T200000000",
        b"T1234567",
        b"r1230AA",
        b"r1239",
        b"d12390011",
        b"S",
        b"SA",
        b"S10",
        b"s001",
        b"sXYZW",
        b"Y3",
        b"Z2",
        b"O1",
        b"F1",
        b"V1",
        b"t123\xff",
    ],
)
def test_malformed_commands_get_bell(line: bytes) -> None:
    protocol = SlcanProtocol()
    protocol.receive_data(b"C\r")
    closed = line[:1] in b"SsYZ"
    if not closed:
        protocol.receive_data(b"O\r")

    step = protocol.receive_data(line + b"\r")

    assert step.reply == BELL
    assert step.transmit == ()
    assert protocol.protocol_errors == 1


@pytest.mark.parametrize("enter", [b"", b"L\r"])
def test_frames_are_refused_unless_the_channel_is_open(enter: bytes) -> None:
    protocol = SlcanProtocol()
    protocol.receive_data(enter)

    step = protocol.receive_data(b"t1230\rT000001230\r")

    assert step.reply == BELL + BELL
    assert step.transmit == ()


def test_an_overlong_line_gets_one_bell_and_the_next_command_works() -> None:
    protocol = opened(b"O\r")

    step = protocol.receive_data(b"t" + b"A" * 1000 + b"\rV\r")

    assert step.reply == BELL + b"V0102\r"
    assert protocol.protocol_errors == 1


def test_commands_split_across_reads_are_joined() -> None:
    protocol = opened(b"O\r")
    text = b"t12321122\rT01ABCDEF80102030405060708\r"

    steps = [protocol.receive_data(text[i : i + 1]) for i in range(len(text))]

    assert b"".join(s.reply for s in steps) == OK + OK
    frames = [msg for s in steps for msg in s.transmit]
    assert [identity(m) for m in frames] == [
        (0x123, False, False, False, False, False, 2, b"\x11\x22"),
        (0x1ABCDEF, True, False, False, False, False, 8, bytes(range(1, 9))),
    ]


def test_an_empty_line_is_answered_ok_and_is_no_error() -> None:
    protocol = SlcanProtocol()

    assert protocol.receive_data(b"\r\n\r").reply == OK + OK
    assert protocol.protocol_errors == 0


def test_status_flags_are_reported_and_cleared_by_reading() -> None:
    protocol = opened(b"O\r")
    protocol.raise_flags(StatusFlag.BUS_ERROR | StatusFlag.DATA_OVERRUN)

    assert protocol.receive_data(b"F\r").reply == b"F88\r"
    assert protocol.receive_data(b"F\r").reply == b"F00\r"


def test_timestamps_are_milliseconds_modulo_a_minute() -> None:
    protocol = opened(b"Z1\r", b"O\r")
    msg = can.Message(arbitration_id=0x123, is_extended_id=False, data=b"\xab")

    line = protocol.frame_to_client(msg, now=61.234)

    assert line == f"t1231AB{1234:04X}\r".encode()


def test_frames_for_a_closed_channel_are_not_written() -> None:
    protocol = SlcanProtocol()
    msg = can.Message(arbitration_id=0x123, is_extended_id=False)

    assert protocol.frame_to_client(msg, 0.0) is None
    protocol.receive_data(b"L\r")
    assert protocol.frame_to_client(msg, 0.0) == b"t1230\r"


@pytest.mark.parametrize(
    "msg",
    [
        can.Message(is_error_frame=True),
        can.Message(arbitration_id=0x800, is_extended_id=False),
        can.Message(arbitration_id=0x123, is_extended_id=False, data=bytes(9), check=False),
        can.Message(arbitration_id=0x123, is_fd=True, data=bytes(10), check=False),
    ],
)
def test_frames_slcan_cannot_carry_are_refused(msg: can.Message) -> None:
    assert format_frame(msg) is None


@st.composite
def representable_frames(draw: st.DrawFn) -> can.Message:
    extended = draw(st.booleans())
    fd = draw(st.booleans())
    remote = not fd and draw(st.booleans())
    if remote:
        dlc, data = draw(st.integers(0, 8)), b""
    else:
        dlc = draw(st.sampled_from(CAN_FD_DLC if fd else CAN_FD_DLC[:9]))
        data = draw(st.binary(min_size=dlc, max_size=dlc))
    return can.Message(
        arbitration_id=draw(st.integers(0, MAX_EXTENDED_ID if extended else MAX_STANDARD_ID)),
        is_extended_id=extended,
        is_remote_frame=remote,
        is_fd=fd,
        bitrate_switch=fd and draw(st.booleans()),
        dlc=dlc,
        data=data,
    )


@given(representable_frames())
def test_a_frame_written_to_the_client_reads_back_as_the_same_frame(msg: can.Message) -> None:
    line = opened(b"O\r").frame_to_client(msg, 0.0)
    assert line is not None

    step = opened(b"O\r").receive_data(line)

    assert step.reply == OK
    assert [identity(m) for m in step.transmit] == [identity(msg)]


@given(st.binary(max_size=400))
def test_every_cr_gets_exactly_one_answer_whatever_the_input(data: bytes) -> None:
    protocol = opened(b"O\r")

    reply = protocol.receive_data(data).reply

    assert reply.count(OK) + reply.count(BELL) == data.count(OK)
    assert protocol.protocol_errors == reply.count(BELL)


# --- the device on a pty, with python-can's slcan client ----------------------------------


@pytest.fixture
def channel() -> str:
    return f"slcan-{uuid.uuid4().hex}"


@pytest.fixture
def bench(channel: str) -> Iterator[can.BusABC]:
    bus = can.Bus(interface="virtual", channel=channel)
    yield bus
    bus.shutdown()


@pytest.fixture
def device(channel: str, bench: can.BusABC) -> Iterator[SlcanDevice]:
    bus = can.Bus(interface="virtual", channel=channel)
    try:
        with SlcanDevice(bus) as dev:
            yield dev
    finally:
        bus.shutdown()


@contextlib.contextmanager
def slcan_client(port: str, *, listen_only: bool = False) -> Iterator[slcanBus]:
    """python-can's slcan bus at 500 kbit/s; a version query proves the channel is open."""
    bus = can.Bus(
        interface="slcan",
        channel=port,
        bitrate=500_000,
        sleep_after_open=0,
        listen_only=listen_only,
    )
    assert isinstance(bus, slcanBus)
    try:
        assert bus.get_version(timeout=1.0) == (1, 2)
        yield bus
    finally:
        try:
            bus.shutdown()
        except can.CanOperationError:
            bus.serialPortOrig.close()


@contextlib.contextmanager
def raw_port(port: str) -> Iterator[serial.Serial]:
    with serial.Serial(port, timeout=1.0) as raw:
        yield raw


def read_answer(raw: serial.Serial) -> bytes:
    answer = bytearray()
    while not answer or answer[-1:] not in (OK, BELL):
        byte = raw.read(1)
        if not byte:
            break
        answer += byte
    return bytes(answer)


def ask(raw: serial.Serial, command: bytes) -> bytes:
    raw.write(command + b"\r")
    return read_answer(raw)


def test_the_client_opens_the_channel_at_500k(device: SlcanDevice) -> None:
    assert device.port.startswith("/dev/pts/")

    with slcan_client(device.port) as client:
        assert device.state is ChannelState.OPEN
        assert device.bitrate == 500_000
        assert client.get_serial_number(timeout=1.0) == "TCU0"

    assert wait_for(lambda: device.state is ChannelState.CLOSED)
    assert device.protocol_errors == 0


@pytest.mark.parametrize(
    "msg",
    [
        can.Message(arbitration_id=0x123, is_extended_id=False, data=b"\x01\x02\x03"),
        can.Message(arbitration_id=0x18DAF110, is_extended_id=True, data=bytes(range(8))),
        can.Message(arbitration_id=0x7FF, is_extended_id=False, data=b""),
        can.Message(arbitration_id=0x321, is_extended_id=False, is_remote_frame=True, dlc=4),
        can.Message(arbitration_id=0x1ABCDE, is_extended_id=True, is_remote_frame=True, dlc=8),
        can.Message(arbitration_id=0x10, is_extended_id=False, is_fd=True, data=bytes(12)),
        can.Message(arbitration_id=0x10, is_fd=True, bitrate_switch=True, data=bytes(range(64))),
    ],
    ids=["standard", "extended", "empty", "remote", "remote-extended", "fd", "fd-brs"],
)
def test_frames_cross_the_adapter_both_ways(
    device: SlcanDevice, bench: can.BusABC, msg: can.Message
) -> None:
    with slcan_client(device.port) as client:
        client.send(msg)
        on_bus = bench.recv(timeout=1.0)

        bench.send(msg)
        at_client = client.recv(timeout=1.0)

    assert on_bus is not None
    assert identity(on_bus) == identity(msg)
    assert at_client is not None
    assert identity(at_client) == identity(msg)
    assert wait_for(lambda: device.frames_to_bus == 1)
    assert device.frames_to_client == 1


def test_a_listen_only_client_hears_but_cannot_send(device: SlcanDevice, bench: can.BusABC) -> None:
    with slcan_client(device.port, listen_only=True) as client:
        assert device.state is ChannelState.LISTEN_ONLY
        client.send(can.Message(arbitration_id=0x100, is_extended_id=False))
        assert client.get_version(timeout=1.0) == (1, 2)
        bench.send(can.Message(arbitration_id=0x200, is_extended_id=False, data=b"\x42"))
        heard = client.recv(timeout=1.0)

    assert bench.recv(timeout=0) is None
    assert heard is not None
    assert heard.arbitration_id == 0x200
    assert device.protocol_errors == 1


def test_bus_frames_are_discarded_and_counted_while_the_channel_is_closed(
    device: SlcanDevice, bench: can.BusABC
) -> None:
    bench.send(can.Message(arbitration_id=0x123, is_extended_id=False))

    assert wait_for(lambda: device.frames_discarded == 1)
    with slcan_client(device.port) as client:
        assert client.recv(timeout=0.05) is None
    assert device.frames_to_client == 0


def test_raw_commands_on_the_serial_line(device: SlcanDevice) -> None:
    with raw_port(device.port) as raw:
        assert ask(raw, b"t1230") == BELL
        assert ask(raw, b"F") == BELL
        assert ask(raw, b"Q") == BELL
        assert ask(raw, b"V") == b"V0102\r"
        assert ask(raw, b"v") == b"v0102\r"
        assert ask(raw, b"N") == b"NTCU0\r"
        assert ask(raw, b"S6") == OK
        assert ask(raw, b"O") == OK
        assert ask(raw, b"S4") == BELL
        assert ask(raw, b"F") == b"F00\r"
        assert ask(raw, b"t12") == BELL

    assert device.protocol_errors == 5


def test_timestamps_on_the_serial_line(device: SlcanDevice, bench: can.BusABC) -> None:
    with raw_port(device.port) as raw:
        assert ask(raw, b"Z1") == OK
        assert ask(raw, b"O") == OK
        bench.send(can.Message(arbitration_id=0x7E8, is_extended_id=False, data=b"\x02\x41"))
        line = read_answer(raw)

    assert line[:9] == b"t7E820241"
    assert len(line) == 9 + 4 + 1
    assert int(line[9:13], 16) < 60_000


def test_a_refused_bus_send_is_counted_and_flagged(channel: str) -> None:
    full = can.Bus(interface="virtual", channel=channel, rx_queue_size=1)
    bus = can.Bus(interface="virtual", channel=channel)
    try:
        with SlcanDevice(bus, send_timeout=0.01) as device, raw_port(device.port) as raw:
            assert ask(raw, b"O") == OK
            assert ask(raw, b"t1000") == OK
            assert ask(raw, b"t1010") == OK
            assert ask(raw, b"F") == b"F80\r"
            assert (device.frames_to_bus, device.bus_errors) == (1, 1)
    finally:
        bus.shutdown()
        full.shutdown()


def test_frames_a_client_does_not_read_are_dropped_counted_and_flagged(
    channel: str, bench: can.BusABC
) -> None:
    sent = 2000
    bus = can.Bus(interface="virtual", channel=channel)
    try:
        with SlcanDevice(bus, max_pending=256) as device, raw_port(device.port) as raw:
            assert ask(raw, b"O") == OK
            for i in range(sent):
                bench.send(can.Message(arbitration_id=i & 0x7FF, is_extended_id=False, data=b"x"))
            assert wait_for(lambda: device.frames_to_client + device.frames_overrun == sent)

            lines = [read_answer(raw) for _ in range(device.frames_to_client)]
            flags = ask(raw, b"F")
    finally:
        bus.shutdown()

    assert device.frames_overrun > 0
    assert all(line.startswith(b"t") and line.endswith(b"178\r") for line in lines)
    assert flags == b"F%02X\r" % StatusFlag.DATA_OVERRUN


def test_unplug_makes_the_client_fail_with_the_documented_errors(device: SlcanDevice) -> None:
    frame = can.Message(arbitration_id=0x123, is_extended_id=False)
    with slcan_client(device.port) as client:
        device.unplug()

        with pytest.raises(can.CanOperationError, match="Could not read") as read_failure:
            client.recv(timeout=1.0)
        with pytest.raises(can.CanOperationError, match="Could not write") as write_failure:
            client.send(frame)
        with pytest.raises(serial.SerialException, match="Could not configure port"):
            client.send(frame, timeout=0.5)
        with pytest.raises(can.CanOperationError, match="Could not write"):
            client.shutdown()

    assert isinstance(read_failure.value.__cause__, OSError)
    assert read_failure.value.__cause__.errno == errno.EIO
    assert isinstance(write_failure.value.__cause__, serial.SerialException)
    assert not device.plugged
    with pytest.raises(BusError):
        _ = device.port


def test_unplug_wakes_a_client_blocked_in_recv(device: SlcanDevice) -> None:
    failures: list[BaseException] = []

    def receive(client: slcanBus) -> None:
        try:
            client.recv(timeout=5.0)
        except (can.CanError, OSError) as exc:
            failures.append(exc)

    with slcan_client(device.port) as client:
        reader = threading.Thread(target=receive, args=(client,))
        reader.start()
        device.unplug()
        reader.join(timeout=2.0)
        assert not reader.is_alive()

    assert [type(exc) for exc in failures] == [can.CanOperationError]


def test_replug_powers_up_afresh_on_a_new_pty(device: SlcanDevice, bench: can.BusABC) -> None:
    with slcan_client(device.port) as old_client:
        old_port = device.port
        device.unplug()
        bench.send(can.Message(arbitration_id=0x111, is_extended_id=False))
        assert wait_for(lambda: device.frames_discarded == 1)

        new_port = device.replug()

        assert new_port != old_port
        assert not os.path.exists(old_port)
        assert device.state is ChannelState.CLOSED
        assert device.bitrate == 125_000
        with pytest.raises(can.CanOperationError):
            old_client.recv(timeout=0.1)

    with slcan_client(new_port) as client:
        bench.send(can.Message(arbitration_id=0x222, is_extended_id=False))
        msg = client.recv(timeout=1.0)
    assert msg is not None
    assert msg.arbitration_id == 0x222


def test_a_link_follows_the_adapter_like_a_by_id_name(channel: str, tmp_path: Path) -> None:
    link = tmp_path / "ttyCAN0"
    bus = can.Bus(interface="virtual", channel=channel)
    try:
        with SlcanDevice(bus, link=link) as device:
            assert os.readlink(link) == device.port
            with slcan_client(str(link)):
                assert device.state is ChannelState.OPEN

            device.unplug()
            assert not link.exists()
            with pytest.raises(can.CanInitializationError):
                can.Bus(interface="slcan", channel=str(link), sleep_after_open=0)

            port = device.replug()
            assert os.readlink(link) == port
            with slcan_client(str(link)):
                assert device.state is ChannelState.OPEN
        assert not link.is_symlink()
    finally:
        bus.shutdown()


def test_stop_is_idempotent_and_releases_threads_and_fds(channel: str) -> None:
    threads_before = threading.active_count()
    fds_before = len(os.listdir("/proc/self/fd"))
    bus = can.Bus(interface="virtual", channel=channel)
    try:
        device = SlcanDevice(bus)
        device.start()
        with pytest.raises(BusError):
            device.start()
        device.unplug()
        device.replug()
        device.stop()
        device.stop()
    finally:
        bus.shutdown()

    assert not device.plugged
    with pytest.raises(BusError):
        device.unplug()
    assert threading.active_count() == threads_before
    assert len(os.listdir("/proc/self/fd")) == fds_before


def test_a_link_that_cannot_be_made_is_a_bus_error_and_leaks_nothing(
    channel: str, tmp_path: Path
) -> None:
    fds_before = len(os.listdir("/proc/self/fd"))
    bus = can.Bus(interface="virtual", channel=channel)
    try:
        device = SlcanDevice(bus, link=tmp_path / "missing" / "ttyCAN0")
        with pytest.raises(BusError, match="cannot set up the adapter"):
            device.start()
    finally:
        bus.shutdown()

    assert not device.plugged
    assert len(os.listdir("/proc/self/fd")) == fds_before


# --- the command line ---------------------------------------------------------------------


@pytest.mark.parametrize("stop_signal", [signal.SIGINT, signal.SIGTERM], ids=["INT", "TERM"])
def test_cli_prints_the_port_and_stops_cleanly(stop_signal: signal.Signals) -> None:
    command = [sys.executable, "-m", "tcu", "slcan-device", "--bus-interface", "virtual"]
    command += ["--bus-channel", "bench", "--serial-number", "B3NC"]
    with subprocess.Popen(
        command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as proc:
        try:
            assert proc.stdout is not None
            ready, _, _ = select.select([proc.stdout], [], [], 10.0)
            assert ready, "no port printed"
            port = proc.stdout.readline().strip()
            with raw_port(port) as raw:
                assert ask(raw, b"N") == b"NB3NC\r"
            proc.send_signal(stop_signal)
            out, err = proc.communicate(timeout=10.0)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()

    assert proc.returncode == 0
    assert "Traceback" not in err
    assert "stopped:" in err
    assert out == ""


def test_cli_reports_a_bus_it_cannot_open(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["slcan-device", "--bus-interface", "no-such-interface", "--bus-channel", "x"])

    assert code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: cannot open bus no-such-interface:x")
