"""The vehicle's identity: its VIN, its signing key, and the backend key it trusts.

Theory of operation. A keystore directory holds ``vehicle.key`` (PKCS#8 PEM, mode 0600),
``vehicle.pub`` (SubjectPublicKeyInfo PEM), ``backend.pub`` (the backend's public key)
and ``identity.json`` (VIN, key id, algorithm). ``provision`` makes the key pair, registers
VIN and public key with the cloud stub's registry, and copies the backend's public key in;
it refuses to replace an existing vehicle key unless told to. ``load_identity`` reads it
all back for the drivers. The boot epoch and the downlink counter are not kept here but
in the outbox's SQLite file, next to the records they belong with.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from tcu.errors import ConfigError
from tcu.telemetry.codec.cose import (
    SigningKey,
    VerifyKey,
    generate_key,
    key_id,
    load_private_key,
    public_key_from_pem,
    public_key_to_pem,
    save_private_key,
    sign1,
)
from tcu.telemetry.records import is_vin
from tcu.telemetry.storage.certificate import read_bounded

VEHICLE_KEY: Final = "vehicle.key"
VEHICLE_PUB: Final = "vehicle.pub"
BACKEND_PUB: Final = "backend.pub"
IDENTITY: Final = "identity.json"
ALGORITHMS: Final = ("EdDSA", "ES256")
MAX_SMALL_FILE: Final = 64 * 1024

Register = Callable[[str, bytes, bytes], object]
BackendPem = Callable[[], bytes]


def validate_vin(vin: str) -> str:
    """`vin` if it is 17 characters of the ISO 3779 alphabet; ConfigError naming it if not."""
    if not is_vin(vin):
        raise ConfigError(
            f"VIN {vin!r}: must be 17 characters, digits and capitals without I, O and Q"
        )
    return vin


@dataclass(frozen=True, slots=True, kw_only=True)
class VehicleIdentity:
    """What a driver needs to sign uplink messages and verify the backend's."""

    vin: str
    key: SigningKey
    kid: bytes
    backend_key: VerifyKey

    def __post_init__(self) -> None:
        validate_vin(self.vin)
        if self.kid != key_id(self.key):
            raise ConfigError(f"{self.vin}: key id does not belong to the vehicle key")

    def sign(self, payload: bytes) -> bytes:
        """`payload` as a COSE_Sign1 message signed by the vehicle key."""
        return sign1(payload, self.key, kid=self.kid)


@dataclass(frozen=True, slots=True, kw_only=True)
class Provisioned:
    vin: str
    kid: bytes
    alg: str
    keystore: Path


def provision(
    vin: str,
    keystore: str | os.PathLike[str],
    *,
    register: Register,
    backend_pem: BackendPem,
    alg: str = "EdDSA",
    force: bool = False,
) -> Provisioned:
    """Make the vehicle key pair, register it, and install the backend's public key.

    `register(vin, public_key_pem, kid)` records the vehicle with the backend;
    `backend_pem()` returns the backend's public key PEM.
    """
    validate_vin(vin)
    if alg not in ALGORITHMS:
        raise ConfigError(f"--alg {alg!r}: choose one of {', '.join(ALGORITHMS)}")
    store = Path(keystore)
    key_path = store / VEHICLE_KEY
    if key_path.exists() and not force:
        raise ConfigError(f"{key_path} exists; use --force to replace the vehicle key")
    backend = backend_pem()
    public_key_from_pem(backend)
    try:
        store.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot create keystore {store}: {exc.strerror}") from None
    key = generate_key(alg)
    kid = key_id(key)
    public_pem = public_key_to_pem(key)
    register(vin, public_pem, kid)
    if force:
        _remove(key_path)
    save_private_key(key_path, key)
    _write(store / VEHICLE_PUB, public_pem)
    _write(store / BACKEND_PUB, backend)
    record = {"vin": vin, "kid": kid.hex(), "alg": alg}
    _write(store / IDENTITY, (json.dumps(record, indent=2) + "\n").encode())
    return Provisioned(vin=vin, kid=kid, alg=alg, keystore=store)


def load_identity(keystore: str | os.PathLike[str], vin: str | None = None) -> VehicleIdentity:
    """The provisioned identity in `keystore`; with `vin`, it must be that vehicle's."""
    store = Path(keystore)
    meta = _read_json(store / IDENTITY)
    stored_vin = meta.get("vin")
    if not isinstance(stored_vin, str):
        raise ConfigError(f"{store / IDENTITY}: no VIN; run tcu provision")
    validate_vin(stored_vin)
    if vin is not None and vin != stored_vin:
        raise ConfigError(f"keystore {store} belongs to {stored_vin}, not {vin}")
    key = load_private_key(store / VEHICLE_KEY)
    backend = public_key_from_pem(_read(store / BACKEND_PUB))
    return VehicleIdentity(vin=stored_vin, key=key, kid=key_id(key), backend_key=backend)


def _write(path: Path, data: bytes) -> None:
    try:
        path.write_bytes(data)
    except OSError as exc:
        raise ConfigError(f"cannot write {path}: {exc.strerror}") from None


def _remove(path: Path) -> None:
    try:
        path.unlink(missing_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot replace {path}: {exc.strerror}") from None


def _read(path: Path) -> bytes:
    return read_bounded(path, MAX_SMALL_FILE, hint="; run tcu provision")


def _read_json(path: Path) -> dict[str, Any]:
    try:
        value = json.loads(_read(path))
    except (ValueError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise ConfigError(f"{path}: expected a JSON object")
    return value
