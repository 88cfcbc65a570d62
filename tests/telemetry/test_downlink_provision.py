"""Provisioning: the vehicle key pair, its registration, and the backend key the downlink trusts."""

from __future__ import annotations

import stat
from pathlib import Path
from typing import Any

import pytest

from cloud_stub.keys import load_backend_key
from cloud_stub.registry import Registry
from cloud_stub.service import REGISTRY_FILE
from tcu.cli.main import main
from tcu.errors import ConfigError
from tcu.telemetry.codec.cose import ALG_ES256, generate_key, key_id, public_key_to_pem, verify1
from tcu.telemetry.storage.identity import (
    BACKEND_PUB,
    VEHICLE_KEY,
    VEHICLE_PUB,
    load_identity,
    provision,
    validate_vin,
)

VIN = "WDB9066331S123456"


def test_provision_cli_makes_keys_registers_and_installs_the_backend_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    keystore, data = tmp_path / "ks", tmp_path / "cloud"
    code = main(
        ["provision", "--vin", VIN, "--keystore", str(keystore), "--backend-data", str(data)]
    )
    assert code == 0
    assert VIN in capsys.readouterr().out
    assert stat.S_IMODE((keystore / VEHICLE_KEY).stat().st_mode) == 0o600
    identity = load_identity(keystore, VIN)
    with Registry(data / REGISTRY_FILE) as registry:
        vehicle = registry.get(VIN)
    assert vehicle.kid == identity.kid == key_id(identity.key)
    assert vehicle.public_key_pem == (keystore / VEHICLE_PUB).read_bytes()
    backend = load_backend_key(data)
    assert (keystore / BACKEND_PUB).read_bytes() == backend.public_key_pem
    signed = backend.sign(b"hello")
    assert verify1(signed, identity.backend_key).payload == b"hello"
    assert verify1(identity.sign(b"up"), vehicle.public_key()).payload == b"up"


def test_provision_refuses_to_overwrite_without_force(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["provision", "--vin", VIN, "--keystore", str(tmp_path / "ks")]
    args += ["--backend-data", str(tmp_path / "cloud")]
    assert main(args) == 0
    before = (tmp_path / "ks" / VEHICLE_KEY).read_bytes()
    capsys.readouterr()
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "--force" in err and "Traceback" not in err
    assert (tmp_path / "ks" / VEHICLE_KEY).read_bytes() == before
    assert main([*args, "--force", "--alg", "ES256"]) == 0
    identity = load_identity(tmp_path / "ks")
    assert (tmp_path / "ks" / VEHICLE_KEY).read_bytes() != before
    assert verify1(identity.sign(b"x"), identity.key.public_key()).alg == ALG_ES256
    with Registry(tmp_path / "cloud" / REGISTRY_FILE) as registry:
        assert registry.get(VIN).kid == identity.kid


@pytest.mark.parametrize(
    "vin", ["", "WDB9066331S12345", "WDB9066331S1234567", "WDB9066331S12345O", "wdb9066331s123456"]
)
def test_a_bad_vin_is_a_config_error_naming_it(vin: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="VIN") as info:
        validate_vin(vin)
    assert repr(vin) in str(info.value)
    calls: list[Any] = []
    with pytest.raises(ConfigError):
        provision(
            vin,
            tmp_path / "ks",
            register=lambda *a: calls.append(a),
            backend_pem=lambda: public_key_to_pem(generate_key()),
        )
    assert calls == [] and not (tmp_path / "ks").exists()


def test_registration_failure_leaves_no_key_behind(tmp_path: Path) -> None:
    def refuse(vin: str, pem: bytes, kid: bytes) -> None:
        raise ConfigError("registry says no")

    with pytest.raises(ConfigError, match="says no"):
        provision(
            VIN,
            tmp_path / "ks",
            register=refuse,
            backend_pem=lambda: public_key_to_pem(generate_key()),
        )
    assert not (tmp_path / "ks" / VEHICLE_KEY).exists()


def test_load_identity_checks_the_vin_and_needs_a_provisioned_keystore(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="provision"):
        load_identity(tmp_path / "empty")
    provision(
        VIN,
        tmp_path / "ks",
        register=lambda *a: None,
        backend_pem=lambda: public_key_to_pem(generate_key()),
    )
    with pytest.raises(ConfigError, match="belongs to"):
        load_identity(tmp_path / "ks", "WDB9066331S654321")
