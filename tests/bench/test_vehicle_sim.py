"""The vehicle ECU simulator, sans-I/O: cyclic frames from the DBC, answers to requests."""

from __future__ import annotations

import io
from collections import Counter
from collections.abc import Iterator
from typing import Any

import can
import pytest

from tcu.bench.vehicle_sim import SimDriver, VehicleSim, parse_value, run_prompt
from tcu.can.encoder import FrameEncoder
from tcu.can.setup import load_bus_setup
from tcu.core import TcuCore
from tcu.errors import ConfigError
from tcu.storyline import get as get_storyline
from tcu.vehicle import catalogue as c


@pytest.fixture(scope="module")
def encoder() -> FrameEncoder:
    setup = load_bus_setup()
    return FrameEncoder(setup.db, setup.mapping)


@pytest.fixture
def sim(encoder: FrameEncoder) -> VehicleSim:
    return VehicleSim(encoder)


def request(encoder: FrameEncoder, name: str, argument: float = 0, counter: int = 1) -> can.Message:
    return encoder.encode_request(name, argument, counter)


def decode_all(encoder: FrameEncoder, frames: list[can.Message], at: float) -> TcuCore:
    """What a TCU decodes from ``frames`` (all taken at time ``at``)."""
    core = TcuCore(encoder.mapping)
    for f in frames:
        core.frame(f, at)
    return core


def answer(sim: VehicleSim, msg: can.Message, now: float) -> tuple[Any, list[can.Message]]:
    out = sim.on_request(msg, now)
    assert out is not None
    return out


def test_every_cyclic_message_goes_out_at_its_dbc_cycle_time(
    sim: VehicleSim, encoder: FrameEncoder
) -> None:
    sent: Counter[str] = Counter()
    step = 0.001
    for i in range(10_000):
        for f in sim.frames_due(i * step):
            sent[encoder.message(f.arbitration_id).name] += 1
    for message, cycle in encoder.cyclic_messages():
        expected = 10.0 / cycle
        assert abs(sent[message.name] - expected) <= 1, (message.name, sent[message.name])
    assert sim.late_slots == 0


def test_the_frames_carry_the_state_a_tcu_decodes(sim: VehicleSim, encoder: FrameEncoder) -> None:
    frames = [f for i in range(1100) for f in sim.frames_due(i * 0.001)]
    core = decode_all(encoder, frames, 1.1)
    for path in (*c.DOORS, c.LOCKED, c.GEAR, c.SPEED, c.SOC, c.CHARGING_STATUS):
        assert core.state.get(path, 1.1) == sim.value(path, 1.1), path
    assert core.state.get(c.GEAR, 1.1) == "P"
    assert core.state.get(c.LOCKED, 1.1) is False


def test_lock_engages_only_with_every_door_closed(sim: VehicleSim, encoder: FrameEncoder) -> None:
    sim.set(c.DOOR_SLIDING_RIGHT, True, 0.0)
    outcome, frames = answer(sim, request(encoder, "lock", counter=1), 0.1)
    assert not outcome.accepted
    assert "Row2.PassengerSide" in outcome.detail
    assert frames == []
    assert sim.value(c.LOCKED, 0.1) is False

    sim.set(c.DOOR_SLIDING_RIGHT, False, 0.2)
    outcome, frames = answer(sim, request(encoder, "lock", counter=2), 0.3)
    assert outcome.accepted
    assert sim.value(c.LOCKED, 0.3) is True
    core = decode_all(encoder, frames, 0.3)
    assert core.state.get(c.LOCKED, 0.3) is True, "the body frame goes out at once"

    outcome, frames = answer(sim, request(encoder, "unlock", counter=3), 0.4)
    assert outcome.accepted
    assert decode_all(encoder, frames, 0.4).state.get(c.LOCKED, 0.4) is False


def test_a_repeated_counter_is_a_retransmission_and_ignored(
    sim: VehicleSim, encoder: FrameEncoder
) -> None:
    first = request(encoder, "lock", counter=5)
    assert answer(sim, first, 0.0)[0].accepted
    sim.set(c.LOCKED, False, 0.1)
    outcome, _ = answer(sim, request(encoder, "lock", counter=5), 0.2)
    assert not outcome.accepted and outcome.detail == "repeated counter"
    assert sim.value(c.LOCKED, 0.2) is False
    assert sim.repeated_requests == 1
    assert answer(sim, request(encoder, "lock", counter=6), 0.3)[0].accepted


