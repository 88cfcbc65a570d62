"""The pytest plugin, run on scenario directories made for each test (pytester)."""

from __future__ import annotations

import pytest

# imported here so the in-process runs reuse them (cryptography does not import twice)
import tcu.scenario.runner
import tcu.scenario.scenario_world  # noqa: F401
from tcu.scenario.bus import reference_encoder
from tests.scenario.texts import PLUGGED

pytest_plugins = ["pytester"]
reference_encoder()

INI = """
[pytest]
filterwarnings =
    error
    ignore:Module already imported so cannot be rewritten:pytest.PytestAssertRewriteWarning
addopts = --strict-markers -p no:cacheprovider -p no:hypothesispytest -p no:asyncio
"""
BASE = "\nvehicle: {start: 2026-01-14T18:00:00Z}" + PLUGGED
CASES = """
cases:
  - name: right
    tags: [charging]
    steps:
      - at: 60
        command: start_charging
        expect:
          verdict: {service: charging, outcome: refused, reasons: [bonnet_open]}
  - name: wrong
    tags: [lock]
    steps:
      - at: 60
        command: start_charging
        expect:
          verdict: {service: charging, outcome: allowed, reasons: []}
"""


@pytest.fixture
def suite(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makeini(INI)
    d = pytester.mkdir("scenarios")
    (d / "charge.yaml").write_text(BASE + CASES)
    (d / "notes.txt").write_text("not a scenario")
    pending = d / "pending"
    pending.mkdir()
    (pending / "later.yaml").write_text("name: later\nsteps:\n  - at: 1\n    coverage: off\n")
    return pytester


def test_each_case_is_an_item_and_a_failure_shows_the_diff(suite: pytest.Pytester) -> None:
    result = suite.runpytest("scenarios", "-v")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(
        [
            "scenarios/charge.yaml::right PASSED*",
            "scenarios/charge.yaml::wrong FAILED*",
            "scenarios/charge.yaml:27:20: expect verdict: the actual values differ "
            "(outcome, reasons)",
            "  in 'wrong', steps[0] at 0:01:00 (60 s): command start_charging",
            "    field * expected * actual",
            "    outcome * allowed * refused * <-- differs",
            "    reasons * [] * [bonnet_open] * <-- differs",
        ]
    )


def test_tags_select_with_strict_markers(suite: pytest.Pytester) -> None:
    result = suite.runpytest("scenarios", "-m", "charging")
    result.assert_outcomes(passed=1, deselected=1)
    result = suite.runpytest("scenarios", "-m", "lock")
    result.assert_outcomes(failed=1, deselected=1)
    result = suite.runpytest("scenarios", "-m", "scenario and not lock")
    result.assert_outcomes(passed=1, deselected=1)


def test_pending_is_collected_only_when_asked(suite: pytest.Pytester) -> None:
    suite.runpytest("scenarios").assert_outcomes(passed=1, failed=1)
    result = suite.runpytest("scenarios", "--scenario-pending")
    result.assert_outcomes(passed=2, failed=1)
    limited = "tests.scenario.limited_world:LimitedWorld"
    result = suite.runpytest("scenarios", "--scenario-pending", "--scenario-world", limited)
    result.assert_outcomes(passed=1, failed=2)
    result.stdout.fnmatch_lines(["*not supported by this world: coverage*"])


def test_an_invalid_file_fails_collection_with_its_position(suite: pytest.Pytester) -> None:
    (suite.path / "scenarios" / "bad.yaml").write_text(
        "name: bad\nsteps:\n  - at: 5\n    set: {Vehicle.Body.Hod.IsOpen: true}\n"
    )
    result = suite.runpytest("scenarios")
    assert result.ret == pytest.ExitCode.INTERRUPTED
    result.stdout.fnmatch_lines(
        [
            "invalid scenario file:",
            "scenarios/bad.yaml:4:11: steps[0].set: unknown signal path "
            "'Vehicle.Body.Hod.IsOpen' (did you mean 'Vehicle.Body.Hood.IsOpen'?)",
        ]
    )


def test_the_broker_option_reaches_the_world(suite: pytest.Pytester) -> None:
    result = suite.runpytest(
        "scenarios",
        "--scenario-broker",
        "embedded",
        "--scenario-world",
        "tests.scenario.limited_world:LimitedWorld",
        "-m",
        "charging",
    )
    result.assert_outcomes(failed=1, deselected=1)
    result.stdout.fnmatch_lines(["*error: --broker embedded: *LimitedWorld*"])
