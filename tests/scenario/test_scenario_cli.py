"""``tcu scenario run|validate``: exit codes, the summary, JUnit XML, -j."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from tcu.cli.main import main

REPO = Path(__file__).resolve().parents[2]
GOOD = """
name: lock refused
initial: {Vehicle.Cabin.Door.Row1.DriverSide.IsOpen: true, Vehicle.Speed: 0}
steps:
  - at: 10
    command: lock
    expect:
      verdict: {service: lock, outcome: refused, reasons: [signal_unknown, door_open]}
"""
WRONG = """
name: lock wrong
tags: [lock]
initial: {Vehicle.Cabin.Door.Row1.DriverSide.IsOpen: true, Vehicle.Speed: 0}
steps:
  - at: 10
    command: lock
    expect:
      verdict: {service: lock, outcome: allowed}
"""


@pytest.fixture
def suite(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    d = tmp_path / "scenarios"
    d.mkdir()
    (d / "good.yaml").write_text(GOOD)
    (d / "wrong.yaml").write_text(WRONG)
    return d


def test_validate(suite: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["scenario", "validate", "scenarios"]) == 0
    assert capsys.readouterr().out.strip() == "ok: 2 files, 2 cases"
    (suite / "bad.yaml").write_text("name: b\nsteps:\n  - at: 1\n    command: lok\n")
    assert main(["scenario", "validate", "scenarios"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith("error: scenarios/bad.yaml:4:14: steps[0].command: unknown command")
    assert main(["scenario", "run", "scenarios"]) == 2


def test_run_summary_and_junit(suite: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["scenario", "run", "scenarios", "--junit-xml", "out/report.xml"]) == 1
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0].split()[:6] == ["scenario", "case", "result", "vehicle", "time", "wall"]
    rows = [line.split()[:4] for line in lines[2:4]]
    assert rows == [
        ["scenarios/good.yaml", "lock", "refused", "passed"],
        ["scenarios/wrong.yaml", "lock", "wrong", "FAILED"],
    ]
    assert lines[-1] == "scenarios: 1 passed, 1 failed"
    assert "    outcome   allowed        refused" in out
    root = ET.parse("out/report.xml").getroot()
    assert root.tag == "testsuites"
    assert (root.get("tests"), root.get("failures"), root.get("errors")) == ("2", "1", "0")
    cases = {c.get("name"): c for c in root.iter("testcase")}
    assert set(cases) == {"lock refused", "lock wrong"}
    assert cases["lock refused"].find("failure") is None
    failure = cases["lock wrong"].find("failure")
    assert failure is not None
    assert failure.get("message") == "expect verdict: the actual values differ (outcome)"
    assert failure.text is not None
    assert "scenarios/wrong.yaml:9:16: expect verdict" in failure.text
    assert "<-- differs" in failure.text
    props = {p.get("name"): p.get("value") for p in cases["lock wrong"].iter("property")}
    assert props == {"vehicle_time_s": "10", "tags": "lock"}


def test_jobs_give_the_same_report(suite: Path) -> None:
    def report(jobs: str) -> list[tuple[str | None, str | None, bytes]]:
        assert main(["scenario", "run", "scenarios", "-j", jobs, "--junit-xml", f"{jobs}.xml"]) == 1
        root = ET.parse(f"{jobs}.xml").getroot()
        for el in root.iter():
            el.attrib.pop("time", None)
        return [(c.get("classname"), c.get("name"), ET.tostring(c)) for c in root.iter("testcase")]

    assert report("1") == report("2")


def test_select_by_tag_and_broker_option(suite: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["scenario", "run", "scenarios", "-m", "lock"]) == 1
    assert capsys.readouterr().out.splitlines()[-1] == "scenarios: 0 passed, 1 failed"
    assert main(["scenario", "run", "scenarios", "-m", "charging"]) == 2
    capsys.readouterr()
    assert main(["scenario", "run", "scenarios/good.yaml", "--broker", "rabbit"]) == 2
    assert "invalid choice: 'rabbit'" in capsys.readouterr().err


def test_the_shipped_suite_passes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO)
    assert main(["scenario", "run", "scenarios"]) == 0
