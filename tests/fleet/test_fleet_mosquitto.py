"""A fleet in real time against Mosquitto: 200 MQTT clients, a reconnect storm, 0 lost."""

from __future__ import annotations

from pathlib import Path

import pytest

from cloud_stub.broker import MosquittoProcess
from tcu.compose.fleet import FleetOptions, LiveFleet
from tcu.runtime.mqtt import BrokerURL

pytestmark = pytest.mark.mosquitto


@pytest.mark.parametrize("backend", ["inline", "process"])
async def test_two_hundred_vans_through_a_storm_lose_nothing(
    mosquitto_broker: MosquittoProcess, tmp_path: Path, backend: str
) -> None:
    opts = FleetOptions(
        vans=200,
        duration_s=6.0,
        seed=2,
        broker=BrokerURL.parse(mosquitto_broker.url),
        ramp=400.0,
        storm_at=(3.5,),
        snapshot_period_s=1.0,
        workdir=tmp_path,
        drain_timeout_s=60.0,
        backend=backend,
    )
    fleet = LiveFleet(opts)
    report = await fleet.run()
    assert report.vans_activated == 200
    assert report.vans_connected == 200
    assert report.storms == 1 and report.reconnects >= 200
    assert report.records_produced > 200
    assert report.drained and report.outbox_depth == 0
    assert report.lost == 0
    assert report.records_stored == report.records_produced
    assert report.latency_samples == report.records_produced
    assert report.refused == {}
    assert report.latency_measured_at == ("backend" if backend == "inline" else "ack at the van")
    assert report.ok
    clients = {u.identifier for u in fleet.uplinks}
    assert len(clients) == 200 and all(c.startswith("tcu-XECFLEET") for c in clients)
