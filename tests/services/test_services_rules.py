"""The van's preconditions, one broken at a time, several at once, at their boundaries."""

from __future__ import annotations

import itertools
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from services_support import CHARGING_OK, LOCK_OK, ORIGIN, PRECONDITIONING_OK, VIN, make_state

from tcu.services import VehicleConfig
from tcu.services.rules import (
    charging_verdict,
    departure_minutes,
    lock_verdict,
    preconditioning_verdict,
    time_to_full_s,
    unlock_verdict,
)
from tcu.services.verdicts import Verdict
from tcu.vehicle import catalogue as c

NOW = 100.0
CONFIG = VehicleConfig(vin=VIN, origin_epoch=ORIGIN)


def charge(values: dict[str, c.Value | None]) -> Verdict:
    return charging_verdict(make_state(values, NOW), NOW, CONFIG)


def precondition(values: dict[str, c.Value | None]) -> Verdict:
    return preconditioning_verdict(make_state(values, NOW), NOW, CONFIG)


def codes(v: Verdict) -> set[str]:
    return {r.code for r in v.reasons}


CHARGING_BREAKS = [
    (c.PLUG_CONNECTED, False, "plug_not_connected"),
    (c.PLUG_LOCKED, False, "plug_not_locked"),
    (c.INFRA_CONNECTED, False, "infrastructure_not_connected"),
    (c.BONNET, True, "bonnet_open"),
    (c.GEAR, "D", "gear_not_park"),
    (c.GEAR, "R", "gear_not_park"),
    (c.GEAR, "N", "gear_not_park"),
    (c.RFID, "PENDING", "rfid_pending"),
    (c.RFID, "REJECTED", "rfid_rejected"),
]

PRECONDITIONING_BREAKS = [
    (c.PRECOND_ENABLED, False, "preconditioning_disabled"),
    (c.DEPARTURE_TIME, None, "departure_not_set"),
    *[(door, True, "door_open") for door in c.DOORS],
    *[(window, 12.0, "window_open") for window in c.WINDOWS],
    *[(window, 0.5, "window_open") for window in c.WINDOWS],
    (c.BONNET, True, "bonnet_open"),
    (c.GEAR, "D", "gear_not_park"),
    (c.PLUG_CONNECTED, False, "plug_not_connected"),
    (c.PLUG_LOCKED, False, "plug_not_locked"),
    (c.INFRA_CONNECTED, False, "infrastructure_not_connected"),
    (c.SOC, 15.0, "battery_too_low"),
    (c.SOC, 3.0, "battery_too_low"),
]


def test_charging_all_met_is_allowed() -> None:
    v = charge(CHARGING_OK)
    assert (v.outcome, v.reasons, v.warnings) == ("allowed", (), ())


@pytest.mark.parametrize(("path", "value", "code"), CHARGING_BREAKS)
def test_charging_one_broken_precondition_names_exactly_it(
    path: str, value: c.Value, code: str
) -> None:
    v = charge({**CHARGING_OK, path: value})
    assert v.outcome == "refused"
    assert [r.code for r in v.reasons] == [code]
    assert v.reasons[0].values == {path: value}
    assert v.reasons[0].message


@pytest.mark.parametrize("rfid", ["NOT_REQUIRED", "ACCEPTED"])
def test_charging_rfid_passes_when_not_required_or_accepted(rfid: str) -> None:
    assert charge({**CHARGING_OK, c.RFID: rfid}).outcome == "allowed"


def test_charging_every_broken_precondition_is_listed() -> None:
    broken = {p: v for p, v, _ in CHARGING_BREAKS if p not in (c.GEAR, c.RFID)}
    v = charge({**CHARGING_OK, **broken, c.GEAR: "D", c.RFID: "REJECTED"})
    assert v.outcome == "refused"
    assert codes(v) == {
        "plug_not_connected",
        "plug_not_locked",
        "infrastructure_not_connected",
        "bonnet_open",
        "gear_not_park",
        "rfid_rejected",
    }


