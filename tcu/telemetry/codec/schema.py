"""The wire schema: uplink batch, ack, downlink and status as compact CBOR maps.

Theory of operation. Every message is a CBOR map with small unsigned-integer keys
(``docs/telemetry.md`` gives the CDDL). Encoding is deterministic (RFC 8949 core
deterministic encoding: sorted keys, shortest form, so a float such as 310.0 takes three
bytes). Decoding goes through ``cbor_strict.loads_strict`` (bounded size, depth and item
count, no tags, no indefinite lengths, no duplicate keys) and then checks every field:
its presence, its type (a bool is never an int), its range, and that no unknown key is
present. The first problem raises ``DecodeError`` naming the field, e.g.
``batch.records[2].body[17]``. Decoders are pure: bytes in, frozen dataclasses out, so
the backend uses the same functions.

Snapshots travel as deltas: body key 0 holds ``base_seq``, 0 for a full snapshot, else the
seq of an acknowledged snapshot of the same epoch; the other keys list only the signals
whose value differs from that base. ``resolve_snapshot`` turns a delta back into the full
picture given the base's values.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Final, TypeVar

import cbor2

from tcu.errors import DecodeError
from tcu.telemetry.codec.cbor_strict import (
    loads_strict,
    require_array,
    require_int,
    require_map,
    require_str,
)
from tcu.telemetry.records import (
    BASE_SEQ,
    KIND_NAMES,
    SIGNAL_KINDS,
    Record,
    check_signal_value,
    is_vin,
)
from tcu.vehicle.catalogue import COMMAND_NAMES, Value

__all__ = [
    "DOWNLINK_NAMES",
    "MAX_BATCH_BYTES",
    "OUTCOMES",
    "REFUSAL_REASONS",
    "AckMessage",
    "BatchMessage",
    "DownlinkMessage",
    "StatusMessage",
    "decode_ack",
    "decode_batch",
    "decode_downlink",
    "decode_record",
    "decode_status",
    "dumps",
    "encode_ack",
    "encode_batch",
    "encode_downlink",
    "encode_record",
    "encode_status",
    "resolve_snapshot",
]

MAX_BATCH_BYTES: Final = 60 * 1024
MAX_SMALL_BYTES: Final = 4 * 1024
MAX_RECORDS: Final = 4096
MAX_DEPTH: Final = 8
MAX_TEXT: Final = 64
MAX_DROP_KINDS: Final = 32
UINT_MAX: Final = 2**64 - 1

DOWNLINK_NAMES: Final = ("activate", "deactivate", *COMMAND_NAMES)
OUTCOMES: Final = ("accepted", "refused", "completed", "failed")
REFUSAL_REASONS: Final = (
    "bad_signature",
    "wrong_vin",
    "expired",
    "replayed",
    "unknown_command",
    "malformed",
)


def dumps(obj: Any) -> bytes:
    """Deterministic CBOR (sorted keys, shortest integers and floats, definite lengths)."""
    return cbor2.dumps(obj, canonical=True)


def _check_uint(value: int, name: str, minimum: int = 0) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not minimum <= value <= UINT_MAX:
        raise ValueError(f"{name} must be an unsigned integer >= {minimum}, got {value!r}")


def _check_text(value: str, name: str, *, allow_empty: bool = False) -> None:
    if not isinstance(value, str) or len(value) > MAX_TEXT or not (value or allow_empty):
        raise ValueError(f"{name} must be text of {0 if allow_empty else 1} to {MAX_TEXT} chars")


def _check_vin(vin: str) -> None:
    if not is_vin(vin):
        raise ValueError(f"vin {vin!r} is not a 17-character ISO 3779 VIN")


# --- messages ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class BatchMessage:
    """Records of one vehicle and epoch in production order, with the drop counters."""

    vin: str
    epoch: int
    records: tuple[Record, ...]
    drops: Mapping[str, int] = field(default_factory=dict)
    sent_at_ms: int | None = None
    prev: int | None = None

    def __post_init__(self) -> None:
        _check_vin(self.vin)
        _check_uint(self.epoch, "epoch")
        if not self.records:
            raise ValueError("a batch holds at least one record")
        if len(self.records) > MAX_RECORDS:
            raise ValueError(f"a batch holds at most {MAX_RECORDS} records")
        previous = 0
        for record in self.records:
            if record.vin != self.vin or record.epoch != self.epoch:
                raise ValueError(f"record {record.seq} is not of {self.vin} epoch {self.epoch}")
            if record.seq <= previous:
                raise ValueError(f"record seq {record.seq} after {previous}: not in order")
            previous = record.seq
        if len(self.drops) > MAX_DROP_KINDS:
            raise ValueError(f"at most {MAX_DROP_KINDS} drop counters")
        for kind, count in self.drops.items():
            _check_text(kind, "drop counter name")
            _check_uint(count, f"drop counter {kind!r}")
        if self.sent_at_ms is not None:
            _check_uint(self.sent_at_ms, "sent_at_ms")
        if self.prev is not None:
            _check_uint(self.prev, "prev")
            if self.prev >= self.records[0].seq:
                raise ValueError(f"prev {self.prev} is not before record {self.records[0].seq}")
        object.__setattr__(self, "drops", MappingProxyType(dict(self.drops)))


@dataclass(frozen=True, slots=True, kw_only=True)
class AckMessage:
    """The backend stores every record of ``epoch`` up to ``seq`` (contiguous)."""

    vin: str
    epoch: int
    seq: int

    def __post_init__(self) -> None:
        _check_vin(self.vin)
        _check_uint(self.epoch, "epoch")
        _check_uint(self.seq, "seq")


@dataclass(frozen=True, slots=True, kw_only=True)
class DownlinkMessage:
    """A command from the backend. ``name`` may be unknown: that is the receiver's verdict."""

    vin: str
    command_id: str
    counter: int
    issued_at: int
    expires_at: int
    name: str
    argument: str | None = None

    def __post_init__(self) -> None:
        _check_vin(self.vin)
        _check_text(self.command_id, "command_id")
        _check_uint(self.counter, "counter")
        _check_uint(self.issued_at, "issued_at")
        _check_uint(self.expires_at, "expires_at")
        if self.expires_at < self.issued_at:
            raise ValueError(f"expires_at {self.expires_at} is before issued_at {self.issued_at}")
        _check_text(self.name, "name")
        if self.argument is not None:
            _check_text(self.argument, "argument", allow_empty=True)


