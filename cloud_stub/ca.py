"""The fleet certificate authority: who may connect to the broker, and as whom.

Theory of operation. The CA lives in ``ca/`` of the backend's data directory: ``ca.key``
(P-256, PKCS#8, mode 0600; refused if group or others may read it), ``ca.pem`` (the
self-signed CA certificate every party trusts), ``crl.pem`` (the revocation list the broker
reads, signed by the CA, rewritten on every revocation and by ``refresh_crl``) and
``issued.json`` (every certificate issued: serial, CN, role, validity, revocation time).
Mutations hold an exclusive ``flock`` on ``ca/.lock``; files are replaced by rename.

Three kinds of certificate, told apart by CN and extended key usage:

- a vehicle (``issue_vehicle``): CN = VIN, clientAuth, from the van's own CSR, so the van's
  TLS key never leaves it; the CSR's signature and CN are checked;
- the backend (``issue_backend``): CN = ``cloud-stub`` for ``serve`` (``tls/backend.pem``),
  ``cloud-stub-cli`` for its command-line tools (``tls/cli.pem``), ``broker-probe`` for the
  broker's readiness probe (``tls/probe.pem``); clientAuth, key and certificate in one file
  of mode 0600 each;
- the broker (``issue_broker``): CN = ``mosquitto``, serverAuth, SAN 127.0.0.1 and
  localhost, in ``tls/broker.key`` (0600) and ``tls/broker.pem``.

The broker maps the CN to its username (``use_identity_as_username``), and its ACL
(``mosquitto.acl``) gives each username its topics; a CN that is not a VIN cannot come from
``issue_vehicle``, so no van can obtain the backend's identity.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import fcntl
import ipaddress
import json
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from cloud_stub.broker import MosquittoProcess, TlsListener
from cloud_stub.errors import CloudError
from cloud_stub.service import TlsFiles
from tcu.errors import ConfigError
from tcu.telemetry.records import is_vin
from tcu.telemetry.storage.certificate import read_bounded, write_atomic

__all__ = [
    "BACKEND_CN",
    "BROKER_CN",
    "CLI_CN",
    "PROBE_CN",
    "CaError",
    "FleetCA",
    "Issued",
]

BACKEND_CN: Final = "cloud-stub"
CLI_CN: Final = "cloud-stub-cli"
PROBE_CN: Final = "broker-probe"
BROKER_CN: Final = "mosquitto"
CA_DAYS: Final = 3650
CRL_DAYS: Final = 30
MAX_DAYS: Final = 3650
_MAX_FILE: Final = 64 * 1024 * 1024  # the ledger: some 250 bytes per certificate issued
_CLIENT: Final = x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH])
_SERVER: Final = x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH])


class CaError(CloudError):
    """The fleet CA cannot be opened, or refuses to issue or revoke."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Issued:
    """One certificate in the CA's ledger."""

    serial: int
    cn: str
    role: str
    not_before: datetime.datetime
    not_after: datetime.datetime
    revoked_at: datetime.datetime | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "serial": f"{self.serial:x}",
            "cn": self.cn,
            "role": self.role,
            "not_before": self.not_before.isoformat(),
            "not_after": self.not_after.isoformat(),
            "revoked_at": self.revoked_at.isoformat() if self.revoked_at else None,
        }

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Issued:
        revoked = raw.get("revoked_at")
        return cls(
            serial=int(raw["serial"], 16),
            cn=str(raw["cn"]),
            role=str(raw["role"]),
            not_before=datetime.datetime.fromisoformat(raw["not_before"]),
            not_after=datetime.datetime.fromisoformat(raw["not_after"]),
            revoked_at=datetime.datetime.fromisoformat(revoked) if revoked else None,
        )


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _key_usage(*, ca: bool) -> x509.KeyUsage:
    """A CA signs certificates and CRLs; the others sign (TLS handshakes), nothing more."""
    return x509.KeyUsage(
        digital_signature=not ca,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=ca,
        crl_sign=ca,
        encipher_only=False,
        decipher_only=False,
    )


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _read(path: Path) -> bytes:
    try:
        return read_bounded(path, _MAX_FILE)
    except ConfigError as exc:
        raise CaError(str(exc)) from None


def _write(path: Path, data: bytes, mode: int) -> None:
    try:
        write_atomic(path, data, mode)
    except ConfigError as exc:
        raise CaError(str(exc)) from None