@settings(max_examples=60, deadline=None)
@given(st.sets(st.sampled_from(range(len(PRECONDITIONING_BREAKS))), max_size=8))
def test_preconditioning_reasons_are_the_union_of_the_broken_ones(picked: set[int]) -> None:
    values = dict(PRECONDITIONING_OK)
    for i in sorted(picked):
        path, value, _ = PRECONDITIONING_BREAKS[i]
        values[path] = value
    # Two breaks of one signal: the later one wins, as in ``values``.
    expected = {
        code
        for i, (p, v, code) in enumerate(PRECONDITIONING_BREAKS)
        if i in picked and values[p] == v
    }
    verdict = precondition(values)
    assert codes(verdict) == expected
    assert verdict.outcome == ("refused" if expected else "allowed")


def test_preconditioning_all_met_is_allowed() -> None:
    v = precondition(PRECONDITIONING_OK)
    assert (v.outcome, v.reasons, v.warnings) == ("allowed", (), ())


@pytest.mark.parametrize(("path", "value", "code"), PRECONDITIONING_BREAKS)
def test_preconditioning_one_broken_precondition_names_exactly_it(
    path: str, value: c.Value | None, code: str
) -> None:
    v = precondition({**PRECONDITIONING_OK, path: value})
    assert v.outcome == "refused"
    assert [r.code for r in v.reasons] == [code]
    assert v.reasons[0].values == {path: value}


def test_door_open_names_every_open_door_in_one_reason() -> None:
    open_doors = {c.DOOR_SLIDING_RIGHT: True, c.DOOR_REAR: True}
    v = precondition({**PRECONDITIONING_OK, **open_doors})
    assert [r.code for r in v.reasons] == ["door_open"]
    assert v.reasons[0].values == open_doors
    assert "right sliding door" in v.reasons[0].message
    assert "rear doors" in v.reasons[0].message


@pytest.mark.parametrize(
    ("soc", "outcome"),
    [(15.0, "refused"), (15.1, "allowed"), (14.9, "refused"), (100.0, "allowed")],
)
def test_preconditioning_battery_boundary(soc: float, outcome: str) -> None:
    assert precondition({**PRECONDITIONING_OK, c.SOC: soc}).outcome == outcome


@pytest.mark.parametrize("kind", ["PUBLIC_AC", "HOME_SOCKET", "DC", "NONE"])
def test_preconditioning_off_a_wallbox_runs_with_a_warning(kind: str) -> None:
    v = precondition({**PRECONDITIONING_OK, c.INFRA_TYPE: kind})
    assert v.outcome == "allowed_with_warnings"
    assert [w.code for w in v.warnings] == ["not_wallbox"]
    assert v.warnings[0].values == {c.INFRA_TYPE: kind}


def test_preconditioning_unknown_infrastructure_type_is_not_assumed_a_wallbox() -> None:
    v = precondition({**PRECONDITIONING_OK, c.INFRA_TYPE: None})
    assert v.outcome == "allowed_with_warnings"
    assert [w.code for w in v.warnings] == ["not_wallbox"]


def test_setpoint_equal_to_outside_is_not_needed() -> None:
    v = precondition({**PRECONDITIONING_OK, c.CABIN_SETPOINT: 18.5, c.OUTSIDE_TEMP: 18.5})
    assert v.outcome == "not_needed"
    assert [r.code for r in v.reasons] == ["setpoint_equals_outside"]
    assert v.reasons[0].values == {c.CABIN_SETPOINT: 18.5, c.OUTSIDE_TEMP: 18.5}
    near = precondition({**PRECONDITIONING_OK, c.CABIN_SETPOINT: 18.5, c.OUTSIDE_TEMP: 18.0})
    assert near.outcome == "allowed"


