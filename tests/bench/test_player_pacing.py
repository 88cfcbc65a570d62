"""Replay onto a bus: absolute deadlines, spin wait, batching when behind, errors, the CLI."""

from __future__ import annotations

import argparse
import itertools
import json
import threading
from collections.abc import Iterator
from pathlib import Path

import can
import pytest

from tcu.bench.player import PacedPlayer
from tcu.cli.main import main
from tcu.cli.to_bus import run_to_bus
from tcu.errors import BusError, ConfigError


class FakeTime:
    """A clock that takes a microsecond to read, a ``sleep`` that overshoots, as the OS's
    does, and a send that takes time."""

    def __init__(self, overshoot: float = 0.0003, send_cost: float = 0.00002) -> None:
        self.t = 1000.0
        self.overshoot = overshoot
        self.send_cost = send_cost
        self.sleeps: list[float] = []

    def clock(self) -> float:
        self.t += 0.000001
        return self.t

    def sleep(self, s: float) -> None:
        self.sleeps.append(s)
        self.t += s + self.overshoot


class RecordingBus(can.BusABC):
    def __init__(
        self, time: FakeTime, fail: set[int] | None = None, stall: dict[int, float] | None = None
    ) -> None:
        super().__init__(channel="recording")
        self.time = time
        self.fail = fail or set()
        self.stall = stall or {}
        self.sent: list[tuple[float, can.Message]] = []
        self.calls = 0

    def send(self, msg: can.Message, timeout: float | None = None) -> None:
        self.calls += 1
        self.time.t += self.send_cost() + self.stall.get(self.calls, 0.0)
        if self.calls in self.fail:
            raise can.CanOperationError("transmit buffer full")
        self.sent.append((self.time.t, msg))

    def send_cost(self) -> float:
        return self.time.send_cost

    def _recv_internal(self, timeout: float | None) -> tuple[can.Message | None, bool]:
        return None, False


def trace(n: int, period: float, t0: float = 1_700_000_000.0) -> list[can.Message]:
    return [
        can.Message(
            timestamp=t0 + i * period,
            arbitration_id=0x100,
            is_extended_id=False,
            data=i.to_bytes(4, "big"),
        )
        for i in range(n)
    ]


@pytest.fixture
def ft() -> Iterator[FakeTime]:
    yield FakeTime()


def test_deadlines_are_absolute_so_oversleeping_never_accumulates(ft: FakeTime) -> None:
    bus = RecordingBus(ft)
    frames = trace(1000, 0.01)
    stats = PacedPlayer(bus, clock=ft.clock, sleep=ft.sleep).play(frames)
    assert stats.frames_sent == 1000
    start = bus.sent[0][0]
    errors = [t - start - i * 0.01 for i, (t, _) in enumerate(bus.sent)]
    assert max(errors) < 0.0001
    assert min(errors) > -1e-6, "never early"
    assert stats.trace_span_s == pytest.approx(9.99)
    assert abs(stats.drift_s) < 0.0001
    assert stats.batches == 0
    bus.shutdown()


def test_a_naive_relative_sleep_would_drift(ft: FakeTime) -> None:
    """The same clock, sleeping the gap after each send (relative pacing), ends late."""
    frames = trace(1000, 0.01)
    start = ft.clock()
    for _ in frames[1:]:
        ft.sleep(0.01)
    naive_drift = ft.clock() - start - 9.99
    bus = RecordingBus(ft)
    stats = PacedPlayer(bus, clock=ft.clock, sleep=ft.sleep).play(frames)
    assert naive_drift > 0.2
    assert abs(stats.drift_s) < naive_drift / 100
    bus.shutdown()


def test_speed_scales_the_timing(ft: FakeTime) -> None:
    bus = RecordingBus(ft)
    stats = PacedPlayer(bus, speed=4.0, clock=ft.clock, sleep=ft.sleep).play(trace(101, 0.04))
    assert stats.paced_span_s == pytest.approx(1.0)
    assert bus.sent[-1][0] - bus.sent[0][0] == pytest.approx(1.0, abs=0.0001)
    bus.shutdown()


