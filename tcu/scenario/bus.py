"""A scenario case's CAN bus: its trace or storyline, as frames in vehicle time.

Both scenario worlds read their frames through ``open_bus``: vehicle time 0 is the first
frame (or the storyline's start), and a frame whose timestamp goes backwards is held at
the time reached so far, one frame looked ahead so the world can advance up to it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import cache

import can

from tcu.can.encoder import FrameEncoder
from tcu.can.setup import BusSetup, load_bus_setup
from tcu.scenario.cases import Case, StorylineSpec, TraceSpec


@cache
def reference_setup() -> BusSetup:
    return load_bus_setup()


@cache
def reference_encoder() -> FrameEncoder:
    setup = reference_setup()
    return FrameEncoder(setup.db, setup.mapping)


@dataclass(slots=True)
class CaseBus:
    """The case's frames in vehicle time, one frame looked ahead."""

    frames: Iterator[can.Message] = field(default_factory=lambda: iter(()))
    t0: float = 0.0
    next: can.Message | None = None
    next_t: float = 0.0
    last_t: float = 0.0

    def pull(self) -> None:
        msg = next(self.frames, None)
        self.next = msg
        if msg is not None:
            t = msg.timestamp - self.t0
            self.next_t = t if t >= self.last_t else self.last_t
            self.last_t = self.next_t

    def close(self) -> None:
        close = getattr(self.frames, "close", None)
        if close is not None:
            close()


def open_bus(case: Case) -> tuple[CaseBus, float | None]:
    """The case's bus and the UTC epoch of its vehicle time 0 (None: silent bus)."""
    source = case.source
    bus = CaseBus()
    if isinstance(source, TraceSpec):
        from tcu.can.sources import open_trace

        bus.frames = iter(open_trace(source.path))
        bus.pull()
        if bus.next is None:
            return bus, None
        bus.t0 = bus.next.timestamp
        bus.next_t = bus.last_t = 0.0
        return bus, bus.t0
    if isinstance(source, StorylineSpec):
        from tcu.storyline import get
        from tcu.storyline.generator import frames

        story = get(source.name)
        bus.t0 = story.start_epoch + source.start
        bus.frames = frames(
            story,
            reference_encoder(),
            seed=source.seed,
            t_from=source.start,
            duration=source.duration,
        )
        bus.pull()
        return bus, bus.t0
    return bus, None


def finish_bus(
    bus: CaseBus, advance: Callable[[float], None], now: float, until: float | None
) -> float:
    """Run a world to ``until``, or (None) to its bus's last frame; the time reached."""
    if until is None:
        until = now
        while bus.next is not None:
            until = bus.next_t
            advance(until)
    advance(until)
    return until