PLUGGED: dict[str, c.Value] = {
    c.PLUG_CONNECTED: True,
    c.PLUG_LOCKED: True,
    c.INFRA_CONNECTED: True,
    c.INFRA_TYPE: "WALLBOX",
}


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({c.PLUG_CONNECTED: False}, "plug not connected"),
        ({c.PLUG_LOCKED: False}, "plug not locked"),
        ({c.INFRA_CONNECTED: False}, "no infrastructure"),
        ({c.GEAR: "D"}, "gear not P"),
        ({c.BONNET: True}, "bonnet not closed"),
    ],
)
def test_charging_starts_only_when_the_van_allows_it(
    sim: VehicleSim, encoder: FrameEncoder, change: dict[str, c.Value], reason: str
) -> None:
    for path, value in {**PLUGGED, **change}.items():
        sim.set(path, value, 0.0)
    outcome, _ = answer(sim, request(encoder, "start_charging"), 0.1)
    assert not outcome.accepted
    assert reason in outcome.detail
    assert sim.value(c.CHARGING_STATUS, 0.1) == "IDLE"


def test_charging_runs_raises_the_soc_and_stops(sim: VehicleSim, encoder: FrameEncoder) -> None:
    for path, value in PLUGGED.items():
        sim.set(path, value, 0.0)
    soc0 = sim.value(c.SOC, 0.0)
    outcome, frames = answer(sim, request(encoder, "start_charging", counter=1), 0.0)
    assert outcome.accepted
    core = decode_all(encoder, frames, 0.0)
    assert core.state.get(c.CHARGING_STATUS, 0.0) == "CHARGING"
    assert core.state.get(c.CHARGING_POWER, 0.0) == pytest.approx(22.0)
    sim.frames_due(60.0)
    soc1 = sim.value(c.SOC, 60.0)
    assert isinstance(soc0, float) and isinstance(soc1, float)
    assert soc1 == pytest.approx(soc0 + 22.0 * 60 / 3600 / 90.0 * 100, rel=1e-6)

    outcome, frames = answer(sim, request(encoder, "stop_charging", counter=2), 61.0)
    assert outcome.accepted
    assert decode_all(encoder, frames, 61.0).state.get(c.CHARGING_STATUS, 61.0) == "IDLE"


def test_charging_stops_when_the_plug_comes_out(sim: VehicleSim, encoder: FrameEncoder) -> None:
    for path in (c.PLUG_CONNECTED, c.PLUG_LOCKED, c.INFRA_CONNECTED):
        sim.set(path, True, 0.0)
    assert answer(sim, request(encoder, "start_charging"), 0.0)[0].accepted
    sim.set(c.PLUG_CONNECTED, False, 1.0)
    sim.frames_due(1.5)
    assert sim.value(c.CHARGING_STATUS, 1.5) == "IDLE"
    assert sim.value(c.CHARGING_POWER, 1.5) == 0.0


def test_departure_is_echoed_and_preconditioning_runs(
    sim: VehicleSim, encoder: FrameEncoder
) -> None:
    outcome, frames = answer(sim, request(encoder, "set_departure", 390, counter=1), 0.0)
    assert outcome.accepted and "06:30" in outcome.detail
    assert decode_all(encoder, frames, 0.0).state.get(c.DEPARTURE_TIME, 0.0) == 390.0
    outcome, _ = answer(sim, request(encoder, "start_preconditioning", counter=2), 0.1)
    assert outcome.accepted
    assert sim.value("HVAC_PrecondActive", 0.1) == 1.0
    outcome, _ = answer(sim, request(encoder, "stop_preconditioning", counter=3), 0.2)
    assert outcome.accepted
    assert sim.value("HVAC_PrecondActive", 0.2) == 0.0


def test_other_frames_are_not_requests(sim: VehicleSim) -> None:
    assert sim.on_request(can.Message(arbitration_id=0x6A0, is_extended_id=True), 0.0) is None
    assert sim.on_request(can.Message(arbitration_id=0x3A0, is_extended_id=False), 0.0) is None
    bad_type = can.Message(arbitration_id=0x6A0, is_extended_id=False, data=bytes([9] + [0] * 7))
    outcome, _ = answer(sim, bad_type, 0.0)
    assert not outcome.accepted and outcome.name == "type 9"


def test_a_storyline_takes_back_a_value_at_its_next_change(encoder: FrameEncoder) -> None:
    story = get_storyline("depot_night")
    opens = next(e.t for e in story.events if e.text == "driver door opens")
    closes = next(e.t for e in story.events if e.text == "driver door closes" and e.t > opens)
    sim = VehicleSim(encoder, storyline=story, speed=10.0)

    def at(t: float) -> float:
        return t / 10.0

    assert sim.value(c.DOOR_FRONT_LEFT, at(opens - 10)) is False
    sim.set(c.DOOR_FRONT_LEFT, True, at(opens - 10))
    assert sim.value(c.DOOR_FRONT_LEFT, at(opens - 5)) is True
    sim.set(c.DOOR_FRONT_LEFT, True, at(opens + 1))
    assert sim.value(c.DOOR_FRONT_LEFT, at(closes - 1)) is True
    assert sim.value(c.DOOR_FRONT_LEFT, at(closes + 1)) is False, "the door closes in the story"
    assert c.DOOR_FRONT_LEFT not in sim.overlaid()


