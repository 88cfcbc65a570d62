"""The reference van: its DBC, its mapping and the frame encoder, round trip."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cantools
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tcu.can.dbc import load_database
from tcu.can.encoder import FrameEncoder
from tcu.can.mapping import SignalBinding, build_mapping, dbc_of, read_mapping_file
from tcu.errors import ConfigError
from tcu.storyline.generator import KEEPALIVE_ALWAYS, KEEPALIVE_PERIOD
from tcu.vehicle.catalogue import CATALOGUE, Value

TRACES = Path(__file__).resolve().parents[2] / "can_traces"
DBC = TRACES / "van.dbc"
MAPPING = TRACES / "van.mapping.yaml"


@pytest.fixture(scope="module")
def db() -> Any:
    return cantools.database.load_file(str(DBC), strict=True)


@pytest.fixture(scope="module")
def encoder() -> FrameEncoder:
    doc = read_mapping_file(MAPPING)
    path = dbc_of(MAPPING, doc)
    assert path == DBC.resolve()
    database, warnings = load_database(path)
    assert warnings == []
    return FrameEncoder(database, build_mapping(database, doc, str(MAPPING)))


def test_dbc_loads_strictly_with_the_expected_shape(db: Any) -> None:
    names = {m.name for m in db.messages}
    assert {"VCU_Drive", "BCM_Body", "TPMS_Pressures", "OBC_Charging", "BMS_CellStats"} <= names
    assert {n.name for n in db.nodes} >= {"BCM", "VCU", "BMS", "OBC", "HVAC", "TPMS", "GNSS", "TCU"}
    for m in db.messages:
        if m.name == "TCU_Request":
            assert m.cycle_time is None
            assert m.senders == ["TCU"]
        else:
            assert m.cycle_time is not None and 10 <= m.cycle_time <= 1000, m.name
    assert db.get_message_by_name("VCU_Drive").cycle_time == 10

    obc = db.get_message_by_name("OBC_Charging")
    assert obc.is_extended_frame and obc.frame_id == 0x18FF50E5

    fd = db.get_message_by_name("BMS_CellStats")
    assert fd.is_fd and fd.length == 64

    tpms = db.get_message_by_name("TPMS_Pressures")
    assert tpms.is_multiplexed()
    branches = {s.name: s.multiplexer_ids for s in tpms.signals if s.multiplexer_ids}
    assert branches["TPMS_PressureFL"] == [0] and branches["TPMS_PressureRR"] == [3]

    departure = db.get_message_by_name("HVAC_Climate").get_signal_by_name("HVAC_DepartureTime")
    assert departure.length == 11 and departure.maximum == 2047


def test_mapping_covers_the_catalogue_with_sane_staleness(encoder: FrameEncoder) -> None:
    by_path = encoder.mapping.by_path()
    assert set(by_path) == set(CATALOGUE)
    for b in encoder.mapping.signals:
        cycle = b.message.cycle_time / 1000.0
        muxes = encoder.mux_values(b.message)
        refresh = cycle * (len(muxes) or 1)
        if KEEPALIVE_ALWAYS.intersection(b.message.senders):
            refresh = max(refresh, KEEPALIVE_PERIOD)  # also sent at keep-alive while charging
        assert b.stale_after >= 0.5, b.path
        assert 2.0 * refresh <= b.stale_after <= 6.0 * refresh + 0.5, b.path
    assert by_path["Vehicle.Private.Climate.DepartureTime"].invalid == frozenset({2047.0})
    req = encoder.mapping.requests
    assert req is not None and req.message.name == "TCU_Request"
    assert req.types == {
        "lock": 1,
        "unlock": 2,
        "start_charging": 3,
        "stop_charging": 4,
        "start_preconditioning": 5,
        "stop_preconditioning": 6,
        "set_departure": 7,
    }


def _decode(
    encoder: FrameEncoder, b: SignalBinding, value: Value | None
) -> tuple[Any, Value | None]:
    muxes = b.message.get_signal_by_name(b.signal).multiplexer_ids
    mux = muxes[0] if muxes else None
    data = encoder.encode(b.message, {b.path: value}, mux=mux)
    frame = encoder.to_message(b.message, data, timestamp=1.0)
    decoded = b.message.decode(bytes(frame.data), decode_choices=False)
    return frame, b.to_value(decoded[b.signal])


def _samples(b: SignalBinding) -> list[Value | None]:
    spec = b.spec
    if spec.kind == "bool":
        return [True, False]
    if spec.kind == "enum":
        return [*b.values.values(), *([None] if b.invalid else [])]
    sig = b.message.get_signal_by_name(b.signal)
    lo, hi = float(sig.minimum), float(sig.maximum)
    if b.invalid:
        hi = min(hi, min(b.invalid) - sig.scale)
    return [lo, hi, lo + (hi - lo) * 0.37, lo + (hi - lo) * 0.5]


@pytest.mark.parametrize("path", sorted(CATALOGUE))
def test_every_mapped_path_round_trips(encoder: FrameEncoder, path: str) -> None:
    b = encoder.mapping.by_path()[path]
    sig = b.message.get_signal_by_name(b.signal)
    for value in _samples(b):
        frame, back = _decode(encoder, b, value)
        if isinstance(value, float):
            assert isinstance(back, float)
            assert abs(back - value) <= sig.scale / 2 + 1e-9, (path, value, back)
        else:
            assert back == value and type(back) is type(value), (path, value, back)
        assert len(frame.data) == b.message.length
        assert frame.is_extended_id == b.message.is_extended_frame
        assert frame.is_fd == b.message.is_fd


def test_special_frames_have_the_right_shape(encoder: FrameEncoder) -> None:
    by_path = encoder.mapping.by_path()
    temp = by_path["Vehicle.Powertrain.TractionBattery.Temperature.Average"]
    frame, back = _decode(encoder, temp, 18.5)
    assert frame.is_fd and frame.bitrate_switch and len(frame.data) == 64 and back == 18.5

    rfid = by_path["Vehicle.Private.Charging.RfidAuthorization"]
    frame, back = _decode(encoder, rfid, "REJECTED")
    assert frame.is_extended_id and frame.arbitration_id == 0x18FF50E5 and back == "REJECTED"

    departure = by_path["Vehicle.Private.Climate.DepartureTime"]
    _, back = _decode(encoder, departure, None)
    assert back is None
    _, back = _decode(encoder, departure, 390.0)
    assert back == 390.0


def test_each_tpms_frame_carries_one_wheel(encoder: FrameEncoder) -> None:
    tyres = [p for p in CATALOGUE if p.endswith("Tire.Pressure")]
    state: dict[str, Value | None] = {p: 400.0 + 10 * i for i, p in enumerate(tyres)}
    msg = encoder.message("TPMS_Pressures")
    bindings = encoder.bindings_of(msg)
    seen: dict[str, Value | None] = {}
    for mux in encoder.mux_values(msg):
        decoded = msg.decode(encoder.encode(msg, state, mux=mux), decode_choices=False)
        assert decoded["TPMS_WheelIndex"] == mux
        carried = [b for b in bindings if b.signal in decoded]
        assert len(carried) == 1
        seen[carried[0].path] = carried[0].to_value(decoded[carried[0].signal])
    assert seen == state
    with pytest.raises(ConfigError, match="multiplexer value"):
        encoder.encode(msg, state, mux=7)


@settings(max_examples=60, deadline=None)
@given(
    lat=st.floats(min_value=-90.0, max_value=90.0),
    lon=st.floats(min_value=-180.0, max_value=180.0),
    speed=st.floats(min_value=0.0, max_value=320.0),
)
def test_gnss_and_speed_round_trip_anywhere(
    encoder: FrameEncoder, lat: float, lon: float, speed: float
) -> None:
    by_path = encoder.mapping.by_path()
    for path, value in (
        ("Vehicle.CurrentLocation.Latitude", lat),
        ("Vehicle.CurrentLocation.Longitude", lon),
        ("Vehicle.Speed", speed),
    ):
        b = by_path[path]
        scale = b.message.get_signal_by_name(b.signal).scale
        _, back = _decode(encoder, b, value)
        assert isinstance(back, float) and abs(back - value) <= scale / 2 + 1e-9


def test_unmapped_signals_take_raw_values_or_defaults(encoder: FrameEncoder) -> None:
    msg = encoder.message("VCU_Drive")
    data = encoder.encode(msg, {"Vehicle.Speed": 50.0}, raw={"VCU_Counter": 9.0})
    decoded = msg.decode(data, decode_choices=False)
    assert decoded["VCU_Counter"] == 9 and decoded["VCU_AccelPedal"] == 0
    inverter = encoder.message("MCU_Torque")
    decoded = inverter.decode(encoder.encode(inverter, {}), decode_choices=False)
    assert decoded["MCU_InverterTemp"] == 0


def test_values_the_dbc_cannot_carry_are_config_errors(encoder: FrameEncoder) -> None:
    with pytest.raises(ConfigError, match="VCU_Drive"):
        encoder.encode("VCU_Drive", {"Vehicle.Speed": 400.0})
    with pytest.raises(ConfigError, match="no DBC value"):
        encoder.encode("VCU_Drive", {"Vehicle.Powertrain.Transmission.SelectedGear": "B"})
    with pytest.raises(ConfigError, match="no message"):
        encoder.encode("NOPE", {})


def test_request_frames(encoder: FrameEncoder) -> None:
    req = encoder.mapping.requests
    assert req is not None
    frame = encoder.encode_request("set_departure", 390, 17, timestamp=5.0)
    assert frame.arbitration_id == req.message.frame_id and not frame.is_rx
    decoded = req.message.decode(bytes(frame.data), decode_choices=False)
    assert decoded == {"TCU_ReqType": 7, "TCU_ReqArgument": 390, "TCU_ReqCounter": 1}
    lock = req.message.decode(bytes(encoder.encode_request("lock").data), decode_choices=False)
    assert lock["TCU_ReqType"] == 1 and lock["TCU_ReqArgument"] == 0
    with pytest.raises(ConfigError, match="open_bonnet"):
        encoder.encode_request("open_bonnet")


def test_cyclic_messages_are_every_timed_message(encoder: FrameEncoder, db: Any) -> None:
    cyclic = encoder.cyclic_messages()
    assert {m.name for m, _ in cyclic} == {m.name for m in db.messages} - {"TCU_Request"}
    assert dict((m.name, c) for m, c in cyclic)["VCU_Drive"] == pytest.approx(0.01)
    counters = {s.name for s in encoder.counter_signals("BMS_CellStats")}
    assert counters == {"BMS_StatsCounter"}
