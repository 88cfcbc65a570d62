"""``--report DIR``: an index, a page per case with its timeline and table, linked from JUnit."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

import tcu.scenario.scenario_world  # noqa: F401  (imported once, for the pytester run)
from tcu.cli.main import main
from tcu.plot.html import DATA_ID
from tests.scenario.test_scenario_plugin import BASE, CASES, INI

pytest_plugins = ["pytester"]


def embedded(page: str) -> dict[str, object]:
    m = re.search(rf'<script type="application/json" id="{DATA_ID}">(.*?)</script>', page, re.S)
    assert m is not None
    data: dict[str, object] = json.loads(m.group(1))
    return data


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_scenario_run_report(tmp_path: Path, capsys: pytest.CaptureFixture[str], jobs: str) -> None:
    suite = tmp_path / "charge.yaml"
    suite.write_text(BASE + CASES)
    report, junit = tmp_path / "report", tmp_path / "junit.xml"
    argv = ["scenario", "run", str(suite), "--report", str(report), "--junit-xml", str(junit)]
    assert main([*argv, "-j", jobs]) == 1  # the case "wrong" fails
    index = (report / "index.html").read_text()
    links = re.findall(r'<a href="(cases/[^"]+)">([^<]+)</a>', index)
    assert [name for _, name in links] == ["wrong", "right"]  # failures first
    assert index.index('class="bad">FAILED') < index.index('class="ok">passed')
    pages = {name: (report / href).read_text() for href, name in links}
    # the failing case: its table shows the differing field, expected against actual
    wrong = pages["wrong"]
    assert "FAILED" in wrong and "differs" in wrong
    row = re.search(r"<td>outcome</td><td>allowed</td><td>refused</td>", wrong)
    assert row is not None
    # its timeline holds the verdict the expectation was about
    data = embedded(wrong)
    verdicts = data["verdicts"]
    assert isinstance(verdicts, list)
    last = verdicts[-1]
    assert (last["t"], last["service"], last["outcome"], last["reasons"]) == (
        60.0,
        "charging",
        "refused",
        ["bonnet_open"],
    )
    # the steps are marked on the timeline, the failing one as such
    marks = data["marks"]
    assert isinstance(marks, list)
    assert [(m["t"], m["bad"]) for m in marks if m["bad"]] == [(60.0, True)]
    assert any("command start_charging" in m["text"] for m in marks)
    assert "differs" not in pages["right"] and "PASSED" in pages["right"]
    # JUnit points at each page
    root = ET.parse(junit).getroot()
    for case in root.iter("testcase"):
        prop = case.find("properties/property[@name='report']")
        assert prop is not None
        target = Path(prop.get("value", ""))
        assert target.is_file() and target.read_text() == pages[case.get("name", "")]
        out = case.find("system-out")
        assert out is not None and out.text == f"[[ATTACHMENT|{target}]]"
    assert f"report: {report / 'index.html'}" in capsys.readouterr().out


def test_report_must_be_a_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    suite = tmp_path / "charge.yaml"
    suite.write_text(BASE + CASES)
    (tmp_path / "file").write_text("")
    assert main(["scenario", "run", str(suite), "--report", str(tmp_path / "file")]) == 2
    assert "error: --report" in capsys.readouterr().err


def test_pytest_plugin_takes_the_same_option(pytester: pytest.Pytester) -> None:
    pytester.makeini(INI)
    d = pytester.mkdir("scenarios")
    (d / "charge.yaml").write_text(BASE + CASES)
    report = pytester.path / "report"
    result = pytester.runpytest_inprocess(
        "scenarios", f"--scenario-report={report}", "--junitxml=junit.xml"
    )
    result.assert_outcomes(passed=1, failed=1)
    index = (report / "index.html").read_text()
    assert "wrong" in index and "right" in index
    root = ET.parse(pytester.path / "junit.xml").getroot()
    pages = [p.get("value", "") for p in root.iter("property") if p.get("name") == "report"]
    assert len(pages) == 2
    for page in pages:
        assert Path(page).is_file()
        assert embedded(Path(page).read_text())["signals"]
