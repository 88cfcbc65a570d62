"""Plotting a replay against the replay alone, side by side in one run.

Uses the trace of ``benchmarks/replay.py`` (at least 1,000,000 frames at the density of
a 500 kbit/s bus; written on first use) and measures, interleaved and repeated, each in
a child process of its own: (a) ``tcu replay TRACE --json`` and (b) ``tcu plot TRACE -o
plot.png`` (with ``--export`` also a Parquet export of every signal change). Each child's
wall time is taken around it; its peak resident memory is the child's own ``VmHWM``
(``/proc/self/status``, read as it exits: ``ru_maxrss`` would carry the parent's peak
across fork and exec). A last child only imports matplotlib and saves an empty figure of
the same size: matplotlib's own share; another plots the first tenth of the trace: a
plot's memory does not grow with the trace. Prints both per run and, last, ``plot/replay
ratio: R`` (the median over runs of the ratio of two runs measured back to back; target
<= 1.5) and ``peak RSS MB plot/replay: P (plot MB / replay MB)`` (medians of the peaks).

    python benchmarks/plot.py [--frames N] [--runs K] [--format blf] [--export]
"""

from __future__ import annotations

import argparse
import json
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

# ``python -m tcu ARGV`` that writes its own peak RSS (VmHWM, KiB) to $HWM_FILE at exit
WRAPPER = """
import atexit, os, runpy, sys

def hwm():
    with open("/proc/self/status") as f:
        kib = next(line.split()[1] for line in f if line.startswith("VmHWM:"))
    with open(os.environ["HWM_FILE"], "w") as out:
        out.write(kib)

atexit.register(hwm)
sys.argv = ["tcu", *sys.argv[1:]]
runpy.run_module("tcu", run_name="__main__", alter_sys=True)
"""


def child(argv: list[str], scratch: Path, stdout: list[str] | None = None) -> tuple[float, float]:
    """Run ``python -m tcu ARGV``; (wall seconds, peak RSS in MB) of that child alone.

    ``stdout``, when given, receives what the child printed."""
    hwm = scratch / "hwm"
    hwm.unlink(missing_ok=True)
    t = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-c", WRAPPER, *argv],
        cwd=REPO,
        stdout=subprocess.PIPE if stdout is not None else subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env={**os.environ, "HWM_FILE": str(hwm)},
        check=False,
    )
    wall = time.perf_counter() - t
    if proc.returncode != 0:
        err = proc.stderr.decode()
        raise SystemExit(f"tcu {' '.join(argv)} failed ({proc.returncode}):\n{err}")
    if stdout is not None:
        stdout.append(proc.stdout.decode())
    return wall, int(hwm.read_text()) / 1024.0


# matplotlib's own share: import it and save an empty figure of the plot's size
MATPLOTLIB_ALONE = """
import sys
from matplotlib.figure import Figure
fig = Figure(figsize=(14, 15), dpi=100)
fig.subplots(9, 1, sharex=True)
fig.savefig(sys.argv[1])
"""


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
                printed: list[str] = []
                wall, peak = child(commands[kind], out, printed if kind == "replay" else None)
                if printed:
                    span = json.loads(printed[0])["vehicle_time_s"]
                walls[kind].append(wall)
                peaks[kind].append(peak)
                pair[kind] = wall
                print(f"  run {run + 1} {kind:<7} {wall:7.2f} s  {peak:7.1f} MB", file=sys.stderr)
            ratios.append(pair["plot"] / pair["replay"])
        size = (out / "plot.png").stat().st_size
        hwm = out / "hwm"
        code = MATPLOTLIB_ALONE + WRAPPER.split("atexit.register(hwm)")[0] + "hwm()\n"
        subprocess.run(
            [sys.executable, "-c", code, str(out / "empty.png")],
            env={**os.environ, "HWM_FILE": str(hwm)},
            check=True,
        )
        alone = int(hwm.read_text()) / 1024.0
        # the first tenth of the trace: a plot's memory must not grow with the trace
        _, short_peak = child([*plot, "--stop", f"{span / 10:.3f}"], out)
    print(f"{'':<8}{'frames':>12}{'wall s':>10}{'peak RSS MB':>14}")
    for kind in ("replay", "plot"):
        wall = statistics.median(walls[kind])
        peak = statistics.median(peaks[kind])
        print(f"{kind:<8}{args.frames:>12,}{wall:>10.2f}{peak:>14.1f}")
    also = " and a Parquet export" if args.export else ""
    print(f"(plot: {trace.name} to a {size / 1024:.0f} KiB PNG{also};")
    print(" each a child process with its interpreter start; ratio: median of back-to-back pairs)")
    print(f"matplotlib alone (import, save an empty figure of that size): {alone:.0f} MB peak RSS")
    print(f"plot of the first tenth of the trace: {short_peak:.0f} MB peak RSS")
    print(f"plot/replay ratio: {statistics.median(ratios):.2f}")
    plot_mb, replay_mb = statistics.median(peaks["plot"]), statistics.median(peaks["replay"])
    print(f"peak RSS MB plot/replay: {plot_mb / replay_mb:.2f} ({plot_mb:.0f} / {replay_mb:.0f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
