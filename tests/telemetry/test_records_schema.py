"""The wire schema: round trips, byte sizes, and strict refusal of anything else."""

from __future__ import annotations

import contextlib
from typing import Any

import cbor2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tcu.errors import DecodeError
from tcu.telemetry.codec.schema import (
    AckMessage,
    BatchMessage,
    DownlinkMessage,
    StatusMessage,
    decode_ack,
    decode_batch,
    decode_downlink,
    decode_status,
    dumps,
    encode_ack,
    encode_batch,
    encode_downlink,
    encode_record,
    encode_status,
    resolve_snapshot,
)
from tcu.telemetry.records import Record
from tcu.vehicle import catalogue as cat
from tcu.vehicle.catalogue import SIGNAL_IDS

VIN = "WDB9066331S123456"
SOC = SIGNAL_IDS[cat.SOC]
BONNET = SIGNAL_IDS[cat.BONNET]
GEAR = SIGNAL_IDS[cat.GEAR]


def rec(seq: int, kind: str, body: dict[Any, Any], t_ms: int = 1000) -> Record:
    return Record(vin=VIN, epoch=7, seq=seq, t_ms=t_ms, kind=kind, body=body)


def sample_batch() -> BatchMessage:
    return BatchMessage(
        vin=VIN,
        epoch=7,
        records=(
            rec(
                1,
                "snapshot",
                {0: 0, SOC: 80.5, BONNET: False, GEAR: "P", SIGNAL_IDS[cat.SPEED]: None},
            ),
            rec(2, "change", {BONNET: True}, 1500),
            rec(3, "verdict", {"service": "charging", "reasons": [{"code": "bonnet_open"}]}),
            rec(4, "snapshot", {0: 1, SOC: 80.0}, 61000),
        ),
        drops={"snapshot": 3, "change": 1},
        sent_at_ms=62000,
    )


def wire(batch_map: dict[int, Any]) -> bytes:
    return cbor2.dumps(batch_map)


def good_map() -> dict[int, Any]:
    return {
        1: VIN,
        2: 7,
        3: [{1: 1, 2: 0, 3: 0, 4: {0: 0, SOC: 50.0}}],
    }


def test_batch_round_trip() -> None:
    batch = sample_batch()
    data = encode_batch(batch)
    assert decode_batch(data) == batch


def test_batch_assembled_from_stored_records_is_the_deterministic_encoding() -> None:
    batch = sample_batch()
    stored = [encode_record(r) for r in batch.records]
    whole = {
        1: VIN,
        2: 7,
        3: [{1: r.seq, 2: r.t_ms, 3: r.code, 4: dict(r.body)} for r in batch.records],
        4: dict(batch.drops),
        5: 62000,
    }
    assert encode_batch(batch, stored) == cbor2.dumps(whole, canonical=True)


def test_floats_take_their_shortest_exact_form() -> None:
    assert len(dumps(310.0)) == 3
    assert len(dumps(80.5)) == 3
    assert len(dumps(0.1)) == 9
    assert cbor2.loads(dumps(0.1)) == 0.1


def test_delta_snapshot_resolves_against_its_base() -> None:
    base = rec(1, "snapshot", {0: 0, SOC: 80.5, BONNET: False})
    delta = rec(9, "snapshot", {0: 1, SOC: 79.0})
    full = resolve_snapshot(delta, resolve_snapshot(base, None))
    assert full == {SOC: 79.0, BONNET: False}
    with pytest.raises(ValueError, match="base needed"):
        resolve_snapshot(delta, None)


def test_ack_downlink_status_round_trips() -> None:
    ack = AckMessage(vin=VIN, epoch=3, seq=12)
    assert decode_ack(encode_ack(ack)) == ack
    down = DownlinkMessage(
        vin=VIN,
        command_id="c-1",
        counter=5,
        issued_at=1_700_000_000,
        expires_at=1_700_000_300,
        name="set_departure",
        argument="06:30",
    )
    assert decode_downlink(encode_downlink(down)) == down
    status = StatusMessage(
        vin=VIN, command_id="c-1", counter=5, outcome="refused", reason="expired", t_ms=9
    )
    assert decode_status(encode_status(status)) == status
    assert cbor2.loads(encode_ack(ack)) == {1: VIN, 2: 3, 3: 12}


