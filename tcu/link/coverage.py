"""Where and when the van has radio coverage, and how strong the signal is.

Theory of operation: coverage is lost inside dead zones. A zone is either a polygon on
the map, turned into time intervals along the route up front, or a window of vehicle
time; overlapping intervals are merged. On top, seeded random gaps (tunnels, hills,
overloaded cells) arrive as a Poisson process of `per_hour` gaps with exponentially
distributed lengths of mean `mean_s`, generated lazily in time order so the model can
run for any horizon. Every interval is half-open ``[start, end)`` and kept as a sorted
list of edges, so "covered at t?" and "next change after t?" are a bisection each.
The signal (RSRP, dBm) is a deterministic function of the seed and time: a new value
for every cell the van drives through, fading as the van nears or leaves a gap.
"""

from __future__ import annotations

import bisect
import math
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from tcu.errors import ConfigError
from tcu.link._fields import integer, listing, mapping, nested, number, only_keys
from tcu.link.geo import LatLon, Shape, check_latlon
from tcu.link.route import Route

CELL_DWELL_S = 45.0
FADE_S = 60.0
FADE_DB = 22.0
RSRP_FLOOR = -140.0
RSRP_CEILING = -44.0

_MASK = (1 << 64) - 1


@dataclass(frozen=True, slots=True, kw_only=True)
class DeadZone:
    """No coverage inside `polygon` ((lat, lon) vertices), or between `start` and `end`."""

    name: str
    polygon: tuple[LatLon, ...] | None = None
    start: float | None = None
    end: float | None = None

    def __post_init__(self) -> None:
        timed = self.start is not None or self.end is not None
        if timed == (self.polygon is not None):
            raise ConfigError("polygon: give either polygon, or start and end, not both")
        if self.polygon is not None:
            if len(self.polygon) < 3:
                raise ConfigError(f"polygon: needs at least 3 vertices, got {len(self.polygon)}")
            for i, (lat, lon) in enumerate(self.polygon):
                try:
                    check_latlon(lat, lon)
                except ConfigError as exc:
                    raise nested(f"polygon[{i}]", exc) from None
            return
        start = number(self.start, "start")
        end = number(self.end, "end")
        if end <= start:
            raise ConfigError(f"end: must be after start ({end:g} <= {start:g})")

    @classmethod
    def from_dict(cls, raw: object, default_name: str) -> DeadZone:
        fields = mapping(raw, "")
        only_keys(fields, {"name", "polygon", "start", "end"}, "")
        name = fields.get("name", default_name)
        if not isinstance(name, str):
            raise ConfigError(f"name: expected a string, got {name!r}")
        if "polygon" in fields:
            if "start" in fields or "end" in fields:
                raise ConfigError("polygon: give either polygon, or start and end, not both")
            vertices = []
            for i, vertex in enumerate(listing(fields["polygon"], "polygon")):
                pair = listing(vertex, f"polygon[{i}]")
                if len(pair) != 2:
                    raise ConfigError(f"polygon[{i}]: expected [lat, lon], got {vertex!r}")
                try:
                    vertices.append(check_latlon(pair[0], pair[1]))
                except ConfigError as exc:
                    raise nested(f"polygon[{i}]", exc) from None
            return cls(name=name, polygon=tuple(vertices))
        for key in ("start", "end"):
            if key not in fields:
                raise ConfigError(f"{key}: missing (a dead zone needs polygon, or start and end)")
        start = number(fields["start"], "start")
        end = number(fields["end"], "end")
        return cls(name=name, start=start, end=end)


@dataclass(frozen=True, slots=True, kw_only=True)
class RandomGaps:
    """Seeded random coverage gaps: `per_hour` on average, `mean_s` long on average."""

    seed: int
    per_hour: float
    mean_s: float
    min_s: float = 1.0

    def __post_init__(self) -> None:
        integer(self.seed, "seed")
        number(self.per_hour, "per_hour", minimum=0.0)
        number(self.mean_s, "mean_s", minimum=0.0, above=True)
        number(self.min_s, "min_s", minimum=0.0)

    @classmethod
    def from_dict(cls, raw: object) -> RandomGaps:
        fields = mapping(raw, "")
        only_keys(fields, {"seed", "per_hour", "mean_s", "min_s"}, "")
        for key in ("seed", "per_hour", "mean_s"):
            if key not in fields:
                raise ConfigError(f"{key}: missing")
        return cls(
            seed=integer(fields["seed"], "seed"),
            per_hour=number(fields["per_hour"], "per_hour", minimum=0.0),
            mean_s=number(fields["mean_s"], "mean_s", minimum=0.0, above=True),
            min_s=number(fields.get("min_s", 1.0), "min_s", minimum=0.0),
        )


def _merge(intervals: Iterable[tuple[float, float]]) -> list[float]:
    """Disjoint, sorted edges [s0, e0, s1, e1, ...] of the union of the intervals."""
    edges: list[float] = []
    for start, end in sorted(intervals):
        if edges and start <= edges[-1]:
            edges[-1] = max(edges[-1], end)
        else:
            edges += [start, end]
    return edges


