"""Bus faults and the live driver's edges: error frames, bus-off, configuration, signals."""

from __future__ import annotations

import asyncio
import io
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import can
import pytest

from tcu.cli.main import main
from tcu.errors import BusError, ConfigError
from tcu.runtime.backoff import Backoff
from tcu.runtime.bus import (
    BusSpec,
    GuardedBus,
    classify_error_frame,
    error_frame,
    resolve_bus,
)
from tcu.runtime.live import (
    LiveOptions,
    LiveReport,
    LiveSession,
    StatusLine,
    render_status,
    serve,
)
from tests.helpers import until

pytestmark = pytest.mark.usefixtures("nothing_left_behind")
WAIT_S = 5.0


@pytest.fixture
def channel() -> Iterator[str]:
    yield f"faults-{uuid.uuid4().hex}"


@pytest.fixture
def other(channel: str) -> Iterator[can.BusABC]:
    bus = can.Bus(interface="virtual", channel=channel)
    yield bus
    bus.shutdown()


async def stop(session: LiveSession, task: asyncio.Task[LiveReport]) -> LiveReport:
    session.request_stop()
    return await asyncio.wait_for(task, WAIT_S)


def test_error_frames_are_classified_as_socketcan_reports_them() -> None:
    passive = classify_error_frame(error_frame(passive=True))
    assert passive.passive and not passive.bus_off and not passive.warning
    off = classify_error_frame(error_frame(bus_off=True))
    assert off.bus_off and not off.passive
    back = classify_error_frame(error_frame(restarted=True, back_to_active=True))
    assert back.restarted and back.back_to_active
    plain = classify_error_frame(can.Message(is_error_frame=True, arbitration_id=0x20))
    assert plain.no_ack and not plain.bus_off


async def test_error_frames_are_counted_and_bus_off_reopens_the_bus(
    channel: str, other: can.BusABC
) -> None:
    reports: list[str] = []
    spec = resolve_bus(interface="virtual", channel=channel)
    session = LiveSession(
        LiveOptions(bus=spec), on_report=reports.append, backoff=Backoff(0.02, 5.0, jitter=False)
    )
    driver = session.driver
    task = asyncio.create_task(session.run())
    try:
        await until("the driver", driver.running.is_set)
        other.send(error_frame(warning=True))
        other.send(error_frame(passive=True))
        other.send(can.Message(is_error_frame=True, arbitration_id=0x08, data=bytes(8)))
        await until("three error frames", lambda: driver.health.error_frames == 3)
        assert driver.health.state == "passive"
        other.send(error_frame(bus_off=True))
        await until("the bus to be reopened", lambda: driver.health.reopened == 1)
        other.send(error_frame(restarted=True))
        await until("the restart", lambda: driver.health.restarted == 1)
        other.send(can.Message(arbitration_id=0x3A0, is_extended_id=False, data=bytes(8)))
        await until("a frame after the reopen", lambda: session.core.counts.frames == 6)
    finally:
        report = await stop(session, task)
    health = report.bus_health
    assert health["error_frames"] == 5
    assert health["error_warning"] == 1
    assert health["error_passive"] == 1
    assert health["bus_off"] == 1
    assert health["protocol_errors"] == 1
    assert health["adapter_lost"] == 0
    assert report.counts["error_frames"] == 5
    assert report.counts["decoded_frames"] == 1
    assert report.faults and "bus-off" in report.faults[0]
    assert any("bus state warning -> passive" in line for line in reports)
    assert any("passive -> bus-off" in line for line in reports)
    assert any("-> active" in line for line in reports)


class _Broken(can.BusABC):
    def __init__(self, raises: BaseException) -> None:
        super().__init__(channel="broken")
        self.raises = raises
        self.shut = False

    def _recv_internal(self, timeout: float | None) -> tuple[can.Message | None, bool]:
        raise self.raises

    def send(self, msg: can.Message, timeout: float | None = None) -> None:
        raise can.CanOperationError("Could not write to serial device")

    def shutdown(self) -> None:
        super().shutdown()
        self.shut = True


def test_the_guard_reports_a_vanished_adapter_once_and_never_raises() -> None:
    faults: list[BaseException] = []
    inner = _Broken(can.CanOperationError("Could not read from serial device"))
    guard = GuardedBus(inner, on_fault=faults.append)
    assert guard.recv(0) is None
    assert guard.recv(0) is None
    assert len(faults) == 1 and guard.faulted
    with pytest.raises(BusError, match="not available"):
        guard.send(can.Message())
    guard.shutdown()
    assert inner.shut


def test_the_guard_skips_garbage_from_the_adapter() -> None:
    faults: list[BaseException] = []
    bad: list[BaseException] = []
    inner = _Broken(ValueError("invalid literal for int() with base 16: 'tXYZ'"))
    guard = GuardedBus(inner, on_fault=faults.append, on_bad_input=bad.append)
    assert guard.recv(0) is None
    assert not faults and len(bad) == 1 and not guard.faulted
    with pytest.raises(BusError, match="send failed: Could not write"):
        guard.send(can.Message())
    guard.shutdown()


