"""The van's route as a timeline of waypoints, and what it passes through.

Theory of operation: a route is a list of waypoints in strictly increasing vehicle
time, each either a coordinate or only a country. Before the first waypoint the van
stands at it; after the last it stays there. Between two coordinates it moves in a
straight line at constant speed; a country-only waypoint takes effect at its time.
`Route.timeline` turns any property of a position (its country, whether it lies in a
dead zone) into a piecewise-constant timeline by sampling each leg every few hundred
metres and bisecting each change to a fraction of a second, once, up front, so the
model never has to look at geometry again while it runs.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

from tcu.errors import ConfigError
from tcu.link._fields import listing, nested, number
from tcu.link.geo import LatLon, check_country, check_latlon, country_at, distance_km

T = TypeVar("T", bound=Hashable)

_BISECT_STEPS = 24
_MAX_SAMPLES_PER_LEG = 20_000


@dataclass(frozen=True, slots=True, kw_only=True)
class Waypoint:
    """Where the van is at vehicle time `t`: a coordinate, or just a country."""

    t: float
    lat: float | None = None
    lon: float | None = None
    country: str | None = None

    def __post_init__(self) -> None:
        if isinstance(self.t, bool) or not isinstance(self.t, int | float):
            raise ConfigError(f"t: expected a number of seconds, got {self.t!r}")
        if not math.isfinite(self.t):
            raise ConfigError(f"t: {self.t!r} is not a finite time")
        has_position = self.lat is not None or self.lon is not None
        if has_position == (self.country is not None):
            raise ConfigError("country: give lat and lon, or country (exactly one of them)")
        if has_position:
            check_latlon(self.lat, self.lon)
        else:
            check_country(self.country)

    @property
    def position(self) -> LatLon | None:
        if self.lat is None or self.lon is None:
            return None
        return (self.lat, self.lon)

    @classmethod
    def from_dict(cls, raw: object) -> Waypoint:
        if not isinstance(raw, Mapping):
            raise ConfigError(f": expected a mapping with t and lat/lon or country, got {raw!r}")
        unknown = set(raw) - {"t", "lat", "lon", "country"}
        if unknown:
            raise ConfigError(f"{sorted(unknown)[0]}: unknown key")
        if "t" not in raw:
            raise ConfigError("t: missing")
        if ("lat" in raw) != ("lon" in raw):
            missing = "lon" if "lat" in raw else "lat"
            raise ConfigError(f"{missing}: missing")
        t = number(raw["t"], "t")
        if "lat" in raw:
            lat, lon = check_latlon(raw["lat"], raw["lon"])
            if "country" in raw:
                raise ConfigError("country: give lat and lon, or country (exactly one of them)")
            return cls(t=t, lat=lat, lon=lon)
        return cls(t=t, country=raw.get("country"))


class Route:
    """Waypoints in increasing time; positions and timelines along them."""

    def __init__(self, waypoints: Sequence[Waypoint]) -> None:
        for i in range(1, len(waypoints)):
            before, after = waypoints[i - 1].t, waypoints[i].t
            if after < before:
                raise ConfigError(f"[{i}].t: goes backwards in time ({after:g} < {before:g})")
            if after == before:
                raise ConfigError(f"[{i}].t: does not advance in time ({after:g} == {before:g})")
        self.waypoints: tuple[Waypoint, ...] = tuple(waypoints)

    @classmethod
    def from_list(cls, raw: object) -> Route:
        """Build from a plain list; ConfigError messages start with ``[i].field``."""
        points = []
        for i, item in enumerate(listing(raw, "")):
            try:
                points.append(Waypoint.from_dict(item))
            except ConfigError as exc:
                raise nested(f"[{i}]", exc) from None
        return cls(points)

    def __len__(self) -> int:
        return len(self.waypoints)

    @property
    def start(self) -> float | None:
        return self.waypoints[0].t if self.waypoints else None

    def position_at(self, t: float) -> LatLon | None:
        """Interpolated coordinate at `t`, or None where only the country is known."""
        points = self.waypoints
        if not points:
            return None
        if t <= points[0].t:
            return points[0].position
        for before, after in itertools.pairwise(points):
            if t < after.t:
                a, b = before.position, after.position
                if a is None or b is None:
                    return a
                f = (t - before.t) / (after.t - before.t)
                return (a[0] + (b[0] - a[0]) * f, a[1] + (b[1] - a[1]) * f)
        return points[-1].position

    def timeline(
        self, classify: Callable[[LatLon], T], country_only: Callable[[str], T]
    ) -> list[tuple[float, T]]:
        """Piecewise-constant `classify` along the route: [(from_t, value), ...].

        `country_only` gives the value for a waypoint that has no coordinate.
        """
        points = self.waypoints
        if not points:
            return []

        def value_of(p: Waypoint) -> T:
            pos = p.position
            return classify(pos) if pos is not None else country_only(p.country or "")

        out: list[tuple[float, T]] = [(points[0].t, value_of(points[0]))]

        def push(t: float, value: T) -> None:
            if value != out[-1][1]:
                out.append((t, value))

        for before, after in itertools.pairwise(points):
            a, b = before.position, after.position
            if a is None or b is None:
                push(after.t, value_of(after))
                continue
            n = min(_MAX_SAMPLES_PER_LEG, max(1, math.ceil(distance_km(a, b) / 0.5)))
            span = after.t - before.t

            def at(f: float, a: LatLon = a, b: LatLon = b) -> LatLon:
                return (a[0] + (b[0] - a[0]) * f, a[1] + (b[1] - a[1]) * f)

            previous = classify(a)
            for i in range(1, n + 1):
                f_hi = i / n
                current = classify(at(f_hi))
                if current != previous:
                    f_lo = (i - 1) / n
                    for _ in range(_BISECT_STEPS):
                        mid = (f_lo + f_hi) / 2
                        if classify(at(mid)) == previous:
                            f_lo = mid
                        else:
                            f_hi = mid
                    push(before.t + span * f_hi, classify(at(f_hi)))
                    previous = classify(at(i / n))
                    push(before.t + span * i / n, previous)
        return out

    def countries(self) -> list[tuple[float, str | None]]:
        """When the van enters each country (None: at sea or outside the table)."""

        def by_position(p: LatLon) -> str | None:
            return country_at(*p)

        def by_name(code: str) -> str | None:
            return code

        return self.timeline(by_position, by_name)
