"""Mapping from DBC signals to the signal catalogue.

A mapping file (YAML) binds each catalogue path to one DBC signal, with an optional
linear transform, a value map and a staleness timeout::

    version: 1
    dbc: van.dbc                  # optional, relative to the mapping file
    signals:
      - path: Vehicle.Body.Hood.IsOpen
        message: BCM_Body         # DBC message name, or frame id (0x3A0)
        signal: BCM_BonnetOpen
        stale_after: 1.0          # seconds without a refresh before the value is unknown
        scale: 1.0                # optional: value = physical * scale + offset
        offset: 0.0
        values: {0: false, 1: true}   # optional: physical value -> catalogue value
        invalid: [2047]           # optional: physical values that mean "not available"
    requests:                     # optional: the frame the TCU itself sends
      message: TCU_Request
      type_signal: TCU_ReqType
      types: {lock: 1, unlock: 2, ...}
      argument_signal: TCU_ReqArgument
      counter_signal: TCU_ReqCounter

Loading checks every field against the catalogue and the DBC and raises
``ConfigError`` naming the file and the field (``van.mapping.yaml: signals[3].signal:
...``). ``SignalBinding.to_value`` turns a decoded physical value into the catalogue
value; ``to_physical`` is its inverse, used to encode frames.
"""

from __future__ import annotations

import math
from collections.abc import Mapping as AbcMapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tcu.errors import ConfigError
from tcu.vehicle.catalogue import CATALOGUE, COMMAND_NAMES, SignalSpec, Value

REQUEST_NAMES = COMMAND_NAMES
"""The TCU's request frames: one per command the vehicle takes."""


@dataclass(frozen=True, slots=True, kw_only=True)
class SignalBinding:
    path: str
    spec: SignalSpec
    message: Any  # cantools Message
    signal: str
    stale_after: float
    scale: float = 1.0
    offset: float = 0.0
    values: dict[float, Value] = field(default_factory=dict)
    invalid: frozenset[float] = frozenset()

    def to_value(self, physical: float) -> Value | None:
        """The catalogue value for a decoded physical value; None when not available."""
        if physical in self.invalid:
            return None
        if self.values:
            return self.values.get(physical)
        kind = self.spec.kind
        if kind == "bool":
            return physical != 0
        v = physical * self.scale + self.offset
        return float(v)

    def to_physical(self, value: Value | None) -> float:
        """The physical DBC value that encodes ``value`` (the inverse of ``to_value``)."""
        if value is None:
            if not self.invalid:
                raise ValueError(f"{self.path}: the DBC has no 'not available' value")
            return min(self.invalid)
        if self.values:
            for physical, v in self.values.items():
                if v == value and type(v) is type(value):
                    return physical
            raise ValueError(f"{self.path}: no DBC value for {value!r}")
        if isinstance(value, bool):
            return 1.0 if value else 0.0
        if isinstance(value, str):
            raise ValueError(f"{self.path}: {value!r} is not a number")
        return (float(value) - self.offset) / self.scale


@dataclass(frozen=True, slots=True, kw_only=True)
class RequestBinding:
    message: Any  # cantools Message
    type_signal: str
    types: dict[str, int]
    argument_signal: str | None = None
    counter_signal: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Mapping:
    source: str
    signals: tuple[SignalBinding, ...]
    requests: RequestBinding | None = None
    dbc_path: Path | None = None

    def by_path(self) -> dict[str, SignalBinding]:
        return {b.path: b for b in self.signals}


def read_mapping_file(path: Path) -> dict[str, Any]:
    """Parse the YAML of a mapping file; ConfigError on a missing or malformed file."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: mapping file not found") from None
    except OSError as e:
        raise ConfigError(f"{path}: cannot read mapping file: {e.strerror}") from None
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f":{mark.line + 1}:{mark.column + 1}" if mark is not None else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise ConfigError(f"{path}{where}: mapping is not valid YAML: {problem}") from None
    if not isinstance(doc, dict):
        raise ConfigError(f"{path}: a mapping file is a YAML mapping with a 'signals' list")
    return doc


def dbc_of(path: Path, doc: dict[str, Any]) -> Path | None:
    """The DBC a mapping file names, resolved against the mapping file's folder."""
    dbc = doc.get("dbc")
    if dbc is None:
        return None
    if not isinstance(dbc, str):
        raise ConfigError(f"{path}: dbc: expected a file name")
    return (path.parent / dbc).resolve()


def _number(where: str, v: Any) -> float:
    if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
        raise ConfigError(f"{where}: expected a number, got {v!r}")
    return float(v)


def _find_message(db: Any, where: str, ref: Any) -> Any:
    try:
        if isinstance(ref, int) and not isinstance(ref, bool):
            return db.get_message_by_frame_id(ref)
        if isinstance(ref, str):
            return db.get_message_by_name(ref)
    except KeyError:
        pass
    raise ConfigError(f"{where}: the DBC has no message {ref!r}")