@dataclass(frozen=True, slots=True, kw_only=True)
class StatusMessage:
    """The TCU's answer to a downlink: accepted, refused (with a reason), completed, failed."""

    vin: str
    command_id: str
    counter: int
    outcome: str
    t_ms: int
    reason: str | None = None

    def __post_init__(self) -> None:
        _check_vin(self.vin)
        _check_text(self.command_id, "command_id", allow_empty=True)
        _check_uint(self.counter, "counter")
        if self.outcome not in OUTCOMES:
            raise ValueError(f"outcome {self.outcome!r} is not one of {', '.join(OUTCOMES)}")
        _check_uint(self.t_ms, "t_ms")
        if self.reason is not None:
            _check_text(self.reason, "reason")
        if self.outcome == "refused" and self.reason is None:
            raise ValueError("a refusal names its reason")


# --- encoding ------------------------------------------------------------------------------


def record_map(record: Record) -> dict[int, Any]:
    return {1: record.seq, 2: record.t_ms, 3: record.code, 4: dict(record.body)}


def encode_record(record: Record) -> bytes:
    """One record's wire encoding (the outbox keeps these bytes)."""
    return dumps(record_map(record))


def encode_batch(batch: BatchMessage, encoded_records: list[bytes] | None = None) -> bytes:
    """The batch payload; `encoded_records` (from `encode_record`) saves re-encoding."""
    if encoded_records is None:
        encoded_records = [encode_record(r) for r in batch.records]
    elif len(encoded_records) != len(batch.records):
        raise ValueError("one encoded record per record")
    head: dict[int, Any] = {1: batch.vin, 2: batch.epoch}
    tail: dict[int, Any] = {}
    if batch.drops:
        tail[4] = dict(batch.drops)
    if batch.sent_at_ms is not None:
        tail[5] = batch.sent_at_ms
    if batch.prev is not None:
        tail[6] = batch.prev
    parts = [
        _map_header(len(head) + 1 + len(tail)),
        dumps(head)[1:],
        b"\x03",
        _array_header(len(encoded_records)),
        *encoded_records,
        dumps(tail)[1:],
    ]
    return b"".join(parts)


def _head(major: int, n: int) -> bytes:
    if n < 24:
        return bytes([major << 5 | n])
    for info, width in ((24, 1), (25, 2), (26, 4), (27, 8)):
        if n < 1 << (8 * width):
            return bytes([major << 5 | info]) + n.to_bytes(width, "big")
    raise ValueError(f"length {n} does not fit CBOR")


