"""Scenarios as data: cases, timed steps and expectations, each knowing where it was written.

Theory of operation. The loader turns a YAML file into ``Case`` objects; everything in
them is already checked (signal paths, values, command names, reason codes, times), so
the runner and the world never meet a malformed step. Every step and expectation keeps
its ``Where`` (file, line, column and the path inside the document, such as
``steps[3].expect.verdict``) so a failure points at the line the engineer wrote.

Times are vehicle seconds. A ``Step`` does at most one thing (``action``) at ``at`` and
then checks its expectations; ``advance`` steps move the clock on by ``value`` seconds
and check their expectations at the end of that span.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tcu.services.config import VehicleConfig

ACTIONS: tuple[str, ...] = (
    "set",
    "release",
    "move",
    "coverage",
    "broker",
    "power_cycle",
    "command",
    "forged_command",
    "expired_command",
    "replayed_command",
    "activate",
    "deactivate",
    "advance",
)
COMMAND_ACTIONS: tuple[str, ...] = (
    "command",
    "forged_command",
    "expired_command",
    "replayed_command",
)
EXPECTATION_KINDS: tuple[str, ...] = (
    "verdict",
    "session",
    "vehicle",
    "registration",
    "backend",
    "roaming",
    "command",
    "counters",
)
COUNTERS: dict[str, str] = {
    "frames": "CAN frames read",
    "decoded_frames": "frames decoded (their bytes changed)",
    "unchanged_frames": "frames whose bytes had not changed",
    "unknown_id_frames": "frames of a message the mapping does not name",
    "bad_frames": "frames of a mapped message that did not decode",
    "error_frames": "CAN error frames",
    "remote_frames": "CAN remote frames",
    "verdicts": "verdicts the services issued",
    "transitions": "session transitions",
    "alarms": "alarms raised",
    "can_requests": "request frames the TCU sent to the van",
    "unhandled_events": "events no part of the core handled",
    "records": "telemetry records produced",
    "dropped": "records the outbox shed",
    "published": "messages published to the broker",
    "acked": "records the backend acknowledged",
    "stored": "records the backend stored",
    "duplicates": "records the backend received more than once",
    "rejected": "messages the backend rejected",
    "commands_rejected": "downlink commands the TCU rejected (signature, expiry, replay)",
    "outbox_depth": "records waiting in the outbox",
}
RESERVED_TAGS = frozenset(
    {
        "skip",
        "skipif",
        "xfail",
        "parametrize",
        "usefixtures",
        "filterwarnings",
        "tryfirst",
        "trylast",
        "asyncio",
        "no_cover",
    }
)
TAG_RE = re.compile(r"[a-z][a-z0-9_]*")


def format_time(t: float) -> str:
    """``5400.5`` -> ``"1:30:00.5 (5400.5 s)"`` for messages."""
    whole = int(t)
    frac = t - whole
    hms = f"{whole // 3600}:{whole % 3600 // 60:02d}:{whole % 60:02d}"
    if frac:
        hms += f"{frac:.3f}".lstrip("0").rstrip("0")
    return f"{hms} ({t:g} s)"


@dataclass(frozen=True, slots=True, kw_only=True)
class Where:
    """A place in a scenario file: 1-based line and column, and the path to the value."""

    file: str
    line: int
    col: int
    path: str = ""

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.col}"


@dataclass(frozen=True, slots=True, kw_only=True)
class CommandSpec:
    """A command as the backend would send it: name, optional argument and id."""

    name: str
    argument: str | None = None
    command_id: str | None = None

    def __str__(self) -> str:
        return self.name + (f" {self.argument}" if self.argument is not None else "")


@dataclass(frozen=True, slots=True, kw_only=True)
class Expectation:
    """What must hold: ``kind`` (one of EXPECTATION_KINDS) and the expected fields."""

    kind: str
    fields: dict[str, Any]
    where: Where

    def __post_init__(self) -> None:
        if self.kind not in EXPECTATION_KINDS:
            raise ValueError(f"unknown expectation kind {self.kind!r}")

    @property
    def subject(self) -> str | None:
        """The service or command the expectation is about, when it names one."""
        for key in ("service", "name"):
            value = self.fields.get(key)
            if isinstance(value, str):
                return value
        return None


@dataclass(frozen=True, slots=True, kw_only=True)
class Step:
    """One timed step: at most one action at ``at``, then the expectations."""

    index: int
    at: float
    action: str | None
    value: Any
    expect: tuple[Expectation, ...]
    where: Where
    note: str = ""

    def __post_init__(self) -> None:
        if self.action is not None and self.action not in ACTIONS:
            raise ValueError(f"unknown step action {self.action!r}")
        if not math.isfinite(self.at) or self.at < 0:
            raise ValueError(f"step time must be a finite number >= 0, got {self.at!r}")

    @property
    def label(self) -> str:
        return "initial" if self.index < 0 else f"steps[{self.index}]"

    @property
    def ends_at(self) -> float:
        return self.at + self.value if self.action == "advance" else self.at

    def describe(self) -> str:
        """``steps[3] at 0:02:00 (120 s): command start_charging``."""
        what = (
            "expect" if self.action is None else f"{self.action} {_show(self.action, self.value)}"
        )
        return f"{self.label} at {format_time(self.at)}: {what}".rstrip()


def _yaml(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _show(action: str, value: Any) -> str:
    if action == "set" and isinstance(value, dict):
        return ", ".join(f"{k}: {_yaml(v)}" for k, v in value.items())
    if action == "release":
        return ", ".join(value)
    if action in ("coverage", "broker"):
        on = {"coverage": ("on", "off"), "broker": ("up", "down")}[action]
        return on[0] if value else on[1]
    if action in ("activate", "deactivate"):
        return ""
    if action == "advance":
        return f"{value:g} s"
    if action == "power_cycle":
        return f"(off for {value:g} s)"
    if action == "move" and isinstance(value, dict):
        return ", ".join(f"{k}={v}" for k, v in value.items())
    return str(value)


@dataclass(frozen=True, slots=True, kw_only=True)
class VehicleSpec:
    """The van a case runs: the services' configuration plus SIM and reporting settings."""

    config: VehicleConfig
    home_plmn: str | None = None
    reporting: dict[str, float] = field(default_factory=dict)
    start_given: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class TraceSpec:
    """Replay this trace file; ``path`` is resolved and exists."""

    path: Path


