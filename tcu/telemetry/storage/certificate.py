"""The vehicle's TLS client certificate: the van's identity at the MQTT broker.

Theory of operation. Next to the COSE signing key (``vehicle.key``), the keystore holds
``tls-client.pem``: a P-256 private key and the X.509 certificate the fleet CA issued for it
(subject CN = the VIN), in one file of mode 0600, and ``fleet-ca.pem``, the CA certificate
that the van trusts for the broker's certificate. The TLS key is its own key, never the
signing key: renewing or revoking the broker identity leaves the signatures (and the
backend's registry entry) alone.

``request_certificate`` makes a fresh key, sends a certificate signing request (CN = VIN)
to ``certify`` (the CA; in this project ``cloud_stub.provisioning.certification``), checks
what comes back (the CN, the public key, the issuer's signature) and only then replaces the
file, atomically (a temporary file of mode 0600 renamed over the old one): a driver that
reconnects at any moment reads either the old key and certificate or the new pair, never a
mix. Renewal is the same call on a provisioned keystore; the private key never leaves it.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tcu.errors import ConfigError

TLS_CLIENT: Final = "tls-client.pem"
FLEET_CA: Final = "fleet-ca.pem"
MAX_PEM: Final = 64 * 1024

Certify = Callable[[str, bytes], tuple[bytes, bytes]]
"""``certify(vin, csr_pem) -> (certificate_pem, ca_certificate_pem)``."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ClientCertificate:
    """A van's TLS client certificate as installed in its keystore."""

    vin: str
    serial: int
    not_before: datetime.datetime
    not_after: datetime.datetime
    path: Path
    ca_path: Path

    def as_dict(self) -> dict[str, str]:
        return {
            "vin": self.vin,
            "serial": f"{self.serial:x}",
            "not_before": self.not_before.isoformat(),
            "not_after": self.not_after.isoformat(),
            "certificate": str(self.path),
            "ca": str(self.ca_path),
        }


def write_atomic(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Replace `path` with `data` in one rename; the file never exists with another mode."""
    try:
        fd, temp = tempfile.mkstemp(prefix=f".{path.name}-", dir=path.parent)
    except OSError as exc:
        raise ConfigError(f"cannot write {path}: {exc.strerror}") from None
    try:
        with os.fdopen(fd, "wb") as file:
            os.fchmod(file.fileno(), mode)
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temp, path)
    except OSError as exc:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)
        raise ConfigError(f"cannot write {path}: {exc.strerror}") from None


def read_bounded(path: Path, limit: int, *, hint: str = "") -> bytes:
    """The bytes of `path`, at most `limit` of them; ConfigError naming the file otherwise."""
    try:
        with path.open("rb") as file:
            data = file.read(limit + 1)
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}{hint}") from None
    if len(data) > limit:
        raise ConfigError(f"{path} is larger than {limit} bytes")
    return data


def make_csr(vin: str) -> tuple[ec.EllipticCurvePrivateKey, bytes]:
    """A new P-256 key and a certificate signing request for CN = `vin`."""
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, vin)]))
        .sign(key, hashes.SHA256())
    )
    return key, csr.public_bytes(serialization.Encoding.PEM)


def request_certificate(
    keystore: str | os.PathLike[str], vin: str, certify: Certify
) -> ClientCertificate:
    """Get a new key and client certificate for `vin` from `certify`; install both."""
    store = Path(keystore)
    try:
        store.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot create keystore {store}: {exc.strerror}") from None
    key, csr = make_csr(vin)
    cert_pem, ca_pem = certify(vin, csr)
    cert = _check(vin, key, cert_pem, ca_pem)
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    write_atomic(store / FLEET_CA, ca_pem, 0o644)
    write_atomic(store / TLS_CLIENT, key_pem + cert.public_bytes(serialization.Encoding.PEM))
    return _describe(vin, cert, store)


def read_client_certificate(keystore: str | os.PathLike[str]) -> ClientCertificate:
    """The client certificate installed in `keystore` (ConfigError if there is none)."""
    store = Path(keystore)
    path = store / TLS_CLIENT
    data = read_bounded(path, MAX_PEM, hint="; run tcu provision")
    try:
        cert = x509.load_pem_x509_certificate(data)
    except ValueError as exc:
        raise ConfigError(f"{path}: no certificate: {exc}") from None
    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    vin = str(names[0].value) if names else ""
    return _describe(vin, cert, store)


def _describe(vin: str, cert: x509.Certificate, store: Path) -> ClientCertificate:
    return ClientCertificate(
        vin=vin,
        serial=cert.serial_number,
        not_before=cert.not_valid_before_utc,
        not_after=cert.not_valid_after_utc,
        path=store / TLS_CLIENT,
        ca_path=store / FLEET_CA,
    )


def _check(
    vin: str, key: ec.EllipticCurvePrivateKey, cert_pem: bytes, ca_pem: bytes
) -> x509.Certificate:
    try:
        cert = x509.load_pem_x509_certificate(cert_pem)
        ca = x509.load_pem_x509_certificate(ca_pem)
    except ValueError as exc:
        raise ConfigError(f"the fleet CA answered with no certificate: {exc}") from None
    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if [n.value for n in names] != [vin]:
        raise ConfigError(f"the fleet CA issued a certificate for {cert.subject}, not CN={vin}")
    if cert.public_key() != key.public_key():
        raise ConfigError("the fleet CA issued a certificate for another key")
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        raise ConfigError("the certificate is not signed by the fleet CA it came with") from None
    return cert
