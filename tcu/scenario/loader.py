"""Loading scenario files: YAML with positions, the JSON Schema, then the meaning of each value.

Theory of operation. A file is read (at most ``MAX_BYTES``) and composed into YAML nodes
with a resolver that follows YAML 1.2: only ``true``/``false`` are booleans (so
``coverage: off`` and ``country: NO`` stay strings) and ``1:30:00`` is not a base-60
number. The nodes become plain data while every value's and every key's position is
recorded by its path (``("steps", 3, "set")``). The data goes through the JSON Schema
shipped beside this module (``scenario.schema.json``); each schema error is mapped back
to the position of the value, or of the key for an unknown key. A document that passes
the schema is then checked for meaning: signal paths against the catalogue, values
against each signal's kind, command names, reason codes against the services' codes and
their kinds, session states against the tables, step times in order, trace files and
storylines that exist. Every problem is collected, not just the first, and reported as
``file:line:col: path: message``; ``ScenarioError`` carries the list.
"""

from __future__ import annotations

import difflib
import json
import math
import re
from collections.abc import Iterable, Sequence
from datetime import datetime
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from tcu.errors import ConfigError
from tcu.events import Command
from tcu.scenario.cases import (
    COMMAND_ACTIONS,
    COUNTERS,
    RESERVED_TAGS,
    Case,
    CommandSpec,
    Expectation,
    ScenarioFile,
    Source,
    Step,
    StorylineSpec,
    TraceSpec,
    VehicleSpec,
    Where,
)
from tcu.scenario.discover import find_files
from tcu.services.config import DEFAULT_VIN, VehicleConfig, parse_hhmm
from tcu.services.sessions import TABLES
from tcu.services.verdicts import OUTCOMES, REASON_CODES, SERVICES
from tcu.validate import parse_time
from tcu.vehicle.catalogue import CATALOGUE, COMMAND_NAMES, DEPARTURE_TIME

MAX_BYTES = 1 << 20
MAX_NODES = 50_000
MAX_DEPTH = 32
REPO = Path(__file__).resolve().parents[2]

PathKey = tuple[str | int, ...]
Pos = tuple[int, int]

try:
    from tcu.link.operators import COUNTRY_MCC

    COUNTRIES: frozenset[str] | None = frozenset(COUNTRY_MCC)
except ImportError:  # pragma: no cover - the link model is optional for loading
    COUNTRIES = None
try:
    from tcu.link.modem import RegState

    REGISTRATION_STATES: tuple[str, ...] | None = tuple(s.value for s in RegState)
except ImportError:  # pragma: no cover
    REGISTRATION_STATES = None


