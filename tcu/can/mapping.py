"""Mapping from DBC signals to signal names: the catalogue, and names of the user's own.

A mapping file (YAML) binds DBC signals to names, with an optional linear transform, a
value map and a staleness timeout (``docs/signals.md`` describes the language)::

    version: 1
    dbc: van.dbc                  # optional, relative to the mapping file
    all_signals: false            # true: also every DBC signal as Message.Signal
    signals:
      - path: Vehicle.Body.Hood.IsOpen
        message: BCM_Body         # DBC message name, or frame id: 0x3A0, 0x3A0x (extended)
        extended: false           # optional: tells a standard id from an extended one
        signal: BCM_BonnetOpen
        stale_after: 1.0          # seconds without a refresh before the value is unknown
                                  # (required for catalogue paths; else never stale)
        scale: 1.0                # optional: value = physical * scale + offset
        offset: 0.0
        values: {0: false, 1: true}   # optional: physical value -> value
        invalid: [2047]           # optional: physical values that mean "not available"
      - path: Fleet.Battery.CellVoltageMax   # a name of the user's own: the full value
        message: BMS_Cells
        signal: CellVoltageMax
        unit: V                   # optional: the DBC's unit otherwise
    requests:                     # optional: the frame the TCU itself sends
      message: TCU_Request
      type_signal: TCU_ReqType
      types: {lock: 1, unlock: 2, ...}
      argument_signal: TCU_ReqArgument
      counter_signal: TCU_ReqCounter

A catalogue path takes the catalogue's kind and unit: a bool is "physical != 0" unless a
value map says otherwise, an enum takes the DBC's value labels that name its values (or
a value map). Any other dotted name (a VSS path the catalogue lacks, ``Vehicle.Private.*``,
``Fleet.Whatever``) carries the signal's full value: the DBC's label where it has one,
else the number, a bool for a plain one-bit signal, with the DBC's unit.

Loading checks every field against the catalogue and the DBC and raises
``ConfigError`` naming the file and the field (``van.mapping.yaml: signals[3].signal:
...``). ``SignalBinding.to_value`` turns a decoded physical value into the bound value;
``to_physical`` is its inverse, used to encode frames.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Mapping as AbcMapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from tcu.errors import ConfigError
from tcu.vehicle.catalogue import CATALOGUE, COMMAND_NAMES, SignalSpec, Value

REQUEST_NAMES = COMMAND_NAMES
"""The TCU's request frames: one per command the vehicle takes."""


BindingKind = Literal["bool", "float", "enum", "full"]


@dataclass(frozen=True, slots=True, kw_only=True)
class SignalBinding:
    """One DBC signal under one name.

    ``kind`` says what ``to_value`` makes of the physical value: ``bool`` (!= 0),
    ``float`` (scaled), ``enum`` (through ``values``) for catalogue paths, and ``full``
    for names of the user's own: the DBC's label (``choices``) where it has one, else
    the number as cantools decodes it (scaled when the mapping says so), or a bool for
    a plain one-bit signal.
    """

    path: str
    message: Any  # cantools Message
    signal: str
    stale_after: float
    kind: BindingKind
    spec: SignalSpec | None = None  # the catalogue entry; None for a name of the user's own
    unit: str = ""
    scale: float = 1.0
    offset: float = 0.0
    values: dict[float, Value] = field(default_factory=dict)
    invalid: frozenset[float] = frozenset()
    choices: dict[float, str] = field(default_factory=dict)

    def to_value(self, physical: float) -> Value | None:
        """The bound value for a decoded physical value; None when not available."""
        if physical in self.invalid:
            return None
        if self.values:
            return self.values.get(physical)
        kind = self.kind
        if kind == "float":
            return float(physical * self.scale + self.offset)
        if kind == "bool":
            return physical != 0
        label = self.choices.get(physical)
        if label is not None:
            return label
        if self.scale == 1.0 and self.offset == 0.0:
            return physical
        return physical * self.scale + self.offset

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
            for physical, label in self.choices.items():
                if label == value:
                    return physical
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
    warnings: tuple[str, ...] = ()

    def by_path(self) -> dict[str, SignalBinding]:
        return {b.path: b for b in self.signals}

    def own_names(self) -> tuple[SignalBinding, ...]:
        """The bindings to names outside the catalogue (the user's own, Message.Signal)."""
        return tuple(b for b in self.signals if b.spec is None)


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


_ID = re.compile(r"(0[xX][0-9a-fA-F]+|[0-9]+)([xX]?)")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)+")


