"""Storylines as data: what the van does, second by second, as piecewise-linear tracks.

Theory of operation: a storyline is a start date-time (UTC), a duration and one track per
signal. A track is a sorted tuple of knots ``(t, value, ramp)``: from a knot on, the
signal holds the knot's value, or, when ``ramp`` is set, moves linearly to the next knot's
value. Step changes (a door opens), ramps (SoC rising while charging, a window going
down, a tyre losing pressure) and sampled motion (speed and GNSS along a route) are all
knots. Track keys are catalogue paths or, for traffic the TCU does not map (cabin
temperature, GNSS heading...), DBC signal names. ``BusPhase`` says who talks on the bus
(``awake``: every ECU; ``charging``: only the charging ECUs' slow messages; ``asleep``:
nobody) and ``Event`` lists what a services engineer looks for, with its time.

``StoryBuilder`` writes storylines in the order things happen; the built ``Storyline`` is
frozen and evaluated by ``value(key, t)`` with a bisection per call.
"""

from __future__ import annotations

import bisect
import itertools
import math
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Literal

from tcu.vehicle.catalogue import CATALOGUE, Value

BusMode = Literal["awake", "charging", "asleep"]
BUS_MODES: tuple[BusMode, ...] = ("awake", "charging", "asleep")


@dataclass(frozen=True, slots=True, kw_only=True)
class Knot:
    t: float
    value: Value | None
    ramp: bool = False

    def __post_init__(self) -> None:
        if not math.isfinite(self.t) or self.t < 0:
            raise ValueError(f"knot time must be a finite number >= 0, got {self.t!r}")
        if self.ramp and (isinstance(self.value, bool) or not isinstance(self.value, float)):
            raise ValueError(f"only numbers ramp, got {self.value!r}")


@dataclass(frozen=True, slots=True, kw_only=True)
class BusPhase:
    t: float
    mode: BusMode

    def __post_init__(self) -> None:
        if self.mode not in BUS_MODES:
            raise ValueError(f"bus mode must be one of {', '.join(BUS_MODES)}: {self.mode!r}")


@dataclass(frozen=True, slots=True, kw_only=True)
class Event:
    t: float
    text: str

    def __post_init__(self) -> None:
        if not self.text:
            raise ValueError("an event needs a text")


