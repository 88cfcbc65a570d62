"""``tcu replay`` at its edges: bad values, injected commands, cut and foreign traces, JSON.

Each test here reproduces one of the problems a new user met: a value that
hung or passed silently, a command whose fate went unreported, a truncated or foreign
trace that gave no warning, a ``--json`` with other keys through a broker.
"""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
from pathlib import Path

import can
import pytest

from cloud_stub.broker import MosquittoProcess
from tcu.can.setup import TRACES
from tcu.cli.main import build_parser, main
from tcu.compose.replay import ReplayOptions, replay_file
from tcu.link.sim import LinkConfig
from tcu.output import Progress
from tests.helpers import PYCAN_FIXTURES, assert_replay_summary

CITY = TRACES / "city_delivery.blf"


def replay_json(capsys: pytest.CaptureFixture[str], *args: str, code: int = 0) -> dict:  # type: ignore[type-arg]
    assert main(["replay", *args, "--json"]) == code
    out = json.loads(capsys.readouterr().out)
    assert_replay_summary(out)
    return out  # type: ignore[no-any-return]


# --- 1. every value checked at the edge --------------------------------------------------


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--command", "nan:lock"], "argument --command: 'nan:lock': T must be"),
        (["--command", "inf:lock"], "argument --command: 'inf:lock': T must be"),
        (["--command", "1e9999:lock"], "argument --command: '1e9999:lock': T must be"),
        (["--command=-1:lock"], "argument --command: '-1:lock'"),
        (["--command", "50:set_departure:banana"], "'50:set_departure:banana': set_departure"),
        (["--command", "50:set_departure:25:99"], "departure time '25:99'"),
        (["--command", "50:set_departure"], "set_departure needs a departure time"),
        (["--command", "50:lock:now"], "lock takes no argument, got 'now'"),
        (["--command", "lock"], "T (vehicle time) is missing"),
        (["--command", "5:fly"], "unknown command 'fly'"),
        (["--command", ""], "argument --command: '': expected T:NAME[:ARG]"),
        (["--start", "100", "--stop", "50"], "--start 100 s must be before --stop 50 s"),
        (["--start", "7", "--stop", "7"], "--start 7 s must be before --stop 7 s"),
        (["--start", "nan"], "argument --start: 'nan' is not a time"),
        (["--stop", "inf"], "argument --stop: 'inf'"),
        (["--start", "1:99:00"], "argument --start: '1:99:00' is not a time"),
        (["--start", "1e300"], "argument --start: '1e300': more than"),
        (["--speed", "nan"], "argument --speed: 'nan'"),
        (["--speed", "-1"], "argument --speed: '-1'"),
        (["--speed", "1e-9"], "argument --speed: '1e-9': must be from 0.001"),
        (["--out-trace", "x.txt"], "argument --out-trace: unknown trace format '.txt'"),
        (["--out-trace", "/dev/null/x.asc"], "'/dev/null' is not a folder"),
        (["--broker", "http://h"], "argument --broker: broker URL 'http://h'"),
        (["--broker", "mqtt://h:99999"], "argument --broker:"),
    ],
)
def test_bad_values_name_option_and_value_exit_2(
    mini: tuple[Path, Path, Path],
    capsys: pytest.CaptureFixture[str],
    args: list[str],
    needle: str,
) -> None:
    d, m, t = mini
    assert main(["replay", str(t), "--dbc", str(d), "--mapping", str(m), *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and needle in err, err
    assert "Traceback" not in err


def test_nan_command_time_ends_at_once_in_a_fresh_process(mini: tuple[Path, Path, Path]) -> None:
    """It used to run forever at 100 % CPU: the driver's clock never passed NaN."""
    d, m, t = mini
    argv = ["replay", str(t), "--dbc", str(d), "--mapping", str(m), "--command", "nan:lock"]
    p = subprocess.run(
        [sys.executable, "-m", "tcu.cli.main", *argv],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert p.returncode == 2 and "error: argument --command: 'nan:lock'" in p.stderr


@pytest.mark.parametrize(
    ("spec", "t"),
    [("0:01:00:lock", 60.0), ("45:unlock", 45.0), ("0:00:30.5:set_departure:07:30", 30.5)],
)
def test_command_times_take_seconds_and_h_mm_ss(
    capsys: pytest.CaptureFixture[str], spec: str, t: float
) -> None:
    out = replay_json(capsys, str(TRACES / "city_delivery_bakery.asc"), "--command", spec)
    (cmd,) = out["commands"]
    assert cmd["spec"] == spec and cmd["t"] == t and cmd["injected"] is True
    assert cmd["results"] and cmd["results"][0]["t"] == pytest.approx(t)


def test_start_and_stop_take_h_mm_ss(capsys: pytest.CaptureFixture[str]) -> None:
    a = replay_json(capsys, str(CITY), "--start", "0:01:00", "--stop", "0:02:00")
    b = replay_json(capsys, str(CITY), "--start", "60", "--stop", "120")
    assert a["frames"] == b["frames"] > 0
    assert a["vehicle_time_s"] == pytest.approx(60, abs=0.1)


def test_start_after_the_trace_warns_and_never_reports_negative_time(
    capsys: pytest.CaptureFixture[str], mini: tuple[Path, Path, Path]
) -> None:
    d, m, t = mini
    out = replay_json(capsys, str(t), "--dbc", str(d), "--mapping", str(m), "--start", "100")
    assert out["vehicle_time_s"] == 0
    assert any("--start 100 s is after the last frame" in w for w in out["warnings"])


# --- 2. every injected command reported --------------------------------------------------


def test_every_injected_command_is_reported_with_its_fate(
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = replay_json(
        capsys,
        str(CITY),
        "--stop",
        "600",
        "--command",
        "60:lock",  # the van is driving: refused
        "--command",
        "100:set_departure:07:30",  # sent
        "--command",
        "5000:unlock",  # after --stop: never injected
    )
    lock, departure, late = out["commands"]
    assert lock["outcome"] == "refused" and lock["results"][0]["reasons"] == ["vehicle_moving"]
    assert departure["outcome"] == "sent" and departure["argument"] == "07:30"
    assert late == {
        "spec": "5000:unlock",
        "t": 5000.0,
        "command": "unlock",
        "argument": None,
        "command_id": "trace-3",
        "injected": False,
        "results": [],
        "outcome": "not_injected",
    }
    warnings = out["warnings"]
    assert any(
        w.startswith("--command 60:lock: refused at t=60 s (vehicle_moving)") for w in warnings
    )
    assert any(w.startswith("--command 5000:unlock: after the end of the trace") for w in warnings)
    assert not any("set_departure" in w for w in warnings)
    assert not any("Command(" in w for w in warnings), "no Python repr in a warning"


def test_text_summary_lists_injected_commands(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["replay", str(CITY), "--stop", "120", "--command", "60:lock"]) == 0
    text = capsys.readouterr().out
    assert "Injected commands" in text
    assert "60:lock" in text and "refused@60s (vehicle_moving)" in text


# --- 3. trace integrity --------------------------------------------------------------------


@pytest.mark.parametrize("size", [300_001, 468_104, 100])
def test_cut_blf_is_named_with_what_was_lost(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], size: int
) -> None:
    cut = tmp_path / "cut.blf"
    cut.write_bytes(CITY.read_bytes()[:size])
    out = replay_json(capsys, str(cut))
    (warning,) = [w for w in out["warnings"] if "BLF header" in w]
    assert f"BLF header says 109,355 objects in {CITY.stat().st_size:,} bytes" in warning
    assert f"{out['frames']:,} frames read: truncated at byte {size:,}" in warning
    assert out["frames"] < 109_355
    replay_json(capsys, str(cut), "--strict", code=1)


def test_whole_blf_has_no_integrity_warning(capsys: pytest.CaptureFixture[str]) -> None:
    out = replay_json(capsys, str(CITY), "--strict")
    assert out["frames"] == 109_355 and out["warnings"] == []


def test_random_bytes_named_asc_warn_no_frame(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    junk = tmp_path / "junk.asc"
    junk.write_bytes(os.urandom(20_000))
    out = replay_json(capsys, str(junk))
    assert out["frames"] == 0
    assert any(
        "no frame read from 20,000 bytes: is this a .asc trace?" in w for w in out["warnings"]
    )
    replay_json(capsys, str(junk), "--strict", code=1)


def test_half_an_asc_is_named_cut(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = (TRACES / "city_delivery_bakery.asc").read_text()
    half = tmp_path / "half.asc"
    half.write_text(text[: len(text) // 2])
    out = replay_json(capsys, str(half))
    assert out["frames"] > 0
    assert any("has no line end: the file was cut mid-line" in w for w in out["warnings"])
    assert any("'Begin TriggerBlock' is never closed" in w for w in out["warnings"])


def test_cut_gzip_names_the_byte(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    body = "".join(f"({1700000000 + i / 100:.6f}) can0 3A0#01{i % 256:02X}\n" for i in range(20000))
    raw = gzip.compress(body.encode())
    cut = tmp_path / "cut.log.gz"
    cut.write_bytes(raw[: len(raw) // 2])
    out = replay_json(capsys, str(cut))
    assert 0 < out["frames"] < 20000
    assert any(
        "gzip stream cut" in w and f"ends at byte {len(raw) // 2:,}" in w for w in out["warnings"]
    )


@pytest.mark.parametrize("suffix", [".log", ".trc", ".csv"])
def test_text_formats_cut_mid_line_warn(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], suffix: str
) -> None:
    whole = tmp_path / f"whole{suffix}"
    with can.Logger(str(whole)) as log:
        for i in range(50):
            log.on_message_received(
                can.Message(timestamp=1700000000 + i / 10, arbitration_id=0x3A0, data=[1, i])
            )
    data = whole.read_bytes()
    cut = tmp_path / f"cut{suffix}"
    cut.write_bytes(data[: len(data) - 7])
    assert not [w for w in replay_json(capsys, str(whole))["warnings"] if "cut" in w]
    out = replay_json(capsys, str(cut))
    assert any("was cut mid-line" in w for w in out["warnings"]), out["warnings"]


# --- 4. foreign traces -------------------------------------------------------------------


@pytest.mark.skipif(not PYCAN_FIXTURES.exists(), reason="shared fixtures not present")
def test_foreign_trace_names_its_ids(capsys: pytest.CaptureFixture[str]) -> None:
    trace = PYCAN_FIXTURES / "issue_1256.asc"
    out = replay_json(capsys, str(trace))
    expected: dict[int, int] = {}
    for msg in can.LogReader(trace):
        if not (msg.is_error_frame or msg.is_remote_frame):
            expected[msg.arbitration_id] = expected.get(msg.arbitration_id, 0) + 1
    got = {int(u["id"], 16): u["frames"] for u in out["unknown_ids"]}
    assert got == expected and out["known_id_share"] == 0.0
    assert any(
        w.startswith(
            "no frame matches van.dbc (as mapped by van.mapping.yaml): is this the right DBC?"
        )
        for w in out["warnings"]
    )
    assert main(["replay", str(trace)]) == 0
    text = capsys.readouterr().out
    assert f"Unknown ids ({len(expected)}" in text
    never = [line for line in text.splitlines() if line.startswith("never seen (")]
    assert len(never) == 1 and "Vehicle.Speed" in never[0]
    assert "unknown" not in text.split("Final vehicle state")[1], (
        "unseen signals fold into one line"
    )


def test_text_lists_only_the_top_20_unknown_ids(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    trace = tmp_path / "many.log"
    trace.write_text(
        "".join(f"({1700000000 + i / 100:.6f}) can0 {0x600 + i % 30:03X}#00\n" for i in range(300))
    )
    out = replay_json(capsys, str(trace))
    assert len(out["unknown_ids"]) == 30
    assert main(["replay", str(trace)]) == 0
    text = capsys.readouterr().out
    assert "Unknown ids (30, top 20 by frames)" in text
    section = text.split("Unknown ids")[1].split("\n\n")[0]
    assert len([line for line in section.splitlines() if line.startswith("0x")]) == 20


# --- 7. one JSON summary ---------------------------------------------------------------------


def test_broker_json_has_the_same_keys_as_memory(
    mosquitto_broker: MosquittoProcess,
    mini: tuple[Path, Path, Path],
    capsys: pytest.CaptureFixture[str],
) -> None:
    d, m, t = mini
    t.write_text(t.read_text().rstrip("\n"))  # cut mid-line: both modes must say so
    memory = replay_json(capsys, str(t), "--dbc", str(d), "--mapping", str(m))
    url = f"mqtt://{mosquitto_broker.host}:{mosquitto_broker.port}"
    p = subprocess.run(
        [
            sys.executable,
            "-m",
            "tcu.cli.main",
            "replay",
            str(t),
            "--dbc",
            str(d),
            "--mapping",
            str(m),
            *("--broker", url, "--json"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert p.returncode == 0, p.stderr
    broker = json.loads(p.stdout)
    assert_replay_summary(broker)
    assert set(broker) == set(memory)
    assert broker["mode"] == "broker" and memory["mode"] == "memory"
    assert broker["frames"] == memory["frames"] == 6
    assert broker["backend"]["records_stored"] == broker["telemetry"]["records_produced"] > 0
    assert broker["state"] is None and broker["decoded_frames"] is None
    cut = [w for w in broker["warnings"] if "cut mid-line" in w]
    assert cut and cut == [w for w in memory["warnings"] if "cut mid-line" in w]


def test_link_time_is_the_trace_plus_the_drain_after_it() -> None:
    """A trace ending in a dead zone: the link's clock runs on while the outbox drains."""
    link = LinkConfig.from_dict(
        {"home_plmn": "242-01", "dead_zones": [{"name": "tunnel", "start": 500, "end": 900}]}
    )
    report = replay_file(ReplayOptions(trace=CITY, stop=600, link=link))
    lk = report.extra["link"]
    total = lk["time_home_s"] + lk["time_roaming_s"] + lk["time_unregistered_s"]
    assert lk["trace_s"] == 600 and lk["after_trace_s"] > 250
    assert total == pytest.approx(lk["trace_s"] + lk["after_trace_s"], abs=0.01)
    assert "of which after the last frame, draining (s)" in "\n".join(report.sections)
    plain = replay_file(ReplayOptions(trace=CITY, stop=600)).extra["link"]
    assert plain["after_trace_s"] < 15 and plain["trace_s"] == 600  # one batch window at most


# --- 8. conventions -------------------------------------------------------------------------


def _leaf_parsers(parser: object) -> list[tuple[str, object]]:
    import argparse

    assert isinstance(parser, argparse.ArgumentParser)
    out: list[tuple[str, object]] = []
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        return [(parser.prog, parser)]
    for action in subs:
        for child in action.choices.values():
            out += _leaf_parsers(child)
    return out


def test_every_command_of_both_programs_takes_v_and_q() -> None:
    from cloud_stub.cli import build_parser as cloud_parser

    leaves = _leaf_parsers(build_parser()) + _leaf_parsers(cloud_parser())
    assert len(leaves) > 12
    for prog, parser in leaves:
        options = {s for a in parser._actions for s in a.option_strings}  # type: ignore[attr-defined]
        assert {"-v", "-q", "--verbose", "--quiet"} <= options, prog


def test_both_programs_print_their_version(capsys: pytest.CaptureFixture[str]) -> None:
    from cloud_stub.cli import main as cloud_main

    assert main(["--version"]) == 0
    assert cloud_main(["--version"]) == 0
    out = capsys.readouterr().out.split()
    assert out[0] == "tcu-sim" and out[2] == "cloud-stub" and out[1] == out[3]


def test_tls_options_are_spelt_alike_with_the_old_spelling_kept() -> None:
    from cloud_stub.cli import build_parser as cloud_parser

    for argv in (
        ["--ca", "a", "--cert", "b", "--key", "c"],
        ["--cafile", "a", "--certfile", "b", "--keyfile", "c"],
    ):
        args = cloud_parser().parse_args(["serve", *argv])
        assert (args.cafile, args.certfile, args.keyfile) == ("a", "b", "c")
    usage = cloud_parser()._subparsers._group_actions[0].choices["serve"].format_help()  # type: ignore[union-attr]
    assert "--ca " in usage and "--cafile" not in usage
    tcu_args = build_parser().parse_args(
        ["replay", "x.log", "--ca", "a", "--cert", "b", "--key", "c"]
    )
    assert (tcu_args.ca, tcu_args.cert, tcu_args.key) == ("a", "b", "c")


class _Tty:
    def __init__(self) -> None:
        self.text = ""

    def isatty(self) -> bool:
        return True

    def write(self, s: str) -> int:
        self.text += s
        return len(s)

    def flush(self) -> None:
        pass


def test_progress_bar_advances_with_bytes_read() -> None:
    stream = _Tty()
    progress = Progress("replay", stream=stream)  # type: ignore[arg-type]
    replay_file(ReplayOptions(trace=CITY), progress=progress)
    shown = [float(x) for x in __import__("re").findall(r"(\d+\.\d)%", stream.text)]
    assert shown and max(shown) > 0.0


def test_quiet_prints_no_warnings(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    junk = tmp_path / "junk.asc"
    junk.write_bytes(b"\x00garbage\n" * 50)
    assert main(["replay", str(junk), "--json"]) == 0
    assert "warning: " in capsys.readouterr().err
    assert main(["replay", str(junk), "--json", "-q"]) == 0
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize("suffix", [".asc", ".blf", ".log", ".trc", ".csv", ".log.gz"])
def test_out_trace_is_read_back_by_replay(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], suffix: str
) -> None:
    out_trace = tmp_path / f"own{suffix}"
    first = replay_json(
        capsys,
        str(CITY),
        "--stop",
        "200",
        "--command",
        "100:set_departure:07:30",
        "--out-trace",
        str(out_trace),
    )
    written = first["out_trace"]["frames"]
    assert written > 0
    again = replay_json(capsys, str(out_trace))
    assert again["frames"] == written
