from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import cbor2
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cloud_stub.errors import CloudError
from cloud_stub.ingest import DEFAULT_MAX_PAYLOAD, REFUSAL_REASONS, Ingest, Publish, Refused, Reply
from cloud_stub.keys import BackendKey, load_backend_key
from cloud_stub.registry import Registry
from cloud_stub.store import Store
from cloud_stub.testing import SOC_SIGNAL, VehicleDouble
from tcu.telemetry.codec.cose import CoseError, generate_key, public_key_to_pem, sig_structure
from tcu.telemetry.codec.schema import AckMessage

VIN = "WV1ZZZ7HZLH000001"
OTHER_VIN = "WV1ZZZ7HZLH000002"


@pytest.fixture
def backend_key(tmp_path: Path) -> BackendKey:
    return load_backend_key(tmp_path / "data")


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[Registry]:
    with Registry(tmp_path / "registry.sqlite") as registry:
        yield registry


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store(tmp_path / "store.sqlite") as store:
        yield store


@pytest.fixture
def ingest(registry: Registry, store: Store, backend_key: BackendKey) -> Ingest:
    return Ingest(registry, store, backend_key=backend_key)


@pytest.fixture
def vehicle(registry: Registry) -> VehicleDouble:
    double = VehicleDouble(VIN)
    double.register(registry)
    return double


def ack_of(replies: list[Reply], backend_key: BackendKey) -> AckMessage:
    assert len(replies) == 1, replies
    (reply,) = replies
    assert isinstance(reply, Publish), reply
    assert reply.topic == f"vehicles/{VIN}/ack"
    assert reply.qos == 1
    return VehicleDouble.read_ack(reply.payload, backend_key.key.public_key())


def refusal_of(replies: list[Reply]) -> Refused:
    assert len(replies) == 1, replies
    (reply,) = replies
    assert isinstance(reply, Refused), reply
    return reply


# --- accepted ----------------------------------------------------------------------------


def test_signed_batch_is_stored_and_acknowledged(
    ingest: Ingest, store: Store, vehicle: VehicleDouble, backend_key: BackendKey
) -> None:
    replies = ingest.receive(vehicle.telemetry_topic, vehicle.batch(7, [1, 2, 3]))

    assert ack_of(replies, backend_key) == AckMessage(vin=VIN, epoch=7, seq=3)
    stored = store.records(VIN, 7)
    assert [r.seq for r in stored] == [1, 2, 3]
    assert stored[2].body == {SOC_SIGNAL: 3.0}
    assert stored[2].kind == 1
    stats = ingest.stats()
    assert (stats.batches, stats.records_stored, stats.acks, stats.refused_total) == (1, 3, 1, 0)


def test_ack_is_signed_by_the_backend_key_only(
    ingest: Ingest, vehicle: VehicleDouble, backend_key: BackendKey
) -> None:
    (reply,) = ingest.receive(vehicle.telemetry_topic, vehicle.batch(1, [1]))
    assert isinstance(reply, Publish)
    with pytest.raises(CoseError, match="signature"):
        VehicleDouble.read_ack(reply.payload, generate_key("EdDSA").public_key())


def test_duplicates_are_stored_once_and_counted(
    ingest: Ingest, store: Store, vehicle: VehicleDouble, backend_key: BackendKey
) -> None:
    message = vehicle.batch(1, [1, 2, 3])
    first = ingest.receive(vehicle.telemetry_topic, message)
    again = ingest.receive(vehicle.telemetry_topic, message)
    overlap = ingest.receive(vehicle.telemetry_topic, vehicle.batch(1, [2, 3, 4]))

    assert ack_of(first, backend_key).seq == 3
    assert ack_of(again, backend_key).seq == 3
    assert ack_of(overlap, backend_key).seq == 4
    assert store.count_records(VIN) == 4
    stats = ingest.stats()
    assert (stats.records_stored, stats.duplicates, stats.conflicts) == (4, 5, 0)
    (progress,) = store.progress()
    assert (progress.stored, progress.acked, progress.duplicates) == (4, 4, 5)


