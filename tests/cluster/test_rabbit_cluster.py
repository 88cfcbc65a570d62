"""A three-node RabbitMQ cluster on loopback: vans over MQTT, workers over AMQP, a node killed.

The nodes come from Debian's ``rabbitmq-server`` (``cloud_stub.rabbitcluster``), join with
``rabbitmqctl join_cluster``, and each speaks MQTT (plugin) and AMQP on its own ports. Vans
(real signed batches, each its own MQTT client) are spread over the three nodes; two
``cloud-stub serve --workers 2 --broker amqp://...`` workers consume the one quorum queue.
Mid-run node 1 is killed (SIGKILL): the queue's leader and a third of the vans go with it.
The vans reconnect to the other nodes and resend what is not acknowledged; every
(VIN, epoch) must end with its last record acknowledged and each record stored once.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from cloud_stub.keys import load_backend_key
from cloud_stub.loadgen import ServeProcess, SimVan, drive, register
from cloud_stub.rabbitcluster import RabbitCluster, find_rabbitmq
from cloud_stub.stores import open_store
from cloud_stub.testing import VehicleDouble

pytestmark = [pytest.mark.rabbitmq, pytest.mark.slow]

VANS = 30
RECORDS = 60


@pytest.fixture(scope="module")
def rabbit_cluster() -> Iterator[RabbitCluster]:
    if find_rabbitmq() is None:
        message = "rabbitmq-server not found (apt-get install rabbitmq-server)"
        if os.environ.get("CI") == "true":
            pytest.fail(message + " and CI=true")
        pytest.skip(message)
    with RabbitCluster(3) as cluster:
        yield cluster


async def test_a_node_killed_mid_run_loses_nothing_and_duplicates_nothing(
    rabbit_cluster: RabbitCluster, tmp_path: Path
) -> None:
    data = tmp_path / "cloud"
    doubles = [VehicleDouble(f"WV1ZZZ7HZLH{n:06d}") for n in range(1, VANS + 1)]
    register(data, doubles)
    public = load_backend_key(data).key.public_key()
    brokers = ",".join(rabbit_cluster.amqp_urls)
    with ServeProcess("--data", str(data), "--workers", "2", "--broker", brokers) as server:
        fleet = [
            SimVan(
                d,
                rabbit_cluster.mqtt_addresses,
                public,
                records=RECORDS,
                batch=3,
                window=2,
                ack_timeout=5,
                interval=0.1,
            )
            for d in doubles
        ]
        run = asyncio.create_task(drive(fleet, ramp_per_s=100, timeout=150))
        async with asyncio.timeout(60):
            while sum(v.report.acked for v in fleet) < VANS * RECORDS // 4:
                await asyncio.sleep(0.05)
        killed_at = sum(v.report.acked for v in fleet)
        await asyncio.to_thread(rabbit_cluster.kill, 1)
        reports = await run
        output = server.stop()
    assert killed_at < VANS * RECORDS, "the node died after the run: nothing was tested"
    assert [r.vin for r in reports if not r.complete] == [], output[-3000:]
    assert sum(r.reconnects for r in reports) >= VANS // 3 - 1  # node 1's vans moved
    with open_store(data / "store.sqlite") as store:
        assert store.count_records() == VANS * RECORDS
        for progress in store.progress():
            assert (progress.stored, progress.acked) == (RECORDS, RECORDS), progress
            records = store.records(progress.vin, progress.epoch)
            assert [r.seq for r in records] == list(range(1, RECORDS + 1))