def _find_message(db: Any, where: str, ref: Any, extended: Any = None) -> Any:
    """The message a mapping names: by name, or by id (``0x123``; ``0x123x`` extended).

    A standard and an extended message may share a number; ``extended`` (or the ``x``
    suffix) says which one is meant, and a bare number that fits both is refused.
    """
    if extended is not None and not isinstance(extended, bool):
        raise ConfigError(f"{where}: extended: expected true or false, got {extended!r}")
    if isinstance(ref, bool) or not isinstance(ref, int | str):
        raise ConfigError(f"{where}: expected a message name or frame id, got {ref!r}")
    if isinstance(ref, str):
        named = next((m for m in db.messages if m.name == ref), None)
        if named is not None:
            if extended not in (None, named.is_extended_frame):
                kind = "an extended" if named.is_extended_frame else "a standard"
                raise ConfigError(f"{where}: {ref} is {kind} message, not extended: {extended}")
            return named
        match = _ID.fullmatch(ref.strip())
        if match is None:
            raise ConfigError(f"{where}: the DBC has no message {ref!r}")
        frame_id = int(match.group(1), 0)
        if match.group(2):
            if extended is False:
                raise ConfigError(f"{where}: {ref!r} is an extended id but extended: false")
            extended = True
    else:
        frame_id = ref
    found = [
        m for m in db.messages if m.frame_id == frame_id and extended in (None, m.is_extended_frame)
    ]
    if not found:
        kind = {None: "", True: "extended ", False: "standard "}[extended]
        raise ConfigError(f"{where}: the DBC has no {kind}message {ref!r}")
    if len(found) > 1:
        raise ConfigError(
            f"{where}: {ref!r} is both a standard and an extended message "
            f"({found[0].name}, {found[1].name}); write 0x{frame_id:X}x or add extended: true"
            " (or false)"
        )
    return found[0]


def _signal_names(message: Any) -> set[str]:
    return {s.name for s in message.signals}


_FIELDS = frozenset(
    {
        "path",
        "message",
        "extended",
        "signal",
        "stale_after",
        "scale",
        "offset",
        "values",
        "invalid",
        "unit",
        "comment",
    }
)
_TOP = frozenset({"version", "dbc", "all_signals", "signals", "requests", "comment"})


def build_mapping(
    db: Any, doc: dict[str, Any], source: str, *, all_signals: bool = False
) -> Mapping:
    """Check a parsed mapping document against the catalogue and the DBC.

    ``all_signals`` (or ``all_signals: true`` in the file) adds every signal of the DBC
    under its ``Message.Signal`` name, after the file's own bindings.
    """
    unknown = set(doc) - _TOP
    if unknown:
        raise ConfigError(f"{source}: unknown field {sorted(map(str, unknown))[0]!r}")
    every = doc.get("all_signals", False)
    if not isinstance(every, bool):
        raise ConfigError(f"{source}: all_signals: expected true or false, got {every!r}")
    all_signals = all_signals or every
    raw = doc.get("signals", [])
    if not isinstance(raw, list) or not (raw or all_signals):
        raise ConfigError(f"{source}: signals: expected a non-empty list")
    bindings: list[SignalBinding] = []
    warnings: list[str] = []
    seen: set[str] = set()
    for i, entry in enumerate(raw):
        b = _binding(db, entry, f"{source}: signals[{i}]")
        if b.path in seen:
            raise ConfigError(f"{source}: signals[{i}].path: {b.path} is mapped twice")
        seen.add(b.path)
        bindings.append(b)
        if b.spec is None:
            near = difflib.get_close_matches(b.path, CATALOGUE, n=1, cutoff=0.9)
            if near:
                warnings.append(
                    f"{source}: signals[{i}].path: {b.path} is not in the catalogue, so the "
                    f"services do not use it (did you mean {near[0]}?)"
                )
    if all_signals:
        for b in every_signal(db):
            if b.path not in seen:
                seen.add(b.path)
                bindings.append(b)
    requests = _build_requests(db, doc.get("requests"), source)
    return Mapping(
        source=source, signals=tuple(bindings), requests=requests, warnings=tuple(warnings)
    )


def every_signal(db: Any) -> list[SignalBinding]:
    """Every signal of ``db`` under ``Message.Signal``, with its full value and unit.

    Like ``cantools decode``, each keeps the last value a frame gave it (never stale).
    """
    out: list[SignalBinding] = []
    names = [m.name for m in db.messages]
    for m in db.messages:
        if getattr(m, "is_container", False):
            continue
        prefix = m.name
        if names.count(m.name) > 1:  # the same name on a standard and an extended id
            prefix = f"{m.name}@0x{m.frame_id:X}{'x' if m.is_extended_frame else ''}"
        for sig in m.signals:
            out.append(
                SignalBinding(
                    path=f"{prefix}.{sig.name}",
                    message=m,
                    signal=sig.name,
                    stale_after=math.inf,
                    kind=_full_kind(sig),
                    unit=sig.unit or "",
                    choices=choices_by_physical(sig),
                )
            )
    return out


def choices_by_physical(signal: Any) -> dict[float, str]:
    """The DBC's value labels keyed by the physical (scaled) value decoding gives."""
    out: dict[float, str] = {}
    for raw, label in (signal.choices or {}).items():
        physical = signal.conversion.raw_to_scaled(raw, decode_choices=False)
        out[physical] = str(getattr(label, "name", label))
    return out


