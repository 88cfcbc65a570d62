"""COSE_Sign1 signing and verification (RFC 9052, algorithms from RFC 9053).

Theory of operation: a signed message is the array [protected, unprotected, payload,
signature] under tag 18. `sign1` puts the algorithm in the protected header (a bstr holding a
CBOR map, so the bytes signed are the bytes sent) and the key id in the unprotected header,
builds the Sig_structure ["Signature1", protected, external_aad, payload] and signs its CBOR
encoding. `verify1` walks the same road backwards and refuses at the first step that fails,
always with a `CoseError` whose ``reason`` is one of `REASONS`:

1. the bytes go through the strict decoder (size, depth, no indefinite lengths, no duplicate
   keys, tags 18 and 98 only) and must form a COSE_Sign1, tagged or not ("malformed");
2. the headers must be maps with int or text labels, no label in both buckets and no
   ``crit`` parameter, since no extension is understood here ("malformed");
3. the payload must be present; detached payloads are not supported ("missing_payload");
4. ``alg`` is read from the protected header; it may sit in the unprotected header only when
   the protected header is empty ("malformed" otherwise), and must be EdDSA, ES256, ES384 or
   ES512 ("unsupported_alg");
5. ``kid`` names the signer and the caller's lookup turns it into a public key
   ("unknown_kid"); a key may also be given directly;
6. the algorithm must fit the key: EdDSA needs Ed25519 or Ed448, ESxxx needs a P-256,
   P-384 or P-521 key ("alg_mismatch");
7. the signature is checked over the rebuilt Sig_structure ("bad_signature"). ECDSA
   signatures travel as raw r||s, each half as long as the curve's order, whatever the hash.

A protected header that encodes an empty map (h'A0') holds no parameters, so it enters the
Sig_structure as the zero-length bstr, as the cose-wg vector sign-pass-01 requires.
`verify_sign` applies the same rules to a COSE_Sign message (tag 98, one or more signers,
Sig_structure context "Signature"); every signer must be known and must verify.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any, Final, Literal, TypeAlias, get_args

import cbor2
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)

from tcu.errors import ConfigError, DecodeError, VerificationError
from tcu.telemetry.codec.cbor_strict import DEFAULT_MAX_SIZE, loads_strict

__all__ = [
    "ALG_EDDSA",
    "ALG_ES256",
    "ALG_ES384",
    "ALG_ES512",
    "HEADER_ALG",
    "HEADER_CONTENT_TYPE",
    "HEADER_CRIT",
    "HEADER_KID",
    "REASONS",
    "TAG_SIGN",
    "TAG_SIGN1",
    "CoseError",
    "CoseReason",
    "KeyLookup",
    "Sign1",
    "SignMessage",
    "Signer",
    "SigningKey",
    "VerifyKey",
    "generate_key",
    "key_id",
    "load_private_key",
    "public_key_bytes",
    "public_key_from_bytes",
    "public_key_from_pem",
    "public_key_to_pem",
    "save_private_key",
    "sig_structure",
    "sign1",
    "verify1",
    "verify_sign",
]

ALG_EDDSA: Final = -8
ALG_ES256: Final = -7
ALG_ES384: Final = -35
ALG_ES512: Final = -36
TAG_SIGN1: Final = 18
TAG_SIGN: Final = 98

HEADER_ALG: Final = 1
HEADER_CRIT: Final = 2
HEADER_CONTENT_TYPE: Final = 3
HEADER_KID: Final = 4

MAX_KID_LEN: Final = 256
MAX_SIGNERS: Final = 16
MAX_KEY_FILE_SIZE: Final = 64 * 1024

SigningKey: TypeAlias = (
    ed25519.Ed25519PrivateKey | ed448.Ed448PrivateKey | ec.EllipticCurvePrivateKey
)
VerifyKey: TypeAlias = ed25519.Ed25519PublicKey | ed448.Ed448PublicKey | ec.EllipticCurvePublicKey
KeyLookup: TypeAlias = Callable[[bytes], VerifyKey | None]
CoseReason: TypeAlias = Literal[
    "malformed",
    "unsupported_alg",
    "alg_mismatch",
    "unknown_kid",
    "bad_signature",
    "missing_payload",
]
REASONS: Final[tuple[str, ...]] = get_args(CoseReason)

_ALG_BY_NAME: Final[dict[str, int]] = {
    "EdDSA": ALG_EDDSA,
    "ES256": ALG_ES256,
    "ES384": ALG_ES384,
    "ES512": ALG_ES512,
}
_ECDSA_HASH: Final[dict[int, type[hashes.HashAlgorithm]]] = {
    ALG_ES256: hashes.SHA256,
    ALG_ES384: hashes.SHA384,
    ALG_ES512: hashes.SHA512,
}
_CURVE_BY_ALG: Final[dict[int, type[ec.EllipticCurve]]] = {
    ALG_ES256: ec.SECP256R1,
    ALG_ES384: ec.SECP384R1,
    ALG_ES512: ec.SECP521R1,
}
_ALG_BY_CURVE: Final[dict[str, int]] = {
    "secp256r1": ALG_ES256,
    "secp384r1": ALG_ES384,
    "secp521r1": ALG_ES512,
}
_CURVE_BY_POINT_LEN: Final[dict[int, type[ec.EllipticCurve]]] = {
    65: ec.SECP256R1,
    97: ec.SECP384R1,
    133: ec.SECP521R1,
}
_PUBLIC_KEY_TYPES: Final = (
    ed25519.Ed25519PublicKey,
    ed448.Ed448PublicKey,
    ec.EllipticCurvePublicKey,
)
_PRIVATE_KEY_TYPES: Final = (
    ed25519.Ed25519PrivateKey,
    ed448.Ed448PrivateKey,
    ec.EllipticCurvePrivateKey,
)

Label: TypeAlias = int | str


class CoseError(VerificationError):
    """A COSE message refused; ``reason`` is one of `REASONS` and stable across versions."""

    def __init__(self, reason: CoseReason, message: str) -> None:
        super().__init__(message)
        self.reason: CoseReason = reason


def _frozen_headers(headers: Mapping[Label, Any]) -> Mapping[Label, Any]:
    return MappingProxyType(dict(headers))


@dataclass(frozen=True, slots=True, kw_only=True)
class Sign1:
    """A verified COSE_Sign1 message."""

    protected: Mapping[Label, Any]
    unprotected: Mapping[Label, Any]
    kid: bytes
    alg: int
    payload: bytes

    def __post_init__(self) -> None:
        if self.alg not in _ALG_BY_NAME.values():
            raise ValueError(f"unsupported COSE alg {self.alg!r}")
        if not isinstance(self.kid, bytes) or not isinstance(self.payload, bytes):
            raise TypeError("kid and payload must be bytes")
        object.__setattr__(self, "protected", _frozen_headers(self.protected))
        object.__setattr__(self, "unprotected", _frozen_headers(self.unprotected))


@dataclass(frozen=True, slots=True, kw_only=True)
class Signer:
    """One verified signer of a COSE_Sign message."""

    protected: Mapping[Label, Any]
    unprotected: Mapping[Label, Any]
    kid: bytes
    alg: int

    def __post_init__(self) -> None:
        if self.alg not in _ALG_BY_NAME.values():
            raise ValueError(f"unsupported COSE alg {self.alg!r}")
        if not isinstance(self.kid, bytes):
            raise TypeError("kid must be bytes")
        object.__setattr__(self, "protected", _frozen_headers(self.protected))
        object.__setattr__(self, "unprotected", _frozen_headers(self.unprotected))


@dataclass(frozen=True, slots=True, kw_only=True)
class SignMessage:
    """A verified COSE_Sign message: body headers, payload and every signer."""

    protected: Mapping[Label, Any]
    unprotected: Mapping[Label, Any]
    payload: bytes
    signers: tuple[Signer, ...]

    def __post_init__(self) -> None:
        if not isinstance(self.payload, bytes):
            raise TypeError("payload must be bytes")
        if not self.signers:
            raise ValueError("a COSE_Sign message has at least one signer")
        object.__setattr__(self, "protected", _frozen_headers(self.protected))
        object.__setattr__(self, "unprotected", _frozen_headers(self.unprotected))


# --- signing -------------------------------------------------------------------------------


def sign1(
    payload: bytes,
    key: SigningKey,
    *,
    kid: bytes,
    external_aad: bytes = b"",
    alg: int | None = None,
    content_type: int | str | None = None,
) -> bytes:
    """Sign `payload` into a tagged COSE_Sign1 message.

    `alg` defaults to the one that fits the key (EdDSA for Ed25519/Ed448, ES256/384/512 for
    P-256/384/521); `content_type` goes into the protected header (label 3) when given.
    """
    if not isinstance(payload, bytes) or not isinstance(external_aad, bytes):
        raise TypeError("payload and external_aad must be bytes")
    if not isinstance(kid, bytes) or not 0 < len(kid) <= MAX_KID_LEN:
        raise ConfigError(f"kid must be 1 to {MAX_KID_LEN} bytes")
    chosen = _alg_for_private_key(key) if alg is None else alg
    if _fit_problem(chosen, key.public_key()) is not None:
        raise ConfigError(f"alg {chosen!r} does not fit a {_key_kind(key.public_key())} key")
    protected: dict[Label, Any] = {HEADER_ALG: chosen}
    if content_type is not None:
        protected[HEADER_CONTENT_TYPE] = content_type
    protected_bytes = cbor2.dumps(protected)
    to_be_signed = _encode_sig_structure("Signature1", [protected_bytes], external_aad, payload)
    signature = _sign(key, chosen, to_be_signed)
    message = [protected_bytes, {HEADER_KID: kid}, payload, signature]
    return cbor2.dumps(cbor2.CBORTag(TAG_SIGN1, message))


def sig_structure(
    *,
    protected: bytes,
    payload: bytes,
    external_aad: bytes = b"",
    sign_protected: bytes | None = None,
) -> bytes:
    """The CBOR-encoded Sig_structure, the bytes a signature covers.

    With `sign_protected` None it is the COSE_Sign1 form ("Signature1"); otherwise the
    COSE_Sign form ("Signature") for one signer. Protected headers holding an empty map
    enter as the zero-length bstr.
    """
    parts = [_as_signed_protected(protected)]
    if sign_protected is None:
        return _encode_sig_structure("Signature1", parts, external_aad, payload)
    parts.append(_as_signed_protected(sign_protected))
    return _encode_sig_structure("Signature", parts, external_aad, payload)


def _encode_sig_structure(
    context: str, protected_parts: list[bytes], external_aad: bytes, payload: bytes
) -> bytes:
    return cbor2.dumps([context, *protected_parts, external_aad, payload])


def _as_signed_protected(raw: bytes) -> bytes:
    return raw if raw and _decode_protected(raw) else b""


def _sign(key: SigningKey, alg: int, to_be_signed: bytes) -> bytes:
    if isinstance(key, ec.EllipticCurvePrivateKey):
        der = key.sign(to_be_signed, ec.ECDSA(_ECDSA_HASH[alg]()))
        r, s = decode_dss_signature(der)
        half = _half_len(key.curve)
        return r.to_bytes(half, "big") + s.to_bytes(half, "big")
    return key.sign(to_be_signed)


def _half_len(curve: ec.EllipticCurve) -> int:
    return (curve.key_size + 7) // 8


# --- verification --------------------------------------------------------------------------


def verify1(
    message: bytes,
    key_lookup: KeyLookup | VerifyKey,
    *,
    external_aad: bytes = b"",
    max_size: int = DEFAULT_MAX_SIZE,
) -> Sign1:
    """Verify a COSE_Sign1 message (tag 18 or untagged) and return its content.

    `key_lookup` is a public key, or a callable from kid to public key (None if unknown).
    Raises `CoseError` with a ``reason`` from `REASONS`.
    """
    body = _decode_message(message, TAG_SIGN1, max_size)
    protected_raw, protected, unprotected = _headers(body[0], body[1], "protected")
    payload = _payload(body[2])
    signature = _bytes_field(body[3], "signature")
    alg, kid = _alg_and_kid(protected, unprotected)
    key = _resolve_key(key_lookup, kid)
    _check_fit(alg, key)
    signed_protected = protected_raw if protected else b""
    to_be_signed = _encode_sig_structure("Signature1", [signed_protected], external_aad, payload)
    _verify_signature(key, alg, signature, to_be_signed)
    return Sign1(protected=protected, unprotected=unprotected, kid=kid, alg=alg, payload=payload)


def verify_sign(
    message: bytes,
    key_lookup: KeyLookup | VerifyKey,
    *,
    external_aad: bytes = b"",
    max_size: int = DEFAULT_MAX_SIZE,
) -> SignMessage:
    """Verify a COSE_Sign message (tag 98 or untagged); every signer must verify."""
    body = _decode_message(message, TAG_SIGN, max_size)
    body_raw, body_protected, body_unprotected = _headers(body[0], body[1], "body protected")
    payload = _payload(body[2])
    entries = body[3]
    if not isinstance(entries, list | tuple) or not 0 < len(entries) <= MAX_SIGNERS:
        raise CoseError("malformed", f"signatures must be an array of 1 to {MAX_SIGNERS}")
    signed_body = body_raw if body_protected else b""
    signers = []
    for index, entry in enumerate(entries):
        if not isinstance(entry, list | tuple) or len(entry) != 3:
            raise CoseError("malformed", f"signature {index} is not a 3-element array")
        raw, protected, unprotected = _headers(entry[0], entry[1], f"signature {index} protected")
        signature = _bytes_field(entry[2], f"signature {index}")
        alg, kid = _alg_and_kid(protected, unprotected)
        key = _resolve_key(key_lookup, kid)
        _check_fit(alg, key)
        to_be_signed = _encode_sig_structure(
            "Signature", [signed_body, raw if protected else b""], external_aad, payload
        )
        _verify_signature(key, alg, signature, to_be_signed)
        signers.append(Signer(protected=protected, unprotected=unprotected, kid=kid, alg=alg))
    return SignMessage(
        protected=body_protected,
        unprotected=body_unprotected,
        payload=payload,
        signers=tuple(signers),
    )


_STRUCTURE_NAMES: Final = {TAG_SIGN1: "COSE_Sign1", TAG_SIGN: "COSE_Sign"}


def _decode_message(message: bytes, expected_tag: int, max_size: int) -> Sequence[Any]:
    expected = _STRUCTURE_NAMES[expected_tag]
    try:
        item = loads_strict(message, max_size=max_size, allowed_tags=_STRUCTURE_NAMES.keys())
    except DecodeError as exc:
        raise CoseError("malformed", f"not a {expected} message: {exc}") from None
    if isinstance(item, cbor2.CBORTag):
        if item.tag != expected_tag:
            found = _STRUCTURE_NAMES.get(item.tag, f"tag {item.tag}")
            raise CoseError("malformed", f"{found} message where {expected} was expected")
        item = item.value
    if not isinstance(item, list | tuple) or len(item) != 4:
        raise CoseError("malformed", f"{expected} must be a 4-element array")
    return item


def _decode_protected(raw: bytes) -> Mapping[Any, Any]:
    try:
        headers = loads_strict(raw, allowed_tags=())
    except DecodeError as exc:
        raise CoseError("malformed", f"protected header is not CBOR: {exc}") from None
    if not isinstance(headers, Mapping):
        raise CoseError("malformed", "protected header is not a map")
    return headers


def _headers(
    protected_item: object, unprotected_item: object, where: str
) -> tuple[bytes, dict[Label, Any], dict[Label, Any]]:
    raw = _bytes_field(protected_item, where)
    protected = _check_labels(_decode_protected(raw) if raw else {}, where)
    if not isinstance(unprotected_item, Mapping):
        raise CoseError("malformed", f"{where}: unprotected header is not a map")
    unprotected = _check_labels(unprotected_item, where)
    both = protected.keys() & unprotected.keys()
    if both:
        raise CoseError("malformed", f"{where}: labels {sorted(map(str, both))} in both headers")
    if HEADER_CRIT in protected or HEADER_CRIT in unprotected:
        raise CoseError("malformed", f"{where}: critical header parameters are not understood")
    return raw, protected, unprotected


def _check_labels(headers: Mapping[Any, Any], where: str) -> dict[Label, Any]:
    for label in headers:
        if isinstance(label, bool) or not isinstance(label, int | str):
            raise CoseError("malformed", f"{where}: header label {label!r} is not int or text")
    return dict(headers)


def _bytes_field(value: object, what: str) -> bytes:
    if not isinstance(value, bytes):
        raise CoseError("malformed", f"{what} is not a byte string")
    return value


def _payload(value: object) -> bytes:
    if value is None:
        raise CoseError("missing_payload", "detached payloads are not supported")
    return _bytes_field(value, "payload")


def _alg_and_kid(
    protected: Mapping[Label, Any], unprotected: Mapping[Label, Any]
) -> tuple[int, bytes]:
    if HEADER_ALG in protected:
        alg = protected[HEADER_ALG]
    elif HEADER_ALG in unprotected and not protected:
        alg = unprotected[HEADER_ALG]
    elif HEADER_ALG in unprotected:
        raise CoseError("malformed", "alg must be in the protected header")
    else:
        raise CoseError("malformed", "no alg header parameter")
    if isinstance(alg, bool) or alg not in _ALG_BY_NAME.values():
        raise CoseError("unsupported_alg", f"unsupported alg {alg!r}")
    kid = protected.get(HEADER_KID, unprotected.get(HEADER_KID))
    if kid is None:
        raise CoseError("malformed", "no kid header parameter")
    if not isinstance(kid, bytes) or not 0 < len(kid) <= MAX_KID_LEN:
        raise CoseError("malformed", f"kid must be a byte string of 1 to {MAX_KID_LEN} bytes")
    return alg, kid


def _resolve_key(key_lookup: KeyLookup | VerifyKey, kid: bytes) -> VerifyKey:
    if isinstance(key_lookup, _PUBLIC_KEY_TYPES):
        return key_lookup
    key = key_lookup(kid)
    if key is None:
        raise CoseError("unknown_kid", f"no key for kid {kid.hex()}")
    return key


def _check_fit(alg: int, key: VerifyKey) -> None:
    problem = _fit_problem(alg, key)
    if problem is not None:
        raise CoseError("alg_mismatch", problem)


def _fit_problem(alg: int, key: VerifyKey) -> str | None:
    if alg == ALG_EDDSA:
        if isinstance(key, ed25519.Ed25519PublicKey | ed448.Ed448PublicKey):
            return None
    elif alg in _ECDSA_HASH:
        if isinstance(key, ec.EllipticCurvePublicKey) and key.curve.name in _ALG_BY_CURVE:
            return None
    else:
        return f"unsupported alg {alg!r}"
    return f"alg {alg} does not fit a {_key_kind(key)} key"


def _key_kind(key: VerifyKey) -> str:
    if isinstance(key, ec.EllipticCurvePublicKey):
        return key.curve.name
    return "Ed25519" if isinstance(key, ed25519.Ed25519PublicKey) else "Ed448"


def _verify_signature(key: VerifyKey, alg: int, signature: bytes, to_be_signed: bytes) -> None:
    try:
        if isinstance(key, ec.EllipticCurvePublicKey):
            half = _half_len(key.curve)
            if len(signature) != 2 * half:
                raise CoseError(
                    "bad_signature", f"{key.curve.name} signature must be {2 * half} bytes"
                )
            r = int.from_bytes(signature[:half], "big")
            s = int.from_bytes(signature[half:], "big")
            der = encode_dss_signature(r, s)
            key.verify(der, to_be_signed, ec.ECDSA(_ECDSA_HASH[alg]()))
        else:
            key.verify(signature, to_be_signed)
    except InvalidSignature:
        raise CoseError("bad_signature", "signature does not verify") from None


# --- keys ----------------------------------------------------------------------------------


def _alg_for_private_key(key: SigningKey) -> int:
    if isinstance(key, ec.EllipticCurvePrivateKey):
        alg = _ALG_BY_CURVE.get(key.curve.name)
        if alg is None:
            raise ConfigError(f"curve {key.curve.name} is not supported")
        return alg
    if isinstance(key, ed25519.Ed25519PrivateKey | ed448.Ed448PrivateKey):
        return ALG_EDDSA
    raise ConfigError(f"{type(key).__name__} is not a supported signing key")


def generate_key(alg: str | int = "EdDSA") -> SigningKey:
    """A new private key: Ed25519 for EdDSA, P-256/384/521 for ES256/384/512."""
    number = _ALG_BY_NAME.get(alg) if isinstance(alg, str) else alg
    if number == ALG_EDDSA:
        return ed25519.Ed25519PrivateKey.generate()
    curve = _CURVE_BY_ALG.get(number) if isinstance(number, int) else None
    if curve is None:
        raise ConfigError(f"unsupported alg {alg!r}; choose one of {sorted(_ALG_BY_NAME)}")
    return ec.generate_private_key(curve())


def public_key_bytes(key: VerifyKey | SigningKey) -> bytes:
    """Raw public key: 32/57 bytes for Ed25519/Ed448, the uncompressed point for EC."""
    public = key.public_key() if isinstance(key, _PRIVATE_KEY_TYPES) else key
    if isinstance(public, ec.EllipticCurvePublicKey):
        return public.public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )
    return public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def public_key_from_bytes(data: bytes) -> VerifyKey:
    """The public key from `public_key_bytes`, its kind told by the length."""
    try:
        if len(data) == 32:
            return ed25519.Ed25519PublicKey.from_public_bytes(data)
        if len(data) == 57:
            return ed448.Ed448PublicKey.from_public_bytes(data)
        curve = _CURVE_BY_POINT_LEN.get(len(data))
        if curve is not None and data[:1] == b"\x04":
            return ec.EllipticCurvePublicKey.from_encoded_point(curve(), data)
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise ConfigError(f"invalid public key: {exc}") from None
    raise ConfigError(f"{len(data)} bytes are not a supported raw public key")


def public_key_to_pem(key: VerifyKey | SigningKey) -> bytes:
    """SubjectPublicKeyInfo PEM of the key (or of a private key's public half)."""
    public = key.public_key() if isinstance(key, _PRIVATE_KEY_TYPES) else key
    return public.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def public_key_from_pem(data: bytes) -> VerifyKey:
    """A supported public key from SubjectPublicKeyInfo PEM."""
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise ConfigError(f"invalid public key PEM: {exc}") from None
    if not isinstance(key, _PUBLIC_KEY_TYPES) or (
        isinstance(key, ec.EllipticCurvePublicKey) and key.curve.name not in _ALG_BY_CURVE
    ):
        raise ConfigError(f"{type(key).__name__} is not a supported public key")
    return key


def key_id(key: VerifyKey | SigningKey) -> bytes:
    """8-byte key id: the first bytes of SHA-256 over `public_key_bytes`."""
    return hashlib.sha256(public_key_bytes(key)).digest()[:8]


def save_private_key(path: str | os.PathLike[str], key: SigningKey) -> None:
    """Write `key` as unencrypted PKCS#8 PEM to a file readable by its owner only (0600)."""
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(path, flags, 0o600)
    except OSError as exc:
        raise ConfigError(f"cannot write private key {os.fspath(path)}: {exc.strerror}") from None
    with os.fdopen(fd, "wb") as file:
        os.fchmod(file.fileno(), 0o600)
        file.write(pem)


def load_private_key(path: str | os.PathLike[str]) -> SigningKey:
    """Read a PEM private key written by `save_private_key` (or any PKCS#8/SEC1 PEM)."""
    where = os.fspath(path)
    try:
        with Path(path).open("rb") as file:
            data = file.read(MAX_KEY_FILE_SIZE + 1)
    except OSError as exc:
        raise ConfigError(f"cannot read private key {where}: {exc.strerror}") from None
    if len(data) > MAX_KEY_FILE_SIZE:
        raise ConfigError(f"private key {where} is larger than {MAX_KEY_FILE_SIZE} bytes")
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise ConfigError(f"private key {where} cannot be loaded: {exc}") from None
    if not isinstance(key, _PRIVATE_KEY_TYPES) or (
        isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.name not in _ALG_BY_CURVE
    ):
        raise ConfigError(f"private key {where} is a {type(key).__name__}, not supported")
    return key
