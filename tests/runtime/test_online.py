"""Replays through a real broker (embedded amqtt and Mosquitto): nothing lost, nothing twice."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from cloud_stub.broker import BrokerHandle
from tcu.compose.online import OnlineOptions, OnlineReplay, reference_traces
from tcu.runtime.mqtt import BrokerURL

TRACES = reference_traces(("city_delivery_bakery.asc", "city_delivery_lunch.trc"))


async def test_two_boots_through_a_real_broker(broker: BrokerHandle, tmp_path: Path) -> None:
    protocol = "3.1.1" if "embedded" in type(broker).__name__.lower() else "auto"
    opts = OnlineOptions(
        traces=TRACES,
        broker=BrokerURL(host=broker.host, port=broker.port),
        workdir=tmp_path,
        protocol=protocol,
        drain_timeout_s=60,
    )
    report = await OnlineReplay(opts).run()
    assert report.drained
    assert report.records_produced > 20
    assert report.stored == report.records_produced
    assert report.lost == 0 and report.duplicates == 0
    assert report.refused == {}
    assert [t.epoch for t in report.traces] == [1, 2]
    lunch = report.traces[1]
    assert lunch.verdicts["refused"] == 2 and lunch.verdicts["allowed_with_warnings"] == 2
    assert report.messages_sent >= 2


def test_demo_is_the_main_job_and_loses_nothing() -> None:
    p = subprocess.run(
        [sys.executable, "-m", "tcu.cli.main", "demo", "--json"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout)
    assert [Path(t["trace"]).name for t in out["traces"]] == [
        "depot_night.blf",
        "city_delivery.blf",
        "cross_border.log",
    ]
    assert out["records_produced"] > 500
    assert out["records_stored"] == out["records_produced"]
    assert out["lost"] == 0 and out["outbox_depth"] == 0
    outcomes = set().union(*(t["verdicts"] for t in out["traces"]))
    assert outcomes == {"allowed", "allowed_with_warnings", "not_needed", "refused"}


def test_demo_with_a_broker_that_is_not_there_fails_cleanly() -> None:
    p = subprocess.run(
        [sys.executable, "-m", "tcu.cli.main", "demo", "--broker", "mqtt://127.0.0.1:1"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert p.returncode == 2
    assert "Traceback" not in p.stderr
    assert p.stderr.strip().splitlines()[-1].startswith("error: ")
