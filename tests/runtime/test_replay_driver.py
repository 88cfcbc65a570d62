"""The replay driver fires scheduled events and core deadlines in time order."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import can

from tcu.can.setup import load_bus_setup
from tcu.core import TcuCore
from tcu.events import Action, Command, Log
from tcu.runtime.replay import ReplayDriver
from tests.helpers import write_mini


class Recorder:
    """A part with a timer every 10 s that logs what it sees, in order."""

    def __init__(self) -> None:
        self.seen: list[tuple[float, str]] = []
        self.deadline = 10.0

    def on_signals(self, changed: list[str], now: float) -> list[Action]:
        self.seen.append((now, "signals"))
        return []

    def on_event(self, event: Any, now: float) -> list[Action] | None:
        self.seen.append((now, f"event:{event.name}"))
        return [Log(level="info", text=event.name)]

    def on_tick(self, now: float) -> list[Action]:
        self.seen.append((now, "tick"))
        self.deadline += 10.0
        return []

    def next_deadline(self) -> float:
        return self.deadline


class CoreHost:
    """The driver's side of a host, around a bare core: it records what it carries out."""

    def __init__(self, core: TcuCore) -> None:
        self.core = core
        self.frame = core.frame
        self.out: list[tuple[Action, float]] = []

    def handle(self, event: Any, now: float) -> list[Action]:
        actions: list[Action] = self.core.handle(event, now)
        self.carry_out(actions, now)
        return actions

    def carry_out(self, actions: Iterable[Action], now: float) -> None:
        self.out += [(a, now) for a in actions]


def driver(core: TcuCore, **options: Any) -> ReplayDriver:
    d = ReplayDriver(frames(), **options)
    d.drive(CoreHost(core))
    return d


def frames() -> list[can.Message]:
    return [
        can.Message(
            timestamp=1000.0 + t,
            arbitration_id=0x3A0,
            is_extended_id=False,
            data=bytes([i % 2, 0]),
        )
        for i, t in enumerate((0.0, 5.0, 25.0, 26.0))
    ]


def test_timers_and_events_fire_in_time_order_at_their_own_time(tmp_path: Path) -> None:
    _, m = write_mini(tmp_path)
    rec = Recorder()
    core = TcuCore(load_bus_setup(mapping=m).mapping, parts=[rec])
    d = driver(core)
    d.schedule(12.0, Command(name="lock"))
    d.schedule(30.0, Command(name="unlock"))
    stats = d.run()
    assert isinstance(d.host, CoreHost)
    out = d.host.out
    assert rec.seen == [
        (0.0, "signals"),
        (5.0, "signals"),
        (10.0, "tick"),
        (12.0, "event:lock"),
        (20.0, "tick"),
        (25.0, "signals"),
        (26.0, "signals"),
    ]
    assert [t for _, t in out] == [12.0]
    assert stats.vehicle_time_s == 26.0
    assert len(stats.late_events) == 1 and "t=30s" in stats.late_events[0]


def test_start_and_stop_window(tmp_path: Path) -> None:
    _, m = write_mini(tmp_path)
    core = TcuCore(load_bus_setup(mapping=m).mapping)
    stats = driver(core, start=4.0, stop=25.5).run()
    assert stats.skipped_before_start == 1
    assert core.counts.frames == 2
    assert stats.vehicle_time_s == 21.5


def test_speed_paces_with_the_injected_clock(tmp_path: Path) -> None:
    _, m = write_mini(tmp_path)
    core = TcuCore(load_bus_setup(mapping=m).mapping)
    wall = [0.0]
    slept: list[float] = []

    def sleep(s: float) -> None:
        slept.append(s)
        wall[0] += s

    driver(core, speed=10.0, clock=lambda: wall[0], sleep=sleep).run()
    assert sum(slept) == 2.6  # 26 s of vehicle time at ten times real time
