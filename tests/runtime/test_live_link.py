"""``tcu run --link``: the SIM link model behind the broker path, fed with the van's GNSS."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path

import can
import pytest

from cloud_stub.broker import EmbeddedBroker
from cloud_stub.provisioning import registration
from tcu.bench.vehicle_sim import SimDriver, VehicleSim
from tcu.can.encoder import FrameEncoder
from tcu.can.setup import load_bus_setup
from tcu.cli.main import main
from tcu.link.sim import LinkConfig
from tcu.runtime.bus import resolve_bus
from tcu.runtime.live import LiveOptions, LiveSession
from tcu.runtime.mqtt import BrokerURL
from tcu.telemetry.storage.identity import provision
from tcu.vehicle import catalogue as c
from tests.helpers import until

WAIT_S = 5.0

VIN = "WTCUBENCH00000051"
FAST_MODEM = {
    "search_s": [0.05, 0.1],
    "attach_home_s": [0.05, 0.1],
    "attach_roaming_s": [0.05, 0.1],
    "retry_s": [0.05, 0.1],
}


@pytest.fixture
def van() -> Iterator[tuple[str, SimDriver]]:
    channel = f"link-{uuid.uuid4().hex}"
    bus = can.Bus(interface="virtual", channel=channel)
    setup = load_bus_setup()
    sim = VehicleSim(FrameEncoder(setup.db, setup.mapping))
    try:
        with SimDriver(sim, bus) as driver:
            yield channel, driver
    finally:
        bus.shutdown()


async def test_registration_follows_the_van_across_a_border(
    van: tuple[str, SimDriver], tmp_path: Path, embedded_broker: EmbeddedBroker
) -> None:
    channel, sim_driver = van
    keystore = tmp_path / "keys"
    register, backend_pem = registration(tmp_path / "cloud")
    provision(VIN, keystore, register=register, backend_pem=backend_pem)
    link = LinkConfig.from_dict({"home_plmn": "242-01", "seed": 3, "modem": FAST_MODEM})
    session = LiveSession(
        LiveOptions(
            bus=resolve_bus(interface="virtual", channel=channel),
            keystore=keystore,
            broker=BrokerURL.parse(embedded_broker.url),
            mqtt_protocol="3.1.1",
            link=link,
        )
    )
    task = asyncio.create_task(session.run())
    try:
        await until("home registration", lambda: (session.registration() or "").endswith("(home)"))
        assert "Telenor Norge" in session.status_text()
        await until("the uplink", lambda: session.uplink is not None and session.uplink.connected)
        sim_driver.set(c.LATITUDE, "59.33")
        sim_driver.set(c.LONGITUDE, "18.07")
        await until(
            "roaming in Sweden", lambda: (session.registration() or "").endswith("(roaming)")
        )
    finally:
        session.request_stop()
        report = await asyncio.wait_for(task, WAIT_S)
    summary = report.extra["link"]
    assert summary["countries_seen"] == ["NO", "SE"]
    assert summary["state"] == "registered_roaming"
    assert summary["bytes_by_plmn"]["242-01"]["up"] > 0, "MQTT went through the link"
    assert report.extra["link_proxy"]["accepted"] >= 1


def test_a_link_without_a_broker_is_an_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "link.yaml"
    path.write_text("link:\n  home_plmn: '242-01'\n")
    assert main(["run", "-i", "virtual", "-c", "x", "--link", str(path)]) == 2
    assert "--link needs --broker" in capsys.readouterr().err
    path.write_text("home_plmn: 'nope'\n")
    assert main(["run", "-i", "virtual", "-c", "x", "--link", str(path)]) == 2
    assert "home_plmn" in capsys.readouterr().err
