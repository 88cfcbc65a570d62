"""Password hashes with scrypt (memory-hard), from ``cryptography``.

A hash is stored as ``scrypt$N$r$p$salt$digest`` (salt and digest in hex), so the cost can
be raised later without breaking the hashes already stored. `verify` compares in constant
time; `verify_nobody` spends the same work when the e-mail is unknown, so the answer's
timing does not tell which e-mails have accounts.
"""

from __future__ import annotations

import hmac
import os
from typing import Final

from cryptography.exceptions import InvalidKey
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

__all__ = ["hash_password", "verify", "verify_nobody"]

N: Final = 2**14
R: Final = 8
P: Final = 1
LENGTH: Final = 32
_MAX_N: Final = 2**20


def hash_password(password: str, *, n: int = N) -> str:
    salt = os.urandom(16)
    digest = Scrypt(salt=salt, length=LENGTH, n=n, r=R, p=P).derive(password.encode("utf-8"))
    return f"scrypt${n}${R}${P}${salt.hex()}${digest.hex()}"


def verify(password: str, stored: str) -> bool:
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt" or not 2 <= int(n) <= _MAX_N:
            return False
        kdf = Scrypt(salt=bytes.fromhex(salt), length=LENGTH, n=int(n), r=int(r), p=int(p))
        kdf.verify(password.encode("utf-8"), bytes.fromhex(digest))
    except (ValueError, InvalidKey):
        return False
    return True


_DUMMY: Final = hash_password("no such user, no such password")


def verify_nobody(password: str) -> bool:
    """The work of one verification, for an unknown e-mail; always False."""
    verify(password, _DUMMY)
    return hmac.compare_digest("a", "b")