def _inside(edges: Sequence[float], t: float) -> bool:
    return bisect.bisect_right(edges, t) % 2 == 1


def _after(edges: Sequence[float], t: float) -> float | None:
    i = bisect.bisect_right(edges, t)
    return edges[i] if i < len(edges) and math.isfinite(edges[i]) else None


def _nearest(edges: Sequence[float], t: float) -> float:
    i = bisect.bisect_right(edges, t)
    best = math.inf
    if i > 0:
        best = t - edges[i - 1]
    if i < len(edges):
        best = min(best, edges[i] - t)
    return best


def _unit(seed: int, k: int, salt: int) -> float:
    """A uniform number in [0, 1) from (seed, k, salt): splitmix64, no state."""
    x = (seed * 0x9E3779B97F4A7C15 + k * 0xBF58476D1CE4E5B9 + salt) & _MASK
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK
    return ((x ^ (x >> 31)) >> 11) / float(1 << 53)


class Coverage:
    """Dead zones, random gaps and signal strength over vehicle time."""

    def __init__(
        self,
        *,
        zones: Sequence[DeadZone] = (),
        random_gaps: RandomGaps | None = None,
        route: Route | None = None,
        origin: float = 0.0,
        signal_seed: int = 0,
    ) -> None:
        self._origin = origin
        self._signal_seed = signal_seed
        self._shapes: list[tuple[str, Shape]] = []
        intervals: list[tuple[float, float]] = []
        for zone in zones:
            if zone.start is not None and zone.end is not None:
                intervals.append((zone.start, zone.end))
            elif zone.polygon is not None:
                shape = Shape.of([zone.polygon])
                self._shapes.append((zone.name, shape))
                if route is not None:
                    intervals += _route_intervals(route, shape)
        self._static = _merge(intervals)
        self._gaps = random_gaps
        self._rng = random.Random(random_gaps.seed if random_gaps else 0)
        self._random: list[float] = []
        self._horizon = origin

    def zone_at(self, lat: float, lon: float) -> str | None:
        """Name of the polygon dead zone containing (lat, lon), if any."""
        for name, shape in self._shapes:
            if shape.contains(lat, lon):
                return name
        return None

    def _extend(self, t: float) -> None:
        gaps = self._gaps
        if gaps is None or gaps.per_hour == 0:
            return
        rate = gaps.per_hour / 3600.0
        while self._horizon <= t:
            start = self._horizon + self._rng.expovariate(rate)
            end = start + max(gaps.min_s, self._rng.expovariate(1.0 / gaps.mean_s))
            self._random += [start, end]
            self._horizon = end

    def covered(self, t: float) -> bool:
        self._extend(t)
        return not (_inside(self._static, t) or _inside(self._random, t))

    def next_transition(self, t: float) -> float | None:
        """Earliest time after `t` at which coverage may change, or None if never."""
        self._extend(t)
        times = [x for x in (_after(self._static, t), _after(self._random, t)) if x is not None]
        return min(times) if times else None

    def gaps_until(self, t: float) -> list[tuple[float, float]]:
        """Random gaps generated so far that start before `t` (for reports and tests)."""
        self._extend(t)
        pairs = zip(self._random[::2], self._random[1::2], strict=True)
        return [(s, e) for s, e in pairs if s < t]

    def rsrp(self, t: float) -> float | None:
        """Reference signal received power at `t` in dBm, or None inside a gap."""
        if not self.covered(t):
            return None
        k = math.floor((t - self._origin) / CELL_DWELL_S)
        spread = (_unit(self._signal_seed, k, 1) + _unit(self._signal_seed, k, 2)) / 2
        value = -122.0 + 54.0 * spread
        edge = min(_nearest(self._static, t), _nearest(self._random, t))
        if edge < FADE_S:
            value -= FADE_DB * (1.0 - edge / FADE_S)
        return max(RSRP_FLOOR, min(RSRP_CEILING, round(value, 1)))


def _route_intervals(route: Route, shape: Shape) -> list[tuple[float, float]]:
    def inside(p: LatLon) -> bool:
        return shape.contains(*p)

    def never(_: str) -> bool:
        return False

    timeline = route.timeline(inside, never)
    out: list[tuple[float, float]] = []
    for i, (t, is_inside) in enumerate(timeline):
        if is_inside:
            start = -math.inf if i == 0 else t
            end = timeline[i + 1][0] if i + 1 < len(timeline) else math.inf
            out.append((start, end))
    return out


def zones_from_list(raw: object) -> tuple[DeadZone, ...]:
    zones = []
    for i, item in enumerate(listing(raw, "")):
        try:
            zones.append(DeadZone.from_dict(item, default_name=f"zone{i}"))
        except ConfigError as exc:
            raise nested(f"[{i}]", exc) from None
    return tuple(zones)