@dataclass(frozen=True, slots=True, kw_only=True)
class StorylineSpec:
    """Frames generated from the named storyline with ``seed``: ``duration`` s from ``start``.

    Vehicle time 0 is storyline time ``start``.
    """

    name: str
    seed: int
    start: float = 0.0
    duration: float | None = None


Source = TraceSpec | StorylineSpec | None


@dataclass(frozen=True, slots=True, kw_only=True)
class Case:
    """One scenario: a van, what its bus carries, timed steps and final expectations."""

    file: str
    index: int
    name: str
    description: str
    tags: tuple[str, ...]
    vehicle: VehicleSpec
    source: Source
    steps: tuple[Step, ...]
    expect_end: tuple[Expectation, ...]
    until: float | None
    where: Where

    @property
    def last_step_time(self) -> float:
        return max((s.ends_at for s in self.steps), default=0.0)

    @property
    def needs(self) -> frozenset[str]:
        """Every action and expectation kind the case uses, e.g. ``{"set", "verdict"}``."""
        used: set[str] = set()
        for s in self.steps:
            if s.action is not None:
                used.add(s.action)
            used.update(e.kind for e in s.expect)
        used.update(e.kind for e in self.expect_end)
        return frozenset(used)


@dataclass(frozen=True, slots=True, kw_only=True)
class ScenarioFile:
    path: str
    cases: tuple[Case, ...]