def _map_header(n: int) -> bytes:
    return _head(5, n)


def _array_header(n: int) -> bytes:
    return _head(4, n)


def encode_ack(ack: AckMessage) -> bytes:
    return dumps({1: ack.vin, 2: ack.epoch, 3: ack.seq})


def encode_downlink(message: DownlinkMessage) -> bytes:
    body: dict[int, Any] = {
        1: message.vin,
        2: message.command_id,
        3: message.counter,
        4: message.issued_at,
        5: message.expires_at,
        6: message.name,
    }
    if message.argument is not None:
        body[7] = message.argument
    return dumps(body)


def encode_status(status: StatusMessage) -> bytes:
    body: dict[int, Any] = {
        1: status.vin,
        2: status.command_id,
        3: status.counter,
        4: status.outcome,
        6: status.t_ms,
    }
    if status.reason is not None:
        body[5] = status.reason
    return dumps(body)


# --- decoding ------------------------------------------------------------------------------

T = TypeVar("T")


class _Fields:
    """A decoded map's fields, taken one by one, so a leftover key can be refused."""

    def __init__(self, value: object, where: str, names: Mapping[int, str]) -> None:
        self.map = require_map(value, where)
        self.where = where
        self.names = names
        for key in self.map:
            if isinstance(key, bool) or not isinstance(key, int) or key not in names:
                raise DecodeError(f"{where}: unknown key {key!r}")

    def name(self, key: int) -> str:
        return f"{self.where}.{self.names[key]}"

    def take(self, key: int, check: Callable[[object, str], T]) -> T:
        if key not in self.map:
            raise DecodeError(f"{self.name(key)}: missing")
        return check(self.map[key], self.name(key))

    def maybe(self, key: int, check: Callable[[object, str], T]) -> T | None:
        if key not in self.map:
            return None
        return check(self.map[key], self.name(key))


def _uint(value: object, where: str) -> int:
    return require_int(value, where, minimum=0, maximum=UINT_MAX)


def _text(value: object, where: str) -> str:
    return require_str(value, where, max_len=MAX_TEXT)


def _vin(value: object, where: str) -> str:
    vin = require_str(value, where, max_len=MAX_TEXT)
    if not is_vin(vin):
        raise DecodeError(f"{where}: {vin!r} is not a 17-character ISO 3779 VIN")
    return vin


def _load(data: bytes, what: str, max_size: int) -> object:
    try:
        return loads_strict(
            data, max_size=max_size, max_depth=MAX_DEPTH, max_items=max_size, allowed_tags=()
        )
    except DecodeError as exc:
        raise DecodeError(f"{what}: {exc}") from None


def _build(factory: Callable[..., T], where: str, **kwargs: Any) -> T:
    try:
        return factory(**kwargs)
    except (ValueError, TypeError) as exc:
        raise DecodeError(f"{where}: {exc}") from None


_BATCH_FIELDS: Final = {
    1: "vin",
    2: "epoch",
    3: "records",
    4: "drops",
    5: "sent_at",
    6: "prev",
}
_RECORD_FIELDS: Final = {1: "seq", 2: "t", 3: "kind", 4: "body"}
_ACK_FIELDS: Final = {1: "vin", 2: "epoch", 3: "seq"}
_DOWNLINK_FIELDS: Final = {
    1: "vin",
    2: "command_id",
    3: "counter",
    4: "issued_at",
    5: "expires_at",
    6: "name",
    7: "argument",
}
_STATUS_FIELDS: Final = {1: "vin", 2: "command_id", 3: "counter", 4: "outcome", 5: "reason", 6: "t"}


def decode_batch(data: bytes, *, max_size: int = MAX_BATCH_BYTES) -> BatchMessage:
    """An uplink batch payload -> `BatchMessage`; `DecodeError` names the first bad field."""
    fields = _Fields(_load(data, "batch", max_size), "batch", _BATCH_FIELDS)
    vin = fields.take(1, _vin)
    epoch = fields.take(2, _uint)
    items = fields.take(3, require_array)
    if not 0 < len(items) <= MAX_RECORDS:
        raise DecodeError(f"batch.records: expected 1 to {MAX_RECORDS} records, got {len(items)}")
    records = tuple(
        _decode_record(item, f"batch.records[{i}]", vin, epoch) for i, item in enumerate(items)
    )
    drops = fields.maybe(4, _drops) or {}
    when = fields.maybe(5, _uint)
    prev = fields.maybe(6, _uint)
    return _build(
        BatchMessage,
        "batch",
        vin=vin,
        epoch=epoch,
        records=records,
        drops=drops,
        sent_at_ms=when,
        prev=prev,
    )


