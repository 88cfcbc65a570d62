"""Telemetry records: what the TCU tells the backend, one numbered fact at a time.

Theory of operation. A ``Record`` is produced by the reporting policy at a vehicle time
and numbered ``seq`` within the boot ``epoch`` (1, 2, 3, ... without gaps at production).
Its ``kind`` fixes the shape of its ``body``: snapshots and change events are keyed by the
catalogue's compact signal ids (``SIGNAL_IDS``), every other kind is the ``as_dict()`` of
the object it reports, keyed by text. The kind also fixes the drop class the outbox uses
when it must shed records: routine snapshots first, change events next, everything else
(verdicts, sessions, alarms, command results, service and link events) only at the hard
cap.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Final

from tcu.vehicle.catalogue import CATALOGUE, SIGNAL_BY_ID, SIGNAL_IDS, Value

KIND_CODES: Final[dict[str, int]] = {
    "snapshot": 0,
    "change": 1,
    "verdict": 2,
    "session": 3,
    "alarm": 4,
    "command_result": 5,
    "service": 6,
    "link": 7,
}
KIND_NAMES: Final[dict[int, str]] = {code: name for name, code in KIND_CODES.items()}
SIGNAL_KINDS: Final = frozenset({"snapshot", "change"})

DROP_SNAPSHOT: Final = 0
DROP_CHANGE: Final = 1
DROP_PROTECTED: Final = 2

BASE_SEQ: Final = 0
"""Key of a snapshot body's base sequence number (0: a full snapshot)."""

_VIN = re.compile(r"[A-HJ-NPR-Z0-9]{17}")


def is_vin(text: object) -> bool:
    """True for 17 characters of the ISO 3779 alphabet (digits, capitals without I, O, Q)."""
    return isinstance(text, str) and _VIN.fullmatch(text) is not None


def drop_class(kind: str) -> int:
    if kind == "snapshot":
        return DROP_SNAPSHOT
    if kind == "change":
        return DROP_CHANGE
    return DROP_PROTECTED


def wire_value(path: str, value: object) -> Value | None:
    """A signal's value as it goes on the wire: bool, float or enum text; None if unknown."""
    if value is None:
        return None
    kind = CATALOGUE[path].kind
    if kind == "bool":
        if isinstance(value, bool):
            return value
    elif kind == "float":
        if isinstance(value, int | float) and not isinstance(value, bool):
            number = float(value)
            return number if math.isfinite(number) else None
    elif isinstance(value, str) and value in CATALOGUE[path].values:
        return value
    raise ValueError(f"{path}: {value!r} is not a {kind} value")


def check_signal_value(signal_id: int, value: object) -> str:
    """Check a wire value against the catalogue; returns the path, ValueError names the problem."""
    path = SIGNAL_BY_ID.get(signal_id)
    if path is None:
        raise ValueError(f"unknown signal id {signal_id}")
    if value is None:
        return path
    spec = CATALOGUE[path]
    if spec.kind == "bool":
        ok = isinstance(value, bool)
    elif spec.kind == "float":
        ok = isinstance(value, float) and math.isfinite(value)
    else:
        ok = isinstance(value, str) and value in spec.values
    if not ok:
        raise ValueError(f"signal {signal_id} ({path}): {value!r} is not a {spec.kind} value")
    return path


def _uint(value: object, name: str, minimum: int = 0) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")


@dataclass(frozen=True, slots=True, kw_only=True)
class Record:
    """One numbered telemetry fact of one vehicle and boot epoch."""

    vin: str
    epoch: int
    seq: int
    t_ms: int
    kind: str
    body: Mapping[Any, Any]

    def __post_init__(self) -> None:
        if not is_vin(self.vin):
            raise ValueError(f"vin {self.vin!r} is not a 17-character ISO 3779 VIN")
        _uint(self.epoch, "epoch")
        _uint(self.seq, "seq", 1)
        _uint(self.t_ms, "t_ms")
        if self.kind not in KIND_CODES:
            raise ValueError(f"unknown record kind {self.kind!r}")
        if not isinstance(self.body, Mapping):
            raise ValueError(f"{self.kind} body must be a map")
        if self.kind in SIGNAL_KINDS:
            for key, value in self.body.items():
                _uint(key, f"{self.kind} body key")
                if key == BASE_SEQ:
                    if self.kind == "change":
                        raise ValueError("a change body has no base_seq (key 0)")
                    _uint(value, "snapshot base_seq")
                else:
                    check_signal_value(key, value)
            if self.kind == "snapshot" and BASE_SEQ not in self.body:
                raise ValueError("a snapshot body needs base_seq (key 0)")
        elif not all(isinstance(key, str) for key in self.body):
            raise ValueError(f"{self.kind} body keys must be text")
        object.__setattr__(self, "body", MappingProxyType(dict(self.body)))

    @property
    def code(self) -> int:
        return KIND_CODES[self.kind]

    @property
    def base_seq(self) -> int:
        """For a snapshot: 0 when full, else the seq of the snapshot it is a delta against."""
        if self.kind != "snapshot":
            raise ValueError(f"a {self.kind} record has no base_seq")
        base: int = self.body[BASE_SEQ]
        return base

    def signals(self) -> dict[str, Value | None]:
        """Snapshot or change body as signal path -> value."""
        if self.kind not in SIGNAL_KINDS:
            raise ValueError(f"a {self.kind} record carries no signals")
        return {SIGNAL_BY_ID[k]: v for k, v in self.body.items() if k != BASE_SEQ}


def signal_body(values: Mapping[str, Value | None]) -> dict[int, Value | None]:
    """Signal path -> value as a wire body keyed by signal id."""
    return {SIGNAL_IDS[path]: value for path, value in values.items()}
