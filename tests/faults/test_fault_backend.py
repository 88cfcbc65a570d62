"""The backend stopped and started again on the same data directory.

While it is away, Mosquitto keeps the QoS 1 batches the van publishes in the backend's
persistent session (client id ``cloud-stub``, clean session off) and hands them over when
it returns. The van here has no resend timer and never reconnects, so those batches can
reach the returning backend only through that session.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from cloud_stub.broker import MosquittoProcess
from cloud_stub.store import Store
from tcu.runtime.mqtt import BrokerURL
from tests.faults.rig import (
    VIN,
    Van,
    assert_exactly_once,
    provision_van,
    start_backend,
    until,
    witness,
)

pytestmark = pytest.mark.mosquitto


async def test_backend_restarted_gets_what_was_published_while_it_was_away(
    mosquitto_broker: MosquittoProcess, tmp_path: Path
) -> None:
    url = mosquitto_broker.url
    data = tmp_path / "cloud"
    first = start_backend(url, data)
    await first.start()
    identity = provision_van(tmp_path / "keystore", first)
    (tmp_path / "tcu").mkdir()
    van = Van(tmp_path / "tcu", identity, BrokerURL.parse(url), resend_after=3600.0)
    try:
        await van.start()
        async with witness(url, identity.key.public_key()) as seen:
            await first.activate(VIN)
            await until("the signed activation", lambda: van.active)
            await van.produce(80)
            await until(
                "the first records stored and acknowledged",
                lambda: first.store.count_records(VIN) == van.produced and van.outbox.depth() == 0,
            )
            before = van.produced
            await first.stop()

            await van.produce(before + 120)
            away = van.produced
            await until(
                "the broker taking every record made while the backend is away",
                lambda: set(seen.count(van.epoch)) >= set(range(before + 1, away + 1)),
            )
            assert van.outbox.depth() == away - before, "nothing acknowledged meanwhile"

            second = start_backend(url, data)
            await second.start()
            try:
                await until(
                    "the backlog stored and acknowledged",
                    lambda: second.store.count_records(VIN) == away and van.outbox.depth() == 0,
                )
                van.keep_producing()
                await until("more records stored", lambda: second.store.count_records(VIN) > away)
                produced = await van.stop_producing()
                await until(
                    "every record stored and acknowledged",
                    lambda: second.store.count_records(VIN) == produced and van.outbox.depth() == 0,
                )
                returned = second.stats()
            finally:
                await second.stop()
    finally:
        await van.close()

    assert van.uplink.stats.connects == 1 and van.uplink.stats.resends == 0
    assert returned.records_stored == produced - before
    with Store(data / "store.sqlite") as store:
        assert_exactly_once(store, {van.epoch: produced})
