"""Per-vehicle configuration of the services, and vehicle time <-> time of day.

Theory of operation. Vehicle time is seconds since the start of the trace (or of the
live run); ``origin_epoch`` is the UTC epoch of vehicle time 0. The van reports its
planned departure as minutes after midnight UTC; ``next_departure_t`` turns that into
the next such instant in vehicle seconds: today if it has not passed yet, else
tomorrow. Pure arithmetic, no clock is read.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from tcu.errors import ConfigError

DAY_S = 86_400.0
MINUTES_PER_DAY = 1440
_HHMM = re.compile(r"([01]?\d|2[0-3]):([0-5]\d)")


DEFAULT_VIN = "XECELLVAN00000001"
"""The reference van's VIN, wherever none is given (replay, bench, scenarios)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class VehicleConfig:
    vin: str
    usable_capacity_kwh: float = 75.0
    charging_power_kw: float = 11.0
    target_soc: float = 100.0
    preconditioning_lead_s: float = 1800.0
    preconditioning_min_soc: float = 15.0
    lock_timeout_s: float = 5.0
    origin_epoch: float = 0.0

    def __post_init__(self) -> None:
        if not isinstance(self.vin, str) or not self.vin or self.vin != self.vin.strip():
            raise ConfigError(f"vehicle config: vin must be a non-empty string, not {self.vin!r}")
        for name, low, high, low_open in (
            ("usable_capacity_kwh", 0.0, math.inf, True),
            ("charging_power_kw", 0.0, math.inf, True),
            ("target_soc", 0.0, 100.0, True),
            ("preconditioning_lead_s", 0.0, DAY_S, False),
            ("preconditioning_min_soc", 0.0, 100.0, False),
            ("lock_timeout_s", 0.0, math.inf, True),
            ("origin_epoch", -math.inf, math.inf, False),
        ):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
                raise ConfigError(f"vehicle config: {name} must be a finite number, not {v!r}")
            if v < low or v > high or (low_open and v == low):
                bound = f"> {low:g}" if low_open else f">= {low:g}"
                raise ConfigError(
                    f"vehicle config: {name} = {v!r}: must be {bound} and <= {high:g}"
                )

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any], where: str = "vehicle config") -> VehicleConfig:
        """Build from parsed YAML/JSON; unknown keys and bad values raise ConfigError."""
        if not isinstance(raw, Mapping):
            raise ConfigError(f"{where}: expected a mapping, got {type(raw).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(str(k) for k in raw if k not in known)
        if unknown:
            raise ConfigError(f"{where}: unknown keys {', '.join(unknown)}")
        try:
            return cls(**{str(k): v for k, v in raw.items()})
        except TypeError as e:
            raise ConfigError(f"{where}: {e}") from None
        except ConfigError as e:
            raise ConfigError(f"{where}: {str(e).removeprefix('vehicle config: ')}") from None


def parse_hhmm(text: str) -> int:
    """``"07:30"`` -> 450 minutes after midnight; ValueError for anything else."""
    m = _HHMM.fullmatch(text.strip())
    if m is None:
        raise ValueError(f"departure time {text!r}: expected HH:MM, 00:00 to 23:59")
    return int(m.group(1)) * 60 + int(m.group(2))


def format_hhmm(minutes: float) -> str:
    whole = int(minutes) % MINUTES_PER_DAY
    return f"{whole // 60:02d}:{whole % 60:02d}"


def check_minutes(minutes: float) -> float:
    """``minutes`` if it is a time of day in minutes after midnight, else ValueError."""
    if not math.isfinite(minutes) or not 0 <= minutes < MINUTES_PER_DAY:
        raise ValueError(f"departure time {minutes!r} min is not within 0 to {MINUTES_PER_DAY}")
    return minutes


def next_departure_t(minutes: float, now: float, origin_epoch: float) -> float:
    """The next instant at ``minutes`` after midnight UTC, in vehicle seconds, >= ``now``.

    A departure at exactly ``now`` is now; one that has already passed today is tomorrow.
    """
    check_minutes(minutes)
    wall = origin_epoch + now
    midnight = wall - wall % DAY_S
    candidate = midnight + minutes * 60.0
    if candidate < wall:
        candidate += DAY_S
    return candidate - origin_epoch


def clock_utc(t: float, origin_epoch: float, *, round_up: bool = False) -> str:
    """Vehicle time ``t`` as the UTC time of day ``HH:MM`` (the minute begun, or the next)."""
    minutes = ((origin_epoch + t) % DAY_S) / 60.0
    return format_hhmm(math.ceil(minutes - 1e-6) if round_up else math.floor(minutes + 1e-6))