def _full_kind(signal: Any) -> BindingKind:
    plain = signal.conversion.scale == 1 and signal.conversion.offset == 0
    if signal.length == 1 and not signal.is_signed and not signal.choices and plain:
        return "bool"
    return "full"


def _binding(db: Any, entry: Any, w: str) -> SignalBinding:
    if not isinstance(entry, dict):
        raise ConfigError(f"{w}: expected a mapping with path, message, signal")
    unknown = set(entry) - _FIELDS
    if unknown:
        raise ConfigError(f"{w}: unknown field {sorted(map(str, unknown))[0]!r}")
    path = entry.get("path")
    spec = CATALOGUE.get(path) if isinstance(path, str) else None
    if not isinstance(path, str) or (spec is None and not _NAME.fullmatch(path)):
        raise ConfigError(
            f"{w}.path: expected a catalogue path or a dotted name (Fleet.Battery.Temp), "
            f"got {path!r}"
        )
    for key in ("message", "signal", *(("stale_after",) if spec is not None else ())):
        if key not in entry:
            raise ConfigError(f"{w}.{key}: missing")
    message = _find_message(db, f"{w}.message", entry["message"], entry.get("extended"))
    name = entry["signal"]
    signal = next((s for s in message.signals if s.name == name), None)
    if signal is None:
        raise ConfigError(f"{w}.signal: message {message.name} has no signal {name!r}")
    if "stale_after" in entry:
        stale = _number(f"{w}.stale_after", entry["stale_after"])
        if stale <= 0:
            raise ConfigError(f"{w}.stale_after: must be > 0 seconds")
    else:
        stale = math.inf  # a name of the user's own keeps its last value, as cantools does
    values: dict[float, Value] = {}
    raw_values = entry.get("values") or {}
    if not isinstance(raw_values, dict):
        raise ConfigError(f"{w}.values: expected a mapping of number -> value")
    for k, v in raw_values.items():
        values[_number(f"{w}.values[{k!r}]", k)] = _value(spec, f"{w}.values[{k!r}]", v)
    if spec is not None and spec.kind == "enum" and not values:
        values = _enum_from_labels(spec, signal)
        if not values:
            raise ConfigError(
                f"{w}.values: an enum signal needs a value map (the DBC labels of "
                f"{signal.name} name none of {', '.join(spec.values)})"
            )
    invalid = entry.get("invalid") or []
    if not isinstance(invalid, list):
        raise ConfigError(f"{w}.invalid: expected a list of numbers")
    scale = _number(f"{w}.scale", entry.get("scale", 1.0))
    offset = _number(f"{w}.offset", entry.get("offset", 0.0))
    unit = entry.get("unit")
    if unit is not None and (spec is not None or not isinstance(unit, str)):
        raise ConfigError(
            f"{w}.unit: a catalogue path has the catalogue's unit"
            if spec is not None
            else f"{w}.unit: expected a string, got {unit!r}"
        )
    if spec is not None:
        kind: BindingKind = spec.kind
        unit = spec.unit
    else:
        plain = scale == 1.0 and offset == 0.0 and not values
        kind = _full_kind(signal) if plain else "full"
        unit = signal.unit or "" if unit is None else unit
    return SignalBinding(
        path=path,
        spec=spec,
        message=message,
        signal=name,
        stale_after=stale,
        kind=kind,
        unit=unit,
        scale=scale,
        offset=offset,
        values=values,
        invalid=frozenset(_number(f"{w}.invalid", x) for x in invalid),
        choices=choices_by_physical(signal) if spec is None else {},
    )


def _value(spec: SignalSpec | None, where: str, v: Any) -> Value:
    """One value of a value map, checked against the catalogue entry it feeds."""
    if spec is None:
        if isinstance(v, bool | str):
            return v
        return _number(where, v)
    if spec.kind == "enum":
        if v not in spec.values:
            raise ConfigError(f"{where}: {v!r} is not one of {', '.join(spec.values)}")
        return str(v)
    if spec.kind == "bool":
        if not isinstance(v, bool):
            raise ConfigError(f"{where}: expected true or false")
        return v
    return _number(where, v)


def _enum_from_labels(spec: SignalSpec, signal: Any) -> dict[float, Value]:
    """Value map from the DBC's labels: ``D`` or ``..._D`` means the catalogue value D."""
    out: dict[float, Value] = {}
    for physical, label in choices_by_physical(signal).items():
        up = label.upper()
        for v in spec.values:
            if up == v or up.endswith("_" + v):
                out[physical] = v
                break
    return out


def _build_requests(db: Any, raw: Any, source: str) -> RequestBinding | None:
    if raw is None:
        return None
    w = f"{source}: requests"
    if not isinstance(raw, AbcMapping):
        raise ConfigError(f"{w}: expected a mapping")
    if "message" not in raw:
        raise ConfigError(f"{w}.message: missing")
    message = _find_message(db, f"{w}.message", raw["message"], raw.get("extended"))
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
