"""Mosquitto killed with SIGKILL mid-stream and started again on its port and persistence file.

What the broker had taken since its last autosave is gone (batches, acks, maybe the
backend's session); the van keeps committing records to its outbox while the broker is
down, reconnects, and sends again from the oldest record not acknowledged. The backend
ends with every record of the boot exactly once.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from cloud_stub.broker import MosquittoProcess
from cloud_stub.store import Store
from tcu.runtime.mqtt import BrokerURL
from tests.faults.rig import VIN, Van, assert_exactly_once, provision_van, start_backend, until

pytestmark = pytest.mark.mosquitto


async def test_broker_killed_mid_stream_and_restarted_loses_nothing(
    mosquitto_broker: MosquittoProcess, tmp_path: Path
) -> None:
    broker = mosquitto_broker
    port = broker.port
    backend = start_backend(broker.url, tmp_path / "cloud")
    await backend.start()
    identity = provision_van(tmp_path / "keystore", backend)
    (tmp_path / "tcu").mkdir()
    # After a crash the backend's session may be older than its subscription; a short
    # resend timer lets the van recover batches the restarted broker had nobody to give to.
    van = Van(tmp_path / "tcu", identity, BrokerURL.parse(broker.url), resend_after=2.0)
    try:
        await van.start()
        await backend.activate(VIN)
        await until("the signed activation", lambda: van.active)
        van.keep_producing()
        await until("records stored", lambda: backend.store.count_records(VIN) >= 60)

        broker.kill()
        stored_at_kill = backend.store.count_records(VIN)
        made_at_kill = van.produced
        await until(
            "records made while the broker is down", lambda: van.produced >= made_at_kill + 60
        )
        held = van.outbox.depth()
        await asyncio.to_thread(broker.start)
        assert (broker.running, broker.port) == (True, port)

        await until(
            "the backlog stored", lambda: backend.store.count_records(VIN) > made_at_kill + 60
        )
        produced = await van.stop_producing()
        await until(
            "every record stored and acknowledged",
            lambda: backend.store.count_records(VIN) == produced and van.outbox.depth() == 0,
        )
    finally:
        await van.close()
        await backend.stop()

    assert stored_at_kill < made_at_kill + 60 <= produced, "the kill came mid-stream"
    assert held >= 60, "records made while the broker was down waited in the outbox"
    assert van.uplink.stats.connects >= 2 and backend.connections >= 2
    with Store(tmp_path / "cloud" / "store.sqlite") as store:
        assert_exactly_once(store, {van.epoch: produced})
