from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from cloud_stub.commands import (
    CommandBuilder,
    expired,
    forge,
    replayed,
    stale_counter,
    to_other_vin,
)
from cloud_stub.errors import CommandError, RegistryError
from cloud_stub.keys import BackendKey, load_backend_key
from cloud_stub.registry import Registry
from cloud_stub.testing import VehicleDouble
from tcu.telemetry.codec.cose import CoseError, VerifyKey, verify1
from tcu.telemetry.codec.schema import DOWNLINK_NAMES, decode_downlink

VIN = "WV1ZZZ7HZLH000001"
OTHER_VIN = "WV1ZZZ7HZLH000002"
NOW = 1_767_225_600


@pytest.fixture
def backend_key(tmp_path: Path) -> BackendKey:
    return load_backend_key(tmp_path / "data")


@pytest.fixture
def public(backend_key: BackendKey) -> VerifyKey:
    return backend_key.key.public_key()


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[Registry]:
    with Registry(tmp_path / "registry.sqlite") as registry:
        VehicleDouble(VIN).register(registry)
        VehicleDouble(OTHER_VIN).register(registry)
        yield registry


@pytest.fixture
def builder(registry: Registry, backend_key: BackendKey) -> CommandBuilder:
    return CommandBuilder(registry, backend_key, validity_s=120)


def test_command_is_signed_with_counter_issue_time_and_expiry(
    builder: CommandBuilder, public: VerifyKey
) -> None:
    signed = builder.build(VIN, "set_departure", "06:30", now_epoch=NOW + 0.9)

    assert signed.topic == f"vehicles/{VIN}/commands"
    message = decode_downlink(verify1(signed.payload, public).payload)
    assert message == signed.downlink
    assert (message.vin, message.name, message.argument) == (VIN, "set_departure", "06:30")
    assert (message.counter, message.issued_at, message.expires_at) == (1, NOW, NOW + 120)
    assert message.command_id == "cmd-1"


def test_every_downlink_name_can_be_built(builder: CommandBuilder, public: VerifyKey) -> None:
    names = []
    for name in DOWNLINK_NAMES:
        argument = "22:05" if name == "set_departure" else None
        signed = builder.build(VIN, name, argument, now_epoch=NOW)
        names.append(VehicleDouble.read_downlink(signed.payload, public).name)
    assert names == list(DOWNLINK_NAMES)


def test_counter_grows_per_vin_and_persists_across_builders(
    builder: CommandBuilder, backend_key: BackendKey, tmp_path: Path, registry: Registry
) -> None:
    counters = [builder.build(VIN, "lock", now_epoch=NOW).downlink.counter for _ in range(3)]
    other = builder.build(OTHER_VIN, "lock", now_epoch=NOW).downlink.counter
    registry.close()

    with Registry(tmp_path / "registry.sqlite") as reopened:
        again = CommandBuilder(reopened, backend_key).build(VIN, "unlock", now_epoch=NOW - 3600)
    assert counters == [1, 2, 3]
    assert other == 1
    assert again.downlink.counter == 4


def test_same_clock_and_counter_give_the_same_bytes(
    tmp_path: Path, backend_key: BackendKey
) -> None:
    payloads = []
    for run in ("a", "b"):
        with Registry(tmp_path / f"{run}.sqlite") as registry:
            registry.register(VIN, backend_key.public_key_pem, b"vehicle-kid")
            builder = CommandBuilder(registry, backend_key)
            payloads.append(builder.build(VIN, "start_charging", now_epoch=NOW).payload)
    assert payloads[0] == payloads[1]


@pytest.mark.parametrize(
    ("name", "argument", "match"),
    [
        ("open_sesame", None, "unknown command"),
        ("lock", "now", "takes no argument"),
        ("set_departure", None, "HH:MM"),
        ("set_departure", "24:00", "HH:MM"),
        ("set_departure", "6:30", "HH:MM"),
    ],
)
def test_bad_commands_are_refused_without_using_a_counter(
    builder: CommandBuilder, registry: Registry, name: str, argument: str | None, match: str
) -> None:
    with pytest.raises(CommandError, match=match):
        builder.build(VIN, name, argument, now_epoch=NOW)
    assert registry.get(VIN).downlink_counter == 0


def test_unknown_vin_and_bad_clock_are_refused(builder: CommandBuilder) -> None:
    with pytest.raises(RegistryError):
        builder.build("WV1ZZZ7HZLH000009", "lock", now_epoch=NOW)
    with pytest.raises(CommandError, match="now_epoch"):
        builder.build(VIN, "lock", now_epoch=-1)
    with pytest.raises(CommandError, match="validity"):
        builder.build(VIN, "lock", now_epoch=NOW, validity_s=0)


def test_forged_command_fails_verification_and_keeps_the_counter(
    builder: CommandBuilder, public: VerifyKey, backend_key: BackendKey
) -> None:
    forged = forge(builder, VIN, "unlock", now_epoch=NOW)

    with pytest.raises(CoseError) as refused:
        verify1(forged.payload, public)
    assert refused.value.reason == "bad_signature"
    assert forged.downlink.counter == 1
    assert builder.build(VIN, "lock", now_epoch=NOW).downlink.counter == 1


def test_expired_command_is_genuine_but_past_its_expiry(
    builder: CommandBuilder, public: VerifyKey
) -> None:
    old = expired(builder, VIN, "start_preconditioning", now_epoch=NOW)

    message = VehicleDouble.read_downlink(old.payload, public)
    assert message.expires_at < NOW
    assert message.issued_at < message.expires_at
    assert builder.build(VIN, "lock", now_epoch=NOW).downlink.counter == message.counter + 1


def test_replayed_and_stale_counter_commands(builder: CommandBuilder, public: VerifyKey) -> None:
    first = builder.build(VIN, "lock", now_epoch=NOW)
    builder.build(VIN, "unlock", now_epoch=NOW + 1)

    assert replayed(first).payload == first.payload
    stale = VehicleDouble.read_downlink(
        stale_counter(builder, first, now_epoch=NOW + 2).payload, public
    )
    assert (stale.counter, stale.issued_at) == (first.downlink.counter, NOW + 2)
    assert stale.command_id != first.downlink.command_id


def test_command_delivered_to_another_vin(builder: CommandBuilder, public: VerifyKey) -> None:
    mine = builder.build(VIN, "unlock", now_epoch=NOW)
    moved = to_other_vin(mine, OTHER_VIN, builder)

    assert moved.topic == f"vehicles/{OTHER_VIN}/commands"
    assert VehicleDouble.read_downlink(moved.payload, public).vin == VIN
