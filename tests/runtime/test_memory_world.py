"""The virtual world: TCU, SIM link and backend on one clock; nothing lost, drops never stall."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tcu.can.setup import TRACES, load_bus_setup
from tcu.can.sources import open_trace
from tcu.cli.main import main
from tcu.compose.memory import MemoryWorld as World
from tcu.compose.replay import DEFAULT_VIN, ReplayOptions, replay_file
from tcu.link.sim import LinkConfig
from tcu.services import VehicleConfig
from tcu.telemetry.policy import TelemetryConfig


def test_cross_border_registers_home_then_roams_with_service_billing(capsys) -> None:  # type: ignore[no-untyped-def]
    assert main(["replay", str(TRACES / "cross_border.log"), "--json"]) == 0
    link = json.loads(capsys.readouterr().out)["link"]
    assert link["plmns_seen"][:2] == ["242-01", "240-08"]  # Telenor Norge, then Telenor Sverige
    assert link["countries_seen"][:2] == ["NO", "SE"]
    se = link["bytes_by_plmn"]["240-08"]
    no = link["bytes_by_plmn"]["242-01"]
    assert se["roaming"] is True and se["billed_to"] == "service" and se["up"] > 0
    assert no["roaming"] is False and no["billed_to"] == "home_plan"
    assert link["bytes_billed"]["service"]["up"] == se["up"]
    assert link["time_home_s"] > 0 and link["time_roaming_s"] > 0


def test_a_dead_zone_delays_records_and_loses_none(tmp_path: Path) -> None:
    link = LinkConfig.from_dict(
        {"home_plmn": "242-01", "dead_zones": [{"name": "tunnel", "start": 300, "end": 1500}]}
    )
    report = replay_file(ReplayOptions(trace=TRACES / "city_delivery.blf", link=link))
    t, b, lk = report.extra["telemetry"], report.extra["backend"], report.extra["link"]
    assert t["records_produced"] > 50
    assert b["records_stored"] == t["records_produced"]
    assert t["lost"] == 0 and t["outbox_depth"] == 0
    assert lk["records_delayed"] > 0 and lk["largest_delay_s"] > 1000
    assert lk["time_unregistered_s"] >= 1200


def test_drops_at_the_outbox_cap_are_counted_and_never_stall_the_ack(tmp_path: Path) -> None:
    setup = load_bus_setup()
    source = open_trace(TRACES / "city_delivery.blf")
    frames = iter(source)
    first = next(frames)
    vehicle = VehicleConfig(vin=DEFAULT_VIN, origin_epoch=first.timestamp)
    link = LinkConfig.from_dict(
        {"home_plmn": "242-01", "dead_zones": [{"name": "hall", "start": 60, "end": 2000}]}
    )
    world = World(
        setup,
        vehicle,
        tmp_path,
        link=link,
        outbox_cap=15,
        telemetry=TelemetryConfig(vin=DEFAULT_VIN, snapshot_period=10),
    )
    try:
        world.replay([first, *frames])
        assert world.drain(600)
        s = world.summary()
        dropped = s["telemetry"]["records_dropped_at_cap"]
        assert dropped > 0
        stored = s["backend"]["records_stored"]
        assert stored + dropped == s["telemetry"]["records_produced"]
        store, telemetry = world.backend.store, world.host.tcu.telemetry
        assert telemetry is not None
        assert store.released(DEFAULT_VIN) == dropped
        assert store.acked(DEFAULT_VIN, world.host.epoch) == telemetry.seq
        assert sum(store.drops(DEFAULT_VIN).values()) == dropped  # reported in telemetry
    finally:
        world.close()


def test_an_inactive_service_sends_nothing(tmp_path: Path) -> None:
    report = replay_file(
        ReplayOptions(trace=TRACES / "city_delivery_lunch.trc", activate=False, drain_s=60)
    )
    t = report.extra["telemetry"]
    assert t["records_produced"] == 0 and t["batches_sent"] == 0 and t["bytes_up"] == 0
    assert report.extra["backend"]["records_stored"] == 0
    assert len(report.extra["verdicts"]) == 4  # the services still run
    assert [w for w in report.warnings if w.startswith("service never active")] == [
        f"service never active: the backend did not activate {DEFAULT_VIN},"
        " so no telemetry was recorded"
    ]


@pytest.mark.parametrize("name", ["depot_night.blf", "city_delivery.blf", "cross_border.log"])
def test_reference_traces_arrive_complete(name: str) -> None:
    report = replay_file(ReplayOptions(trace=TRACES / name))
    t, b = report.extra["telemetry"], report.extra["backend"]
    assert t["records_produced"] > 10
    assert b["records_stored"] == t["records_produced"]
    assert b["duplicates"] == 0 and b["refused"] == {} and t["lost"] == 0
    assert not [w for w in report.warnings if w.startswith("service never active")]
