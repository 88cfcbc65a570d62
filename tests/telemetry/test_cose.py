from __future__ import annotations

import base64
import json
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cbor2
import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from hypothesis import given, settings
from hypothesis import strategies as st

from tcu.errors import ConfigError, VerificationError
from tcu.telemetry.codec import cose
from tcu.telemetry.codec.cose import CoseError

FIXTURES = Path(__file__).resolve().parents[2] / ".." / "shared" / "fixtures" / "cose-wg"
VECTOR_DIRS = ("sign1-tests", "eddsa-examples", "ecdsa-examples")
VECTOR_FILES = sorted(path for d in VECTOR_DIRS for path in (FIXTURES / d).glob("*.json"))
ALG_NAMES = {"EdDSA": cose.ALG_EDDSA, "ES256": cose.ALG_ES256, "ES384": cose.ALG_ES384}
ALG_NAMES["ES512"] = cose.ALG_ES512
CURVES: dict[str, type[ec.EllipticCurve]] = {
    "P-256": ec.SECP256R1,
    "P-384": ec.SECP384R1,
    "P-521": ec.SECP521R1,
}
REASON_FOR_FAILURE = {
    "ChangeCBORTag": "malformed",
    "ChangeTag": "bad_signature",
    "ChangeAttr": "unsupported_alg",
    "AddProtected": "bad_signature",
    "RemoveProtected": "bad_signature",
}


def vector_params(only: Callable[[dict[str, Any]], bool] = lambda data: True) -> list[Any]:
    chosen = [path for path in VECTOR_FILES if only(json.loads(path.read_text()))]
    if not chosen:
        return [pytest.param(None, marks=pytest.mark.skip(reason="cose-wg fixtures absent"))]
    return [pytest.param(path, id=f"{path.parent.name}/{path.stem}") for path in chosen]


def is_sign1_pass(data: dict[str, Any]) -> bool:
    return "sign0" in data["input"] and not data.get("fail")


def body_of(message: bytes) -> Any:
    item = cbor2.loads(message)
    return item.value if isinstance(item, cbor2.CBORTag) else item


def b64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def jwk_field(jwk: dict[str, str], name: str) -> bytes:
    return bytes.fromhex(jwk[f"{name}_hex"]) if f"{name}_hex" in jwk else b64url(jwk[name])


def jwk_private_key(jwk: dict[str, str]) -> cose.SigningKey:
    d = jwk_field(jwk, "d")
    if jwk["kty"] == "OKP":
        if jwk["crv"] == "Ed25519":
            return ed25519.Ed25519PrivateKey.from_private_bytes(d)
        return ed448.Ed448PrivateKey.from_private_bytes(d)
    return ec.derive_private_key(int.from_bytes(d, "big"), CURVES[jwk["crv"]]())


def jwk_public_key(jwk: dict[str, str]) -> cose.VerifyKey:
    x = jwk_field(jwk, "x")
    if jwk["kty"] == "OKP":
        if jwk["crv"] == "Ed25519":
            return ed25519.Ed25519PublicKey.from_public_bytes(x)
        return ed448.Ed448PublicKey.from_public_bytes(x)
    y = jwk_field(jwk, "y")
    numbers = ec.EllipticCurvePublicNumbers(
        int.from_bytes(x, "big"), int.from_bytes(y, "big"), CURVES[jwk["crv"]]()
    )
    return numbers.public_key()


class Vector:
    def __init__(self, path: Path) -> None:
        data = json.loads(path.read_text())
        self.data = data
        inputs = data["input"]
        self.is_sign1 = "sign0" in inputs
        body = inputs["sign0"] if self.is_sign1 else inputs["sign"]
        self.signer = body if self.is_sign1 else body["signers"][0]
        self.jwk: dict[str, str] = self.signer["key"]
        self.kid = self.jwk["kid"].encode()
        self.external_aad = bytes.fromhex(body.get("external", ""))
        self.payload = inputs["plaintext"].encode()
        self.message = bytes.fromhex(data["output"]["cbor"])
        self.fail = bool(data.get("fail"))
        self.failures: dict[str, Any] = inputs.get("failures", {})
        intermediates = data["intermediates"]
        signer_intermediates = intermediates if self.is_sign1 else intermediates["signers"][0]
        self.to_be_signed = bytes.fromhex(signer_intermediates["ToBeSign_hex"])
        headers = self.signer.get("protected", {}) | self.signer.get("unprotected", {})
        self.alg = ALG_NAMES[headers["alg"]]

    def lookup(self) -> cose.KeyLookup:
        keys = {self.kid: jwk_public_key(self.jwk)}
        return keys.get

    def verify(self) -> Any:
        verify = cose.verify1 if self.is_sign1 else cose.verify_sign
        return verify(self.message, self.lookup(), external_aad=self.external_aad)


