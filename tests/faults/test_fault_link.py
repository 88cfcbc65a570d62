"""The TCP link between the van's uplink and Mosquitto cut, mid-stream, again and again.

`LinkProxy` sits between the uplink and the broker; a cut aborts the connection and
refuses new ones until restored. aiomqtt reports the lost connection, the uplink backs
off, reconnects when the link is back and sends again from the oldest record not
acknowledged; the backend (on the broker directly) stores every record once.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from cloud_stub.broker import MosquittoProcess
from cloud_stub.store import Store
from tcu.link.proxy import LinkProxy
from tcu.runtime.mqtt import BrokerURL
from tests.faults.rig import (
    VIN,
    Van,
    assert_exactly_once,
    grows,
    provision_van,
    start_backend,
    until,
)

pytestmark = pytest.mark.mosquitto

CUTS = 3


async def test_link_cuts_make_the_uplink_reconnect_and_lose_nothing(
    mosquitto_broker: MosquittoProcess, tmp_path: Path
) -> None:
    broker = mosquitto_broker
    backend = start_backend(broker.url, tmp_path / "cloud")
    await backend.start()
    identity = provision_van(tmp_path / "keystore", backend)
    (tmp_path / "tcu").mkdir()
    held: list[int] = []

    def stored() -> int:
        return backend.store.count_records(VIN)

    async with LinkProxy("127.0.0.1", 0, broker.host, broker.port) as proxy:
        van = Van(tmp_path / "tcu", identity, BrokerURL(host="127.0.0.1", port=proxy.port))
        try:
            await van.start()
            await backend.activate(VIN)
            await until("the signed activation", lambda: van.active)
            van.keep_producing()
            for cut in range(CUTS):
                await grows(f"records stored before cut {cut + 1}", stored, 20)
                await proxy.cut()
                await until("the uplink to notice the cut", lambda: not van.uplink.connected)
                await grows("records made while the link is cut", lambda: van.produced, 30)
                held.append(van.outbox.depth())
                await proxy.restore()
                await until("the uplink to reconnect", lambda: van.uplink.connected)
            produced = await van.stop_producing()
            await until(
                "every record stored and acknowledged",
                lambda: stored() == produced and van.outbox.depth() == 0,
            )
        finally:
            await van.close()
            await backend.stop()

    reconnects = van.uplink.stats.connects - 1
    assert reconnects >= CUTS > 1
    assert proxy.counters["dropped_by_cut"] >= CUTS
    assert all(depth >= 30 for depth in held), held
    with Store(tmp_path / "cloud" / "store.sqlite") as store:
        assert_exactly_once(store, {van.epoch: produced})
