"""The eCell van as the storylines drive it: initial state, driving and charging.

Theory of operation: storylines are written with a ``StoryBuilder``; this module adds the
van's physics to it, as knots. ``start`` puts every catalogue signal and the unmapped
tracks the generator reads (cabin temperature, battery capacity...) at their first
values. ``add_drive`` turns a route into sampled speed, latitude, longitude and heading
and lowers the state of charge by the energy the distance costs. ``add_charge`` ramps the
state of charge at a constant power against the battery's usable capacity and returns
when the target is reached; the storylines charge at constant power up to the target (no
taper), so the SoC is a single ramp.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from tcu.link.geo import LatLon, distance_m
from tcu.storyline import route
from tcu.storyline.story import StoryBuilder
from tcu.vehicle import catalogue as c
from tcu.vehicle.catalogue import Value

USABLE_CAPACITY_KWH = 90.0
CONSUMPTION_KWH_PER_KM = 0.24
TYRE_PLACARD_KPA = 450.0


def start(
    name: str, title: str, when: datetime, overrides: dict[str, Value | None]
) -> StoryBuilder:
    """A builder with every track at its value at t=0."""
    state: dict[str, Value | None] = {
        c.DOOR_FRONT_LEFT: False,
        c.DOOR_FRONT_RIGHT: False,
        c.DOOR_SLIDING_LEFT: False,
        c.DOOR_SLIDING_RIGHT: False,
        c.DOOR_REAR: False,
        c.WINDOW_FRONT_LEFT: 0.0,
        c.WINDOW_FRONT_RIGHT: 0.0,
        c.BONNET: False,
        c.LOCKED: False,
        c.TYRE_FRONT_LEFT: TYRE_PLACARD_KPA,
        c.TYRE_FRONT_RIGHT: TYRE_PLACARD_KPA,
        c.TYRE_REAR_LEFT: TYRE_PLACARD_KPA,
        c.TYRE_REAR_RIGHT: TYRE_PLACARD_KPA,
        c.SOC: 50.0,
        c.BATTERY_TEMP: 20.0,
        c.PLUG_CONNECTED: False,
        c.PLUG_LOCKED: False,
        c.INFRA_CONNECTED: False,
        c.INFRA_TYPE: "NONE",
        c.CHARGING_STATUS: "IDLE",
        c.CHARGING_POWER: 0.0,
        c.RFID: "NOT_REQUIRED",
        c.GEAR: "P",
        c.SPEED: 0.0,
        c.IGNITION: "ON",
        c.PRECOND_ENABLED: False,
        c.DEPARTURE_TIME: None,
        c.CABIN_SETPOINT: 21.0,
        c.OUTSIDE_TEMP: 10.0,
        c.LATITUDE: 59.91,
        c.LONGITUDE: 10.75,
        "HVAC_CabinTemp": 20.0,
        "HVAC_PrecondActive": 0.0,
        "HVAC_HeaterPower": 0.0,
        "BMS_UsableCapacity": USABLE_CAPACITY_KWH,
        "OBC_TargetSoC": 100.0,
        "GNSS_Heading": 0.0,
        "GNSS_Altitude": 90.0,
    }
    unknown = set(overrides) - set(state)
    if unknown:
        raise KeyError(f"{name}: no track {sorted(unknown)[0]}")
    state.update(overrides)
    b = StoryBuilder(name, title, when)
    b.set(0.0, state)
    return b


def add_drive(
    b: StoryBuilder,
    t0: float,
    points: Sequence[LatLon],
    limits_kmh: Sequence[float],
    *,
    time_compression: float = 1.0,
    event: str | None = None,
    landmarks: dict[int, str] | None = None,
) -> float:
    """Drive the route from standstill at ``t0``; the storyline time when the van stops.

    With ``time_compression`` k, k journey seconds pass per storyline second: speeds stay
    those of the journey, GNSS fixes are k times further apart. ``landmarks`` maps
    waypoint indexes to the event text for passing them.
    """
    samples = route.drive(points, limits_kmh, dt=1.0)
    k = time_compression
    if event:
        b.event(t0, event)
    along = 0.0
    for i in range(1, len(points)):
        along += distance_m(points[i - 1], points[i])
        text = (landmarks or {}).get(i)
        if text:
            passed = next(s for s in samples if s.distance_m >= along - 0.5)
            b.event(t0 + passed.t / k, text)
    b.samples(c.SPEED, [(t0 + s.t / k, round(s.speed_kmh, 2)) for s in samples])
    b.samples(c.LATITUDE, [(t0 + s.t / k, s.lat) for s in samples])
    b.samples(c.LONGITUDE, [(t0 + s.t / k, s.lon) for s in samples])
    for s in samples:
        b.set(t0 + s.t / k, {"GNSS_Heading": round(s.heading, 2)})
    t_end = t0 + samples[-1].t / k
    soc0 = b.number(c.SOC, t0)
    used = samples[-1].distance_m / 1000.0 * CONSUMPTION_KWH_PER_KM
    cap = b.number("BMS_UsableCapacity", t0)
    b.ramp(c.SOC, t0, t_end, max(0.0, soc0 - used / cap * 100.0))
    return t_end


def add_charge(
    b: StoryBuilder,
    t0: float,
    power_kw: float,
    target_soc: float,
    *,
    time_compression: float = 1.0,
    event: str | None = "charging starts",
) -> float:
    """Charge at ``power_kw`` from ``t0``; the storyline time when ``target_soc`` is reached.

    Sets status CHARGING and the power at ``t0`` and COMPLETE with no power at the end.
    """
    soc0 = b.number(c.SOC, t0)
    cap = b.number("BMS_UsableCapacity", t0)
    hours = max(0.0, target_soc - soc0) / 100.0 * cap / power_kw
    t1 = t0 + hours * 3600.0 / time_compression
    b.set(
        t0,
        {c.CHARGING_STATUS: "CHARGING", c.CHARGING_POWER: power_kw, "OBC_TargetSoC": target_soc},
        event=event,
    )
    b.ramp(c.SOC, t0, t1, target_soc)
    b.set(
        t1,
        {c.CHARGING_STATUS: "COMPLETE", c.CHARGING_POWER: 0.0},
        event=f"charge complete at {target_soc:.0f} %",
    )
    return t1
