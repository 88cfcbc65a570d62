"""Running cases: diffs, what a world cannot do, determinism, processes."""

from __future__ import annotations

from pathlib import Path

import pytest

from tcu.errors import ConfigError
from tcu.scenario.loader import load_paths, load_text
from tcu.scenario.runner import run_case, run_cases
from tcu.scenario.world import WorldOptions
from tests.scenario.limited_world import LimitedWorld
from tests.scenario.texts import PLUGGED

REPO = Path(__file__).resolve().parents[2]


def case(body: str, name: str = "t") -> object:
    (c,) = load_text(f"name: {name}\n{PLUGGED}{body}", "scenarios/t.yaml").cases
    return c


def test_a_wrong_expectation_fails_with_a_readable_diff() -> None:
    c = case(
        "steps:\n"
        "  - at: 60\n"
        "    command: start_charging\n"
        "    expect:\n"
        "      verdict: {service: charging, outcome: allowed}\n"
        "  - at: 70\n"
        "    set: {Vehicle.Body.Hood.IsOpen: false}\n"
    )
    result = run_case(c)  # type: ignore[arg-type]
    assert result.outcome == "failed"
    assert (result.steps_run, result.steps_total) == (1, 2)
    assert result.vehicle_time_s == 60.0
    text = result.render()
    lines = text.splitlines()
    assert lines[0] == (
        "scenarios/t.yaml:16:16: expect verdict: the actual values differ (outcome)"
    )
    assert lines[1] == "  in 't', steps[0] at 0:01:00 (60 s): command start_charging"
    assert lines[2].split() == ["field", "expected", "actual"]
    assert lines[4].split() == ["outcome", "allowed", "refused", "<--", "differs"]
    assert lines[5].split() == ["reasons", "(not", "checked)", "[bonnet_open]"]
    assert lines[-1] == "(the case stopped after 1 of 2 steps)"
    assert result.reason == "expect verdict: the actual values differ (outcome)"


def test_the_same_expectation_written_right_passes() -> None:
    c = case(
        "steps:\n"
        "  - at: 60\n"
        "    command: start_charging\n"
        "    expect:\n"
        "      verdict: {service: charging, outcome: refused, reasons: [bonnet_open]}\n"
        "      command: {name: start_charging, outcome: refused}\n"
        "      vehicle: {Vehicle.Body.Hood.IsOpen: true}\n"
        "      counters: {verdicts: 2, alarms: 2, can_requests: 0}\n"
    )
    result = run_case(c)  # type: ignore[arg-type]
    assert result.outcome == "passed", result.render()


@pytest.mark.parametrize(
    ("step", "kind"),
    [
        ("coverage: off", "coverage"),
        ("broker: down", "broker"),
        ("power_cycle: true", "power_cycle"),
        ("forged_command: unlock", "forged_command"),
        ("move: {country: SE}", "move"),
        ("activate: true", "activate"),
        ("expect: {backend: {complete: true}}", "backend"),
        ("expect: {registration: {state: registered_home}}", "registration"),
        ("expect: {roaming: {bytes: 0}}", "roaming"),
        ("expect: {counters: {dropped: 0}}", "counters"),
    ],
)
def test_what_a_world_cannot_do_fails_the_case(step: str, kind: str) -> None:
    result = run_case(case(f"steps:\n  - at: 5\n    {step}\n"), factory=LimitedWorld)  # type: ignore[arg-type]
    assert result.outcome == "failed"
    assert f"not supported by this world: {kind}" in result.failures[0].message


def test_expect_end_sees_the_whole_run() -> None:
    c = case(
        "until: 600\n"
        "steps:\n  - at: 10\n    set: {Vehicle.Body.Hood.IsOpen: false}\n"
        "expect_end:\n  session: {service: charging, state: interrupted}\n"
    )
    result = run_case(c)  # type: ignore[arg-type]
    assert result.outcome == "failed"
    assert result.vehicle_time_s == 600.0
    assert result.failures[0].step == "end at 0:10:00 (600 s)"
    assert [(f.name, f.actual, f.ok) for f in result.failures[0].fields][1] == (
        "state",
        "charging",
        False,
    )


def test_a_world_may_refuse_another_broker() -> None:
    with pytest.raises(ConfigError, match=r"--broker mosquitto: .*LimitedWorld"):
        run_case(
            case("steps: []\n"),  # type: ignore[arg-type]
            options=WorldOptions(broker="mosquitto"),
            factory=LimitedWorld,
        )
    with pytest.raises(ConfigError, match="expected one of memory, embedded, mosquitto"):
        WorldOptions(broker="rabbit")


def _key(results: list) -> list:  # type: ignore[type-arg]
    return [(r.file, r.case, r.outcome, r.vehicle_time_s, r.steps_run, r.reason) for r in results]


def test_two_processes_give_the_same_results_as_one(tmp_path: Path) -> None:
    broken = tmp_path / "scenarios" / "broken.yaml"
    broken.parent.mkdir()
    broken.write_text(
        f"name: broken\n{PLUGGED}steps:\n  - at: 1\n    expect:\n"
        "      session: {service: charging, state: charging}\n"
    )
    files = load_paths(
        [REPO / "scenarios" / "lock", REPO / "scenarios" / "stale_signals.yaml", broken]
    )
    cases = [c for f in files for c in f.cases]
    one = run_cases(cases, jobs=1)
    two = run_cases(cases, jobs=2)
    assert _key(one) == _key(two)
    assert [r.outcome for r in one].count("failed") == 1
    assert one[-1].case == "broken" and "differ (state)" in one[-1].reason
    assert len(one) == len(cases)


def test_runs_are_deterministic() -> None:
    (night,) = load_paths([REPO / "scenarios" / "depot_night.yaml"])[0].cases
    first, second = run_case(night), run_case(night)
    assert first.passed and _key([first]) == _key([second])
    assert first.vehicle_time_s == 8 * 3600
