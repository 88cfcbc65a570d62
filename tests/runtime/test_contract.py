"""One contract for every driver: the same trace and commands give the same verdicts,
sessions, alarms and command results, as emits and as telemetry records, whether the host
runs in the in-memory replay, the online replay through Mosquitto, the live driver on a
virtual bus in real time, or the scenario world."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import can
import pytest

from cloud_stub.broker import MosquittoProcess
from tcu.bench.vehicle_sim import VehicleSim, still_storyline
from tcu.can.encoder import FrameEncoder
from tcu.can.setup import load_bus_setup
from tcu.compose.memory import MemoryWorld
from tcu.compose.online import OnlineOptions, OnlineReplay
from tcu.events import Command, Emit
from tcu.runtime.bus import resolve_bus
from tcu.runtime.host import Sink
from tcu.runtime.live import LiveOptions, LiveSession
from tcu.runtime.mqtt import BrokerURL
from tcu.scenario.loader import load_text
from tcu.scenario.runner import run_case
from tcu.scenario.scenario_world import ScenarioWorld
from tcu.scenario.world import WorldOptions
from tcu.services import DEFAULT_VIN, VehicleConfig
from tcu.telemetry.storage.outbox import Outbox
from tcu.vehicle import catalogue as c

START = datetime(2026, 1, 14, 18, 0, tzinfo=UTC)
STEP_S = 0.01
TRACE_S = 3.0
BUS_STEPS = {
    0.5: [(c.PLUG_CONNECTED, True), (c.PLUG_LOCKED, True), (c.INFRA_CONNECTED, True)],
    1.0: [(c.DOOR_FRONT_LEFT, True)],
    1.5: [(c.DOOR_FRONT_LEFT, False)],
    2.0: [(c.PLUG_CONNECTED, False)],
}
COMMANDS = ((1.2, "set_departure", "19:30"), (2.5, "stop_charging", None))
FACTS = frozenset({"verdict", "session", "alarm", "command_result"})
UNTIMED = frozenset({"t", "command_id", "source"})  # when, and which path a command took


def normal(body: Any) -> dict[str, Any]:
    return {k: v for k, v in dict(body).items() if k not in UNTIMED}


class Facts(Sink):
    """What a driver's host reports, in order, without the instants."""

    def __init__(self) -> None:
        self.emits: list[tuple[str, dict[str, Any]]] = []
        self.records: list[tuple[str, dict[str, Any]]] = []

    def emitted(self, emit: Emit, now: float) -> None:
        if emit.kind in FACTS:
            self.emits.append((emit.kind, normal(emit.body)))

    def stored(self, records: tuple[Any, ...], dropped: dict[str, int], now: float) -> None:
        self.records += [(r.kind, normal(r.body)) for r in records if r.kind in FACTS]


@pytest.fixture(scope="module")
def trace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """3 s of the reference van's bus: plugged in, a door opened and closed, unplugged."""
    setup = load_bus_setup()
    sim = VehicleSim(FrameEncoder(setup.db, setup.mapping), storyline=still_storyline(START))
    path = tmp_path_factory.mktemp("contract") / "contract.blf"
    steps = {round(t / STEP_S): changes for t, changes in BUS_STEPS.items()}
    writer = can.Logger(str(path))
    try:
        for i in range(round(TRACE_S / STEP_S)):
            t = i * STEP_S
            frames = [m for path_, value in steps.get(i, []) for m in sim.set(path_, value, t)]
            for msg in [*frames, *sim.frames_due(t)]:
                msg.timestamp = START.timestamp() + t
                writer.on_message_received(msg)
    finally:
        writer.stop()
    return path


def commands() -> tuple[tuple[float, Command], ...]:
    return tuple((t, Command(name=n, argument=a, source="trace")) for t, n, a in COMMANDS)


@pytest.fixture(scope="module")
def expected(trace: Path, tmp_path_factory: pytest.TempPathFactory) -> Facts:
    """The in-memory replay: the reference every other driver must equal."""
    facts = Facts()
    vehicle = VehicleConfig(vin=DEFAULT_VIN, origin_epoch=START.timestamp())
    world = MemoryWorld(load_bus_setup(), vehicle, tmp_path_factory.mktemp("replay"), sinks=[facts])
    try:
        for t, command in commands():
            world.driver.schedule(t, command)
        world.replay(can.LogReader(str(trace)))
        assert world.drain(60)
    finally:
        world.close()
    kinds = [k for k, _ in facts.emits]
    assert {"verdict", "session", "alarm", "command_result"} <= set(kinds), kinds
    assert facts.records == facts.emits, "every fact is also a telemetry record"
    return facts


def test_the_scenario_world_gives_the_same_facts(trace: Path, expected: Facts) -> None:
    facts = Facts()
    text = f"""
name: contract
trace: {trace}
steps:
  - at: 0
    activate: true
  - at: 1.2
    command: {{name: set_departure, arg: "19:30"}}
  - at: 2.5
    command: stop_charging
"""
    (case,) = load_text(text, "contract.yaml").cases

    def factory(case: Any, options: WorldOptions) -> ScenarioWorld:
        world = ScenarioWorld(case, options)
        world.host.add_sink(facts)
        return world

    result = run_case(case, factory=factory)  # type: ignore[arg-type]
    assert result.passed, result.render()
    assert facts.emits == expected.emits
    assert facts.records == expected.records


async def test_the_online_replay_through_mosquitto_gives_the_same_facts(
    trace: Path, expected: Facts, mosquitto_broker: MosquittoProcess, tmp_path: Path
) -> None:
    facts = Facts()
    broker = BrokerURL(host=mosquitto_broker.host, port=mosquitto_broker.port)
    opts = OnlineOptions(
        traces=(trace,), broker=broker, workdir=tmp_path, commands=commands(), sinks=(facts,)
    )
    report = await OnlineReplay(opts).run()
    assert report.drained and report.lost == 0
    assert facts.emits == expected.emits
    assert facts.records == expected.records


async def test_the_live_driver_on_a_virtual_bus_gives_the_same_facts(
    trace: Path, expected: Facts, tmp_path: Path
) -> None:
    facts = Facts()
    channel = f"contract-{uuid.uuid4().hex}"
    outbox = tmp_path / "outbox.sqlite"
    with Outbox(outbox) as box:
        box.save_downlink(0, True)  # activated before: the bench has no backend here
    session = LiveSession(
        LiveOptions(bus=resolve_bus(interface="virtual", channel=channel), outbox=outbox),
        origin_epoch=START.timestamp(),
    )
    session.host.add_sink(facts)
    player = can.Bus(interface="virtual", channel=channel)
    task = asyncio.create_task(session.run())
    try:
        await asyncio.wait_for(session.driver.running.wait(), 5.0)
        pending = list(commands())
        frames = list(can.LogReader(str(trace)))
        t0, wall0 = frames[0].timestamp, time.monotonic()
        for msg in frames:
            due = msg.timestamp - t0
            while pending and pending[0][0] <= due:
                session.driver.inject(pending.pop(0)[1])
            delay = due - (time.monotonic() - wall0)
            if delay > 0:
                await asyncio.sleep(delay)
            player.send(msg)
        await asyncio.sleep(0.3)
    finally:
        session.request_stop()
        await asyncio.wait_for(task, 5.0)
        player.shutdown()
    assert facts.emits == expected.emits
    assert facts.records == expected.records
