"""Mapping checks and frame decoding: multiplexed, extended, CAN FD, staleness, change-only."""

from __future__ import annotations

from pathlib import Path

import can
import pytest

from tcu.can.setup import load_bus_setup
from tcu.core import TcuCore
from tcu.errors import ConfigError
from tcu.vehicle import catalogue as c
from tests.helpers import MINI_MAPPING, MODEL3_DBC, write_mini


@pytest.fixture
def core(tmp_path: Path) -> TcuCore:
    _, m = write_mini(tmp_path)
    return TcuCore(load_bus_setup(mapping=m).mapping)


def frame(arb: int, data: bytes, *, ext: bool = False, fd: bool = False) -> can.Message:
    return can.Message(arbitration_id=arb, data=data, is_extended_id=ext, is_fd=fd)


def test_standard_frame_decodes_with_value_map(core: TcuCore) -> None:
    core.handle(frame(0x3A0, bytes([1, 3])), 0.0)
    assert core.state.get(c.BONNET, 0.0) is True
    assert core.state.get(c.GEAR, 0.0) == "D"


def test_extended_id_does_not_collide_with_standard(core: TcuCore) -> None:
    power = (1105).to_bytes(2, "little")
    core.handle(frame(0x18FF50E5, bytes([1]) + power + bytes(5), ext=True), 0.0)
    assert core.state.get(c.PLUG_CONNECTED, 0.0) is True
    assert core.state.get(c.CHARGING_POWER, 0.0) == pytest.approx(110.5)
    core.handle(frame(0x18FF50E5, bytes(8), ext=False), 0.1)
    assert core.summary_counts()["unknown_id_frames"] == 1


def test_multiplexed_pages_refresh_only_their_own_signals(core: TcuCore) -> None:
    core.handle(frame(0x3C0, bytes([0, 200, 0])), 0.0)  # wheel 0 -> FL 400 kPa
    core.handle(frame(0x3C0, bytes([1, 150, 0])), 0.5)  # wheel 1 -> FR 300 kPa
    assert core.state.get(c.TYRE_FRONT_LEFT, 0.5) == 400
    assert core.state.get(c.TYRE_FRONT_RIGHT, 0.5) == 300
    for i in range(1, 8):  # only FR keeps arriving
        core.handle(frame(0x3C0, bytes([1, 150, 0])), 0.5 + i * 0.5)
    assert core.state.get(c.TYRE_FRONT_RIGHT, 4.0) == 300
    assert core.state.get(c.TYRE_FRONT_LEFT, 4.0) is None  # stale: > 3 s without page 0


def test_fd_frame_64_bytes(core: TcuCore) -> None:
    data = bytearray(64)
    data[0:2] = (805).to_bytes(2, "little")
    data[63] = 65
    core.handle(frame(0x2BC, bytes(data), fd=True), 0.0)
    assert core.state.get(c.SOC, 0.0) == pytest.approx(80.5)
    assert core.state.get(c.BATTERY_TEMP, 0.0) == 25


def test_unchanged_bytes_are_not_decoded_but_refresh(core: TcuCore) -> None:
    for i in range(10):
        core.handle(frame(0x3A0, bytes([1, 0])), i * 0.5)
    counts = core.summary_counts()
    assert counts["decoded_frames"] == 1
    assert counts["unchanged_frames"] == 9
    assert core.state.get(c.BONNET, 4.5) is True  # refreshed by identical frames
    assert core.state.get(c.BONNET, 5.6) is None  # 1.1 s after the last frame: stale


def test_stale_signal_reads_unknown_never_last_value(core: TcuCore) -> None:
    core.handle(frame(0x3A0, bytes([0, 0])), 10.0)
    assert core.state.get(c.GEAR, 11.0) == "P"
    assert core.state.get(c.GEAR, 11.01) is None
    assert core.state.is_stale(c.GEAR, 11.01)
    assert core.state.get(c.SOC, 11.0) is None and not core.state.is_stale(c.SOC, 11.0)


