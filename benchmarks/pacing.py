"""Replay pacing onto a bus: ``tcu.bench.player`` against ``python -m can.player``, one run.

Writes a 30-second trace at 4,000 frames/s (40 identifiers at 10 ms with spread phases and
a little jitter, as a busy bus looks; each payload carries the frame's index) to
``benchmarks/_work/``, then sends it, in turn, with both players onto a ``udp_multicast``
bus on loopback, and receives it in this process.

Why this comparison is the fair one: python-can's ``virtual`` bus exists inside one process
only, and running both players in the benchmark's process would put the receiver behind the
same GIL as a spinning sender. So each player runs as its own process, exactly as a user
starts it (``python -m can.player -i udp_multicast -c GROUP FILE`` and
``tcu replay FILE --to-bus -i udp_multicast -c GROUP``), both read the same file
with python-can's readers, both send through the same interface, and one receiver (this
process, doing nothing else) takes the kernel's receive timestamp of every frame. Start-up
time does not count: everything is measured from the first frame received.

Per player, the timing error of each frame is its arrival - (first arrival + its offset
in the trace). ``drift`` is where the end of the trace lands against its span: the median
error over the last second minus the median error over the first (medians, so that one
frame's luck decides nothing). ``jitter`` is the error less its median (the constant part,
transport latency); its 99th percentile in absolute value is reported. Lost frames (the
receiver's socket overflowed) are counted and left out. Below 20 us a drift is within the
measurement's noise; the ratio counts such a drift as 20 us, so two players that both keep
time score 1. Last lines:

    pacing drift ratio tcu/can.player: R     (|tcu drift| / |can.player drift|, target <= 1)
    p99 jitter ms: J                         (tcu.bench.player, target <= 1)

The machine's load matters: a sender that spins (tcu.bench.player, by design) loses its CPU
to other busy processes, and a sleeper (can.player) is woken late. Run it on a quiet machine,
and use ``--rounds`` to alternate the players several times (medians are reported).

    python benchmarks/pacing.py [--seconds 30] [--rate 4000] [--rounds 1]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import socket
import statistics
import struct
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import can
from can.interfaces.udp_multicast.utils import unpack_message

REPO = Path(__file__).resolve().parents[1]
WORK = REPO / "benchmarks" / "_work"
GROUP = "239.74.163.7"
PORT = 43113  # python-can's udp_multicast default
SO_TIMESTAMPNS = 35  # linux/socket.h
IDS = 40
SETTLE_S = 1.0
QUIET_S = 1.5
WINDOW_S = 1.0
DRIFT_FLOOR_S = 20e-6


@dataclass
class Result:
    name: str
    received: int
    lost: int
    span_s: float
    drift_s: float
    p50_ms: float
    p99_ms: float
    max_ms: float


def write_trace(path: Path, seconds: float, rate: float, seed: int = 7) -> tuple[int, float]:
    """The trace: IDS identifiers at IDS/rate seconds each, phases spread, jitter +-20 us."""
    rng = random.Random(seed)
    period = IDS / rate
    t0 = 1_768_400_000.0
    stamps: list[tuple[float, int]] = []
    for k in range(IDS):
        phase = k * period / IDS
        n = 0
        while (t := phase + n * period) < seconds:
            stamps.append((t + rng.uniform(-20e-6, 20e-6), 0x100 + k))
            n += 1
    stamps.sort()
    with can.Logger(str(path)) as log:
        for index, (t, can_id) in enumerate(stamps):
            log.on_message_received(
                can.Message(
                    timestamp=round(t0 + max(0.0, t), 6),
                    arbitration_id=can_id,
                    is_extended_id=False,
                    data=index.to_bytes(4, "big") + bytes(4),
                    channel="vcan0",
                )
            )
    return len(stamps), stamps[-1][0] - max(0.0, stamps[0][0])


def offsets(path: Path) -> list[float]:
    with can.LogReader(str(path)) as reader:
        stamps = [msg.timestamp for msg in reader]
    return [t - stamps[0] for t in stamps]


class Receiver:
    """The group's datagrams with their kernel receive times, decoded after the run.

    A raw socket instead of a python-can bus: receiving then costs a few microseconds per
    frame, so the receiver takes as little CPU as possible away from the sender it measures.
    """

    def __init__(self, group: str, port: int = PORT) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_UDP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 * 1024 * 1024)
        sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        sock.bind(("", port))
        membership = socket.inet_aton(group) + struct.pack("@I", socket.INADDR_ANY)
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, membership)
        sock.settimeout(0.2)
        self.sock = sock
        self.raw: list[tuple[bytes, bytes]] = []

    def drain(self) -> None:
        self.sock.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            while self.sock.recv(4096):
                pass
        self.sock.settimeout(0.2)

    def receive(self) -> bool:
        try:
            data, ancillary, _, _ = self.sock.recvmsg(4096, 64)
        except TimeoutError:
            return False
        self.raw.append((data, ancillary[0][2] if ancillary else b""))
        return True

    def arrivals(self) -> dict[int, float]:
        out: dict[int, float] = {}
        for data, stamp in self.raw:
            msg = unpack_message(data)
            seconds, nanoseconds = struct.unpack("@ll", stamp[:16])
            out[int.from_bytes(msg.data[:4], "big")] = seconds + nanoseconds * 1e-9
        return out

    def close(self) -> None:
        self.sock.close()


def play(name: str, cmd: list[str], trace_offsets: list[float], timeout: float) -> Result:
    rx = Receiver(GROUP)
    try:
        rx.drain()
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + timeout
        last = time.monotonic()
        while time.monotonic() < deadline:
            if rx.receive():
                last = time.monotonic()
            elif proc.poll() is not None and time.monotonic() - last > QUIET_S:
                break
        _, err = proc.communicate(timeout=30)
        if proc.returncode != 0:
            raise SystemExit(f"{name} failed ({proc.returncode}): {err.strip()[-500:]}")
    finally:
        rx.close()
    arrivals = rx.arrivals()
    if len(arrivals) < 2:
        raise SystemExit(f"{name}: received {len(arrivals)} frames; is multicast on loopback up?")
    first = min(arrivals)
    last_index = max(arrivals)
    base = arrivals[first] - trace_offsets[first]
    error = {i: t - base - trace_offsets[i] for i, t in arrivals.items()}
    median = statistics.median(error.values())
    deviations = sorted(abs(e - median) for e in error.values())
    span = trace_offsets[last_index] - trace_offsets[first]
    head = [e for i, e in error.items() if trace_offsets[i] - trace_offsets[first] < WINDOW_S]
    tail = [e for i, e in error.items() if trace_offsets[last_index] - trace_offsets[i] < WINDOW_S]
    return Result(
        name=name,
        received=len(arrivals),
        lost=len(trace_offsets) - len(arrivals),
        span_s=span,
        drift_s=statistics.median(tail) - statistics.median(head),
        p50_ms=deviations[len(deviations) // 2] * 1000,
        p99_ms=deviations[min(len(deviations) - 1, int(0.99 * len(deviations)))] * 1000,
        max_ms=deviations[-1] * 1000,
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--rate", type=float, default=4000.0)
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args()
    WORK.mkdir(parents=True, exist_ok=True)
    trace = WORK / f"pacing_{int(args.rate)}fps_{int(args.seconds)}s.log"
    n, span = write_trace(trace, args.seconds, args.rate)
    trace_offsets = offsets(trace)
    print(f"trace: {trace.relative_to(REPO)}: {n:,} frames over {span:.3f} s")
    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f} at the start")
    py = sys.executable
    players = {
        "can.player": [py, "-m", "can.player", "-i", "udp_multicast", "-c", GROUP, str(trace)],
        "tcu": [
            py,
            "-m",
            "tcu",
            "replay",
            str(trace),
            "--to-bus",
            "-i",
            "udp_multicast",
            "-c",
            GROUP,
        ],
    }
    results: dict[str, list[Result]] = {name: [] for name in players}
    timeout = args.seconds * 2 + 30
    for _ in range(args.rounds):
        for name, cmd in players.items():
            time.sleep(SETTLE_S)
            r = play(name, cmd, trace_offsets, timeout)
            results[name].append(r)
            print(
                f"{name:>10}: {r.received:,} received ({r.lost} lost), "
                f"drift {r.drift_s * 1000:+.3f} ms over {r.span_s:.3f} s, "
                f"jitter p50 {r.p50_ms:.3f} ms, p99 {r.p99_ms:.3f} ms, max {r.max_ms:.3f} ms"
            )
    tcu_drift = statistics.median(abs(r.drift_s) for r in results["tcu"])
    ref_drift = statistics.median(abs(r.drift_s) for r in results["can.player"])
    tcu_p99 = statistics.median(r.p99_ms for r in results["tcu"])
    ref_p99 = statistics.median(r.p99_ms for r in results["can.player"])
    ratio = max(tcu_drift, DRIFT_FLOOR_S) / max(ref_drift, DRIFT_FLOOR_S)
    print(f"machine: load average {os.getloadavg()[0]:.2f} at the end")
    print(f"drift ms: tcu {tcu_drift * 1000:.3f}, can.player {ref_drift * 1000:.3f}")
    print(f"p99 jitter ms: can.player {ref_p99:.3f}")
    print(f"pacing drift ratio tcu/can.player: {ratio:.3f}")
    print(f"p99 jitter ms: {tcu_p99:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