def test_a_refusal_wins_over_not_needed() -> None:
    v = precondition(
        {**PRECONDITIONING_OK, c.CABIN_SETPOINT: 20.0, c.OUTSIDE_TEMP: 20.0, c.BONNET: True}
    )
    assert (v.outcome, codes(v)) == ("refused", {"bonnet_open"})


CHARGING_INPUTS = [c.PLUG_CONNECTED, c.PLUG_LOCKED, c.INFRA_CONNECTED, c.BONNET, c.GEAR, c.RFID]
PRECONDITIONING_INPUTS = [
    c.PRECOND_ENABLED,
    c.DEPARTURE_TIME,
    *c.DOORS,
    *c.WINDOWS,
    c.BONNET,
    c.GEAR,
    *CHARGING_INPUTS[:3],
    c.SOC,
    c.CABIN_SETPOINT,
    c.OUTSIDE_TEMP,
]


@pytest.mark.parametrize("path", CHARGING_INPUTS)
def test_charging_stale_signal_is_named_not_assumed_fine(path: str) -> None:
    state = make_state(CHARGING_OK, NOW, stale=[path])
    v = charging_verdict(state, NOW, CONFIG)
    assert v.outcome == "refused"
    assert [r.code for r in v.reasons] == ["signal_unknown"]
    assert v.reasons[0].values == {path: None}
    assert path in v.reasons[0].message
    assert "too old" in v.reasons[0].message


@pytest.mark.parametrize("path", PRECONDITIONING_INPUTS)
def test_preconditioning_stale_signal_is_named_not_assumed_fine(path: str) -> None:
    state = make_state(PRECONDITIONING_OK, NOW, stale=[path])
    v = preconditioning_verdict(state, NOW, CONFIG)
    assert [(r.code, r.values) for r in v.reasons] == [("signal_unknown", {path: None})]


@pytest.mark.parametrize("path", CHARGING_INPUTS)
def test_charging_never_received_signal_is_unknown(path: str) -> None:
    values = {p: v for p, v in CHARGING_OK.items() if p != path}
    v = charge(values)
    assert [(r.code, r.values) for r in v.reasons] == [("signal_unknown", {path: None})]
    assert "never received" in v.reasons[0].message


def test_one_signal_unknown_reason_per_unknown_signal() -> None:
    state = make_state(CHARGING_OK, NOW, stale=[c.BONNET, c.GEAR, c.RFID])
    v = charging_verdict(state, NOW, CONFIG)
    assert [next(iter(r.values)) for r in v.reasons] == [c.BONNET, c.GEAR, c.RFID]
    assert set(v.codes) == {"signal_unknown"}


def test_value_of_the_wrong_kind_is_invalid_not_fine() -> None:
    state = make_state(CHARGING_OK, NOW)
    state.override(c.BONNET, 0.0)
    state.override(c.GEAR, "X")
    v = charging_verdict(state, NOW, CONFIG)
    assert {r.code for r in v.reasons} == {"signal_invalid", "gear_not_park"}
    bad = precondition({**PRECONDITIONING_OK, c.DEPARTURE_TIME: 1440.0})
    assert [(r.code, r.values) for r in bad.reasons] == [
        ("signal_invalid", {c.DEPARTURE_TIME: 1440.0})
    ]


def test_an_override_to_unknown_reads_as_unknown() -> None:
    state = make_state(CHARGING_OK, NOW)
    state.override(c.PLUG_LOCKED, None)
    v = charging_verdict(state, NOW, CONFIG)
    assert [(r.code, r.values) for r in v.reasons] == [("signal_unknown", {c.PLUG_LOCKED: None})]


# -- the charging estimate ------------------------------------------------------------------

# 22 kWh usable, 50 % missing at 11 kW: exactly one hour. Vehicle time 0 is 06:00 UTC.
SMALL = VehicleConfig(
    vin=VIN, usable_capacity_kwh=22.0, charging_power_kw=11.0, origin_epoch=ORIGIN
)