def test_a_storyline_asleep_bus_is_silent(encoder: FrameEncoder) -> None:
    story = get_storyline("depot_night")
    asleep = next(t for t, _, mode in story.phases() if mode == "asleep")
    sim = VehicleSim(encoder, storyline=story, start=asleep + 60)
    frames = [f for i in range(200) for f in sim.frames_due(i * 0.01)]
    assert frames == []
    assert sim.silent_slots > 0


def test_fd_messages_are_left_out_of_a_classic_bus(encoder: FrameEncoder) -> None:
    sim = VehicleSim(encoder, fd=False)
    assert sim.skipped_fd == ["BMS_CellStats"]
    frames = [f for i in range(2000) for f in sim.frames_due(i * 0.001)]
    assert frames and not any(f.is_fd for f in frames)


def test_values_are_checked_and_parsed(sim: VehicleSim) -> None:
    with pytest.raises(ConfigError, match="not true or false"):
        sim.set_text(c.BONNET, "maybe", 0.0)
    with pytest.raises(ConfigError, match="not one of"):
        sim.set_text(c.GEAR, "X", 0.0)
    with pytest.raises(ConfigError, match="cannot encode"):
        sim.set_text(c.SOC, "150", 0.0)
    assert sim.value(c.SOC, 0.0) == 50.0
    with pytest.raises(ConfigError, match="ambiguous"):
        sim.resolve_key("IsOpen")
    assert sim.resolve_key("hood.isopen") == c.BONNET
    assert sim.resolve_key("HVAC_CabinTemp") == "HVAC_CabinTemp"
    with pytest.raises(ConfigError, match=r"BCM_Bonnet carries Vehicle\.Body\.Hood\.IsOpen"):
        sim.resolve_key("BCM_Bonnet")
    assert parse_value(c.DEPARTURE_TIME, "06:30") == 390.0
    assert parse_value(c.LOCKED, "unknown") is None
    sim.set_text("DriverSide.IsLocked", "locked", 0.0)
    assert sim.value(c.LOCKED, 0.0) is True
    sim.release(c.LOCKED, 0.1)
    assert sim.value(c.LOCKED, 0.1) is False


@pytest.fixture
def driver(sim: VehicleSim) -> Iterator[tuple[SimDriver, can.BusABC]]:
    bus = can.Bus(interface="virtual", channel="vehicle-sim-prompt")
    listener = can.Bus(interface="virtual", channel="vehicle-sim-prompt")
    try:
        yield SimDriver(sim, bus), listener
    finally:
        bus.shutdown()
        listener.shutdown()


def test_the_prompt_sets_shows_and_quits(driver: tuple[SimDriver, can.BusABC]) -> None:
    sim_driver, listener = driver
    out = io.StringIO()
    script = io.StringIO("set Hood.IsOpen true\nshow\nset SelectedGear Z\nfly\nquit\nset Speed 5\n")
    assert run_prompt(sim_driver, script, out) is True
    text = out.getvalue()
    assert "Vehicle.Body.Hood.IsOpen = true" in text
    assert "* Vehicle.Body.Hood.IsOpen = true" in text
    assert "error: Vehicle.Powertrain.Transmission.SelectedGear: 'Z' is not one of" in text
    assert "error: unknown command 'fly'" in text
    assert sim_driver.sim.value(c.SPEED, 0.0) == 0.0
    pushed = listener.recv(1.0)
    assert pushed is not None and pushed.arbitration_id == 0x3A0
    assert sim_driver.counts.frames_sent == 1


def test_end_of_input_is_not_quit(driver: tuple[SimDriver, can.BusABC]) -> None:
    assert run_prompt(driver[0], io.StringIO("show\n"), io.StringIO()) is False


def test_an_unmapped_signal_set_by_hand_goes_out_in_its_frame(
    sim: VehicleSim, encoder: FrameEncoder
) -> None:
    frames = sim.set("HVAC_CabinTemp", 25.5, 0.0)
    assert [f.arbitration_id for f in frames] == [0x3E0]
    decoded = encoder.message("HVAC_Climate").decode(bytes(frames[0].data))
    assert decoded["HVAC_CabinTemp"] == 25.5
    with pytest.raises(ConfigError, match="takes a number"):
        sim.set("HVAC_CabinTemp", True, 0.0)
