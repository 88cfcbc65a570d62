"""VehicleState: a value is known only while its source is fresh; overrides win until released."""

from __future__ import annotations

import pytest

from tcu.vehicle import catalogue as c
from tcu.vehicle.catalogue import CATALOGUE
from tcu.vehicle.state import Source, VehicleState


def test_a_value_reads_as_unknown_once_its_source_is_stale() -> None:
    state = VehicleState(stale_after={c.SOC: 1.0})
    page = Source()
    assert state.get(c.SOC, 0.0) is None and not state.is_stale(c.SOC, 0.0)
    assert state.update(c.SOC, 55.0, page)
    page.seen = 10.0
    assert state.get(c.SOC, 10.5) == 55.0
    assert state.get(c.SOC, 11.5) is None and state.is_stale(c.SOC, 11.5)
    page.seen = 11.4  # the next frame of that message refreshes every signal it carries
    assert state.get(c.SOC, 11.5) == 55.0


def test_update_says_whether_the_value_changed_including_its_type() -> None:
    state = VehicleState()
    page = Source()
    assert state.update(c.GEAR, "P", page)
    assert not state.update(c.GEAR, "P", page)
    assert state.update(c.SOC, 1.0, page)
    assert state.update(c.SOC, True, page), "True equals 1.0 but is another value"


def test_an_override_wins_over_the_bus_until_released() -> None:
    state = VehicleState(stale_after={c.BONNET: 0.5})
    page = Source()
    state.update(c.BONNET, True, page)
    page.seen = 0.0
    state.override(c.BONNET, False)
    assert state.get(c.BONNET, 100.0) is False and not state.is_stale(c.BONNET, 100.0)
    state.release(c.BONNET)
    assert state.get(c.BONNET, 0.1) is True
    assert state.get(c.BONNET, 100.0) is None


def test_overriding_a_path_outside_the_catalogue_is_refused() -> None:
    with pytest.raises(KeyError, match=r"Vehicle\.Body\.Hod\.IsOpen"):
        VehicleState().override("Vehicle.Body.Hod.IsOpen", True)


def test_the_snapshot_holds_every_catalogue_signal() -> None:
    snap = VehicleState().snapshot(0.0)
    assert set(snap) == set(CATALOGUE) and all(v is None for v in snap.values())