def test_unknown_command_names_still_decode() -> None:
    down = DownlinkMessage(
        vin=VIN, command_id="c", counter=1, issued_at=0, expires_at=1, name="self_destruct"
    )
    assert decode_downlink(encode_downlink(down)).name == "self_destruct"


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda m: m.__setitem__(2, True), "batch.epoch"),
        (lambda m: m.__setitem__(2, -1), "batch.epoch"),
        (lambda m: m.__setitem__(1, "WDB9066331S12345I"), "batch.vin"),
        (lambda m: m.pop(1), "batch.vin: missing"),
        (lambda m: m.__setitem__(9, 1), "unknown key 9"),
        (lambda m: m.__setitem__(3, []), "batch.records"),
        (lambda m: m[3][0].__setitem__(1, False), "batch.records[0].seq"),
        (lambda m: m[3][0].__setitem__(3, 8), "batch.records[0].kind"),
        (lambda m: m[3][0][4].__setitem__(SOC, 50), "batch.records[0].body[14]"),
        (lambda m: m[3][0][4].__setitem__(SOC, True), "batch.records[0].body[14]"),
        (lambda m: m[3][0][4].__setitem__(GEAR, "X"), f"batch.records[0].body[{GEAR}]"),
        (lambda m: m[3][0][4].__setitem__(BONNET, 1), f"batch.records[0].body[{BONNET}]"),
        (lambda m: m[3][0][4].__setitem__(999, 1.0), "unknown signal id 999"),
        (lambda m: m[3][0][4].pop(0), "base_seq): missing"),
        (lambda m: m[3][0].__setitem__(3, 1), "a change body has no base_seq"),
        (lambda m: m[3][0].__setitem__(4, [1]), "batch.records[0].body"),
        (lambda m: m[3][0].update({3: 2, 4: {1: "x"}}), "batch.records[0].body key"),
        (lambda m: m.__setitem__(4, {"snapshot": True}), "batch.drops['snapshot']"),
        (lambda m: m.__setitem__(4, {1: 2}), "batch.drops key"),
        (lambda m: m.__setitem__(5, 1.5), "batch.sent_at"),
        (lambda m: m[3].append(dict(m[3][0])), "not in order"),
    ],
)
def test_batch_decode_refuses_naming_the_field(mutate: Any, field: str) -> None:
    m = good_map()
    mutate(m)
    with pytest.raises(DecodeError) as info:
        decode_batch(wire(m))
    assert field in str(info.value)


def test_batch_decode_refuses_tags_indefinite_lengths_duplicates_and_trailing_bytes() -> None:
    good = wire(good_map())
    decode_batch(good)
    tagged = cbor2.dumps(cbor2.CBORTag(18, good_map()))
    indefinite = b"\xbf" + good[1:] + b"\xff"
    duplicate = b"\xa4" + good[1:] + b"\x02\x07"
    for data in (tagged, indefinite, duplicate, good + b"\x00", good[:-1], b""):
        with pytest.raises(DecodeError):
            decode_batch(data)


def test_batch_decode_bounds_size() -> None:
    big = good_map()
    big[3] = [{1: i + 1, 2: 0, 3: 4, 4: {"pad": "x" * 60}} for i in range(2000)]
    data = wire(big)
    with pytest.raises(DecodeError, match="exceeds"):
        decode_batch(data)
    assert len(decode_batch(data, max_size=len(data)).records) == 2000


@pytest.mark.parametrize(
    ("decoder", "message", "field"),
    [
        (decode_ack, {1: VIN, 2: 1, 3: True}, "ack.seq"),
        (decode_ack, {1: VIN, 2: 1}, "ack.seq: missing"),
        (decode_ack, [VIN, 1, 2], "ack: expected a map"),
        (decode_downlink, {1: VIN, 2: "c", 3: 1, 4: 10, 5: 5, 6: "lock"}, "expires_at 5"),
        (decode_downlink, {1: VIN, 2: "", 3: 1, 4: 1, 5: 5, 6: "lock"}, "command_id"),
        (decode_downlink, {1: VIN, 2: "c", 3: 1.0, 4: 1, 5: 5, 6: "lock"}, "downlink.counter"),
        (decode_downlink, {1: VIN, 2: "c", 3: 1, 4: 1, 5: 5, 6: "x" * 65}, "downlink.name"),
        (decode_downlink, {1: VIN, 2: "c", 3: 1, 4: 1, 5: 5, 6: "lock", 7: 6}, "argument"),
        (decode_status, {1: VIN, 2: "c", 3: 1, 4: "maybe", 6: 0}, "outcome"),
        (decode_status, {1: VIN, 2: "c", 3: 1, 4: "refused", 6: 0}, "names its reason"),
    ],
)
def test_small_messages_refuse_naming_the_field(decoder: Any, message: Any, field: str) -> None:
    with pytest.raises(DecodeError) as info:
        decoder(cbor2.dumps(message))
    assert field in str(info.value)


def test_record_and_batch_construction_checks() -> None:
    with pytest.raises(ValueError, match="seq"):
        rec(0, "change", {})
    with pytest.raises(ValueError, match="kind"):
        rec(1, "rumour", {})
    with pytest.raises(ValueError, match="not of"):
        BatchMessage(vin=VIN, epoch=8, records=(rec(1, "change", {}),))
    with pytest.raises(ValueError, match="at least one"):
        BatchMessage(vin=VIN, epoch=7, records=())


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_any_bytes_decode_or_raise_decode_error(data: bytes) -> None:
    for decoder in (decode_batch, decode_ack, decode_downlink, decode_status):
        with contextlib.suppress(DecodeError):
            decoder(data)


_values = st.recursive(
    st.none() | st.booleans() | st.integers(0, 2**40) | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.integers(0, 40), inner, max_size=3)
    ),
    max_leaves=8,
)


@settings(max_examples=150, deadline=None)
@given(st.dictionaries(st.integers(0, 8), _values, max_size=6))
def test_structured_junk_decodes_or_raises_decode_error(junk: dict[int, Any]) -> None:
    data = cbor2.dumps(junk)
    for decoder in (decode_batch, decode_ack, decode_downlink, decode_status):
        with contextlib.suppress(DecodeError):
            decoder(data)
