"""A fleet's storylines: the reference storylines, varied per van, as signal changes.

Theory of operation. A fleet runs at the signal level: each van's storyline becomes a
list of catalogue signal changes that a driver hands to the core as overrides, rather
than the CAN frames a trace carries (a storyline at CAN level is thousands of frames a
second per van). ``timeline(name, period)`` turns a built-in storyline into steps: every
step change of a catalogue track at its own instant, and ramps (state of charge, speed
and position along a route) sampled every ``period`` seconds; each step holds only the
signals that changed. Timelines are computed once per storyline and shared by all vans.

``plan(seed, index)`` draws one van's variation from a generator seeded with the fleet's
seed and the van's index, so a fleet is the same every run: which storylines it lives
(depot nights, delivery days, cross-border runs), how far into the first one it starts,
the idle time between them, an offset of its state of charge and of its temperatures, a
shift of its position (another depot, other streets), its SIM's home operator, and its
plug habit (how long after parking the driver plugs in). ``van_steps(plan, duration)``
yields the van's changes in time order from t=0: the steps before t=0 of the first
storyline are folded into one full state at t=0, and storylines follow each other with
their idle gaps until ``duration``.
"""

from __future__ import annotations

import functools
import heapq
import random
from collections.abc import Iterator
from dataclasses import dataclass

from tcu.errors import ConfigError
from tcu.storyline import STORYLINES, get
from tcu.vehicle import catalogue as c
from tcu.vehicle.catalogue import CATALOGUE, Value

DEFAULT_PERIOD_S = 10.0
STORY_WEIGHTS: dict[str, float] = {"depot_night": 0.4, "city_delivery": 0.45, "cross_border": 0.15}
HOME_PLMNS: tuple[str, ...] = ("242-01", "242-02", "242-14")
PLUG_PATHS = frozenset(
    {
        c.PLUG_CONNECTED,
        c.PLUG_LOCKED,
        c.INFRA_CONNECTED,
        c.INFRA_TYPE,
        c.RFID,
        c.CHARGING_STATUS,
        c.CHARGING_POWER,
    }
)
TEMPERATURES = frozenset({c.OUTSIDE_TEMP, c.BATTERY_TEMP})
MIN_PLUGGED_S = 60.0

