"""The TCU process killed with SIGKILL mid-stream, then booted again on the same outbox.

Command-line programs as children: ``cloud-stub serve`` on Mosquitto, and ``tcu replay
TRACE --broker URL --workdir DIR --external-backend --keystore DIR``. The backend is down
while the first boot runs, so when the kill comes the van holds records nobody has
acknowledged (the broker keeps the copies it took, in the backend's session). The second
boot is a new epoch and sends the old epoch's records again before its own; a witness
on the telemetry topic sees them go out twice. The backend, back, stores both epochs
whole, each record once, and counts the second copies as duplicates.
"""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest

from cloud_stub.broker import MosquittoProcess
from cloud_stub.cli import main as cloud_stub
from cloud_stub.store import Store
from tcu.can.setup import TRACES
from tcu.cli.main import main as tcu
from tcu.telemetry.storage.identity import load_identity
from tcu.telemetry.storage.outbox import EPOCH, Outbox
from tests.faults.rig import (
    VIN,
    Child,
    assert_exactly_once,
    children,
    outbox_seqs,
    until,
    witness,
)

pytestmark = pytest.mark.mosquitto

FIRST_TRACE = TRACES / "city_delivery_lunch.trc"
SECOND_TRACE = TRACES / "city_delivery_bakery.asc"


async def test_tcu_killed_mid_stream_resends_the_old_epoch_after_a_new_boot(
    mosquitto_broker: MosquittoProcess, tmp_path: Path
) -> None:
    url = mosquitto_broker.url
    data, keystore, workdir = tmp_path / "cloud", tmp_path / "keystore", tmp_path / "tcu"
    args = ("--vin", VIN, "--keystore", str(keystore), "--backend-data", str(data))
    assert tcu(["provision", *args, "--json"]) == 0
    assert cloud_stub(["activate", VIN, "--data", str(data)]) == 0
    workdir.mkdir()
    with Outbox(workdir / "outbox.sqlite") as outbox:
        outbox.save_downlink(0, True)  # activated during an earlier life of the van
    replay = (
        *("tcu.cli.main", "replay", "--broker", url, "--workdir", str(workdir)),
        *("--external-backend", "--keystore", str(keystore)),
    )
    serve = ("cloud_stub.cli", "serve", "--broker", url, "--data", str(data))
    outbox_file = workdir / "outbox.sqlite"

    with children() as started:
        backend = Child(*serve, log=tmp_path / "serve-1.log")
        started.append(backend)
        await backend.line("cloud-stub: serving")  # its persistent session now exists
        backend.signal(signal.SIGTERM)
        assert await backend.wait() == 0

        async with witness(url, load_identity(keystore).key.public_key()) as seen:
            first = Child(*replay, str(FIRST_TRACE), log=tmp_path / "tcu-1.log")
            started.append(first)
            await until("a record of the first boot on the broker", lambda: bool(seen.seen))
            first.kill()
            assert first.process.returncode == -signal.SIGKILL

            held = outbox_seqs(outbox_file)
            assert list(held) == [1], held
            made_first = len(held[1])
            assert held[1] == list(range(1, made_first + 1)), "committed records survive the kill"
            published_first = set(seen.count(1))

            mark = seen.mark()
            second = Child(*replay, "--json", str(SECOND_TRACE), log=tmp_path / "tcu-2.log")
            started.append(second)
            await until(
                "the second boot sending the first boot's records again",
                lambda: seen.since(mark, 1) == set(range(1, made_first + 1)),
            )
            backend = Child(*serve, log=tmp_path / "serve-2.log")
            started.append(backend)
            assert await second.wait(timeout=60) == 0, second.stderr()
            backend.signal(signal.SIGTERM)
            assert await backend.wait() == 0, backend.stderr()

    report = json.loads("".join(second.output))
    assert report["drained"] is True and report["outbox_depth"] == 0
    assert [t["epoch"] for t in report["traces"]] == [2]
    made_second = report["records_produced"]
    assert made_second > 0
    assert report["uplink"]["records_sent"] >= made_first + made_second
    with Outbox(outbox_file) as outbox:
        assert outbox.get(EPOCH) == 2 and outbox.depth() == 0
    with Store(data / "store.sqlite") as store:
        duplicates = assert_exactly_once(store, {1: made_first, 2: made_second})
    assert duplicates[1] >= len(published_first) > 0
