"""Plotting a replay against the replay alone, side by side in one run.

Uses the trace of ``benchmarks/replay.py`` (at least 1,000,000 frames at the density of
a 500 kbit/s bus; written on first use) and measures, interleaved and repeated, each in
a child process of its own: (a) ``tcu replay TRACE --json`` and (b) ``tcu plot TRACE -o
plot.png`` (with ``--export`` also a Parquet export of every signal change). Each child's
wall time is taken around it, its peak resident memory from ``os.wait4`` (that child
alone). Prints both per run and, last, ``plot/replay ratio: R`` (the median over runs of
the ratio of two runs measured back to back; target <= 1.5) and ``peak RSS MB
plot/replay: P`` (the medians of the peaks, as ``plot MB / replay MB``).

    python benchmarks/plot.py [--frames N] [--runs K] [--format blf] [--export]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))

from replay import WORK, write_trace  # noqa: E402  (benchmarks/replay.py)


def child(argv: list[str]) -> tuple[float, float]:
    """Run ``python -m tcu ARGV``; (wall seconds, peak RSS in MB) of that child alone."""
    t = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "tcu", *argv],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t
    proc.returncode = os.waitstatus_to_exitcode(status)
    err = proc.stderr.read().decode() if proc.stderr else ""
    if proc.stderr:
        proc.stderr.close()
    if proc.returncode != 0:
        raise SystemExit(f"tcu {' '.join(argv)} failed ({proc.returncode}):\n{err}")
    return wall, usage.ru_maxrss / 1024.0  # ru_maxrss is in KiB on Linux


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=1_000_000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--format", default="blf")
    ap.add_argument("--export", action="store_true", help="also export to Parquet")
    args = ap.parse_args()
    WORK.mkdir(parents=True, exist_ok=True)
    trace = WORK / f"bench_{args.frames}.{args.format}"
    if not trace.exists():
        write_trace(trace, args.frames)
    walls: dict[str, list[float]] = {"replay": [], "plot": []}
    peaks: dict[str, list[float]] = {"replay": [], "plot": []}
    ratios: list[float] = []
    with tempfile.TemporaryDirectory(prefix="tcu-bench-plot-") as tmp:
        out = Path(tmp)
        plot = ["plot", str(trace), "-o", str(out / "plot.png")]
        if args.export:
            plot += ["--export", str(out / "signals.parquet")]
        commands = {"replay": ["replay", str(trace), "--json"], "plot": plot}
        for run in range(args.runs):
            order = ("replay", "plot") if run % 2 == 0 else ("plot", "replay")
            pair = {}
            for kind in order:
                wall, peak = child(commands[kind])
                walls[kind].append(wall)
                peaks[kind].append(peak)
                pair[kind] = wall
                print(f"  run {run + 1} {kind:<7} {wall:7.2f} s  {peak:7.1f} MB", file=sys.stderr)
            ratios.append(pair["plot"] / pair["replay"])
        size = (out / "plot.png").stat().st_size
    print(f"{'':<8}{'frames':>12}{'wall s':>10}{'peak RSS MB':>14}")
    for kind in ("replay", "plot"):
        wall = statistics.median(walls[kind])
        peak = statistics.median(peaks[kind])
        print(f"{kind:<8}{args.frames:>12,}{wall:>10.2f}{peak:>14.1f}")
    also = " and a Parquet export" if args.export else ""
    print(f"(plot: {trace.name} to a {size / 1024:.0f} KiB PNG{also};")
    print(" each a child process with its interpreter start; ratio: median of back-to-back pairs)")
    print(f"plot/replay ratio: {statistics.median(ratios):.2f}")
    plot_mb, replay_mb = statistics.median(peaks["plot"]), statistics.median(peaks["replay"])
    print(f"peak RSS MB plot/replay: {plot_mb / replay_mb:.2f} ({plot_mb:.0f} / {replay_mb:.0f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