@pytest.fixture(params=vector_params())
def vector(request: pytest.FixtureRequest) -> Vector:
    return Vector(request.param)


def test_every_vector_directory_is_present() -> None:
    if not FIXTURES.is_dir():
        pytest.skip("cose-wg fixtures absent")
    for name in VECTOR_DIRS:
        assert list((FIXTURES / name).glob("*.json")), name


def test_vector_verifies_or_is_refused_for_its_failure(vector: Vector) -> None:
    if not vector.fail:
        result = vector.verify()
        assert result.payload == vector.payload
        signer = result if vector.is_sign1 else result.signers[0]
        assert signer.kid == vector.kid
        assert signer.alg == vector.alg
        return
    assert vector.failures, "a fail vector names its failure"
    (failure,) = vector.failures
    with pytest.raises(CoseError) as caught:
        vector.verify()
    assert caught.value.reason == REASON_FOR_FAILURE[failure]


def test_vector_sig_structure_matches_to_be_signed(vector: Vector) -> None:
    body = body_of(vector.message)
    if vector.is_sign1:
        built = cose.sig_structure(
            protected=body[0], payload=body[2], external_aad=vector.external_aad
        )
    else:
        built = cose.sig_structure(
            protected=body[0],
            payload=body[2],
            external_aad=vector.external_aad,
            sign_protected=body[3][0][0],
        )
    if vector.failures.keys() <= {"ChangeCBORTag", "RemoveCBORTag", "ChangeProtected"}:
        assert built == vector.to_be_signed
    else:
        assert built != vector.to_be_signed


def test_vector_of_the_other_structure_is_refused_as_malformed(vector: Vector) -> None:
    other = cose.verify_sign if vector.is_sign1 else cose.verify1
    with pytest.raises(CoseError) as caught:
        other(vector.message, vector.lookup(), external_aad=vector.external_aad)
    assert caught.value.reason == "malformed"
    if not vector.is_sign1:
        assert "COSE_Sign message where COSE_Sign1 was expected" in str(caught.value)


@pytest.mark.parametrize("path", vector_params(is_sign1_pass))
def test_vector_key_resigns_to_a_message_the_vector_key_verifies(path: Path) -> None:
    vector = Vector(path)
    protected = vector.signer.get("protected", {})
    message = cose.sign1(
        vector.payload,
        jwk_private_key(vector.jwk),
        kid=vector.kid,
        external_aad=vector.external_aad,
        alg=vector.alg,
        content_type=protected.get("ctyp"),
    )
    result = cose.verify1(message, vector.lookup(), external_aad=vector.external_aad)
    assert result.payload == vector.payload
    if vector.alg == cose.ALG_EDDSA:
        assert message == vector.message
    else:
        assert len(body_of(message)[3]) == len(body_of(vector.message)[3])


def test_empty_protected_map_is_signed_as_a_zero_length_bstr() -> None:
    path = FIXTURES / "sign1-tests" / "sign-pass-01.json"
    if not path.is_file():
        pytest.skip("cose-wg fixtures absent")
    vector = Vector(path)
    body = body_of(vector.message)
    assert body[0] == b"\xa0"
    key = jwk_public_key(vector.jwk)
    assert isinstance(key, ec.EllipticCurvePublicKey)
    signature = body[3]
    der = encode_dss_signature(
        int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
    )
    as_sent = cbor2.dumps(["Signature1", b"\xa0", b"", body[2]])
    with pytest.raises(InvalidSignature):
        key.verify(der, as_sent, ec.ECDSA(hashes.SHA256()))
    assert cose.verify1(vector.message, key).payload == vector.payload


# --- our own messages ----------------------------------------------------------------------

ALGS = ["EdDSA", "ES256", "ES384", "ES512"]


@pytest.fixture(scope="module")
def keys() -> dict[str, cose.SigningKey]:
    return {name: cose.generate_key(name) for name in ALGS}


