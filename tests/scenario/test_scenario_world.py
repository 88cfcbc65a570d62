"""ScenarioWorld: the shipped suite through TCU, SIM link and backend; every check can fail."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tcu.can.sources import open_trace
from tcu.scenario.cases import Case, Expectation, Step
from tcu.scenario.loader import load_paths, load_text
from tcu.scenario.runner import run_case
from tcu.scenario.scenario_world import ScenarioWorld
from tcu.scenario.world import DEFAULT_WORLD, WorldOptions, resolve_factory

REPO = Path(__file__).resolve().parents[2]
SHIPPED = [c for f in load_paths([REPO / "scenarios"]) for c in f.cases]
LOCKED_VAN = """
initial:
  Vehicle.Cabin.Door.Row1.DriverSide.IsOpen: false
  Vehicle.Cabin.Door.Row1.PassengerSide.IsOpen: false
  Vehicle.Cabin.Door.Row2.DriverSide.IsOpen: false
  Vehicle.Cabin.Door.Row2.PassengerSide.IsOpen: false
  Vehicle.Body.Trunk.Rear.IsOpen: false
  Vehicle.Speed: 0
  Vehicle.Cabin.Door.Row1.DriverSide.IsLocked: true
"""


def case(text: str) -> Case:
    (c,) = load_text(text, "scenarios/t.yaml", base=REPO / "scenarios" / "t.yaml").cases
    return c


def shipped(key: str) -> Case:
    """The shipped case ``FILE::NAME`` (file name without folders)."""
    (found,) = [c for c in SHIPPED if f"{Path(c.file).name}::{c.name}" == key]
    return found


def uses(c: Case, kind: str) -> bool:
    return kind in c.needs


# -- the suite covers what it must --------------------------------------------------------

COVERAGE: dict[str, tuple[str, Callable[[Case], bool]]] = {
    "charging: plug": ("plug.yaml::plug not connected", lambda c: uses(c, "verdict")),
    "charging: plug locked": ("plug.yaml::plug not locked", lambda c: uses(c, "verdict")),
    "charging: infrastructure": (
        "plug.yaml::infrastructure not connected",
        lambda c: uses(c, "verdict"),
    ),
    "charging: bonnet": ("van.yaml::bonnet open", lambda c: uses(c, "verdict")),
    "charging: gear": ("van.yaml::gear not in P", lambda c: uses(c, "verdict")),
    "charging: rfid": ("rfid.yaml::card rejected", lambda c: uses(c, "verdict")),
    "preconditioning: enabled": ("preconditions.yaml::disabled", lambda c: uses(c, "verdict")),
    "preconditioning: departure": (
        "preconditions.yaml::no departure set",
        lambda c: uses(c, "verdict"),
    ),
    "preconditioning: doors": (
        "preconditions.yaml::sliding door open",
        lambda c: uses(c, "verdict"),
    ),
    "preconditioning: windows": ("preconditions.yaml::window open", lambda c: uses(c, "verdict")),
    "preconditioning: battery": (
        "battery.yaml::battery at 15.0 percent",
        lambda c: uses(c, "verdict"),
    ),
    "remote lock": ("remote_lock.yaml::lock, confirmed by the van", lambda c: uses(c, "command")),
    "remote unlock": (
        "remote_lock.yaml::unlock, confirmed by the van",
        lambda c: uses(c, "command"),
    ),
    "mid-session break": (
        "mid_session.yaml::bonnet opened while charging",
        lambda c: uses(c, "session"),
    ),
    "stale signals": (
        "stale_signals.yaml::charging refused on stale signals",
        lambda c: c.source is not None,
    ),
    "inactive sends nothing": (
        "activation.yaml::inactive service sends nothing",
        lambda c: uses(c, "backend"),
    ),
    "deactivation": (
        "activation.yaml::activation then deactivation",
        lambda c: uses(c, "deactivate"),
    ),
    "roaming": (
        "link.yaml::roaming in Sweden, data billed to the service",
        lambda c: uses(c, "roaming") and uses(c, "registration"),
    ),
    "dead zone": ("link.yaml::dead zone", lambda c: uses(c, "coverage") and uses(c, "backend")),
    "power cycle": (
        "resilience.yaml::power cycle with records in the outbox",
        lambda c: uses(c, "power_cycle") and uses(c, "backend"),
    ),
    "broker restart": (
        "resilience.yaml::broker restart",
        lambda c: uses(c, "broker") and uses(c, "backend"),
    ),
    "forged": ("hostile_commands.yaml::forged unlock", lambda c: uses(c, "forged_command")),
    "expired": ("hostile_commands.yaml::expired unlock", lambda c: uses(c, "expired_command")),
    "replayed": ("hostile_commands.yaml::replayed unlock", lambda c: uses(c, "replayed_command")),
}


def test_the_shipped_suite_covers_what_it_must() -> None:
    assert len(SHIPPED) >= 25
    for topic, (name, ok) in COVERAGE.items():
        assert ok(shipped(name)), topic


def test_the_default_world_is_the_scenario_world() -> None:
    assert DEFAULT_WORLD == "tcu.scenario.scenario_world:ScenarioWorld"
    assert resolve_factory() is ScenarioWorld


# -- every shipped case can fail ----------------------------------------------------------


def _wrong_count(value: Any) -> Any:
    if isinstance(value, dict):
        return {"max": value["min"] - 1} if "min" in value else {"min": value["max"] + 1}
    return value + 1


def _wrong_value(value: Any) -> Any:
    if isinstance(value, bool):
        return not value
    if isinstance(value, int | float):
        return value + 1
    return "something else"


def wrong(exp: Expectation) -> Expectation:
    """The same expectation with one field that cannot hold."""
    f = dict(exp.fields)
    kind = exp.kind
    key: str
    if kind == "verdict":
        f["outcome"] = "refused" if f.get("outcome") != "refused" else "allowed"
        f.pop("reasons", None)
        f.pop("warnings", None)
    elif kind in ("session", "registration") and "state" in f:
        f["state"] = "no_such_state"
    elif kind == "command":
        f["outcome"] = "no_such_outcome"
    elif kind == "backend" and "complete" in f:
        f["complete"] = not f["complete"]
    elif kind in ("backend", "roaming"):
        key = next(k for k in ("records", "bytes", "gaps", "duplicates") if k in f)
        f[key] = _wrong_count(f[key])
    elif kind == "counters" or (kind == "session" and "count" in f):
        key = "count" if kind == "session" else next(iter(f))
        f[key] = _wrong_count(f[key])
    else:
        key = next(iter(f))
        f[key] = _wrong_value(f[key])
    return dataclasses.replace(exp, fields=f)


def with_last_expectation_wrong(c: Case) -> tuple[Case, Expectation]:
    if c.expect_end:
        target = c.expect_end[-1]
        return dataclasses.replace(c, expect_end=(*c.expect_end[:-1], wrong(target))), target
    i = max(i for i, s in enumerate(c.steps) if s.expect)
    step: Step = c.steps[i]
    target = step.expect[-1]
    changed = dataclasses.replace(step, expect=(*step.expect[:-1], wrong(target)))
    return dataclasses.replace(c, steps=(*c.steps[:i], changed, *c.steps[i + 1 :])), target


@pytest.mark.parametrize("c", SHIPPED, ids=[f"{Path(c.file).name}::{c.name}" for c in SHIPPED])
def test_each_shipped_case_fails_when_its_last_expectation_is_wrong(c: Case) -> None:
    variant, target = with_last_expectation_wrong(c)
    result = run_case(variant, factory=ScenarioWorld)
    assert result.outcome == "failed", result.render()
    failure = result.failures[-1]
    assert failure.where == str(target.where)
    assert failure.what == f"expect {target.kind}"
    assert any(not f.ok for f in failure.fields)
    assert "<-- differs" in result.render()


def test_a_forged_command_expected_to_work_shows_why_it_did_not() -> None:
    c = case(
        f"name: trusting{LOCKED_VAN}steps:\n"
        "  - at: 0\n    activate: true\n"
        "  - at: 10\n    forged_command: unlock\n"
        "    expect:\n      command: {name: unlock, outcome: sent}\n"
    )
    result = run_case(c, factory=ScenarioWorld)
    assert result.outcome == "failed"
    lines = result.render().splitlines()
    assert lines[0] == "scenarios/t.yaml:16:16: expect command: the actual values differ (outcome)"
    assert lines[1] == "  in 'trusting', steps[1] at 0:00:10 (10 s): forged_command unlock"
    rows = [line.split() for line in lines[2:]]
    assert ["outcome", "sent", "rejected", "<--", "differs"] in rows
    assert ["sent_as", "(not", "checked)", "forged_command"] in rows
    assert ["reason", "(not", "checked)", "bad_signature"] in rows
    # the refusal names no command: nothing is filed under the forged id cmd-2
    assert ["backend_status", "(not", "checked)", "null"] in rows


def test_records_lost_in_a_dead_zone_would_show_in_the_backend_diff() -> None:
    c = case(
        "name: impatient\n"
        "vehicle: {home_plmn: '242-01', reporting: {snapshot_period_s: 30}}\n"
        "steps:\n"
        "  - at: 0\n    activate: true\n"
        "  - at: 300\n    coverage: off\n"
        "  - at: 600\n"
        "    expect:\n      backend: {complete: true}\n"
    )
    result = run_case(c, factory=ScenarioWorld)
    text = result.render()
    assert result.outcome == "failed"
    assert "expect backend: the actual values differ (complete)" in text
    assert ["complete", "true", "false", "<--", "differs"] in [r.split() for r in text.splitlines()]


# -- the world itself ---------------------------------------------------------------------


def test_a_heartbeat_it_cannot_send_fails_the_case() -> None:
    c = case(
        "name: heartbeat\nvehicle: {reporting: {heartbeat_period_s: 60}}\n"
        "steps:\n  - at: 5\n    expect: {counters: {records: 0}}\n"
    )
    result = run_case(c, factory=ScenarioWorld)
    assert result.outcome == "failed"
    assert "not supported by this world: vehicle.reporting.heartbeat_period_s" in (
        result.failures[0].message
    )


def test_each_case_gets_a_work_dir_that_close_removes() -> None:
    world = ScenarioWorld(shipped("link.yaml::dead zone"), WorldOptions())
    workdir = world.workdir
    assert (workdir / "outbox.sqlite").exists()
    world.close()
    assert not workdir.exists()


def drive(c: Case, until: float | None = None) -> ScenarioWorld:
    """Run ``c``'s steps without checking them; the caller closes the world."""
    world = ScenarioWorld(c, WorldOptions())
    try:
        for step in c.steps:
            world.advance(step.at)
            if step.action == "advance":
                world.advance(step.ends_at)
            elif step.action is not None:
                world.apply(step, step.at)
        world.finish(c.until if until is None else until)
    except BaseException:
        world.close()
        raise
    return world


