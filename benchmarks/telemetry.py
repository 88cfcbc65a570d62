"""Telemetry, measured side by side in one run: bytes on the air, pipeline rate, latency.

1. Bytes on the air per hour of vehicle time. Each reference trace (the three whole
   storylines: depot_night, city_delivery, cross_border) goes through the virtual world
   (`replay_file`: the TCU, its SIM link model, the backend): what the link model billed,
   up and down (signed batches, status replies, acks, 40 bytes of MQTT per message).
   Beside it, on the same traces, a naive baseline: the trace decoded by the same core and
   every catalogue signal serialised once a vehicle second as one JSON object (VSS paths,
   compact separators, plus the time), unsigned, uplink only, 40 bytes of MQTT each.
2. Signed records per second through the pipeline, in memory: the policy turns signal
   changes into records, the outbox commits them, the uplink queue batches and signs them,
   the backend's ingest verifies and stores them and signs an ack, which the queue verifies
   and applies. One batch per commit, as the live uplink sends when it keeps up.
3. End-to-end latency over loopback Mosquitto (started here), from the moment a record is
   made to the moment the backend has committed it to its store. The TCU (core, outbox,
   aiomqtt uplink) runs in this process, the backend (`Backend`) in a child process, as it
   would on its own machine. Beside it, in the same run on the same broker, the raw aiomqtt
   QoS 1 publish-to-receive latency of a payload of the same size (the median signed
   batch), publisher here, subscriber in a child process. Both at one message every 5 ms;
   rounds alternate raw, as shipped, and frozen; p50 and p99 of the pooled samples (the
   first 20 of each round left out). Times are time.monotonic(), one clock for every
   process. "As shipped" is the outbox with ``synchronous=FULL`` (an fsync per commit) and
   CPython's collector as it comes: its full collections walk every object of the process,
   some 40,000 after start-up, and stop both ends for tens of milliseconds now and then.
   "Frozen" is the same after ``gc.freeze()`` once both ends have started, which moves the
   start-up objects out of the collector's way; it is printed as an indication only.

The last two lines:

    bytes ratio: R              (ours / baseline per hour; target <= 0.05)
    latency ratio p99: R        (end-to-end p99 / raw aiomqtt p99; target <= 2)

The last line is the as-shipped ratio; the frozen one is printed above it.

    python benchmarks/telemetry.py [--samples 400] [--rounds 3] [--steps 3000]
                                   [--traces depot_night.blf,city_delivery.blf]

Latency on a loaded machine is mostly other processes' doing: run it on a quiet one.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiomqtt

from cloud_stub.broker import MosquittoProcess
from cloud_stub.ingest import Ingest, Publish
from cloud_stub.keys import load_backend_key
from cloud_stub.registry import Registry
from cloud_stub.service import Backend
from cloud_stub.store import BatchResult, Store
from tcu.can.setup import BusSetup, load_bus_setup
from tcu.can.sources import open_trace
from tcu.compose.online import reference_traces
from tcu.compose.replay import ReplayOptions, replay_file
from tcu.events import SignalOverride
from tcu.runtime.backoff import Backoff
from tcu.runtime.host import Host, NoTransport
from tcu.runtime.memory import MQTT_OVERHEAD
from tcu.runtime.mqtt import BrokerURL, TelemetryUplink
from tcu.runtime.replay import ReplayDriver
from tcu.services import VehicleConfig
from tcu.telemetry.codec.schema import BatchMessage
from tcu.telemetry.storage.identity import VehicleIdentity, load_identity, provision
from tcu.telemetry.storage.outbox import Outbox
from tcu.telemetry.storage.sqlite import Synchronous
from tcu.vehicle import catalogue as cat
from tcu.vehicle.catalogue import CATALOGUE

VIN = "WV1ZZZ7HZLH000001"
STEP_S = 2.0
PACE_S = 0.005
WARMUP = 20
NO_DELAY = (socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # as the TCU's and backend's clients


# --- 1. bytes on the air -------------------------------------------------------------------


@dataclass(slots=True)
class Bytes:
    trace: str
    hours: float
    records: int
    ours_up: int
    ours_down: int
    naive_messages: int
    naive_bytes: int

    @property
    def ours(self) -> int:
        return self.ours_up + self.ours_down

    @property
    def naive(self) -> int:
        return self.naive_bytes + self.naive_messages * MQTT_OVERHEAD


def billed(link: dict[str, Any]) -> tuple[int, int]:
    up = down = 0
    for side in link["bytes_billed"].values():
        up += int(side["up"])
        down += int(side["down"])
    return up, down


def naive_json(trace: Path, setup: BusSetup) -> tuple[int, int, float]:
    """(messages, JSON bytes, vehicle seconds): every catalogue signal once a second."""
    driver = ReplayDriver(open_trace(trace))
    host = Host(setup, VehicleConfig(vin=VIN), clock=driver)
    driver.drive(host)
    paths = tuple(CATALOGUE)
    state = host.core.state
    total = [0, 0]

    def sample(t: float) -> None:
        values: dict[str, Any] = {"t": round(t * 1000)}
        for path in paths:
            values[path] = state.get(path, t)
        total[0] += 1
        total[1] += len(json.dumps(values, separators=(",", ":")).encode())
        driver.schedule(t + 1.0, sample)

    driver.schedule(0.0, sample)
    stats = driver.run()
    return total[0], total[1], stats.vehicle_time_s


def measure_bytes(traces: tuple[Path, ...]) -> list[Bytes]:
    setup = load_bus_setup()
    rows = []
    for trace in traces:
        report = replay_file(ReplayOptions(trace=trace))
        telemetry = report.extra["telemetry"]
        if telemetry["lost"] or telemetry["outbox_depth"]:
            raise SystemExit(f"{trace.name}: the replay did not deliver everything: {telemetry}")
        up, down = billed(report.extra["link"])
        messages, nbytes, seconds = naive_json(trace, setup)
        rows.append(
            Bytes(
                trace=trace.name,
                hours=seconds / 3600.0,
                records=int(telemetry["records_produced"]),
                ours_up=up,
                ours_down=down,
                naive_messages=messages,
                naive_bytes=nbytes,
            )
        )
    return rows


# --- 2. the pipeline, in memory ------------------------------------------------------------


@dataclass(slots=True)
class Stages:
    policy: float = 0.0
    commit: float = 0.0
    batch_sign: float = 0.0
    verify_store: float = 0.0
    ack: float = 0.0

    @property
    def total(self) -> float:
        return self.policy + self.commit + self.batch_sign + self.verify_store + self.ack


def identity_for(
    work: Path, registry: Registry, backend_pem: bytes, vin: str = VIN
) -> VehicleIdentity:
    provision(
        vin,
        work / "keystore",
        register=lambda vin, pem, kid: registry.register(vin, pem, kid),
        backend_pem=lambda: backend_pem,
    )
    registry.activate(vin)
    return load_identity(work / "keystore")


def change_signals(driver: ReplayDriver, step: int) -> float:
    """Two more seconds of vehicle time: the driver's door moves, the battery charges."""
    t = step * STEP_S
    driver.schedule(t, SignalOverride(path=cat.DOOR_FRONT_LEFT, value=step % 2 == 1))
    driver.schedule(t, SignalOverride(path=cat.SOC, value=float(20 + step % 80)))
    return t