@pytest.mark.parametrize("alg", ALGS)
def test_round_trip(alg: str, keys: dict[str, cose.SigningKey]) -> None:
    key = keys[alg]
    kid = cose.key_id(key)
    message = cose.sign1(b"telemetry", key, kid=kid, external_aad=b"VIN1")
    assert message[:1] == b"\xd2"
    registry = {kid: key.public_key()}
    result = cose.verify1(message, registry.get, external_aad=b"VIN1")
    assert result.payload == b"telemetry"
    assert result.kid == kid
    assert result.alg == ALG_NAMES[alg]
    assert dict(result.protected) == {1: ALG_NAMES[alg]}
    assert dict(result.unprotected) == {4: kid}
    with pytest.raises(TypeError):
        result.protected[1] = 0  # type: ignore[index]
    with pytest.raises(CoseError) as caught:
        cose.verify1(message, registry.get, external_aad=b"VIN2")
    assert caught.value.reason == "bad_signature"


@pytest.mark.parametrize("alg", ["EdDSA", "ES256"])
def test_every_flipped_bit_is_refused(alg: str, keys: dict[str, cose.SigningKey]) -> None:
    key = keys[alg]
    message = cose.sign1(b"soc=81", key, kid=b"k1")
    lookup = {b"k1": key.public_key()}.get
    cose.verify1(message, lookup)
    reasons = set()
    for index in range(len(message)):
        for bit in range(8):
            tampered = bytearray(message)
            tampered[index] ^= 1 << bit
            with pytest.raises(CoseError) as caught:
                cose.verify1(bytes(tampered), lookup)
            reasons.add(caught.value.reason)
    assert {"malformed", "bad_signature", "unknown_kid"} <= reasons
    assert reasons <= set(cose.REASONS)


def test_swapped_kid_is_refused(keys: dict[str, cose.SigningKey]) -> None:
    key_a, key_b = cose.generate_key("EdDSA"), cose.generate_key("EdDSA")
    registry = {b"a": key_a.public_key(), b"b": key_b.public_key()}
    message = cose.sign1(b"payload", key_a, kid=b"b")
    with pytest.raises(CoseError) as caught:
        cose.verify1(message, registry.get)
    assert caught.value.reason == "bad_signature"
    body = cbor2.loads(cose.sign1(b"payload", key_a, kid=b"a")).value
    swapped = cbor2.dumps(cbor2.CBORTag(18, [body[0], {4: b"b"}, body[2], body[3]]))
    with pytest.raises(CoseError) as caught:
        cose.verify1(swapped, registry.get)
    assert caught.value.reason == "bad_signature"


def test_unknown_kid_is_refused(keys: dict[str, cose.SigningKey]) -> None:
    message = cose.sign1(b"payload", keys["EdDSA"], kid=b"nobody")
    with pytest.raises(CoseError) as caught:
        cose.verify1(message, dict[bytes, cose.VerifyKey]().get)
    assert caught.value.reason == "unknown_kid"
    assert isinstance(caught.value, VerificationError)


@pytest.mark.parametrize(
    ("signed_with", "verified_with"),
    [("ES256", "EdDSA"), ("EdDSA", "ES256"), ("ES384", "EdDSA")],
)
def test_alg_that_does_not_fit_the_key_is_refused(
    signed_with: str, verified_with: str, keys: dict[str, cose.SigningKey]
) -> None:
    message = cose.sign1(b"payload", keys[signed_with], kid=b"k")
    with pytest.raises(CoseError) as caught:
        cose.verify1(message, keys[verified_with].public_key())
    assert caught.value.reason == "alg_mismatch"


def forge(protected: dict[Any, Any] | bytes, unprotected: dict[Any, Any], **kw: Any) -> bytes:
    raw = protected if isinstance(protected, bytes) else cbor2.dumps(protected)
    payload = kw.get("payload", b"payload")
    signature = kw.get("signature", b"\x00" * 64)
    return cbor2.dumps(cbor2.CBORTag(18, [raw, unprotected, payload, signature]))


def reason_of(message: bytes, key: cose.VerifyKey) -> str:
    with pytest.raises(CoseError) as caught:
        cose.verify1(message, key)
    return caught.value.reason


def test_wrong_alg_in_the_header_is_refused(keys: dict[str, cose.SigningKey]) -> None:
    ed_key = keys["EdDSA"].public_key()
    assert reason_of(forge({1: cose.ALG_ES256}, {4: b"k"}), ed_key) == "alg_mismatch"
    assert reason_of(forge({1: -257}, {4: b"k"}), ed_key) == "unsupported_alg"
    assert reason_of(forge({1: True}, {4: b"k"}), ed_key) == "unsupported_alg"
    assert reason_of(forge({1: "EdDSA"}, {4: b"k"}), ed_key) == "unsupported_alg"


