"""Scenario suite speed: vehicle time covered against wall time, measured in one run.

Runs the shipped suite (``scenarios/``, without ``pending/``) in this process, in the
default world (the scenario world: TCU, SIM link and backend), ``--runs`` times, and prints per
file the vehicle time, the median wall time and their ratio. Then the 8-hour depot night
three ways: ``scenarios/depot_night.yaml`` (signals set by steps); the committed trace
``can_traces/depot_night.blf`` through the scenario world with telemetry on, next to
baselines measured alongside (reading the trace alone, the TCU core and services alone
on a host with no outbox, the scenario world with telemetry off), so the time splits into
reading,
deciding and reporting; and frames generated from the ``depot_night`` storyline, next to
the generator alone and to a 10-minute window at the end of the night. Last line:
``suite virtual/wall ratio: R``.

    python benchmarks/scenarios.py [--runs K] [--storyline-hours H]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tcu.can.sources import open_trace  # noqa: E402
from tcu.runtime.host import Host  # noqa: E402
from tcu.runtime.replay import ReplayDriver  # noqa: E402
from tcu.scenario.bus import reference_encoder, reference_setup  # noqa: E402
from tcu.scenario.cases import Case  # noqa: E402
from tcu.scenario.loader import load_paths, load_text  # noqa: E402
from tcu.scenario.runner import CaseResult, run_case  # noqa: E402
from tcu.scenario.scenario_world import ScenarioWorld  # noqa: E402
from tcu.scenario.world import WorldFactory  # noqa: E402
from tcu.services import DEFAULT_VIN, VehicleConfig  # noqa: E402

NIGHT_S = 8 * 3600.0
WINDOW_S = 600.0
WINDOW_FROM = 44_400.0  # 05:50 UTC, the morning preconditioning
STORYLINE_NIGHT = """
name: depot night from the storyline
storyline: {{name: depot_night, seed: 1, duration: {duration}}}
steps:
  - at: "0:05:00"
    expect:
      verdict: {{service: charging, outcome: allowed}}
expect_end:
  counters: {{bad_frames: 0}}
"""
TRACE_NIGHT = """
name: depot night from the recorded bus
trace: can_traces/depot_night.blf
vehicle: {{home_plmn: "242-01"}}
steps:
  - at: 0
    {first}
  - at: "0:05:00"
    expect:
      verdict: {{service: charging, outcome: allowed}}
until: "8:00:00"
expect_end:
  counters: {{{end}}}