def test_behind_schedule_the_overdue_frames_go_out_back_to_back(ft: FakeTime) -> None:
    bus = RecordingBus(ft, stall={10: 0.05})
    stats = PacedPlayer(bus, clock=ft.clock, sleep=ft.sleep).play(trace(100, 0.001))
    assert stats.frames_sent == 100
    assert stats.batches == 1
    assert stats.batched_frames >= 45
    sent_times = [t for t, _ in bus.sent]
    late = sent_times[10:55]
    assert all(b - a < 0.0001 for a, b in itertools.pairwise(late)), "no waiting"
    assert sent_times[-1] - sent_times[0] == pytest.approx(0.099, abs=0.0002), "caught up"
    assert stats.lag_quantile(1.0) >= 0.04
    bus.shutdown()


def test_error_frames_window_and_long_gaps(ft: FakeTime) -> None:
    frames = trace(10, 0.1)
    frames.insert(5, can.Message(timestamp=frames[4].timestamp + 0.01, is_error_frame=True))
    frames.append(can.Message(timestamp=frames[-1].timestamp + 100.0, arbitration_id=0x200))
    bus = RecordingBus(ft)
    player = PacedPlayer(bus, max_gap=1.0, start=0.2, clock=ft.clock, sleep=ft.sleep)
    stats = player.play(frames)
    assert stats.skipped_error_frames == 1
    assert stats.skipped_outside_window == 2
    assert stats.frames_sent == 9
    assert stats.gaps_shortened_s == pytest.approx(99.0)
    assert bus.sent[-1][0] - bus.sent[-2][0] == pytest.approx(1.0, abs=0.001)
    bus.shutdown()


def test_send_errors_are_counted_and_a_dead_adapter_gives_up(ft: FakeTime) -> None:
    bus = RecordingBus(ft, fail={3, 7})
    stats = PacedPlayer(bus, clock=ft.clock, sleep=ft.sleep).play(trace(20, 0.001))
    assert stats.send_errors == 2
    assert stats.frames_sent == 18
    assert "transmit buffer full" in stats.first_errors[0]
    bus.shutdown()

    dead = RecordingBus(ft, fail=set(range(1, 1000)))
    player = PacedPlayer(dead, max_consecutive_errors=10, clock=ft.clock, sleep=ft.sleep)
    with pytest.raises(BusError, match="10 frames refused in a row"):
        player.play(trace(50, 0.001))
    assert player.stats.send_errors == 10
    dead.shutdown()


def test_a_stop_request_ends_the_play(ft: FakeTime) -> None:
    stop = threading.Event()
    bus = RecordingBus(ft)

    def frames() -> Iterator[can.Message]:
        for i, msg in enumerate(trace(100, 0.01)):
            if i == 30:
                stop.set()
            yield msg

    stats = PacedPlayer(bus, clock=ft.clock, sleep=ft.sleep).play(frames(), stop=stop)
    assert stats.stopped_early
    assert stats.frames_sent == 30
    bus.shutdown()


def test_the_command_line_sends_a_trace_onto_a_bus(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "short.log"
    with can.Logger(str(path)) as log:
        for msg in trace(200, 0.0005):
            msg.channel = "vcan0"
            log.on_message_received(msg)
    receiver = can.Bus(interface="virtual", channel="player-cli")
    try:
        code = main(
            [
                "replay",
                str(path),
                "--to-bus",
                "-i",
                "virtual",
                "-c",
                "player-cli",
                "--speed",
                "2",
                "--json",
            ]
        )
        got = []
        while (received := receiver.recv(0)) is not None:
            got.append(int.from_bytes(received.data[:4], "big"))
    finally:
        receiver.shutdown()
    assert code == 0
    assert got == list(range(200))
    report = json.loads(capsys.readouterr().out)
    assert report["frames_sent"] == 200
    assert report["send_errors"] == 0
    assert report["trace_span_s"] == pytest.approx(0.0995, abs=1e-6)


def test_the_command_line_reports_a_bad_interface(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "short.log"
    with can.Logger(str(path)) as log:
        log.on_message_received(trace(1, 0.1)[0])
    assert main(["replay", str(path), "--to-bus", "-i", "nosuch", "-c", "x"]) == 2
    assert "error: unknown CAN interface 'nosuch'" in capsys.readouterr().err
    assert (
        main(["replay", str(tmp_path / "missing.log"), "--to-bus", "-i", "virtual", "-c", "x"]) == 2
    )
    assert "trace file not found" in capsys.readouterr().err


def test_decoding_options_are_refused_with_to_bus(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = argparse.Namespace(
        trace=str(tmp_path / "t.log"), command=["1:lock"], broker="mqtt://127.0.0.1:1883"
    )
    with pytest.raises(ConfigError, match="--command, --broker: not used with --to-bus"):
        run_to_bus(args)