class FleetCA:
    """The certificate authority in ``DATA/ca``; ``FleetCA(data)`` creates it on first use."""

    def __init__(self, data_dir: str | os.PathLike[str]) -> None:
        self.data_dir = Path(data_dir)
        self.dir = self.data_dir / "ca"
        self.tls_dir = self.data_dir / "tls"
        self.key_path = self.dir / "ca.key"
        self.cert_path = self.dir / "ca.pem"
        self.crl_path = self.dir / "crl.pem"
        self.ledger_path = self.dir / "issued.json"
        try:
            self.dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            self.tls_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            raise CaError(f"cannot create {self.dir}: {exc.strerror}") from None
        with self._locked():
            if not self.key_path.exists():
                self._create()
        self._key = self._load_key()
        self.cert = self._load_cert()

    # --- files -----------------------------------------------------------------------------

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        try:
            fd = os.open(self.dir / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise CaError(f"cannot lock {self.dir}: {exc.strerror}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def _create(self) -> None:
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name(
            [
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, "tcu-sim fleet"),
                x509.NameAttribute(NameOID.COMMON_NAME, "tcu-sim fleet CA"),
            ]
        )
        now = _now()
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=CA_DAYS))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(_key_usage(ca=True), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
            .sign(key, hashes.SHA256())
        )
        _write(self.cert_path, _pem(cert), 0o644)
        _write(self.ledger_path, b'{"certificates": []}\n', 0o600)
        self._key, self.cert = key, cert
        self._write_crl([])
        # The key last: its presence says the CA is complete.
        _write(self.key_path, _pem_key(key), 0o600)

    def _load_key(self) -> ec.EllipticCurvePrivateKey:
        mode = self.key_path.stat().st_mode
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise CaError(f"CA key {self.key_path} is accessible by others (mode {mode & 0o777:o})")
        try:
            key = serialization.load_pem_private_key(_read(self.key_path), password=None)
        except (ValueError, TypeError) as exc:
            raise CaError(f"CA key {self.key_path}: {exc}") from None
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise CaError(f"CA key {self.key_path} is not an EC key")
        return key

    def _load_cert(self) -> x509.Certificate:
        try:
            cert = x509.load_pem_x509_certificate(_read(self.cert_path))
        except ValueError as exc:
            raise CaError(f"CA certificate {self.cert_path}: {exc}") from None
        if cert.public_key() != self._key.public_key():
            raise CaError(f"{self.cert_path} does not belong to {self.key_path}")
        return cert

    def _ledger(self) -> list[Issued]:
        try:
            raw = json.loads(_read(self.ledger_path))
            return [Issued.from_dict(item) for item in raw["certificates"]]
        except (ValueError, KeyError, TypeError) as exc:
            raise CaError(f"{self.ledger_path}: damaged: {exc}") from None

    def _save_ledger(self, issued: list[Issued]) -> None:
        body = {"certificates": [i.as_dict() for i in issued]}
        _write(self.ledger_path, (json.dumps(body, indent=2) + "\n").encode(), 0o600)

    # --- issuing ---------------------------------------------------------------------------

    @property
    def ca_pem(self) -> bytes:
        return _pem(self.cert)

    def issued(self) -> list[Issued]:
        return self._ledger()

    def _sign(
        self,
        cn: str,
        role: str,
        public_key: ec.EllipticCurvePublicKey,
        *,
        usage: x509.ExtendedKeyUsage,
        days: float,
        start: datetime.datetime | None,
        san: x509.SubjectAlternativeName | None = None,
    ) -> x509.Certificate:
        if not 0 < days <= MAX_DAYS:
            raise CaError(f"validity of {days} days: must be more than 0 and at most {MAX_DAYS}")
        not_before = start if start is not None else _now() - datetime.timedelta(minutes=5)
        not_after = not_before + datetime.timedelta(days=days)
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
            .issuer_name(self.cert.subject)
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before)
            .not_valid_after(not_after)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(_key_usage(ca=False), critical=True)
            .add_extension(usage, critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self._key.public_key()), False
            )
        )
        if san is not None:
            builder = builder.add_extension(san, critical=False)
        cert = builder.sign(self._key, hashes.SHA256())
        entry = Issued(
            serial=cert.serial_number,
            cn=cn,
            role=role,
            not_before=cert.not_valid_before_utc,
            not_after=cert.not_valid_after_utc,
        )
        with self._locked():
            self._save_ledger([*self._ledger(), entry])
        return cert

    def issue_vehicle(
        self,
        vin: str,
        csr_pem: bytes,
        *,
        days: float = 365,
        start: datetime.datetime | None = None,
    ) -> bytes:
        """A client certificate (PEM) for the van's CSR; its CN must be `vin`."""
        if not is_vin(vin):
            raise CaError(f"VIN {vin!r}: not a VIN; the CA issues vehicle certificates to VINs")
        try:
            csr = x509.load_pem_x509_csr(csr_pem)
        except ValueError as exc:
            raise CaError(f"certificate request for {vin}: {exc}") from None
        if not csr.is_signature_valid:
            raise CaError(f"certificate request for {vin}: bad signature")
        names = [a.value for a in csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
        if names != [vin] or len(csr.subject) != 1:
            raise CaError(f"certificate request for {vin} names {csr.subject.rfc4514_string()}")
        key = csr.public_key()
        if not isinstance(key, ec.EllipticCurvePublicKey):
            raise CaError(f"certificate request for {vin}: the key must be EC P-256")
        cert = self._sign(vin, "vehicle", key, usage=_CLIENT, days=days, start=start)
        return _pem(cert)

    def issue_backend(self, *, days: float = 365) -> Path:
        """The backend's identities, each a key and certificate in one PEM (0600): ``serve``
        (CN cloud-stub, ``tls/backend.pem``, returned), its command-line tools (CN
        cloud-stub-cli, ``tls/cli.pem``) and the broker's readiness probe (CN broker-probe,
        ``tls/probe.pem``, allowed to connect and nothing else)."""
        for cn, name in ((CLI_CN, "cli.pem"), (PROBE_CN, "probe.pem"), (BACKEND_CN, "backend.pem")):
            key = ec.generate_private_key(ec.SECP256R1())
            cert = self._sign(cn, "backend", key.public_key(), usage=_CLIENT, days=days, start=None)
            _write(self.tls_dir / name, _pem_key(key) + _pem(cert), 0o600)
        return self.tls_dir / "backend.pem"

    def issue_client(
        self, cn: str, *, days: float = 365, start: datetime.datetime | None = None
    ) -> bytes:
        """Key and certificate (one PEM) for any CN: for tests and tools, not vans."""
        key = ec.generate_private_key(ec.SECP256R1())
        cert = self._sign(cn, "client", key.public_key(), usage=_CLIENT, days=days, start=start)
        return _pem_key(key) + _pem(cert)

    def issue_broker(self, *, days: float = 365) -> TlsListener:
        """The broker's server certificate for 127.0.0.1, and its listener files."""
        key = ec.generate_private_key(ec.SECP256R1())
        san = x509.SubjectAlternativeName(
            [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
        )
        cert = self._sign(
            BROKER_CN, "broker", key.public_key(), usage=_SERVER, days=days, start=None, san=san
        )
        _write(self.tls_dir / "broker.key", _pem_key(key), 0o600)
        _write(self.tls_dir / "broker.pem", _pem(cert), 0o644)
        return self.listener()

    def listener(self) -> TlsListener:
        """The files a Mosquitto TLS listener needs, client certificates demanded."""
        return TlsListener(
            cafile=self.cert_path,
            certfile=self.tls_dir / "broker.pem",
            keyfile=self.tls_dir / "broker.key",
            crlfile=self.crl_path,
            client_certfile=self.tls_dir / "probe.pem",
        )

    def backend_tls(self, name: str = "backend.pem") -> TlsFiles:
        """What the backend connects with: trusts the CA, shows ``tls/backend.pem`` (or
        ``cli.pem`` for the command-line tools)."""
        path = str(self.tls_dir / name)
        return TlsFiles(cafile=str(self.cert_path), certfile=path, keyfile=path)

    def mosquitto(
        self, directory: str | os.PathLike[str], *, binary: str | None = None
    ) -> MosquittoProcess:
        """A Mosquitto (not started) with the fleet listener."""
        return MosquittoProcess(directory, tls=self.fleet_listener(), binary=binary)

    def fleet_listener(self) -> TlsListener:
        """`listener`, after issuing the broker's and the backend's certificates if missing."""
        if not (self.tls_dir / "probe.pem").exists():
            self.issue_backend()
        if not (self.tls_dir / "broker.pem").exists():
            self.issue_broker()
        return self.listener()

    # --- revoking --------------------------------------------------------------------------

    def revoke(self, *, cn: str | None = None, serial: int | None = None) -> list[Issued]:
        """Revoke every unexpired certificate of `cn`, or the one with `serial`; new CRL."""
        if (cn is None) == (serial is None):
            raise CaError("revoke takes a CN or a serial number")
        now = _now()
        with self._locked():
            ledger = self._ledger()
            hit = [
                i
                for i in ledger
                if i.revoked_at is None and (i.cn == cn or i.serial == serial) and i.not_after > now
            ]
            if not hit:
                what = cn if cn is not None else f"serial {serial or 0:x}"
                raise CaError(f"no valid certificate of {what} to revoke")
            serials = {i.serial for i in hit}
            ledger = [
                dataclasses.replace(i, revoked_at=now) if i.serial in serials else i for i in ledger
            ]
            self._save_ledger(ledger)
            self._write_crl(ledger)
        return [i for i in ledger if i.serial in serials]

    def refresh_crl(self) -> Path:
        """Sign the CRL again (a new nextUpdate); a broker refuses everyone once it expires."""
        with self._locked():
            self._write_crl(self._ledger())
        return self.crl_path

    def _write_crl(self, ledger: list[Issued]) -> None:
        now = _now()
        builder = (
            x509.CertificateRevocationListBuilder()
            .issuer_name(self.cert.subject)
            .last_update(now - datetime.timedelta(minutes=5))
            .next_update(now + datetime.timedelta(days=CRL_DAYS))
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self._key.public_key()), False
            )
            .add_extension(x509.CRLNumber(int(now.timestamp() * 1000)), False)
        )
        for item in ledger:
            if item.revoked_at is not None and item.not_after > now:
                builder = builder.add_revoked_certificate(
                    x509.RevokedCertificateBuilder()
                    .serial_number(item.serial)
                    .revocation_date(item.revoked_at)
                    .build()
                )
        crl = builder.sign(self._key, hashes.SHA256())
        _write(self.crl_path, crl.public_bytes(serialization.Encoding.PEM), 0o644)
