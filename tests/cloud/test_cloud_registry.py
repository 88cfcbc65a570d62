from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from cloud_stub.errors import KeyStoreError, RegistryError
from cloud_stub.keys import backend_key_path, backend_public_key_pem, load_backend_key
from cloud_stub.registry import Registry
from cloud_stub.testing import VehicleDouble
from tcu.telemetry.codec.cose import key_id, public_key_from_pem, sign1, verify1

VIN = "WV1ZZZ7HZLH000001"
OTHER_VIN = "WV1ZZZ7HZLH000002"


def test_backend_key_is_created_once_with_owner_only_access(tmp_path: Path) -> None:
    data = tmp_path / "data"
    first = load_backend_key(data)
    path = backend_key_path(data)

    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_backend_key(data).kid == first.kid
    assert [p.name for p in data.iterdir()] == ["backend.key"]
    public = public_key_from_pem(backend_public_key_pem(data))
    assert key_id(public) == first.kid
    assert verify1(first.sign(b"hello"), public).payload == b"hello"


def test_backend_key_readable_by_others_is_refused(tmp_path: Path) -> None:
    load_backend_key(tmp_path)
    os.chmod(backend_key_path(tmp_path), 0o644)
    with pytest.raises(KeyStoreError, match="accessible by others"):
        load_backend_key(tmp_path)


def test_backend_key_that_is_not_a_key_is_refused(tmp_path: Path) -> None:
    path = backend_key_path(tmp_path)
    path.write_bytes(b"not a key")
    path.chmod(0o600)
    with pytest.raises(KeyStoreError, match="cannot be loaded"):
        load_backend_key(tmp_path)


@pytest.fixture
def registry(tmp_path: Path) -> Registry:
    return Registry(tmp_path / "registry.sqlite")


def test_register_activate_deactivate(registry: Registry) -> None:
    vehicle = VehicleDouble(VIN)
    registered = registry.register(VIN, vehicle.public_key_pem, vehicle.kid)

    assert (registered.vin, registered.kid, registered.active) == (VIN, vehicle.kid, False)
    assert registry.is_active(VIN) is False
    assert registry.activate(VIN).active is True
    assert registry.is_active(VIN) is True
    assert registry.by_kid(vehicle.kid).vin == VIN
    assert registry.deactivate(VIN).active is False
    message = sign1(b"x", vehicle.key, kid=vehicle.kid)
    assert verify1(message, registry.get(VIN).public_key()).payload == b"x"


def test_unknown_vin_and_kid_raise(registry: Registry) -> None:
    for call in (registry.get, registry.is_active, registry.activate, registry.deactivate):
        with pytest.raises(RegistryError, match="unknown VIN"):
            call(VIN)
    with pytest.raises(RegistryError, match="unknown VIN"):
        registry.next_counter(VIN)
    with pytest.raises(RegistryError, match="unknown kid"):
        registry.by_kid(b"\x01" * 8)
    assert registry.find(VIN) is None


@pytest.mark.parametrize(
    ("vin", "pem", "kid", "match"),
    [
        pytest.param("WV1ZZZ7HZLH00000I", None, None, "VIN", id="letter-I-in-vin"),
        pytest.param("SHORT", None, None, "VIN", id="short-vin"),
        pytest.param(VIN, b"-----BEGIN PUBLIC KEY-----\nxx\n", None, "PEM", id="bad-pem"),
        pytest.param(VIN, None, b"", "kid", id="empty-kid"),
        pytest.param(VIN, None, b"k" * 257, "kid", id="long-kid"),
    ],
)
def test_bad_registrations_are_refused(
    registry: Registry, vin: str, pem: bytes | None, kid: bytes | None, match: str
) -> None:
    vehicle = VehicleDouble(VIN)
    with pytest.raises(RegistryError, match=match):
        registry.register(vin, pem or vehicle.public_key_pem, vehicle.kid if kid is None else kid)
    assert registry.vehicles() == []


def test_a_kid_belongs_to_one_vin(registry: Registry) -> None:
    vehicle = VehicleDouble(VIN)
    vehicle.register(registry)
    with pytest.raises(RegistryError, match="another VIN"):
        registry.register(OTHER_VIN, vehicle.public_key_pem, vehicle.kid)


def test_re_registration_replaces_the_key_and_keeps_flag_and_counter(
    registry: Registry, tmp_path: Path
) -> None:
    VehicleDouble(VIN).register(registry, active=True)
    assert registry.next_counter(VIN) == 1
    rotated = VehicleDouble(VIN)

    registry.register(VIN, rotated.public_key_pem, rotated.kid)
    registry.close()

    with Registry(tmp_path / "registry.sqlite") as reopened:
        vehicle = reopened.get(VIN)
        assert (vehicle.kid, vehicle.active, vehicle.downlink_counter) == (rotated.kid, True, 1)
        assert reopened.next_counter(VIN) == 2


def test_two_connections_see_each_others_changes(tmp_path: Path) -> None:
    with Registry(tmp_path / "r.sqlite") as cli, Registry(tmp_path / "r.sqlite") as service:
        VehicleDouble(VIN).register(cli, active=False)
        assert service.is_active(VIN) is False
        cli.activate(VIN)
        assert service.is_active(VIN) is True
        assert service.next_counter(VIN) == 1
        assert cli.next_counter(VIN) == 2
