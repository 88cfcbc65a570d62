"""``tcu replay`` as a user runs it: summary, JSON, and clear errors with exit code 2."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tcu.cli.main import main
from tests.helpers import MODEL3_DBC, PYCAN_FIXTURES, REPO, assert_replay_summary


def run_json(capsys: pytest.CaptureFixture[str], *args: str) -> dict[str, object]:
    assert main(["replay", *args, "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert_replay_summary(out)
    return out  # type: ignore[no-any-return]


def test_json_summary_counts_every_frame(mini: tuple[Path, Path, Path], capsys) -> None:  # type: ignore[no-untyped-def]
    d, m, t = mini
    out = run_json(capsys, str(t), "--dbc", str(d), "--mapping", str(m))
    assert out["frames"] == 6
    assert out["decoded_frames"] == 3  # 3A0 first, 3C0, 3A0 changed; the short one is bad
    assert out["unknown_id_frames"] == 1
    assert out["bad_frames"] == 1
    assert out["vehicle_time_s"] == pytest.approx(0.5)
    state = out["state"]
    assert isinstance(state, dict)
    assert state["Vehicle.Body.Hood.IsOpen"] is False
    assert state["Vehicle.Powertrain.Transmission.SelectedGear"] == "D"
    assert state["Vehicle.Chassis.Axle.Row1.Wheel.Left.Tire.Pressure"] == 400
    assert state["Vehicle.Powertrain.TractionBattery.StateOfCharge.Current"] is None
    for key in ("error_frames", "wall_s"):
        assert key in out


def test_text_summary_is_a_table(mini: tuple[Path, Path, Path], capsys) -> None:  # type: ignore[no-untyped-def]
    d, m, t = mini
    assert main(["replay", str(t), "--dbc", str(d), "--mapping", str(m)]) == 0
    text = capsys.readouterr().out
    assert "frames read" in text and "Final vehicle state" in text
    assert re.search(r"Vehicle\.Powertrain\.Transmission\.SelectedGear +D\n", text)


def test_start_stop(mini: tuple[Path, Path, Path], capsys) -> None:  # type: ignore[no-untyped-def]
    _, m, t = mini
    out = run_json(capsys, str(t), "--mapping", str(m), "--start", "0.15", "--stop", "0.35")
    assert out["frames"] == 2


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["replay", "nothere.asc"], "nothere.asc: trace file not found"),
        (["replay", "{t}.xyz"], "unknown trace format '.xyz'"),
        (["replay", "{t}", "--mapping", "nothere.yaml"], "nothere.yaml: mapping file not found"),
        (["replay", "{t}", "--mapping", "{m}", "--command", "5:fly"], "unknown command 'fly'"),
        (["replay", "{t}", "--mapping", "{m}", "--command", "x:lock"], "T must be seconds"),
        (["replay", "{t}", "--mapping", "{m}", "--speed", "0"], "argument --speed: '0'"),
        (["replay", "{t}", "--mapping", "{m}", "--out-trace", "{t}.nope"], "--out-trace"),
        (["replay", "{t}", "--frobnicate"], "unrecognized arguments"),
    ],
)
def test_bad_input_exits_2_without_traceback(
    mini: tuple[Path, Path, Path], args: list[str], needle: str
) -> None:
    _, m, t = mini
    if args[1] == "{t}.xyz":
        Path(f"{t}.xyz").write_text("x")
    argv = [a.format(t=t, m=m) for a in args]
    p = subprocess.run(
        [sys.executable, "-m", "tcu.cli.main", *argv], capture_output=True, text=True, check=False
    )
    assert p.returncode == 2, p.stderr
    assert needle in p.stderr
    assert "Traceback" not in p.stderr
    assert p.stderr.strip().splitlines()[-1].startswith("error: ")


@pytest.mark.skipif(not PYCAN_FIXTURES.exists(), reason="shared fixtures not present")
def test_every_python_can_fixture_replays(capsys) -> None:  # type: ignore[no-untyped-def]
    files = sorted(p for p in PYCAN_FIXTURES.glob("*") if p.name != "LICENSE.txt")
    assert len(files) >= 20
    for f in files:
        out = run_json(capsys, str(f))
        assert isinstance(out["frames"], int) and out["frames"] > 0, f
        seen = (
            out["decoded_frames"]
            + out["unchanged_frames"]  # type: ignore[operator]
            + out["unknown_id_frames"]
            + out["bad_frames"]
            + out["error_frames"]
            + out["remote_frames"]
        )
        assert seen == out["frames"], f


@pytest.mark.skipif(not MODEL3_DBC.exists(), reason="shared fixtures not present")
def test_own_dbc_and_mapping_model3(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    import cantools

    db = cantools.database.load_file(str(MODEL3_DBC), strict=False)
    gear = db.get_message_by_name("ID118DriveSystemStatus")
    door = db.get_message_by_name("ID102VCLEFT_doorStatus")
    g = gear.encode({s.name: 0 for s in gear.signals} | {"DI_gear": 4}, strict=False)
    d = door.encode(
        {s.name: 0 for s in door.signals} | {"VCLEFT_frontLatchStatus": 1}, strict=False
    )
    trace = tmp_path / "m3.log"
    trace.write_text(f"(1.0) can0 118#{g.hex().upper()}\n(1.5) can0 102#{d.hex().upper()}\n")
    mapping = REPO / "docs" / "examples" / "model3.mapping.yaml"
    out = run_json(capsys, str(trace), "--dbc", str(MODEL3_DBC), "--mapping", str(mapping))
    assert out["decoded_frames"] == 2
    state = out["state"]
    assert isinstance(state, dict)
    assert state["Vehicle.Powertrain.Transmission.SelectedGear"] == "D"
    assert state["Vehicle.Cabin.Door.Row1.DriverSide.IsOpen"] is True
    warnings = out["warnings"]
    assert isinstance(warnings, list)
    assert any("loaded non-strictly" in w for w in warnings)
