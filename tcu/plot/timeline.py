"""The timeline of a run, recorded as it happens, in bounded memory.

Theory of operation. ``TimelineRecorder`` is a ``Sink`` of the host (``tcu.runtime.host``):
it hears every boot, stored record, emit (verdicts, session transitions, command results),
batch sent, ack and change of the SIM link. Signal values are not shown to sinks (a frame
takes the core's fast path), so on every boot the recorder adds a ``SignalTap`` to the
core's parts: the core calls a part's ``on_signals`` only for frames whose mapped bits
changed, so the tap costs nothing per unchanged frame and nothing at all when no one
records (a replay without ``--plot`` or ``--export`` has no tap).

Values are downsampled as they come: each signal is a ``Series`` of time buckets, each
holding the first, smallest, largest and last value in it and when they came. When a
series holds more than ``max_buckets`` buckets, the bucket width doubles and neighbours
merge, so a 13-hour trace and a 60-second window both end with at most ``max_buckets``
buckets per signal and every peak kept. Events (verdicts, sessions, link changes,
commands) are few and kept whole, up to ``max_events`` each (the rest counted).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from tcu.events import Action, Emit
from tcu.runtime.assembly import Tcu
from tcu.runtime.host import LinkState, Sink
from tcu.telemetry.downlink import DOWNLINK_EMIT
from tcu.telemetry.records import Record
from tcu.vehicle.catalogue import CATALOGUE, SignalSpec

NAN = math.nan
NO_ACTIONS: list[Action] = []
MAX_BUCKETS = 4096
MAX_EVENTS = 100_000


def numeric(spec: SignalSpec, value: Any) -> float:
    """A signal value as a number to plot: bools 0/1, enums their index, unknown NaN."""
    if value is None:
        return NAN
    if spec.kind == "enum":
        try:
            return float(spec.values.index(value))
        except ValueError:
            return NAN
    return float(value)


class Series:
    """One signal over time, downsampled into at most ``max_buckets`` min/max buckets."""

    __slots__ = ("buckets", "max_buckets", "path", "width")

    def __init__(self, path: str, *, max_buckets: int = MAX_BUCKETS, width: float = 0.01) -> None:
        self.path = path
        self.max_buckets = max_buckets
        self.width = width
        # [index, t_first, first, lo, hi, t_last, last]
        self.buckets: list[list[float]] = []

    def add(self, t: float, v: float) -> None:
        idx = t // self.width
        buckets = self.buckets
        if buckets:
            b = buckets[-1]
            if b[0] == idx:
                b[3] = _min(b[3], v)
                b[4] = _max(b[4], v)
                b[5] = t
                b[6] = v
                return
        buckets.append([idx, t, v, v, v, t, v])
        if len(buckets) > self.max_buckets:
            self._coarsen()

    def _coarsen(self) -> None:
        while len(self.buckets) > self.max_buckets // 2:
            self.width *= 2
            merged: list[list[float]] = []
            for b in self.buckets:
                idx = b[1] // self.width
                if merged and merged[-1][0] == idx:
                    m = merged[-1]
                    m[3] = _min(m[3], b[3])
                    m[4] = _max(m[4], b[4])
                    m[5], m[6] = b[5], b[6]
                else:
                    merged.append([idx, *b[1:]])
            self.buckets = merged

    def points(self) -> tuple[list[float], list[float]]:
        """Times and values to draw as a step line: each bucket's first, extremes, last."""
        ts: list[float] = []
        vs: list[float] = []
        for _, t0, first, lo, hi, t1, last in self.buckets:
            ts.append(t0)
            vs.append(first)
            if lo != hi and not (math.isnan(lo) or math.isnan(hi)):
                ts += (t0, t0)
                vs += (lo, hi)
            if t1 != t0 or not _same(last, first):
                ts.append(t1)
                vs.append(last)
        return ts, vs

    def as_dict(self) -> dict[str, Any]:
        ts, vs = self.points()
        return {"path": self.path, "t": ts, "v": [None if math.isnan(v) else v for v in vs]}


def _same(a: float, b: float) -> bool:
    return a == b or (math.isnan(a) and math.isnan(b))


def _min(a: float, b: float) -> float:
    """The smaller, ignoring unknowns (NaN) unless both are."""
    return b if math.isnan(a) or b < a else a


def _max(a: float, b: float) -> float:
    return b if math.isnan(a) or b > a else a


class SignalTap:
    """A part of the core that only listens: ``on_signals`` hands changes to ``listener``."""

    def __init__(self, state: Any, listener: Callable[[list[str], Any, float], None]) -> None:
        self.state = state
        self.listener = listener

    def on_signals(self, changed: list[str], now: float) -> list[Action]:
        self.listener(changed, self.state, now)
        return NO_ACTIONS

    def on_event(self, event: Any, now: float) -> list[Action] | None:
        return None

    def on_tick(self, now: float) -> list[Action]:
        return NO_ACTIONS

    def next_deadline(self) -> float:
        return math.inf


