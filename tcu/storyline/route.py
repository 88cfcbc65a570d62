"""Driving along waypoints: a speed profile and the GNSS track it produces.

Theory of operation: the van drives a polyline of WGS84 waypoints; each leg has a speed
limit. A fixed-step simulation accelerates towards the limit, and brakes early enough to
meet a lower limit on a later leg and to stop at the last waypoint (constant
acceleration and deceleration). Each step yields the distance travelled, the speed, the
position on the polyline and the heading of the leg, in journey seconds from the start.
Distances are great-circle (haversine); legs are short enough that interpolating
latitude and longitude linearly along a leg stays within metres of the great circle.
"""

from __future__ import annotations

import bisect
import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

from tcu.link.geo import LatLon, distance_m


def bearing_deg(a: LatLon, b: LatLon) -> float:
    """Initial bearing from ``a`` to ``b``, degrees clockwise from north, in [0, 360)."""
    p1, p2 = math.radians(a[0]), math.radians(b[0])
    dl = math.radians(b[1] - a[1])
    y = math.sin(dl) * math.cos(p2)
    x = math.cos(p1) * math.sin(p2) - math.sin(p1) * math.cos(p2) * math.cos(dl)
    return math.degrees(math.atan2(y, x)) % 360.0


@dataclass(frozen=True, slots=True, kw_only=True)
class Sample:
    t: float
    distance_m: float
    speed_kmh: float
    lat: float
    lon: float
    heading: float


def drive(
    points: Sequence[LatLon],
    limits_kmh: Sequence[float],
    *,
    accel: float = 1.2,
    decel: float = 1.5,
    dt: float = 1.0,
) -> list[Sample]:
    """Samples every ``dt`` journey seconds of a drive from standstill to standstill."""
    if len(points) < 2 or len(limits_kmh) != len(points) - 1:
        raise ValueError("a drive needs n >= 2 waypoints and n - 1 leg speed limits")
    if any(v <= 0 for v in limits_kmh) or accel <= 0 or decel <= 0 or dt <= 0:
        raise ValueError("speed limits, acceleration, deceleration and dt must be > 0")
    legs = [distance_m(a, b) for a, b in itertools.pairwise(points)]
    starts = [0.0]
    for d in legs:
        starts.append(starts[-1] + d)
    total = starts[-1]
    limits = [v / 3.6 for v in limits_kmh]

    def leg_at(s: float) -> int:
        return min(len(legs) - 1, max(0, bisect.bisect_right(starts, s) - 1))

    def position(s: float) -> tuple[float, float, float]:
        i = leg_at(s)
        a, b = points[i], points[i + 1]
        f = 0.0 if legs[i] == 0 else min(1.0, max(0.0, (s - starts[i]) / legs[i]))
        return a[0] + (b[0] - a[0]) * f, a[1] + (b[1] - a[1]) * f, bearing_deg(a, b)

    def allowed(s: float) -> float:
        i = leg_at(s)
        v = limits[i]
        for j in range(i + 1, len(legs)):
            v = min(v, math.sqrt(limits[j] ** 2 + 2 * decel * max(0.0, starts[j] - s)))
        return min(v, math.sqrt(2 * decel * max(0.0, total - s)))

    out: list[Sample] = []
    t = s = v = 0.0
    lat, lon, heading = position(0.0)
    out.append(Sample(t=0.0, distance_m=0.0, speed_kmh=0.0, lat=lat, lon=lon, heading=heading))
    while s < total:
        target = allowed(s)
        v_new = min(v + accel * dt, target) if target > v else target
        v_new = max(v_new, 0.5) if total - s > 1.0 else v_new
        s = min(total, s + (v + v_new) / 2 * dt)
        v = 0.0 if s >= total else v_new
        t += dt
        lat, lon, heading = position(s)
        out.append(Sample(t=t, distance_m=s, speed_kmh=v * 3.6, lat=lat, lon=lon, heading=heading))
    return out
