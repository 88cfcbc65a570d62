from __future__ import annotations

import contextlib
import math
from typing import Any

import cbor2
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tcu.errors import DecodeError
from tcu.telemetry.codec.cbor_strict import (
    DEFAULT_MAX_DEPTH,
    loads_strict,
    require_array,
    require_bool,
    require_bytes,
    require_int,
    require_map,
    require_str,
)


def nested_arrays(depth: int) -> bytes:
    return b"\x81" * depth + b"\x01"


@pytest.mark.parametrize(
    ("hex_input", "message"),
    [
        pytest.param("9f0102ff", "indefinite", id="indefinite-array"),
        pytest.param("bf0102ff", "indefinite", id="indefinite-map"),
        pytest.param("5f42010243030405ff", "indefinite", id="indefinite-bytes"),
        pytest.param("7f61616162ff", "indefinite", id="indefinite-text"),
        pytest.param("8201", "declares 2 entries", id="truncated-array"),
        pytest.param("a20102", "declares 2 entries", id="truncated-map"),
        pytest.param("19", "truncated", id="truncated-head"),
        pytest.param("", "truncated", id="empty"),
        pytest.param("0102", "trailing", id="trailing-garbage"),
        pytest.param("a20101", "declares 2 entries", id="map-missing-value"),
        pytest.param("a201010102", "Duplicate map key", id="duplicate-int-keys"),
        pytest.param("a2616101616102", "Duplicate map key", id="duplicate-text-keys"),
        pytest.param("a1010200", "1 trailing", id="map-then-trailing"),
        pytest.param("5b7fffffffffffffff616263", "declares 9223372036854775807", id="huge-bstr"),
        pytest.param("9b8000000000000000010203", "declares 9223372036854775808", id="huge-array"),
        pytest.param("bb4000000000000000010203", "declares 4611686018427387904", id="huge-map"),
        pytest.param("7b7fffffffffffffff616263", "declares 9223372036854775807", id="huge-text"),
        pytest.param("c249010000000000000000", "tag 2", id="bignum-tag"),
        pytest.param("d9006280", "tag 98", id="cose-sign-tag-not-allowed"),
        pytest.param("f7", "simple value 23", id="undefined"),
        pytest.param("f0", "simple value 16", id="unassigned-simple"),
        pytest.param("f814", "two-byte simple value 20", id="two-byte-simple-false"),
        pytest.param("ff", "break", id="lone-break"),
        pytest.param("1c", "reserved", id="reserved-info-28"),
        pytest.param("1f", "malformed", id="uint-info-31"),
        pytest.param("62c328", "text", id="invalid-utf8"),
    ],
)
def test_refused(hex_input: str, message: str) -> None:
    with pytest.raises(DecodeError, match=message):
        loads_strict(bytes.fromhex(hex_input))


def test_nesting_ten_thousand_deep_is_refused_by_the_prescan() -> None:
    with pytest.raises(DecodeError, match=f"deeper than {DEFAULT_MAX_DEPTH}"):
        loads_strict(nested_arrays(10_000), max_size=1 << 20)


@pytest.mark.parametrize("opener", [b"\x81", b"\xa1\x00", b"\xd2"], ids=["array", "map", "tag"])
def test_depth_limit_is_exact(opener: bytes) -> None:
    def build(depth: int) -> bytes:
        return opener * depth + b"\x01"

    value = loads_strict(build(5), max_depth=5)
    for _ in range(5):
        value = value.value if isinstance(value, cbor2.CBORTag) else next(iter_children(value))
    assert value == 1
    with pytest.raises(DecodeError, match="deeper than 5"):
        loads_strict(build(6), max_depth=5)


def iter_children(value: Any) -> Any:
    return iter(value.values()) if isinstance(value, dict | cbor2.frozendict) else iter(value)


def test_empty_container_counts_for_depth() -> None:
    assert loads_strict(b"\x81\x80", max_depth=2) == [[]]
    with pytest.raises(DecodeError, match="deeper than 1"):
        loads_strict(b"\x81\x80", max_depth=1)


def test_size_is_checked_before_decoding() -> None:
    data = cbor2.dumps(b"x" * 100)
    assert loads_strict(data, max_size=len(data)) == b"x" * 100
    with pytest.raises(DecodeError, match="exceeds the limit"):
        loads_strict(data, max_size=len(data) - 1)


def test_item_count_limit() -> None:
    data = cbor2.dumps(list(range(9)))
    assert loads_strict(data, max_items=10) == list(range(9))
    with pytest.raises(DecodeError, match="more than 9 items"):
        loads_strict(data, max_items=9)


def test_tags_follow_the_callers_set() -> None:
    signed = cbor2.dumps(cbor2.CBORTag(18, [b"", {}, b"p", b"s"]))
    assert loads_strict(signed).tag == 18
    with pytest.raises(DecodeError, match="tag 18"):
        loads_strict(signed, allowed_tags=())
    multi = cbor2.dumps(cbor2.CBORTag(98, [b"", {}, b"p", []]))
    assert loads_strict(multi, allowed_tags={18, 98}).tag == 98


