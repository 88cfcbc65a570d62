"""The fleet's storylines: seeded variation per van, signal changes in time order."""

from __future__ import annotations

import itertools

import pytest

from tcu.errors import ConfigError
from tcu.storyline import fleet as f
from tcu.vehicle import catalogue as c
from tcu.vehicle.catalogue import CATALOGUE


def test_plan_is_the_same_for_the_same_seed_and_differs_between_vans_and_seeds() -> None:
    assert f.plan(7, 3) == f.plan(7, 3)
    assert f.plan(7, 3) != f.plan(7, 4)
    assert f.plan(7, 3) != f.plan(8, 3)


def test_plans_vary_what_the_issue_lists() -> None:
    plans = [f.plan(1, i) for i in range(200)]
    assert {p.stories[0] for p in plans} == set(f.STORY_WEIGHTS)
    assert len({p.home_plmn for p in plans}) == len(f.HOME_PLMNS)
    assert len({p.soc_offset for p in plans}) > 50
    assert len({p.temp_offset for p in plans}) > 50
    assert any(p.plug_delay_s == 0 for p in plans) and any(p.plug_delay_s > 0 for p in plans)


def test_timeline_holds_only_changes_of_catalogue_signals() -> None:
    steps = f.timeline("city_delivery")
    assert {path for path, _ in steps[0].values} == set(CATALOGUE)
    assert all(a.t < b.t for a, b in itertools.pairwise(steps))
    seen: dict[str, object] = dict(steps[0].values)
    for step in steps[1:]:
        for path, value in step.values:
            assert seen[path] != value, f"{path} at {step.t} repeats {value!r}"
            seen[path] = value


def test_timeline_samples_ramps_at_the_period() -> None:
    fine = f.timeline("depot_night", 10.0)
    coarse = f.timeline("depot_night", 60.0)
    soc = [s.t for s in fine if any(p == c.SOC for p, _ in s.values)]
    assert len([s for s in coarse if any(p == c.SOC for p, _ in s.values)]) < len(soc) / 3
    with pytest.raises(ConfigError, match="period"):
        f.timeline("depot_night", 0.0)


def test_van_steps_start_with_the_full_state_and_stay_in_order() -> None:
    p = f.plan(3, 0)
    steps = list(f.van_steps(p, 6 * 3600.0))
    t0, first = steps[0]
    assert t0 == 0.0 and set(first) == set(CATALOGUE)
    times = [t for t, _ in steps]
    assert times == sorted(times) and times[-1] <= 6 * 3600.0


def test_van_variation_moves_charge_temperature_and_position() -> None:
    base = dict(f.timeline("depot_night")[0].values)
    p = f.VanPlan(
        index=0,
        stories=("depot_night",),
        phase_s=0.0,
        gaps_s=(600.0,),
        soc_offset=-10.0,
        temp_offset=3.0,
        lat_offset=0.01,
        lon_offset=-0.02,
        home_plmn="242-01",
        plug_delay_s=0.0,
    )
    _, first = next(f.van_steps(p, 100.0))
    assert first[c.SOC] == pytest.approx(base[c.SOC] - 10.0)  # type: ignore[operator]
    assert first[c.OUTSIDE_TEMP] == pytest.approx(base[c.OUTSIDE_TEMP] + 3.0)  # type: ignore[operator]
    assert first[c.LATITUDE] == pytest.approx(base[c.LATITUDE] + 0.01)  # type: ignore[operator]
    assert first[c.LONGITUDE] == pytest.approx(base[c.LONGITUDE] - 0.02)  # type: ignore[operator]


def _plug_in_time(delay: float) -> float:
    p = f.VanPlan(
        index=0,
        stories=("depot_night",),
        phase_s=0.0,
        gaps_s=(600.0,),
        soc_offset=0.0,
        temp_offset=0.0,
        lat_offset=0.0,
        lon_offset=0.0,
        home_plmn="242-01",
        plug_delay_s=delay,
    )
    return next(t for t, v in f.van_steps(p, 20_000.0) if v.get(c.PLUG_CONNECTED) is True)


def test_plug_habit_plugs_in_later_but_unplugs_on_time() -> None:
    assert _plug_in_time(900.0) == pytest.approx(_plug_in_time(0.0) + 900.0)