def test_a_reused_sequence_with_other_content_is_a_counted_conflict(
    ingest: Ingest, store: Store, vehicle: VehicleDouble
) -> None:
    ingest.receive(vehicle.telemetry_topic, vehicle.batch(1, [1]))
    other = vehicle.record(1, 1, body={SOC_SIGNAL: 55.5})
    payload = cbor2.dumps({1: VIN, 2: 1, 3: [{1: 1, 2: other.t_ms, 3: 1, 4: dict(other.body)}]})
    ingest.receive(vehicle.telemetry_topic, vehicle.sign(payload))

    assert ingest.stats().conflicts == 1
    assert store.records(VIN, 1)[0].body == {SOC_SIGNAL: 1.0}


def test_ack_is_the_highest_contiguous_sequence(
    ingest: Ingest, vehicle: VehicleDouble, backend_key: BackendKey
) -> None:
    def send(epoch: int, seqs: list[int]) -> int:
        replies = ingest.receive(vehicle.telemetry_topic, vehicle.batch(epoch, seqs))
        ack = ack_of(replies, backend_key)
        assert (ack.vin, ack.epoch) == (VIN, epoch)
        return ack.seq

    assert send(1, [2, 3]) == 0
    assert send(1, [1]) == 3
    assert send(1, [5, 6]) == 3
    assert send(1, [8]) == 3
    assert send(1, [4]) == 6
    assert send(1, [7]) == 8
    assert send(2, [1]) == 1
    assert send(1, [9]) == 9


def test_drop_counters_of_a_resent_batch_count_once(
    ingest: Ingest, store: Store, vehicle: VehicleDouble
) -> None:
    message = vehicle.batch(1, [1, 2], drops={"snapshot": 3, "change": 1})
    ingest.receive(vehicle.telemetry_topic, message)
    ingest.receive(vehicle.telemetry_topic, message)
    ingest.receive(vehicle.telemetry_topic, vehicle.batch(1, [3], drops={"snapshot": 2}))

    assert store.drops(VIN) == {"change": 1, "snapshot": 5}


def test_command_results_are_stored_once_even_from_an_inactive_vehicle(
    ingest: Ingest, store: Store, registry: Registry, vehicle: VehicleDouble
) -> None:
    registry.deactivate(VIN)
    message = vehicle.status("cmd-4", 4, "refused", reason="expired", t_ms=1500)

    assert ingest.receive(vehicle.status_topic, message) == []
    assert ingest.receive(vehicle.status_topic, message) == []

    (status,) = store.statuses(VIN)
    assert (status.command_id, status.counter, status.outcome, status.reason, status.t_ms) == (
        "cmd-4",
        4,
        "refused",
        "expired",
        1500,
    )
    stats = ingest.stats()
    assert (stats.statuses, stats.status_duplicates) == (1, 1)


# --- refused -----------------------------------------------------------------------------


def craft_sign1(
    payload: bytes | None,
    vehicle: VehicleDouble,
    *,
    protected: dict[int, Any] | None = None,
    unprotected: dict[int, Any] | None = None,
) -> bytes:
    """A COSE_Sign1 assembled by hand (Ed25519 over whatever headers are given)."""
    protected_bytes = cbor2.dumps({1: -8} if protected is None else protected)
    to_be_signed = sig_structure(protected=protected_bytes, payload=payload or b"")
    assert isinstance(vehicle.key, Ed25519PrivateKey)
    signature = vehicle.key.sign(to_be_signed)
    headers = {4: vehicle.kid} if unprotected is None else unprotected
    return cbor2.dumps(cbor2.CBORTag(18, [protected_bytes, headers, payload, signature]))


def record_map(seq: int = 1) -> dict[int, Any]:
    return {1: seq, 2: 1000, 3: 1, 4: {SOC_SIGNAL: 50.0}}


def head(major: int, value: int) -> bytes:
    """A CBOR head with an 8-byte argument."""
    return bytes([major << 5 | 27]) + value.to_bytes(8, "big")


MessageMaker = Callable[[VehicleDouble, Registry], tuple[str, bytes]]


def on_topic(make: Callable[[VehicleDouble], bytes]) -> MessageMaker:
    return lambda vehicle, registry: (vehicle.telemetry_topic, make(vehicle))


def unknown_vin(vehicle: VehicleDouble, registry: Registry) -> tuple[str, bytes]:
    stranger = VehicleDouble(OTHER_VIN)
    return stranger.telemetry_topic, stranger.batch(1, [1])


