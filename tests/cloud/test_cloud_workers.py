"""``cloud-stub serve --workers K``: shared subscriptions on Mosquitto, PostgreSQL or SQLite.

Simulated vans (real signed batches, real acks) publish through Mosquitto; the broker hands
each batch to one of two worker processes, so one van's records reach both. Every van must
end with its last record acknowledged, every record stored once.
"""

from __future__ import annotations

import asyncio
import json
import resource
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from cloud_stub.broker import MosquittoProcess
from cloud_stub.keys import load_backend_key
from cloud_stub.loadgen import ServeProcess, SimVan, drive, register
from cloud_stub.stores import open_store
from cloud_stub.testing import VehicleDouble

pytestmark = pytest.mark.mosquitto

RECORDS = 40


def vans(count: int) -> list[VehicleDouble]:
    return [VehicleDouble(f"WV1ZZZ7HZLH{n:06d}") for n in range(1, count + 1)]


@pytest.mark.parametrize("db", ["sqlite", "postgresql"])
async def test_two_workers_ack_every_van_exactly(
    db: str, mosquitto_broker: MosquittoProcess, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    data = tmp_path / "cloud"
    target = str(data / "store.sqlite")
    options = ["--data", str(data), "--workers", "2", "--broker", mosquitto_broker.url]
    if db == "postgresql":
        target = request.getfixturevalue("postgres_url")
        options += ["--db", target]
    doubles = vans(40)
    register(data, doubles)
    public = load_backend_key(data).key.public_key()
    address = [(mosquitto_broker.host, mosquitto_broker.port)]
    with ServeProcess(*options) as server:
        fleet = [
            SimVan(d, address, public, records=RECORDS, batch=4, window=3, ack_timeout=30)
            for d in doubles
        ]
        reports = await drive(fleet, timeout=120)
        workers = [json.loads((data / f"stats.worker-{i}.json").read_text()) for i in range(2)]
        output = server.stop()
    assert "with 2 workers" in output
    assert [r.vin for r in reports if not r.complete] == []
    assert all(w["batches"] > 0 for w in workers), workers  # both took a share
    with open_store(target) as store:
        for progress in store.progress():
            assert (progress.stored, progress.acked) == (RECORDS, RECORDS), progress
        assert store.count_records() == RECORDS * len(doubles)
    resent = sum(r.resent for r in reports)
    assert sum(w["duplicates"] for w in workers) <= resent * 4
    final = json.loads(output.rsplit("cloud-stub: stopping; ", 1)[1])
    assert final["workers"] == 2
    assert final["records_stored"] == RECORDS * len(doubles)


@pytest.mark.slow
async def test_a_thousand_vans_two_workers_postgresql_none_lost_none_duplicated(
    mosquitto_broker: MosquittoProcess, postgres_url: str, tmp_path: Path
) -> None:
    """1,000 vans, each its own MQTT client, at once: every record stored once, every ack."""
    data = tmp_path / "cloud"
    doubles = vans(1000)
    register(data, doubles)
    public = load_backend_key(data).key.public_key()
    options = ["--data", str(data), "--workers", "2", "--broker", mosquitto_broker.url]
    with ServeProcess(*options, "--db", postgres_url):
        fleet = [
            SimVan(d, [(mosquitto_broker.host, mosquitto_broker.port)], public, records=10,
                   batch=5, window=2, ack_timeout=120)
            for d in doubles
        ]  # fmt: skip
        reports = await drive(fleet, ramp_per_s=1000, timeout=240)
    assert [r.vin for r in reports if not r.complete] == []
    assert sum(r.resent for r in reports) == 0
    with open_store(postgres_url) as store:
        progress = store.progress()
        assert len(progress) == 1000
        assert {(p.stored, p.acked, p.duplicates) for p in progress} == {(10, 10, 0)}
        assert store.count_records() == 10_000


async def test_a_worker_whose_database_connection_dies_restarts_and_nothing_is_lost(
    mosquitto_broker: MosquittoProcess, postgres_url: str, tmp_path: Path
) -> None:
    """The server ends both workers' connections mid-run (pg_terminate_backend).

    Each worker fails on its next commit, exits, and is started again; what it had taken
    and not stored, the vans resend when no ack comes.
    """
    data = tmp_path / "cloud"
    doubles = vans(20)
    register(data, doubles)
    public = load_backend_key(data).key.public_key()
    options = ["--data", str(data), "--workers", "2", "--broker", mosquitto_broker.url]
    with ServeProcess(*options, "--db", postgres_url) as server:
        fleet = [
            SimVan(d, [(mosquitto_broker.host, mosquitto_broker.port)], public, records=40,
                   batch=2, window=2, ack_timeout=3, interval=0.05)
            for d in doubles
        ]  # fmt: skip
        run = asyncio.create_task(drive(fleet, timeout=90))
        async with asyncio.timeout(60):
            while sum(v.report.acked for v in fleet) < len(fleet) * 10:
                await asyncio.sleep(0.02)
        with psycopg.connect(postgres_url, autocommit=True) as db:
            ended = db.execute(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            ).fetchone()
        reports = await run
        output = server.stop()
    assert ended is not None and ended[0] >= 2
    assert [r.vin for r in reports if not r.complete] == [], output[-2000:]
    assert json.loads(output.rsplit("stopping; ", 1)[1])["restarts"] >= 2
    with open_store(postgres_url) as store:
        assert store.count_records() == 40 * len(doubles)
        assert {(p.stored, p.acked) for p in store.progress()} == {(40, 40)}


async def test_one_process_serves_with_a_postgresql_store(
    mosquitto_broker: MosquittoProcess, postgres_url: str, tmp_path: Path
) -> None:
    data = tmp_path / "cloud"
    doubles = vans(5)
    register(data, doubles)
    public = load_backend_key(data).key.public_key()
    options = ["--data", str(data), "--broker", mosquitto_broker.url, "--db", postgres_url]
    with ServeProcess(*options):
        fleet = [
            SimVan(d, [(mosquitto_broker.host, mosquitto_broker.port)], public, records=12)
            for d in doubles
        ]
        reports = await drive(fleet, timeout=30)
    assert all(r.complete for r in reports)
    with open_store(postgres_url) as store:
        assert store.count_records() == 60
    stats = run_cli("stats", "--data", str(data), "--db", postgres_url)
    assert stats.returncode == 0, stats.stderr
    assert {p["stored"] for p in json.loads(stats.stdout)["progress"]} == {12}


async def test_a_smaller_pool_ends_the_sessions_of_the_workers_gone(
    mosquitto_broker: MosquittoProcess, tmp_path: Path
) -> None:
    """Two workers, then one: the second worker's session must not keep a share of the work.

    Left behind, that offline session would get every other batch, and the vans would wait
    for acks that only a resend (after their minute-long timeout) could bring.
    """
    data = tmp_path / "cloud"
    doubles = vans(20)
    register(data, doubles)
    public = load_backend_key(data).key.public_key()
    options = ["--data", str(data), "--broker", mosquitto_broker.url, "--workers"]
    with ServeProcess(*options, "2"):
        pass
    with ServeProcess(*options, "1") as server:
        fleet = [
            SimVan(d, [(mosquitto_broker.host, mosquitto_broker.port)], public, records=20,
                   batch=4, ack_timeout=60)
            for d in doubles
        ]  # fmt: skip
        reports = await drive(fleet, timeout=20)
        output = server.stop()
    assert "ended the sessions of cloud-stub-w1" in output
    assert [r.vin for r in reports if not r.complete] == []
    assert sum(r.resent for r in reports) == 0


def run_cli(*args: str, soft_limit: int | None = None) -> subprocess.CompletedProcess[str]:
    def lower() -> None:
        if soft_limit is not None:
            hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
            resource.setrlimit(resource.RLIMIT_NOFILE, (soft_limit, hard))

    return subprocess.run(
        [sys.executable, "-m", "cloud_stub.cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
        preexec_fn=lower,
        check=False,
    )


def test_serve_raises_the_open_files_limit_and_says_so(tmp_path: Path) -> None:
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if hard != resource.RLIM_INFINITY and hard <= 256:
        pytest.skip("hard limit too low to lower the soft one below it")
    done = run_cli("serve", "--data", str(tmp_path), "--workers", "2", soft_limit=256)
    assert done.returncode == 2
    assert "open files soft limit raised from 256 to" in done.stdout
    assert "error: --workers needs --broker" in done.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--db", "store.sqlite"], "error: --db 'store.sqlite' must be a postgresql:// URL"),
        (["--workers", "-1"], "error: --workers -1 must be at least 1"),
        (
            ["--workers", "2", "--broker", "amqp://"],
            "error: argument --broker: broker URL 'amqp://' must be amqp",
        ),
        (
            ["--workers", "2", "--broker", "http://x"],
            "error: argument --broker: broker URL 'http://x': must start",
        ),
    ],
)
def test_serve_refuses_bad_options(tmp_path: Path, args: list[str], message: str) -> None:
    done = run_cli("serve", "--data", str(tmp_path), *args)
    assert done.returncode == 2
    assert message in done.stderr
    assert "Traceback" not in done.stderr
