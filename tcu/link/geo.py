"""Which country a coordinate lies in, from a small embedded border table.

Theory of operation: each country is one or more coarse rings of (lat, lon) vertices,
accurate to a few kilometres on land borders and generous at sea. Neighbours are built
from the same shared border polylines (`_NO_SE`, `_DE_FR`, ...), walked in opposite
directions, so two countries never claim the same inland point. `country_at` checks a
bounding box, then casts a ray (even-odd rule) in the plane of latitude and longitude,
which is exact enough at this scale. A point in no ring (open sea, or a country outside
the table) has no country and therefore no mobile network.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from tcu.errors import ConfigError

LatLon = tuple[float, float]

_NO_SE: tuple[LatLon, ...] = (
    (58.90, 10.60), (59.03, 11.08), (59.10, 11.28), (59.10, 11.42), (59.00, 11.55),
    (59.05, 11.70), (59.50, 11.75), (59.85, 12.10), (60.10, 12.40), (60.60, 12.60),
    (61.05, 12.70), (61.30, 12.85), (61.60, 12.40), (62.00, 12.25), (62.60, 12.20),
    (63.00, 12.10), (63.30, 12.05), (63.60, 12.20), (64.00, 13.20), (64.50, 14.10),
    (65.00, 14.30), (65.50, 14.50), (66.10, 14.80), (66.70, 15.50), (67.10, 16.35),
    (67.60, 16.50), (68.00, 17.80), (68.45, 18.10), (68.55, 19.00), (68.95, 20.10),
    (69.06, 20.55),
)  # fmt: skip
_SE_FI: tuple[LatLon, ...] = (
    (69.06, 20.55), (68.44, 22.49), (67.95, 23.65), (67.20, 23.60), (66.40, 23.68),
    (65.85, 24.15), (65.40, 23.80), (64.60, 22.40), (63.55, 20.90), (62.50, 19.60),
    (61.00, 19.30), (60.20, 19.20), (59.60, 19.60),
)  # fmt: skip
_NO_FI: tuple[LatLon, ...] = (
    (69.06, 20.55), (69.31, 21.27), (68.95, 22.20), (68.70, 22.80), (68.90, 24.00),
    (69.10, 25.00), (69.40, 25.75), (69.85, 26.95), (70.09, 27.95), (69.70, 28.40),
    (69.05, 28.93),
)  # fmt: skip
_SE_DK: tuple[LatLon, ...] = (
    (55.35, 12.72), (55.60, 12.80), (55.85, 12.75), (56.04, 12.64), (56.30, 12.35),
)  # fmt: skip
_DE_DK: tuple[LatLon, ...] = (
    (55.00, 8.20), (54.95, 8.65), (54.80, 9.35), (54.82, 9.60), (54.75, 10.10),
)  # fmt: skip
_DE_PL: tuple[LatLon, ...] = (
    (53.93, 14.22), (53.45, 14.40), (52.85, 14.13), (52.35, 14.57), (51.85, 14.65),
    (51.15, 15.00), (51.00, 15.00), (50.85, 14.82),
)  # fmt: skip
_DE_AT: tuple[LatLon, ...] = (
    (48.77, 13.83), (48.57, 13.45), (48.25, 13.03), (47.80, 13.00), (47.55, 13.05),
    (47.65, 12.80), (47.65, 12.20), (47.40, 11.25), (47.42, 10.98), (47.53, 10.70),
    (47.27, 10.20), (47.53, 9.73), (47.55, 9.60),
)  # fmt: skip
_DE_CH: tuple[LatLon, ...] = (
    (47.55, 9.60), (47.655, 9.17), (47.80, 8.70), (47.60, 8.45), (47.59, 8.22),
    (47.59, 7.59),
)  # fmt: skip
_DE_FR: tuple[LatLon, ...] = (
    (47.59, 7.59), (48.00, 7.57), (48.57, 7.79), (48.97, 8.23), (49.05, 7.95),
    (49.15, 7.40), (49.21, 6.95), (49.47, 6.37),
)  # fmt: skip
_DE_LU: tuple[LatLon, ...] = ((49.47, 6.37), (49.80, 6.50), (50.13, 6.13))
_DE_BE: tuple[LatLon, ...] = (
    (50.13, 6.13), (50.32, 6.40), (50.50, 6.20), (50.65, 6.12), (50.754, 6.02),
)  # fmt: skip
_DE_NL: tuple[LatLon, ...] = (
    (50.754, 6.02), (51.00, 5.97), (51.20, 6.10), (51.37, 6.22), (51.85, 6.10),
    (52.10, 6.75), (52.25, 7.05), (52.65, 7.05), (53.00, 7.20), (53.30, 7.20),
    (53.60, 6.90),
)  # fmt: skip
_NL_BE: tuple[LatLon, ...] = (
    (51.37, 3.37), (51.27, 3.90), (51.37, 4.30), (51.45, 4.90), (51.25, 5.25),
    (51.20, 5.55), (51.15, 5.80), (50.95, 5.72), (50.78, 5.62), (50.754, 6.02),
)  # fmt: skip
_BE_LU: tuple[LatLon, ...] = ((50.13, 6.13), (49.90, 5.75), (49.70, 5.88), (49.546, 5.818))
_BE_FR: tuple[LatLon, ...] = (
    (49.546, 5.818), (49.78, 4.87), (50.00, 4.15), (50.33, 4.05), (50.45, 3.65),
    (50.50, 3.30), (50.72, 3.15), (50.80, 2.85), (51.09, 2.55),
)  # fmt: skip
_FR_LU: tuple[LatLon, ...] = ((49.546, 5.818), (49.47, 6.00), (49.47, 6.37))
_FR_CH: tuple[LatLon, ...] = (
    (47.59, 7.59), (47.45, 7.35), (47.50, 7.00), (47.06, 6.68), (46.85, 6.45),
    (46.45, 6.10), (46.13, 5.96), (46.20, 6.20), (46.45, 6.55), (46.39, 6.80),
    (45.92, 7.04),
)  # fmt: skip
_FR_IT: tuple[LatLon, ...] = (
    (45.92, 7.04), (45.83, 6.85), (45.65, 6.95), (45.15, 6.75), (44.92, 6.75),
    (44.40, 6.95), (44.15, 7.70), (43.78, 7.53),
)  # fmt: skip
_FR_ES: tuple[LatLon, ...] = (
    (42.43, 3.17), (42.47, 2.80), (42.50, 1.80), (42.60, 1.45), (42.85, 0.75),
    (42.75, 0.00), (42.95, -0.75), (43.05, -1.35), (43.37, -1.78), (43.45, -1.80),
)  # fmt: skip
_CH_AT: tuple[LatLon, ...] = (
    (47.55, 9.60), (47.45, 9.65), (47.27, 9.55), (47.05, 9.62), (46.95, 9.90),
    (46.90, 10.15), (47.00, 10.45), (46.85, 10.47),
)  # fmt: skip
_CH_IT: tuple[LatLon, ...] = (
    (46.85, 10.47), (46.60, 10.45), (46.25, 10.15), (46.33, 9.50), (46.51, 9.33),
    (46.20, 9.25), (45.82, 9.05), (45.97, 8.86), (46.10, 8.70), (46.15, 8.60),
    (46.45, 8.45), (46.20, 8.15), (45.93, 7.87), (45.98, 7.66), (45.87, 7.17),
    (45.92, 7.04),
)  # fmt: skip
_AT_IT: tuple[LatLon, ...] = (
    (46.52, 13.71), (46.62, 12.90), (46.75, 12.30), (46.90, 12.10), (47.00, 11.51),
    (46.78, 10.80), (46.85, 10.47),
)  # fmt: skip


def _rev(line: Sequence[LatLon]) -> tuple[LatLon, ...]:
    return tuple(reversed(line))


def _ring(*parts: Sequence[LatLon]) -> tuple[LatLon, ...]:
    """Join polylines end to start, dropping the repeated joint and the closing vertex."""
    points: list[LatLon] = []
    for part in parts:
        for point in part:
            if not points or points[-1] != point:
                points.append(point)
    if len(points) > 1 and points[0] == points[-1]:
        points.pop()
    return tuple(points)


# fmt: off
_RINGS: Mapping[str, tuple[tuple[LatLon, ...], ...]] = {
    "NO": (
        _ring(
            _NO_SE,
            _NO_FI,
            (
                (69.30, 29.30), (69.65, 30.10), (69.80, 30.85), (70.40, 31.20),
                (70.95, 28.50), (71.20, 25.80), (70.90, 22.80), (70.30, 19.80),
                (69.90, 17.80), (69.30, 15.80), (68.30, 13.30), (67.80, 12.70),
                (67.10, 13.40), (66.00, 12.30), (65.00, 11.00), (64.20, 9.80),
                (63.60, 8.20), (63.00, 6.80), (62.30, 5.30), (61.60, 4.70), (60.50, 4.70),
                (59.40, 5.00), (58.80, 5.40), (58.30, 5.80), (57.95, 7.00), (58.05, 8.00),
                (58.50, 9.10), (58.95, 10.00), (59.00, 10.40),
            ),
        ),
    ),
    "SE": (
        _ring(
            _NO_SE,
            _SE_FI,
            (
                (58.00, 19.40), (56.90, 18.40), (56.20, 16.70), (56.00, 15.80),
                (55.90, 14.40), (55.45, 14.45), (55.30, 13.40),
            ),
            _SE_DK,
            ((56.70, 12.55), (57.10, 12.10), (57.70, 11.55), (58.30, 11.25), (58.80, 10.90)),
        ),
    ),
    "FI": (
        _ring(
            _rev(_SE_FI),
            _NO_FI,
            (
                (68.50, 28.45), (67.80, 29.90), (66.80, 29.40), (65.90, 29.90),
                (64.90, 29.70), (64.00, 30.20), (62.90, 31.55), (62.15, 30.70),
                (61.20, 28.90), (60.60, 27.80), (60.30, 27.50), (59.85, 24.90),
                (59.70, 22.50),
            ),
        ),
    ),
    "DK": (
        _ring(
            _DE_DK,
            (
                (54.85, 10.40), (54.72, 10.72), (54.65, 11.30), (54.56, 11.93),
                (54.95, 12.55), (55.30, 12.50),
            ),
            _SE_DK,
            (
                (56.10, 11.70), (56.00, 11.20), (56.50, 11.05), (57.30, 10.70),
                (57.80, 10.70), (57.60, 9.90), (57.15, 8.60), (56.60, 8.10), (56.00, 8.05),
                (55.50, 8.00),
            ),
        ),
    ),
    "DE": (
        _ring(
            ((53.60, 6.90), (53.75, 7.60), (53.90, 8.50), (54.40, 8.55)),
            _DE_DK,
            (
                (54.45, 10.25), (54.55, 11.10), (54.20, 11.50), (54.25, 12.10),
                (54.70, 13.40), (54.20, 14.00),
            ),
            _DE_PL,
            ((50.90, 14.40), (50.40, 13.10), (50.20, 12.20), (49.60, 12.50), (49.00, 13.40)),
            _DE_AT,
            _DE_CH,
            _DE_FR,
            _DE_LU,
            _DE_BE,
            _DE_NL,
        ),
    ),
    "PL": (
        _ring(
            _rev(_DE_PL),
            (
                (54.20, 15.40), (54.55, 16.60), (54.85, 18.30), (54.62, 18.85),
                (54.40, 19.00), (54.45, 19.60), (54.36, 22.79), (53.95, 23.50),
                (53.10, 23.90), (52.70, 23.90), (52.10, 23.60), (51.60, 23.60),
                (50.40, 24.10), (49.60, 22.80), (49.00, 22.55), (49.40, 21.00),
                (49.40, 19.90), (49.60, 18.90), (50.00, 18.40), (50.40, 16.90),
                (50.70, 16.20),
            ),
        ),
    ),
    "NL": (
        _ring(
            _rev(_DE_NL),
            _rev(_NL_BE),
            (
                (51.65, 3.50), (52.00, 4.00), (52.40, 4.50), (52.95, 4.60), (53.20, 4.65),
                (53.50, 5.60), (53.55, 6.30),
            ),
        ),
    ),
    "BE": (_ring(_NL_BE, _rev(_DE_BE), _BE_LU, _BE_FR),),
    "LU": (_ring(_BE_LU, _FR_LU, _rev(_DE_LU)),),
    "FR": (
        _ring(
            _rev(_BE_FR),
            _FR_LU,
            _rev(_DE_FR),
            _FR_CH,
            _FR_IT,
            (
                (43.50, 7.00), (43.00, 6.00), (43.20, 5.30), (43.30, 4.70), (43.30, 3.50),
                (43.00, 3.05),
            ),
            _FR_ES,
            (
                (44.60, -1.30), (45.60, -1.30), (46.20, -1.60), (46.80, -2.20),
                (47.20, -2.60), (47.70, -3.60), (48.00, -4.80), (48.45, -5.00),
                (48.75, -3.90), (48.85, -3.00), (48.70, -1.60), (49.20, -1.65),
                (49.72, -1.95), (49.70, -1.25), (49.35, -0.40), (49.50, 0.10), (49.90, 0.80),
                (50.20, 1.55), (50.73, 1.60), (50.97, 1.85),
            ),
        ),
    ),
    "CH": (_ring(_rev(_DE_CH), _CH_AT, _CH_IT, _rev(_FR_CH)),),
    "AT": (
        _ring(
            (
                (48.77, 13.83), (48.60, 14.70), (49.00, 15.00), (48.75, 16.00),
                (48.62, 16.94), (48.10, 17.05), (47.75, 17.10), (47.65, 16.70),
                (47.40, 16.45), (47.00, 16.50), (46.87, 16.10), (46.65, 15.95),
                (46.70, 15.20), (46.60, 14.50), (46.42, 14.45),
            ),
            _AT_IT,
            _rev(_CH_AT),
            _rev(_DE_AT),
        ),
    ),
    "IT": (
        _ring(
            _rev(_FR_IT),
            _rev(_CH_IT),
            _rev(_AT_IT),
            (
                (46.00, 13.70), (45.58, 13.85), (45.70, 13.10), (45.45, 12.40),
                (45.00, 12.55), (44.10, 12.60), (43.60, 13.55), (42.90, 13.90),
                (42.20, 14.80), (41.95, 15.20), (41.90, 16.20), (41.15, 16.95),
                (40.65, 17.95), (40.10, 18.55), (39.80, 18.40), (40.40, 17.20),
                (39.90, 16.60), (39.30, 17.15), (38.90, 17.15), (38.40, 16.55),
                (37.92, 15.70), (38.25, 15.65), (38.70, 15.85), (39.40, 16.00),
                (40.00, 15.60), (40.25, 14.90), (40.57, 14.33), (40.78, 14.05),
                (41.20, 13.55), (41.45, 12.70), (41.72, 12.25), (42.10, 11.75),
                (42.40, 11.15), (42.95, 10.50), (43.50, 10.30), (44.05, 10.00),
                (44.35, 9.20), (44.38, 8.90), (44.25, 8.40), (43.85, 8.00),
            ),
        ),
        (
            (38.30, 15.65), (37.50, 15.15), (36.65, 15.10), (36.75, 14.40), (37.10, 13.90),
            (37.25, 13.30), (37.55, 12.60), (37.80, 12.40), (38.15, 12.70), (38.20, 13.30),
            (38.05, 14.00), (38.25, 15.20),
        ),
        (
            (41.25, 9.20), (40.90, 9.80), (40.10, 9.75), (39.20, 9.60), (38.90, 8.80),
            (39.10, 8.35), (39.90, 8.35), (40.55, 8.15), (41.05, 8.20),
        ),
    ),
    "ES": (
        _ring(
            _rev(_FR_ES),
            (
                (42.30, 3.35), (41.70, 2.90), (41.35, 2.20), (41.05, 1.20), (40.60, 0.95),
                (39.90, 0.00), (39.45, -0.30), (38.75, 0.25), (38.30, -0.45),
                (37.60, -0.65), (37.55, -1.00), (36.72, -2.18), (36.70, -3.20),
                (36.68, -4.40), (36.40, -5.15), (36.00, -5.60), (36.40, -6.25),
                (36.85, -6.45), (37.15, -6.95), (37.17, -7.40), (38.20, -7.05),
                (38.88, -7.05), (39.40, -7.35), (39.70, -7.00), (40.60, -6.80),
                (41.00, -6.90), (41.55, -6.20), (41.95, -6.60), (41.87, -7.50),
                (42.05, -8.10), (41.87, -8.87), (42.20, -8.90), (42.90, -9.30),
                (43.30, -8.90), (43.45, -8.30), (43.75, -7.70), (43.60, -5.60),
                (43.50, -3.80), (43.40, -2.70),
            ),
        ),
    ),
}
# fmt: on

NAMES: Mapping[str, str] = {
    "NO": "Norway",
    "SE": "Sweden",
    "DK": "Denmark",
    "FI": "Finland",
    "DE": "Germany",
    "NL": "Netherlands",
    "BE": "Belgium",
    "LU": "Luxembourg",
    "FR": "France",
    "PL": "Poland",
    "AT": "Austria",
    "CH": "Switzerland",
    "IT": "Italy",
    "ES": "Spain",
}

COUNTRIES: tuple[str, ...] = tuple(NAMES)


@dataclass(frozen=True, slots=True, kw_only=True)
class Shape:
    """Rings of a country or a dead zone, with their bounding box."""

    rings: tuple[tuple[LatLon, ...], ...]
    south: float
    north: float
    west: float
    east: float

    @classmethod
    def of(cls, rings: Sequence[Sequence[LatLon]]) -> Shape:
        frozen = tuple(tuple((float(lat), float(lon)) for lat, lon in ring) for ring in rings)
        if not frozen or any(len(ring) < 3 for ring in frozen):
            raise ConfigError("polygon: needs at least 3 vertices")
        lats = [lat for ring in frozen for lat, _ in ring]
        lons = [lon for ring in frozen for _, lon in ring]
        return cls(rings=frozen, south=min(lats), north=max(lats), west=min(lons), east=max(lons))

    def contains(self, lat: float, lon: float) -> bool:
        if not (self.south <= lat <= self.north and self.west <= lon <= self.east):
            return False
        return any(point_in_ring(lat, lon, ring) for ring in self.rings)


def point_in_ring(lat: float, lon: float, ring: Sequence[LatLon]) -> bool:
    """Even-odd rule: does a ray from (lat, lon) towards the east cross the ring oddly?"""
    inside = False
    lat_j, lon_j = ring[-1]
    for lat_i, lon_i in ring:
        if (lat_i > lat) != (lat_j > lat):
            crossing = lon_i + (lat - lat_i) * (lon_j - lon_i) / (lat_j - lat_i)
            if lon < crossing:
                inside = not inside
        lat_j, lon_j = lat_i, lon_i
    return inside


SHAPES: Mapping[str, Shape] = {code: Shape.of(rings) for code, rings in _RINGS.items()}


def check_latlon(lat: object, lon: object) -> LatLon:
    """Validate a coordinate pair; ConfigError names `lat` or `lon`."""
    for name, value, limit in (("lat", lat, 90.0), ("lon", lon, 180.0)):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{name}: expected a number, got {value!r}")
        if not math.isfinite(value) or abs(value) > limit:
            raise ConfigError(f"{name}: {value!r} is outside -{limit:g}..{limit:g}")
    assert isinstance(lat, int | float) and isinstance(lon, int | float)
    return float(lat), float(lon)


def check_country(code: object) -> str:
    """Validate an ISO 3166 alpha-2 code the table knows; ConfigError names `country`."""
    if not isinstance(code, str) or code not in NAMES:
        known = ", ".join(sorted(NAMES))
        raise ConfigError(f"country: unknown country {code!r} (known: {known})")
    return code


def country_at(lat: float, lon: float) -> str | None:
    """ISO code of the country at (lat, lon), or None at sea and outside the table."""
    for code, shape in SHAPES.items():
        if shape.contains(lat, lon):
            return code
    return None


EARTH_RADIUS_M = 6_371_000.0
"""The one Earth radius of the project (the committed traces' routes were laid with it)."""


def distance_m(a: LatLon, b: LatLon) -> float:
    """Great-circle distance in metres (haversine on a sphere of ``EARTH_RADIUS_M``)."""
    lat1, lon1, lat2, lon2 = map(math.radians, (*a, *b))
    h = (
        math.sin((lat2 - lat1) / 2) ** 2
        + math.cos(lat1) * math.cos(lat2) * math.sin((lon2 - lon1) / 2) ** 2
    )
    return 2 * EARTH_RADIUS_M * math.asin(math.sqrt(min(1.0, h)))


def distance_km(a: LatLon, b: LatLon) -> float:
    """Great-circle distance in kilometres."""
    return distance_m(a, b) / 1000.0
