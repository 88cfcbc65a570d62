"""Strict CBOR decoding for bytes that arrive from the network.

Theory of operation: a message is decoded in two passes. The first is a small pre-scan that
walks the item heads without building any object: it refuses input larger than ``max_size``,
nesting deeper than ``max_depth`` (arrays, maps and tags all count), more than ``max_items``
data items, indefinite lengths, declared lengths larger than the bytes that remain, tags
outside the caller's set, simple values other than false/true/null, truncated input and
trailing bytes after the single top-level item. Only a message that passes is handed to
cbor2, with its own guards switched on as a second line (no indefinite lengths, no
duplicate map keys, the same depth bound, strict UTF-8), so nothing is allocated for a
length the input cannot hold. Every refusal is a `DecodeError`.

cbor2 returns the content of a tag as immutable values (tuples and frozendicts), so
callers should test against `Sequence` and `Mapping` — the ``require_*`` helpers do.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import Any

import cbor2

from tcu.errors import DecodeError

__all__ = [
    "DEFAULT_MAX_DEPTH",
    "DEFAULT_MAX_ITEMS",
    "DEFAULT_MAX_SIZE",
    "DEFAULT_TAGS",
    "loads_strict",
    "require_array",
    "require_bool",
    "require_bytes",
    "require_int",
    "require_map",
    "require_str",
]

DEFAULT_MAX_SIZE = 64 * 1024
DEFAULT_MAX_DEPTH = 16
DEFAULT_MAX_ITEMS = 10_000
DEFAULT_TAGS: frozenset[int] = frozenset({18})

_FALSE_TRUE_NULL = frozenset({20, 21, 22})
_MAJOR_NAMES = ("uint", "nint", "bytes", "text", "array", "map", "tag", "simple/float")


def loads_strict(
    data: bytes | bytearray | memoryview,
    *,
    max_size: int = DEFAULT_MAX_SIZE,
    max_depth: int = DEFAULT_MAX_DEPTH,
    max_items: int = DEFAULT_MAX_ITEMS,
    allowed_tags: Collection[int] = DEFAULT_TAGS,
) -> Any:
    """Decode exactly one well-formed CBOR item from `data`, or raise `DecodeError`."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise DecodeError(f"CBOR input must be bytes, not {type(data).__name__}")
    size = memoryview(data).nbytes
    if size > max_size:
        raise DecodeError(f"CBOR input of {size} bytes exceeds the limit of {max_size}")
    raw = bytes(data)
    _prescan(raw, max_depth=max_depth, max_items=max_items, allowed_tags=frozenset(allowed_tags))
    try:
        return cbor2.loads(
            raw,
            max_depth=max_depth,
            allow_indefinite=False,
            allow_duplicate_keys=False,
            str_errors="strict",
        )
    except (cbor2.CBORDecodeError, ValueError, TypeError, OverflowError) as exc:
        raise DecodeError(f"CBOR input refused: {exc}") from None


