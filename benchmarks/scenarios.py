"""Scenario suite speed: vehicle time covered against wall time, measured in one run.

Runs the shipped suite (``scenarios/``, without ``pending/``) in this process, ``--runs``
times, and prints per file the vehicle time, the median wall time and their ratio. Then
the 8-hour depot night two ways: ``scenarios/depot_night.yaml`` (signals set by steps)
and the same night driven by frames generated from the ``depot_night`` storyline, next
to a baseline measured alongside: iterating the generator alone, without the TCU. Last
line: ``suite virtual/wall ratio: R``.

    python benchmarks/scenarios.py [--runs K] [--storyline-hours H]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tcu.scenario.core_world import reference_encoder  # noqa: E402
from tcu.scenario.loader import load_paths, load_text  # noqa: E402
from tcu.scenario.model import Case  # noqa: E402
from tcu.scenario.runner import CaseResult, run_case  # noqa: E402

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


def timed(case: Case, runs: int) -> tuple[CaseResult, float]:
    walls = []
    result = None
    for _ in range(runs):
        t = time.perf_counter()
        result = run_case(case)
        walls.append(time.perf_counter() - t)
    assert result is not None
    if not result.passed:
        raise SystemExit(f"{case.file}::{case.name} failed:\n{result.render()}")
    return result, statistics.median(walls)


def generator_only(duration: float) -> float:
    from tcu.storyline import get
    from tcu.storyline.generator import frames

    t = time.perf_counter()
    n = sum(1 for _ in frames(get("depot_night"), reference_encoder(), seed=1, duration=duration))
    wall = time.perf_counter() - t
    print(f"  (generator alone: {n:,} frames)", file=sys.stderr)
    return wall


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

    print(f"{'scenario file':<46}{'cases':>6}{'vehicle s':>12}{'wall ms':>10}{'ratio':>12}")
    for name, n, vehicle, wall in rows:
        print(f"{name:<46}{n:>6}{vehicle:>12,.0f}{wall * 1000:>10.1f}{vehicle / wall:>12,.0f}")
    print(
        f"{'suite':<46}{sum(r[1] for r in rows):>6}{total_vehicle:>12,.0f}"
        f"{total_wall * 1000:>10.1f}{total_vehicle / total_wall:>12,.0f}"
    )
    print()
    if night is not None:
        print(
            f"depot night, 8 h of steps:      {night[0] / 3600:.1f} h vehicle time "
            f"in {night[1]:.3f} s wall"
        )
    duration = args.storyline_hours * 3600
    (story_case,) = load_text(
        STORYLINE_NIGHT.format(duration=duration), "benchmarks/storyline_night.yaml"
    ).cases
    base = generator_only(duration)
    result, wall = timed(story_case, 1)
    print(
        f"depot night, {args.storyline_hours:g} h of generated frames: {wall:.3f} s wall "
        f"(generator alone {base:.3f} s; TCU share {max(wall - base, 0.0):.3f} s; "
        f"scenario/generator ratio {wall / base:.2f})"
    )
    print(f"suite virtual/wall ratio: {total_vehicle / total_wall:,.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
