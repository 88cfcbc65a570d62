"""Loading scenario files: positions of errors, YAML 1.2 scalars, the schema, the rule."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

from tcu.scenario.discover import is_scenario_file
from tcu.scenario.loader import ScenarioError, load_file, load_paths, load_text, schema

REPO = Path(__file__).resolve().parents[2]
HOOD = "Vehicle.Body.Hood.IsOpen"


def problems(text: str, name: str = "scenarios/x.yaml") -> list[str]:
    with pytest.raises(ScenarioError) as info:
        load_text(text, name, base=REPO / name)
    return list(info.value.problems)


def test_type_error_points_at_the_value() -> None:
    text = "name: t\nvehicle:\n  usable_capacity_kwh: lots\nsteps: []\n"
    assert problems(text) == [
        "scenarios/x.yaml:3:24: vehicle.usable_capacity_kwh: expected number, got 'lots'"
    ]


def test_unknown_signal_path_points_at_the_key() -> None:
    text = (
        "name: t\n"
        "steps:\n"
        "  - at: 10\n"
        "    set:\n"
        f"      {HOOD}: false\n"
        "      Vehicle.Body.Hod.IsOpen: true\n"
    )
    assert problems(text) == [
        "scenarios/x.yaml:6:7: steps[0].set: unknown signal path 'Vehicle.Body.Hod.IsOpen' "
        "(did you mean 'Vehicle.Body.Hood.IsOpen'?)"
    ]


def test_unknown_command_points_at_the_name() -> None:
    text = "name: t\nsteps:\n  - at: 5\n    command: {name: start_chargin}\n"
    (line,) = problems(text)
    assert line.startswith(
        "scenarios/x.yaml:4:21: steps[0].command.name: unknown command 'start_chargin' "
        "(did you mean 'start_charging'?)"
    )


def test_unknown_keys_point_at_the_key() -> None:
    text = (
        "name: t\n"
        "steps:\n"
        "  - at: 5\n"
        "    expect:\n"
        "      verdicts: {service: charging}\n"
        "    sett: {}\n"
    )
    assert problems(text) == [
        "scenarios/x.yaml:5:7: steps[0].expect: unknown expectation key 'verdicts' "
        "(did you mean 'verdict'?)",
        "scenarios/x.yaml:6:5: steps[0]: unknown step key 'sett' (did you mean 'set'?)",
    ]


def test_every_problem_is_reported_in_line_order() -> None:
    text = (
        "name: t\n"
        "steps:\n"
        "  - at: 20\n"
        "    set: {Vehicle.Powertrain.Transmission.SelectedGear: p}\n"
        "  - at: 10\n"
        "    command: lock\n"
        "    expect:\n"
        "      verdict: {service: lock, outcome: refused, reasons: [bonet_open, not_wallbox]}\n"
    )
    got = problems(text)
    assert [p.split(": ", 2)[0] for p in got] == [
        "scenarios/x.yaml:4:57",
        "scenarios/x.yaml:5:9",
        "scenarios/x.yaml:8:60",
        "scenarios/x.yaml:8:72",
    ]
    assert "is one of P, R, N, D; got 'p' (did you mean 'P'?)" in got[0]
    assert "10 s is before the previous step's end (20 s)" in got[1]
    assert "unknown reason code 'bonet_open' (did you mean 'bonnet_open'?)" in got[2]
    assert "'not_wallbox' is a warning code, never a reason of a refusal" in got[3]


def test_yaml_12_scalars() -> None:
    text = (
        "name: t\n"
        "steps:\n"
        "  - at: 1:30:00\n"
        "    coverage: off\n"
        "  - at: 01:30:01\n"
        "    move: {country: NO}\n"
        "  - at: 5402\n"
        "    set: {Vehicle.Private.Climate.DepartureTime: '06:30'}\n"
    )
    (case,) = load_text(text, "x.yaml").cases
    assert [s.at for s in case.steps] == [5400.0, 5401.0, 5402.0]
    assert case.steps[0].value is False
    assert case.steps[1].value == {"country": "NO"}
    assert case.steps[2].value == {"Vehicle.Private.Climate.DepartureTime": 390.0}


def test_yes_no_are_not_booleans() -> None:
    (line,) = problems(f"name: t\ninitial: {{{HOOD}: yes}}\n")
    assert line == (f"scenarios/x.yaml:2:37: initial: {HOOD} is true or false, got 'yes'")


def test_cases_inherit_file_defaults_and_names_are_unique() -> None:
    text = (
        "tags: [charging]\n"
        f"initial: {{{HOOD}: false}}\n"
        "cases:\n"
        "  - name: a\n"
        "    tags: [rfid]\n"
        "    initial: {Vehicle.Speed: 3}\n"
        "  - name: b\n"
    )
    a, b = load_text(text, "x.yaml").cases
    assert a.tags == ("charging", "rfid") and b.tags == ("charging",)
    assert a.steps[0].value == {HOOD: False, "Vehicle.Speed": 3.0}
    assert b.steps[0].value == {HOOD: False}
    dup = "cases:\n  - name: a\n  - name: a\n"
    assert problems(dup) == [
        "scenarios/x.yaml:3:5: cases[1]: another case is already called 'a' (line 2)"
    ]


def test_multiple_documents_are_cases() -> None:
    text = "name: one\n---\nname: two\n---\nsteps: []\n"
    names = [c.name for c in load_text(text, "dir/many.yaml").cases]
    assert names == ["one", "two", "many[2]"]


def test_reserved_tag_and_bad_file() -> None:
    assert problems("name: t\ntags: [xfail]\n") == [
        "scenarios/x.yaml:2:8: tags[0]: 'xfail' is a pytest marker of its own; pick another tag"
    ]
    assert problems("name: t\ntrace: nowhere.blf\n")[0].startswith(
        "scenarios/x.yaml:2:8: trace: trace file 'nowhere.blf' not found"
    )
    assert problems("- a\n- b\n") == [
        "scenarios/x.yaml:1:1: a scenario document is a mapping, got a list"
    ]
    assert problems("name: [\n")[0].startswith("scenarios/x.yaml:2:1: not valid YAML")


def test_alias_bombs_are_refused() -> None:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    for i in range(1, 8):
        prev = f"*a{i - 1}"
        lines.append(f"a{i}: &a{i} [{', '.join([prev] * 10)}]")
    text = "\n".join(lines) + "\n"
    (line,) = problems(text)
    assert "document too large: more than 50000 YAML nodes" in line


def test_deep_nesting_is_refused() -> None:
    (line,) = problems("name: t\ndescription: " + "[" * 5000 + "]" * 5000 + "\n")
    assert line.endswith("nested deeper than 32 levels")
    (line,) = problems("name: t\ndescription: " + "[" * 40 + "]" * 40 + "\n")
    assert line.endswith("document too large: nested deeper than 32 levels")


def test_missing_and_oversized_files(tmp_path: Path) -> None:
    with pytest.raises(ScenarioError, match="scenario file not found"):
        load_file(tmp_path / "none.yaml")
    big = tmp_path / "big.yaml"
    big.write_bytes(b"#" * (2 << 20))
    with pytest.raises(ScenarioError, match="larger than"):
        load_file(big)


def test_shipped_schema_is_valid() -> None:
    jsonschema.Draft202012Validator.check_schema(schema())
    shipped = json.loads((REPO / "tcu" / "scenario" / "scenario.schema.json").read_text())
    assert shipped == schema()


def test_shipped_suite_loads() -> None:
    files = load_paths([REPO / "scenarios"], include_pending=True)
    names = {Path(f.path).name for f in files}
    assert {
        "plug.yaml",
        "depot_night.yaml",
        "hostile_commands.yaml",
        "link.yaml",
        "resilience.yaml",
        "activation.yaml",
    } <= names


@pytest.mark.parametrize(
    ("path", "pending", "expected"),
    [
        ("scenarios/charging/plug.yaml", False, True),
        ("scenarios/pending/link.yaml", False, False),
        ("scenarios/pending/link.yaml", True, True),
        ("scenarios/_shared.yaml", False, False),
        ("scenarios/traces/make_traces.py", False, False),
        ("tests/data/scenario_lock.yaml", False, True),
        ("tests/data/lock.scenario.yml", False, True),
        ("can_traces/van.mapping.yaml", False, False),
        ("tcu/scenario/other.yaml", False, False),
    ],
)
def test_collection_rule(path: str, pending: bool, expected: bool) -> None:
    assert is_scenario_file(Path(path), include_pending=pending) is expected