def test_header_rules(keys: dict[str, cose.SigningKey]) -> None:
    ed_key = keys["EdDSA"].public_key()
    cases = {
        "alg in both buckets": forge({1: -8}, {1: -8, 4: b"k"}),
        "alg unprotected beside protected params": forge({3: 0}, {1: -8, 4: b"k"}),
        "no alg": forge({}, {4: b"k"}),
        "no kid": forge({1: -8}, {}),
        "kid not bytes": forge({1: -8}, {4: "k"}),
        "crit": forge({1: -8, 2: [99], 99: 1}, {4: b"k"}),
        "duplicate protected label": forge(bytes.fromhex("a201270126"), {4: b"k"}),
        "protected not a map": forge(cbor2.dumps([1]), {4: b"k"}),
        "bool label": forge({1: -8}, {True: 1, 4: b"k"}),
        "payload not bytes": forge({1: -8}, {4: b"k"}, payload="text"),
        "signature not bytes": forge({1: -8}, {4: b"k"}, signature=[]),
        "three elements": cbor2.dumps(cbor2.CBORTag(18, [b"", {}, b""])),
        "not an array": cbor2.dumps(cbor2.CBORTag(18, {})),
        "trailing byte": forge({1: -8}, {4: b"k"}) + b"\x00",
        "indefinite array": b"\xd2\x9f" + forge({1: -8}, {4: b"k"})[2:] + b"\xff",
    }
    for name, message in cases.items():
        assert reason_of(message, ed_key) == "malformed", name


def test_detached_payload_is_refused(keys: dict[str, cose.SigningKey]) -> None:
    message = forge({1: -8}, {4: b"k"}, payload=None)
    assert reason_of(message, keys["EdDSA"].public_key()) == "missing_payload"


def test_ecdsa_signature_of_the_wrong_length_is_refused(keys: dict[str, cose.SigningKey]) -> None:
    body = cbor2.loads(cose.sign1(b"payload", keys["ES256"], kid=b"k")).value
    for signature in (body[3][:-1], body[3] + b"\x00", b"\x00" + body[3][:-1]):
        message = forge(body[0], dict(body[1]), signature=signature)
        assert reason_of(message, keys["ES256"].public_key()) == "bad_signature"


def test_sign_refuses_bad_arguments(keys: dict[str, cose.SigningKey]) -> None:
    with pytest.raises(ConfigError, match="does not fit"):
        cose.sign1(b"p", keys["EdDSA"], kid=b"k", alg=cose.ALG_ES256)
    with pytest.raises(ConfigError, match="does not fit"):
        cose.sign1(b"p", keys["ES256"], kid=b"k", alg=-999)
    with pytest.raises(ConfigError, match="kid"):
        cose.sign1(b"p", keys["EdDSA"], kid=b"")
    with pytest.raises(ConfigError, match="curve"):
        cose.sign1(b"p", ec.generate_private_key(ec.SECP256K1()), kid=b"k")


def test_message_size_limit(keys: dict[str, cose.SigningKey]) -> None:
    message = cose.sign1(b"x" * 2000, keys["EdDSA"], kid=b"k")
    cose.verify1(message, keys["EdDSA"].public_key(), max_size=len(message))
    with pytest.raises(CoseError) as caught:
        cose.verify1(message, keys["EdDSA"].public_key(), max_size=len(message) - 1)
    assert caught.value.reason == "malformed"


@given(payload=st.binary(max_size=300), aad=st.binary(max_size=40))
@settings(max_examples=50, deadline=None)
def test_any_payload_round_trips(payload: bytes, aad: bytes) -> None:
    key = ed25519.Ed25519PrivateKey.from_private_bytes(b"\x07" * 32)
    message = cose.sign1(payload, key, kid=b"k", external_aad=aad)
    assert cose.verify1(message, key.public_key(), external_aad=aad).payload == payload


@given(st.binary(max_size=200))
@settings(max_examples=300)
def test_arbitrary_bytes_raise_only_cose_errors(data: bytes) -> None:
    key = ed25519.Ed25519PrivateKey.from_private_bytes(b"\x07" * 32).public_key()
    with pytest.raises(CoseError) as caught:
        cose.verify1(data, key)
    assert caught.value.reason in cose.REASONS


# --- keys ----------------------------------------------------------------------------------