def pipeline(work: Path, n_steps: int, synchronous: Synchronous) -> tuple[int, Stages]:
    data = work / "cloud"
    data.mkdir(parents=True)
    registry = Registry(data / "registry.sqlite")
    store = Store(data / "store.sqlite")
    key = load_backend_key(data)
    ingest = Ingest(registry, store, backend_key=key)
    identity = identity_for(work, registry, key.public_key_pem)
    outbox = Outbox(work / "outbox.sqlite", synchronous=synchronous)
    outbox.save_downlink(0, True)
    driver = ReplayDriver()
    host = Host(
        load_bus_setup(),
        VehicleConfig(vin=VIN),
        clock=driver,
        transport=NoTransport(),
        outbox=outbox,
        identity=identity,
    )
    driver.drive(host)
    tcu = host.tcu
    queue = host.queue
    assert queue is not None
    topic = f"vehicles/{VIN}/telemetry"
    stages = Stages()
    clock = time.perf_counter
    committing = [0.0]
    append = outbox.append

    def timed_append(records: Any) -> dict[str, int]:
        t = clock()
        try:
            return append(records)
        finally:
            committing[0] += clock() - t

    outbox.append = timed_append  # type: ignore[method-assign]
    for step in range(1, n_steps + 1):
        t = change_signals(driver, step)
        committing[0] = 0.0
        t0 = clock()
        driver.advance(t)  # the policy, and the host committing what it made
        t2 = clock()
        t1 = t2 - committing[0]
        batch = queue.next_batch()
        t3 = clock()
        if batch is None:
            continue
        replies = ingest.receive(topic, batch[1])
        t4 = clock()
        for reply in replies:
            if isinstance(reply, Publish):
                host.receive_ack(reply.payload, driver.now)
        t5 = clock()
        stages.policy += t1 - t0
        stages.commit += t2 - t1
        stages.batch_sign += t3 - t2
        stages.verify_store += t4 - t3
        stages.ack += t5 - t4
    stored = store.count_records(VIN)
    assert tcu.telemetry is not None and stored == tcu.telemetry.seq and outbox.depth() == 0
    outbox.close()
    store.close()
    registry.close()
    return stored, stages


