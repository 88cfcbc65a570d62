"""Provisioning a vehicle with this backend: what ``tcu provision`` calls.

``registration(data_dir)`` gives the two callables ``tcu.telemetry.storage.identity.provision``
takes: one that registers the vehicle's VIN and public key in the backend's registry,
one that returns the backend's public key. ``certification(data_dir)`` gives the one
``tcu.telemetry.storage.certificate.request_certificate`` takes: the fleet CA signs the van's
certificate request. Errors are the TCU's ``ConfigError`` so the
``tcu`` command reports them as a user's mistake.
"""

from __future__ import annotations

import os
from pathlib import Path

from cloud_stub.ca import FleetCA
from cloud_stub.errors import CloudError
from cloud_stub.keys import backend_public_key_pem
from cloud_stub.registry import Registry
from cloud_stub.service import REGISTRY_FILE
from tcu.errors import ConfigError
from tcu.telemetry.storage.certificate import Certify
from tcu.telemetry.storage.identity import BackendPem, Register


def registration(backend_data: str | os.PathLike[str]) -> tuple[Register, BackendPem]:
    """`register` and `backend_pem` for `provision`, backed by the cloud stub's data directory."""
    data = Path(backend_data)

    def register(vin: str, public_key_pem: bytes, kid: bytes) -> object:
        try:
            data.mkdir(mode=0o700, parents=True, exist_ok=True)
            with Registry(data / REGISTRY_FILE) as registry:
                return registry.register(vin, public_key_pem, kid)
        except CloudError as exc:
            raise ConfigError(f"backend registry in {data}: {exc}") from None
        except OSError as exc:
            raise ConfigError(f"backend data {data}: {exc.strerror}") from None

    def backend_pem() -> bytes:
        try:
            return backend_public_key_pem(data)
        except CloudError as exc:
            raise ConfigError(f"backend key in {data}: {exc}") from None

    return register, backend_pem


def certification(backend_data: str | os.PathLike[str], *, days: float = 365) -> Certify:
    """`certify(vin, csr_pem)` for `request_certificate`: the fleet CA of `backend_data` signs.

    The VIN must be registered first: the CA certifies only vans the backend knows.
    """
    data = Path(backend_data)

    def certify(vin: str, csr_pem: bytes) -> tuple[bytes, bytes]:
        try:
            with Registry(data / REGISTRY_FILE) as registry:
                registry.get(vin)
            ca = FleetCA(data)
            return ca.issue_vehicle(vin, csr_pem, days=days), ca.ca_pem
        except CloudError as exc:
            raise ConfigError(f"fleet CA in {data}: {exc}") from None

    return certify