class TapSink(Sink):
    """A sink that taps the signals of every TCU the host boots (see ``SignalTap``)."""

    origin_epoch = 0.0

    def booted(self, tcu: Tcu, now: float) -> None:
        self.origin_epoch = tcu.services.ledger.config.origin_epoch
        tcu.core.add_part(SignalTap(tcu.core.state, self.signals_changed))

    def signals_changed(self, changed: list[str], state: Any, now: float) -> None:
        """Signals ``changed`` at ``now``; their values are in ``state``."""


@dataclass(slots=True)
class _Counter:
    stored: int = 0
    dropped: int = 0
    sent: int = 0
    acked: int = 0

    @property
    def depth(self) -> int:
        return max(0, self.stored - self.dropped - self.acked)


@dataclass(slots=True, kw_only=True)
class Timeline:
    """What a run did, ready to draw or embed: series, spans, events; times in vehicle s."""

    signals: list[str]
    series: dict[str, Series]
    origin_epoch: float = 0.0
    start: float = 0.0
    end: float = 0.0
    verdicts: list[dict[str, Any]] = field(default_factory=list)
    transitions: list[dict[str, Any]] = field(default_factory=list)
    commands: list[dict[str, Any]] = field(default_factory=list)
    alarms: list[dict[str, Any]] = field(default_factory=list)
    link: list[dict[str, Any]] = field(default_factory=list)
    boots: list[float] = field(default_factory=list)
    marks: list[dict[str, Any]] = field(default_factory=list)
    """Instants to mark on the page: ``{t, text, bad}`` (a scenario's steps)."""
    telemetry: dict[str, Series] = field(default_factory=dict)
    omitted: dict[str, int] = field(default_factory=dict)

    def sessions(self) -> list[dict[str, Any]]:
        """Each session as a span: start, end, service, id, the states it went through."""
        spans: dict[tuple[int, str], dict[str, Any]] = {}
        for tr in self.transitions:
            key = (tr["boot"], tr["session_id"])
            span = spans.get(key)
            if span is None:
                span = spans[key] = {
                    "service": tr["service"],
                    "session_id": tr["session_id"],
                    "boot": tr["boot"],
                    "start": tr["t"],
                    "end": None,
                    "active": None,
                    "states": [],
                    "state": tr["to_state"],
                    "reason": None,
                }
            span["states"].append([tr["t"], tr["to_state"]])
            span["state"] = tr["to_state"]
            if tr["to_state"] in ACTIVE_STATES and span["active"] is None:
                span["active"] = tr["t"]
            if tr["to_state"] in TERMINAL_STATES:
                span["end"] = tr["t"]
                span["reason"] = tr.get("reason")
        for span in spans.values():
            if span["end"] is None:
                span["end"] = self.end  # still running when the run ended
                span["open"] = True
        return list(spans.values())

    def link_segments(self) -> list[dict[str, Any]]:
        """The link as consecutive segments: [start, end) with state, PLMN and roaming."""
        segs: list[dict[str, Any]] = []
        for i, ch in enumerate(self.link):
            end = self.link[i + 1]["t"] if i + 1 < len(self.link) else self.end
            if end <= ch["t"] and i + 1 < len(self.link):
                continue
            segs.append({**ch, "start": ch["t"], "end": max(end, ch["t"])})
        return segs

    def gaps(self) -> list[tuple[float, float]]:
        """Coverage gaps: where the SIM was not registered."""
        return [(s["start"], s["end"]) for s in self.link_segments() if not s["registered"]]

    def as_dict(self) -> dict[str, Any]:
        return {
            "origin_epoch": self.origin_epoch,
            "start": self.start,
            "end": self.end,
            "signals": [{**_describe(p), **self.series[p].as_dict()} for p in self.signals],
            "verdicts": self.verdicts,
            "sessions": self.sessions(),
            "commands": self.commands,
            "alarms": self.alarms,
            "link": self.link_segments(),
            "boots": self.boots,
            "marks": self.marks,
            "telemetry": {k: s.as_dict() for k, s in self.telemetry.items()},
            "omitted": self.omitted,
        }


ACTIVE_STATES = frozenset({"charging", "active", "sent"})
TERMINAL_STATES = frozenset(
    {
        "complete",
        "interrupted",
        "stopped",
        "refused",
        "not_needed",
        "done",
        "aborted",
        "cancelled",
        "completed",
        "failed",
    }
)


def _describe(path: str) -> dict[str, Any]:
    s = CATALOGUE[path]
    return {"kind": s.kind, "unit": s.unit, "values": list(s.values)}


