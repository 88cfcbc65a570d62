"""The world a scenario drives, as the runner sees it: a small protocol and the matching rules.

Theory of operation. A ``World`` is a TCU with whatever surrounds it (bus source, SIM
link, broker, backend), all on one virtual clock that only the runner moves. The runner
calls, in vehicle-time order and never backwards:

- ``advance(until)``: run everything due up to and including ``until`` (frames, timers,
  link and backend events);
- ``apply(step, now)``: carry out ``step.action`` at ``now`` (the runner itself handles
  ``advance`` steps by calling ``advance``);
- ``observe(expectation, now)``: report the actual values behind an expectation, as an
  ``Observation``; ``check`` below does the comparing, so every world judges alike;
- ``finish(until)``: run on to ``until`` (or, when ``None``, to the end of the bus
  source) and return the vehicle time reached; expectations at the end follow it;
- ``close()``: release whatever the world holds; always called, also after a failure.

A world that cannot carry out an action or observe a kind of expectation raises
``NotSupported``; the case then fails with "not supported by this world: <kind>", so a
scenario never passes on something that was not checked. Worlds are made by a
``WorldFactory`` ``(case, options) -> World``; ``resolve_factory`` finds the one to
use (``TCU_SCENARIO_WORLD=module:attribute`` overrides the default).
"""

from __future__ import annotations

import importlib
import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from tcu.errors import ConfigError, TcuError
from tcu.scenario.cases import Case, Expectation, Step

BROKERS = ("memory", "embedded", "mosquitto")
DEFAULT_WORLD = "tcu.scenario.scenario_world:ScenarioWorld"
WORLD_ENV = "TCU_SCENARIO_WORLD"
COUNT_FIELDS: dict[str, frozenset[str]] = {
    "session": frozenset({"count"}),
    "backend": frozenset({"records", "duplicates", "gaps"}),
    "roaming": frozenset({"bytes"}),
}
CODE_FIELDS = frozenset({"reasons", "warnings"})
REL_TOL = 1e-9
ABS_TOL = 1e-6


SHARED_OPTIONS: tuple[tuple[str, dict[str, Any]], ...] = (
    (
        "broker",
        {
            "choices": BROKERS,
            "default": "memory",
            "help": "memory: TCU and backend wired in memory (default); embedded (amqtt) or "
            "mosquitto: every message crosses that broker",
        },
    ),
    (
        "world",
        {
            "default": None,
            "metavar": "MODULE:ATTR",
            "help": f"world factory (default: ${WORLD_ENV} or the scenario world)",
        },
    ),
    (
        "pending",
        {
            "action": "store_true",
            "default": False,
            "help": "also run scenarios/**/pending/ files",
        },
    ),
)
"""The options ``tcu scenario run`` and the pytest plugin share (``--scenario-`` there)."""


def add_shared_options(add: Callable[..., Any], prefix: str = "") -> None:
    """Add ``SHARED_OPTIONS`` with ``add`` (``add_argument`` or ``addoption``)."""
    for name, options in SHARED_OPTIONS:
        add(f"--{prefix}{name}", **options)


class NotSupported(TcuError):
    """The world in use cannot carry out this action or observe this expectation."""

    def __init__(self, kind: str, why: str = "") -> None:
        self.kind = kind
        self.why = why
        super().__init__(f"not supported by this world: {kind}" + (f" ({why})" if why else ""))

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.kind, self.why))


@dataclass(frozen=True, slots=True, kw_only=True)
class WorldOptions:
    broker: str = "memory"

    def __post_init__(self) -> None:
        if self.broker not in BROKERS:
            raise ConfigError(f"--broker {self.broker!r}: expected one of {', '.join(BROKERS)}")


@dataclass(frozen=True, slots=True, kw_only=True)
class FieldCheck:
    name: str
    expected: Any
    actual: Any
    ok: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class Observation:
    """What the world found for one expectation; ``ok`` when it matches."""

    actual: Any
    ok: bool
    fields: tuple[FieldCheck, ...] = ()
    detail: str = ""


class World(Protocol):
    def advance(self, until: float) -> None: ...

    def apply(self, step: Step, now: float) -> None: ...

    def observe(self, expectation: Expectation, now: float) -> Observation: ...

    def finish(self, until: float | None) -> float: ...

    def close(self) -> None: ...


WorldFactory = Callable[[Case, WorldOptions], World]


