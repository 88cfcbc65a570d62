"""The replay driver: a trace file through the core, on a virtual clock.

Theory of operation. The driver is the virtual clock of a ``Host``
(``tcu.runtime.host``): it has ``now`` and ``schedule(t, event)``, and it feeds the host.
Vehicle time ``now`` is the frame's timestamp minus the first frame's. Before each frame
the driver fires, in time order, every scheduled event (injected commands, scenario
steps, the in-memory link's deliveries) and every core deadline that falls at or before
the frame, each at its own time, so timers behave as they would on a real bus. As fast as
possible by default; with ``speed`` the driver sleeps to keep ``speed`` x real time.
Frames take the core's fast path; whatever it returns, the host carries out.
"""

from __future__ import annotations

import heapq
import itertools
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

import can

from tcu.events import Action, Tick

TICK = Tick()


@dataclass(slots=True)
class ReplayStats:
    vehicle_time_s: float = 0.0
    wall_s: float = 0.0
    first_timestamp: float | None = None
    skipped_before_start: int = 0
    time_reversals: int = 0
    late_events: list[str] = field(default_factory=list)


class Driven(Protocol):
    """What the driver feeds: a ``tcu.runtime.host.Host``."""

    frame: Callable[[can.Message, float], list[Action]]

    @property
    def core(self) -> Any: ...

    def handle(self, event: Any, now: float) -> list[Action]: ...

    def carry_out(self, actions: Iterable[Action], now: float) -> None: ...


class ReplayDriver:
    """The virtual clock: frames and scheduled events in vehicle-time order."""

    def __init__(
        self,
        frames: Iterable[can.Message] = (),
        *,
        start: float | None = None,
        stop: float | None = None,
        speed: float | None = None,
        on_progress: Callable[[int, float], None] | None = None,
        clock: Callable[[], float] = time.perf_counter,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.host: Driven | None = None
        self.frames = frames
        self.start = start
        self.stop = stop
        self.speed = speed
        self.on_progress = on_progress
        self.clock = clock
        self.sleep = sleep
        self.stats = ReplayStats()
        self._queue: list[tuple[float, int, Any]] = []
        self._seq = itertools.count()
        self.now = 0.0
        self._t0: float | None = None
        self._last = 0.0
        self._n = 0
        self._wall_start: float | None = None
        self._pace: tuple[float, float] | None = None
        self._next_event = float("inf")  # the earliest scheduled event (a cache of the heap)

    def drive(self, host: Driven) -> None:
        """The host this clock feeds (made with this driver as its clock)."""
        self.host = host

    def _host(self) -> Driven:
        if self.host is None:
            raise RuntimeError("ReplayDriver.drive(host) was not called")
        return self.host

    def schedule(self, t: float, event: Any) -> None:
        """Hand ``event`` to the host at vehicle time ``t``.

        A callable is called with ``t`` instead: this is how the world around the core
        (link, backend, scenario steps) runs on the same virtual clock. It may return
        actions, which the host carries out like the core's own.
        """
        heapq.heappush(self._queue, (t, next(self._seq), event))
        if t < self._next_event:
            self._next_event = t

    def advance(self, until: float) -> None:
        """Fire scheduled events and core deadlines up to and including ``until``."""
        host = self._host()
        queue = self._queue
        while True:
            t_event = queue[0][0] if queue else float("inf")
            t_timer = host.core.next_deadline
            t = min(t_event, t_timer)
            if t > until:
                self._next_event = t_event
                break
            t = max(t, self.now)
            self.now = t
            if t_event <= t_timer:
                _, _, event = heapq.heappop(queue)
                if callable(event):
                    actions = event(t)
                    if actions:
                        host.carry_out(actions, t)
                else:
                    host.handle(event, t)
            else:
                host.handle(TICK, t)
        self.now = max(self.now, until)

    def run(self) -> ReplayStats:
        """Replay every frame, then fire what is due up to the last one."""
        self.feed(self.frames)
        return self.finish()

    def feed(self, frames: Iterable[can.Message]) -> bool:
        """Replay ``frames``, continuing where the previous call stopped.

        False once ``stop`` is passed (the rest of the trace is not needed). Drivers that
        must give an event loop a turn now and then feed the trace in chunks.
        """
        host = self._host()
        core = host.core
        frame = host.frame
        carry_out = host.carry_out
        stats = self.stats
        start = self.start if self.start is not None else float("-inf")
        stop = self.stop if self.stop is not None else float("inf")
        progress = self.on_progress
        speed = self.speed
        clock = self.clock
        if self._wall_start is None:
            self._wall_start = clock()
        t0 = self._t0
        last = self._last
        n = self._n
        try:
            for msg in frames:
                if t0 is None:
                    t0 = self._t0 = msg.timestamp
                    stats.first_timestamp = t0
                now = msg.timestamp - t0
                if now < last:
                    stats.time_reversals += 1
                    now = last
                last = now
                if now < start:
                    stats.skipped_before_start += 1
                    continue
                if now > stop:
                    return False
                if self._next_event <= now or core.next_deadline <= now:
                    self.advance(now)
                    core = host.core  # the TCU may have restarted or gone off meanwhile
                    frame = host.frame
                self.now = now
                if speed is not None:
                    if self._pace is None:
                        self._pace = (now, clock())
                    now0, wall0 = self._pace
                    ahead = (now - now0) / speed - (clock() - wall0)
                    if ahead > 0.001:
                        self.sleep(ahead)
                actions = frame(msg, now)
                if actions:
                    carry_out(actions, now)
                if progress is not None:
                    n += 1
                    if not n & 0xFFF:
                        progress(n, now)
        finally:
            self._last, self._n = last, n
        return True

    def finish(self) -> ReplayStats:
        """Fire what is due up to the last frame; report events that fell after it."""
        stats = self.stats
        queue = self._queue
        last = self._last
        end = last if self.stop is None else min(last, self.stop)
        self.advance(end)
        kept = []
        for item in sorted(queue):
            t, _, event = item
            if callable(event):
                kept.append(item)  # the world's own timers: they run on if time advances
            else:
                stats.late_events.append(
                    f"t={t:g}s {event!r}: after the end of the trace ({end:g}s), not injected"
                )
        queue[:] = kept
        heapq.heapify(queue)
        self._next_event = queue[0][0] if queue else float("inf")
        stats.vehicle_time_s = end - (0.0 if self.start is None else max(0.0, self.start))
        wall_start = self._wall_start if self._wall_start is not None else self.clock()
        stats.wall_s = self.clock() - wall_start
        return stats
