"""The durable outbox: commit before offer, ack semantics, reopen, bounds and drop counters."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from tcu.errors import ConfigError
from tcu.telemetry.records import Record
from tcu.telemetry.storage.outbox import DOWNLINK_COUNTER, SERVICE_ACTIVE, Outbox, OutboxError
from tcu.vehicle import catalogue as cat
from tcu.vehicle.catalogue import SIGNAL_IDS

VIN = "WDB9066331S123456"
SOC = SIGNAL_IDS[cat.SOC]


def rec(epoch: int, seq: int, kind: str = "snapshot") -> Record:
    if kind == "snapshot":
        body: dict[object, object] = {0: 0, SOC: float(seq)}
    elif kind == "change":
        body = {SOC: float(seq)}
    else:
        body = {"n": seq}
    return Record(vin=VIN, epoch=epoch, seq=seq, t_ms=seq * 100, kind=kind, body=body)


def keys(records: list[Record]) -> list[tuple[int, int]]:
    return [(r.epoch, r.seq) for r in records]


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "outbox.sqlite"


def test_wal_mode_and_committed_records_are_visible_to_another_connection(path: Path) -> None:
    with Outbox(path) as box:
        box.append([rec(1, 1), rec(1, 2)])
        other = sqlite3.connect(path)
        try:
            assert other.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
            assert other.execute("SELECT COUNT(*) FROM records").fetchone()[0] == 2
        finally:
            other.close()
        assert box.pending() == [rec(1, 1), rec(1, 2)]


def test_pending_is_production_order_across_epochs_with_a_cursor(path: Path) -> None:
    with Outbox(path) as box:
        box.append([rec(2, 1), rec(2, 2)])
        box.append([rec(1, 5, "alarm")])
        box.append([rec(2, 3, "change")])
        assert keys(box.pending()) == [(1, 5), (2, 1), (2, 2), (2, 3)]
        assert keys(box.pending(2)) == [(1, 5), (2, 1)]
        assert keys(box.pending(after=(2, 1))) == [(2, 2), (2, 3)]
        assert box.count_through(2, 2) == 3
        wire = box.pending_wire(1)[0][1]
        assert isinstance(wire, bytes) and wire[0] == 0xA4


def test_ack_deletes_only_what_it_covers(path: Path) -> None:
    with Outbox(path) as box:
        box.append([rec(1, s) for s in (1, 2, 3)] + [rec(2, s) for s in (1, 2, 3, 4)])
        assert box.ack(2, 2) == 2
        assert keys(box.pending()) == [(1, 1), (1, 2), (1, 3), (2, 3), (2, 4)]
        assert box.ack(2, 2) == 0, "an ack again deletes nothing more"
        assert box.ack(3, 100) == 0, "an epoch it does not hold"
        assert box.depth() == 5


def test_everything_survives_a_reopen_and_epochs_grow(path: Path) -> None:
    with Outbox(path) as box:
        assert box.start_epoch() == 1
        box.append([rec(1, 1), rec(1, 2, "verdict")])
        box.save_downlink(41, True)
    with Outbox(path) as box:
        assert box.epoch == 1
        assert box.start_epoch() == 2
        assert box.pending() == [rec(1, 1), rec(1, 2, "verdict")]
        assert box.depth() == 2
        assert box.get(DOWNLINK_COUNTER) == 41 and box.get(SERVICE_ACTIVE) == 1
        box.save_downlink(42, None)
    with Outbox(path) as box:
        assert box.get(DOWNLINK_COUNTER) == 42 and box.get(SERVICE_ACTIVE) == 1
        assert box.start_epoch() == 3


def test_past_the_cap_the_oldest_snapshots_go_first_then_changes(path: Path) -> None:
    with Outbox(path, cap=5, hard_cap=8) as box:
        box.append([rec(1, 1), rec(1, 2, "change"), rec(1, 3), rec(1, 4, "alarm"), rec(1, 5)])
        assert box.append([rec(1, 6, "verdict")]) == {"snapshot": 1}
        assert keys(box.pending()) == [(1, 2), (1, 3), (1, 4), (1, 5), (1, 6)]
        assert box.append([rec(1, 7, "change"), rec(1, 8)]) == {"snapshot": 2}
        assert [r.kind for r in box.pending()] == [
            "change",
            "alarm",
            "verdict",
            "change",
            "snapshot",
        ]
        assert box.append([rec(1, 9, "session")]) == {"snapshot": 1}
        assert box.append([rec(1, 10, "alarm")]) == {"change": 1}
        assert box.depth() == 5
        assert box.drop_counts() == {"snapshot": 4, "change": 1}


def test_alarms_and_verdicts_go_only_at_the_hard_cap(path: Path) -> None:
    with Outbox(path, cap=3, hard_cap=5) as box:
        box.append([rec(1, s, "alarm") for s in (1, 2, 3, 4, 5)])
        assert box.depth() == 5 and box.drop_counts() == {}
        assert box.append([rec(1, 6, "verdict"), rec(1, 7, "snapshot")]) == {
            "snapshot": 1,
            "alarm": 1,
        }
        assert keys(box.pending()) == [(1, 2), (1, 3), (1, 4), (1, 5), (1, 6)]
        assert box.max_depth_seen == 5


def test_drop_counts_are_reported_once_and_cleared_only_by_the_covering_ack(path: Path) -> None:
    with Outbox(path, cap=2, hard_cap=4) as box:
        box.append([rec(1, s) for s in (1, 2, 3, 4)])
        assert box.drop_counts() == {"snapshot": 2}
        assert box.drops_for_batch(1, 4) == {"snapshot": 2}
        assert box.drops_for_batch(1, 4) == {}, "one report in flight at a time"
        box.append([rec(1, 5)])
        box.ack(1, 3)
        assert box.drop_counts() == {"snapshot": 3}, "ack does not cover the reporting batch"
        box.ack(1, 4)
        assert box.drop_counts() == {"snapshot": 1}, "the one dropped since stays due"
        assert box.drops_for_batch(1, 5) == {"snapshot": 1}
        box.resend()
        assert box.drops_for_batch(1, 5) == {"snapshot": 1}, "due again after a resend"


def test_drop_counts_survive_a_reopen_until_reported(path: Path) -> None:
    with Outbox(path, cap=1) as box:
        box.append([rec(1, 1), rec(1, 2)])
        box.drops_for_batch(1, 2)
    with Outbox(path, cap=1) as box:
        assert box.drop_counts() == {"snapshot": 1}
        assert box.stats()["unreported_drops"] == {"snapshot": 1}


def test_a_record_stored_twice_is_refused_and_the_transaction_rolls_back(path: Path) -> None:
    with Outbox(path) as box:
        box.append([rec(1, 1)])
        with pytest.raises(ValueError, match="already"):
            box.append([rec(1, 2), rec(1, 1)])
        assert keys(box.pending()) == [(1, 1)]
        assert box.depth() == 1


def test_bad_configuration_and_bad_files_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        Outbox(tmp_path / "a.sqlite", cap=0)
    with pytest.raises(ConfigError):
        Outbox(tmp_path / "b.sqlite", cap=10, hard_cap=5)
    junk = tmp_path / "junk.sqlite"
    junk.write_bytes(b"this is not a database" * 100)
    with pytest.raises(Exception, match="outbox") as info:
        Outbox(junk)
    assert "Traceback" not in str(info.value)


def test_a_missing_directory_is_created_and_one_that_cannot_be_is_refused(tmp_path: Path) -> None:
    """``tcu run --outbox new/dir/outbox.sqlite`` failed with "unable to open database file"."""
    with Outbox(tmp_path / "new" / "dir" / "outbox.sqlite") as box:
        assert box.depth() == 0
    (tmp_path / "a-file").write_text("")
    with pytest.raises(OutboxError, match="cannot create its directory"):
        Outbox(tmp_path / "a-file" / "outbox.sqlite")
