"""The backend's signing key: Ed25519, in ``backend.key`` of the data directory.

Theory of operation: the first use creates the key and publishes it atomically (written to a
temporary file with mode 0600, then hard-linked into place, which fails if another process won
the race; the loser reads the winner's key). Later uses load it, and refuse a key file that
group or others may read, as OpenSSH does.
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from cloud_stub.errors import KeyStoreError
from tcu.errors import ConfigError
from tcu.telemetry.codec.cose import (
    SigningKey,
    generate_key,
    key_id,
    load_private_key,
    public_key_to_pem,
    save_private_key,
    sign1,
)

__all__ = [
    "BACKEND_KEY_FILE",
    "BackendKey",
    "backend_key_path",
    "backend_public_key_pem",
    "load_backend_key",
]

BACKEND_KEY_FILE: Final = "backend.key"


@dataclass(frozen=True, slots=True, kw_only=True)
class BackendKey:
    """The backend's private key and its key id; signs acks and downlinks."""

    key: SigningKey
    kid: bytes

    def __post_init__(self) -> None:
        if self.kid != key_id(self.key):
            raise KeyStoreError("kid does not belong to the key")

    @classmethod
    def from_key(cls, key: SigningKey) -> BackendKey:
        return cls(key=key, kid=key_id(key))

    def sign(self, payload: bytes) -> bytes:
        return sign1(payload, self.key, kid=self.kid)

    @property
    def public_key_pem(self) -> bytes:
        return public_key_to_pem(self.key)


def backend_key_path(data_dir: str | os.PathLike[str]) -> Path:
    return Path(data_dir) / BACKEND_KEY_FILE


def load_backend_key(data_dir: str | os.PathLike[str]) -> BackendKey:
    """The backend key of `data_dir`, created (with the directory) on first use."""
    path = backend_key_path(data_dir)
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        if not path.exists():
            _create(path)
        mode = path.stat().st_mode
    except OSError as exc:
        raise KeyStoreError(f"cannot create backend key {path}: {exc.strerror}") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise KeyStoreError(f"backend key {path} is accessible by others (mode {mode & 0o777:o})")
    try:
        return BackendKey.from_key(load_private_key(path))
    except ConfigError as exc:
        raise KeyStoreError(str(exc)) from None


def _create(path: Path) -> None:
    fd, temp = tempfile.mkstemp(prefix=".backend-", suffix=".key", dir=path.parent)
    os.close(fd)
    try:
        save_private_key(temp, generate_key("EdDSA"))
        with contextlib.suppress(FileExistsError):
            os.link(temp, path)
    except ConfigError as exc:
        raise KeyStoreError(str(exc)) from None
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)


def backend_public_key_pem(data_dir: str | os.PathLike[str]) -> bytes:
    """SubjectPublicKeyInfo PEM of the backend key (what the TCU keeps as ``backend.pub``)."""
    return load_backend_key(data_dir).public_key_pem