def test_the_bus_comes_from_python_cans_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("CAN_INTERFACE", "virtual")
    monkeypatch.setenv("CAN_CHANNEL", "from-env")
    monkeypatch.setenv("CAN_CONFIG", '{"receive_own_messages": true}')
    spec = resolve_bus()
    assert (spec.interface, spec.channel) == ("virtual", "from-env")
    assert spec.options["receive_own_messages"] is True
    assert resolve_bus(channel="given").channel == "given"
    for name in ("CAN_INTERFACE", "CAN_CHANNEL", "CAN_CONFIG"):
        monkeypatch.delenv(name)
    config = tmp_path / "can.conf"
    config.write_text("[default]\ninterface = slcan\nchannel = /dev/ttyACM0\nbitrate = 500000\n")
    spec = resolve_bus(config_file=str(config), listen_only=True)
    assert spec.describe() == "slcan:/dev/ttyACM0"
    assert spec.options["bitrate"] == 500_000
    assert spec.options["listen_only"] is True and spec.hardware_listen_only


def test_bus_configuration_mistakes_are_errors(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("CAN_INTERFACE", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    with pytest.raises(BusError, match="no CAN interface"):
        resolve_bus(channel="x")
    with pytest.raises(BusError, match="unknown CAN interface 'canable'"):
        resolve_bus(interface="canable", channel="x")
    with pytest.raises(BusError, match="bitrate must be > 0"):
        resolve_bus(interface="virtual", channel="x", bitrate=0)
    with pytest.raises(BusError, match="unknown CAN interface"):
        BusSpec(interface="nope")


def test_backoff_doubles_up_to_its_bound_and_resets() -> None:
    b = Backoff(0.1, 0.5, jitter=False)
    assert [b.next_delay() for _ in range(5)] == [0.1, 0.2, 0.4, 0.5, 0.5]
    b.reset()
    assert b.next_delay() == 0.1
    with pytest.raises(ConfigError):
        Backoff(1.0, 0.5)


def test_run_with_a_bad_interface_is_an_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "-i", "canable", "-c", "/dev/ttyACM0"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: unknown CAN interface 'canable'")
    assert "Traceback" not in err


def test_run_with_a_missing_adapter_is_an_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CAN_CONFIG", '{"sleep_after_open": 0}')
    assert main(["run", "-i", "slcan", "-c", str(tmp_path / "ttyACM9")]) == 2
    err = capsys.readouterr().err
    assert "error: cannot open CAN bus slcan:" in err and "ttyACM9" in err
    assert "Traceback" not in err


def test_run_needs_a_keystore_for_a_broker(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "-i", "virtual", "-c", "x", "--broker", "mqtt://127.0.0.1:1"]) == 2
    assert "--broker needs --keystore" in capsys.readouterr().err


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_stops_tcu_run_cleanly(signum: int, tmp_path: Path) -> None:
    outbox = tmp_path / "outbox.sqlite"
    cmd = [sys.executable, "-m", "tcu.cli.main", "run", "-i", "virtual", "-c", "x"]
    proc = subprocess.Popen(
        [*cmd, "--outbox", str(outbox), "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONWARNINGS": "error"},
    )
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline()
        assert "CAN bus virtual:x open" in line, line
        proc.send_signal(signum)
        out, err = proc.communicate(timeout=WAIT_S)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    assert "Traceback" not in err
    assert '"bus": "virtual:x"' in out
    assert outbox.exists()


def test_the_status_line_says_what_a_bench_needs() -> None:
    text = render_status(
        bus="slcan:/dev/ttyACM0",
        state="passive",
        registration="mqtt up",
        outbox_depth=12,
        last_frame_age=0.25,
        frames_per_s=812.4,
        last_verdict="lock refused (door_open)",
    )
    assert text == (
        "slcan:/dev/ttyACM0 passive | reg mqtt up | outbox 12 | last frame 0.2s ago"
        " | 812 fr/s | verdict lock refused (door_open)"
    )
    idle = render_status(
        bus="virtual:x",
        state="active",
        registration=None,
        outbox_depth=None,
        last_frame_age=None,
        frames_per_s=0.0,
        last_verdict=None,
    )
    assert "reg unknown | outbox - | last frame never" in idle


async def test_serve_draws_the_status_line_and_stops_after_the_duration(
    channel: str, other: can.BusABC
) -> None:
    stream = io.StringIO()
    status = StatusLine(stream, enabled=True)
    session = LiveSession(LiveOptions(bus=resolve_bus(interface="virtual", channel=channel)))
    report = await asyncio.wait_for(serve(session, status=status, duration=0.8), WAIT_S)
    drawn = stream.getvalue()
    assert f"\rvirtual:{channel} active | reg unknown" in drawn
    assert drawn.endswith("\r"), "cleared at the end"
    assert report.wall_s >= 0.8
