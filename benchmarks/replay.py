"""Replay throughput against plain python-can reading, side by side in one run.

Writes a trace of at least 1,000,000 frames at the density of a 500 kbit/s bus (the
reference van's cyclic messages plus other ECUs' traffic, about 60 % bus load) in
.blf, .asc and .log, then measures, interleaved and repeated, (a) iterating
``can.LogReader`` over the file and (b) ``tcu replay`` of the same file in-process with
no printing. Prints frames/s for both and, last, one line per format
``replay/raw ratio <fmt>: R``, the median over runs of the ratio of two runs measured back
to back (R >= 0.8 means decoding, state and services cost at
most a quarter of what reading the file already costs).

    python benchmarks/replay.py [--frames N] [--runs K] [--formats blf,asc,log]
"""

from __future__ import annotations

import argparse
import math
import random
import statistics
import sys
import time
from pathlib import Path

import can
import cantools

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tcu.compose.replay import ReplayOptions, replay_file  # noqa: E402

WORK = REPO / "benchmarks" / "_work"
BITRATE = 500_000
LOAD = 0.6
VARIANTS = 16  # payload variants per message, cycled slowly, so signals really change


def frame_bits(length: int, extended: bool) -> int:
    """Bits on the wire for a classic frame, with typical bit stuffing (~10 %)."""
    overhead = 67 if extended else 47
    return int((overhead + 8 * min(length, 8)) * 1.1)


def build_schedule(seed: int) -> list[tuple[float, int, bool, bool, list[bytes]]]:
    """(period, id, extended, fd, payload variants) for every message on the bus."""
    rng = random.Random(seed)
    db = cantools.database.load_file(str(REPO / "can_traces" / "van.dbc"))
    sched = []
    for m in db.messages:
        if not m.cycle_time:
            continue
        variants = []
        for v in range(VARIANTS):
            data = {}
            for s in m.signals:
                lo = s.minimum if s.minimum is not None else 0
                hi = s.maximum if s.maximum is not None else lo + 1
                frac = (math.sin(v / VARIANTS * 2 * math.pi) + 1) / 2
                val = lo + (hi - lo) * frac
                if s.choices:
                    val = sorted(s.choices)[v % len(s.choices)]
                elif s.is_float is False and s.scale == 1:
                    val = int(val)
                data[s.name] = val
            try:
                variants.append(bytes(m.encode(data, strict=False, padding=True)))
            except Exception:  # noqa: BLE001 - fall back to raw bytes for odd signals
                variants.append(bytes(rng.getrandbits(8) for _ in range(m.length)))
        sched.append((m.cycle_time / 1000, m.frame_id, m.is_extended_frame, m.is_fd, variants))
    used = sum(frame_bits(len(v[0]), e) / p for p, _, e, _, v in sched)
    other_ids = iter(range(0x100, 0x1F0))
    while used < BITRATE * LOAD:
        period = rng.choice((0.01, 0.02, 0.05, 0.1))
        ident = next(other_ids)
        payloads = [bytes(rng.getrandbits(8) for _ in range(8)) for _ in range(VARIANTS)]
        sched.append((period, ident, False, False, payloads))
        used += frame_bits(8, False) / period
    return sched


def write_trace(path: Path, frames: int, seed: int = 7) -> None:
    sched = build_schedule(seed)
    rng = random.Random(seed)
    t0 = 1_768_400_000.0
    events: list[tuple[float, int]] = []
    fps = sum(1 / p for p, *_ in sched)
    span = frames / fps
    for i, (period, *_rest) in enumerate(sched):
        t = rng.uniform(0, period)
        while t < span:
            events.append((t, i))
            t += period * rng.uniform(0.98, 1.02)
    events.sort()
    events = events[:frames]
    tmp = path.with_suffix(".tmp" + path.suffix)
    with can.Logger(str(tmp)) as log:
        for n, (t, i) in enumerate(events):
            period, ident, ext, fd, variants = sched[i]
            data = variants[int(t / 1.0 + i) % VARIANTS]
            log.on_message_received(
                can.Message(
                    timestamp=t0 + t,
                    arbitration_id=ident,
                    is_extended_id=ext,
                    is_fd=fd,
                    data=data,
                    channel=0,
                )
            )
            if n % 100_000 == 0:
                print(f"\r  writing {path.name}: {n:,}/{len(events):,}", end="", file=sys.stderr)
    print(file=sys.stderr)
    tmp.rename(path)


def time_raw(path: Path) -> tuple[float, int]:
    t = time.perf_counter()
    n = sum(1 for _ in can.LogReader(str(path)))
    return time.perf_counter() - t, n


def time_replay(path: Path) -> tuple[float, int]:
    t = time.perf_counter()
    report = replay_file(ReplayOptions(trace=path))
    return time.perf_counter() - t, report.counts["frames"]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=1_000_000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--formats", default="blf,asc,log")
    args = ap.parse_args()
    WORK.mkdir(parents=True, exist_ok=True)
    formats = args.formats.split(",")
    files = {}
    for fmt in formats:
        path = WORK / f"bench_{args.frames}.{fmt}"
        if not path.exists():
            write_trace(path, args.frames)
        files[fmt] = path
    results: dict[str, dict[str, list[float]]] = {
        f: {"raw": [], "replay": [], "ratio": []} for f in formats
    }
    total = len(formats) * args.runs * 2
    done = 0
    for run in range(args.runs):
        for fmt in formats:
            order = ("raw", "replay") if run % 2 == 0 else ("replay", "raw")
            pair = {}
            for kind in order:
                seconds, n = (time_raw if kind == "raw" else time_replay)(files[fmt])
                pair[kind] = n / seconds
                results[fmt][kind].append(pair[kind])
                done += 1
                print(f"\r  measuring {done}/{total}", end="", file=sys.stderr)
            # the two runs of a pair share the machine's mood: their ratio is what we keep
            results[fmt]["ratio"].append(pair["replay"] / pair["raw"])
    print(file=sys.stderr)
    print(f"{'format':<8}{'frames':>12}{'raw frames/s':>16}{'replay frames/s':>18}{'ratio':>8}")
    ratios = {}
    for fmt in formats:
        raw = statistics.median(results[fmt]["raw"])
        rep = statistics.median(results[fmt]["replay"])
        ratios[fmt] = statistics.median(results[fmt]["ratio"])
        print(f"{fmt:<8}{args.frames:>12,}{raw:>16,.0f}{rep:>18,.0f}{ratios[fmt]:>8.2f}")
    print("(ratio: the median over runs of replay/raw measured back to back)")
    for fmt in formats:
        print(f"replay/raw ratio {fmt}: {ratios[fmt]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
