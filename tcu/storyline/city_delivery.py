"""city_delivery: a delivery round in Oslo with a slow puncture and two charging stops.

Wednesday 10 June 2026 from 09:40 UTC, 19.5 degC rising to 21 degC. Five drives through
the city (30-50 km/h, with red lights) and five stops: a bakery (window down and up,
driver and right sliding door), a shop (rear doors, left sliding door), lunch at a public
AC charger whose RFID reader first rejects the driver's card and accepts a second
attempt, a stop where the bonnet is opened to top up the washer fluid (and the passenger
door used), and a customer's workshop where the van tops up from a home socket with
preconditioning enabled at a setpoint equal to the outside temperature (nothing to do).
The right rear tyre loses pressure all along, from 450 kPa to under 300 kPa.
"""

from __future__ import annotations

from datetime import UTC, datetime

from tcu.link.geo import LatLon
from tcu.storyline.story import StoryBuilder, Storyline
from tcu.storyline.van import add_drive, start
from tcu.vehicle import catalogue as c

START = datetime(2026, 6, 10, 9, 40, tzinfo=UTC)
LOG_MIN_PERIOD = 0.1

DRIVES: list[tuple[str, list[list[LatLon]], list[list[float]]]] = [
    (
        "the bakery (Gruenerloekka)",
        [
            [(59.91330, 10.76210), (59.91560, 10.76480), (59.91900, 10.76300)],
            [(59.91900, 10.76300), (59.92150, 10.75990), (59.92350, 10.75900)],
        ],
        [[30.0, 40.0], [40.0, 30.0]],
    ),
    (
        "the shop (Torshov)",
        [[(59.92350, 10.75900), (59.92700, 10.75600), (59.93050, 10.76000), (59.93350, 10.76500)]],
        [[30.0, 40.0, 30.0]],
    ),
    (
        "the public charger (Vulkan)",
        [
            [(59.93350, 10.76500), (59.93000, 10.75300)],
            [(59.93000, 10.75300), (59.92500, 10.75000), (59.92250, 10.75150)],
        ],
        [[40.0], [40.0, 20.0]],
    ),
    (
        "the garage customer (Majorstuen)",
        [
            [(59.92250, 10.75150), (59.92700, 10.73500)],
            [(59.92700, 10.73500), (59.93000, 10.72500), (59.92950, 10.71700)],
        ],
        [[40.0], [50.0, 30.0]],
    ),
    (
        "the workshop (Frogner)",
        [[(59.92950, 10.71700), (59.92500, 10.71000), (59.92100, 10.70500)]],
        [[40.0, 30.0]],
    ),
    (
        "the next customer (Skillebekk)",
        [[(59.92100, 10.70500), (59.91800, 10.71200), (59.91600, 10.72000)]],
        [[30.0, 50.0]],
    ),
]


def _drive(b: StoryBuilder, t: float, index: int) -> float:
    """Drive number ``index`` with a red light between its parts; the arrival time."""
    title, parts, limits = DRIVES[index]
    b.set(t, {c.GEAR: "D", c.IGNITION: "ON"}, event=f"gear D, drives to {title}")
    for i, (points, lim) in enumerate(zip(parts, limits, strict=True)):
        t = add_drive(b, t + 2, points, lim)
        if i + 1 < len(parts):
            b.event(t, "waits at a red light")
            t += 20
    b.set(t + 2, {c.GEAR: "P", c.IGNITION: "ACC"}, event=f"arrives at {title}, gear P")
    return t + 2


def _door(b: StoryBuilder, t: float, path: str, name: str, open_s: float) -> float:
    b.set(t, {path: True}, event=f"{name} opens")
    b.set(t + open_s, {path: False}, event=f"{name} closes")
    return t + open_s