def test_deactivation_stops_transmission_once_the_last_record_is_stored() -> None:
    world = drive(shipped("activation.yaml::activation then deactivation"))
    try:
        assert not world.world.backend.registry.is_active(world.vin)
        published = world.counters()["published"]
        world.advance(world.world.now + 3600)
        assert world.counters()["published"] == published
        assert world.backend()["complete"] is True
        assert world.world.backend.ingest.stats().refused == {}
    finally:
        world.close()


def test_a_power_cycle_counts_the_bus_of_both_boots_and_nothing_while_off() -> None:
    c = case(
        "name: reboot\ntrace: traces/quiet_bus.blf\n"
        "steps:\n  - at: 5\n    power_cycle: {off_for: 3}\n"
    )
    world = drive(c)
    try:
        counts = world.counters()
        assert len(world.boots) == 2
        first, second = (b.core.summary_counts()["frames"] for b in world.boots)
        assert first > 0 and second > 0
        assert counts["frames"] == first + second
        total = sum(1 for _ in open_trace(REPO / "scenarios" / "traces" / "quiet_bus.blf"))
        assert counts["frames"] < total  # the frames of the 3 s off were not heard
    finally:
        world.close()


def test_the_same_case_gives_the_same_bytes() -> None:
    c = shipped("link.yaml::roaming in Sweden, data billed to the service")
    summaries = []
    for _ in range(2):
        world = drive(c)
        try:
            s = world.world.summary()
            summaries.append((s["telemetry"], s["link"], world.backend()))
        finally:
            world.close()
    assert summaries[0] == summaries[1]


def test_a_storyline_drives_the_scenario_world() -> None:
    c = case(
        "name: bakery run\nstoryline: {name: city_delivery, seed: 20260114, duration: 40}\n"
        "steps:\n  - at: 0\n    activate: true\n"
        "  - at: 30\n    expect:\n"
        "      vehicle: {Vehicle.Powertrain.Transmission.SelectedGear: D}\n"
        "      backend: {complete: true, kinds: {service: 1, snapshot: 1, change: {min: 1}}}\n"
        "expect_end:\n  counters: {frames: {min: 1000}, bad_frames: 0, dropped: 0}\n"
    )
    result = run_case(c, factory=ScenarioWorld)
    assert result.outcome == "passed", result.render()
    assert result.vehicle_time_s == pytest.approx(40, abs=0.5)
