"""Which signals to draw: VSS paths, short aliases, and the default selection."""

from __future__ import annotations

from collections.abc import Iterable

from tcu.errors import ConfigError
from tcu.vehicle import catalogue as cat

ALIASES: dict[str, tuple[str, ...]] = {
    "soc": (cat.SOC,),
    "speed": (cat.SPEED,),
    "gear": (cat.GEAR,),
    "ignition": (cat.IGNITION,),
    "plug": (cat.PLUG_CONNECTED,),
    "plug_locked": (cat.PLUG_LOCKED,),
    "infrastructure": (cat.INFRA_CONNECTED,),
    "infrastructure_type": (cat.INFRA_TYPE,),
    "charging": (cat.CHARGING_STATUS,),
    "charging_power": (cat.CHARGING_POWER,),
    "rfid": (cat.RFID,),
    "doors": cat.DOORS,
    "door_fl": (cat.DOOR_FRONT_LEFT,),
    "door_fr": (cat.DOOR_FRONT_RIGHT,),
    "door_sl": (cat.DOOR_SLIDING_LEFT,),
    "door_sr": (cat.DOOR_SLIDING_RIGHT,),
    "door_rear": (cat.DOOR_REAR,),
    "bonnet": (cat.BONNET,),
    "windows": cat.WINDOWS,
    "locked": (cat.LOCKED,),
    "tyres": cat.TYRES,
    "tyre_fl": (cat.TYRE_FRONT_LEFT,),
    "tyre_fr": (cat.TYRE_FRONT_RIGHT,),
    "tyre_rl": (cat.TYRE_REAR_LEFT,),
    "tyre_rr": (cat.TYRE_REAR_RIGHT,),
    "outside_temp": (cat.OUTSIDE_TEMP,),
    "battery_temp": (cat.BATTERY_TEMP,),
    "cabin_setpoint": (cat.CABIN_SETPOINT,),
    "preconditioning": (cat.PRECOND_ENABLED,),
    "departure": (cat.DEPARTURE_TIME,),
    "lat": (cat.LATITUDE,),
    "lon": (cat.LONGITUDE,),
}

DEFAULT_SIGNALS: tuple[str, ...] = (
    "soc",
    "plug",
    "charging",
    "gear",
    "doors",
    "locked",
    "tyres",
    "outside_temp",
)

SHORT: dict[str, str] = {
    cat.SOC: "state of charge",
    cat.SPEED: "speed",
    cat.GEAR: "gear",
    cat.IGNITION: "ignition",
    cat.PLUG_CONNECTED: "plug connected",
    cat.PLUG_LOCKED: "plug locked",
    cat.INFRA_CONNECTED: "infrastructure connected",
    cat.INFRA_TYPE: "infrastructure",
    cat.CHARGING_STATUS: "charging",
    cat.CHARGING_POWER: "charging power",
    cat.RFID: "RFID",
    cat.DOOR_FRONT_LEFT: "driver door open",
    cat.DOOR_FRONT_RIGHT: "passenger door open",
    cat.DOOR_SLIDING_LEFT: "left sliding door open",
    cat.DOOR_SLIDING_RIGHT: "right sliding door open",
    cat.DOOR_REAR: "rear doors open",
    cat.BONNET: "bonnet open",
    cat.LOCKED: "locked",
    cat.TYRE_FRONT_LEFT: "tyre front left",
    cat.TYRE_FRONT_RIGHT: "tyre front right",
    cat.TYRE_REAR_LEFT: "tyre rear left",
    cat.TYRE_REAR_RIGHT: "tyre rear right",
    cat.OUTSIDE_TEMP: "outside temperature",
    cat.BATTERY_TEMP: "battery temperature",
    cat.CABIN_SETPOINT: "cabin setpoint",
    cat.PRECOND_ENABLED: "preconditioning enabled",
    cat.DEPARTURE_TIME: "departure time",
    cat.LATITUDE: "latitude",
    cat.LONGITUDE: "longitude",
}


def label(path: str) -> str:
    """A short human name for a signal path."""
    return SHORT.get(path, path.removeprefix("Vehicle."))


def resolve(names: Iterable[str]) -> list[str]:
    """VSS paths for ``names`` (paths or aliases), in order, each once; defaults when empty.

    ConfigError names the unknown signal and lists the aliases.
    """
    wanted = list(names) or list(DEFAULT_SIGNALS)
    out: list[str] = []
    for name in wanted:
        key = name.strip()
        if key in cat.CATALOGUE:
            paths: tuple[str, ...] = (key,)
        elif key.lower() in ALIASES:
            paths = ALIASES[key.lower()]
        else:
            raise ConfigError(
                f"signal {name!r}: not a VSS path of the catalogue (docs/signals.md) nor an "
                f"alias ({', '.join(sorted(ALIASES))})"
            )
        for p in paths:
            if p not in out:
                out.append(p)
    return out