Changes = tuple[tuple[str, Value | None], ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class Step:
    """Catalogue signals that change at storyline time ``t``."""

    t: float
    values: Changes


@dataclass(frozen=True, slots=True, kw_only=True)
class VanPlan:
    """One van's variation of the storylines (see the module docstring)."""

    index: int
    stories: tuple[str, ...]
    phase_s: float
    gaps_s: tuple[float, ...]
    soc_offset: float
    temp_offset: float
    lat_offset: float
    lon_offset: float
    home_plmn: str
    plug_delay_s: float

    def __post_init__(self) -> None:
        if not self.stories or len(self.gaps_s) != len(self.stories):
            raise ValueError("a van plan needs one idle gap per storyline")
        unknown = [s for s in self.stories if s not in STORYLINES]
        if unknown:
            raise ValueError(f"unknown storyline {unknown[0]!r}")


def _rounded(value: Value | None) -> Value | None:
    if isinstance(value, float):
        return round(value, 6)
    return value


@functools.cache
def timeline(name: str, period: float = DEFAULT_PERIOD_S) -> tuple[Step, ...]:
    """The storyline ``name`` as catalogue signal changes (ramps sampled every ``period``)."""
    if not period > 0:
        raise ConfigError(f"signal period must be > 0 s, got {period}")
    story = get(name)
    times = {0.0}
    for path in CATALOGUE:
        knots = story.tracks[path]
        for i, knot in enumerate(knots):
            inside_ramp = i > 0 and knots[i - 1].ramp and knot.ramp
            if not inside_ramp and knot.t <= story.duration:
                times.add(knot.t)
    n = int(story.duration // period)
    times.update(k * period for k in range(1, n + 1))
    steps: list[Step] = []
    last: dict[str, Value | None] = {}
    for t in sorted(times):
        changed = []
        for path in CATALOGUE:
            value = _rounded(story.value(path, t))
            if path not in last or last[path] != value or type(last[path]) is not type(value):
                last[path] = value
                changed.append((path, value))
        if changed:
            steps.append(Step(t=t, values=tuple(changed)))
    return tuple(steps)


@functools.cache
def duration(name: str) -> float:
    return get(name).duration


def plan(seed: int, index: int) -> VanPlan:
    """Van number ``index`` of the fleet seeded with ``seed``: the same every run."""
    rng = random.Random(f"tcu-fleet:{seed}:{index}")
    names = list(STORY_WEIGHTS)
    weights = list(STORY_WEIGHTS.values())
    stories = tuple(rng.choices(names, weights, k=6))
    gaps = tuple(rng.uniform(600.0, 7200.0) for _ in stories)
    return VanPlan(
        index=index,
        stories=stories,
        phase_s=rng.uniform(0.0, duration(stories[0])),
        gaps_s=gaps,
        soc_offset=round(rng.uniform(-20.0, 8.0), 1),
        temp_offset=round(rng.uniform(-5.0, 5.0), 1),
        lat_offset=round(rng.uniform(-0.03, 0.03), 5),
        lon_offset=round(rng.uniform(-0.05, 0.05), 5),
        home_plmn=rng.choice(HOME_PLMNS),
        plug_delay_s=round(rng.choice((0.0, 0.0, rng.uniform(30.0, 1800.0))), 1),
    )


def _vary(p: VanPlan, values: Changes) -> dict[str, Value | None]:
    out: dict[str, Value | None] = {}
    for path, value in values:
        if isinstance(value, float):
            if path == c.SOC:
                value = round(min(100.0, max(3.0, value + p.soc_offset)), 3)
            elif path in TEMPERATURES:
                value = round(value + p.temp_offset, 3)
            elif path == c.LATITUDE:
                value = round(value + p.lat_offset, 6)
            elif path == c.LONGITUDE:
                value = round(value + p.lon_offset, 6)
        out[path] = value
    return out


@functools.cache
def _split(name: str, period: float) -> tuple[tuple[Step, ...], tuple[Step, ...]]:
    """The timeline's steps without the plug's signals, and the plug's steps alone."""
    plain: list[Step] = []
    plug: list[Step] = []
    for step in timeline(name, period):
        rest = tuple(v for v in step.values if v[0] not in PLUG_PATHS)
        mine = tuple(v for v in step.values if v[0] in PLUG_PATHS)
        if rest:
            plain.append(Step(t=step.t, values=rest))
        if mine:
            plug.append(Step(t=step.t, values=mine))
    return tuple(plain), tuple(plug)


def _plug_habit(name: str, period: float, delay: float) -> Iterator[Step]:
    """The storyline's steps with the plug's changes of each plugged session ``delay`` s later.

    A session runs from the plug's connection to its removal; the changes inside it move
    later by ``delay`` but never past the removal (a session shorter than the delay plus
    a minute is left as it is), so the order of the plug's changes is kept.
    """
    if delay <= 0:
        return iter(timeline(name, period))
    plain, plug = _split(name, period)
    shifted: list[Step] = []
    i = 0
    while i < len(plug):
        step = plug[i]
        if dict(step.values).get(c.PLUG_CONNECTED) is not True:
            shifted.append(step)
            i += 1
            continue
        j = i + 1
        while j < len(plug) and dict(plug[j].values).get(c.PLUG_CONNECTED) is not False:
            j += 1
        end = plug[j].t if j < len(plug) else float("inf")
        late = end - step.t > delay + MIN_PLUGGED_S
        for k in range(i, j):
            t = min(plug[k].t + delay, end - 1.0) if late else plug[k].t
            shifted.append(Step(t=t, values=plug[k].values))
        i = j
    return heapq.merge(plain, shifted, key=lambda s: s.t)


def van_steps(
    p: VanPlan, until: float, period: float = DEFAULT_PERIOD_S
) -> Iterator[tuple[float, dict[str, Value | None]]]:
    """The van's signal changes ``(t, {path: value})`` in time order, 0 <= t <= until."""
    t0 = -p.phase_s
    first: dict[str, Value | None] = {}
    n = 0
    while True:
        name = p.stories[n % len(p.stories)]
        gap = p.gaps_s[n % len(p.gaps_s)]
        n += 1
        for step in _plug_habit(name, period, p.plug_delay_s):
            t = t0 + step.t
            if t < 0:
                first.update(_vary(p, step.values))
                continue
            if first:
                yield 0.0, first
                first = {}
            if t > until:
                return
            yield t, _vary(p, step.values)
        t0 += duration(name) + gap
        if t0 > until:
            return
