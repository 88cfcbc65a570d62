"""Backend ingest at scale, measured side by side in one run: workers and stores.

Simulated vans (``cloud_stub.loadgen.SimVan``: each its own Ed25519 key and MQTT client,
real signed CBOR batches, the backend's signed acks verified) publish through Mosquitto
(started here, loopback) to ``cloud-stub serve --workers K`` (started here as a child
process). A round sends ``--vans`` vans x ``--records`` records (batches of ``--batch``,
at most ``--window`` batches awaiting their ack) and is timed from the first publish to
the last ack: records per second, end to end and acknowledged. Four configurations,
interleaved and repeated ``--rounds`` times: 1 and 2 workers, on SQLite (WAL,
synchronous=NORMAL: no fsync per commit) and on PostgreSQL 15 (a throwaway cluster
started here with initdb/pg_ctl; fsync on, synchronous_commit on: an fsync per group).
Each figure is the median over rounds. The vans run in this process: their CPU time, and
the largest growth of this process's resident memory over a round (keys, signed batches,
MQTT clients), divided by the number of vans, are the CPU and memory per client. On 2
cores the broker, the workers and the vans share the machine: the worker ratio shows what
a second process buys there, not on a bigger backend.

Last lines:

    ingest records/s 2 workers / 1 worker: R      (PostgreSQL; SQLite's figure above it)
    ingest records/s postgresql / sqlite: P       (2 workers each)
    cpu per van: C ms/s
    memory per van: M KiB

Before them, the figures of ``tcu fleet`` from ``benchmarks/fleet_vans.py`` (run in a child
process): ``fleet virtual vehicle-hours per wall second``, ``fleet vans per process at 0.1
Hz``, and CPU and memory per van against bare MQTT clients.

    python benchmarks/fleet.py [--vans 200] [--records 100] [--batch 5] [--window 4]
                               [--rounds 2] [--fleet-vans 1000,2000,5000,10000]
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from cloud_stub.broker import MosquittoProcess  # noqa: E402
from cloud_stub.keys import load_backend_key  # noqa: E402
from cloud_stub.loadgen import ServeProcess, SimVan, drive, register  # noqa: E402
from cloud_stub.pgserver import PostgresCluster  # noqa: E402
from cloud_stub.stores import open_store  # noqa: E402
from cloud_stub.testing import VehicleDouble  # noqa: E402
from cloud_stub.workers import raise_fd_limit  # noqa: E402

CONFIGS = (("sqlite", 1), ("sqlite", 2), ("postgresql", 1), ("postgresql", 2))


def rss_kib() -> int:
    with open("/proc/self/statm", encoding="ascii") as statm:
        return int(statm.read().split()[1]) * resource.getpagesize() // 1024


def cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def one_round(
    args: argparse.Namespace,
    broker: MosquittoProcess,
    pg: PostgresCluster,
    store: str,
    workers: int,
    doubles: list[VehicleDouble],
    data: Path,
) -> dict[str, float]:
    for old in data.glob("store.sqlite*"):
        old.unlink()  # one backend on one broker: same data directory, a fresh store
    public = load_backend_key(data).key.public_key()
    options = ["--data", str(data), "--workers", str(workers), "--broker", broker.url]
    target = str(data / "store.sqlite")
    if store == "postgresql":
        target = pg.database()
        options += ["--db", target]
    with ServeProcess(*options):
        rss = rss_kib()
        vans = [
            SimVan(
                d,
                [(broker.host, broker.port)],
                public,
                records=args.records,
                batch=args.batch,
                window=args.window,
                ack_timeout=60,
            )
            for d in doubles
        ]
        cpu, start = cpu_s(), time.perf_counter()
        reports = await drive(vans, ramp_per_s=2000, timeout=600)
        wall = time.perf_counter() - start
        cpu_used, rss_grown = cpu_s() - cpu, rss_kib() - rss
    incomplete = [r.vin for r in reports if not r.complete]
    with open_store(target) as check:
        stored = check.count_records()
    total = len(doubles) * args.records
    if incomplete or stored != total:
        raise SystemExit(f"{store}/{workers}: {len(incomplete)} vans incomplete, {stored}/{total}")
    latencies = sorted(x for r in reports for x in r.latencies)
    return {
        "rate": total / wall,
        "cpu_ms_per_s_per_van": 1000 * cpu_used / wall / len(doubles),
        "kib_per_van": rss_grown / len(doubles),
        "p99_ms": 1000 * latencies[int(0.99 * (len(latencies) - 1))],
    }


def fleet_figures(sizes: str) -> list[str]:
    """``tcu fleet`` figures from ``benchmarks/fleet_vans.py``, run here in a child process:
    vans per process at 0.1 Hz, virtual vehicle-hours per wall second, CPU and memory per van.
    """
    if not sizes:
        return []
    script = Path(__file__).with_name("fleet_vans.py")
    done = subprocess.run(
        [sys.executable, str(script), "--vans", sizes], capture_output=True, text=True
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("fleet ")]
    return lines or [f"fleet figures: fleet_vans.py failed: {done.stderr.strip()[-300:]}"]


async def main_async(args: argparse.Namespace) -> None:
    before, after = raise_fd_limit()
    if after != before:
        print(f"open files soft limit raised from {before} to {after}", file=sys.stderr)
    doubles = [VehicleDouble(f"WV1ZZZ7HZLH{n:06d}") for n in range(1, args.vans + 1)]
    results: dict[tuple[str, int], list[dict[str, float]]] = {c: [] for c in CONFIGS}
    with (
        tempfile.TemporaryDirectory(prefix="tcu-fleet-bench-") as folder,
        PostgresCluster() as pg,
        MosquittoProcess(Path(folder) / "mosquitto") as broker,
    ):
        data = Path(folder) / "cloud"
        register(data, doubles)
        for round_no in range(args.rounds):
            for store, workers in CONFIGS:
                result = await one_round(args, broker, pg, store, workers, doubles, data)
                results[(store, workers)].append(result)
                print(
                    f"  round {round_no + 1} {store:<10} {workers} worker(s):"
                    f" {result['rate']:,.0f} records/s, p99 ack {result['p99_ms']:.0f} ms",
                    file=sys.stderr,
                )

    def median(config: tuple[str, int], key: str) -> float:
        return statistics.median(r[key] for r in results[config])

    total = args.vans * args.records
    print(f"{args.vans} vans x {args.records} records = {total:,} records per round")
    print(f"{'store':<12}{'workers':>8}{'records/s':>12}{'p99 ack ms':>12}")
    for config in CONFIGS:
        print(
            f"{config[0]:<12}{config[1]:>8}{median(config, 'rate'):>12,.0f}"
            f"{median(config, 'p99_ms'):>12,.0f}"
        )
    for line in fleet_figures(args.fleet_vans):
        print(line)
    sqlite_ratio = median(("sqlite", 2), "rate") / median(("sqlite", 1), "rate")
    pg_ratio = median(("postgresql", 2), "rate") / median(("postgresql", 1), "rate")
    store_ratio = median(("postgresql", 2), "rate") / median(("sqlite", 2), "rate")
    cpu = statistics.median(r["cpu_ms_per_s_per_van"] for rs in results.values() for r in rs)
    # the first round pays for the memory; later ones reuse what the allocator kept
    memory = max(r["kib_per_van"] for rs in results.values() for r in rs)
    print(f"ingest records/s 2 workers / 1 worker (sqlite): {sqlite_ratio:.2f}")
    print(f"ingest records/s 2 workers / 1 worker: {pg_ratio:.2f}")
    print(f"ingest records/s postgresql / sqlite: {store_ratio:.2f}")
    print(f"cpu per van: {cpu:.2f} ms/s")
    print(f"memory per van: {memory:.0f} KiB")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--vans", type=int, default=200)
    parser.add_argument("--records", type=int, default=100)
    parser.add_argument("--batch", type=int, default=5)
    parser.add_argument("--window", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument(
        "--fleet-vans",
        default="1000,2000,5000,10000",
        help="fleet sizes for the tcu fleet lines (fleet_vans.py --vans); '' to skip them",
    )
    args = parser.parse_args()
    for name in ("vans", "records", "batch", "window", "rounds"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1")
    asyncio.run(main_async(args))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