@dataclass(frozen=True, slots=True, kw_only=True)
class Storyline:
    name: str
    title: str
    start: datetime
    duration: float
    tracks: dict[str, tuple[Knot, ...]]
    bus: tuple[BusPhase, ...]
    events: tuple[Event, ...] = ()
    log_min_period: float = 0.0
    time_compression: float = 1.0
    notes: str = ""
    _times: dict[str, tuple[float, ...]] = field(init=False, repr=False, compare=False)
    _bus_times: tuple[float, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.start.tzinfo is None or self.start.utcoffset() != timedelta(0):
            raise ValueError(f"{self.name}: start must be a UTC date-time")
        if not self.duration > 0:
            raise ValueError(f"{self.name}: duration must be > 0")
        if self.log_min_period < 0 or self.time_compression < 1:
            raise ValueError(f"{self.name}: log_min_period >= 0 and time_compression >= 1")
        for path in CATALOGUE:
            if path not in self.tracks:
                raise ValueError(f"{self.name}: no track for catalogue signal {path}")
        times: dict[str, tuple[float, ...]] = {}
        for key, knots in self.tracks.items():
            if not knots:
                raise ValueError(f"{self.name}: track {key} is empty")
            ts = tuple(k.t for k in knots)
            if any(b < a for a, b in itertools.pairwise(ts)):
                raise ValueError(f"{self.name}: knots of {key} are not in time order")
            times[key] = ts
        if not self.bus or self.bus[0].t != 0:
            raise ValueError(f"{self.name}: the first bus phase starts at t=0")
        bus_times = tuple(p.t for p in self.bus)
        if any(b <= a for a, b in itertools.pairwise(bus_times)):
            raise ValueError(f"{self.name}: bus phases are not in time order")
        object.__setattr__(self, "_times", times)
        object.__setattr__(self, "_bus_times", bus_times)

    @property
    def start_epoch(self) -> float:
        return self.start.timestamp()

    def value(self, key: str, t: float) -> Value | None:
        """The value of track ``key`` at storyline time ``t``."""
        knots = self.tracks[key]
        i = bisect.bisect_right(self._times[key], t) - 1
        if i < 0:
            return knots[0].value
        k = knots[i]
        if k.ramp and i + 1 < len(knots):
            nxt = knots[i + 1]
            v0 = k.value
            v1 = nxt.value
            if isinstance(v0, float) and isinstance(v1, float) and nxt.t > k.t:
                return v0 + (v1 - v0) * (t - k.t) / (nxt.t - k.t)
        return k.value

    def state(self, t: float) -> dict[str, Value | None]:
        """Every catalogue signal at storyline time ``t``."""
        return {path: self.value(path, t) for path in CATALOGUE}

    def mode(self, t: float) -> BusMode:
        i = bisect.bisect_right(self._bus_times, t) - 1
        return self.bus[max(i, 0)].mode

    def phases(self) -> list[tuple[float, float, BusMode]]:
        """The bus phases as ``(start, end, mode)`` within the storyline's duration."""
        out: list[tuple[float, float, BusMode]] = []
        for i, p in enumerate(self.bus):
            end = self.bus[i + 1].t if i + 1 < len(self.bus) else self.duration
            end = min(end, self.duration)
            if end > p.t:
                out.append((p.t, end, p.mode))
        return out

    def clock(self, t: float) -> str:
        """The UTC wall time of storyline time ``t``, as ``HH:MM:SS``."""
        return (self.start + timedelta(seconds=t)).strftime("%H:%M:%S")


class StoryBuilder:
    """Writes a storyline in time order: ``set``, ``ramp``, ``bus``, ``event``."""

    def __init__(self, name: str, title: str, start: datetime) -> None:
        self.name = name
        self.title = title
        self.start = start.astimezone(UTC)
        self._tracks: dict[str, list[Knot]] = {}
        self._bus: list[BusPhase] = []
        self._events: list[Event] = []

    def value(self, key: str, t: float) -> Value | None:
        knots = self._tracks.get(key)
        if not knots:
            raise KeyError(f"{self.name}: track {key} has no value yet")
        i = bisect.bisect_right([k.t for k in knots], t) - 1
        k = knots[max(i, 0)]
        if k.ramp and i + 1 < len(knots):
            nxt = knots[i + 1]
            if isinstance(k.value, float) and isinstance(nxt.value, float) and nxt.t > k.t:
                return k.value + (nxt.value - k.value) * (t - k.t) / (nxt.t - k.t)
        return k.value

    def number(self, key: str, t: float) -> float:
        v = self.value(key, t)
        if isinstance(v, bool) or not isinstance(v, float):
            raise TypeError(f"{self.name}: {key} is not a number at t={t}: {v!r}")
        return v

    def _add(self, key: str, knot: Knot) -> None:
        knots = self._tracks.setdefault(key, [])
        if knots and knot.t < knots[-1].t:
            raise ValueError(
                f"{self.name}: {key}: t={knot.t} comes before the last change t={knots[-1].t}"
            )
        if knots and knots[-1].t == knot.t:
            knots[-1] = knot
        else:
            knots.append(knot)

    def set(self, t: float, values: dict[str, Value | None], event: str | None = None) -> None:
        """Step changes at ``t``; numbers are stored as floats."""
        for key, v in values.items():
            if isinstance(v, int) and not isinstance(v, bool):
                v = float(v)
            self._add(key, Knot(t=t, value=v))
        if event:
            self.event(t, event)

    def ramp(self, key: str, t0: float, t1: float, v1: float, event: str | None = None) -> None:
        """Move ``key`` linearly from its value at ``t0`` to ``v1`` at ``t1``."""
        if t1 <= t0:
            raise ValueError(f"{self.name}: {key}: a ramp needs t1 > t0")
        v0 = self.number(key, t0)
        self._add(key, Knot(t=t0, value=v0, ramp=True))
        self._add(key, Knot(t=t1, value=float(v1)))
        if event:
            self.event(t0, event)

    def samples(self, key: str, points: list[tuple[float, float]]) -> None:
        """A sampled curve: linear between the given ``(t, value)`` points."""
        for i, (t, v) in enumerate(points):
            self._add(key, Knot(t=t, value=float(v), ramp=i + 1 < len(points)))

    def bus(self, t: float, mode: BusMode) -> None:
        if self._bus and t <= self._bus[-1].t:
            raise ValueError(f"{self.name}: bus phase at t={t} is not after the last one")
        self._bus.append(BusPhase(t=t, mode=mode))

    def event(self, t: float, text: str) -> None:
        self._events.append(Event(t=t, text=text))

    def build(
        self,
        duration: float,
        *,
        log_min_period: float = 0.0,
        time_compression: float = 1.0,
        notes: str = "",
    ) -> Storyline:
        return Storyline(
            name=self.name,
            title=self.title,
            start=self.start,
            duration=duration,
            tracks={k: tuple(v) for k, v in self._tracks.items()},
            bus=tuple(self._bus),
            events=tuple(sorted(self._events, key=lambda e: e.t)),
            log_min_period=log_min_period,
            time_compression=time_compression,
            notes=notes,
        )
