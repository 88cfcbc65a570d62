"""Trace generation: a storyline played on the reference van's bus, written to a log file.

Theory of operation: every cyclic message of the DBC has its own schedule. The bus phase
says who talks: ``awake``, every ECU at its ``GenMsgCycleTime``; ``charging`` (the van
asleep but charging or preconditioning), only the BMS, OBC, HVAC and BCM, only their
messages of 500 ms or slower, at a keep-alive period of 1 s (within the stale_after of
every signal they carry, so the TCU never sees them go stale); ``asleep``, no one. In a
phase a message starts within 250 ms (the senders waking) and repeats with the sender's
clock off by up to +-50 ppm and each frame jittered by a little Gaussian noise, as a real
ECU's timer task does; rolling counters restart with each phase. A storyline may set a
logging floor (``log_min_period``): faster messages are then logged every n-th frame, as
a decimating logger does, and their counters advance by n. The schedules are merged in
time order and each frame is encoded from the storyline's state at its time
(``FrameEncoder``) plus the derived unmapped signals (``traffic``). Timestamps are the
storyline's UTC start plus storyline time, rounded to the microsecond. One seed
(``random.Random`` per message, seeded from the seed and the message name) decides every
jitter and noise value, so the same seed and storyline give byte-identical files.
"""

from __future__ import annotations

import heapq
import math
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import can

from tcu.can.dbc import load_database
from tcu.can.encoder import FrameEncoder, counter_modulus
from tcu.can.mapping import build_mapping, dbc_of, read_mapping_file
from tcu.errors import ConfigError
from tcu.storyline.story import BusMode, Storyline
from tcu.storyline.traffic import DERIVED, FrameContext
from tcu.storyline.writers import NO_FD, open_writer
from tcu.vehicle.catalogue import CATALOGUE, Value

DEFAULT_SEED = 20260114
KEEPALIVE_NODES = frozenset({"BMS", "OBC", "HVAC", "BCM"})
# The VCU coordinates a charge, so its drive status (gear, speed, ignition) stays on
# the bus at the keep-alive period even though its awake cycle is 10 ms.
KEEPALIVE_ALWAYS = frozenset({"VCU"})
KEEPALIVE_MIN_CYCLE = 0.5
KEEPALIVE_PERIOD = 1.0
WAKE_SPREAD = 0.25
CLOCK_PPM = 50e-6
REFERENCE_MAPPING = Path(__file__).resolve().parents[2] / "can_traces" / "van.mapping.yaml"


@dataclass(frozen=True, slots=True, kw_only=True)
class ReferenceTrace:
    """One of the traces committed in ``can_traces/``: a storyline, or a window of one."""

    file: str
    storyline: str
    fmt: str
    t_from: float = 0.0
    duration: float | None = None


REFERENCE_TRACES = (
    ReferenceTrace(file="depot_night.blf", storyline="depot_night", fmt="blf"),
    ReferenceTrace(file="city_delivery.blf", storyline="city_delivery", fmt="blf"),
    ReferenceTrace(
        file="city_delivery_bakery.asc",
        storyline="city_delivery",
        fmt="asc",
        t_from=165.0,
        duration=90.0,
    ),
    ReferenceTrace(
        file="city_delivery_lunch.trc",
        storyline="city_delivery",
        fmt="trc",
        t_from=800.0,
        duration=130.0,
    ),
    ReferenceTrace(file="cross_border.log", storyline="cross_border", fmt="log"),
)


@dataclass(frozen=True, slots=True, kw_only=True)
class TraceSummary:
    path: Path
    frames: int
    skipped_fd: int
    first: float | None
    last: float | None
    size: int

    @property
    def span(self) -> float:
        return 0.0 if self.first is None or self.last is None else self.last - self.first


def load_reference_encoder(mapping_path: Path | None = None) -> FrameEncoder:
    """The encoder for a mapping file and the DBC it names (default: the reference van)."""
    path = mapping_path or REFERENCE_MAPPING
    doc = read_mapping_file(path)
    dbc = dbc_of(path, doc)
    if dbc is None:
        raise ConfigError(f"{path}: dbc: the mapping names no DBC")
    db, _warnings = load_database(dbc)
    return FrameEncoder(db, build_mapping(db, doc, str(path)))


def talks(message: Any, cycle: float, mode: BusMode) -> bool:
    """Whether ``message`` is on the bus in bus phase ``mode``."""
    if mode == "awake":
        return True
    if mode == "charging":
        if KEEPALIVE_ALWAYS.intersection(message.senders):
            return True
        return cycle >= KEEPALIVE_MIN_CYCLE and bool(KEEPALIVE_NODES.intersection(message.senders))
    return False


@dataclass(frozen=True, slots=True)
class _Slot:
    t: float
    order: int
    count: int