def estimate(departure: float | None, now: float = 0.0, **values: c.Value) -> Verdict:
    state = make_state({**CHARGING_OK, c.DEPARTURE_TIME: departure, **values}, now)
    return charging_verdict(state, now, SMALL)


def test_time_to_full_is_energy_missing_over_power() -> None:
    assert time_to_full_s(50.0, 100.0, 22.0, 11.0) == pytest.approx(3600.0)
    assert time_to_full_s(20.0, 80.0, 75.0, 11.0) == pytest.approx(0.6 * 75 / 11 * 3600)
    assert time_to_full_s(90.0, 80.0, 75.0, 11.0) == 0.0


def test_departure_exactly_at_the_estimated_full_time_is_in_time() -> None:
    v = estimate(7 * 60.0)
    assert (v.outcome, v.warnings) == ("allowed", ())


def test_departure_a_minute_early_warns_with_the_estimate() -> None:
    v = estimate(7 * 60.0 - 1)
    assert v.outcome == "allowed_with_warnings"
    assert v.reasons == ()
    [w] = v.warnings
    assert w.code == "not_full_by_departure"
    assert w.values["estimate.time_to_full_s"] == pytest.approx(3600.0)
    assert w.values["estimate.full_at_t"] == pytest.approx(3600.0)
    assert w.values["estimate.departure_t"] == pytest.approx(3540.0)
    assert w.values[c.DEPARTURE_TIME] == 419.0
    assert w.values[c.SOC] == 50.0
    assert "07:00" in w.message and "06:59" in w.message
    json.dumps(v.as_dict())


def test_a_departure_already_passed_today_is_tomorrows() -> None:
    # 05:00 has passed at 06:00: the van leaves tomorrow, plenty of time.
    assert estimate(5 * 60.0).outcome == "allowed"


def test_the_live_charging_power_is_used_when_known_and_positive() -> None:
    # Departure in 45 min: 11 kWh at 22 kW takes 30 min, at the configured 11 kW an hour.
    assert estimate(6 * 60.0 + 45, **{c.CHARGING_POWER: 22.0}).outcome == "allowed"
    slow = estimate(6 * 60.0 + 45, **{c.CHARGING_POWER: 0.0})
    assert slow.warnings[0].values["estimate.power_kw"] == 11.0
    state = make_state({**CHARGING_OK, c.DEPARTURE_TIME: 6 * 60.0 + 45}, 0.0)
    state.override(c.CHARGING_POWER, None)
    assert charging_verdict(state, 0.0, SMALL).warning_codes == ("not_full_by_departure",)


def test_a_commanded_departure_wins_over_the_van_until_echoed() -> None:
    state = make_state({**CHARGING_OK, c.DEPARTURE_TIME: 600.0}, 0.0)
    assert charging_verdict(state, 0.0, SMALL).outcome == "allowed"
    late = charging_verdict(state, 0.0, SMALL, commanded_departure=6 * 60.0 + 30)
    assert late.warning_codes == ("not_full_by_departure",)


def test_no_departure_set_means_no_estimate_warning() -> None:
    assert estimate(None).outcome == "allowed"


def test_unknown_departure_or_soc_cannot_be_assumed_in_time() -> None:
    state = make_state({**CHARGING_OK, c.DEPARTURE_TIME: 400.0}, NOW, stale=[c.DEPARTURE_TIME])
    v = charging_verdict(state, NOW, SMALL)
    assert v.outcome == "allowed_with_warnings"
    assert [(w.code, w.values) for w in v.warnings] == [
        ("estimate_unavailable", {c.DEPARTURE_TIME: None})
    ]
    state = make_state({**CHARGING_OK, c.DEPARTURE_TIME: 400.0}, NOW, stale=[c.SOC])
    v = charging_verdict(state, NOW, SMALL)
    assert [(w.code, w.values) for w in v.warnings] == [("estimate_unavailable", {c.SOC: None})]