def build() -> Storyline:
    b = start(
        "city_delivery",
        "Delivery round: doors, window, bonnet, RFID rejected then accepted, slow puncture",
        START,
        {
            c.SOC: 72.0,
            c.BATTERY_TEMP: 27.0,
            c.OUTSIDE_TEMP: 19.5,
            c.CABIN_SETPOINT: 21.0,
            c.TYRE_REAR_RIGHT: 452.0,
            c.LATITUDE: DRIVES[0][1][0][0][0],
            c.LONGITUDE: DRIVES[0][1][0][0][1],
            "HVAC_CabinTemp": 22.0,
            "GNSS_Altitude": 25.0,
        },
    )
    b.bus(0.0, "awake")

    # Stop A: the bakery.
    t = _drive(b, 5.0, 0)
    b.ramp(c.WINDOW_FRONT_LEFT, t + 3, t + 7, 100.0, event="driver window goes down")
    b.event(t + 7, "driver window fully open")
    t = _door(b, t + 15, c.DOOR_FRONT_LEFT, "driver door", 4)
    t = _door(b, t + 2, c.DOOR_SLIDING_RIGHT, "right sliding door", 25)
    t = _door(b, t + 14, c.DOOR_FRONT_LEFT, "driver door", 4)
    b.ramp(c.WINDOW_FRONT_LEFT, t + 4, t + 8, 0.0, event="driver window goes up")
    b.event(t + 8, "driver window closed")

    # Stop B: the shop, rear doors.
    t = _drive(b, t + 14, 1)
    t = _door(b, t + 10, c.DOOR_FRONT_LEFT, "driver door", 4)
    b.set(t + 15, {c.DOOR_REAR: True}, event="rear doors open")
    b.set(t + 110, {c.DOOR_REAR: False}, event="rear doors close")
    t = _door(b, t + 125, c.DOOR_SLIDING_LEFT, "left sliding door", 20)
    t = _door(b, t + 15, c.DOOR_FRONT_LEFT, "driver door", 4)

    # Stop C: lunch at a public AC charger, RFID rejected then accepted.
    t = _drive(b, t + 15, 2)
    b.ramp(c.OUTSIDE_TEMP, 0.0, t, 21.0)
    b.set(t + 5, {c.IGNITION: "OFF"}, event="ignition OFF")
    t = _door(b, t + 8, c.DOOR_FRONT_LEFT, "driver door", 4)
    lunch_end = t + 71 + 14 * 60 + 40
    lunch_departure = START.hour * 60 + START.minute + round(lunch_end / 60)
    b.set(
        t + 10,
        {c.DEPARTURE_TIME: float(lunch_departure)},
        event=f"driver plans to leave at {lunch_departure // 60:02d}:{lunch_departure % 60:02d}"
        " UTC (charge will not be full by then)",
    )
    b.set(t + 13, {c.PLUG_CONNECTED: True}, event="charge plug connected (public AC)")
    b.set(t + 15, {c.PLUG_LOCKED: True, c.INFRA_CONNECTED: True, c.INFRA_TYPE: "PUBLIC_AC"})
    b.set(t + 17, {c.RFID: "PENDING"}, event="station asks for an RFID card: PENDING")
    b.set(t + 24, {c.RFID: "REJECTED"}, event="RFID card REJECTED")
    b.set(t + 58, {c.RFID: "PENDING"}, event="driver retries with another card: PENDING")
    b.set(t + 65, {c.RFID: "ACCEPTED"}, event="RFID card ACCEPTED")
    charge = t + 71
    b.set(
        charge,
        {c.CHARGING_STATUS: "CHARGING", c.CHARGING_POWER: 11.0, "OBC_TargetSoC": 80.0},
        event="charging starts at 11 kW",
    )
    b.set(charge + 15, {c.LOCKED: True}, event="van locked, driver at lunch")
    b.bus(charge + 30, "charging")
    end = charge + 14 * 60
    soc = b.number(c.SOC, charge)
    b.ramp(c.SOC, charge, end, soc + 11.0 * (end - charge) / 3600.0 / 90.0 * 100.0)
    b.ramp(c.BATTERY_TEMP, 0.0, end, 29.0)
    b.bus(end - 20, "awake")
    b.set(end - 20, {c.LOCKED: False}, event="driver back, van unlocked")
    b.set(
        end,
        {c.CHARGING_STATUS: "IDLE", c.CHARGING_POWER: 0.0},
        event="driver ends the charging session",
    )
    b.set(end + 4, {c.PLUG_LOCKED: False})
    b.set(
        end + 10,
        {
            c.PLUG_CONNECTED: False,
            c.INFRA_CONNECTED: False,
            c.INFRA_TYPE: "NONE",
            c.RFID: "NOT_REQUIRED",
            c.DEPARTURE_TIME: None,
        },
        event="charge plug removed",
    )
    t = _door(b, end + 25, c.DOOR_FRONT_LEFT, "driver door", 4)

    # Stop D: washer fluid under the bonnet, a parcel through the passenger door.
    t = _drive(b, t + 10, 3)
    t = _door(b, t + 8, c.DOOR_FRONT_LEFT, "driver door", 4)
    b.set(t + 20, {c.BONNET: True}, event="bonnet opens (washer fluid)")
    b.set(t + 95, {c.BONNET: False}, event="bonnet closes")
    t = _door(b, t + 110, c.DOOR_FRONT_RIGHT, "passenger door", 15)
    t = _door(b, t + 30, c.DOOR_FRONT_LEFT, "driver door", 4)

    # Stop E: home socket at a workshop, preconditioning not needed.
    t = _drive(b, t + 10, 4)
    b.set(t + 6, {c.IGNITION: "OFF"}, event="ignition OFF")
    t = _door(b, t + 10, c.DOOR_FRONT_LEFT, "driver door", 4)
    b.set(
        t + 25,
        {c.PLUG_CONNECTED: True, c.PLUG_LOCKED: True},
        event="charge plug connected (home socket)",
    )
    b.set(t + 27, {c.INFRA_CONNECTED: True, c.INFRA_TYPE: "HOME_SOCKET"})
    plug = t + 30
    b.set(plug, {c.CHARGING_STATUS: "CHARGING", c.CHARGING_POWER: 2.3}, event="charging at 2.3 kW")
    leave = plug + 6 * 60
    departure = START.hour * 60 + START.minute + round((leave + 30) / 60)
    b.set(
        plug + 15,
        {c.PRECOND_ENABLED: True, c.DEPARTURE_TIME: float(departure)},
        event=f"preconditioning enabled, departure {departure // 60:02d}:{departure % 60:02d} "
        "UTC at 21 degC = outside 21 degC (not needed)",
    )
    b.bus(plug + 40, "charging")
    soc = b.number(c.SOC, plug)
    b.ramp(c.SOC, plug, leave, soc + 2.3 * (leave - plug) / 3600.0 / 90.0 * 100.0)
    b.bus(leave - 15, "awake")
    b.set(
        leave,
        {c.CHARGING_STATUS: "IDLE", c.CHARGING_POWER: 0.0, c.PLUG_LOCKED: False},
        event="driver ends the charging session",
    )
    b.set(
        leave + 6,
        {c.PLUG_CONNECTED: False, c.INFRA_CONNECTED: False, c.INFRA_TYPE: "NONE"},
        event="charge plug removed",
    )
    b.set(
        leave + 20,
        {c.PRECOND_ENABLED: False, c.DEPARTURE_TIME: None},
        event="preconditioning disabled",
    )
    t = _door(b, leave + 25, c.DOOR_FRONT_LEFT, "driver door", 4)

    t = _drive(b, t + 8, 5)
    b.ramp(c.TYRE_REAR_RIGHT, 60.0, t, 288.0)
    b.event(60.0, "right rear tyre starts losing pressure (452 kPa)")
    for kpa, text in (
        (340.0, "TPMS warning: right rear under 340 kPa"),
        (300.0, "right rear tyre under 300 kPa"),
    ):
        b.event(60.0 + (452.0 - kpa) / (452.0 - 288.0) * (t - 60.0), text)
    return b.build(
        t + 15,
        log_min_period=LOG_MIN_PERIOD,
        notes="Logged with a 100 ms floor: the 10 ms and 20 ms messages appear every "
        "100 ms, their counters advancing by the frames not logged.",
    )
