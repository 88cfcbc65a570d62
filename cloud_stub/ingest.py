"""Ingest: from (topic, payload) to stored records and signed acks, without I/O of its own.

Theory of operation: `Ingest.receive` takes one MQTT message and returns what should happen
next: `Publish` items (a signed ack to send, QoS 1) or a `Refused` item naming the reason.
A message walks these gates in order and stops at the first one that fails:

1. size: the payload is capped before any decoding ("oversize");
2. topic: ``{prefix}/{vin}/telemetry`` or ``{prefix}/{vin}/status`` with a well-formed VIN
   ("bad_topic");
3. registry: the topic's VIN must be registered ("unknown_vin");
4. COSE_Sign1, decoded strictly (size, depth, definite lengths, no duplicate keys): the kid
   must be the one registered for that VIN and the signature must verify with its key
   ("malformed_cose", "unsupported_alg", "wrong_alg", "wrong_kid", "bad_signature");
5. payload, decoded strictly against the wire schema ("malformed_payload");
6. the payload's VIN must be the topic's VIN ("vin_mismatch");
7. telemetry only: the vehicle's service must be active ("inactive"). Status messages (command
   results) are accepted from inactive vehicles too: they report on deactivation.

A message that passes gate 4 was signed by the vehicle: it has connected and subscribed, so
the optional `Mailbox` releases the downlinks that waited for it (their publications come
back with the other replies).

A status is filed in a command's history (``Store.statuses``) only when it names a command
the vehicle verified: never a refusal for ``bad_signature``, ``malformed`` or ``wrong_vin``
(the vehicle could not trust that message's id and counter), never a refusal of a command
whose history already holds an answer (a replay of old bytes cannot write into it), and,
with a mailbox, a refusal only of an id and counter this backend issued to that VIN.
Anything else is a downlink refusal (``Store.downlink_refusals``), counted, keeping what
the vehicle claimed.

A telemetry batch that passes is stored (each (vin, epoch, seq) once) and answered with a
signed ack carrying the highest contiguous seq of that (vin, epoch) - also when every record
was a duplicate, so a TCU whose ack was lost learns where it stands. Every refusal is counted
by reason; the counters and totals are in `stats`.

`receive_many` takes the messages a worker has in hand at once: each walks the gates on its
own, then the batches that passed are stored in one transaction (`RecordStore.add_batches`,
group commit) and acknowledged in the order they came.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Final, Literal, Protocol, TypeAlias, cast, get_args

from cloud_stub.errors import IngestRefused
from cloud_stub.keys import BackendKey
from cloud_stub.registry import Registry, Vehicle
from cloud_stub.store import BatchResult, RecordStore
from tcu.errors import DecodeError
from tcu.telemetry.codec.cbor_strict import DEFAULT_MAX_SIZE
from tcu.telemetry.codec.cose import CoseError, VerifyKey, verify1
from tcu.telemetry.codec.schema import (
    AckMessage,
    BatchMessage,
    StatusMessage,
    decode_batch,
    decode_status,
    encode_ack,
)
from tcu.telemetry.records import is_vin

__all__ = [
    "DEFAULT_MAX_PAYLOAD",
    "DEFAULT_PREFIX",
    "REFUSAL_REASONS",
    "Ingest",
    "IngestStats",
    "Publish",
    "RefusalReason",
    "Refused",
    "Reply",
]

DEFAULT_PREFIX: Final = "vehicles"
DEFAULT_MAX_PAYLOAD: Final = DEFAULT_MAX_SIZE

RefusalReason: TypeAlias = Literal[
    "oversize",
    "bad_topic",
    "unknown_vin",
    "malformed_cose",
    "unsupported_alg",
    "wrong_alg",
    "wrong_kid",
    "bad_signature",
    "malformed_payload",
    "vin_mismatch",
    "inactive",
]
REFUSAL_REASONS: Final[tuple[str, ...]] = get_args(RefusalReason)

_COSE_REASONS: Final[dict[str, RefusalReason]] = {
    "malformed": "malformed_cose",
    "missing_payload": "malformed_cose",
    "unsupported_alg": "unsupported_alg",
    "alg_mismatch": "wrong_alg",
    "unknown_kid": "wrong_kid",
    "bad_signature": "bad_signature",
}
# refusals of a message the vehicle could not verify as its own: its id and counter are claims
_UNVERIFIED_REFUSALS: Final = frozenset({"bad_signature", "malformed", "wrong_vin"})
_KEY_CACHE_SIZE: Final = 1024
_SQLITE_INT_MAX: Final = 2**63 - 1


@dataclass(frozen=True, slots=True, kw_only=True)
class Publish:
    """A message the backend should publish."""

    topic: str
    payload: bytes
    qos: int = 1
    retain: bool = False

    def __post_init__(self) -> None:
        if not self.topic or any(c in self.topic for c in "+#\0"):
            raise ValueError(f"invalid publish topic {self.topic!r}")
        if self.qos not in (0, 1, 2):
            raise ValueError(f"invalid QoS {self.qos!r}")


@dataclass(frozen=True, slots=True, kw_only=True)
class Refused:
    """A message refused, with a reason from `REFUSAL_REASONS` and a human detail."""

    topic: str
    reason: RefusalReason
    detail: str

    def __post_init__(self) -> None:
        if self.reason not in REFUSAL_REASONS:
            raise ValueError(f"unknown refusal reason {self.reason!r}")


Reply: TypeAlias = Publish | Refused


class Downlinks(Protocol):
    """The downlinks waiting for vehicles (``cloud_stub.mailbox.Mailbox``), as ingest uses them."""

    def heard(self, vin: str, now: float) -> list[Publish]:
        """A verified message from ``vin``: what waited for it goes out now."""
        ...

    def answered(self, vin: str, command_id: str, counter: int) -> tuple[bool, list[Publish]]:
        """A verified status names a downlink: was it ours, and what to clear."""
        ...


@dataclass(frozen=True, slots=True, kw_only=True)
class IngestStats:
    """Counters since this `Ingest` was created."""

    messages: int
    batches: int
    records_stored: int
    duplicates: int
    conflicts: int
    statuses: int
    status_duplicates: int
    downlink_refusals: int
    acks: int
    refused: Mapping[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "refused", MappingProxyType(dict(self.refused)))

    @property
    def refused_total(self) -> int:
        return sum(self.refused.values())

    def as_dict(self) -> dict[str, Any]:
        return {
            "messages": self.messages,
            "batches": self.batches,
            "records_stored": self.records_stored,
            "duplicates": self.duplicates,
            "conflicts": self.conflicts,
            "statuses": self.statuses,
            "status_duplicates": self.status_duplicates,
            "downlink_refusals": self.downlink_refusals,
            "acks": self.acks,
            "refused": dict(sorted(self.refused.items())),
        }


class Ingest:
    """Verify, deduplicate and store vehicle messages; answer batches with signed acks."""

    def __init__(
        self,
        registry: Registry,
        store: RecordStore,
        *,
        backend_key: BackendKey,
        prefix: str = DEFAULT_PREFIX,
        max_payload: int = DEFAULT_MAX_PAYLOAD,
        mailbox: Downlinks | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not prefix or prefix.startswith("/") or prefix.endswith("/") or "+" in prefix:
            raise ValueError(f"invalid topic prefix {prefix!r}")
        if max_payload <= 0:
            raise ValueError("max_payload must be positive")
        self._registry = registry
        self._store = store
        self._backend_key = backend_key
        self._prefix = prefix
        self._max_payload = max_payload
        self._mailbox = mailbox
        self._clock = clock
        self._keys: dict[bytes, VerifyKey] = {}
        self.refused: Counter[str] = Counter()
        self._totals: Counter[str] = Counter()

    @property
    def prefix(self) -> str:
        return self._prefix

    @property
    def subscriptions(self) -> tuple[str, str]:
        """The topic filters the backend subscribes to."""
        return f"{self._prefix}/+/telemetry", f"{self._prefix}/+/status"

    def receive(self, topic: str, payload: bytes) -> list[Reply]:
        """Process one message; returns the messages to publish, or a `Refused`."""
        return self.receive_many([(topic, payload)])[0]

    def receive_many(self, messages: Sequence[tuple[str, bytes]]) -> list[list[Reply]]:
        """Process messages in order, batches stored in one transaction; replies per message."""
        replies: list[list[Reply]] = []
        accepted: list[tuple[int, BatchMessage]] = []
        for topic, payload in messages:
            self._totals["messages"] += 1
            batch: BatchMessage | None = None
            try:
                outcome, batch = self._receive(topic, payload)
            except IngestRefused as refusal:
                reason = cast(RefusalReason, refusal.reason)
                self.refused[reason] += 1
                outcome = [Refused(topic=topic, reason=reason, detail=refusal.detail)]
            if batch is not None:
                accepted.append((len(replies), batch))
            replies.append(outcome)
        results = self._store.add_batches([batch for _, batch in accepted])
        for (index, batch), result in zip(accepted, results, strict=True):
            replies[index].append(self._ack(batch, result))
        return replies

    def stats(self) -> IngestStats:
        totals = self._totals
        return IngestStats(
            messages=totals["messages"],
            batches=totals["batches"],
            records_stored=totals["records_stored"],
            duplicates=totals["duplicates"],
            conflicts=totals["conflicts"],
            statuses=totals["statuses"],
            status_duplicates=totals["status_duplicates"],
            downlink_refusals=totals["downlink_refusals"],
            acks=totals["acks"],
            refused=self.refused,
        )

    def _receive(self, topic: str, payload: bytes) -> tuple[list[Reply], BatchMessage | None]:
        """The replies so far, and the batch to store (its ack comes after the group)."""
        if not isinstance(payload, bytes | bytearray):
            raise IngestRefused("malformed_cose", f"payload is {type(payload).__name__}")
        if len(payload) > self._max_payload:
            raise IngestRefused("oversize", f"{len(payload)} bytes > {self._max_payload}")
        vin, leaf = self._parse_topic(topic)
        vehicle = self._registry.find(vin)
        if vehicle is None:
            raise IngestRefused("unknown_vin", f"VIN {vin} is not registered")
        content = self._verify(bytes(payload), vehicle)
        released: list[Reply] = []
        if self._mailbox is not None:
            released.extend(self._mailbox.heard(vin, self._clock()))
        try:
            if leaf == "status":
                return released + self._status(vehicle, content), None
            return released, self._telemetry(vehicle, content)
        except IngestRefused as refusal:
            if not released:
                raise
            reason = cast(RefusalReason, refusal.reason)
            self.refused[reason] += 1
            return [*released, Refused(topic=topic, reason=reason, detail=refusal.detail)], None

    def _parse_topic(self, topic: str) -> tuple[str, str]:
        head = f"{self._prefix}/"
        parts = topic[len(head) :].split("/") if topic.startswith(head) else []
        if len(parts) != 2 or parts[1] not in ("telemetry", "status"):
            raise IngestRefused("bad_topic", f"not {head}VIN/telemetry or /status: {topic!r}")
        if not is_vin(parts[0]):
            raise IngestRefused("bad_topic", f"{parts[0]!r} is not a 17-character ISO 3779 VIN")
        return parts[0], parts[1]

    def _verify(self, message: bytes, vehicle: Vehicle) -> bytes:
        key = self._key(vehicle)

        def lookup(kid: bytes) -> VerifyKey | None:
            return key if kid == vehicle.kid else None

        try:
            return verify1(message, lookup, max_size=self._max_payload).payload
        except CoseError as exc:
            raise IngestRefused(_COSE_REASONS[exc.reason], str(exc)) from None

    def _key(self, vehicle: Vehicle) -> VerifyKey:
        key = self._keys.get(vehicle.public_key_pem)
        if key is None:
            if len(self._keys) >= _KEY_CACHE_SIZE:
                self._keys.clear()
            key = self._keys[vehicle.public_key_pem] = vehicle.public_key()
        return key

    def _telemetry(self, vehicle: Vehicle, content: bytes) -> BatchMessage:
        try:
            batch = decode_batch(content)
            _check_storable(batch.epoch, *(r.seq for r in batch.records))
            _check_storable(*(r.t_ms for r in batch.records), *batch.drops.values())
        except DecodeError as exc:
            raise IngestRefused("malformed_payload", str(exc)) from None
        if batch.vin != vehicle.vin:
            raise IngestRefused("vin_mismatch", f"payload VIN {batch.vin} on {vehicle.vin}'s topic")
        if not vehicle.active:
            raise IngestRefused("inactive", f"service of {vehicle.vin} is not active")
        return batch

    def _ack(self, batch: BatchMessage, result: BatchResult) -> Publish:
        self._totals.update(
            batches=1,
            records_stored=result.stored,
            duplicates=result.duplicates,
            conflicts=result.conflicts,
            acks=1,
        )
        ack = AckMessage(vin=batch.vin, epoch=batch.epoch, seq=result.acked)
        return Publish(
            topic=f"{self._prefix}/{batch.vin}/ack",
            payload=self._backend_key.sign(encode_ack(ack)),
        )

    def _status(self, vehicle: Vehicle, content: bytes) -> list[Reply]:
        try:
            status = decode_status(content)
            _check_storable(status.counter, status.t_ms)
        except DecodeError as exc:
            raise IngestRefused("malformed_payload", str(exc)) from None
        if status.vin != vehicle.vin:
            raise IngestRefused(
                "vin_mismatch", f"payload VIN {status.vin} on {vehicle.vin}'s topic"
            )
        out: list[Reply] = []
        if self._in_history(status, out):
            if self._store.add_status(status):
                self._totals["statuses"] += 1
            else:
                self._totals["status_duplicates"] += 1
        elif self._store.add_downlink_refusal(status):
            self._totals["downlink_refusals"] += 1
        else:
            self._totals["status_duplicates"] += 1
        return out

    def _in_history(self, status: StatusMessage, out: list[Reply]) -> bool:
        """Whether the status names a verified command (see the module docstring).

        Accepted, completed and failed come only from a command whose signature the vehicle
        verified; a refusal names one only for the reasons checked after the signature,
        as the first answer, and (with a mailbox) for a command this backend issued.
        """
        refused = status.outcome == "refused"
        if not status.command_id or (refused and status.reason in _UNVERIFIED_REFUSALS):
            return False
        if refused and self._store.answered_otherwise(status):
            return False
        if self._mailbox is None:
            return True
        issued, clear = self._mailbox.answered(status.vin, status.command_id, status.counter)
        out.extend(clear)
        return issued or not refused


def _check_storable(*numbers: int) -> None:
    """The wire allows 64-bit unsigned numbers; SQLite stores 63 bits."""
    for number in numbers:
        if number > _SQLITE_INT_MAX:
            raise DecodeError(f"{number} is larger than the store's limit {_SQLITE_INT_MAX}")
