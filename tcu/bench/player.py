"""Replay onto a bus: a trace's frames sent with their recorded timing.

Theory of operation. Frame ``i`` is due at ``start + (ts_i - ts_0) / speed`` where
``start`` is a monotonic instant taken when the first frame goes out: every deadline is
absolute, so a late frame never delays the ones after it and no error accumulates.
``time.sleep`` wakes up late (by tens of microseconds, milliseconds under load), so the
player sleeps only until ``spin`` (1 ms) before a deadline and then spins on
``time.perf_counter()``. The spin does not yield: ``time.sleep(0)`` is itself a trip through
the scheduler (about 0.1 ms), which is the error the spin is there to avoid; the GIL's
switch interval still lets another thread of the process run. A frame whose deadline has
already passed goes out at once, and so does every overdue frame after it, back to back (a
batch), until the player has caught up. A gap in the trace longer than ``max_gap`` is
shortened to it (python-can's ``--skip``).

Error frames are not sent unless asked (as ``can.player``). A frame the bus refuses is
counted; the player gives up, with a ``BusError``, only after ``max_consecutive_errors``
refusals in a row (the adapter is gone). The report gives the frames sent, the span of
the trace they cover, the wall time that took, the drift between the two, and the lag of
each frame behind its deadline (median, 99th percentile, maximum) as the player saw it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import can

from tcu.errors import BusError, ConfigError
from tcu.runtime.bus import FAULTS, describe_fault

SPIN_S = 0.001
SEND_TIMEOUT = 0.1
MAX_CONSECUTIVE_ERRORS = 50
MAX_SLEEP = 0.1


@dataclass(slots=True)
class PlayStats:
    frames_read: int = 0
    frames_sent: int = 0
    send_errors: int = 0
    skipped_error_frames: int = 0
    skipped_outside_window: int = 0
    time_reversals: int = 0
    batches: int = 0
    batched_frames: int = 0
    gaps_shortened_s: float = 0.0
    trace_span_s: float = 0.0
    paced_span_s: float = 0.0
    wall_s: float = 0.0
    stopped_early: bool = False
    lags: list[float] = field(default_factory=list, repr=False)
    first_errors: list[str] = field(default_factory=list)

    @property
    def drift_s(self) -> float:
        """Wall time from the first to the last frame sent, minus the paced trace span."""
        return self.wall_s - self.paced_span_s

    def lag_quantile(self, q: float) -> float:
        if not self.lags:
            return 0.0
        ordered = sorted(self.lags)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    def as_dict(self) -> dict[str, Any]:
        return {
            "frames_read": self.frames_read,
            "frames_sent": self.frames_sent,
            "send_errors": self.send_errors,
            "skipped_error_frames": self.skipped_error_frames,
            "skipped_outside_window": self.skipped_outside_window,
            "time_reversals": self.time_reversals,
            "trace_span_s": round(self.trace_span_s, 6),
            "paced_span_s": round(self.paced_span_s, 6),
            "wall_s": round(self.wall_s, 6),
            "drift_ms": round(self.drift_s * 1000, 3),
            "lag_p50_ms": round(self.lag_quantile(0.5) * 1000, 3),
            "lag_p99_ms": round(self.lag_quantile(0.99) * 1000, 3),
            "lag_max_ms": round(max(self.lags, default=0.0) * 1000, 3),
            "batches": self.batches,
            "batched_frames": self.batched_frames,
            "gaps_shortened_s": round(self.gaps_shortened_s, 6),
            "stopped_early": self.stopped_early,
        }


class PacedPlayer:
    """Sends frames onto ``bus`` at their trace times (scaled by ``1 / speed``)."""

    def __init__(
        self,
        bus: can.BusABC,
        *,
        speed: float = 1.0,
        spin: float = SPIN_S,
        max_gap: float | None = None,
        error_frames: bool = False,
        start: float | None = None,
        stop: float | None = None,
        send_timeout: float = SEND_TIMEOUT,
        max_consecutive_errors: int = MAX_CONSECUTIVE_ERRORS,
        clock: Callable[[], float] = time.perf_counter,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if not speed > 0:
            raise ConfigError(f"--speed must be > 0, got {speed}")
        if max_gap is not None and not max_gap > 0:
            raise ConfigError(f"--max-gap must be > 0 s, got {max_gap}")
        self.bus = bus
        self.speed = speed
        self.spin = spin
        self.max_gap = max_gap
        self.error_frames = error_frames
        self.start = start
        self.stop_at = stop
        self.send_timeout = send_timeout
        self.max_consecutive_errors = max_consecutive_errors
        self.clock = clock
        self.sleep = sleep
        self.stats = PlayStats()

    def play(
        self, frames: Iterable[can.Message], *, stop: threading.Event | None = None
    ) -> PlayStats:
        stats = self.stats
        clock = self.clock
        sleep = self.sleep
        spin = self.spin
        speed = self.speed
        lags = stats.lags
        first = window_from = None
        t_prev = 0.0
        skipped = 0.0
        start_wall = 0.0
        last_send = 0.0
        behind = 0
        errors_in_row = 0
        t_from = self.start if self.start is not None else float("-inf")
        t_to = self.stop_at if self.stop_at is not None else float("inf")
        for msg in frames:
            stats.frames_read += 1
            if first is None:
                first = msg.timestamp
            t = msg.timestamp - first
            if t < t_prev:
                stats.time_reversals += 1
                t = t_prev
            if t < t_from:
                stats.skipped_outside_window += 1
                t_prev = t
                continue
            if t > t_to:
                break
            if msg.is_error_frame and not self.error_frames:
                stats.skipped_error_frames += 1
                t_prev = t
                continue
            if window_from is None:
                window_from = t
                t_prev = t
                start_wall = clock()
            gap = t - t_prev
            if self.max_gap is not None and gap > self.max_gap:
                skipped += gap - self.max_gap
            t_prev = t
            due = start_wall + (t - window_from - skipped) / speed
            now = clock()
            if now < due:
                if behind > 1:
                    stats.batches += 1
                    stats.batched_frames += behind
                behind = 0
                while (remaining := due - clock()) > spin:
                    if stop is not None and stop.is_set():
                        break
                    sleep(min(remaining - spin, MAX_SLEEP))
                while clock() < due:
                    pass
            else:
                behind += 1
            if stop is not None and stop.is_set():
                stats.stopped_early = True
                break
            try:
                self.bus.send(msg, self.send_timeout)
            except FAULTS as e:
                stats.send_errors += 1
                errors_in_row += 1
                if len(stats.first_errors) < 5:
                    stats.first_errors.append(f"t={t:.6f}s id {msg.arbitration_id:#x}: {e}")
                if errors_in_row >= self.max_consecutive_errors:
                    self._finish(window_from, t, skipped, last_send, start_wall, behind)
                    raise BusError(
                        f"{errors_in_row} frames refused in a row, giving up: {describe_fault(e)}"
                    ) from None
                continue
            last_send = clock()
            lags.append(max(0.0, last_send - due))
            errors_in_row = 0
            stats.frames_sent += 1
        self._finish(window_from, t_prev, skipped, last_send, start_wall, behind)
        return stats

    def _finish(
        self,
        window_from: float | None,
        t_last: float,
        skipped: float,
        last_send: float,
        start_wall: float,
        behind: int,
    ) -> None:
        stats = self.stats
        if behind > 1:
            stats.batches += 1
            stats.batched_frames += behind
        stats.gaps_shortened_s = skipped
        if window_from is None or not stats.frames_sent:
            return
        stats.trace_span_s = t_last - window_from
        stats.paced_span_s = (stats.trace_span_s - skipped) / self.speed
        stats.wall_s = last_send - start_wall