def _signal_names(message: Any) -> set[str]:
    return {s.name for s in message.signals}


def build_mapping(db: Any, doc: dict[str, Any], source: str) -> Mapping:
    """Check a parsed mapping document against the catalogue and the DBC."""
    raw = doc.get("signals")
    if not isinstance(raw, list) or not raw:
        raise ConfigError(f"{source}: signals: expected a non-empty list")
    bindings: list[SignalBinding] = []
    seen: set[str] = set()
    for i, entry in enumerate(raw):
        w = f"{source}: signals[{i}]"
        if not isinstance(entry, dict):
            raise ConfigError(f"{w}: expected a mapping with path, message, signal")
        unknown = set(entry) - {
            "path",
            "message",
            "signal",
            "stale_after",
            "scale",
            "offset",
            "values",
            "invalid",
            "comment",
        }
        if unknown:
            raise ConfigError(f"{w}: unknown field {sorted(unknown)[0]!r}")
        path = entry.get("path")
        if not isinstance(path, str) or path not in CATALOGUE:
            raise ConfigError(f"{w}.path: not a catalogue signal: {path!r}")
        if path in seen:
            raise ConfigError(f"{w}.path: {path} is mapped twice")
        seen.add(path)
        spec = CATALOGUE[path]
        for key in ("message", "signal", "stale_after"):
            if key not in entry:
                raise ConfigError(f"{w}.{key}: missing")
        message = _find_message(db, f"{w}.message", entry["message"])
        signal = entry["signal"]
        if not isinstance(signal, str) or signal not in _signal_names(message):
            raise ConfigError(f"{w}.signal: message {message.name} has no signal {signal!r}")
        stale = _number(f"{w}.stale_after", entry["stale_after"])
        if stale <= 0:
            raise ConfigError(f"{w}.stale_after: must be > 0 seconds")
        values: dict[float, Value] = {}
        raw_values = entry.get("values") or {}
        if not isinstance(raw_values, dict):
            raise ConfigError(f"{w}.values: expected a mapping of number -> value")
        for k, v in raw_values.items():
            kf = _number(f"{w}.values[{k!r}]", k)
            if spec.kind == "enum":
                if v not in spec.values:
                    raise ConfigError(
                        f"{w}.values[{k!r}]: {v!r} is not one of {', '.join(spec.values)}"
                    )
            elif spec.kind == "bool":
                if not isinstance(v, bool):
                    raise ConfigError(f"{w}.values[{k!r}]: expected true or false")
            else:
                v = _number(f"{w}.values[{k!r}]", v)
            values[kf] = v
        if spec.kind == "enum" and not values:
            raise ConfigError(f"{w}.values: an enum signal needs a value map")
        invalid = entry.get("invalid") or []
        if not isinstance(invalid, list):
            raise ConfigError(f"{w}.invalid: expected a list of numbers")
        bindings.append(
            SignalBinding(
                path=path,
                spec=spec,
                message=message,
                signal=signal,
                stale_after=stale,
                scale=_number(f"{w}.scale", entry.get("scale", 1.0)),
                offset=_number(f"{w}.offset", entry.get("offset", 0.0)),
                values=values,
                invalid=frozenset(_number(f"{w}.invalid", x) for x in invalid),
            )
        )
    requests = _build_requests(db, doc.get("requests"), source)
    return Mapping(source=source, signals=tuple(bindings), requests=requests)


def _build_requests(db: Any, raw: Any, source: str) -> RequestBinding | None:
    if raw is None:
        return None
    w = f"{source}: requests"
    if not isinstance(raw, AbcMapping):
        raise ConfigError(f"{w}: expected a mapping")
    if "message" not in raw:
        raise ConfigError(f"{w}.message: missing")
    message = _find_message(db, f"{w}.message", raw["message"])
    names = _signal_names(message)
    for key in ("type_signal", "argument_signal", "counter_signal"):
        sig = raw.get(key)
        if sig is not None and sig not in names:
            raise ConfigError(f"{w}.{key}: message {message.name} has no signal {sig!r}")
    if raw.get("type_signal") is None:
        raise ConfigError(f"{w}.type_signal: missing")
    types = raw.get("types")
    if not isinstance(types, AbcMapping):
        raise ConfigError(f"{w}.types: expected a mapping of request name -> number")
    for name, num in types.items():
        if name not in REQUEST_NAMES:
            raise ConfigError(
                f"{w}.types.{name}: unknown request (known: {', '.join(REQUEST_NAMES)})"
            )
        if isinstance(num, bool) or not isinstance(num, int):
            raise ConfigError(f"{w}.types.{name}: expected an integer")
    return RequestBinding(
        message=message,
        type_signal=raw["type_signal"],
        types=dict(types),
        argument_signal=raw.get("argument_signal"),
        counter_signal=raw.get("counter_signal"),
    )