def test_false_true_null_and_floats_are_accepted() -> None:
    assert loads_strict(cbor2.dumps([False, True, None, 1.5, -0.0])) == [
        False,
        True,
        None,
        1.5,
        -0.0,
    ]
    assert loads_strict(bytes.fromhex("f93e00")) == 1.5


def test_bytes_like_inputs_and_wrong_types() -> None:
    data = cbor2.dumps({"a": 1})
    assert loads_strict(bytearray(data)) == {"a": 1}
    assert loads_strict(memoryview(data)) == {"a": 1}
    with pytest.raises(DecodeError, match="must be bytes"):
        loads_strict("a1616101")  # type: ignore[arg-type]


def test_require_int_never_accepts_a_bool() -> None:
    decoded = loads_strict(cbor2.dumps({"count": True, "n": 7}))
    with pytest.raises(DecodeError, match="count: expected an integer, got bool"):
        require_int(decoded["count"], "count")
    assert require_int(decoded["n"], "n", minimum=0, maximum=7) == 7
    with pytest.raises(DecodeError, match="above the maximum"):
        require_int(8, "n", maximum=7)
    with pytest.raises(DecodeError, match="below the minimum"):
        require_int(-1, "n", minimum=0)
    with pytest.raises(DecodeError, match="expected an integer, got float"):
        require_int(1.0, "n")


def test_require_bool_never_accepts_an_int() -> None:
    assert require_bool(False, "flag") is False
    with pytest.raises(DecodeError, match="flag: expected a boolean, got int"):
        require_bool(1, "flag")


def test_require_bytes_str_map_array() -> None:
    assert require_bytes(b"ab", "b", max_len=2) == b"ab"
    with pytest.raises(DecodeError, match="exceeds the limit of 1"):
        require_bytes(b"ab", "b", max_len=1)
    with pytest.raises(DecodeError, match="expected a byte string, got str"):
        require_bytes("ab", "b")
    assert require_str("ab", "s", max_len=2) == "ab"
    with pytest.raises(DecodeError, match="s: expected a text string, got bytes"):
        require_str(b"ab", "s")
    with pytest.raises(DecodeError, match="characters exceeds"):
        require_str("abc", "s", max_len=2)
    tagged = loads_strict(cbor2.dumps(cbor2.CBORTag(18, [{1: 2}, [3]])))
    assert require_map(tagged.value[0], "m") == {1: 2}
    assert list(require_array(tagged.value[1], "a", length=1)) == [3]
    with pytest.raises(DecodeError, match="m: expected a map, got list"):
        require_map([], "m")
    with pytest.raises(DecodeError, match="expected 2 elements, got 1"):
        require_array([1], "a", length=2)
    with pytest.raises(DecodeError, match="expected an array, got dict"):
        require_array({}, "a")


# --- properties ----------------------------------------------------------------------------

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**64), max_value=2**64 - 1)
    | st.floats(allow_nan=False)
    | st.binary(max_size=40)
    | st.text(max_size=40)
)
keys = (
    st.integers(min_value=-(2**64), max_value=2**64 - 1)
    | st.text(max_size=12)
    | st.binary(max_size=12)
)
values = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=6) | st.dictionaries(keys, children, max_size=6),
    max_leaves=20,
)


def depth_of(value: Any) -> int:
    if isinstance(value, list):
        return 1 + max((depth_of(item) for item in value), default=0)
    if isinstance(value, dict):
        return 1 + max((depth_of(item) for item in value.values()), default=0)
    return 0


def same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return a == b and math.copysign(1.0, a) == math.copysign(1.0, b)
    if type(a) is not type(b):
        return False
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    return bool(a == b)


@given(values)
@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
def test_well_formed_values_round_trip(value: Any) -> None:
    data = cbor2.dumps(value)
    if depth_of(value) > DEFAULT_MAX_DEPTH:
        with pytest.raises(DecodeError):
            loads_strict(data)
        return
    assert same(loads_strict(data), value)


def mutated(data: bytes, position: int, byte: int, cut: int) -> bytes:
    if not data:
        return bytes([byte])
    position %= len(data)
    flipped = data[:position] + bytes([byte]) + data[position + 1 :]
    return flipped[: max(0, len(flipped) - cut)]


hostile_inputs = st.binary(max_size=200) | st.builds(
    mutated,
    values.map(cbor2.dumps),
    st.integers(min_value=0, max_value=10_000),
    st.integers(min_value=0, max_value=255),
    st.integers(min_value=0, max_value=3),
)


@given(hostile_inputs)
@settings(max_examples=500, suppress_health_check=[HealthCheck.too_slow])
def test_arbitrary_bytes_decode_or_raise_decode_error(data: bytes) -> None:
    with contextlib.suppress(DecodeError):
        loads_strict(data, allowed_tags={0, 1, 2, 3, 18, 24, 32, 258})