"""


def timed(case: Case, runs: int, factory: WorldFactory | None = None) -> tuple[CaseResult, float]:
    walls = []
    result = None
    for _ in range(runs):
        t = time.perf_counter()
        result = run_case(case, factory=factory)
        walls.append(time.perf_counter() - t)
    assert result is not None
    if not result.passed:
        raise SystemExit(f"{case.file}::{case.name} failed:\n{result.render()}")
    return result, statistics.median(walls)


def generator_only(duration: float, t_from: float = 0.0) -> tuple[float, int]:
    from tcu.storyline import get
    from tcu.storyline.generator import frames

    t = time.perf_counter()
    n = sum(
        1
        for _ in frames(
            get("depot_night"), reference_encoder(), seed=1, t_from=t_from, duration=duration
        )
    )
    return time.perf_counter() - t, n


def core_only(path: Path, span: float) -> None:
    """The TCU core and services on a host with no outbox: no telemetry, link or backend."""
    driver = ReplayDriver(open_trace(path), stop=span)
    driver.drive(Host(reference_setup(), VehicleConfig(vin=DEFAULT_VIN), clock=driver))
    driver.run()


def read_only(path: Path, span: float) -> None:
    t0 = None
    for msg in open_trace(path):
        t0 = msg.timestamp if t0 is None else t0
        if msg.timestamp - t0 > span:
            break


def trace_night(runs: int) -> None:
    """The recorded night four ways, interleaved, in CPU seconds of this process (median)."""

    def night(first: str, end: str) -> Case:
        (c,) = load_text(
            TRACE_NIGHT.format(first=first, end=end),
            "benchmarks/trace_night.yaml",
            base=REPO / "benchmarks" / "trace_night.yaml",
        ).cases
        return c

    def passes(case: Case, factory: WorldFactory) -> Callable[[], None]:
        def run() -> None:
            result = run_case(case, factory=factory)
            if not result.passed:
                raise SystemExit(f"{case.name} failed:\n{result.render()}")

        return run

    quiet = night("expect: {counters: {bad_frames: 0}}", "bad_frames: 0")
    active = night("activate: true", "bad_frames: 0, dropped: 0, outbox_depth: {max: 5}")
    trace = REPO / "can_traces" / "depot_night.blf"
    variants: dict[str, Callable[[], None]] = {
        "read": lambda: read_only(trace, NIGHT_S),
        "core": lambda: core_only(trace, NIGHT_S),
        "off": passes(quiet, ScenarioWorld),
        "on": passes(active, ScenarioWorld),
    }
    cpu: dict[str, list[float]] = {k: [] for k in variants}
    walls: list[float] = []
    for _ in range(runs):
        for name, run in variants.items():
            wall, t = time.perf_counter(), time.process_time()
            run()
            cpu[name].append(time.process_time() - t)
            if name == "on":
                walls.append(time.perf_counter() - wall)
    m = {k: statistics.median(v) for k, v in cpu.items()}
    full = m["on"]
    wall = statistics.median(walls)
    print(
        f"depot night, 8 h of can_traces/depot_night.blf, scenario world, telemetry on: "
        f"{wall:.3f} s wall, {full:.3f} s CPU ({NIGHT_S / wall:,.0f}x real time)"
    )
    parts = [
        ("reading the trace (python-can BLF reader)", m["read"]),
        ("TCU core and services (host with no outbox, less reading)", m["core"] - m["read"]),
        ("scenario world, telemetry off (less core and services)", m["off"] - m["core"]),
        ("telemetry on: records, signatures, outbox, link, backend", full - m["off"]),
    ]
    for label, seconds in parts:
        print(f"  {label:<58}{seconds:7.3f} s CPU {seconds / full:6.1%}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5, help="runs per case (median taken)")
    ap.add_argument("--storyline-hours", type=float, default=8.0)
    args = ap.parse_args()

    files = load_paths([REPO / "scenarios"])
    reference_encoder()
    rows = []
    total_vehicle = total_wall = 0.0
    night: tuple[float, float] | None = None
    for f in files:
        vehicle = wall = 0.0
        for case in f.cases:
            result, w = timed(case, args.runs)
            vehicle += result.vehicle_time_s
            wall += w
            if case.name == "depot night":
                night = (result.vehicle_time_s, w)
        rows.append((Path(f.path).as_posix(), len(f.cases), vehicle, wall))
        total_vehicle += vehicle
        total_wall += wall

    width = max(len(r[0]) for r in rows) + 2
    print(f"{'scenario file':<{width}}{'cases':>6}{'vehicle s':>12}{'wall ms':>10}{'ratio':>12}")
    for name, n, vehicle, wall in rows:
        print(f"{name:<{width}}{n:>6}{vehicle:>12,.0f}{wall * 1000:>10.1f}{vehicle / wall:>12,.0f}")
    print(
        f"{'suite':<{width}}{sum(r[1] for r in rows):>6}{total_vehicle:>12,.0f}"
        f"{total_wall * 1000:>10.1f}{total_vehicle / total_wall:>12,.0f}"
    )
    print()
    if night is not None:
        print(
            f"depot night, 8 h of steps:      {night[0] / 3600:.1f} h vehicle time "
            f"in {night[1]:.3f} s wall"
        )
    trace_night(max(1, min(args.runs, 3)))
    duration = args.storyline_hours * 3600
    (story_case,) = load_text(
        STORYLINE_NIGHT.format(duration=duration), "benchmarks/storyline_night.yaml"
    ).cases
    base, _ = generator_only(duration)
    result, wall = timed(story_case, 1)
    print(
        f"depot night, {args.storyline_hours:g} h of generated frames: {wall:.3f} s wall "
        f"(generator alone {base:.3f} s; TCU share {max(wall - base, 0.0):.3f} s; "
        f"scenario/generator ratio {wall / base:.2f})"
    )
    first, n_first = generator_only(WINDOW_S)
    late, n_late = generator_only(WINDOW_S, t_from=WINDOW_FROM)
    print(
        f"storyline window of {WINDOW_S / 60:g} min: from the start {n_first:,} frames in "
        f"{first:.3f} s; from {WINDOW_FROM:,.0f} s {n_late:,} frames in {late:.3f} s "
        f"(per frame {late / max(n_late, 1) / (first / max(n_first, 1)):,.0f}x the cost: "
        "a window computes every frame before it)"
    )
    print(f"suite virtual/wall ratio: {total_vehicle / total_wall:,.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
