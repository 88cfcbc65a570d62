"""The van's preconditions for charging, climate preconditioning and remote lock/unlock.

Theory of operation. Each rule is a pure function of (vehicle state, vehicle time,
vehicle config) returning a ``Verdict``. A rule runs every check, never stopping at the
first failure, so the verdict lists every reason. A signal the rule needs that is
unknown (never received, stale, or reported as not available) is a ``signal_unknown``
refusal naming the path: the TCU never assumes an unknown signal is fine. A value of the
wrong type or out of range is ``signal_invalid``. Only checks that produce warnings
degrade to a warning when their inputs are unknown (``estimate_unavailable``,
``not_wallbox``).

Refusals win over not-needed, which wins over warnings (``verdicts.decide``).

The charging estimate is linear: energy missing to the target state of charge over the
charging power (the live ``Charging.Power`` signal when known and > 0, else the
configured power). A departure exactly at the estimated full time is in time.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from tcu.services.config import VehicleConfig, check_minutes, clock_utc, next_departure_t
from tcu.services.verdicts import Reason, Service, Verdict, decide
from tcu.vehicle.catalogue import (
    BONNET,
    CABIN_SETPOINT,
    CHARGING_POWER,
    DEPARTURE_TIME,
    DOOR_FRONT_LEFT,
    DOOR_FRONT_RIGHT,
    DOOR_REAR,
    DOOR_SLIDING_LEFT,
    DOOR_SLIDING_RIGHT,
    DOORS,
    GEAR,
    INFRA_CONNECTED,
    INFRA_TYPE,
    LOCKED,
    OUTSIDE_TEMP,
    PLUG_CONNECTED,
    PLUG_LOCKED,
    PRECOND_ENABLED,
    RFID,
    SOC,
    SPEED,
    WINDOW_FRONT_LEFT,
    WINDOW_FRONT_RIGHT,
    WINDOWS,
    Value,
)
from tcu.vehicle.state import VehicleState

FULL_AT_TOLERANCE_S = 1e-3
TEMPERATURE_TOLERANCE = 1e-6

LABELS: dict[str, str] = {
    DOOR_FRONT_LEFT: "driver door",
    DOOR_FRONT_RIGHT: "passenger door",
    DOOR_SLIDING_LEFT: "left sliding door",
    DOOR_SLIDING_RIGHT: "right sliding door",
    DOOR_REAR: "rear doors",
    WINDOW_FRONT_LEFT: "driver window",
    WINDOW_FRONT_RIGHT: "passenger window",
    BONNET: "bonnet",
    LOCKED: "central lock",
    SOC: "state of charge",
    PLUG_CONNECTED: "charge plug connected",
    PLUG_LOCKED: "charge plug locked",
    INFRA_CONNECTED: "charging infrastructure connected",
    INFRA_TYPE: "charging infrastructure type",
    CHARGING_POWER: "charging power",
    RFID: "RFID authorisation",
    GEAR: "gear selector",
    SPEED: "vehicle speed",
    PRECOND_ENABLED: "preconditioning enabled",
    DEPARTURE_TIME: "departure time",
    CABIN_SETPOINT: "cabin temperature setpoint",
    OUTSIDE_TEMP: "outside air temperature",
}

CHARGING_SIGNALS = frozenset({PLUG_CONNECTED, PLUG_LOCKED, INFRA_CONNECTED, BONNET, GEAR, RFID})
PRECONDITIONING_SIGNALS = frozenset(
    {
        *DOORS,
        *WINDOWS,
        BONNET,
        GEAR,
        PLUG_CONNECTED,
        PLUG_LOCKED,
        INFRA_CONNECTED,
        PRECOND_ENABLED,
        DEPARTURE_TIME,
        SOC,
        CABIN_SETPOINT,
        OUTSIDE_TEMP,
    }
)
PLUG_SIGNALS = frozenset({PLUG_CONNECTED, PLUG_LOCKED, INFRA_CONNECTED})


def label(path: str) -> str:
    return LABELS.get(path, path)


def unknown(state: VehicleState, path: str, now: float) -> Reason:
    """The ``signal_unknown`` reason for ``path``, saying why it is unknown."""
    seen = state.cells[path].source.seen
    if path in state.overrides:
        why = "an override sets it to unknown"
    elif seen == -math.inf:
        why = "never received"
    elif state.is_stale(path, now):
        why = f"last received {now - seen:.1f} s ago, too old to use"
    else:
        why = "the van reports no valid value"
    return Reason(
        code="signal_unknown",
        message=f"The {label(path)} signal ({path}) is unknown: {why}.",
        values={path: None},
    )


def invalid(path: str, value: object, expected: str) -> Reason:
    shown = value if isinstance(value, bool | int | float | str) else repr(value)
    return Reason(
        code="signal_invalid",
        message=f"The {label(path)} signal ({path}) reads {value!r}; expected {expected}.",
        values={path: shown},
    )


def is_unset(state: VehicleState, path: str, now: float) -> bool:
    """True when the van reports, freshly, that ``path`` has no value (e.g. no departure)."""
    if path in state.overrides:
        return state.overrides[path] is None
    cell = state.cells[path]
    return cell.value is None and cell.source.seen != -math.inf and not state.is_stale(path, now)


def _flag(state: VehicleState, now: float, path: str) -> tuple[bool | None, list[Reason]]:
    v = state.get(path, now)
    if v is None:
        return None, [unknown(state, path, now)]
    if not isinstance(v, bool):
        return None, [invalid(path, v, "true or false")]
    return v, []


def _number(state: VehicleState, now: float, path: str) -> tuple[float | None, list[Reason]]:
    v = state.get(path, now)
    if v is None:
        return None, [unknown(state, path, now)]
    if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
        return None, [invalid(path, v, "a finite number")]
    return float(v), []


def _enum(state: VehicleState, now: float, path: str) -> tuple[str | None, list[Reason]]:
    v = state.get(path, now)
    if v is None:
        return None, [unknown(state, path, now)]
    if not isinstance(v, str):
        return None, [invalid(path, v, "one of the catalogue's values")]
    return v, []


def _must_be(
    state: VehicleState, now: float, path: str, want: bool, code: str, message: str
) -> list[Reason]:
    v, problems = _flag(state, now, path)
    if problems:
        return problems
    if v != want:
        return [Reason(code=code, message=message, values={path: v})]
    return []


def _plug(state: VehicleState, now: float) -> list[Reason]:
    return [
        *_must_be(
            state,
            now,
            PLUG_CONNECTED,
            True,
            "plug_not_connected",
            "The charge plug is not connected.",
        ),
        *_must_be(
            state,
            now,
            PLUG_LOCKED,
            True,
            "plug_not_locked",
            "The charge plug is not locked in the inlet.",
        ),
        *_must_be(
            state,
            now,
            INFRA_CONNECTED,
            True,
            "infrastructure_not_connected",
            "The charge plug is not connected to the charging station (no pilot signal).",
        ),
    ]


def _bonnet(state: VehicleState, now: float) -> list[Reason]:
    return _must_be(state, now, BONNET, False, "bonnet_open", "The bonnet is open.")


def _gear(state: VehicleState, now: float) -> list[Reason]:
    gear, problems = _enum(state, now, GEAR)
    if gear is None or gear == "P":
        return problems
    return [
        Reason(
            code="gear_not_park",
            message=f"The gear selector is in {gear}, not P.",
            values={GEAR: gear},
        )
    ]


def _rfid(state: VehicleState, now: float) -> list[Reason]:
    rfid, problems = _enum(state, now, RFID)
    if rfid is None or rfid in ("NOT_REQUIRED", "ACCEPTED"):
        return problems
    if rfid == "PENDING":
        message = "The charging station is still waiting for the RFID card to be identified."
        return [Reason(code="rfid_pending", message=message, values={RFID: rfid})]
    if rfid == "REJECTED":
        message = "The charging station rejected the RFID card."
        return [Reason(code="rfid_rejected", message=message, values={RFID: rfid})]
    return [invalid(RFID, rfid, "NOT_REQUIRED, PENDING, ACCEPTED or REJECTED")]


def _doors(state: VehicleState, now: float, paths: Iterable[str] = DOORS) -> list[Reason]:
    problems: list[Reason] = []
    open_: dict[str, Value | None] = {}
    for path in paths:
        v, bad = _flag(state, now, path)
        problems += bad
        if v:
            open_[path] = True
    if open_:
        names = ", ".join(label(p) for p in open_)
        problems.append(Reason(code="door_open", message=f"Open: {names}.", values=open_))
    return problems


def _windows(state: VehicleState, now: float) -> list[Reason]:
    problems: list[Reason] = []
    open_: dict[str, Value | None] = {}
    for path in WINDOWS:
        v, bad = _number(state, now, path)
        problems += bad
        if v is not None and v > 0:
            open_[path] = v
    if open_:
        names = ", ".join(f"{label(p)} ({v:g} % open)" for p, v in open_.items())
        problems.append(Reason(code="window_open", message=f"Open: {names}.", values=open_))
    return problems


def departure_minutes(
    state: VehicleState, now: float, commanded: float | None = None
) -> tuple[float | None, Reason | None]:
    """The planned departure in minutes after midnight UTC.

    ``(minutes, None)`` when set (a commanded value not yet echoed by the van wins);
    ``(None, None)`` when the van reports that none is set; ``(None, reason)`` when the
    signal is unknown or invalid.
    """
    if commanded is not None:
        return commanded, None
    v = state.get(DEPARTURE_TIME, now)
    if v is None:
        if is_unset(state, DEPARTURE_TIME, now):
            return None, None
        return None, unknown(state, DEPARTURE_TIME, now)
    if isinstance(v, bool) or not isinstance(v, int | float):
        return None, invalid(DEPARTURE_TIME, v, "minutes after midnight, 0 to 1439")
    try:
        return check_minutes(float(v)), None
    except ValueError:
        return None, invalid(DEPARTURE_TIME, v, "minutes after midnight, 0 to 1439")


def time_to_full_s(soc: float, target_soc: float, capacity_kwh: float, power_kw: float) -> float:
    """Seconds to charge from ``soc`` to ``target_soc`` percent at a constant ``power_kw``."""
    missing_kwh = max(0.0, target_soc - soc) / 100.0 * capacity_kwh
    return missing_kwh / power_kw * 3600.0


def format_duration(seconds: float) -> str:
    minutes = math.ceil(seconds / 60.0 - 1e-9)
    return f"{minutes // 60} h {minutes % 60:02d} min"


def charging_power_kw(state: VehicleState, now: float, config: VehicleConfig) -> float:
    """The live charging power when known and > 0, else the configured power."""
    v = state.get(CHARGING_POWER, now)
    if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) and v > 0:
        return float(v)
    return config.charging_power_kw


def _full_by_departure(
    state: VehicleState, now: float, config: VehicleConfig, commanded: float | None
) -> list[Reason]:
    departure, problem = departure_minutes(state, now, commanded)
    if departure is None and problem is None:
        return []
    soc, soc_problems = _number(state, now, SOC)
    missing = ([problem] if problem is not None else []) + soc_problems
    if departure is None or soc is None:
        paths = [p for r in missing for p in r.values]
        return [
            Reason(
                code="estimate_unavailable",
                message="Cannot tell whether the battery will be full by the departure: "
                + "; ".join(r.message for r in missing),
                values={p: None for p in paths},
            )
        ]
    power = charging_power_kw(state, now, config)
    needed = time_to_full_s(soc, config.target_soc, config.usable_capacity_kwh, power)
    full_at = now + needed
    departure_t = next_departure_t(departure, now, config.origin_epoch)
    if full_at <= departure_t + FULL_AT_TOLERANCE_S:
        return []
    origin = config.origin_epoch
    return [
        Reason(
            code="not_full_by_departure",
            message=(
                f"At {power:g} kW the battery needs about {format_duration(needed)} to go from "
                f"{soc:g} % to {config.target_soc:g} %: full at "
                f"{clock_utc(full_at, origin, round_up=True)} UTC, after the planned departure "
                f"at {clock_utc(departure_t, origin)} UTC."
            ),
            values={
                SOC: soc,
                CHARGING_POWER: state.get(CHARGING_POWER, now),
                DEPARTURE_TIME: departure,
                "estimate.power_kw": power,
                "estimate.time_to_full_s": needed,
                "estimate.full_at_t": full_at,
                "estimate.departure_t": departure_t,
            },
        )
    ]


def charging_verdict(
    state: VehicleState,
    now: float,
    config: VehicleConfig,
    *,
    commanded_departure: float | None = None,
) -> Verdict:
    """May the van charge now? Every failing precondition, and the departure estimate."""
    refusals = [*_plug(state, now), *_bonnet(state, now), *_gear(state, now), *_rfid(state, now)]
    not_needed: list[Reason] = []
    soc = state.get(SOC, now)
    if isinstance(soc, int | float) and not isinstance(soc, bool) and soc >= config.target_soc:
        not_needed.append(
            Reason(
                code="target_soc_reached",
                message=(
                    f"The battery is at {soc:g} %, at or above the target {config.target_soc:g} %."
                ),
                values={SOC: soc},
            )
        )
        warnings: list[Reason] = []
    else:
        warnings = _full_by_departure(state, now, config, commanded_departure)
    return decide(now, "charging", refusals, warnings, not_needed)


def _wallbox(state: VehicleState, now: float) -> list[Reason]:
    if state.get(INFRA_CONNECTED, now) is not True:
        return []
    kind = state.get(INFRA_TYPE, now)
    if kind == "WALLBOX":
        return []
    what = "of unknown type" if kind is None else f"a {kind}, not a wallbox"
    return [
        Reason(
            code="not_wallbox",
            message=(
                f"The charging infrastructure is {what}; preconditioning may be less effective."
            ),
            values={INFRA_TYPE: kind if isinstance(kind, str) else None},
        )
    ]


def _battery(state: VehicleState, now: float, config: VehicleConfig) -> list[Reason]:
    soc, problems = _number(state, now, SOC)
    if soc is None or soc > config.preconditioning_min_soc:
        return problems
    return [
        Reason(
            code="battery_too_low",
            message=(
                f"The battery is at {soc:g} %; preconditioning needs more than "
                f"{config.preconditioning_min_soc:g} %."
            ),
            values={SOC: soc},
        )
    ]


def _setpoint(state: VehicleState, now: float) -> tuple[list[Reason], list[Reason]]:
    """(refusals, not-needed reasons) from the cabin setpoint and the outside temperature."""
    setpoint, bad_setpoint = _number(state, now, CABIN_SETPOINT)
    outside, bad_outside = _number(state, now, OUTSIDE_TEMP)
    if setpoint is None or outside is None:
        return bad_setpoint + bad_outside, []
    if not math.isclose(setpoint, outside, rel_tol=0.0, abs_tol=TEMPERATURE_TOLERANCE):
        return [], []
    reason = Reason(
        code="setpoint_equals_outside",
        message=(
            f"The cabin setpoint ({setpoint:g} °C) equals the outside temperature; "
            "there is nothing to heat or cool, so preconditioning is not started."
        ),
        values={CABIN_SETPOINT: setpoint, OUTSIDE_TEMP: outside},
    )
    return [], [reason]


def preconditioning_verdict(
    state: VehicleState,
    now: float,
    config: VehicleConfig,
    *,
    commanded_departure: float | None = None,
) -> Verdict:
    """May the van precondition its cabin now? Every failing precondition."""
    refusals = _must_be(
        state,
        now,
        PRECOND_ENABLED,
        True,
        "preconditioning_disabled",
        "Climate preconditioning is switched off in the van.",
    )
    departure, problem = departure_minutes(state, now, commanded_departure)
    if problem is not None:
        refusals.append(problem)
    elif departure is None:
        refusals.append(
            Reason(
                code="departure_not_set",
                message="No departure time is set.",
                values={DEPARTURE_TIME: None},
            )
        )
    refusals += _doors(state, now)
    refusals += _windows(state, now)
    refusals += _bonnet(state, now)
    refusals += _gear(state, now)
    refusals += _plug(state, now)
    refusals += _battery(state, now, config)
    bad_temperatures, not_needed = _setpoint(state, now)
    refusals += bad_temperatures
    return decide(now, "preconditioning", refusals, _wallbox(state, now), not_needed)


def _speed(state: VehicleState, now: float) -> list[Reason]:
    speed, problems = _number(state, now, SPEED)
    if speed is None or speed == 0:
        return problems
    return [
        Reason(
            code="vehicle_moving",
            message=f"The van is moving ({speed:g} km/h).",
            values={SPEED: speed},
        )
    ]


def lock_verdict(state: VehicleState, now: float, config: VehicleConfig) -> Verdict:
    """May the TCU ask the van to lock? Not while a door is open or the van moves."""
    return _lock_or_unlock("lock", state, now, [*_doors(state, now), *_speed(state, now)])


def unlock_verdict(state: VehicleState, now: float, config: VehicleConfig) -> Verdict:
    """May the TCU ask the van to unlock? Not while the van moves."""
    return _lock_or_unlock("unlock", state, now, _speed(state, now))


def _lock_or_unlock(
    service: Service, state: VehicleState, now: float, refusals: list[Reason]
) -> Verdict:
    want = service == "lock"
    not_needed: list[Reason] = []
    if state.get(LOCKED, now) is want:
        code = "already_locked" if want else "already_unlocked"
        message = f"The van reports it is already {'locked' if want else 'unlocked'}."
        not_needed.append(Reason(code=code, message=message, values={LOCKED: want}))
    return decide(now, service, refusals, (), not_needed)
