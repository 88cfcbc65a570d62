"""Vehicle configuration and the departure-time arithmetic."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from services_support import ORIGIN, VIN

from tcu.errors import ConfigError
from tcu.services.config import (
    DAY_S,
    VehicleConfig,
    clock_utc,
    format_hhmm,
    next_departure_t,
    parse_hhmm,
)


def test_defaults() -> None:
    cfg = VehicleConfig(vin=VIN)
    assert (cfg.usable_capacity_kwh, cfg.charging_power_kw, cfg.target_soc) == (75.0, 11.0, 100.0)
    assert (cfg.preconditioning_lead_s, cfg.lock_timeout_s) == (1800.0, 5.0)
    assert cfg.preconditioning_min_soc == 15.0


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("vin", ""),
        ("vin", " WDB "),
        ("usable_capacity_kwh", 0.0),
        ("usable_capacity_kwh", -3.0),
        ("charging_power_kw", 0),
        ("charging_power_kw", float("nan")),
        ("target_soc", 0.0),
        ("target_soc", 100.5),
        ("preconditioning_lead_s", -1.0),
        ("preconditioning_lead_s", DAY_S + 1),
        ("lock_timeout_s", 0.0),
        ("origin_epoch", float("inf")),
        ("lock_timeout_s", True),
        ("charging_power_kw", "11"),
    ],
)
def test_bad_values_are_config_errors_naming_the_field(field: str, value: object) -> None:
    with pytest.raises(ConfigError, match=field):
        VehicleConfig(**{"vin": VIN, field: value})  # type: ignore[arg-type]


def test_from_dict() -> None:
    cfg = VehicleConfig.from_dict({"vin": VIN, "charging_power_kw": 22, "origin_epoch": ORIGIN})
    assert cfg.charging_power_kw == 22 and cfg.origin_epoch == ORIGIN
    with pytest.raises(ConfigError, match=r"van\.yaml: unknown keys bogus"):
        VehicleConfig.from_dict({"vin": VIN, "bogus": 1}, where="van.yaml")
    with pytest.raises(ConfigError, match=r"van\.yaml: target_soc"):
        VehicleConfig.from_dict({"vin": VIN, "target_soc": 120}, where="van.yaml")
    with pytest.raises(ConfigError, match="vin"):
        VehicleConfig.from_dict({})
    with pytest.raises(ConfigError, match="expected a mapping"):
        VehicleConfig.from_dict([1, 2])  # type: ignore[arg-type]


@pytest.mark.parametrize(("text", "minutes"), [("00:00", 0), ("7:05", 425), ("23:59", 1439)])
def test_parse_hhmm(text: str, minutes: int) -> None:
    assert parse_hhmm(text) == minutes
    assert parse_hhmm(format_hhmm(minutes)) == minutes


@pytest.mark.parametrize("text", ["24:00", "12:60", "7", "07:5", "ab:cd", "", "-1:00", "07:00:00"])
def test_parse_hhmm_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="HH:MM"):
        parse_hhmm(text)


# Vehicle time 0 is 06:00 UTC.
@pytest.mark.parametrize(
    ("minutes", "now", "expected"),
    [
        (7 * 60, 0.0, 3600.0),  # later today
        (6 * 60, 0.0, 0.0),  # exactly now
        (5 * 60, 0.0, 23 * 3600.0),  # already passed today: tomorrow
        (0, 0.0, 18 * 3600.0),  # midnight: tomorrow's
        (6 * 60, 60.0, DAY_S),  # passed a minute ago
        (7 * 60, 20 * 3600.0, DAY_S + 3600.0),  # 02:00 next day: 07:00 that day
        (23 * 60 + 59, 0.0, 17 * 3600.0 + 59 * 60),
    ],
)
def test_next_departure(minutes: int, now: float, expected: float) -> None:
    assert next_departure_t(minutes, now, ORIGIN) == pytest.approx(expected)


@given(
    minutes=st.integers(0, 1439),
    now=st.floats(0, 30 * DAY_S),
    origin=st.integers(0, 2_000_000_000),
)
def test_next_departure_is_the_next_such_time_of_day(minutes: int, now: float, origin: int) -> None:
    t = next_departure_t(minutes, now, origin)
    assert now - 1e-3 <= t <= now + DAY_S
    assert (origin + t) % DAY_S == pytest.approx(minutes * 60.0, abs=1e-3)


@pytest.mark.parametrize("minutes", [-1.0, 1440.0, float("nan")])
def test_next_departure_rejects_a_time_of_day_out_of_range(minutes: float) -> None:
    with pytest.raises(ValueError):
        next_departure_t(minutes, 0.0, ORIGIN)


def test_clock_utc() -> None:
    assert clock_utc(0.0, ORIGIN) == "06:00"
    assert clock_utc(3540.0, ORIGIN) == "06:59"
    assert clock_utc(19 * 3600.0, ORIGIN) == "01:00"
    assert clock_utc(3540.5, ORIGIN) == "06:59"
    assert clock_utc(3540.5, ORIGIN, round_up=True) == "07:00"
    assert clock_utc(3540.0, ORIGIN, round_up=True) == "06:59"
    assert clock_utc(18 * 3600.0 - 1, ORIGIN, round_up=True) == "00:00"
