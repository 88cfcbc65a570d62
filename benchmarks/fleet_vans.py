"""The fleet of vans, measured side by side in one run: virtual speed, vans per process.

1. Virtual time. A fleet of ``--virtual-vans`` vans lives ``--virtual-hours`` hours in
   memory (``tcu fleet`` without a broker: every van's TCU, outbox, SIM link model, the
   cloud stub), against a baseline measured in the same run: one van alone for the same
   hours. Printed: vehicle-hours per wall second of both, and their ratio (how well one
   clock and one backend shared by many vans scale against one van on its own).
2. Vans per process at 0.1 Hz against Mosquitto (started here, loopback). For each fleet
   size of ``--vans`` (ascending), a real-time fleet of that many vans, each its own
   aiomqtt client, a snapshot record every 10 s, for ``--duration`` seconds, the cloud stub
   in the same process. A size passes with 0 lost, every outbox drained and p99
   record-to-stored under 2 s; the largest size that passes is the figure. Beside it, in
   the same run on the same broker, the baseline: as many bare aiomqtt clients (QoS 1,
   persistent sessions) each publishing one 300-byte message every 10 s, no TCU, no
   backend: the CPU and memory per client of MQTT alone.

The last lines:

    fleet virtual vehicle-hours per wall second: V
    fleet vans per process at 0.1 Hz: N
    fleet CPU per van: C ms per second (bare MQTT client: B, ratio R)
    fleet memory per van: M KiB (bare MQTT client: B, ratio R)

    python benchmarks/fleet_vans.py [--vans 1000,2000,5000,10000] [--duration 60]
                                    [--virtual-vans 100] [--virtual-hours 6]

The machine's descriptor limit caps the sizes (raised to the hard limit here). Run it
on a quiet machine: other processes' load goes straight into the p99.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import contextlib
import multiprocessing
import resource
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import aiomqtt

from cloud_stub.broker import MosquittoProcess
from tcu.compose.fleet import FleetOptions, FleetReport, LiveFleet, VirtualFleet, ensure_fds
from tcu.runtime.mqtt import BrokerURL

T = TypeVar("T")
P99_LIMIT_S = 2.0
PERIOD_S = 10.0


def virtual(vans: int, hours: float) -> FleetReport:
    return VirtualFleet(FleetOptions(vans=vans, duration_s=hours * 3600.0, seed=1)).run()


def live(url: str, vans: int, duration: float) -> dict[str, Any]:
    """One real-time fleet in this (child) process; its summary."""
    opts = FleetOptions(
        vans=vans,
        duration_s=duration,
        seed=1,
        broker=BrokerURL.parse(url),
        ramp=1000.0,
        snapshot_period_s=PERIOD_S,
        drain_timeout_s=120.0,
    )
    return asyncio.run(LiveFleet(opts).run()).as_json()


def bare(url: str, n: int, duration: float) -> tuple[float, float]:
    ensure_fds(n)
    return asyncio.run(_bare(BrokerURL.parse(url), n, duration))


def in_child(fn: Callable[..., T], *args: Any) -> T:
    """``fn(*args)`` in a fresh process: each figure is one process's own."""
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
        return pool.submit(fn, *args).result()


def _rss_kb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 1024.0


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def _bare(broker: BrokerURL, n: int, duration: float) -> tuple[float, float]:
    """CPU ms per client per second and KiB per client of ``n`` bare publishing clients."""
    rss0 = _rss_kb()
    cpu0, t0 = _cpu(), time.monotonic()
    rss = rss0
    payload = bytes(300)
    async with contextlib.AsyncExitStack() as stack:
        clients = []
        for i in range(n):
            client = aiomqtt.Client(
                broker.host, broker.port, identifier=f"bare-{i}", clean_session=False
            )
            await stack.enter_async_context(client)
            clients.append(client)

        async def publisher(i: int, client: aiomqtt.Client) -> None:
            await asyncio.sleep(PERIOD_S * i / n)
            end = t0 + duration
            while time.monotonic() < end:
                await client.publish(f"bare/{i}/telemetry", payload, qos=1)
                await asyncio.sleep(PERIOD_S)

        await asyncio.gather(*(publisher(i, c) for i, c in enumerate(clients)))
        rss = _rss_kb()
    wall = time.monotonic() - t0
    return 1000.0 * (_cpu() - cpu0) / n / wall, (rss - rss0) / n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vans", default="1000,2000,5000,10000")
    parser.add_argument("--duration", type=float, default=60.0)
    parser.add_argument("--virtual-vans", type=int, default=100)
    parser.add_argument("--virtual-hours", type=float, default=6.0)
    args = parser.parse_args()
    sizes = sorted(int(x) for x in args.vans.split(","))

    print(f"1. virtual time: {args.virtual_vans} vans x {args.virtual_hours:g} h, and 1 van alone")
    one = virtual(1, args.virtual_hours)
    many = virtual(args.virtual_vans, args.virtual_hours)
    v_one = one.vehicle_hours / one.wall_s
    v_many = many.vehicle_hours / many.wall_s
    print(f"   1 van: {v_one:.2f} vehicle-hours per wall second (lost {one.lost})")
    print(
        f"   {args.virtual_vans} vans: {v_many:.2f} vehicle-hours per wall second "
        f"(lost {many.lost}, {many.records_stored:,} records), ratio {v_many / v_one:.2f}"
    )

    print(f"2. real time against Mosquitto, a record every {PERIOD_S:g} s per van")
    print("   " + ensure_fds(sizes[-1] * 2))
    best: dict[str, Any] | None = None
    with (
        tempfile.TemporaryDirectory(prefix="fleet-bench-") as work,
        MosquittoProcess(Path(work) / "mosquitto") as broker,
    ):
        for n in sizes:
            r = in_child(live, broker.url, n, args.duration)
            p99 = r["latency_p99_s"]
            ok = r["lost"] == 0 and r["drained"] and p99 is not None and p99 < P99_LIMIT_S
            print(
                f"   {n:>6,} vans: connected in {r['connect_s'] or 0:.1f} s, "
                f"{r['records_stored']:,} records, lost {r['lost']}, "
                f"p50 {r['latency_p50_s']} s, p99 {p99} s, "
                f"CPU {r['cpu_ms_per_van_s']:.3f} ms/van/s, "
                f"{r['memory_kb_per_van']:.0f} KiB/van: {'pass' if ok else 'FAIL'}"
            )
            if not ok:
                break
            best = r
        if best is None:
            print("fleet vans per process at 0.1 Hz: 0")
            sys.exit(1)
        bare_cpu, bare_kb = in_child(bare, broker.url, best["vans"], args.duration)
    cpu, kb = best["cpu_ms_per_van_s"], best["memory_kb_per_van"]
    print(f"fleet virtual vehicle-hours per wall second: {v_many:.1f}")
    print(f"fleet vans per process at 0.1 Hz: {best['vans']}")
    print(
        f"fleet CPU per van: {cpu:.3f} ms per second "
        f"(bare MQTT client: {bare_cpu:.3f}, ratio {cpu / max(bare_cpu, 1e-9):.1f})"
    )
    print(
        f"fleet memory per van: {kb:.0f} KiB "
        f"(bare MQTT client: {bare_kb:.0f}, ratio {kb / max(bare_kb, 1e-9):.1f})"
    )


if __name__ == "__main__":
    main()
