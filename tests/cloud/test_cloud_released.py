"""A batch's ``prev`` field: sequence numbers the vehicle dropped never stall the ack."""

from __future__ import annotations

from pathlib import Path

import pytest

from cloud_stub.store import Store
from cloud_stub.testing import VehicleDouble
from tcu.telemetry.codec.schema import BatchMessage, decode_batch, encode_batch


@pytest.fixture
def store(tmp_path: Path) -> Store:
    with Store(tmp_path / "store.sqlite") as s:
        yield s  # type: ignore[misc]


def batch(v: VehicleDouble, seqs: list[int], prev: int | None) -> BatchMessage:
    message = BatchMessage(
        vin=v.vin, epoch=1, records=tuple(v.record(1, s) for s in seqs), prev=prev
    )
    return decode_batch(encode_batch(message))  # through the wire format


def test_without_prev_a_gap_holds_the_ack(store: Store) -> None:
    v = VehicleDouble("XECELLVAN00000001")
    assert store.add_batch(batch(v, [1, 2], None)).acked == 2
    assert store.add_batch(batch(v, [5, 6], None)).acked == 2


def test_prev_releases_the_missing_numbers(store: Store) -> None:
    v = VehicleDouble("XECELLVAN00000001")
    assert store.add_batch(batch(v, [1, 2], 0)).acked == 2
    assert store.add_batch(batch(v, [5, 6, 9], 2)).acked == 9  # 3, 4, 7, 8 dropped
    assert store.released(v.vin) == 4
    assert store.count_records(v.vin) == 5


def test_a_batch_lost_in_flight_is_not_released(store: Store) -> None:
    v = VehicleDouble("XECELLVAN00000001")
    store.add_batch(batch(v, [1, 2], 0))
    # [3, 4] was sent (prev 2) but lost; the next batch names prev 4: 3 and 4 stay owed
    assert store.add_batch(batch(v, [5, 6], 4)).acked == 2
    # after a start-over the vehicle resends everything it holds, from prev 0
    assert store.add_batch(batch(v, [3, 4, 5, 6], 0)).acked == 6
    assert store.released(v.vin) == 0


def test_prev_must_come_before_the_first_record() -> None:
    v = VehicleDouble("XECELLVAN00000001")
    with pytest.raises(ValueError, match="prev 5 is not before record 5"):
        BatchMessage(vin=v.vin, epoch=1, records=(v.record(1, 5),), prev=5)