class ScenarioError(ConfigError):
    """One or more problems in scenario files, each ``file:line:col: path: message``."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = tuple(problems)
        super().__init__("\n".join(self.problems))

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.problems,))


# -- YAML with positions --------------------------------------------------------------------

_BOOL = "tag:yaml.org,2002:bool"
_INT = "tag:yaml.org,2002:int"
_FLOAT = "tag:yaml.org,2002:float"
_TIMESTAMP = "tag:yaml.org,2002:timestamp"


class _Loader(yaml.SafeLoader):
    """SafeLoader with YAML 1.2 core-schema scalars."""


_Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag not in (_BOOL, _INT, _FLOAT, _TIMESTAMP)]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(
    _BOOL, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)
_Loader.add_implicit_resolver(_INT, re.compile(r"^[-+]?(?:0|[1-9][0-9]*)$"), list("-+0123456789"))
_Loader.add_implicit_resolver(
    _FLOAT,
    re.compile(
        r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?"
        r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"
    ),
    list("-+0123456789."),
)


class _Problems:
    def __init__(self) -> None:
        self.items: list[tuple[str, int, int, str]] = []

    def add(self, file: str, pos: Pos, path: str, message: str) -> None:
        text = f"{path}: {message}" if path else message
        entry = (file, pos[0], pos[1], text)
        if entry not in self.items:
            self.items.append(entry)

    def lines(self) -> list[str]:
        ordered = sorted(self.items, key=lambda item: (item[1], item[2]))
        return [f"{f}:{line}:{col}: {text}" for f, line, col, text in ordered]


def show_path(path: PathKey) -> str:
    out = ""
    for p in path:
        if isinstance(p, int):
            out += f"[{p}]"
        else:
            out += f".{p}" if out else p
    return out


class _Doc:
    """One YAML document as plain data, with the position of every value and key."""

    def __init__(self, file: str, index: int, problems: _Problems) -> None:
        self.file = file
        self.index = index
        self.problems = problems
        self.marks: dict[PathKey, Pos] = {}
        self.key_marks: dict[PathKey, Pos] = {}
        self.nodes = 0
        self.root_pos: Pos = (1, 1)
        self.data: Any = None
        self._constructor = _Loader("")

    def pos(self, path: PathKey, *, key: bool = False) -> Pos:
        while True:
            found = (self.key_marks if key else self.marks).get(path)
            if found is None and key:
                found = self.marks.get(path)
            if found is not None:
                return found
            if not path:
                return self.root_pos
            path = path[:-1]

    def where(self, path: PathKey, *, key: bool = False) -> Where:
        line, col = self.pos(path, key=key)
        return Where(file=self.file, line=line, col=col, path=show_path(path))

    def error(
        self, path: PathKey, message: str, *, key: bool = False, shown: PathKey | None = None
    ) -> None:
        p = shown if shown is not None else (path[:-1] if key else path)
        self.problems.add(self.file, self.pos(path, key=key), show_path(p), message)

    def build(self, node: yaml.Node, path: PathKey, depth: int = 0) -> Any:
        self.nodes += 1
        if self.nodes > MAX_NODES:
            raise _TooBig(f"more than {MAX_NODES} YAML nodes (aliases included)")
        if depth > MAX_DEPTH:
            raise _TooBig(f"nested deeper than {MAX_DEPTH} levels")
        self.marks[path] = (node.start_mark.line + 1, node.start_mark.column + 1)
        if isinstance(node, yaml.MappingNode):
            self._constructor.flatten_mapping(node)
            out: dict[str, Any] = {}
            for key_node, value_node in node.value:
                kpos = (key_node.start_mark.line + 1, key_node.start_mark.column + 1)
                if not isinstance(key_node, yaml.ScalarNode):
                    self.problems.add(
                        self.file, kpos, show_path(path), "a key must be a plain value"
                    )
                    continue
                key = self._constructor.construct_object(key_node)
                if not isinstance(key, str):
                    key = str(key)
                if key in out:
                    self.problems.add(self.file, kpos, show_path(path), f"duplicate key {key!r}")
                    continue
                self.key_marks[(*path, key)] = kpos
                out[key] = self.build(value_node, (*path, key), depth + 1)
            return out
        if isinstance(node, yaml.SequenceNode):
            return [self.build(n, (*path, i), depth + 1) for i, n in enumerate(node.value)]
        return self._constructor.construct_object(node)


class _TooBig(Exception):
    pass


def _yaml_problem(file: str, e: yaml.YAMLError, problems: _Problems) -> None:
    mark = getattr(e, "problem_mark", None) or getattr(e, "context_mark", None)
    pos = (mark.line + 1, mark.column + 1) if mark is not None else (1, 1)
    problem = getattr(e, "problem", None) or str(e).splitlines()[0]
    problems.add(file, pos, "", f"not valid YAML: {problem}")


def _compose(file: str, text: str, problems: _Problems) -> list[_Doc]:
    docs: list[_Doc] = []
    try:
        for i, node in enumerate(yaml.compose_all(text, Loader=_Loader)):
            if node is None:
                continue
            doc = _Doc(file, i, problems)
            doc.root_pos = (node.start_mark.line + 1, node.start_mark.column + 1)
            try:
                doc.data = doc.build(node, ())
            except _TooBig as e:
                problems.add(file, doc.root_pos, "", f"document too large: {e}")
                continue
            except yaml.YAMLError as e:
                _yaml_problem(file, e, problems)
                continue
            docs.append(doc)
    except yaml.YAMLError as e:
        _yaml_problem(file, e, problems)
    except RecursionError:
        problems.add(file, (1, 1), "", f"nested deeper than {MAX_DEPTH} levels")
    return docs


# -- the schema -------------------------------------------------------------------------

SCHEMA_NAME = "scenario.schema.json"


@cache
def schema() -> dict[str, Any]:
    """The JSON Schema of one scenario document, as shipped in the package."""
    text = resources.files("tcu.scenario").joinpath(SCHEMA_NAME).read_text(encoding="utf-8")
    loaded: dict[str, Any] = json.loads(text)
    return loaded


@cache
def _validator() -> jsonschema.protocols.Validator:
    cls = jsonschema.validators.validator_for(schema())
    v: jsonschema.protocols.Validator = cls(schema(), format_checker=cls.FORMAT_CHECKER)
    return v


def _type_name(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return type(value).__name__


def _show_value(value: object) -> str:
    if isinstance(value, dict | list):
        return _type_name(value)
    return repr(value)


def _suggest(word: str, options: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(options), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _schema_problems(doc: _Doc, data: Any) -> bool:
    """Report schema errors against ``doc``; True when there were none."""
    errors = sorted(
        _validator().iter_errors(data), key=lambda e: (doc.pos(tuple(e.absolute_path)), e.message)
    )
    for e in errors:
        path: PathKey = tuple(e.absolute_path)
        sub = e.schema if isinstance(e.schema, dict) else {}
        inst = e.instance
        if e.validator == "additionalProperties" and isinstance(inst, dict):
            known = set(sub.get("properties", {}))
            what = sub.get("x-unknown", "unknown key")
            for extra in inst:
                if extra not in known:
                    doc.error((*path, extra), f"{what} {extra!r}{_suggest(extra, known)}", key=True)
            continue
        if "x-expect" in sub and e.validator in ("anyOf", "oneOf", "type"):
            message = f"expected {sub['x-expect']}, got {_show_value(inst)}"
        elif e.validator == "type":
            want = e.validator_value
            names = " or ".join(want) if isinstance(want, list) else str(want)
            names = names.replace("object", "mapping").replace("array", "list")
            message = f"expected {names}, got {_show_value(inst)}"
        elif e.validator == "enum":
            options = ", ".join(str(o) for o in _as_list(e.validator_value))
            message = f"expected one of {options}; got {_show_value(inst)}"
        elif e.validator == "const":
            message = f"expected {json.dumps(e.validator_value)}, got {_show_value(inst)}"
        elif e.validator == "required":
            missing = [
                k for k in _as_list(e.validator_value) if isinstance(inst, dict) and k not in inst
            ]
            message = f"missing key {', '.join(repr(k) for k in missing)}"
        elif e.validator == "pattern":
            message = f"{inst!r} is not in the expected form ({_pattern_hint(path)})"
        elif e.validator == "minProperties":
            message = "must not be empty"
        elif e.validator == "minItems":
            message = "the list must not be empty"
        elif e.validator == "uniqueItems":
            message = "the list has a repeated item"
        elif e.validator == "format":
            message = f"{inst!r} is not an ISO 8601 date-time such as 2026-01-14T17:30:00Z"
        else:
            message = e.message
        doc.error(path, message)
    return not errors


def _as_list(value: object) -> list[Any]:
    return list(value) if isinstance(value, list | tuple) else []


def _pattern_hint(path: PathKey) -> str:
    last = next((p for p in reversed(path) if isinstance(p, str)), "")
    return {
        "vin": "17 characters, digits and capitals without I, O, Q",
        "home_plmn": "MCC-MNC such as 242-01",
        "plmn": "MCC-MNC such as 242-01",
        "country": "ISO 3166 alpha-2 such as NO",
        "tags": "lower-case letters, digits and _, starting with a letter",
        "outcome": "lower-case letters and _",
    }.get(last, "see docs/scenarios.md")


# -- meaning ------------------------------------------------------------------------------


class _Checker:
    """Turns one schema-clean document into cases, reporting every problem of meaning."""

    def __init__(self, doc: _Doc, file_path: Path, stem: str) -> None:
        self.doc = doc
        self.file_path = file_path
        self.stem = stem

    def err(
        self, path: PathKey, message: str, *, key: bool = False, shown: PathKey | None = None
    ) -> None:
        self.doc.error(path, message, key=key, shown=shown)

    # values of signals

    def signal_value(self, path: PathKey, signal: str, value: Any) -> tuple[bool, Any]:
        spec = CATALOGUE.get(signal)
        if spec is None:
            self.err(
                (*path, signal),
                f"unknown signal path {signal!r}{_suggest(signal, CATALOGUE)}",
                key=True,
            )
            return False, None
        if value is None:
            return True, None
        where = (*path, signal)
        if spec.kind == "bool":
            if isinstance(value, bool):
                return True, value
            self.err(
                where, shown=path, message=f"{signal} is true or false, got {_show_value(value)}"
            )
        elif spec.kind == "float":
            if signal == DEPARTURE_TIME and isinstance(value, str):
                try:
                    return True, float(parse_hhmm(value))
                except ValueError as e:
                    self.err(where, shown=path, message=str(e))
                    return False, None
            if isinstance(value, int | float) and not isinstance(value, bool):
                if math.isfinite(value):
                    return True, float(value)
                self.err(where, shown=path, message=f"{signal} must be finite, got {value!r}")
            else:
                unit = f" ({spec.unit})" if spec.unit else ""
                self.err(
                    where,
                    shown=path,
                    message=f"{signal} is a number{unit}, got {_show_value(value)}",
                )
        else:
            if isinstance(value, str) and value in spec.values:
                return True, value
            hint = ""
            if isinstance(value, str) and value.upper() in spec.values:
                hint = f" (did you mean {value.upper()!r}?)"
            self.err(
                where,
                shown=path,
                message=f"{signal} is one of {', '.join(spec.values)}; "
                f"got {_show_value(value)}{hint}",
            )
        return False, None

    def signals(self, path: PathKey, raw: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for signal, value in raw.items():
            ok, v = self.signal_value(path, signal, value)
            if ok:
                out[signal] = v
        return out

    def signal_path(self, path: PathKey, signal: str) -> bool:
        if signal in CATALOGUE:
            return True
        self.err(path, f"unknown signal path {signal!r}{_suggest(signal, CATALOGUE)}")
        return False

    def time(self, path: PathKey, raw: Any) -> float:
        try:
            return parse_time(raw)
        except ValueError as e:
            self.err(path, str(e))
            return 0.0

    # vehicle and source

    def vehicle(self, raw: dict[str, Any], path: PathKey) -> VehicleSpec:
        cfg = {k: v for k, v in raw.items() if k not in ("start", "home_plmn", "reporting")}
        cfg.setdefault("vin", DEFAULT_VIN)
        start_given = "start" in raw
        if start_given:
            try:
                start = datetime.fromisoformat(str(raw["start"]))
            except ValueError:
                self.err((*path, "start"), f"{raw['start']!r} is not an ISO 8601 date-time")
                start = None
            if start is not None and start.tzinfo is None:
                self.err((*path, "start"), "give the UTC offset, e.g. 2026-01-14T17:30:00Z")
            elif start is not None:
                cfg["origin_epoch"] = start.timestamp()
        try:
            config = VehicleConfig.from_dict(cfg, where="vehicle")
        except ConfigError as e:
            self.err(path, str(e).removeprefix("vehicle: "))
            config = VehicleConfig(vin=DEFAULT_VIN)
        reporting = {str(k): float(v) for k, v in raw.get("reporting", {}).items()}
        return VehicleSpec(
            config=config,
            home_plmn=raw.get("home_plmn"),
            reporting=reporting,
            start_given=start_given,
        )

    def source(
        self, trace: tuple[Any, PathKey] | None, story: tuple[Any, PathKey] | None
    ) -> Source:
        if trace is not None and story is not None:
            self.err(story[1], "a case replays a trace or a storyline, not both", key=True)
            return None
        if trace is not None:
            raw, path = trace
            found = resolve_trace(self.file_path, raw)
            if found is None:
                self.err(
                    path,
                    f"trace file {raw!r} not found (relative to {self.file_path.parent}, "
                    "or to the repository for can_traces/...)",
                )
                return None
            return TraceSpec(path=found)
        if story is not None:
            raw, path = story
            from tcu.storyline import STORYLINES

            if raw["name"] not in STORYLINES:
                self.err(
                    (*path, "name"),
                    f"unknown storyline {raw['name']!r} (known: {', '.join(STORYLINES)})",
                )
                return None
            duration = (
                self.time((*path, "duration"), raw["duration"]) if "duration" in raw else None
            )
            if duration is not None and duration <= 0:
                self.err((*path, "duration"), "a storyline duration must be > 0")
            from tcu.storyline.generator import DEFAULT_SEED

            start = self.time((*path, "from"), raw["from"]) if "from" in raw else 0.0
            return StorylineSpec(
                name=raw["name"],
                seed=raw.get("seed", DEFAULT_SEED),
                start=start,
                duration=duration,
            )
        return None

    # steps

    def command(self, path: PathKey, raw: Any) -> CommandSpec | None:
        if isinstance(raw, str):
            raw = {"name": raw}
            npath = path
        else:
            npath = (*path, "name")
        name = raw["name"]
        arg = raw.get("arg")
        argument = None if arg is None else str(arg)
        if name not in COMMAND_NAMES:
            self.err(
                npath,
                f"unknown command {name!r}{_suggest(name, COMMAND_NAMES)} "
                f"(known: {', '.join(COMMAND_NAMES)})",
            )
            return None
        try:
            Command(name=name, argument=argument)
        except ValueError as e:
            self.err(path, str(e))
            return None
        if name == "set_departure":
            try:
                parse_hhmm(argument or "")
            except ValueError as e:
                self.err((*path, "arg"), str(e))
                return None
        return CommandSpec(name=name, argument=argument, command_id=raw.get("id"))

    def step(self, raw: dict[str, Any], path: PathKey, index: int, sent: set[str]) -> Step | None:
        at = self.time((*path, "at"), raw["at"])
        actions = [k for k in raw if k not in ("at", "note", "expect")]
        if len(actions) > 1:
            self.err(
                (*path, actions[1]),
                f"a step does one thing; this one has {', '.join(actions)} (split it in two)",
                key=True,
            )
            return None
        action = actions[0] if actions else None
        value: Any = None
        if action is not None:
            apath = (*path, action)
            arg = raw[action]
            if action == "set":
                value = self.signals(apath, arg)
            elif action == "release":
                paths = [arg] if isinstance(arg, str) else list(arg)
                value = tuple(
                    p
                    for i, p in enumerate(paths)
                    if self.signal_path(apath if isinstance(arg, str) else (*apath, i), p)
                )
            elif action == "move":
                value = self.move(apath, arg)
            elif action == "coverage":
                value = arg == "on"
            elif action == "broker":
                value = arg == "up"
            elif action == "power_cycle":
                value = (
                    self.time((*apath, "off_for"), arg.get("off_for", 0))
                    if isinstance(arg, dict)
                    else 0.0
                )
            elif action in COMMAND_ACTIONS:
                value = self.command(apath, arg)
                if value is not None:
                    if action == "replayed_command" and value.name not in sent:
                        self.err(
                            apath,
                            f"no earlier command {value.name!r} to replay; send it with a "
                            "`command` step first",
                        )
                    if action == "command":
                        sent.add(value.name)
            elif action in ("activate", "deactivate"):
                value = True
            elif action == "advance":
                value = self.time(apath, arg)
                if value <= 0:
                    self.err(apath, "advance needs a duration > 0")
        expect = self.expectations(raw.get("expect"), (*path, "expect"))
        if action is None and not expect and "expect" not in raw:
            self.err(path, "the step does nothing: give an action or `expect:`")
        return Step(
            index=index,
            at=at,
            action=action,
            value=value,
            expect=expect,
            where=self.doc.where(path),
            note=raw.get("note", ""),
        )

    def move(self, path: PathKey, raw: dict[str, Any]) -> dict[str, Any] | None:
        if "country" in raw:
            if "lat" in raw or "lon" in raw:
                self.err(path, "move to a country or to lat/lon, not both")
                return None
            if COUNTRIES is not None and raw["country"] not in COUNTRIES:
                self.err(
                    (*path, "country"),
                    f"no operators known for country {raw['country']!r} "
                    f"(known: {', '.join(sorted(COUNTRIES))})",
                )
                return None
            return {"country": raw["country"]}
        if "lat" not in raw or "lon" not in raw:
            self.err(path, "move needs both lat and lon (or a country)")
            return None
        return {"lat": float(raw["lat"]), "lon": float(raw["lon"])}

    # expectations

    def expectations(self, raw: dict[str, Any] | None, path: PathKey) -> tuple[Expectation, ...]:
        if raw is None:
            return ()
        out: list[Expectation] = []
        for kind, spec in raw.items():
            kpath = (*path, kind)
            items = spec if kind == "verdict" and isinstance(spec, list) else [spec]
            for i, item in enumerate(items):
                ipath = (*kpath, i) if item is not spec else kpath
                fields = self.expectation(kind, item, ipath)
                if fields is not None:
                    out.append(Expectation(kind=kind, fields=fields, where=self.doc.where(ipath)))
        return tuple(out)

    def codes(self, path: PathKey, codes: list[str], kinds: tuple[str, ...], what: str) -> bool:
        ok = True
        for i, code in enumerate(codes):
            entry = REASON_CODES.get(code)
            if entry is None:
                self.err((*path, i), f"unknown reason code {code!r}{_suggest(code, REASON_CODES)}")
                ok = False
            elif entry[0] not in kinds:
                self.err((*path, i), f"{code!r} is a {entry[0]} code, never {what}")
                ok = False
        return ok

    def service(self, path: PathKey, service: str) -> bool:
        if service in SERVICES:
            return True
        self.err(path, f"unknown service {service!r} (known: {', '.join(SERVICES)})")
        return False

    def expectation(self, kind: str, spec: dict[str, Any], path: PathKey) -> dict[str, Any] | None:
        ok = True
        if kind == "verdict":
            ok = self.service((*path, "service"), spec["service"])
            outcome = spec.get("outcome")
            if outcome is not None and outcome not in OUTCOMES:
                self.err(
                    (*path, "outcome"),
                    f"unknown outcome {outcome!r} (known: {', '.join(OUTCOMES)})",
                )
                ok = False
            reasons = spec.get("reasons")
            if reasons is not None:
                kinds: tuple[str, ...] = ("refusal", "not_needed")
                what = "a verdict's reason"
                if outcome == "refused":
                    kinds, what = ("refusal",), "a reason of a refusal"
                elif outcome == "not_needed":
                    kinds, what = ("not_needed",), "a reason of a not_needed verdict"
                elif outcome in ("allowed", "allowed_with_warnings"):
                    kinds, what = (), f"a reason of an {outcome} verdict (it has none)"
                    if reasons:
                        self.err(
                            (*path, "reasons"), f"an {outcome} verdict has no reasons; use warnings"
                        )
                        ok = False
                ok = self.codes((*path, "reasons"), reasons, kinds, what) and ok
            if spec.get("warnings") is not None:
                ok = (
                    self.codes((*path, "warnings"), spec["warnings"], ("warning",), "a warning")
                    and ok
                )
            return dict(spec) if ok else None
        if kind == "session":
            service = spec["service"]
            ok = self.service((*path, "service"), service)
            state = spec.get("state")
            if ok and state is not None and state not in TABLES[service]:
                self.err(
                    (*path, "state"),
                    f"a {service} session has no state {state!r} "
                    f"(states: {', '.join(TABLES[service])})",
                )
                ok = False
            if spec.get("reasons") is not None:
                ok = (
                    self.codes(
                        (*path, "reasons"),
                        spec["reasons"],
                        ("refusal", "warning", "not_needed", "session"),
                        "",
                    )
                    and ok
                )
            ok = self.count((*path, "count"), spec.get("count")) and ok
            return dict(spec) if ok else None
        if kind == "vehicle":
            values = self.signals(path, spec)
            return values if len(values) == len(spec) else None
        if kind == "registration":
            state = spec.get("state")
            if (
                state is not None
                and REGISTRATION_STATES is not None
                and state not in REGISTRATION_STATES
            ):
                self.err(
                    (*path, "state"),
                    f"unknown registration state {state!r} "
                    f"(known: {', '.join(REGISTRATION_STATES)})",
                )
                return None
            return dict(spec)
        if kind == "command":
            if spec["name"] not in COMMAND_NAMES:
                self.err(
                    (*path, "name"),
                    f"unknown command {spec['name']!r}{_suggest(spec['name'], COMMAND_NAMES)}",
                )
                return None
            return dict(spec)
        if kind == "counters":
            for name, value in spec.items():
                if name not in COUNTERS:
                    self.err(
                        (*path, name),
                        f"unknown counter {name!r}{_suggest(name, COUNTERS)} "
                        "(docs/scenarios.md lists them)",
                        key=True,
                    )
                    ok = False
                ok = self.count((*path, name), value) and ok
            return dict(spec) if ok else None
        if kind in ("backend", "roaming"):
            for name in ("records", "duplicates", "gaps", "bytes"):
                ok = self.count((*path, name), spec.get(name)) and ok
            for name, value in spec.get("kinds", {}).items():
                ok = self.count((*path, "kinds", name), value) and ok
            return dict(spec) if ok else None
        raise AssertionError(kind)  # pragma: no cover - the schema admits no other key

    def count(self, path: PathKey, value: Any) -> bool:
        if (
            isinstance(value, dict)
            and "min" in value
            and "max" in value
            and value["min"] > value["max"]
        ):
            self.err(path, f"min {value['min']} is above max {value['max']}")
            return False
        return True

    # cases

    def cases(self, data: dict[str, Any]) -> list[Case]:
        if "cases" in data:
            for key in ("steps", "expect_end"):
                if key in data:
                    self.err(
                        (key,),
                        f"`{key}` belongs inside each case when the document has `cases`",
                        key=True,
                    )
            out = []
            for i, raw in enumerate(data["cases"]):
                case = self.case(data, raw, ("cases", i), i)
                if case is not None:
                    out.append(case)
            return out
        name = data.get("name") or (
            self.stem if self.doc.index == 0 else f"{self.stem}[{self.doc.index}]"
        )
        case = self.case({}, {**data, "name": name}, (), 0)
        return [case] if case is not None else []

    def case(
        self, defaults: dict[str, Any], raw: dict[str, Any], path: PathKey, index: int
    ) -> Case | None:
        before = len(self.doc.problems.items)
        tags: list[str] = []
        for src, spath in ((defaults, ()), (raw, path)):
            for i, tag in enumerate(src.get("tags", [])):
                if tag in RESERVED_TAGS:
                    self.err(
                        (*spath, "tags", i),
                        f"{tag!r} is a pytest marker of its own; pick another tag",
                    )
                elif tag not in tags:
                    tags.append(tag)
        vehicle_raw = {**defaults.get("vehicle", {}), **raw.get("vehicle", {})}
        reporting = {
            **defaults.get("vehicle", {}).get("reporting", {}),
            **raw.get("vehicle", {}).get("reporting", {}),
        }
        if reporting:
            vehicle_raw["reporting"] = reporting
        vpath = (*path, "vehicle") if "vehicle" in raw else ("vehicle",)
        vehicle = self.vehicle(vehicle_raw, vpath)

        def pick(key: str) -> tuple[Any, PathKey] | None:
            if key in raw:
                return raw[key], (*path, key)
            if key in defaults and not any(k in raw for k in ("trace", "storyline")):
                return defaults[key], (key,)
            return None

        source = self.source(pick("trace"), pick("storyline"))
        steps: list[Step] = []
        initial: dict[str, Any] = {}
        for src, spath in ((defaults, ()), (raw, path)):
            if "initial" in src:
                initial.update(self.signals((*spath, "initial"), src["initial"]))
        if initial:
            ipath = (*path, "initial") if "initial" in raw else ("initial",)
            steps.append(
                Step(
                    index=-1,
                    at=0.0,
                    action="set",
                    value=initial,
                    expect=(),
                    where=self.doc.where(ipath),
                )
            )
        sent: set[str] = set()
        previous = 0.0
        for i, sraw in enumerate(raw.get("steps", [])):
            spath = (*path, "steps", i)
            step = self.step(sraw, spath, i, sent)
            if step is None:
                continue
            if step.at < previous:
                self.err(
                    (*spath, "at"),
                    f"{step.at:g} s is before the previous step's end ({previous:g} s); "
                    "steps run in time order",
                )
            previous = max(previous, step.ends_at)
            steps.append(step)
        expect_end = self.expectations(raw.get("expect_end"), (*path, "expect_end"))
        until = None
        upath = (*path, "until") if "until" in raw else ("until",)
        until_raw = raw.get("until", defaults.get("until"))
        if until_raw is not None:
            until = self.time(upath, until_raw)
            if until < previous:
                self.err(upath, f"until {until:g} s is before the last step ({previous:g} s)")
        if len(self.doc.problems.items) > before:
            return None
        return Case(
            file=self.doc.file,
            index=index,
            name=str(raw["name"]),
            description=str(raw.get("description", "")),
            tags=tuple(tags),
            vehicle=vehicle,
            source=source,
            steps=tuple(steps),
            expect_end=expect_end,
            until=until,
            where=self.doc.where(path),
        )


def resolve_trace(scenario_file: Path, raw: str) -> Path | None:
    """A trace path relative to the scenario file, or to the repository (``can_traces/...``)."""
    given = Path(raw)
    candidates = [given] if given.is_absolute() else [scenario_file.parent / given, REPO / given]
    for c in candidates:
        if c.is_file():
            return c.resolve()
    return None


def display_name(path: Path) -> str:
    """The path as given when relative, else relative to the working directory if below it."""
    if not path.is_absolute():
        return str(path)
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def load_text(text: str, file: str, *, base: Path | None = None) -> ScenarioFile:
    """Scenario cases from YAML ``text``; ScenarioError lists every problem."""
    problems = _Problems()
    file_path = base if base is not None else Path(file)
    docs = _compose(file, text, problems)
    cases: list[Case] = []
    names: dict[str, Where] = {}
    if not docs and not problems.items:
        problems.add(file, (1, 1), "", "no scenario in the file")
    stem = file_path.name.removesuffix(".yaml").removesuffix(".yml").removesuffix(".scenario")
    for doc in docs:
        data = doc.data
        if not isinstance(data, dict):
            problems.add(
                file, doc.root_pos, "", f"a scenario document is a mapping, got {_type_name(data)}"
            )
            continue
        if not _schema_problems(doc, data):
            continue
        for case in _Checker(doc, file_path, stem).cases(data):
            if case.name in names:
                problems.add(
                    file,
                    (case.where.line, case.where.col),
                    case.where.path,
                    f"another case is already called {case.name!r} (line {names[case.name].line})",
                )
                continue
            names[case.name] = case.where
            cases.append(case)
    if problems.items:
        raise ScenarioError(problems.lines())
    renumbered = tuple(
        Case(**{**{f: getattr(c, f) for f in c.__dataclass_fields__}, "index": i})
        for i, c in enumerate(cases)
    )
    return ScenarioFile(path=file, cases=renumbered)


def load_file(path: str | Path) -> ScenarioFile:
    """Load and check one scenario file; ScenarioError with every problem, file:line:col."""
    p = Path(path)
    name = display_name(p)
    try:
        with p.open("rb") as f:
            raw = f.read(MAX_BYTES + 1)
    except FileNotFoundError:
        raise ScenarioError([f"{name}: scenario file not found"]) from None
    except OSError as e:
        raise ScenarioError([f"{name}: cannot read: {e.strerror or e}"]) from None
    if len(raw) > MAX_BYTES:
        raise ScenarioError([f"{name}: larger than {MAX_BYTES} bytes; not a scenario file"])
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ScenarioError([f"{name}: not UTF-8 text (byte {e.start})"]) from None
    return load_text(text, name, base=p.resolve())


def load_paths(paths: Iterable[str | Path], *, include_pending: bool = False) -> list[ScenarioFile]:
    """Every scenario file under ``paths``; one ScenarioError listing the problems of all."""
    files: list[ScenarioFile] = []
    problems: list[str] = []
    found = list(find_files(paths, include_pending=include_pending))
    for p in found:
        try:
            files.append(load_file(p))
        except ScenarioError as e:
            problems.extend(e.problems)
    if not found:
        problems.append(f"no scenario files found in {', '.join(str(p) for p in paths)}")
    if problems:
        raise ScenarioError(problems)
    return files
