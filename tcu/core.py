"""The TCU core: frames in, state, verdicts, records and CAN requests out. No I/O.

Theory of operation. A driver (replay or live) owns the clock and the I/O and calls
``handle(event, now)`` with vehicle time ``now`` in seconds. The core never reads a
clock, sleeps or opens anything: it returns the actions the driver must carry out and
exposes ``next_deadline`` (the vehicle time at which it wants a ``Tick``).

A frame goes through the fast path in ``frame``: look the id up in the decoder's
table, refresh freshness, and decode only when the bytes changed. Changed signal paths
are handed to the parts (services, telemetry policy), which may return actions.
Every frame the core does not use is counted by why (error, remote, unknown id, bad).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Protocol

import can

from tcu.can.decoder import EXTENDED, FrameDecoder
from tcu.can.mapping import Mapping
from tcu.events import Action, Log, SignalOverride, Tick
from tcu.vehicle.catalogue import CATALOGUE
from tcu.vehicle.state import VehicleState

NO_ACTIONS: list[Action] = []


class Part(Protocol):
    """A piece of the core that reacts to signal changes, events and its own timers."""

    def on_signals(self, changed: list[str], now: float) -> list[Action]: ...

    def on_event(self, event: Any, now: float) -> list[Action] | None: ...

    def on_tick(self, now: float) -> list[Action]: ...

    def next_deadline(self) -> float: ...


@dataclass(slots=True)
class FrameCounts:
    frames: int = 0
    error_frames: int = 0
    remote_frames: int = 0


class TcuCore:
    """The sans-I/O TCU. ``handle(event, now)`` -> actions; ``next_deadline`` -> when to tick."""

    def __init__(self, mapping: Mapping, parts: Iterable[Part] = ()) -> None:
        self.state = VehicleState()
        self.decoder = FrameDecoder(mapping, self.state)
        self.mapping = mapping
        self.counts = FrameCounts()
        self.unknown_ids: Counter[int] = Counter()  # frames per id the mapping does not decode
        self.parts: list[Part] = list(parts)
        self.next_deadline = float("inf")
        self._slots = self.decoder.slots
        self._stats = self.decoder.stats
        self.now = 0.0
        self._reschedule()

    def add_part(self, part: Part) -> None:
        self.parts.append(part)
        self._reschedule()

    def handle(self, event: Any, now: float) -> list[Action]:
        self.now = now
        if type(event) is can.Message:
            return self.frame(event, now)
        if isinstance(event, Tick):
            return self._tick(now)
        if isinstance(event, SignalOverride):
            return self._override(event, now)
        actions: list[Action] = []
        handled = False
        for part in self.parts:
            out = part.on_event(event, now)
            if out is not None:
                handled = True
                actions.extend(out)
        if not handled:
            actions.append(Log(level="warning", text=f"no part handles {type(event).__name__}"))
        self._reschedule()
        return actions

    def frame(self, msg: can.Message, now: float) -> list[Action]:
        """The fast path for one CAN frame; ``handle(msg, now)`` lands here too."""
        counts = self.counts
        counts.frames += 1
        if msg.is_error_frame:
            counts.error_frames += 1
            return NO_ACTIONS
        if msg.is_remote_frame:
            counts.remote_frames += 1
            return NO_ACTIONS
        key = msg.arbitration_id | EXTENDED if msg.is_extended_id else msg.arbitration_id
        slot = self._slots.get(key)
        if slot is None:
            self._stats.unknown_id_frames += 1
            self.unknown_ids[key] += 1
            return NO_ACTIONS
        data = msg.data
        if data == slot.last:
            slot.last_page.seen = now  # the slot itself, or the multiplexed page it carried
            return NO_ACTIONS
        changed = self.decoder.decode(slot, data, now)
        if not changed or not self.parts:
            return NO_ACTIONS
        return self.signals_changed(changed, now)

    def signals_changed(self, changed: list[str], now: float) -> list[Action]:
        actions: list[Action] = []
        for part in self.parts:
            actions.extend(part.on_signals(changed, now))
        self._reschedule()
        return actions

    def _tick(self, now: float) -> list[Action]:
        actions: list[Action] = []
        for part in self.parts:
            if part.next_deadline() <= now:
                actions.extend(part.on_tick(now))
        self._reschedule()
        return actions

    def _override(self, event: SignalOverride, now: float) -> list[Action]:
        if event.path not in CATALOGUE:
            raise KeyError(f"unknown signal path {event.path!r}")
        if event.release:
            self.state.release(event.path)
        else:
            self.state.override(event.path, event.value)
        return self.signals_changed([event.path], now)

    def _reschedule(self) -> None:
        self.next_deadline = min((p.next_deadline() for p in self.parts), default=float("inf"))

    def summary_counts(self) -> dict[str, int]:
        s = self._stats
        c = self.counts
        used = s.decoded_frames + s.unknown_id_frames + s.bad_frames
        return {
            "frames": c.frames,
            "decoded_frames": s.decoded_frames,
            "unchanged_frames": c.frames - used - c.error_frames - c.remote_frames,
            "unknown_id_frames": s.unknown_id_frames,
            "bad_frames": s.bad_frames,
            "error_frames": self.counts.error_frames,
            "remote_frames": self.counts.remote_frames,
        }
