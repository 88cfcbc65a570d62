"""The live driver over a real serial line, with the vehicle simulator closing the loop.

    LiveSession ── can.Bus("slcan", <link>) ══ pty ══ SlcanDevice ── virtual bus ── SimDriver
                   (pyserial, real termios)            (LAWICEL)                    (the van)

The backend test adds the other half: the cloud stub signs a command, it crosses a real MQTT
broker, the TCU verifies it and sends the request frame over the serial line, the simulated
van answers, and the backend stores the TCU's signed status and telemetry.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import can
import pytest

from cloud_stub.broker import EmbeddedBroker
from cloud_stub.provisioning import registration
from cloud_stub.service import Backend
from tcu.bench.slcan_device import ChannelState, SlcanDevice
from tcu.bench.vehicle_sim import SimDriver, VehicleSim
from tcu.can.encoder import FrameEncoder
from tcu.can.setup import load_bus_setup
from tcu.events import Command
from tcu.runtime.backoff import Backoff
from tcu.runtime.bus import BusSpec
from tcu.runtime.live import LiveOptions, LiveReport, LiveSession
from tcu.runtime.mqtt import BrokerURL
from tcu.telemetry.storage.identity import provision
from tcu.telemetry.storage.outbox import Outbox
from tcu.vehicle import catalogue as c
from tests.helpers import until

WAIT_S = 5.0

pytestmark = [
    pytest.mark.skipif(not hasattr(os, "openpty"), reason="needs pseudo-terminals"),
    pytest.mark.usefixtures("nothing_left_behind"),
]

VIN = "WTCUBENCH00000047"


@dataclass
class Bench:
    sim: VehicleSim
    van: SimDriver
    adapter: SlcanDevice
    link: Path

    def spec(self) -> BusSpec:
        return BusSpec(
            interface="slcan",
            channel=str(self.link),
            options={"bitrate": 500_000, "sleep_after_open": 0},
        )


@pytest.fixture
def bench(tmp_path: Path) -> Iterator[Bench]:
    channel = f"bench-{uuid.uuid4().hex}"
    van_bus = can.Bus(interface="virtual", channel=channel)
    adapter_bus = can.Bus(interface="virtual", channel=channel)
    setup = load_bus_setup()
    sim = VehicleSim(FrameEncoder(setup.db, setup.mapping))
    link = tmp_path / "ttyCAN0"
    try:
        with SimDriver(sim, van_bus) as van, SlcanDevice(adapter_bus, link=link) as adapter:
            yield Bench(sim=sim, van=van, adapter=adapter, link=link)
    finally:
        van_bus.shutdown()
        adapter_bus.shutdown()


def completed(session: LiveSession, session_id: str) -> bool:
    return any(
        t.session_id == session_id and t.to_state == "completed"
        for t in session.services.transitions
    )


def failed(session: LiveSession, session_id: str) -> bool:
    return any(
        t.session_id == session_id and t.to_state == "failed" for t in session.services.transitions
    )


async def knows_the_van(session: LiveSession) -> None:
    paths = (*c.DOORS, c.SPEED, c.LOCKED)
    await until(
        "the TCU to know doors, speed and lock",
        lambda: all(session.core.state.get(p, session.driver.now) is not None for p in paths),
    )


async def stop(session: LiveSession, task: asyncio.Task[LiveReport]) -> LiveReport:
    session.request_stop()
    return await asyncio.wait_for(task, WAIT_S)


async def test_a_lock_command_crosses_the_serial_line_and_completes(bench: Bench) -> None:
    session = LiveSession(LiveOptions(bus=bench.spec()))
    task = asyncio.create_task(session.run())
    try:
        await knows_the_van(session)
        assert session.core.state.get(c.LOCKED, session.driver.now) is False
        session.driver.inject(Command(name="lock", command_id="bench-1"))
        await until("lock-1 to complete", lambda: completed(session, "lock-1"))
    finally:
        report = await stop(session, task)
    assert [(o.name, o.accepted) for o in bench.van.outcomes] == [("lock", True)]
    assert bench.adapter.frames_to_bus == 1
    assert report.driver["frames_sent"] == 1
    assert report.state[c.LOCKED] is True
    assert report.counts["decoded_frames"] > 0
    assert report.bus_health["adapter_lost"] == 0


async def test_an_open_door_keeps_the_request_off_the_bus(bench: Bench) -> None:
    with bench.van.lock:
        bench.sim.set(c.DOOR_REAR, True, bench.van.now)
    session = LiveSession(LiveOptions(bus=bench.spec()))
    task = asyncio.create_task(session.run())
    try:
        await knows_the_van(session)
        session.driver.inject(Command(name="lock"))
    finally:
        report = await stop(session, task)
    assert session.services.verdicts[-1].codes == ("door_open",)
    assert bench.adapter.frames_to_bus == 0
    assert bench.van.outcomes == []
    assert report.state[c.LOCKED] is False


async def test_listen_only_suppresses_the_request(bench: Bench) -> None:
    spec = BusSpec(
        interface="slcan",
        channel=str(bench.link),
        options={"bitrate": 500_000, "sleep_after_open": 0, "listen_only": True},
        listen_only=True,
    )
    session = LiveSession(LiveOptions(bus=spec))
    task = asyncio.create_task(session.run())
    try:
        await knows_the_van(session)
        assert bench.adapter.state is ChannelState.LISTEN_ONLY
        session.driver.inject(Command(name="lock"))
    finally:
        report = await stop(session, task)
    assert report.driver["sends_suppressed"] == 1
    assert report.driver["frames_sent"] == 0
    assert bench.adapter.frames_to_bus == 0


async def test_an_unplugged_adapter_is_reopened_and_the_outbox_is_intact(
    bench: Bench, tmp_path: Path
) -> None:
    outbox_path = tmp_path / "outbox.sqlite"
    with Outbox(outbox_path) as outbox:
        outbox.save_downlink(0, True)
    reports: list[str] = []
    session = LiveSession(
        LiveOptions(bus=bench.spec(), outbox=outbox_path, snapshot_period=0.2, lock_timeout_s=1.0),
        on_report=reports.append,
        backoff=Backoff(0.02, 0.1, jitter=False),
    )
    driver = session.driver
    task = asyncio.create_task(session.run())
    try:
        await knows_the_van(session)
        await until("records in the outbox", lambda: session.host.counts.records_produced > 0)
        bench.adapter.unplug()
        await until("the fault to be seen", lambda: driver.health.adapter_lost == 1)
        await until("a failed reopen", lambda: driver.health.open_failures >= 1)
        assert not driver.bus_open
        session.driver.inject(Command(name="lock"))
        bench.adapter.replug()
        await until("the bus to be reopened", lambda: driver.health.reopened == 1)
        frames = driver.stats.frames
        await until("frames again", lambda: driver.stats.frames > frames + 20)
        await until(
            "lock-1 to time out",
            lambda: session.services.lock is not None and session.services.lock.state == "failed",
            timeout=8.0,
        )
        session.driver.inject(Command(name="lock"))
        await until("lock-2 to complete", lambda: completed(session, "lock-2"))
    finally:
        report = await stop(session, task)
    assert report.bus_health["adapter_lost"] == 1
    assert report.bus_health["reopened"] == 1
    assert report.driver["send_failures"] == 1, "lock-1 was asked while the adapter was away"
    assert len(report.faults) == 1 and "Could not read from serial device" in report.faults[0]
    assert any("lost" in line for line in reports)
    assert any("reopened" in line for line in reports)
    assert [o.name for o in bench.van.outcomes] == ["lock"]
    stored = report.extra["outbox"]["stored"]
    with Outbox(outbox_path) as outbox:
        assert outbox.depth() == stored > 0
        assert outbox.epoch == 1


async def test_a_backend_command_over_a_broker_reaches_the_van_and_is_reported(
    bench: Bench, tmp_path: Path, embedded_broker: EmbeddedBroker
) -> None:
    data = tmp_path / "cloud"
    keystore = tmp_path / "keys"
    register, backend_pem = registration(data)
    provision(VIN, keystore, register=register, backend_pem=backend_pem)
    async with Backend(embedded_broker.url, data) as backend:
        session = LiveSession(
            LiveOptions(
                bus=bench.spec(),
                keystore=keystore,
                broker=BrokerURL.parse(embedded_broker.url),
                mqtt_protocol="3.1.1",
                snapshot_period=0.5,
            )
        )
        task = asyncio.create_task(session.run())
        try:
            await until(
                "the uplink", lambda: session.uplink is not None and session.uplink.connected
            )
            await knows_the_van(session)
            await backend.activate(VIN)
            telemetry = session.telemetry
            assert telemetry is not None
            await until("the service to be active", lambda: telemetry.active)
            signed = await backend.send_command(VIN, "lock")
            command_id = signed.downlink.command_id

            def outcome() -> str | None:
                for status in backend.store.statuses(VIN):
                    if status.command_id == command_id and status.outcome != "accepted":
                        return status.outcome
                return None

            await until("the lock's final status at the backend", lambda: outcome() is not None)
            final = outcome()
            stats = backend.stats()
            await until("telemetry stored", lambda: backend.store.count_records(VIN) > 2)
            await until(
                "the outbox acknowledged",
                lambda: session.outbox is not None and session.outbox.depth() == 0,
            )
        finally:
            report = await stop(session, task)
    assert final == "completed"
    assert [(o.name, o.accepted) for o in bench.van.outcomes] == [("lock", True)]
    assert report.state[c.LOCKED] is True
    assert report.extra["downlink"]["accepted"] == {"activate": 1, "lock": 1}
    assert report.extra["uplink"]["records_acked"] >= 3
    assert report.extra["link_proxy"]["accepted"] >= 1
    assert stats.refused_total == 0
