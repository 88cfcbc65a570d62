"""Frames to signals, driven by a DBC and a mapping.

Only frames whose id the mapping uses are decoded, and only when their bytes changed
since the last frame of the same message (for a multiplexed message: of the same
multiplexer page). Real messages carry rolling counters and checksums that change
every frame, so the comparison looks only at the bits of the signals the mapping
uses (``Slot.mask``). An unchanged frame still refreshes the freshness of its signals.
Standard and extended ids live in one table: an extended id carries bit 29
(``EXTENDED``) so 0x123 and extended 0x123 never collide.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import cantools

from tcu.can.mapping import Mapping, SignalBinding
from tcu.vehicle.state import Source, VehicleState

EXTENDED = 1 << 29
MUX_CACHE = 64


class Slot(Source):
    """One mapped message: its bindings, last payload and freshness.

    A multiplexed message keeps one ``Source`` per multiplexer value (``pages``): its
    signals are fresh only while their own page keeps arriving.
    """

    __slots__ = (
        "bindings",
        "cache",
        "last_page",
        "length",
        "mask",
        "masked_last",
        "message",
        "mux_names",
        "pages",
    )

    def __init__(self, message: Any, bindings: list[SignalBinding]) -> None:
        super().__init__()
        self.message = message
        self.length: int = message.length
        self.bindings = bindings
        self.mux_names: tuple[str, ...] = tuple(s.name for s in message.signals if s.is_multiplexer)
        self.pages: dict[tuple[float, ...], Source] = {}
        self.last_page: Source = self
        self.cache: dict[bytes, tuple[Source, dict[str, float]]] = {}
        self.mask = 0 if self.mux_names else signal_mask(message, {b.signal for b in bindings})
        self.masked_last = -1


def signal_mask(message: Any, names: set[str]) -> int:
    """The payload bits (little-endian integer) that carry the signals ``names``; 0 = all."""
    zero = {s.name: 0 for s in message.signals}
    try:
        base = int.from_bytes(message.encode(zero, scaling=False, strict=False), "little")
        mask = 0
        for sig in message.signals:
            if sig.name not in names:
                continue
            if sig.is_float:
                return 0
            raw = -1 if sig.is_signed else (1 << sig.length) - 1
            enc = message.encode(zero | {sig.name: raw}, scaling=False, strict=False)
            mask |= int.from_bytes(enc, "little") ^ base
    except Exception:  # noqa: BLE001 - an odd layout just means no masking
        return 0
    return mask


def frame_key(arbitration_id: int, is_extended: bool) -> int:
    return arbitration_id | EXTENDED if is_extended else arbitration_id


@dataclass(slots=True)
class DecodeStats:
    decoded_frames: int = 0
    unknown_id_frames: int = 0
    bad_frames: int = 0


class FrameDecoder:
    """Decodes mapped frames into ``state``; returns the paths whose value changed."""

    def __init__(self, mapping: Mapping, state: VehicleState) -> None:
        self.state = state
        self.stats = DecodeStats()
        self.bad_examples: list[str] = []
        groups: dict[int, tuple[Any, list[SignalBinding]]] = {}
        for b in mapping.signals:
            key = frame_key(b.message.frame_id, b.message.is_extended_frame)
            groups.setdefault(key, (b.message, []))[1].append(b)
            state.cells[b.path].stale_after = b.stale_after
        self.slots: dict[int, Slot] = {k: Slot(m, bs) for k, (m, bs) in groups.items()}

    def decode(self, slot: Slot, data: bytes | bytearray, now: float) -> list[str]:
        """Decode one frame of a mapped message whose bytes differ from the last one.

        A multiplexed message alternates between pages, so its payloads rarely repeat
        frame to frame; a small cache of recent payloads keeps it from being decoded
        again while its pages' contents stay the same.
        """
        key = bytes(data)
        slot.seen = now
        if slot.mux_names:
            hit = slot.cache.get(key)
            if hit is not None:
                cached, cached_values = hit
                cached.seen = now
                slot.last = key
                slot.last_page = cached
                if cached.last == key:
                    return []
                cached.last = key
                return self._apply(slot, cached, cached_values)
        if len(data) < slot.length:
            self._bad(slot, now, f"{len(data)} bytes, the DBC says {slot.length}")
            return []
        masked = -1
        if slot.mask:
            masked = int.from_bytes(key, "little") & slot.mask
            if masked == slot.masked_last:
                slot.last = key
                return []
        try:
            values = slot.message.decode(
                key, decode_choices=False, scaling=True, allow_truncated=False
            )
        except (cantools.database.DecodeError, ValueError, KeyError, IndexError) as e:
            self._bad(slot, now, str(e))
            return []
        self.stats.decoded_frames += 1
        page: Source = slot
        if slot.mux_names:
            mux = tuple(values.get(n, -1) for n in slot.mux_names)
            page = slot.pages.get(mux) or slot.pages.setdefault(mux, Source())
            page.seen = now
            page.last = key
            slot.last_page = page
            if len(slot.cache) >= MUX_CACHE:
                slot.cache.clear()
            slot.cache[key] = (page, values)
        slot.last = key
        slot.masked_last = masked
        return self._apply(slot, page, values)

    def _apply(self, slot: Slot, page: Source, values: dict[str, float]) -> list[str]:
        changed: list[str] = []
        update = self.state.update
        for b in slot.bindings:
            phys = values.get(b.signal)
            if phys is None:
                continue
            if update(b.path, b.to_value(float(phys)), page):
                changed.append(b.path)
        return changed

    def _bad(self, slot: Slot, now: float, why: str) -> None:
        self.stats.bad_frames += 1
        if len(self.bad_examples) < 5:
            self.bad_examples.append(f"t={now:.3f}s {slot.message.name}: {why}")
