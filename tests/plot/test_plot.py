"""Timelines and exports of a real replay, checked by content against the ``--json`` state."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tcu.cli.main import main
from tcu.cli.plot import replay_with_outputs
from tcu.compose.replay import ReplayOptions
from tcu.plot.figure import build_figure, verdict_text
from tcu.plot.html import DATA_ID, timeline_page
from tcu.plot.outputs import OutputOptions, Outputs
from tcu.plot.signals import resolve
from tcu.plot.timeline import SignalTap, Timeline
from tcu.runtime.host import Sink
from tcu.vehicle import catalogue as cat
from tests.helpers import REPO

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")
pacsv = pytest.importorskip("pyarrow.csv")

CITY = REPO / "can_traces" / "city_delivery.blf"


@pytest.fixture(scope="module")
def city(tmp_path_factory: pytest.TempPathFactory) -> tuple[Timeline, dict[str, Any], Path]:
    """One replay of city_delivery.blf with a recorder and a wide CSV export."""
    d = tmp_path_factory.mktemp("city")
    outputs = Outputs(OutputOptions(plot=d / "city.png", export=d / "city.csv"))
    report, written = replay_with_outputs(ReplayOptions(trace=CITY), outputs, progress=None)
    assert {p.name for p in written} == {
        "city.png",
        "city.csv",
        "city.verdicts.csv",
        "city.sessions.csv",
        "city.commands.csv",
        "city.link.csv",
    }
    return outputs.recorder.timeline, report.as_json(), d


def known_state(summary: dict[str, Any]) -> dict[str, Any]:
    return {p: v for p, v in summary["state"].items() if v is not None}


def test_figure_rows_series_and_annotations(city: tuple[Timeline, dict[str, Any], Path]) -> None:
    tl, summary, d = city
    assert (d / "city.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    fig = build_figure(tl, title="city")
    axes = {ax.get_label(): ax for ax in fig.axes}
    for name in (
        "signals:percent",
        "signals:kPa",
        "signals:celsius",
        "states",
        "sessions",
        "verdicts",
        "link",
        "telemetry",
        "telemetry:records",
    ):
        assert name in axes, name
    # one shared time axis: every row shows the same span
    limits = {ax.get_xlim() for ax in fig.axes}
    assert len(limits) == 1
    # the signal lines end on the state the replay ended with
    soc = next(line for line in axes["signals:percent"].get_lines() if line.get_gid() == cat.SOC)
    assert soc.get_ydata()[-1] == pytest.approx(summary["state"][cat.SOC])
    tyres = {line.get_gid() for line in axes["signals:kPa"].get_lines()}
    assert tyres == set(cat.TYRES)
    lanes = [t.get_text() for t in axes["states"].get_yticklabels()]
    assert {"gear", "charging", "plug connected", "locked", "driver door open"} <= set(lanes)
    # every verdict is a marker, with the outcome's style
    markers = sum(
        len(c.get_offsets())
        for c in axes["verdicts"].collections
        if str(c.get_gid()).startswith("verdicts:")
    )
    assert markers == len(summary["verdicts"]) > 0
    labels = [t.get_text() for t in axes["verdicts"].texts if t.get_gid() == "verdict-label"]
    refused = [v for v in summary["verdicts"] if v["outcome"] == "refused"]
    assert refused
    shown = " | ".join(labels)
    # a group of verdicts is shown by its most severe one, named with its reasons
    first = refused[0]
    assert f"refused: {first['reasons'][0]['code']}" in shown
    # labels that would overlap are merged: the counts add up to the verdicts
    counted = sum(1 + int(m.group(1)) for m in re.finditer(r"\(\+(\d+) more\)", shown))
    plain = sum(1 for text in labels if "more)" not in text)
    assert counted + plain == len(summary["verdicts"])
    # sessions as spans, the SIM link as a band
    sessions = {s["session_id"] for s in summary["sessions"]}
    spans = sum(
        len(c.get_paths()) for c in axes["sessions"].collections if c.get_gid() == "session"
    )
    assert spans == len(sessions)
    assert any(str(c.get_gid()).startswith("link:home") for c in axes["link"].collections)


def test_figure_vehicle_time_and_a_minute_window(
    city: tuple[Timeline, dict[str, Any], Path],
) -> None:
    tl, _, _ = city
    fig = build_figure(tl, clock=False)
    bottom = fig.axes[-1] if fig.axes[-1].get_label() != "telemetry:records" else fig.axes[-2]
    assert bottom.get_xlabel() == "vehicle time (h:mm:ss)"
    assert bottom.get_xlim() == pytest.approx((tl.start, tl.end))


def test_html_embeds_the_run_and_loads_nothing(
    city: tuple[Timeline, dict[str, Any], Path],
) -> None:
    tl, summary, _ = city
    page = timeline_page(tl, title="city")
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page)
    assert "http://" not in page and "https://" not in page
    m = re.search(rf'<script type="application/json" id="{DATA_ID}">(.*?)</script>', page, re.S)
    assert m is not None
    data = json.loads(m.group(1))
    assert [(v["t"], v["outcome"], v["reasons"]) for v in data["verdicts"]] == [
        (v["t"], v["outcome"], [r["code"] for r in v["reasons"]]) for v in summary["verdicts"]
    ]
    ids = {s["session_id"] for s in data["sessions"]}
    assert ids == {s["session_id"] for s in summary["sessions"]}
    for s in data["sessions"]:
        last = [t for t in summary["sessions"] if t["session_id"] == s["session_id"]][-1]
        assert s["state"] == last["to_state"]
    soc = next(s for s in data["signals"] if s["path"] == cat.SOC)
    assert soc["v"][-1] == pytest.approx(summary["state"][cat.SOC])
    assert data["link"][-1]["plmn"] == summary["link"]["plmn"]
    assert data["clock"] is True and data["origin_epoch"] > 1e9


def test_csv_export_reads_back_equal_to_the_json(
    city: tuple[Timeline, dict[str, Any], Path],
) -> None:
    _, summary, d = city
    table = pacsv.read_csv(d / "city.csv")
    assert table.column_names[0] == "time_s"
    assert f"{cat.SOC} [percent]" in table.column_names
    assert cat.GEAR in table.column_names
    times = table.column("time_s").to_pylist()
    assert times == sorted(times) and len(set(times)) == len(times)
    last = {name.split(" [")[0]: table.column(name)[-1].as_py() for name in table.column_names}
    for path, value in known_state(summary).items():
        if isinstance(value, float):
            assert last[path] == pytest.approx(value), path
        else:
            assert last[path] == value, path
    verdicts = pacsv.read_csv(d / "city.verdicts.csv").to_pylist()
    assert [(v["time_s"], v["outcome"]) for v in verdicts] == [
        (pytest.approx(v["t"]), v["outcome"]) for v in summary["verdicts"]
    ]
    sessions = pacsv.read_csv(d / "city.sessions.csv").to_pylist()
    assert [(s["session_id"], s["to_state"]) for s in sessions] == [
        (s["session_id"], s["to_state"]) for s in summary["sessions"]
    ]
    link = pacsv.read_csv(d / "city.link.csv").to_pylist()
    assert link[-1]["plmn"] == summary["link"]["plmn"]


def test_parquet_long_export_through_the_cli(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import tcu.plot.export

    monkeypatch.setattr(tcu.plot.export, "ROW_GROUP", 1000)
    out = tmp_path / "city.parquet"
    page = str(tmp_path / "c.html")
    code = main(["replay", str(CITY), "--export", str(out), "--long", "--plot", page, "--json"])
    assert code == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["written"][0] == str(out)
    table = pq.read_table(out)
    assert table.column_names == ["time_s", "signal", "unit", "number", "text"]
    # written as the replay ran, a row group at a time
    groups = pq.ParquetFile(out).num_row_groups
    assert groups == -(-table.num_rows // 1000) and groups > 1
    last: dict[str, Any] = {}
    for row in table.to_pylist():
        last[row["signal"]] = row["text"] if row["text"] is not None else row["number"]
    for path, value in known_state(summary).items():
        got = last[path]
        if isinstance(value, bool):
            assert got == float(value), path
        elif isinstance(value, float):
            assert got == pytest.approx(value), path
        else:
            assert got == value, path
    verdicts = pq.read_table(tmp_path / "city.verdicts.parquet").to_pylist()
    assert [v["outcome"] for v in verdicts] == [v["outcome"] for v in summary["verdicts"]]
    assert (tmp_path / "c.html").stat().st_size > 1000


def test_plot_cli_with_chosen_signals(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "window.svg"
    window = ["--start", "600", "--stop", "660", "--time", "vehicle"]
    code = main(["plot", str(CITY), "-o", str(out), "soc", cat.SPEED, *window])
    assert code == 0
    text = out.read_text()
    assert text.startswith("<?xml") and "<svg" in text
    assert f"wrote {out}" in capsys.readouterr().out
    # the window is what the figure shows, to the second
    assert "(0:01:00 of vehicle time)" in text


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-o", "{d}/x.gif"], "error: -o {d}/x.gif: the suffix must be one of"),
        (["-o", "{d}/nope/x.png"], "does not exist"),
        (["-o", "{d}/x.png", "sock"], "error: signal 'sock': not a VSS path"),
        (["-o", "{d}/x.png", "--export", "{d}/x.xlsx"], "error: --export {d}/x.xlsx"),
        (["-o", "{d}/x.png", "--long"], "error: --long: only with --export"),
    ],
)
def test_plot_cli_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    argv = ["plot", str(CITY), *(a.format(d=tmp_path) for a in args)]
    assert main(argv) == 2
    assert message.format(d=tmp_path) in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


def test_replay_signal_needs_plot(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["replay", str(CITY), "--signal", "soc", "--export", str(tmp_path / "x.csv")]) == 2
    assert "error: soc: signals to draw only with --plot" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


def test_a_missing_library_names_the_extra(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import tcu.plot.deps as deps

    real = deps.importlib.import_module

    def no_matplotlib(name: str) -> Any:
        if name.startswith(("matplotlib", "pyarrow")):
            raise ImportError(name)
        return real(name)

    real_spec = deps.importlib.util.find_spec

    def no_spec(name: str) -> Any:
        return None if name.startswith(("matplotlib", "pyarrow")) else real_spec(name)

    monkeypatch.setattr(deps.importlib, "import_module", no_matplotlib)
    monkeypatch.setattr(deps.importlib.util, "find_spec", no_spec)
    assert main(["plot", str(CITY), "-o", str(tmp_path / "x.png")]) == 2
    err = capsys.readouterr().err
    assert "needs the Python package matplotlib" in err and "pip install 'tcu-sim[plot]'" in err
    assert "frames" not in err and not list(tmp_path.iterdir())  # before any replay
    assert main(["replay", str(CITY), "--export", str(tmp_path / "x.parquet")]) == 2
    assert "pyarrow" in capsys.readouterr().err


def test_defaults_are_the_issue_s_signals() -> None:
    paths = resolve([])
    for p in (cat.SOC, cat.PLUG_CONNECTED, cat.CHARGING_STATUS, cat.GEAR, cat.LOCKED):
        assert p in paths
    assert cat.OUTSIDE_TEMP in paths


def chromium() -> str:
    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    if binary is None:
        message = "chromium not found (apt-get install chromium)"
        if os.environ.get("CI") == "true":
            pytest.fail(message + " and CI=true")
        pytest.skip(message)
    return binary


def rendered(binary: str, url: str, profile: Path) -> dict[str, Any]:
    """What the page's script drew, as it reports it on ``<body data-rendered>``."""
    run = subprocess.run(
        [
            binary,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            f"--user-data-dir={profile}",
            "--window-size=1400,1200",
            "--dump-dom",
            url,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    m = re.search(r'data-rendered="([^"]*)"', run.stdout)
    assert m is not None, run.stderr[-2000:]
    counts: dict[str, Any] = json.loads(m.group(1).replace("&quot;", '"'))
    return counts


def test_the_page_draws_in_a_real_browser(
    city: tuple[Timeline, dict[str, Any], Path], tmp_path: Path
) -> None:
    binary = chromium()
    tl, summary, _ = city
    page = tmp_path / "city.html"
    page.write_text(timeline_page(tl, title="city"))
    whole = rendered(binary, page.as_uri(), tmp_path / "profile")
    assert whole["sessions"] == len({s["session_id"] for s in summary["sessions"]})
    assert 0 < whole["verdict_markers"] <= len(summary["verdicts"])
    assert whole["lines"] >= 4 and whole["link_segments"] >= 1
    # the whole run, and a little room after its last instant
    pad = max(1.0, (tl.end - tl.start) * 0.03)
    assert whole["view"] == [pytest.approx(tl.start), pytest.approx(tl.end + pad)]
    # zoomed to one minute around the last verdict: only what falls in it is drawn
    t = summary["verdicts"][-1]["t"]
    minute = rendered(binary, f"{page.as_uri()}#t={t - 30},{t + 30}", tmp_path / "profile")
    assert minute["view"] == [pytest.approx(t - 30), pytest.approx(t + 30)]
    in_view = [v for v in summary["verdicts"] if t - 30 <= v["t"] <= t + 30]
    assert 1 <= minute["verdict_markers"] <= len(in_view) < len(summary["verdicts"])
    spans = [s for s in tl.sessions() if s["end"] >= t - 30 and s["start"] <= t + 30]
    assert minute["sessions"] == len(spans) < whole["sessions"]


def test_verdict_text_names_outcome_and_reasons() -> None:
    v = {"outcome": "refused", "reasons": ["rfid_rejected"], "warnings": ["cold"]}
    assert verdict_text(v) == "refused: rfid_rejected / cold"


class _Probe(Sink):
    def booted(self, tcu: Any, now: float) -> None:
        self.tcu = tcu


def test_nothing_listens_unless_a_plot_or_export_is_asked(tmp_path: Path) -> None:
    """A replay without --plot or --export has no tap on the core (its speed is untouched)."""
    trace = REPO / "can_traces" / "cross_border.log"
    bare = _Probe()
    replay_with_outputs(
        ReplayOptions(trace=trace, sinks=(bare,)), Outputs(OutputOptions()), progress=None
    )
    probe = _Probe()
    outputs = Outputs(OutputOptions(plot=tmp_path / "x.html"))
    replay_with_outputs(ReplayOptions(trace=trace, sinks=(probe,)), outputs, progress=None)
    assert not any(isinstance(p, SignalTap) for p in bare.tcu.core.parts)
    taps = [p for p in probe.tcu.core.parts if isinstance(p, SignalTap)]
    assert len(taps) == 1 and len(probe.tcu.core.parts) == len(bare.tcu.core.parts) + 1
