from __future__ import annotations

import itertools

import pytest

from tcu.errors import ConfigError
from tcu.link.geo import (
    COUNTRIES,
    SHAPES,
    LatLon,
    check_country,
    check_latlon,
    country_at,
    distance_km,
)
from tcu.link.route import Route

CAPITALS = {
    "NO": (59.91, 10.75),
    "SE": (59.33, 18.07),
    "DK": (55.68, 12.57),
    "FI": (60.17, 24.94),
    "DE": (52.52, 13.40),
    "NL": (52.37, 4.90),
    "BE": (50.85, 4.35),
    "LU": (49.61, 6.13),
    "FR": (48.86, 2.35),
    "PL": (52.23, 21.01),
    "AT": (48.21, 16.37),
    "CH": (46.95, 7.45),
    "IT": (41.90, 12.50),
    "ES": (40.42, -3.70),
}

CITIES = [
    ("NO", 58.97, 5.73),  # Stavanger
    ("NO", 63.43, 10.39),  # Trondheim
    ("NO", 69.65, 18.96),  # Tromso
    ("NO", 59.12, 11.39),  # Halden
    ("SE", 57.71, 11.97),  # Gothenburg
    ("SE", 55.60, 13.00),  # Malmo
    ("SE", 58.94, 11.17),  # Stromstad
    ("SE", 65.58, 22.15),  # Lulea
    ("DK", 56.16, 10.20),  # Aarhus
    ("DK", 56.03, 12.61),  # Helsingor, across the sound from Helsingborg
    ("SE", 56.05, 12.69),  # Helsingborg
    ("FI", 65.01, 25.47),  # Oulu
    ("DE", 53.55, 9.99),  # Hamburg
    ("DE", 48.14, 11.58),  # Munich
    ("DE", 54.78, 9.44),  # Flensburg
    ("FR", 48.58, 7.75),  # Strasbourg
    ("DE", 48.57, 7.82),  # Kehl, across the Rhine
    ("FR", 45.76, 4.83),  # Lyon
    ("FR", 43.30, 5.37),  # Marseille
    ("CH", 46.20, 6.15),  # Geneva
    ("CH", 47.37, 8.54),  # Zurich
    ("CH", 46.00, 8.95),  # Lugano
    ("AT", 47.80, 13.04),  # Salzburg
    ("AT", 47.27, 11.39),  # Innsbruck
    ("IT", 45.46, 9.19),  # Milan
    ("IT", 38.12, 13.36),  # Palermo
    ("IT", 39.22, 9.12),  # Cagliari
    ("ES", 41.39, 2.17),  # Barcelona
    ("ES", 37.39, -5.98),  # Seville
    ("NL", 51.92, 4.48),  # Rotterdam
    ("NL", 50.85, 5.69),  # Maastricht
    ("BE", 51.22, 4.40),  # Antwerp
    ("PL", 50.06, 19.94),  # Krakow
    ("PL", 54.35, 18.65),  # Gdansk
]

NOWHERE = [
    (56.5, 3.0),  # North Sea
    (58.0, 20.0),  # Baltic
    (59.44, 24.75),  # Tallinn, not in the table
    (50.08, 14.42),  # Prague, not in the table
    (38.72, -9.14),  # Lisbon, not in the table
]


@pytest.mark.parametrize(("country", "point"), sorted(CAPITALS.items()))
def test_capitals_lie_in_their_country(country: str, point: LatLon) -> None:
    assert country_at(*point) == country


@pytest.mark.parametrize(("country", "lat", "lon"), CITIES)
def test_cities_near_borders_lie_in_their_country(country: str, lat: float, lon: float) -> None:
    assert country_at(lat, lon) == country


@pytest.mark.parametrize("point", NOWHERE)
def test_sea_and_unlisted_countries_have_no_country(point: LatLon) -> None:
    assert country_at(*point) is None


def test_drive_oslo_svinesund_gothenburg_is_norway_then_sweden() -> None:
    route = Route.from_list(
        [
            {"t": 0, "lat": 59.91, "lon": 10.75},
            {"t": 3600, "lat": 59.10, "lon": 11.27},
            {"t": 7200, "lat": 57.71, "lon": 11.97},
        ]
    )
    timeline = route.countries()
    assert [country for _, country in timeline] == ["NO", "SE"]
    crossed = timeline[1][0]
    assert 3600 < crossed < 3600 + 300
    position = route.position_at(crossed)
    assert position is not None
    assert distance_km(position, (59.10, 11.27)) < 10


def _segments_cross(a: LatLon, b: LatLon, c: LatLon, d: LatLon) -> bool:
    def orient(p: LatLon, q: LatLon, r: LatLon) -> float:
        return (q[0] - p[0]) * (r[1] - p[1]) - (q[1] - p[1]) * (r[0] - p[0])

    return orient(c, d, a) * orient(c, d, b) < 0 and orient(a, b, c) * orient(a, b, d) < 0


@pytest.mark.parametrize("country", COUNTRIES)
def test_rings_do_not_cross_themselves(country: str) -> None:
    for ring in SHAPES[country].rings:
        n = len(ring)
        edges = [(ring[i], ring[(i + 1) % n]) for i in range(n)]
        for (i, e), (j, f) in itertools.combinations(enumerate(edges), 2):
            if j - i > 1 and not (i == 0 and j == n - 1):
                assert not _segments_cross(*e, *f), (country, e, f)


def test_no_point_of_a_grid_over_europe_lies_in_two_countries() -> None:
    lat = 35.05
    while lat < 71.5:
        lon = -9.95
        while lon < 31.5:
            hits = [code for code, shape in SHAPES.items() if shape.contains(lat, lon)]
            assert len(hits) <= 1, (lat, lon, hits)
            lon += 0.2
        lat += 0.2


def test_bad_coordinates_and_countries_are_config_errors() -> None:
    with pytest.raises(ConfigError, match=r"^lat: 91 is outside"):
        check_latlon(91, 10)
    with pytest.raises(ConfigError, match=r"^lon: expected a number"):
        check_latlon(10, "east")
    with pytest.raises(ConfigError, match=r"^country: unknown country 'XX'"):
        check_country("XX")


def test_distance_oslo_gothenburg_is_about_250_km() -> None:
    assert 240 < distance_km(CAPITALS["NO"], (57.71, 11.97)) < 260
