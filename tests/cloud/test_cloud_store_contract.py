"""One store contract, two implementations: every test runs on SQLite and on PostgreSQL."""

from __future__ import annotations

import re
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from cloud_stub.errors import CloudError
from cloud_stub.store import RecordStore, Store
from cloud_stub.stores import open_store
from cloud_stub.testing import VehicleDouble
from tcu.telemetry.codec.schema import BatchMessage, StatusMessage, decode_batch

VIN = "WV1ZZZ7HZLH000001"


def batch(
    v: VehicleDouble,
    seqs: list[int],
    *,
    epoch: int = 1,
    prev: int | None = None,
    drops: dict[str, int] | None = None,
) -> BatchMessage:
    message = decode_batch(v.batch_payload(epoch, seqs, drops=drops))
    if prev is None:
        return message
    return BatchMessage(vin=v.vin, epoch=epoch, records=message.records, prev=prev)


def test_open_store_picks_the_implementation(tmp_path: Path) -> None:
    with open_store(tmp_path / "s.sqlite") as store:
        assert isinstance(store, Store)
    with pytest.raises(
        CloudError, match=re.escape("cannot open database postgresql://u@127.0.0.1:1/x")
    ):
        open_store("postgresql://u:secret@127.0.0.1:1/x")


def test_ack_is_the_highest_contiguous_sequence(any_store: RecordStore) -> None:
    v = VehicleDouble(VIN)
    assert any_store.add_batch(batch(v, [2, 3])).acked == 0
    assert any_store.add_batch(batch(v, [1])).acked == 3
    assert any_store.add_batch(batch(v, [5, 6])).acked == 3
    assert any_store.add_batch(batch(v, [4])).acked == 6
    assert any_store.add_batch(batch(v, [1], epoch=2)).acked == 1
    assert any_store.acked(VIN, 1) == 6
    assert [r.seq for r in any_store.records(VIN, 1)] == [1, 2, 3, 4, 5, 6]
    assert any_store.records(VIN, 1)[0].body == v.record(1, 1).body


def test_duplicates_and_conflicts_are_counted_and_stored_once(any_store: RecordStore) -> None:
    v = VehicleDouble(VIN)
    any_store.add_batch(batch(v, [1, 2]))
    again = any_store.add_batch(batch(v, [1, 2, 3]))
    assert (again.stored, again.duplicates, again.conflicts, again.acked) == (1, 2, 0, 3)
    changed = decode_batch(v.batch_payload(1, [3]))
    other = BatchMessage(
        vin=VIN, epoch=1, records=(v.record(1, 3, body={14: 55.5}),), prev=changed.prev
    )
    assert any_store.add_batch(other).conflicts == 1
    assert any_store.count_records(VIN) == 3
    [progress] = any_store.progress()
    assert (progress.stored, progress.acked, progress.duplicates, progress.conflicts) == (
        3,
        3,
        3,
        1,
    )


def test_released_ranges_step_over_drops(any_store: RecordStore) -> None:
    v = VehicleDouble(VIN)
    assert any_store.add_batch(batch(v, [1, 2], prev=0)).acked == 2
    assert any_store.add_batch(batch(v, [5, 6, 9], prev=2)).acked == 9
    assert any_store.released(VIN) == 4


def test_drops_of_a_resent_batch_count_once(any_store: RecordStore) -> None:
    v = VehicleDouble(VIN)
    any_store.add_batch(batch(v, [1, 2], drops={"outbox_full": 3}))
    any_store.add_batch(batch(v, [1, 2], drops={"outbox_full": 3}))
    any_store.add_batch(batch(v, [3], drops={"outbox_full": 1}))
    assert any_store.drops(VIN) == {"outbox_full": 4}


def test_statuses_are_stored_once(any_store: RecordStore) -> None:
    status = StatusMessage(
        vin=VIN, command_id="cmd-1", counter=1, outcome="completed", reason=None, t_ms=5
    )
    assert any_store.add_status(status)
    assert not any_store.add_status(status)
    assert any_store.statuses(VIN) == [status]


def test_command_history_and_downlink_refusals(any_store: RecordStore) -> None:
    done = StatusMessage(
        vin=VIN, command_id="cmd-2", counter=2, outcome="completed", reason=None, t_ms=9
    )
    failed = StatusMessage(
        vin=VIN, command_id="cmd-2", counter=2, outcome="failed", reason="busy", t_ms=10
    )
    assert any_store.add_status(done)
    assert not any_store.answered_otherwise(done)
    assert any_store.answered_otherwise(failed)
    refusal = StatusMessage(
        vin=VIN, command_id="cmd-9", counter=9, outcome="refused", reason="bad_signature", t_ms=3
    )
    assert any_store.add_downlink_refusal(refusal)
    assert not any_store.add_downlink_refusal(refusal)
    assert any_store.downlink_refusals(VIN) == [refusal]


def test_a_group_is_one_transaction_with_a_result_per_batch(any_store: RecordStore) -> None:
    a, b = VehicleDouble(VIN), VehicleDouble("WV1ZZZ7HZLH000002")
    results = any_store.add_batches(
        [batch(a, [2]), batch(b, [1, 2]), batch(a, [1]), batch(a, [1, 3])]
    )
    assert [(r.stored, r.duplicates, r.acked) for r in results] == [
        (1, 0, 0),
        (2, 0, 2),
        (1, 0, 2),
        (1, 1, 3),
    ]
    assert any_store.add_batches([]) == []


def test_a_failing_group_stores_nothing(any_store: RecordStore) -> None:
    a = VehicleDouble(VIN)
    any_store.add_batch(batch(a, [1]))
    huge = BatchMessage(vin=VIN, epoch=2**64 - 1, records=(a.record(2**64 - 1, 1),))
    with pytest.raises(Exception):  # noqa: B017 - each driver its own overflow error
        any_store.add_batches([batch(a, [2, 3]), huge])
    assert any_store.count_records() == 1
    assert any_store.acked(VIN, 1) == 1
    assert any_store.add_batch(batch(a, [2])).acked == 2  # the store is still usable


def test_writers_in_parallel_on_one_van_end_with_the_exact_ack(store_target: str) -> None:
    """Two connections store records 2 and 3 of the same vans at the same time.

    Each writer pauses between storing its records and walking over them, so that without
    a per-(vin, epoch) lock both would walk while the other's record is uncommitted and
    neither would see 1..3 whole. With it, one of the two acks names record 3.
    """
    vans = [VehicleDouble(f"WV1ZZZ7HZLH{n:06d}") for n in range(1, 4)]
    acks: dict[str, list[int]] = {v.vin: [] for v in vans}
    lock = threading.Lock()
    with open_store(store_target) as store:
        store.add_batches([batch(v, [1]) for v in vans])
    start = threading.Barrier(2)

    def writer(seq: int) -> None:
        with open_store(store_target) as store:
            advance = store._advance

            def slow_advance(*args: Any) -> int:
                time.sleep(0.1)
                return advance(*args)

            store._advance = slow_advance  # type: ignore[method-assign]
            start.wait()
            results = store.add_batches([batch(v, [seq]) for v in vans])
            with lock:
                for v, result in zip(vans, results, strict=True):
                    acks[v.vin].append(result.acked)

    threads = [threading.Thread(target=writer, args=(seq,)) for seq in (2, 3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    with open_store(store_target) as store:
        for v in vans:
            assert max(acks[v.vin]) == 3, (v.vin, acks[v.vin])
            assert store.acked(v.vin, 1) == 3
            assert store.count_records(v.vin) == 3
