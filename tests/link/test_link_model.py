from __future__ import annotations

import json
from typing import Any

import pytest

from tcu.errors import ConfigError
from tcu.link.modem import Cereg
from tcu.link.sim import (
    EnterCountry,
    Link,
    LinkConfig,
    Position,
    PowerOff,
    SetCoverage,
    Tick,
)

SEARCH = (3.0, 9.0)
ATTACH_HOME = (0.5, 2.0)
ATTACH_ROAMING = (2.0, 5.0)

OSLO = {"lat": 59.91, "lon": 10.75}
SVINESUND = {"lat": 59.10, "lon": 11.27}
GOTHENBURG = {"lat": 57.71, "lon": 11.97}


def drive(seed: int = 1, **extra: Any) -> dict[str, Any]:
    return {
        "home_plmn": "242-01",
        "seed": seed,
        "route": [
            {"t": 0, **OSLO},
            {"t": 3600, **SVINESUND},
            {"t": 7200, **GOTHENBURG},
        ],
        "modem": {
            "search_s": list(SEARCH),
            "attach_home_s": list(ATTACH_HOME),
            "attach_roaming_s": list(ATTACH_ROAMING),
        },
        **extra,
    }


def run_to(link: Link, until: float, every: float = 5.0, nbytes: int = 300) -> None:
    t = link.t
    while t + every <= until:
        t += every
        link.send(nbytes, t)
        link.receive(40, t)
    link.advance(until)


def test_drive_from_oslo_to_gothenburg_registers_home_then_roams_on_telenor_sweden() -> None:
    link = Link.from_dict(drive())
    run_to(link, 8000.0)
    reports = list(link.reports)
    assert [r.stat for r in reports] == [
        Cereg.SEARCHING,
        Cereg.REGISTERED_HOME,
        Cereg.SEARCHING,
        Cereg.REGISTERED_ROAMING,
    ]
    home, lost, roaming = reports[1], reports[2], reports[3]
    assert (home.plmn, home.country) == ("242-01", "NO")
    assert (lost.event, lost.country) == ("moved", "SE")
    assert (roaming.plmn, roaming.country) == ("240-08", "SE")
    assert 3600 < lost.t < 3900
    took = roaming.t - lost.t
    assert SEARCH[0] + ATTACH_ROAMING[0] <= took <= SEARCH[1] + ATTACH_ROAMING[1]
    first = home.t - reports[0].t
    assert SEARCH[0] + ATTACH_HOME[0] <= first <= SEARCH[1] + ATTACH_HOME[1]


def test_roaming_bytes_are_billed_to_the_service_and_home_bytes_to_the_home_plan() -> None:
    link = Link.from_dict(drive())
    run_to(link, 8000.0)
    summary = link.summary()
    sweden = summary["bytes_by_plmn"]["240-08"]
    norway = summary["bytes_by_plmn"]["242-01"]
    assert sweden["up"] > 0 and sweden["down"] > 0
    assert sweden["roaming"] is True and sweden["billed_to"] == "service"
    assert norway["roaming"] is False and norway["billed_to"] == "home_plan"
    assert summary["bytes_billed"]["service"]["up"] == sweden["up"]
    assert summary["bytes_billed"]["home_plan"]["up"] == norway["up"]
    assert summary["plmns_seen"] == ["242-01", "240-08"]
    assert summary["countries_seen"] == ["NO", "SE"]
    assert summary["reconnects"] == 1
    total = summary["time_home_s"] + summary["time_roaming_s"] + summary["time_unregistered_s"]
    assert total == pytest.approx(8000.0, abs=0.01)
    assert summary["time_roaming_s"] > 4000 and summary["time_home_s"] > 3500
    assert json.loads(json.dumps(summary)) == summary


def test_unregistered_sends_are_refused_and_counted_not_billed() -> None:
    link = Link.from_dict(drive())
    assert link.send(300, 0.0) is None  # still searching at power-on
    summary = link.summary()
    assert summary["sends"]["unregistered"] == 1
    assert summary["bytes_not_sent"] == 300
    assert summary["bytes_by_plmn"] == {}