@pytest.mark.parametrize("alg", ALGS)
def test_private_key_file_round_trip_with_mode_0600(
    alg: str, keys: dict[str, cose.SigningKey], tmp_path: Path
) -> None:
    path = tmp_path / "device.pem"
    path.write_bytes(b"old")
    path.chmod(0o644)
    cose.save_private_key(path, keys[alg])
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    loaded = cose.load_private_key(path)
    assert cose.public_key_bytes(loaded) == cose.public_key_bytes(keys[alg])
    message = cose.sign1(b"p", loaded, kid=b"k")
    cose.verify1(message, keys[alg].public_key())


def test_new_private_key_file_is_created_0600(tmp_path: Path) -> None:
    path = tmp_path / "fresh.pem"
    cose.save_private_key(path, cose.generate_key())
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_private_key_refusals(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        cose.load_private_key(tmp_path / "missing.pem")
    garbage = tmp_path / "garbage.pem"
    garbage.write_bytes(b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")
    with pytest.raises(ConfigError, match="cannot be loaded"):
        cose.load_private_key(garbage)
    rsa_path = tmp_path / "rsa.pem"
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    rsa_path.write_bytes(
        rsa_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    with pytest.raises(ConfigError, match="not supported"):
        cose.load_private_key(rsa_path)
    huge = tmp_path / "huge.pem"
    huge.write_bytes(b"x" * (cose.MAX_KEY_FILE_SIZE + 1))
    with pytest.raises(ConfigError, match="larger than"):
        cose.load_private_key(huge)
    with pytest.raises(ConfigError, match="cannot write"):
        cose.save_private_key(tmp_path / "no-such-dir" / "k.pem", cose.generate_key())


@pytest.mark.parametrize("alg", ALGS)
def test_public_key_bytes_and_pem_round_trip(alg: str, keys: dict[str, cose.SigningKey]) -> None:
    public = keys[alg].public_key()
    raw = cose.public_key_bytes(public)
    assert cose.public_key_bytes(cose.public_key_from_bytes(raw)) == raw
    pem = cose.public_key_to_pem(keys[alg])
    assert cose.public_key_bytes(cose.public_key_from_pem(pem)) == raw
    assert cose.key_id(public) == cose.key_id(keys[alg])
    assert len(cose.key_id(public)) == 8


def test_key_ids_differ_between_keys() -> None:
    ids = {cose.key_id(cose.generate_key(alg)) for alg in ALGS * 2}
    assert len(ids) == len(ALGS) * 2


def test_ed448_raw_key_round_trips() -> None:
    key = ed448.Ed448PrivateKey.generate()
    raw = cose.public_key_bytes(key)
    assert len(raw) == 57
    message = cose.sign1(b"p", key, kid=b"k")
    cose.verify1(message, cose.public_key_from_bytes(raw))


@pytest.mark.parametrize(
    "data",
    [b"", b"\x00" * 31, b"\x05" + b"\x00" * 64, b"\x04" + b"\x00" * 64, b"\x04" + b"\x01" * 96],
)
def test_public_key_from_bytes_refuses(data: bytes) -> None:
    with pytest.raises(ConfigError):
        cose.public_key_from_bytes(data)


def test_public_key_from_pem_refuses() -> None:
    with pytest.raises(ConfigError, match="invalid public key PEM"):
        cose.public_key_from_pem(b"not a pem")
    rsa_pem = (
        rsa.generate_private_key(public_exponent=65537, key_size=1024)
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    with pytest.raises(ConfigError, match="not a supported public key"):
        cose.public_key_from_pem(rsa_pem)


def test_generate_key_refuses_unknown_alg() -> None:
    with pytest.raises(ConfigError, match="unsupported alg"):
        cose.generate_key("PS256")
    with pytest.raises(ConfigError, match="unsupported alg"):
        cose.generate_key(-999)
    assert isinstance(cose.generate_key(cose.ALG_ES256), ec.EllipticCurvePrivateKey)


def test_result_dataclasses_validate() -> None:
    make: Callable[..., Any] = cose.Sign1
    with pytest.raises(ValueError, match="unsupported COSE alg"):
        make(protected={}, unprotected={}, kid=b"k", alg=-999, payload=b"")
    with pytest.raises(TypeError):
        make(protected={}, unprotected={}, kid="k", alg=-8, payload=b"")
    with pytest.raises(ValueError, match="at least one signer"):
        cose.SignMessage(protected={}, unprotected={}, payload=b"", signers=())