class _Schedule:
    def __init__(
        self,
        story: Storyline,
        encoder: FrameEncoder,
        message: Any,
        cycle: float,
        order: int,
        seed: int,
    ) -> None:
        self.message = message
        self.cycle = cycle
        self.order = order
        self.rng = random.Random(f"{seed}:{message.name}")
        self.muxes = encoder.mux_values(message)
        self.step = 1
        if story.log_min_period > cycle and not self.muxes:
            self.step = math.ceil(story.log_min_period / cycle - 1e-9)
        self.sigma = min(0.0002, cycle * 0.01)
        self.story = story

    def slots(self, t_to: float) -> Iterator[_Slot]:
        """When the message is logged, from t=0 to ``t_to``, with its counter value."""
        for a, b, mode in self.story.phases():
            if a >= t_to or not talks(self.message, self.cycle, mode):
                continue
            cycle = self.cycle if mode == "awake" else max(self.cycle, KEEPALIVE_PERIOD)
            step = self.step if mode == "awake" else 1
            phase = self.rng.uniform(0.0, min(cycle, WAKE_SPREAD))
            period = cycle * (1.0 + self.rng.uniform(-CLOCK_PPM, CLOCK_PPM))
            end = min(b, t_to)
            n = 0
            while (nominal := a + phase + n * period) < end:
                jitter = max(-cycle / 4, min(cycle / 4, self.rng.gauss(0.0, self.sigma)))
                if a <= nominal + jitter < end:
                    yield _Slot(nominal + jitter, self.order, n)
                n += step


def frames(
    story: Storyline,
    encoder: FrameEncoder,
    *,
    seed: int = DEFAULT_SEED,
    t_from: float = 0.0,
    duration: float | None = None,
) -> Iterator[can.Message]:
    """The frames of ``story`` between ``t_from`` and ``t_from + duration``, in time order.

    The bus is played from t=0 whatever ``t_from``, so a window holds exactly the frames
    the whole trace holds in it.
    """
    t_to = story.duration if duration is None else min(story.duration, t_from + duration)
    _check_tracks(story, encoder)
    schedules = [
        _Schedule(story, encoder, m, cycle, i, seed)
        for i, (m, cycle) in enumerate(encoder.cyclic_messages())
    ]
    bound = {s.order: tuple(b.path for b in encoder.bindings_of(s.message)) for s in schedules}
    counters = {s.order: encoder.counter_signals(s.message) for s in schedules}
    names = {s.order: {sig.name for sig in s.message.signals} for s in schedules}
    tracked = {o: sorted(n.intersection(story.tracks)) for o, n in names.items()}
    base = story.start_epoch
    merged = heapq.merge(*(s.slots(t_to) for s in schedules), key=lambda slot: (slot.t, slot.order))
    for slot in merged:
        s = schedules[slot.order]
        t = slot.t
        state: dict[str, Value | None] = {p: story.value(p, t) for p in bound[slot.order]}
        x = FrameContext(story=story, t=t, mode=story.mode(t), rng=s.rng)
        derive = DERIVED.get(s.message.name)
        raw: dict[str, float] = derive(x) if derive is not None else {}
        for key in tracked[slot.order]:
            v = story.value(key, t)
            if isinstance(v, float):
                raw[key] = v
        for sig in counters[slot.order]:
            raw[sig.name] = float(slot.count % counter_modulus(sig))
        mux = s.muxes[slot.count % len(s.muxes)] if s.muxes else None
        if t < t_from:
            continue
        data = encoder.encode(s.message, state, mux=mux, raw=raw)
        yield encoder.to_message(s.message, data, timestamp=round(base + t, 6))


def _check_tracks(story: Storyline, encoder: FrameEncoder) -> None:
    signals = {s.name for m in encoder.db.messages for s in m.signals}
    for key in story.tracks:
        if key not in CATALOGUE and key not in signals:
            raise ConfigError(
                f"storyline {story.name}: track {key!r} is neither a catalogue path "
                "nor a DBC signal"
            )


def write_trace(
    story: Storyline,
    encoder: FrameEncoder,
    path: Path,
    fmt: str,
    *,
    seed: int = DEFAULT_SEED,
    t_from: float = 0.0,
    duration: float | None = None,
    progress: Callable[[float], None] | None = None,
) -> TraceSummary:
    """Write the storyline's frames to ``path`` in ``fmt``; what was written."""
    t_to = story.duration if duration is None else min(story.duration, t_from + duration)
    writer = open_writer(path, fmt, story.start + timedelta(seconds=t_from))
    count = skipped = 0
    first: float | None = None
    last: float | None = None
    done = False
    try:
        for msg in frames(story, encoder, seed=seed, t_from=t_from, duration=duration):
            if msg.is_fd and fmt in NO_FD:
                skipped += 1
                continue
            writer.on_message_received(msg)
            count += 1
            if first is None:
                first = msg.timestamp
            last = msg.timestamp
            if progress is not None and count % 20000 == 0:
                span = max(t_to - t_from, 1e-9)
                progress((msg.timestamp - story.start_epoch - t_from) / span)
        done = True
    finally:
        writer.stop()
        if not done:
            path.unlink(missing_ok=True)
    if progress is not None:
        progress(1.0)
    return TraceSummary(
        path=path,
        frames=count,
        skipped_fd=skipped,
        first=first,
        last=last,
        size=path.stat().st_size,
    )