def inactive(vehicle: VehicleDouble, registry: Registry) -> tuple[str, bytes]:
    registry.deactivate(vehicle.vin)
    return vehicle.telemetry_topic, vehicle.batch(1, [1])


def other_key(vehicle: VehicleDouble, registry: Registry) -> tuple[str, bytes]:
    impostor = VehicleDouble(VIN, key=generate_key("EdDSA"))
    return vehicle.telemetry_topic, impostor.sign(impostor.batch_payload(1, [1]), kid=vehicle.kid)


def swapped_kid(vehicle: VehicleDouble, registry: Registry) -> tuple[str, bytes]:
    neighbour = VehicleDouble(OTHER_VIN)
    neighbour.register(registry)
    return vehicle.telemetry_topic, vehicle.sign(vehicle.batch_payload(1, [1]), kid=neighbour.kid)


def tampered(vehicle: VehicleDouble) -> bytes:
    payload = vehicle.batch_payload(1, [1, 2])
    message = bytearray(vehicle.sign(payload))
    message[bytes(message).index(payload) + len(payload) // 2] ^= 0x01
    return bytes(message)


def vin_mismatch(vehicle: VehicleDouble, registry: Registry) -> tuple[str, bytes]:
    neighbour = VehicleDouble(OTHER_VIN)
    neighbour.register(registry)
    wrong = VehicleDouble(OTHER_VIN, key=vehicle.key)
    return vehicle.telemetry_topic, wrong.batch(1, [1])


def signed(payload: bytes) -> Callable[[VehicleDouble], bytes]:
    return lambda vehicle: vehicle.sign(payload)


INDEFINITE_BATCH = (
    b"\xbf" + cbor2.dumps(1) + cbor2.dumps(VIN) + cbor2.dumps(2) + cbor2.dumps(1) + b"\xff"
)
DUPLICATE_KEY_BATCH = (
    b"\xa4"
    + cbor2.dumps(1)
    + cbor2.dumps(VIN)
    + cbor2.dumps(2)
    + cbor2.dumps(1)
    + cbor2.dumps(2)
    + cbor2.dumps(2)
    + cbor2.dumps(3)
    + cbor2.dumps([record_map()])
)

REFUSALS: list[Any] = [
    pytest.param(unknown_vin, "unknown_vin", id="unknown-vin"),
    pytest.param(inactive, "inactive", id="inactive-service"),
    pytest.param(other_key, "bad_signature", id="signed-by-another-key"),
    pytest.param(swapped_kid, "wrong_kid", id="swapped-kid"),
    pytest.param(on_topic(tampered), "bad_signature", id="tampered-byte"),
    pytest.param(vin_mismatch, "vin_mismatch", id="payload-vin-differs-from-topic"),
    pytest.param(
        on_topic(lambda v: craft_sign1(v.batch_payload(1, [1]), v, protected={1: -7})),
        "wrong_alg",
        id="es256-claimed-for-ed25519-key",
    ),
    pytest.param(
        on_topic(lambda v: craft_sign1(v.batch_payload(1, [1]), v, protected={1: -65535})),
        "unsupported_alg",
        id="unknown-alg",
    ),
    pytest.param(on_topic(lambda v: craft_sign1(None, v)), "malformed_cose", id="detached-payload"),
    pytest.param(on_topic(lambda v: bytes(range(256)) * 4), "malformed_cose", id="random-bytes"),
    pytest.param(on_topic(lambda v: v.batch(1, [1])[:-20]), "malformed_cose", id="truncated-cose"),
    pytest.param(
        on_topic(lambda v: b"\x81" * 10_000 + b"\x01"), "malformed_cose", id="deep-nesting"
    ),
    pytest.param(
        on_topic(lambda v: b"\xd2\x84" + head(2, 2**62) + b"\x00" * 16),
        "malformed_cose",
        id="bstr-declaring-2**62-bytes",
    ),
    pytest.param(
        on_topic(lambda v: b"\xd2\x84" + head(4, 2**62)), "malformed_cose", id="array-2**62"
    ),
    pytest.param(
        on_topic(lambda v: b"\xd2\x9f" + v.batch(1, [1])[2:] + b"\xff"),
        "malformed_cose",
        id="indefinite-cose-array",
    ),
    pytest.param(
        on_topic(signed(b"\x81" * 10_000 + b"\x01")), "malformed_payload", id="signed-deep-nesting"
    ),
    pytest.param(
        on_topic(signed(b"\xa1\x01" + head(3, 2**62))),
        "malformed_payload",
        id="signed-text-declaring-2**62-bytes",
    ),
    pytest.param(on_topic(signed(INDEFINITE_BATCH)), "malformed_payload", id="indefinite-map"),
    pytest.param(on_topic(signed(DUPLICATE_KEY_BATCH)), "malformed_payload", id="duplicate-keys"),
    pytest.param(
        on_topic(signed(cbor2.dumps({1: VIN, 2: True, 3: [record_map()]}))),
        "malformed_payload",
        id="bool-as-int-epoch",
    ),
    pytest.param(
        on_topic(signed(cbor2.dumps({1: VIN, 2: 1, 3: [{**record_map(), 1: True}]}))),
        "malformed_payload",
        id="bool-as-int-seq",
    ),
    pytest.param(
        on_topic(signed(cbor2.dumps({1: VIN, 2: 1, 3: [record_map(0)]}))),
        "malformed_payload",
        id="seq-zero",
    ),
    pytest.param(
        on_topic(signed(cbor2.dumps({1: VIN, 2: 2**64 - 1, 3: [record_map()]}))),
        "malformed_payload",
        id="epoch-beyond-the-store",
    ),
    pytest.param(
        on_topic(signed(cbor2.dumps({1: VIN, 2: 1, 3: [record_map()], 9: 0}))),
        "malformed_payload",
        id="unknown-key",
    ),
    pytest.param(
        on_topic(lambda v: b"\x00" * (DEFAULT_MAX_PAYLOAD + 1)), "oversize", id="oversize-payload"
    ),
    pytest.param(
        lambda v, r: (f"vehicles/{VIN}/telemetry/extra", v.batch(1, [1])),
        "bad_topic",
        id="topic-too-deep",
    ),
    pytest.param(
        lambda v, r: ("vehicles/not-a-vin/telemetry", v.batch(1, [1])),
        "bad_topic",
        id="topic-vin-malformed",
    ),
    pytest.param(
        lambda v, r: (f"fleet/{VIN}/telemetry", v.batch(1, [1])), "bad_topic", id="foreign-prefix"
    ),
]


@pytest.mark.parametrize(("make", "reason"), REFUSALS)
def test_refusals_are_counted_by_reason(
    ingest: Ingest,
    store: Store,
    registry: Registry,
    vehicle: VehicleDouble,
    make: MessageMaker,
    reason: str,
) -> None:
    topic, message = make(vehicle, registry)

    refusal = refusal_of(ingest.receive(topic, message))

    assert refusal.reason == reason, refusal.detail
    assert refusal.detail
    assert dict(ingest.stats().refused) == {reason: 1}
    assert store.count_records() == 0


def test_every_refusal_reason_is_exercised() -> None:
    exercised = {param.values[1] for param in REFUSALS}
    assert exercised == set(REFUSAL_REASONS)


def test_refused_status_messages_are_counted(ingest: Ingest, vehicle: VehicleDouble) -> None:
    bad_outcome = vehicle.sign(cbor2.dumps({1: VIN, 2: "c", 3: 1, 4: "maybe", 6: 0}))
    stranger = VehicleDouble(VIN, key=generate_key("EdDSA"))

    replies = [
        ingest.receive(vehicle.status_topic, bad_outcome),
        ingest.receive(vehicle.status_topic, stranger.status("c", 1, "accepted")),
    ]

    assert [refusal_of(r).reason for r in replies] == ["malformed_payload", "wrong_kid"]


def test_registered_key_change_takes_effect(
    ingest: Ingest, registry: Registry, vehicle: VehicleDouble, backend_key: BackendKey
) -> None:
    rotated = VehicleDouble(VIN)
    registry.register(VIN, public_key_to_pem(rotated.key), rotated.kid)

    old = refusal_of(ingest.receive(vehicle.telemetry_topic, vehicle.batch(1, [1])))
    new = ack_of(ingest.receive(rotated.telemetry_topic, rotated.batch(1, [1])), backend_key)

    assert old.reason == "wrong_kid"
    assert new.seq == 1


def test_ingest_refuses_a_bad_configuration(
    registry: Registry, store: Store, backend_key: BackendKey
) -> None:
    with pytest.raises(ValueError, match="prefix"):
        Ingest(registry, store, backend_key=backend_key, prefix="vehicles/+")
    with pytest.raises(CloudError, match="kid"):
        BackendKey(key=backend_key.key, kid=b"\x00" * 8)


# --- hostile input, generated ------------------------------------------------------------


class Fuzzed:
    """One ingest shared by every generated example, holding one stored record."""

    def __init__(self, directory: Path) -> None:
        self.registry = Registry(directory / "registry.sqlite")
        self.store = Store(directory / "store.sqlite")
        self.key = load_backend_key(directory / "data")
        self.ingest = Ingest(self.registry, self.store, backend_key=self.key)
        self.vehicle = VehicleDouble(VIN)
        self.vehicle.register(self.registry)
        self.valid = self.vehicle.batch(1, [1])
        self.valid_status = self.vehicle.status("cmd-1", 1, "completed", t_ms=5)
        assert isinstance(self.ingest.receive(self.vehicle.telemetry_topic, self.valid)[0], Publish)
        assert self.ingest.receive(self.vehicle.status_topic, self.valid_status) == []

    def check(self, topic: str, message: bytes) -> None:
        replies = self.ingest.receive(topic, message)
        assert len(replies) <= 1
        for reply in replies:
            if isinstance(reply, Publish):
                ack = VehicleDouble.read_ack(reply.payload, self.key.key.public_key())
                assert ack == AckMessage(vin=VIN, epoch=1, seq=1)
            else:
                assert reply.reason in REFUSAL_REASONS
        assert self.store.count_records() == 1
        assert len(self.store.statuses(VIN)) == 1


@pytest.fixture(scope="module")
def fuzzed() -> Iterator[Fuzzed]:
    with tempfile.TemporaryDirectory() as directory:
        target = Fuzzed(Path(directory))
        yield target
        target.store.close()
        target.registry.close()


MUTATION = st.tuples(
    st.sampled_from(["flip", "insert", "delete", "truncate", "replace"]),
    st.integers(min_value=0, max_value=10_000),
    st.integers(min_value=1, max_value=255),
)


def mutate(message: bytes, mutations: list[tuple[str, int, int]]) -> bytes:
    data = bytearray(message)
    for operation, where, value in mutations:
        index = where % max(len(data), 1)
        if operation == "flip" and data:
            data[index] ^= value
        elif operation == "insert":
            data.insert(index, value)
        elif operation == "delete" and data:
            del data[index : index + 1 + value % 8]
        elif operation == "truncate":
            del data[index:]
        elif operation == "replace" and data:
            data[index] = value
    return bytes(data)


SLOW = settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@SLOW
@given(message=st.binary(max_size=2048))
def test_random_bytes_are_refused(fuzzed: Fuzzed, message: bytes) -> None:
    fuzzed.check(fuzzed.vehicle.telemetry_topic, message)
    fuzzed.check(fuzzed.vehicle.status_topic, message)


@SLOW
@given(mutations=st.lists(MUTATION, min_size=1, max_size=4), status=st.booleans())
def test_mutated_messages_are_refused_or_harmless(
    fuzzed: Fuzzed, mutations: list[tuple[str, int, int]], status: bool
) -> None:
    if status:
        fuzzed.check(fuzzed.vehicle.status_topic, mutate(fuzzed.valid_status, mutations))
    else:
        fuzzed.check(fuzzed.vehicle.telemetry_topic, mutate(fuzzed.valid, mutations))


@SLOW
@given(
    payload=st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats() | st.text() | st.binary(),
        lambda children: (
            st.lists(children, max_size=4)
            | st.dictionaries(st.integers(0, 8) | st.text(max_size=3), children, max_size=4)
        ),
        max_leaves=30,
    )
)
def test_signed_garbage_payloads_are_refused(fuzzed: Fuzzed, payload: object) -> None:
    message = fuzzed.vehicle.sign(cbor2.dumps(payload))
    fuzzed.check(fuzzed.vehicle.telemetry_topic, message)
    fuzzed.check(fuzzed.vehicle.status_topic, message)


@SLOW
@given(topic=st.text(max_size=60))
def test_random_topics_are_refused(fuzzed: Fuzzed, topic: str) -> None:
    fuzzed.check(topic, fuzzed.valid)