def test_charging_at_target_is_not_needed_unless_refused() -> None:
    full = charge({**CHARGING_OK, c.SOC: 100.0})
    assert (full.outcome, full.codes) == ("not_needed", ("target_soc_reached",))
    refused = charge({**CHARGING_OK, c.SOC: 100.0, c.GEAR: "D"})
    assert (refused.outcome, refused.codes) == ("refused", ("gear_not_park",))


def test_refused_charge_still_carries_the_estimate_warning() -> None:
    v = estimate(6 * 60.0 + 10, **{c.BONNET: True})
    assert (v.outcome, v.codes, v.warning_codes) == (
        "refused",
        ("bonnet_open",),
        ("not_full_by_departure",),
    )


def test_departure_minutes_tells_unset_from_unknown() -> None:
    fresh_unset = make_state({c.DEPARTURE_TIME: None}, NOW)
    assert departure_minutes(fresh_unset, NOW) == (None, None)
    never = make_state({}, NOW)
    minutes, reason = departure_minutes(never, NOW)
    assert minutes is None and reason is not None and reason.code == "signal_unknown"
    assert departure_minutes(make_state({c.DEPARTURE_TIME: 450.0}, NOW), NOW) == (450.0, None)
    assert departure_minutes(never, NOW, commanded=30.0) == (30.0, None)


# -- lock and unlock ------------------------------------------------------------------------


def lock(values: dict[str, c.Value | None], service: str = "lock") -> Verdict:
    rule = lock_verdict if service == "lock" else unlock_verdict
    return rule(make_state(values, NOW), NOW, CONFIG)


def test_lock_allowed_when_closed_and_still() -> None:
    assert lock(LOCK_OK).outcome == "allowed"
    assert lock({**LOCK_OK, c.LOCKED: True}, "unlock").outcome == "allowed"


@pytest.mark.parametrize("door", c.DOORS)
def test_lock_refused_with_a_door_open(door: str) -> None:
    v = lock({**LOCK_OK, door: True})
    assert [(r.code, r.values) for r in v.reasons] == [("door_open", {door: True})]


def test_unlock_is_fine_with_a_door_open() -> None:
    assert lock({**LOCK_OK, c.DOOR_REAR: True, c.LOCKED: True}, "unlock").outcome == "allowed"


@pytest.mark.parametrize("service", ["lock", "unlock"])
@pytest.mark.parametrize(
    ("speed", "code"), [(4.0, "vehicle_moving"), (0.1, "vehicle_moving"), (None, "signal_unknown")]
)
def test_lock_and_unlock_refused_while_moving_or_speed_unknown(
    service: str, speed: float | None, code: str
) -> None:
    v = lock({**LOCK_OK, c.SPEED: speed, c.LOCKED: service == "unlock"}, service)
    assert [(r.code, r.values) for r in v.reasons] == [(code, {c.SPEED: speed})]


def test_lock_door_open_and_moving_lists_both() -> None:
    v = lock({**LOCK_OK, c.DOOR_FRONT_LEFT: True, c.SPEED: 30.0})
    assert v.codes == ("door_open", "vehicle_moving")


def test_lock_when_already_locked_is_not_needed() -> None:
    assert lock({**LOCK_OK, c.LOCKED: True}).codes == ("already_locked",)
    assert lock({**LOCK_OK, c.LOCKED: False}, "unlock").codes == ("already_unlocked",)
    unknown = {p: v for p, v in LOCK_OK.items() if p != c.LOCKED}
    assert lock(unknown).outcome == "allowed"


def test_every_combination_of_two_charging_breaks_lists_both() -> None:
    singles = [b for b in CHARGING_BREAKS if b[0] not in (c.GEAR, c.RFID)]
    singles += [(c.GEAR, "D", "gear_not_park"), (c.RFID, "PENDING", "rfid_pending")]
    for (p1, v1, c1), (p2, v2, c2) in itertools.combinations(singles, 2):
        assert codes(charge({**CHARGING_OK, p1: v1, p2: v2})) == {c1, c2}