def _prescan(data: bytes, *, max_depth: int, max_items: int, allowed_tags: frozenset[int]) -> None:
    end = len(data)
    pos = 0
    items = 0
    open_children: list[int] = []
    while True:
        if pos >= end:
            raise DecodeError(f"CBOR input truncated at offset {pos}")
        start = pos
        initial = data[pos]
        pos += 1
        major, info = initial >> 5, initial & 0x1F
        if info < 24:
            arg = info
        elif info < 28:
            width = 1 << (info - 24)
            if pos + width > end:
                raise DecodeError(f"CBOR input truncated at offset {start}")
            arg = int.from_bytes(data[pos : pos + width], "big")
            pos += width
        elif info == 31:
            if major in (2, 3, 4, 5):
                raise DecodeError(f"CBOR indefinite-length item at offset {start} is not accepted")
            if major == 7:
                raise DecodeError(f"CBOR break byte at offset {start} outside an item")
            raise DecodeError(f"CBOR {_MAJOR_NAMES[major]} at offset {start} is malformed")
        else:
            raise DecodeError(f"CBOR reserved additional information {info} at offset {start}")

        items += 1
        if items > max_items:
            raise DecodeError(f"CBOR input holds more than {max_items} items")

        children = 0
        if major in (2, 3):
            if arg > end - pos:
                raise DecodeError(
                    f"CBOR {_MAJOR_NAMES[major]} at offset {start} declares {arg} bytes,"
                    f" only {end - pos} remain"
                )
            pos += arg
        elif major in (4, 5):
            children = arg if major == 4 else 2 * arg
            if children > end - pos:
                raise DecodeError(
                    f"CBOR {_MAJOR_NAMES[major]} at offset {start} declares {arg} entries,"
                    f" only {end - pos} bytes remain"
                )
        elif major == 6:
            if arg not in allowed_tags:
                raise DecodeError(f"CBOR tag {arg} at offset {start} is not accepted")
            children = 1
        elif major == 7 and info == 24:
            raise DecodeError(f"CBOR two-byte simple value {arg} at offset {start} is not accepted")
        elif major == 7 and info < 24 and info not in _FALSE_TRUE_NULL:
            raise DecodeError(f"CBOR simple value {arg} at offset {start} is not accepted")

        if major in (4, 5, 6):
            if len(open_children) >= max_depth:
                raise DecodeError(f"CBOR nesting deeper than {max_depth} at offset {start}")
            if children:
                open_children.append(children)
                continue

        while open_children:
            open_children[-1] -= 1
            if open_children[-1]:
                break
            open_children.pop()
        if not open_children:
            break

    if pos != end:
        raise DecodeError(f"CBOR input has {end - pos} trailing bytes after offset {pos}")


def _kind(value: object) -> str:
    return type(value).__name__


def require_int(
    value: object, field: str, *, minimum: int | None = None, maximum: int | None = None
) -> int:
    """`value` as an int (never a bool), optionally within [minimum, maximum]."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise DecodeError(f"{field}: expected an integer, got {_kind(value)}")
    if minimum is not None and value < minimum:
        raise DecodeError(f"{field}: {value} is below the minimum {minimum}")
    if maximum is not None and value > maximum:
        raise DecodeError(f"{field}: {value} is above the maximum {maximum}")
    return value


def require_bool(value: object, field: str) -> bool:
    """`value` as a bool (never 0 or 1)."""
    if not isinstance(value, bool):
        raise DecodeError(f"{field}: expected a boolean, got {_kind(value)}")
    return value


def require_bytes(value: object, field: str, *, max_len: int | None = None) -> bytes:
    """`value` as a byte string, optionally no longer than `max_len`."""
    if not isinstance(value, bytes):
        raise DecodeError(f"{field}: expected a byte string, got {_kind(value)}")
    if max_len is not None and len(value) > max_len:
        raise DecodeError(f"{field}: {len(value)} bytes exceeds the limit of {max_len}")
    return value


def require_str(value: object, field: str, *, max_len: int | None = None) -> str:
    """`value` as a text string, optionally no longer than `max_len` characters."""
    if not isinstance(value, str):
        raise DecodeError(f"{field}: expected a text string, got {_kind(value)}")
    if max_len is not None and len(value) > max_len:
        raise DecodeError(f"{field}: {len(value)} characters exceeds the limit of {max_len}")
    return value


def require_map(value: object, field: str) -> Mapping[Any, Any]:
    """`value` as a map (a dict, or the frozendict cbor2 builds inside a tag)."""
    if not isinstance(value, Mapping):
        raise DecodeError(f"{field}: expected a map, got {_kind(value)}")
    return value


def require_array(value: object, field: str, *, length: int | None = None) -> Sequence[Any]:
    """`value` as an array (a list, or the tuple cbor2 builds inside a tag)."""
    if not isinstance(value, list | tuple):
        raise DecodeError(f"{field}: expected an array, got {_kind(value)}")
    if length is not None and len(value) != length:
        raise DecodeError(f"{field}: expected {length} elements, got {len(value)}")
    return value
