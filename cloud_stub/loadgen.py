"""Simulated vans that publish real signed batches and wait for the backend's signed acks.

Theory of operation: a `SimVan` is a `VehicleDouble` (its own Ed25519 key, the real record
schema and COSE_Sign1) with its own MQTT client (client id ``van-{VIN}``). It sends
``records`` records of one epoch in batches of ``batch`` records, at most ``window`` batches
awaiting their ack, each at QoS 1. The ack it trusts is the signed one on
``{prefix}/{VIN}/ack``, verified with the backend's public key: it names the highest
contiguous sequence number stored. When no ack moves for ``ack_timeout`` seconds it resends
every batch above the ack; when the connection drops it connects again, to the next broker
address in its list (a cluster's other nodes), and resends the same. So a van ends with
every record acknowledged, whatever was lost in between; the store must hold each once.

For tests and benchmarks: ``drive`` runs many vans at once, with a start ramp, and returns a
`VanReport` per van (acked, batches sent and resent, reconnects, record-to-ack latencies);
`ServeProcess` runs ``cloud-stub serve`` as a child process and waits for it to serve;
`register` puts the vans in a data directory's registry.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Self

import aiomqtt

from cloud_stub.registry import Registry
from cloud_stub.service import REGISTRY_FILE
from cloud_stub.testing import VehicleDouble
from tcu.lifecycle import Running
from tcu.telemetry.codec.cose import VerifyKey

__all__ = ["ServeProcess", "SimVan", "VanReport", "drive", "register"]


@dataclass(slots=True, kw_only=True)
class VanReport:
    vin: str
    records: int
    acked: int = 0
    sent: int = 0
    resent: int = 0
    reconnects: int = 0
    last_error: str = ""
    latencies: list[float] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        return self.acked == self.records


class SimVan:
    """One van: signed batches out, signed acks in, resends and reconnects on its own."""

    def __init__(
        self,
        double: VehicleDouble,
        addresses: Sequence[tuple[str, int]],
        backend_public: VerifyKey,
        *,
        epoch: int = 1,
        records: int = 20,
        batch: int = 5,
        window: int = 4,
        ack_timeout: float = 5.0,
        interval: float = 0.0,
    ) -> None:
        if not addresses or records < 1 or batch < 1 or window < 1:
            raise ValueError("a van needs an address, records, a batch size and a window")
        self.double = double
        self.addresses = list(addresses)
        self.backend_public = backend_public
        self.epoch = epoch
        self.batch = batch
        self.window = window
        self.ack_timeout = ack_timeout
        self.interval = interval
        count = -(-records // batch)
        self._payloads = [
            double.batch(epoch, range(k * batch + 1, min((k + 1) * batch, records) + 1))
            for k in range(count)
        ]
        self._sent_at: list[float | None] = [None] * count
        self._made = 0
        self.report = VanReport(vin=double.vin, records=records)

    def _acked_batches(self) -> int:
        return self.report.acked // self.batch if not self.report.complete else len(self._payloads)

    async def run(self, *, start_index: int = 0) -> VanReport:
        attempt = start_index
        while not self.report.complete:
            host, port = self.addresses[attempt % len(self.addresses)]
            try:
                async with aiomqtt.Client(
                    host,
                    port,
                    identifier=self._client_id(),
                    clean_session=True,
                    timeout=10,
                ) as client:
                    await client.subscribe(self.double.topic("ack"), qos=1)
                    await self._talk(client)
            except aiomqtt.MqttError as exc:
                self.report.last_error = f"{host}:{port}: {exc}"
                self.report.reconnects += 1
                attempt += 1
                await asyncio.sleep(0.2)
        return self.report

    def _client_id(self) -> str:
        """``van-{VIN}``; after a lost connection ``van-{VIN}-{n}``: a clean session needs no
        old id, and RabbitMQ 3.10 holds an id whose connection died with its node until the
        node is back (docs/backend.md)."""
        base = f"van-{self.double.vin}"
        return base if not self.report.reconnects else f"{base}-{self.report.reconnects}"

    async def _talk(self, client: aiomqtt.Client) -> None:
        for k in range(self._acked_batches(), self._made):
            await self._publish(client, k)  # resend what the last connection left owed
        messages = client.messages
        while not self.report.complete:
            while self._made < len(self._payloads) and (
                self._made - self._acked_batches() < self.window
            ):
                if self.interval and self._made:
                    await asyncio.sleep(self.interval)
                await self._publish(client, self._made)
                self._made += 1
            try:
                async with asyncio.timeout(self.ack_timeout):
                    message = await anext(messages)
            except TimeoutError:
                for k in range(self._acked_batches(), self._made):
                    await self._publish(client, k)
                continue
            if not isinstance(message.payload, bytes):
                continue
            ack = VehicleDouble.read_ack(message.payload, self.backend_public)
            if ack.epoch != self.epoch or ack.seq <= self.report.acked:
                continue
            before = self._acked_batches()
            self.report.acked = min(ack.seq, self.report.records)
            now = time.monotonic()
            for k in range(before, self._acked_batches()):
                sent_at = self._sent_at[k]
                if sent_at is not None:
                    self.report.latencies.append(now - sent_at)

    async def _publish(self, client: aiomqtt.Client, k: int) -> None:
        if self._sent_at[k] is None:
            self._sent_at[k] = time.monotonic()
            self.report.sent += 1
        else:
            self.report.resent += 1
        await client.publish(self.double.telemetry_topic, self._payloads[k], qos=1)


async def drive(
    vans: Sequence[SimVan], *, ramp_per_s: float = 500.0, timeout: float = 120.0
) -> list[VanReport]:
    """Run every van (starting ``ramp_per_s`` a second, spread over the addresses) to the end."""

    async def start(index: int, van: SimVan) -> VanReport:
        await asyncio.sleep(index / ramp_per_s)
        return await van.run(start_index=index)

    tasks = [asyncio.create_task(start(i, van)) for i, van in enumerate(vans)]
    try:
        async with asyncio.timeout(timeout):
            await asyncio.gather(*tasks)
    except TimeoutError:
        pass
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
    return [van.report for van in vans]


def register(data: Path, vans: list[VehicleDouble]) -> None:
    with Registry(data / REGISTRY_FILE) as registry:
        for van in vans:
            van.register(registry)


class ServeProcess(Running):
    """Runs ``cloud-stub serve ARGS`` and waits for its ``serving`` line (bounded)."""

    def __init__(self, *args: str, timeout: float = 90.0) -> None:
        self.args = args
        self.timeout = timeout
        self.lines: list[str] = []
        self._process: subprocess.Popen[str] | None = None
        self._ready = threading.Event()

    def __enter__(self) -> Self:
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self._process = subprocess.Popen(
            [sys.executable, "-m", "cloud_stub.cli", "serve", *self.args],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        if not self._ready.wait(self.timeout) or self._process.poll() is not None:
            self.stop()
            raise AssertionError("serve did not start:\n" + "".join(self.lines))
        return self

    def _read(self) -> None:
        assert self._process is not None and self._process.stdout is not None
        for line in self._process.stdout:
            self.lines.append(line)
            if "serving" in line:
                self._ready.set()
        self._ready.set()

    def stop(self) -> str:
        """SIGTERM, wait (bounded); returns everything it printed."""
        process = self._process
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if process is not None:
            self._reader.join(10)
            if process.stdout is not None:
                process.stdout.close()
        return "".join(self.lines)
