"""cross_border: Oslo to Gothenburg on the E6, across the Svinesund border, time-compressed.

Monday 2 March 2026 from 06:30 UTC, 1 degC in Oslo. The van leaves Oslo (59.91 N,
10.75 E), follows the E6 south past Moss, Sarpsborg and Halden, crosses the Svinesund
bridge into Sweden (the border, 59.10 N 11.27 E), slows through the customs lane, stops at
a DC fast charger at Nordby (no RFID: the charger bills the contract over ISO 15118),
and carries on past Uddevalla and Kungaelv to Gothenburg (57.71 N, 11.97 E).

The journey takes a little over three hours; the storyline runs it at 1:20
(``TIME_COMPRESSION``): one storyline second is twenty journey seconds. Speeds, energy
and charge are the journey's; GNSS fixes stay at 1 Hz of storyline time, so consecutive
fixes are about 600 m apart at 110 km/h. The 10 ms and 20 ms traffic is
logged with a 200 ms floor.
"""

from __future__ import annotations

from datetime import UTC, datetime

from tcu.link.geo import LatLon
from tcu.storyline.story import Storyline
from tcu.storyline.van import add_charge, add_drive, start
from tcu.vehicle import catalogue as c

START = datetime(2026, 3, 2, 6, 30, tzinfo=UTC)
TIME_COMPRESSION = 20.0
LOG_MIN_PERIOD = 0.2
BORDER: LatLon = (59.10000, 11.27000)

NORWAY: list[tuple[LatLon, str]] = [
    ((59.91000, 10.75000), "Oslo"),
    ((59.89500, 10.80500), "Ryen"),
    ((59.74300, 10.77000), "Vinterbro"),
    ((59.60000, 10.74300), "Vestby"),
    ((59.43000, 10.76000), "Moss"),
    ((59.35000, 10.86500), "Raade"),
    ((59.27500, 11.09000), "Sarpsborg"),
    ((59.14000, 11.24000), "Halden"),
    (BORDER, "Svinesund bridge (border)"),
    ((59.08000, 11.26000), "Nordby"),
]
NORWAY_LIMITS = [50.0, 80.0, 110.0, 110.0, 100.0, 110.0, 100.0, 80.0, 30.0]
SWEDEN: list[tuple[LatLon, str]] = [
    ((59.08000, 11.26000), "Nordby"),
    ((58.94000, 11.24500), "Stroemstad"),
    ((58.72500, 11.33000), "Tanumshede"),
    ((58.47000, 11.67000), "Munkedal"),
    ((58.35500, 11.93500), "Uddevalla"),
    ((58.22000, 11.92000), "Ljungskile"),
    ((57.87000, 11.97500), "Kungaelv"),
    ((57.71000, 11.97000), "Gothenburg"),
]
SWEDEN_LIMITS = [90.0, 110.0, 110.0, 100.0, 110.0, 110.0, 70.0]


def build() -> Storyline:
    k = TIME_COMPRESSION
    b = start(
        "cross_border",
        "Oslo - E6 - Svinesund border - Gothenburg, with a DC charge (1:20 time compression)",
        START,
        {
            c.SOC: 94.0,
            c.BATTERY_TEMP: 12.0,
            c.OUTSIDE_TEMP: 1.0,
            c.CABIN_SETPOINT: 20.0,
            c.LATITUDE: NORWAY[0][0][0],
            c.LONGITUDE: NORWAY[0][0][1],
            "HVAC_CabinTemp": 18.0,
            "HVAC_HeaterPower": 2.0,
            "GNSS_Altitude": 15.0,
        },
    )
    b.bus(0.0, "awake")
    b.set(3.0, {c.GEAR: "D"}, event="gear D, leaves Oslo")
    points = [p for p, _ in NORWAY]
    t_arrive = add_drive(
        b, 4.0, points, NORWAY_LIMITS, time_compression=k, landmarks=_landmarks(NORWAY)
    )
    b.ramp(c.OUTSIDE_TEMP, 0.0, t_arrive, 3.0)
    b.ramp(c.BATTERY_TEMP, 0.0, t_arrive, 24.0)
    b.ramp("HVAC_CabinTemp", 0.0, 60.0, 20.0)

    t = t_arrive + 2
    b.set(t, {c.GEAR: "P"}, event="parked at the Nordby DC charger, gear P")
    b.set(t + 1, {c.IGNITION: "OFF", "HVAC_HeaterPower": 0.0}, event="ignition OFF")
    b.set(t + 3, {c.PLUG_CONNECTED: True, c.PLUG_LOCKED: True}, event="charge plug connected (DC)")
    b.set(t + 4, {c.INFRA_CONNECTED: True, c.INFRA_TYPE: "DC", c.RFID: "NOT_REQUIRED"})
    b.bus(t + 6, "charging")
    done = add_charge(
        b, t + 6, 90.0, 80.0, time_compression=k, event="DC charging starts at 90 kW (no RFID)"
    )
    b.set(done + 2, {c.PLUG_LOCKED: False})
    b.bus(done + 3, "awake")
    b.set(
        done + 4,
        {
            c.PLUG_CONNECTED: False,
            c.INFRA_CONNECTED: False,
            c.INFRA_TYPE: "NONE",
            c.CHARGING_STATUS: "IDLE",
        },
        event="charge plug removed",
    )
    b.set(done + 6, {c.IGNITION: "ON", "HVAC_HeaterPower": 1.5}, event="ignition ON")
    b.set(done + 8, {c.GEAR: "D"}, event="gear D, leaves Nordby")
    points = [p for p, _ in SWEDEN]
    t_end = add_drive(
        b, done + 9, points, SWEDEN_LIMITS, time_compression=k, landmarks=_landmarks(SWEDEN)
    )
    b.ramp(c.OUTSIDE_TEMP, t_arrive, t_end, 4.0)
    b.ramp(c.BATTERY_TEMP, t_arrive, t_end, 27.0)
    b.set(t_end + 2, {c.GEAR: "P"}, event="arrives in Gothenburg, gear P")
    return b.build(
        t_end + 10,
        log_min_period=LOG_MIN_PERIOD,
        time_compression=k,
        notes="1:20 time compression; 10 ms and 20 ms messages logged every 200 ms.",
    )


def _landmarks(places: list[tuple[LatLon, str]]) -> dict[int, str]:
    out = {}
    for i, (point, name) in enumerate(places[1:-1], start=1):
        if point == BORDER:
            out[i] = f"crosses the Norway-Sweden border on the {name.split(' (')[0]}"
        else:
            out[i] = f"passes {name}"
    return out