def resolve_factory(spec: str | None = None) -> WorldFactory:
    """The world factory named ``module:attribute`` (default: env ``TCU_SCENARIO_WORLD``)."""
    spec = spec or os.environ.get(WORLD_ENV) or DEFAULT_WORLD
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise ConfigError(f"world {spec!r}: expected module:attribute")
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise ConfigError(f"world {spec!r}: cannot import {module_name}: {e}") from None
    try:
        factory: WorldFactory = getattr(module, attr)
    except AttributeError:
        raise ConfigError(f"world {spec!r}: {module_name} has no {attr!r}") from None
    return factory


# -- comparing ----------------------------------------------------------------------------


def matches_count(expected: Any, actual: Any) -> bool:
    if isinstance(actual, bool) or not isinstance(actual, int | float):
        return False
    if isinstance(expected, Mapping):
        low = expected.get("min", -math.inf)
        high = expected.get("max", math.inf)
        return bool(low <= actual <= high)
    return bool(actual == expected)


def matches_value(expected: Any, actual: Any) -> bool:
    if isinstance(expected, bool) or isinstance(actual, bool):
        return type(expected) is type(actual) and expected == actual
    if isinstance(expected, int | float) and isinstance(actual, int | float):
        return math.isclose(expected, actual, rel_tol=REL_TOL, abs_tol=ABS_TOL)
    return bool(expected == actual)


def _flatten(kind: str, fields: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, value in fields.items():
        if kind == "backend" and name == "kinds" and isinstance(value, Mapping):
            for k, v in value.items():
                out[f"kinds.{k}"] = v
        else:
            out[name] = value
    return out


def check(
    expectation: Expectation, actual: Mapping[str, Any] | None, missing: str = ""
) -> Observation:
    """Compare the expected fields with ``actual`` (None: nothing to compare, ``missing`` says why).

    Reason and warning codes compare as sets (a code repeated for several signals counts
    once); counts (``count``, ``records``, counters...)
    take a number or ``{min, max}``; numbers compare within 1e-6; a value compares equal
    only to a value of the same kind (``true`` is not ``1``).
    """
    kind = expectation.kind
    expected = _flatten(kind, expectation.fields)
    if actual is None:
        checks = tuple(
            FieldCheck(name=n, expected=v, actual=None, ok=False) for n, v in expected.items()
        )
        return Observation(
            actual=None, ok=False, fields=checks, detail=missing or "nothing observed"
        )
    flat = _flatten(kind, actual)
    counts = COUNT_FIELDS.get(kind, frozenset())
    checks_list: list[FieldCheck] = []
    for name, want in expected.items():
        got = flat.get(name)
        if kind == "counters" or name in counts or name.startswith("kinds."):
            ok = matches_count(want, got)
        elif name in CODE_FIELDS and isinstance(want, list):
            got = sorted(got) if isinstance(got, list | tuple) else got
            ok = isinstance(got, list) and set(got) == set(want)
            want = sorted(want)
        else:
            ok = matches_value(want, got)
        checks_list.append(FieldCheck(name=name, expected=want, actual=got, ok=ok))
    checks = tuple(checks_list)
    return Observation(actual=dict(actual), ok=all(c.ok for c in checks), fields=checks)


def verdict_observation(
    expectation: Expectation, verdicts: Sequence[Any], service: str
) -> Observation:
    """The newest verdict of ``service`` against what the expectation names."""
    found = [v for v in verdicts if v.service == service]
    if not found:
        return check(expectation, None, f"no {service} verdict yet")
    v = found[-1]
    return check(
        expectation,
        {
            "service": v.service,
            "outcome": v.outcome,
            "reasons": list(v.codes),
            "warnings": list(v.warning_codes),
            "t": v.t,
        },
    )


def session_observation(
    expectation: Expectation, moves: Sequence[tuple[int, Any]], service: str
) -> Observation:
    """The newest session of ``service``; ``moves`` are (boot, transition) in order."""
    mine = [(boot, t) for boot, t in moves if t.service == service]
    if not mine:
        return check(
            expectation,
            {"service": service, "state": None, "reasons": [], "count": 0},
            f"no {service} session yet",
        )
    _, last = mine[-1]
    return check(
        expectation,
        {
            "service": service,
            "state": last.to_state,
            "reasons": [r.code for r in last.reasons],
            "count": len({(boot, t.session_id) for boot, t in mine}),
            "session_id": last.session_id,
        },
    )