def test_short_frame_is_a_bad_frame(core: TcuCore) -> None:
    core.handle(frame(0x3A0, bytes([1])), 0.0)
    counts = core.summary_counts()
    assert counts["bad_frames"] == 1 and counts["decoded_frames"] == 0
    assert "BODY" in core.decoder.bad_examples[0]


def test_error_and_remote_frames_are_counted(core: TcuCore) -> None:
    core.handle(can.Message(is_error_frame=True), 0.0)
    core.handle(can.Message(arbitration_id=0x3A0, is_remote_frame=True, dlc=2), 0.0)
    counts = core.summary_counts()
    assert (counts["error_frames"], counts["remote_frames"], counts["decoded_frames"]) == (1, 1, 0)


@pytest.mark.parametrize(
    ("old", "new", "match"),
    [
        ("signal: Bonnet", "signal: Bonet", r"signals\[0\]\.signal: message BODY has no signal"),
        ("message: BODY", "message: BODDY", r"signals\[0\]\.message: the DBC has no message"),
        ("path: Vehicle.Body.Hood.IsOpen", "path: Vehicle.Body Hood", r"signals\[0\]\.path"),
        ("stale_after: 1.0", "stale_after: -1", r"signals\[0\]\.stale_after"),
        ("values: {0: P, 1: R, 2: N, 3: D}", "values: {0: Park}", r"signals\[1\]\.values"),
        (
            "version: 1",
            "version: 1\n  bad: [",
            r"mini\.mapping\.yaml:\d+:\d+: mapping is not valid",
        ),
        ("dbc: mini.dbc", "dbc: nothere.dbc", r"nothere\.dbc: database file not found"),
    ],
)
def test_bad_mapping_names_file_and_field(tmp_path: Path, old: str, new: str, match: str) -> None:
    _, m = write_mini(tmp_path, mapping=MINI_MAPPING.replace(old, new, 1))
    with pytest.raises(ConfigError, match=match) as e:
        load_bus_setup(mapping=m)
    assert "mini" in str(e.value)


def test_bad_dbc_is_a_config_error(tmp_path: Path) -> None:
    _, m = write_mini(tmp_path, dbc="BO_ this is not a dbc\n")
    with pytest.raises(ConfigError, match=r"mini\.dbc"):
        load_bus_setup(mapping=m)


def test_dbc_without_mapping_is_refused(tmp_path: Path) -> None:
    d, _ = write_mini(tmp_path)
    with pytest.raises(ConfigError, match="needs --mapping"):
        load_bus_setup(dbc=d)


@pytest.mark.skipif(not MODEL3_DBC.exists(), reason="shared fixtures not present")
def test_real_dbc_loads_non_strictly_with_a_warning(tmp_path: Path) -> None:
    m = tmp_path / "m3.yaml"
    m.write_text(
        "signals:\n"
        "  - path: Vehicle.Chassis.Axle.Row1.Wheel.Left.Tire.Pressure\n"
        "    message: ID219VCSEC_TPMSData\n"
        "    signal: VCSEC_TPMSPressure0\n"
        "    stale_after: 5\n"
        "    scale: 100\n"
    )
    setup = load_bus_setup(dbc=MODEL3_DBC, mapping=m)
    assert any("loaded non-strictly" in w and "DI_lashAngle" in w for w in setup.warnings)
    core = TcuCore(setup.mapping)
    core.handle(frame(0x219, bytes([0, 100, 0, 0, 0])), 0.0)  # 100 * 0.025 bar = 2.5 bar
    assert core.state.get(c.TYRE_FRONT_LEFT, 0.0) == pytest.approx(250.0)


def test_bits_outside_mapped_signals_do_not_trigger_decoding(core: TcuCore) -> None:
    # bit 7 of byte 0 and byte 1's upper bits belong to no mapped signal (as a counter)
    for i, data in enumerate(([1, 3], [0x81, 3], [0x41, 0x23], [0x01, 0x03], [0x00, 0x03])):
        core.handle(frame(0x3A0, bytes(data)), i * 0.1)
    counts = core.summary_counts()
    assert counts["decoded_frames"] == 2  # the first, and the bonnet closing
    assert counts["unchanged_frames"] == 3
    assert core.state.get(c.BONNET, 0.4) is False