# --- 3. latency over Mosquitto -------------------------------------------------------------
#
# The receiving end runs in a child process (this file with --receive), as the backend does
# on another machine: the raw subscriber, or `Backend` with its store's commits timed. Both
# sides take time.monotonic(), CLOCK_MONOTONIC, one clock for every process on the host.


@dataclass(slots=True)
class Samples:
    raw: list[float] = field(default_factory=list)
    full: list[float] = field(default_factory=list)
    frozen: list[float] = field(default_factory=list)
    payload_bytes: list[int] = field(default_factory=list)
    rounds: int = 0


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


class TimedVan:
    """A TCU on the broker; notes when each record is made."""

    def __init__(self, work: Path, identity: VehicleIdentity, url: str, sync: Synchronous) -> None:
        work.mkdir(parents=True)
        self.outbox = Outbox(work / "outbox.sqlite", synchronous=sync)
        self.outbox.save_downlink(0, True)
        self.made: dict[tuple[int, int], float] = {}
        self.sizes: list[int] = []
        self.driver = ReplayDriver()
        self.uplink = TelemetryUplink(
            identity.vin, BrokerURL.parse(url), backoff=Backoff(0.05, 0.5)
        )
        self.host = Host(
            load_bus_setup(),
            VehicleConfig(vin=identity.vin),
            clock=self.driver,
            transport=self.uplink,
            outbox=self.outbox,
            identity=identity,
        )
        self.driver.drive(self.host)
        self.tcu = self.host.tcu
        queue = self.host.queue
        assert queue is not None
        queue_sent = queue.sent

        def sent(message: BatchMessage, nbytes: int) -> None:
            self.sizes.append(nbytes)
            queue_sent(message, nbytes)

        queue.sent = sent  # type: ignore[method-assign]
        self.step = 0
        self.task: asyncio.Task[None] | None = None

    def produce(self) -> None:
        self.step += 1
        t = change_signals(self.driver, self.step)
        assert self.tcu.telemetry is not None
        first = self.tcu.telemetry.seq + 1
        made_at = time.monotonic()
        self.driver.advance(t)
        for seq in range(first, self.tcu.telemetry.seq + 1):
            self.made[(self.tcu.epoch, seq)] = made_at

    async def start(self) -> None:
        self.task = asyncio.create_task(self.uplink.run())
        if not await self.uplink.wait_connected(15.0):
            raise SystemExit("the TCU did not connect to Mosquitto")

    async def close(self) -> None:
        await self.uplink.close()
        if self.task is not None:
            await asyncio.wait_for(self.task, 15.0)
        self.outbox.close()


