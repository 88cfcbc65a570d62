from __future__ import annotations

import statistics

import pytest

from tcu.errors import ConfigError
from tcu.link.coverage import FADE_DB, Coverage, DeadZone, RandomGaps
from tcu.link.route import Route


def test_a_time_window_is_half_open_and_announces_its_edges() -> None:
    cov = Coverage(zones=[DeadZone(name="tunnel", start=100.0, end=160.0)])
    assert cov.covered(99.9)
    assert not cov.covered(100.0)
    assert not cov.covered(159.9)
    assert cov.covered(160.0)
    assert cov.next_transition(0.0) == 100.0
    assert cov.next_transition(100.0) == 160.0
    assert cov.next_transition(160.0) is None


def test_overlapping_windows_merge() -> None:
    cov = Coverage(
        zones=[
            DeadZone(name="a", start=10.0, end=30.0),
            DeadZone(name="b", start=20.0, end=50.0),
        ]
    )
    assert not cov.covered(40.0)
    assert cov.next_transition(15.0) == 50.0


def test_a_polygon_zone_becomes_an_interval_along_the_route() -> None:
    square = ((59.9, 10.0), (60.1, 10.0), (60.1, 10.1), (59.9, 10.1))
    route = Route.from_list(
        [{"t": 0, "lat": 60.0, "lon": 9.9}, {"t": 400, "lat": 60.0, "lon": 10.3}]
    )
    cov = Coverage(zones=[DeadZone(name="valley", polygon=square)], route=route)
    enter = cov.next_transition(0.0)
    assert enter is not None and enter == pytest.approx(100.0, abs=0.5)
    leave = cov.next_transition(enter)
    assert leave is not None and leave == pytest.approx(200.0, abs=0.5)
    assert cov.covered(50.0) and not cov.covered(150.0) and cov.covered(250.0)
    assert cov.zone_at(60.0, 10.05) == "valley" and cov.zone_at(60.0, 10.2) is None


def _gaps(seed: int, hours: float = 200.0) -> list[tuple[float, float]]:
    cov = Coverage(random_gaps=RandomGaps(seed=seed, per_hour=2.0, mean_s=90.0))
    return cov.gaps_until(hours * 3600)


def test_random_gaps_are_deterministic_for_a_seed_and_differ_between_seeds() -> None:
    assert _gaps(7) == _gaps(7)
    assert _gaps(7) != _gaps(8)


def test_random_gaps_follow_the_configured_rate_and_length() -> None:
    gaps = _gaps(3)
    assert 300 < len(gaps) < 500  # 400 expected over 200 h
    lengths = [end - start for start, end in gaps]
    assert 60 < statistics.mean(lengths) < 120
    assert min(lengths) >= 1.0
    edges = [x for gap in gaps for x in gap]
    assert edges == sorted(edges)


def test_no_gaps_at_zero_rate() -> None:
    cov = Coverage(random_gaps=RandomGaps(seed=1, per_hour=0.0, mean_s=60.0))
    assert cov.covered(1e6) and cov.next_transition(0.0) is None


def test_signal_is_deterministic_absent_in_gaps_and_fades_near_them() -> None:
    plain = Coverage(signal_seed=5)
    zoned = Coverage(zones=[DeadZone(name="z", start=1000.0, end=2000.0)], signal_seed=5)
    samples = [plain.rsrp(float(t)) for t in range(0, 5000, 37)]
    assert samples == [Coverage(signal_seed=5).rsrp(float(t)) for t in range(0, 5000, 37)]
    assert all(s is not None and -140 <= s <= -44 for s in samples)
    assert zoned.rsrp(1500.0) is None
    before, clear = zoned.rsrp(999.0), plain.rsrp(999.0)
    assert before is not None and clear is not None
    assert before <= clear - FADE_DB / 2 or before == -140.0
    assert zoned.rsrp(500.0) == plain.rsrp(500.0)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"start": 10, "end": 5}, r"^end: must be after start \(5 <= 10\)"),
        ({"start": 10}, "^end: missing"),
        ({"polygon": [[1, 2], [3, 4]]}, "^polygon: needs at least 3 vertices"),
        ({"polygon": [[1, 2], [3, 4], [95, 4]]}, r"^polygon\[2\]\.lat: 95 is outside"),
        ({"polygon": [[1, 2], [3, 4], [5, 6]], "start": 1}, "^polygon: give either"),
        ({"start": 1, "end": 2, "shape": "x"}, "^shape: unknown key"),
    ],
)
def test_bad_dead_zones_name_the_field(raw: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        DeadZone.from_dict(raw, default_name="z")


def test_bad_random_gaps_name_the_field() -> None:
    with pytest.raises(ConfigError, match=r"^mean_s: missing"):
        RandomGaps.from_dict({"seed": 1, "per_hour": 2})
    with pytest.raises(ConfigError, match=r"^per_hour: must be at least 0"):
        RandomGaps.from_dict({"seed": 1, "per_hour": -2, "mean_s": 3})
    with pytest.raises(ConfigError, match=r"^seed: expected an integer"):
        RandomGaps.from_dict({"seed": 1.5, "per_hour": 2, "mean_s": 3})
