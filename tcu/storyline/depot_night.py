"""depot_night: evening arrival at the depot, wallbox charging, preconditioned departure.

Tuesday 14 January 2026, Oslo (Alnabru depot), -6 degC falling to -9 degC. The van comes in
at 17:30 UTC with 35 % charge, parks, is plugged into a 22 kW wallbox that asks for an RFID
card (pending, then accepted), and charges to 90 %. The driver enables preconditioning for
a 06:30 UTC departure at 21 degC. After the charge the bus sleeps; it wakes at 05:45 so the
HVAC can heat cabin and battery from the grid; at 06:25 the driver unlocks, unplugs and
drives off.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from tcu.storyline.story import Storyline
from tcu.storyline.van import add_charge, add_drive, start
from tcu.vehicle import catalogue as c

START = datetime(2026, 1, 14, 17, 30, tzinfo=UTC)
DEPARTURE = datetime(2026, 1, 15, 6, 30, tzinfo=UTC)
WAKE = DEPARTURE - timedelta(minutes=45)

APPROACH = [
    (59.93650, 10.87000),
    (59.93400, 10.86000),
    (59.93200, 10.85000),
    (59.93100, 10.84450),
    (59.93060, 10.84370),
]
APPROACH_LIMITS = [50.0, 50.0, 30.0, 10.0]
LEAVE = [(59.93060, 10.84370), (59.93100, 10.84450), (59.93200, 10.85000), (59.93450, 10.86100)]
LEAVE_LIMITS = [10.0, 30.0, 50.0]


def _at(when: datetime) -> float:
    return (when - START).total_seconds()


def build() -> Storyline:
    b = start(
        "depot_night",
        "Evening arrival, wallbox charging with RFID, preconditioned departure",
        START,
        {
            c.SOC: 35.5,
            c.BATTERY_TEMP: 24.0,
            c.OUTSIDE_TEMP: -6.0,
            c.CABIN_SETPOINT: 21.0,
            c.GEAR: "D",
            c.LOCKED: False,
            c.LATITUDE: APPROACH[0][0],
            c.LONGITUDE: APPROACH[0][1],
            "HVAC_CabinTemp": 20.5,
            "HVAC_HeaterPower": 1.5,
            "GNSS_Altitude": 120.0,
        },
    )
    b.bus(0.0, "awake")
    t = add_drive(b, 2.0, APPROACH, APPROACH_LIMITS, event="pulls away from the junction")
    b.set(t + 3, {c.GEAR: "P"}, event="parked at the depot, gear P")
    b.set(
        t + 10,
        {c.PRECOND_ENABLED: True, c.DEPARTURE_TIME: 390.0, c.CABIN_SETPOINT: 21.0},
        event="driver enables preconditioning: departure 06:30 UTC, 21 degC",
    )
    b.set(t + 18, {c.IGNITION: "OFF", "HVAC_HeaterPower": 0.0}, event="ignition OFF")
    b.set(t + 22, {c.DOOR_FRONT_LEFT: True}, event="driver door opens")
    b.set(t + 27, {c.DOOR_FRONT_LEFT: False}, event="driver door closes")
    plug = t + 60
    b.set(plug, {c.PLUG_CONNECTED: True}, event="charge plug connected (wallbox)")
    b.set(plug + 2, {c.PLUG_LOCKED: True}, event="plug locked in the inlet")
    b.set(plug + 3, {c.INFRA_CONNECTED: True, c.INFRA_TYPE: "WALLBOX"})
    b.set(plug + 5, {c.RFID: "PENDING"}, event="wallbox asks for an RFID card: PENDING")
    b.set(plug + 14, {c.RFID: "ACCEPTED"}, event="RFID card ACCEPTED")
    b.ramp(c.BATTERY_TEMP, 0.0, plug + 20, 23.0)
    done = add_charge(b, plug + 20, 22.0, 90.0, event="charging starts at 22 kW")
    b.ramp(c.BATTERY_TEMP, plug + 20, done, 19.0)
    b.set(plug + 45, {c.LOCKED: True}, event="van locked")
    b.bus(plug + 60, "charging")
    b.bus(done + 300, "asleep")
    b.event(done + 300, "bus asleep")

    wake = _at(WAKE)
    b.ramp(c.OUTSIDE_TEMP, plug, wake, -9.0)
    b.ramp("HVAC_CabinTemp", 0.0, wake, -7.0)
    b.ramp(c.BATTERY_TEMP, done, wake, 9.0)
    b.bus(wake, "charging")
    b.set(
        wake,
        {"HVAC_PrecondActive": 1.0, "HVAC_HeaterPower": 7.5},
        event="bus wakes: preconditioning starts (window 05:45-06:30 UTC)",
    )
    warm = wake + 35 * 60
    b.ramp("HVAC_CabinTemp", wake, warm, 21.0)
    b.ramp(c.BATTERY_TEMP, wake, _at(DEPARTURE), 15.0)
    b.set(warm, {"HVAC_HeaterPower": 2.0}, event="cabin at 21 degC, heater holds")

    unlock = _at(DEPARTURE) - 300
    b.bus(unlock, "awake")
    b.set(unlock, {c.LOCKED: False}, event="driver unlocks the van")
    b.set(unlock + 2, {c.PLUG_LOCKED: False})
    b.set(
        unlock + 12,
        {
            c.PLUG_CONNECTED: False,
            c.INFRA_CONNECTED: False,
            c.INFRA_TYPE: "NONE",
            c.RFID: "NOT_REQUIRED",
            c.CHARGING_STATUS: "IDLE",
        },
        event="charge plug removed",
    )
    b.set(unlock + 30, {c.DOOR_FRONT_LEFT: True}, event="driver door opens")
    b.set(unlock + 35, {c.DOOR_FRONT_LEFT: False}, event="driver door closes")
    b.set(unlock + 40, {c.IGNITION: "START"})
    b.set(
        unlock + 41,
        {c.IGNITION: "ON", "HVAC_PrecondActive": 0.0, "HVAC_HeaterPower": 2.5},
        event="ignition ON, preconditioning ends",
    )
    b.set(unlock + 50, {c.GEAR: "D"}, event="gear D")
    t = add_drive(b, unlock + 52, LEAVE, LEAVE_LIMITS, event="departs the depot")
    b.event(t, "stops at the depot exit")
    return b.build(
        t + 10,
        notes="Full bus rate while awake; charging ECUs' slow messages while charging "
        "and preconditioning; silent in between.",
    )