async def until(condition: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        await asyncio.sleep(0.005)


class Receiver:
    """This file run with --receive, in a child process; its timings come back as JSON."""

    def __init__(self, *args: str, out: Path) -> None:
        self.out = out
        self.process = subprocess.Popen(
            [sys.executable, __file__, "--receive", *args, "--out", str(out)],
            stdout=subprocess.PIPE,
            text=True,
        )

    async def ready(self) -> None:
        assert self.process.stdout is not None
        line = await asyncio.wait_for(asyncio.to_thread(self.process.stdout.readline), 60.0)
        if line.strip() != "ready":
            self.process.kill()
            raise SystemExit(f"receiver did not start: {line!r}")

    async def results(self, *, stop: bool) -> dict[str, float]:
        if stop:
            self.process.send_signal(signal.SIGTERM)
        code = await asyncio.to_thread(self.process.wait, 60.0)
        if code != 0:
            raise SystemExit(f"receiver exited with {code}")
        if self.process.stdout is not None:
            self.process.stdout.close()
        timings: dict[str, float] = json.loads(self.out.read_text())
        return timings


async def raw_round(url: str, work: Path, payload_size: int, n: int) -> list[float]:
    work.mkdir(parents=True)
    receiver = Receiver("raw", "--broker", url, "--expect", str(n), out=work / "raw.json")
    await receiver.ready()
    broker = BrokerURL.parse(url)
    sent: list[float] = []
    async with aiomqtt.Client(
        broker.host, broker.port, identifier="bench-pub", socket_options=(NO_DELAY,)
    ) as pub:
        for i in range(n):
            body = i.to_bytes(4, "big") + bytes(max(0, payload_size - 4))
            sent.append(time.monotonic())
            await pub.publish("bench/raw", body, qos=1)
            await asyncio.sleep(PACE_S)
    got = await receiver.results(stop=False)
    return [got[str(i)] - sent[i] for i in range(WARMUP, n)]


async def pipeline_round(
    url: str, work: Path, n: int, samples: Samples, *, freeze: bool = False
) -> list[float]:
    samples.rounds += 1
    vin = f"{VIN[:-6]}{samples.rounds:06d}"  # a VIN per round: no session leftovers
    data = work / "cloud"
    data.mkdir(parents=True)
    with Registry(data / "registry.sqlite") as registry:
        identity = identity_for(work, registry, load_backend_key(data).public_key_pem, vin)
    child = ("backend", "--broker", url, "--data", str(data), *(("--freeze",) if freeze else ()))
    receiver = Receiver(*child, out=work / "store.json")
    await receiver.ready()
    van = TimedVan(work / "tcu", identity, url, "FULL")
    await van.start()
    if freeze:
        gc.freeze()
    try:
        for _ in range(n):
            van.produce()
            await asyncio.sleep(PACE_S)
        await until(lambda: van.outbox.depth() == 0, "every record acknowledged")
    finally:
        gc.unfreeze()
        await van.close()
    stored = await receiver.results(stop=True)
    samples.payload_bytes.extend(van.sizes)
    keys = sorted(van.made)[WARMUP:]
    return [stored[f"{epoch}:{seq}"] - van.made[(epoch, seq)] for epoch, seq in keys]


async def measure_latency(work: Path, n: int, rounds: int) -> Samples:
    samples = Samples()
    with MosquittoProcess(work / "mosquitto") as broker:
        await pipeline_round(broker.url, work / "probe", WARMUP + 20, samples)
        size = round(statistics.median(samples.payload_bytes))
        for r in range(rounds):
            raw = await raw_round(broker.url, work / f"raw-{r}", size, n)
            full = await pipeline_round(broker.url, work / f"full-{r}", n, samples)
            frozen = await pipeline_round(broker.url, work / f"frozen-{r}", n, samples, freeze=True)
            print(
                f"  round {r + 1}/{rounds}: p99 ms raw {pct(raw, 99) * 1e3:.2f},"
                f" as shipped {pct(full, 99) * 1e3:.2f}, frozen {pct(frozen, 99) * 1e3:.2f}",
                file=sys.stderr,
            )
            samples.raw += raw
            samples.full += full
            samples.frozen += frozen
    return samples


async def receive(args: argparse.Namespace) -> None:
    """The child: take messages until told to stop, then write when each arrived."""
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    times: dict[str, float] = {}
    if args.receive == "backend":
        async with Backend(args.broker, args.data, backoff=(0.05, 0.5)) as backend:
            add_batches = backend.store.add_batches

            def timed(batches: Sequence[BatchMessage]) -> list[BatchResult]:
                results = add_batches(batches)  # one group, one commit
                now = time.monotonic()
                for batch in batches:
                    for record in batch.records:
                        times.setdefault(f"{batch.epoch}:{record.seq}", now)
                return results

            backend.store.add_batches = timed  # type: ignore[method-assign]
            if args.freeze:
                gc.freeze()
            print("ready", flush=True)
            await stop.wait()
    else:
        broker = BrokerURL.parse(args.broker)
        async with aiomqtt.Client(
            broker.host, broker.port, identifier="bench-sub", socket_options=(NO_DELAY,)
        ) as sub:
            await sub.subscribe("bench/raw", qos=1)
            print("ready", flush=True)
            async for message in sub.messages:
                now = time.monotonic()
                assert isinstance(message.payload, bytes)
                times[str(int.from_bytes(message.payload[:4], "big"))] = now
                if len(times) == args.expect:
                    break
    Path(args.out).write_text(json.dumps(times))


# --- main ----------------------------------------------------------------------------------


def main() -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--samples", type=int, default=400, help="records per latency round")
    ap.add_argument("--rounds", type=int, default=3, help="latency rounds (raw, shipped, frozen)")
    ap.add_argument("--steps", type=int, default=3000, help="signal steps for the pipeline")
    ap.add_argument("--traces", default="", help="comma-separated names in can_traces/")
    ap.add_argument("--receive", choices=("raw", "backend"), help=argparse.SUPPRESS)
    ap.add_argument("--broker", help=argparse.SUPPRESS)
    ap.add_argument("--data", help=argparse.SUPPRESS)
    ap.add_argument("--expect", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    ap.add_argument("--freeze", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.receive:
        asyncio.run(receive(args))
        return 0
    names = tuple(n for n in args.traces.split(",") if n)
    traces = reference_traces(names)

    print("1. bytes on the air per hour of vehicle time (ours: signed, both directions)")
    rows = measure_bytes(traces)
    print(
        f"{'trace':<26}{'hours':>7}{'records':>9}{'ours B/h':>12}{'naive JSON B/h':>16}{'ratio':>8}"
    )
    for row in rows:
        print(
            f"{row.trace:<26}{row.hours:>7.2f}{row.records:>9}{row.ours / row.hours:>12,.0f}"
            f"{row.naive / row.hours:>16,.0f}{row.ours / row.naive:>8.4f}"
        )
    hours = sum(r.hours for r in rows)
    ours = sum(r.ours for r in rows)
    naive = sum(r.naive for r in rows)
    up = sum(r.ours_up for r in rows)
    print(
        f"{'all':<26}{hours:>7.2f}{sum(r.records for r in rows):>9}{ours / hours:>12,.0f}"
        f"{naive / hours:>16,.0f}{ours / naive:>8.4f}"
    )
    print(f"ours uplink only: {up / hours:,.0f} B/h (ratio {up / naive:.4f})")

    print()
    print("2. signed records per second through the pipeline, in memory")
    with tempfile.TemporaryDirectory(prefix="tcu-bench-") as tmp:
        for sync in ("FULL", "NORMAL"):
            t = time.perf_counter()
            records, stages = pipeline(Path(tmp) / sync, args.steps, sync)
            wall = time.perf_counter() - t
            per = {
                name: getattr(stages, name) / records * 1e6
                for name in ("policy", "commit", "batch_sign", "verify_store", "ack")
            }
            detail = ", ".join(f"{k} {v:.0f}" for k, v in per.items())
            print(
                f"outbox {sync:<6}: {records / stages.total:,.0f} records/s"
                f" ({records} records, {wall:.1f} s with set-up; us/record: {detail})"
            )

        print()
        print("3. latency, record made -> stored by the backend, loopback Mosquitto")
        samples = asyncio.run(measure_latency(Path(tmp), args.samples, args.rounds))
    size = round(statistics.median(samples.payload_bytes))
    print(f"{'':<34}{'p50 ms':>9}{'p99 ms':>9}{'samples':>9}")
    for name, values in (
        (f"raw aiomqtt QoS 1, {size} B", samples.raw),
        ("end to end, as shipped", samples.full),
        ("end to end, gc.freeze() at start", samples.frozen),
    ):
        print(
            f"{name:<34}{pct(values, 50) * 1e3:>9.2f}{pct(values, 99) * 1e3:>9.2f}{len(values):>9}"
        )
    frozen_ratio = pct(samples.frozen, 99) / pct(samples.raw, 99)
    print(f"latency ratio p99 (gc.freeze() at start): {frozen_ratio:.2f}")
    print(f"bytes ratio: {ours / naive:.4f}")
    print(f"latency ratio p99: {pct(samples.full, 99) / pct(samples.raw, 99):.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
