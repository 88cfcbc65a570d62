"""Frames to signals, driven by a DBC and a mapping.

Theory of operation. The reference is plain cantools: after any sequence of frames,
every mapped signal holds the value the last ``Message.decode`` that carried it gave,
and it is fresh only while frames that decode keep carrying it. A frame cantools
refuses (too short, an undefined multiplexer value) is a bad frame: it changes no
value and refreshes nothing. The decoder reaches the same answers while skipping work
it can prove would change nothing:

- Only frames whose id the mapping uses are looked at; standard and extended ids live
  in one table, an extended id carrying bit 29 (``EXTENDED``) so 0x123 and extended
  0x123 never collide.
- A frame identical to the last good frame of its message is not decoded: the core's
  fast path refreshes the source of its signals (``Slot.last_page``) and stops.
- A plain message is decoded only when the bits of its mapped signals (``Slot.mask``)
  changed: rolling counters and checksums change every frame and touch no signal.
- A multiplexed message keeps a small cache of recent payloads and what they decoded
  to. On a hit nothing is decoded; the signals the page shares with other pages (the
  selectors, signals outside the multiplexer, signals listed under several values or
  under an independent multiplexer) are written again, because another page may have
  changed them since; signals that only this page carries (``page_only``) are skipped
  when the page's last payload is this one, since nothing else can have changed them.

Freshness: each cell's source is the ``Source`` of the message (or page) that last
wrote it, and only a frame that decoded (or is identical to one that did) refreshes
a source.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import cantools

from tcu.can.mapping import Mapping, SignalBinding
from tcu.vehicle.catalogue import Value
from tcu.vehicle.state import Source, VehicleState

EXTENDED = 1 << 29
MUX_CACHE = 64

Updates = tuple[tuple[str, Value | None], ...]


class Slot(Source):
    """One mapped message: its bindings, last good payload and freshness.

    A multiplexed message keeps one ``Source`` per multiplexer page (``pages``, keyed by
    the values of all its selectors): a signal only one page carries is fresh only while
    that page keeps arriving.
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
        "page_only",
        "pages",
    )

    def __init__(self, message: Any, bindings: list[SignalBinding]) -> None:
        super().__init__()
        self.message = message
        self.length: int = message.length
        self.bindings = bindings
        self.mux_names: tuple[str, ...] = tuple(s.name for s in message.signals if s.is_multiplexer)
        self.page_only = page_only_signals(message)
        self.pages: dict[tuple[Any, ...], Source] = {}
        self.last_page: Source = self
        # payload -> (its page, updates of shared signals, updates of all signals)
        self.cache: dict[bytes, tuple[Source, Updates, Updates]] = {}
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


def page_only_signals(message: Any) -> frozenset[str]:
    """The signals present in frames of one multiplexer page only.

    A page is the tuple of every selector's value (absent selectors included). A
    signal belongs to one page alone when its chain of multiplexer conditions fixes
    every selector of the message: to a single value, or to absent (a selector under
    another value of a common parent). Anything less certain counts as shared.
    """
    by_name = {s.name: s for s in message.signals}
    selectors = [s.name for s in message.signals if s.is_multiplexer]

    def condition(sig: Any) -> dict[str, frozenset[int]] | None:
        out: dict[str, frozenset[int]] = {}
        while sig.multiplexer_signal is not None:
            parent = by_name.get(sig.multiplexer_signal)
            if parent is None or sig.multiplexer_signal in out:
                return None
            out[sig.multiplexer_signal] = frozenset(sig.multiplexer_ids or ())
            sig = parent
        return out

    conditions = {s.name: condition(s) for s in message.signals}
    only: set[str] = set()
    for sig in message.signals:
        cond = conditions[sig.name]
        if not cond:
            continue
        for sel in selectors:
            if sel in cond:
                if len(cond[sel]) != 1:
                    break
                continue
            sel_cond = conditions[sel]
            absent = sel_cond is not None and any(
                n in cond and not (cond[n] & ids) for n, ids in sel_cond.items()
            )
            if not absent:
                break
        else:
            only.add(sig.name)
    return frozenset(only)


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
            state.track(b.path, b.stale_after)
        self.slots: dict[int, Slot] = {k: Slot(m, bs) for k, (m, bs) in groups.items()}

    def decode(self, slot: Slot, data: bytes | bytearray, now: float) -> list[str]:
        """Decode one frame of a mapped message whose bytes differ from the last good one.

        A multiplexed message alternates between pages, so its payloads rarely repeat
        frame to frame; the cache keeps a recent payload from being decoded again.
        """
        key = bytes(data)
        if slot.mux_names:
            hit = slot.cache.get(key)
            if hit is not None:
                page, shared, every = hit
                page.seen = now
                slot.last = key
                slot.last_page = page
                if page.last == key:
                    return self._write(page, shared)
                page.last = key
                return self._write(page, every)
        if len(data) < slot.length:
            self._bad(slot, now, f"{len(data)} bytes, the DBC says {slot.length}")
            return []
        masked = -1
        if slot.mask:
            masked = int.from_bytes(key, "little") & slot.mask
            if masked == slot.masked_last:
                slot.last = key
                slot.seen = now
                return []
        try:
            values = slot.message.decode(
                key, decode_choices=False, scaling=True, allow_truncated=False
            )
        except (cantools.database.DecodeError, ValueError, KeyError, IndexError) as e:
            self._bad(slot, now, str(e))
            return []
        self.stats.decoded_frames += 1
        slot.last = key
        if slot.mux_names:
            return self._page(slot, key, values, now)
        slot.seen = now
        slot.masked_last = masked
        changed: list[str] = []
        update = self.state.update
        for b in slot.bindings:
            phys = values.get(b.signal)
            if phys is not None and update(b.path, b.to_value(phys), slot):
                changed.append(b.path)
        return changed

    def _page(self, slot: Slot, key: bytes, values: dict[str, Any], now: float) -> list[str]:
        """Write a freshly decoded page of a multiplexed message, and cache it."""
        mux = tuple(values.get(n) for n in slot.mux_names)
        page = slot.pages.get(mux)
        if page is None:
            page = slot.pages[mux] = Source()
        page.seen = now
        page.last = key
        slot.last_page = page
        only = slot.page_only
        every: list[tuple[str, Value | None]] = []
        shared: list[tuple[str, Value | None]] = []
        for b in slot.bindings:
            phys = values.get(b.signal)
            if phys is None:
                continue
            item = (b.path, b.to_value(phys))
            every.append(item)
            if b.signal not in only:
                shared.append(item)
        if len(slot.cache) >= MUX_CACHE:
            slot.cache.clear()
        slot.cache[key] = (page, tuple(shared), tuple(every))
        return self._write(page, every)

    def _write(self, page: Source, updates: Any) -> list[str]:
        changed: list[str] = []
        update = self.state.update
        for path, value in updates:
            if update(path, value, page):
                changed.append(path)
        return changed

    def _bad(self, slot: Slot, now: float, why: str) -> None:
        self.stats.bad_frames += 1
        if len(self.bad_examples) < 5:
            self.bad_examples.append(f"t={now:.3f}s {slot.message.name}: {why}")