def test_a_dead_zone_window_blocks_sends_during_it_and_they_work_after() -> None:
    link = Link.from_dict(drive(dead_zones=[{"name": "tunnel", "start": 1000, "end": 1600}]))
    assert link.send(300, 900.0) is not None
    for t in (1000.0, 1200.0, 1599.0):
        assert link.send(300, t) is None
    assert link.snapshot().cereg == Cereg.SEARCHING
    assert link.send(300, 1600.0) is None  # searching again
    back = 1600.0 + SEARCH[1] + ATTACH_HOME[1]
    delivered = link.send(300, back)
    assert delivered is not None and delivered > back
    assert link.summary()["reconnects"] == 1


def test_a_forty_minute_dead_zone_is_one_jump_in_virtual_time() -> None:
    link = Link.from_dict(drive(dead_zones=[{"start": 1000, "end": 1000 + 40 * 60}]))
    link.advance(1000.0)
    assert not link.registered
    assert link.next_wakeup() == 1000.0 + 40 * 60
    steps = 0
    while (due := link.next_wakeup()) is not None and due < 3500.0:
        link.advance(due)
        steps += 1
    assert link.registered
    assert steps <= 3  # dead zone end, search done, attach done


def test_delivery_time_includes_latency_queueing_and_bandwidth() -> None:
    link = Link.from_dict(drive())
    link.advance(100.0)
    snap = link.snapshot()
    assert snap.registered and snap.latency_s is not None
    small = link.send(100, 100.0)
    assert small is not None and small >= 100.0 + snap.latency_s
    big = link.send(2_000_000, 100.0)
    rate = snap.uplink_bytes_per_s
    assert big is not None and big >= 100.0 + 2_000_100 / rate + snap.latency_s
    queued = link.send(100, 100.0)
    assert queued is not None and queued >= 100.0 + 2_000_200 / rate + snap.latency_s
    assert big - 100.0 < 2 * 2_000_100 / rate + 1.0  # losses are resent, not the whole file


def test_a_transfer_cut_by_a_coming_dead_zone_fails() -> None:
    link = Link.from_dict(drive(dead_zones=[{"start": 200, "end": 300}]))
    link.advance(199.5)
    assert link.send(50_000_000, 199.5) is None
    assert link.summary()["sends"]["interrupted"] == 1


def test_roaming_adds_latency_and_the_policy_batches_more_while_roaming() -> None:
    link = Link.from_dict(drive(batch={"home_s": 15, "roaming_s": 300}))
    link.advance(100.0)
    home_window = link.batch_window(100.0)
    link.advance(7000.0)
    assert link.snapshot().roaming
    assert home_window == 15.0
    assert link.batch_window(7000.0) == 300.0
    link.handle(SetCoverage(covered=False), 7001.0)
    assert link.batch_window(7001.0) == 300.0


def test_live_position_and_coverage_events_drive_the_link_without_a_route() -> None:
    link = Link.from_dict({"home_plmn": "242-02", "seed": 4})
    assert link.snapshot().country == "NO"
    link.advance(60.0)
    assert link.snapshot().plmn == "242-02"
    reports = link.handle(Position(lat=GOTHENBURG["lat"], lon=GOTHENBURG["lon"]), 61.0)
    assert [r.stat for r in reports] == [Cereg.SEARCHING]
    link.advance(120.0)
    assert link.snapshot().plmn == "240-01"  # Telia Norway prefers Telia Sweden
    link.handle(SetCoverage(covered=False), 130.0)
    assert not link.registered and link.next_wakeup() is None
    link.handle(SetCoverage(covered=None), 140.0)
    link.handle(EnterCountry(country="DK"), 141.0)
    link.advance(200.0)
    assert link.snapshot().plmn == "238-20"
    link.handle(PowerOff(), 210.0)
    link.handle(Tick(), 260.0)
    assert link.snapshot().cereg == Cereg.NOT_REGISTERED


