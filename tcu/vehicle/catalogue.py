"""The signal catalogue: every vehicle signal the TCU knows, by name.

Names are COVESA Vehicle Signal Specification (VSS) paths where VSS has the signal,
and paths under the extension branch ``Vehicle.Private.`` where it has none (RFID
authorisation at the charging station, infrastructure type, departure time,
preconditioning enabled, charging status and power). ``docs/signals.md`` lists them.

A catalogue entry fixes the value's kind: ``bool``, ``float`` (with a unit), or
``enum`` (one of a fixed set of upper-case strings). A mapping file binds DBC signals
to these paths; whatever the DBC calls things, the rest of the TCU sees only these.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

Kind = Literal["bool", "float", "enum"]
Value = bool | float | str


@dataclass(frozen=True, slots=True, kw_only=True)
class SignalSpec:
    path: str
    kind: Kind
    unit: str = ""
    values: tuple[str, ...] = ()
    description: str = ""

    def __post_init__(self) -> None:
        if not self.path.startswith("Vehicle."):
            raise ValueError(f"signal path must start with 'Vehicle.': {self.path!r}")
        if (self.kind == "enum") != bool(self.values):
            raise ValueError(f"{self.path}: enum signals and only they list values")


P = "Vehicle.Powertrain.TractionBattery"
PORT = f"{P}.Charging.ChargingPort.AnyPosition"
X = "Vehicle.Private"

# Short names used throughout the services, so a rule reads like the van's manual.
DOOR_FRONT_LEFT = "Vehicle.Cabin.Door.Row1.DriverSide.IsOpen"
DOOR_FRONT_RIGHT = "Vehicle.Cabin.Door.Row1.PassengerSide.IsOpen"
DOOR_SLIDING_LEFT = "Vehicle.Cabin.Door.Row2.DriverSide.IsOpen"
DOOR_SLIDING_RIGHT = "Vehicle.Cabin.Door.Row2.PassengerSide.IsOpen"
DOOR_REAR = "Vehicle.Body.Trunk.Rear.IsOpen"
WINDOW_FRONT_LEFT = "Vehicle.Cabin.Door.Row1.DriverSide.Window.Position"
WINDOW_FRONT_RIGHT = "Vehicle.Cabin.Door.Row1.PassengerSide.Window.Position"
BONNET = "Vehicle.Body.Hood.IsOpen"
LOCKED = "Vehicle.Cabin.Door.Row1.DriverSide.IsLocked"
TYRE_FRONT_LEFT = "Vehicle.Chassis.Axle.Row1.Wheel.Left.Tire.Pressure"
TYRE_FRONT_RIGHT = "Vehicle.Chassis.Axle.Row1.Wheel.Right.Tire.Pressure"
TYRE_REAR_LEFT = "Vehicle.Chassis.Axle.Row2.Wheel.Left.Tire.Pressure"
TYRE_REAR_RIGHT = "Vehicle.Chassis.Axle.Row2.Wheel.Right.Tire.Pressure"
SOC = f"{P}.StateOfCharge.Current"
PLUG_CONNECTED = f"{PORT}.IsChargingCableConnected"
PLUG_LOCKED = f"{PORT}.IsChargingCableLocked"
INFRA_CONNECTED = f"{X}.Charging.IsInfrastructureConnected"
INFRA_TYPE = f"{X}.Charging.InfrastructureType"
CHARGING_STATUS = f"{X}.Charging.Status"
CHARGING_POWER = f"{X}.Charging.Power"
RFID = f"{X}.Charging.RfidAuthorization"
GEAR = "Vehicle.Powertrain.Transmission.SelectedGear"
SPEED = "Vehicle.Speed"
IGNITION = "Vehicle.LowVoltageSystemState"
PRECOND_ENABLED = f"{X}.Climate.IsPreconditioningEnabled"
DEPARTURE_TIME = f"{X}.Climate.DepartureTime"
CABIN_SETPOINT = "Vehicle.Cabin.HVAC.Station.Row1.Driver.Temperature"
OUTSIDE_TEMP = "Vehicle.Exterior.AirTemperature"
LATITUDE = "Vehicle.CurrentLocation.Latitude"
LONGITUDE = "Vehicle.CurrentLocation.Longitude"
BATTERY_TEMP = f"{P}.Temperature.Average"

DOORS = (DOOR_FRONT_LEFT, DOOR_FRONT_RIGHT, DOOR_SLIDING_LEFT, DOOR_SLIDING_RIGHT, DOOR_REAR)
WINDOWS = (WINDOW_FRONT_LEFT, WINDOW_FRONT_RIGHT)
TYRES = (TYRE_FRONT_LEFT, TYRE_FRONT_RIGHT, TYRE_REAR_LEFT, TYRE_REAR_RIGHT)

_SPECS = [
    SignalSpec(path=DOOR_FRONT_LEFT, kind="bool", description="driver door open"),
    SignalSpec(path=DOOR_FRONT_RIGHT, kind="bool", description="passenger door open"),
    SignalSpec(path=DOOR_SLIDING_LEFT, kind="bool", description="left sliding door open"),
    SignalSpec(path=DOOR_SLIDING_RIGHT, kind="bool", description="right sliding door open"),
    SignalSpec(path=DOOR_REAR, kind="bool", description="rear doors open"),
    SignalSpec(
        path=WINDOW_FRONT_LEFT,
        kind="float",
        unit="percent",
        description="driver window, 0 = closed, 100 = fully open",
    ),
    SignalSpec(
        path=WINDOW_FRONT_RIGHT,
        kind="float",
        unit="percent",
        description="passenger window, 0 = closed, 100 = fully open",
    ),
    SignalSpec(path=BONNET, kind="bool", description="bonnet open"),
    SignalSpec(path=LOCKED, kind="bool", description="central lock engaged"),
    SignalSpec(path=TYRE_FRONT_LEFT, kind="float", unit="kPa"),
    SignalSpec(path=TYRE_FRONT_RIGHT, kind="float", unit="kPa"),
    SignalSpec(path=TYRE_REAR_LEFT, kind="float", unit="kPa"),
    SignalSpec(path=TYRE_REAR_RIGHT, kind="float", unit="kPa"),
    SignalSpec(path=SOC, kind="float", unit="percent", description="HV battery state of charge"),
    SignalSpec(path=BATTERY_TEMP, kind="float", unit="celsius"),
    SignalSpec(path=PLUG_CONNECTED, kind="bool", description="charge plug connected"),
    SignalSpec(path=PLUG_LOCKED, kind="bool", description="charge plug locked in the inlet"),
    SignalSpec(
        path=INFRA_CONNECTED,
        kind="bool",
        description="plug connected to the charging infrastructure (pilot present)",
    ),
    SignalSpec(
        path=INFRA_TYPE, kind="enum", values=("NONE", "WALLBOX", "HOME_SOCKET", "PUBLIC_AC", "DC")
    ),
    SignalSpec(path=CHARGING_STATUS, kind="enum", values=("IDLE", "CHARGING", "COMPLETE", "FAULT")),
    SignalSpec(path=CHARGING_POWER, kind="float", unit="kW"),
    SignalSpec(
        path=RFID,
        kind="enum",
        values=("NOT_REQUIRED", "PENDING", "ACCEPTED", "REJECTED"),
        description="RFID card authorisation at the charging station",
    ),
    SignalSpec(path=GEAR, kind="enum", values=("P", "R", "N", "D")),
    SignalSpec(path=SPEED, kind="float", unit="km/h"),
    SignalSpec(path=IGNITION, kind="enum", values=("OFF", "ACC", "ON", "START")),
    SignalSpec(path=PRECOND_ENABLED, kind="bool", description="climate preconditioning enabled"),
    SignalSpec(
        path=DEPARTURE_TIME,
        kind="float",
        unit="min",
        description="planned departure, minutes after midnight UTC; unknown when unset",
    ),
    SignalSpec(path=CABIN_SETPOINT, kind="float", unit="celsius"),
    SignalSpec(path=OUTSIDE_TEMP, kind="float", unit="celsius"),
    SignalSpec(path=LATITUDE, kind="float", unit="degrees"),
    SignalSpec(path=LONGITUDE, kind="float", unit="degrees"),
]

CATALOGUE: dict[str, SignalSpec] = {s.path: s for s in _SPECS}


def spec(path: str) -> SignalSpec:
    """The catalogue entry for ``path``; KeyError names the unknown path."""
    try:
        return CATALOGUE[path]
    except KeyError:
        raise KeyError(f"unknown signal path {path!r}") from None


# Compact numeric ids for the wire (telemetry keys). Append only: an id is never reused.
SIGNAL_IDS: dict[str, int] = {s.path: i + 1 for i, s in enumerate(_SPECS)}
SIGNAL_BY_ID: dict[int, str] = {i: p for p, i in SIGNAL_IDS.items()}


COMMAND_NAMES: Final = (
    "lock",
    "unlock",
    "start_charging",
    "stop_charging",
    "start_preconditioning",
    "stop_preconditioning",
    "set_departure",
)
"""The vehicle functions a command may ask for (from the backend, a trace or a bench)."""