class TimelineRecorder(TapSink):
    """Records a ``Timeline`` from a host's sinks and a tap on its core's signals."""

    def __init__(self, signals: Iterable[str], *, max_buckets: int = MAX_BUCKETS) -> None:
        self.signals = [p for p in signals if p in CATALOGUE]
        self.specs = {p: CATALOGUE[p] for p in self.signals}
        self.timeline = Timeline(
            signals=self.signals,
            series={p: Series(p, max_buckets=max_buckets) for p in self.signals},
            telemetry={
                k: Series(k, max_buckets=max_buckets)
                for k in ("outbox_depth", "stored", "sent", "acked")
            },
        )
        self._boot = -1
        self._count = _Counter()
        self._started = False

    def _seen(self, now: float) -> None:
        tl = self.timeline
        if not self._started:
            self._started = True
            tl.start = now
        if now > tl.end:
            tl.end = now

    def _keep(self, name: str, bucket: list[dict[str, Any]], item: dict[str, Any]) -> None:
        if len(bucket) < MAX_EVENTS:
            bucket.append(item)
        else:
            self.timeline.omitted[name] = self.timeline.omitted.get(name, 0) + 1

    # --- the host's sinks ----------------------------------------------------------------------

    def booted(self, tcu: Tcu, now: float) -> None:
        super().booted(tcu, now)
        self._boot += 1
        self.timeline.origin_epoch = self.origin_epoch
        if self._boot:
            self.timeline.boots.append(now)
            for series in self.timeline.series.values():
                series.add(now, NAN)  # the new TCU knows nothing until the bus tells it
        self._seen(now)

    def signals_changed(self, changed: list[str], state: Any, now: float) -> None:
        series = self.timeline.series
        specs = self.specs
        for path in changed:
            s = series.get(path)
            if s is not None:
                s.add(now, numeric(specs[path], state.get(path, now)))
        self._seen(now)

    def stored(self, records: tuple[Record, ...], dropped: dict[str, int], now: float) -> None:
        c = self._count
        c.stored += len(records)
        c.dropped += sum(dropped.values())
        self._telemetry(now)

    def batch_sent(self, records: int, nbytes: int, now: float) -> None:
        self._count.sent += records
        self._telemetry(now)

    def acked(self, epoch: int, sequence: int, deleted: int, now: float) -> None:
        self._count.acked += deleted
        self._telemetry(now)

    def _telemetry(self, now: float) -> None:
        c, tel = self._count, self.timeline.telemetry
        tel["outbox_depth"].add(now, float(c.depth))
        tel["stored"].add(now, float(c.stored))
        tel["sent"].add(now, float(c.sent))
        tel["acked"].add(now, float(c.acked))
        self._seen(now)

    def emitted(self, emit: Emit, now: float) -> None:
        body, tl = emit.body, self.timeline
        if emit.kind == "verdict":
            self._keep(
                "verdicts",
                tl.verdicts,
                {
                    "t": now,
                    "service": body["service"],
                    "outcome": body["outcome"],
                    "reasons": [r["code"] for r in body["reasons"]],
                    "warnings": [w["code"] for w in body["warnings"]],
                    "messages": [r["message"] for r in (*body["reasons"], *body["warnings"])],
                },
            )
        elif emit.kind == "session":
            self._keep(
                "transitions",
                tl.transitions,
                {
                    "t": now,
                    "boot": self._boot,
                    "service": body["service"],
                    "session_id": body["session_id"],
                    "from_state": body["from_state"],
                    "to_state": body["to_state"],
                    "event": body["event"],
                    "reason": body["reason"],
                },
            )
        elif emit.kind == "command_result":
            self._keep(
                "commands",
                tl.commands,
                {
                    "t": now,
                    "command": body["command"],
                    "command_id": body["command_id"],
                    "source": body["source"],
                    "status": body["status"],
                    "session_id": body["session_id"],
                    "reasons": list(body["reasons"]),
                },
            )
        elif emit.kind == "alarm":
            self._keep(
                "alarms",
                tl.alarms,
                {
                    "t": now,
                    "service": body["service"],
                    "event": body["event"],
                    "reasons": [r["code"] for r in body["reasons"]],
                },
            )
        elif emit.kind == DOWNLINK_EMIT and body.get("refused"):
            self._keep(
                "commands",
                tl.commands,
                {
                    "t": now,
                    "command": "downlink",
                    "command_id": "",
                    "source": "backend",
                    "status": "rejected",
                    "session_id": None,
                    "reasons": [str(body["refused"])],
                },
            )
        self._seen(now)

    def link_changed(self, link: LinkState, now: float) -> None:
        self._keep(
            "link",
            self.timeline.link,
            {
                "t": now,
                "state": link.state,
                "registered": link.registered,
                "plmn": link.plmn,
                "operator": link.operator,
                "country": link.country,
                "roaming": link.roaming,
            },
        )
        self._seen(now)

    def finish(
        self, end: float, *, start: float | None = None, stop: float | None = None
    ) -> Timeline:
        """The timeline, ending at vehicle time ``end`` (the end of the run), or showing
        the window ``start``..``stop`` of the replay when it had one."""
        tl = self.timeline
        tl.end = max(tl.end, end)
        if start is not None:
            tl.start = max(tl.start, start)
        if stop is not None:
            tl.end = min(tl.end, stop)
        tl.end = max(tl.end, tl.start)
        return tl