def test_same_seed_same_run_different_seed_different_timing() -> None:
    def run(seed: int) -> tuple[dict[str, Any], list[float]]:
        link = Link.from_dict(drive(seed, random_gaps={"seed": seed, "per_hour": 3, "mean_s": 60}))
        run_to(link, 8000.0, every=10.0)
        return link.summary(), [r.t for r in link.reports]

    assert run(5) == run(5)
    assert run(5)[1] != run(6)[1]


def test_time_cannot_go_backwards() -> None:
    link = Link.from_dict(drive())
    link.advance(50.0)
    with pytest.raises(ValueError, match="backwards"):
        link.send(10, 40.0)


def _with_route(*points: dict[str, Any]) -> dict[str, Any]:
    return {"home_plmn": "242-01", "route": list(points)}


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (
            _with_route({"t": 0, **OSLO}, {"t": 60, "country": "XX"}),
            r"^link\.route\[1\]\.country: unknown country 'XX'",
        ),
        (
            {"home_plmn": "24x-01"},
            r"^link\.home_plmn: malformed MCC-MNC '24x-01'",
        ),
        (
            _with_route(
                {"t": 0, **OSLO},
                {"t": 100, **OSLO},
                {"t": 300, **SVINESUND},
                {"t": 120, **GOTHENBURG},
            ),
            r"^link\.route\[3\]\.t: goes backwards in time \(120 < 300\)$",
        ),
        (
            _with_route({"t": 0, **OSLO}, {"t": 0, **SVINESUND}),
            r"^link\.route\[1\]\.t: does not advance in time \(0 == 0\)$",
        ),
        (_with_route({"t": 0, "lat": 99, "lon": 10}), r"^link\.route\[0\]\.lat: 99 is outside"),
        (_with_route({"t": 0, "lat": 59}), r"^link\.route\[0\]\.lon: missing"),
        (_with_route({"t": "noon", "country": "NO"}), r"^link\.route\[0\]\.t: expected a number"),
        ({"home_plmn": "242-99"}, r"^link\.home_plmn: unknown operator 242-99"),
        ({}, r"^link\.home_plmn: missing"),
        ({"home_plmn": "242-01", "roaming": True}, r"^link\.roaming: unknown key"),
        (
            {"home_plmn": "242-01", "forbidden_plmns": ["240-08", "2408"]},
            r"^link\.forbidden_plmns\[1\]: malformed MCC-MNC '2408'",
        ),
        (
            {"home_plmn": "242-01", "preferred_partners": {"SE": ["242-02"]}},
            r"^link\.preferred_partners\.SE\[0\]: 242-02 is a NO network, not SE",
        ),
        (
            {"home_plmn": "242-01", "preferred_partners": {"XX": ["242-02"]}},
            r"^link\.preferred_partners\.XX: unknown country 'XX'",
        ),
        (
            {
                "home_plmn": "242-01",
                "dead_zones": [{"start": 5, "end": 10}, {"start": 9, "end": 1}],
            },
            r"^link\.dead_zones\[1\]\.end: must be after start",
        ),
        (
            {"home_plmn": "242-01", "random_gaps": {"seed": 1, "per_hour": 1}},
            r"^link\.random_gaps\.mean_s: missing",
        ),
        (
            {"home_plmn": "242-01", "modem": {"search_s": [10, 2]}},
            r"^link\.modem\.search_s: high 2 is below low 10",
        ),
        (
            {"home_plmn": "242-01", "modem": {"search_s": [0, 2]}},
            r"^link\.modem\.search_s\[0\]: must be more than 0",
        ),
        ({"home_plmn": "242-01", "batch": {"home_s": -1}}, r"^link\.batch\.home_s: must be"),
        ({"home_plmn": "242-01", "seed": "x"}, r"^link\.seed: expected an integer"),
        ("home_plmn: 242-01", r"^link: expected a mapping"),
    ],
)
def test_bad_configuration_names_the_field(raw: object, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        LinkConfig.from_dict(raw)


def test_config_is_frozen_and_validates_when_built_directly() -> None:
    config = LinkConfig.from_dict(drive())
    with pytest.raises(AttributeError):
        config.seed = 2  # type: ignore[misc]
    with pytest.raises(ConfigError, match=r"^home_plmn: malformed"):
        LinkConfig(home_plmn="24x-01")