def _drops(value: object, where: str) -> dict[str, int]:
    counters = require_map(value, where)
    if len(counters) > MAX_DROP_KINDS:
        raise DecodeError(f"{where}: more than {MAX_DROP_KINDS} counters")
    out = {}
    for key, count in counters.items():
        name = _text(key, f"{where} key")
        out[name] = _uint(count, f"{where}[{name!r}]")
    return out


def decode_record(data: bytes, *, vin: str, epoch: int) -> Record:
    """One record from its `encode_record` bytes (as the outbox keeps them)."""
    return _decode_record(_load(data, "record", MAX_BATCH_BYTES), "record", vin, epoch)


def _decode_record(value: object, where: str, vin: str, epoch: int) -> Record:
    fields = _Fields(value, where, _RECORD_FIELDS)
    seq = fields.take(1, _uint)
    t_ms = fields.take(2, _uint)
    code = fields.take(3, _uint)
    kind = KIND_NAMES.get(code)
    if kind is None:
        raise DecodeError(f"{where}.kind: unknown record kind {code}")
    body = fields.take(4, require_map)
    if kind in SIGNAL_KINDS:
        _check_signal_body(body, kind, f"{where}.body")
    else:
        for key in body:
            require_str(key, f"{where}.body key", max_len=MAX_TEXT)
    return _build(Record, where, vin=vin, epoch=epoch, seq=seq, t_ms=t_ms, kind=kind, body=body)


def _check_signal_body(body: Mapping[Any, Any], kind: str, where: str) -> None:
    for key, value in body.items():
        signal_id = require_int(key, f"{where} key", minimum=0, maximum=UINT_MAX)
        if signal_id == BASE_SEQ:
            if kind != "snapshot":
                raise DecodeError(f"{where}[0]: a {kind} body has no base_seq")
            _uint(value, f"{where}[0] (base_seq)")
            continue
        try:
            check_signal_value(signal_id, value)
        except ValueError as exc:
            raise DecodeError(f"{where}[{signal_id}]: {exc}") from None
    if kind == "snapshot" and BASE_SEQ not in body:
        raise DecodeError(f"{where}[0] (base_seq): missing")


def decode_ack(data: bytes) -> AckMessage:
    fields = _Fields(_load(data, "ack", MAX_SMALL_BYTES), "ack", _ACK_FIELDS)
    return _build(
        AckMessage,
        "ack",
        vin=fields.take(1, _vin),
        epoch=fields.take(2, _uint),
        seq=fields.take(3, _uint),
    )


def decode_downlink(data: bytes) -> DownlinkMessage:
    fields = _Fields(_load(data, "downlink", MAX_SMALL_BYTES), "downlink", _DOWNLINK_FIELDS)
    return _build(
        DownlinkMessage,
        "downlink",
        vin=fields.take(1, _vin),
        command_id=fields.take(2, _text),
        counter=fields.take(3, _uint),
        issued_at=fields.take(4, _uint),
        expires_at=fields.take(5, _uint),
        name=fields.take(6, _text),
        argument=fields.maybe(7, _text),
    )


def decode_status(data: bytes) -> StatusMessage:
    fields = _Fields(_load(data, "status", MAX_SMALL_BYTES), "status", _STATUS_FIELDS)
    return _build(
        StatusMessage,
        "status",
        vin=fields.take(1, _vin),
        command_id=fields.take(2, _text),
        counter=fields.take(3, _uint),
        outcome=fields.take(4, _text),
        reason=fields.maybe(5, _text),
        t_ms=fields.take(6, _uint),
    )


def resolve_snapshot(
    record: Record, base: Mapping[int, Value | None] | None
) -> dict[int, Value | None]:
    """A snapshot's full signal values (id -> value), given its base's when it is a delta."""
    if record.kind != "snapshot":
        raise ValueError(f"a {record.kind} record is not a snapshot")
    values = {k: v for k, v in record.body.items() if k != BASE_SEQ}
    if record.base_seq == 0:
        return values
    if base is None:
        raise ValueError(f"snapshot {record.seq} is a delta against {record.base_seq}: base needed")
    return {**base, **values}
