"""The pieces the fault tests assemble: a van fed with signal changes, a witness, checks.

`Van` is the TCU as the online driver runs it (a `Host`, the durable outbox, the aiomqtt
uplink, acks and commands fed back into the core), driven by signal changes instead of a
CAN trace so a test can keep records flowing for as long as a fault lasts. `Witness` is an
extra MQTT subscriber on the telemetry topic that verifies and decodes every batch the
broker passes on: proof that something was (re)published, independent of the backend.
`assert_exactly_once` reads the backend's store.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import sqlite3
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from queue import Empty, Queue

import aiomqtt

from cloud_stub.service import Backend
from cloud_stub.store import Store
from tcu.can.setup import load_bus_setup
from tcu.events import SignalOverride
from tcu.runtime.assembly import Tcu
from tcu.runtime.backoff import Backoff
from tcu.runtime.host import Host
from tcu.runtime.mqtt import BrokerURL, TelemetryUplink
from tcu.runtime.replay import ReplayDriver
from tcu.services import VehicleConfig
from tcu.telemetry.codec.cose import VerifyKey, verify1
from tcu.telemetry.codec.schema import decode_batch
from tcu.telemetry.storage.identity import VehicleIdentity, load_identity, provision
from tcu.telemetry.storage.outbox import Outbox
from tcu.vehicle import catalogue as cat
from tests.helpers import until as wait_until

VIN = "WV1ZZZ7HZLH000001"
WAIT_S = 30.0
STEP_S = 2.0
BACKEND_BACKOFF = (0.05, 0.5)


async def until(what: str, predicate: Callable[[], bool], timeout: float = WAIT_S) -> None:
    """`tests.helpers.until` with the fault tests' longer bound."""
    await wait_until(what, predicate, timeout)


async def grows(what: str, count: Callable[[], int], by: int) -> int:
    """Wait until `count()` has grown by at least `by` from now; returns where it started."""
    start = count()
    await until(what, lambda: count() >= start + by)
    return start


def provision_van(keystore: Path, backend: Backend) -> VehicleIdentity:
    """A key pair for `VIN`, registered and marked active in the backend's registry."""
    provision(
        VIN,
        keystore,
        register=lambda vin, pem, kid: backend.registry.register(vin, pem, kid),
        backend_pem=lambda: backend.backend_key.public_key_pem,
    )
    backend.registry.activate(VIN)
    return load_identity(keystore)


def start_backend(url: str, data: Path) -> Backend:
    return Backend(url, data, backoff=BACKEND_BACKOFF)


