"""Checks for plain configuration values that name the offending field.

Messages have the form ``<field>: <problem>``; `nested` prefixes the path of the
enclosing value, so a waypoint's ``t: ...`` becomes ``link.route[3].t: ...``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from tcu.errors import ConfigError


def join(prefix: str, message: str) -> str:
    if not prefix:
        return message
    if message.startswith(("[", ":")):
        return f"{prefix}{message}"
    return f"{prefix}.{message}"


def nested(prefix: str, exc: ConfigError) -> ConfigError:
    return ConfigError(join(prefix, str(exc)))


def mapping(value: object, field: str) -> Mapping[str, object]:
    if not isinstance(value, Mapping) or not all(isinstance(k, str) for k in value):
        raise ConfigError(f"{field}: expected a mapping, got {value!r}")
    return value


def listing(value: object, field: str) -> Sequence[object]:
    if not isinstance(value, Sequence) or isinstance(value, str | bytes):
        raise ConfigError(f"{field}: expected a list, got {value!r}")
    return value


def only_keys(raw: Mapping[str, object], allowed: set[str], field: str) -> None:
    unknown = sorted(set(raw) - allowed)
    if unknown:
        known = ", ".join(sorted(allowed))
        raise ConfigError(f"{join(field, unknown[0])}: unknown key (known: {known})")


def number(
    value: object, field: str, *, minimum: float | None = None, above: bool = False
) -> float:
    """A finite int or float (not a bool), at least (or, with `above`, over) `minimum`."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"{field}: expected a number, got {value!r}")
    result = float(value)
    if not math.isfinite(result):
        raise ConfigError(f"{field}: {value!r} is not finite")
    if minimum is not None:
        if above and result <= minimum:
            raise ConfigError(f"{field}: must be more than {minimum:g}, got {value!r}")
        if not above and result < minimum:
            raise ConfigError(f"{field}: must be at least {minimum:g}, got {value!r}")
    return result


def integer(value: object, field: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{field}: expected an integer, got {value!r}")
    return value


def span(value: object, field: str) -> tuple[float, float]:
    """A ``[low, high]`` pair of positive seconds with low <= high."""
    pair = listing(value, field)
    if len(pair) != 2:
        raise ConfigError(f"{field}: expected [low, high], got {value!r}")
    low = number(pair[0], f"{field}[0]", minimum=0.0, above=True)
    high = number(pair[1], f"{field}[1]", minimum=0.0, above=True)
    if high < low:
        raise ConfigError(f"{field}: high {high:g} is below low {low:g}")
    return (low, high)