class Van:
    """One boot of the TCU on a broker, with records made from signal changes."""

    def __init__(
        self,
        workdir: Path,
        identity: VehicleIdentity,
        broker: BrokerURL,
        *,
        resend_after: float = 30.0,
        seed: int = 1,
    ) -> None:
        self.identity = identity
        self.outbox = Outbox(workdir / "outbox.sqlite")
        self.driver = ReplayDriver()
        self.uplink = TelemetryUplink(
            identity.vin,
            broker,
            backoff=Backoff(0.05, 0.5, random.Random(seed)),
            resend_after=resend_after,
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
        self.tcu: Tcu = self.host.tcu
        self.steps = 0
        self._task: asyncio.Task[None] | None = None
        self._producer: asyncio.Task[None] | None = None

    @property
    def epoch(self) -> int:
        return self.tcu.epoch

    @property
    def produced(self) -> int:
        """Records produced in this boot: the policy's last sequence number."""
        assert self.tcu.telemetry is not None
        return self.tcu.telemetry.seq

    @property
    def active(self) -> bool:
        return self.tcu.telemetry is not None and self.tcu.telemetry.active

    async def start(self) -> None:
        self._task = asyncio.create_task(self.uplink.run(), name="van-uplink")
        if not await self.uplink.wait_connected(WAIT_S):
            raise AssertionError(f"the van did not connect to {self.uplink.broker.url}")

    def step(self) -> None:
        """Two more seconds of vehicle time: the driver's door moves, the battery charges."""
        self.steps += 1
        t = self.steps * STEP_S
        self.driver.schedule(t, SignalOverride(path=cat.DOOR_FRONT_LEFT, value=self.steps % 2 == 1))
        self.driver.schedule(t, SignalOverride(path=cat.SOC, value=float(20 + self.steps % 80)))
        self.driver.advance(t)

    async def produce(self, until_records: int) -> None:
        """Produce, a step at a time, until this boot has made `until_records`."""
        while self.produced < until_records:
            self.step()
            await asyncio.sleep(0.002)

    def keep_producing(self) -> None:
        """Produce in the background, a step every few milliseconds, until `stop_producing`."""

        async def loop() -> None:
            while True:
                self.step()
                await asyncio.sleep(0.002)

        self._producer = asyncio.create_task(loop(), name="van-producer")

    async def stop_producing(self) -> int:
        """Stop the background producer; returns the records made in this boot."""
        if self._producer is not None:
            self._producer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._producer
            self._producer = None
        return self.produced

    async def close(self) -> None:
        await self.stop_producing()
        await self.uplink.close()
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait_for(self._task, WAIT_S)
        self.outbox.close()


@dataclass
class Witness:
    """Every telemetry record the broker passed on, by (epoch, seq), as it arrived."""

    key: VerifyKey
    seen: list[tuple[int, int]] = field(default_factory=list)

    def count(self, epoch: int) -> Counter[int]:
        return Counter(seq for e, seq in self.seen if e == epoch)

    def mark(self) -> int:
        return len(self.seen)

    def since(self, mark: int, epoch: int) -> set[int]:
        return {seq for e, seq in self.seen[mark:] if e == epoch}


@contextlib.asynccontextmanager
async def witness(url: str, key: VerifyKey) -> AsyncIterator[Witness]:
    """Subscribe (clean session, QoS 1) to the van's telemetry for as long as the block runs."""
    broker = BrokerURL.parse(url)
    seen = Witness(key=key)

    async def listen(client: aiomqtt.Client) -> None:
        async for message in client.messages:
            assert isinstance(message.payload, bytes)
            batch = decode_batch(verify1(message.payload, key).payload)
            seen.seen.extend((batch.epoch, r.seq) for r in batch.records)

    async with aiomqtt.Client(
        broker.host, broker.port, identifier=f"witness-{os.getpid()}", clean_session=True
    ) as client:
        await client.subscribe(f"vehicles/{VIN}/telemetry", qos=1)
        task = asyncio.create_task(listen(client))
        try:
            yield seen
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


def assert_exactly_once(store: Store, produced: dict[int, int]) -> dict[int, int]:
    """Every seq 1..N of every epoch stored once, nothing else; returns duplicates by epoch."""
    progress = {p.epoch: p for p in store.progress() if p.vin == VIN}
    assert sorted(progress) == sorted(produced), (progress, produced)
    for epoch, n in produced.items():
        seqs = [r.seq for r in store.records(VIN, epoch)]
        assert seqs == list(range(1, n + 1)), f"epoch {epoch}: stored {seqs} of 1..{n}"
        assert (progress[epoch].stored, progress[epoch].acked) == (n, n)
        assert progress[epoch].conflicts == 0
    assert store.count_records(VIN) == sum(produced.values())
    return {epoch: p.duplicates for epoch, p in progress.items()}


def outbox_seqs(path: Path) -> dict[int, list[int]]:
    """What an outbox file left by a killed process holds, by epoch (its WAL recovered)."""
    db = sqlite3.connect(path)
    try:
        rows = db.execute("SELECT epoch, seq FROM records ORDER BY epoch, seq").fetchall()
    finally:
        db.close()
    held: dict[int, list[int]] = {}
    for epoch, seq in rows:
        held.setdefault(epoch, []).append(seq)
    return held


class Child:
    """A command-line program run as a child process, its output lines collected."""

    def __init__(self, *args: str, log: Path) -> None:
        self.args = args
        self.log = log
        self.lines: Queue[str] = Queue()
        self.output: list[str] = []
        with log.open("wb") as stderr:
            self.process = subprocess.Popen(
                [sys.executable, "-m", *args],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=stderr,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for raw in self.process.stdout:
            self.lines.put(raw.decode("utf-8", errors="replace"))

    async def line(self, startswith: str, timeout: float = WAIT_S) -> str:
        """The next line of output that starts with `startswith`."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            try:
                text = self.lines.get_nowait()
            except Empty:
                if self.process.poll() is not None and self.lines.empty():
                    self._reader.join(WAIT_S)
                    if self.lines.empty():
                        raise AssertionError(f"{self.args} exited: {self.stderr()}") from None
                    continue
                if loop.time() > deadline:
                    raise AssertionError(f"{self.args}: no line {startswith!r}") from None
                await asyncio.sleep(0.01)
                continue
            self.output.append(text)
            if text.startswith(startswith):
                return text

    async def wait(self, timeout: float = WAIT_S) -> int:
        """Wait for the exit; the rest of the output lands in `output`."""
        code = await asyncio.to_thread(self.process.wait, timeout)
        self._reader.join(WAIT_S)
        while not self.lines.empty():
            self.output.append(self.lines.get_nowait())
        return code

    def signal(self, how: signal.Signals) -> None:
        if self.process.poll() is None:
            self.process.send_signal(how)

    def stderr(self) -> str:
        return self.log.read_text("utf-8", errors="replace")[-2000:]

    def kill(self) -> None:
        """SIGKILL (if still running) and reap."""
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        self._reader.join(WAIT_S)
        if self.process.stdout is not None:
            self.process.stdout.close()


@contextlib.contextmanager
def children() -> Iterator[list[Child]]:
    """Child processes started in the block are killed and reaped when it ends."""
    started: list[Child] = []
    try:
        yield started
    finally:
        for child in started:
            child.kill()
