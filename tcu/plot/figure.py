"""A run's timeline as one matplotlib figure with a shared time axis (.png, .svg, .pdf).

Theory of operation. ``build_figure`` draws a ``Timeline`` on a ``matplotlib.figure.Figure``
made without pyplot (no global state, the Agg canvas; as cantools does), one row of axes
per kind of thing, all sharing the time axis:

- numeric signals, one axes per unit (state of charge, tyre pressures, temperatures...);
- on/off and enumerated signals as lanes (plug, charging status, gear, doors, lock);
- sessions as spans, one lane per service, the active part darker;
- verdicts as markers, one lane per service, labelled with outcome and reasons; labels
  that would overlap are merged into the one before (``+N``), so they never pile up;
- the SIM link as a band (home, roaming with its PLMN, unregistered);
- outbox depth and records stored, sent and acknowledged.

Coverage gaps are shaded across every row; power cycles are dashed lines. The lines come
downsampled from the recorder (at most a few thousand min/max buckets per signal), so a
13-hour trace draws as fast as a minute. The x axis is vehicle time (``H:MM:SS``) or UTC
clock time when the trace's timestamps are epochs.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from datetime import UTC
from pathlib import Path
from typing import Any

from tcu.plot.deps import require
from tcu.plot.signals import label
from tcu.plot.timeline import Timeline
from tcu.vehicle.catalogue import CATALOGUE

OUTCOME_STYLE: dict[str, tuple[str, str]] = {
    "allowed": ("o", "#2e7d32"),
    "allowed_with_warnings": ("^", "#ef6c00"),
    "refused": ("X", "#c62828"),
    "not_needed": ("o", "#9e9e9e"),
}
STATE_COLOURS: dict[str, str] = {
    "complete": "#2e7d32",
    "done": "#2e7d32",
    "completed": "#2e7d32",
    "refused": "#c62828",
    "failed": "#c62828",
    "interrupted": "#c62828",
    "aborted": "#c62828",
    "not_needed": "#9e9e9e",
    "cancelled": "#9e9e9e",
    "stopped": "#616161",
}
RUNNING = "#1565c0"
SERVICE_LANES = ("charging", "preconditioning", "lock")
LINK_COLOURS = {"home": "#a5d6a7", "roaming": "#ffcc80", "unregistered": "#ef9a9a"}
ENUM_COLOURS = ("#e0e0e0", "#90caf9", "#a5d6a7", "#ffcc80", "#ce93d8", "#ef9a9a")
FIG_WIDTH_IN = 14.0
DPI = 100
SUFFIXES = (".png", ".svg", ".pdf")


def _service_axis(ax: Any, name: str) -> None:
    """One lane per service, as the sessions and the verdicts rows have."""
    ax.set_yticks(range(len(SERVICE_LANES)), ["charging", "precond.", "lock/unlock"], fontsize=7.5)
    ax.set_ylim(-0.6, len(SERVICE_LANES) - 0.1)
    ax.set_ylabel(name, fontsize=9)


def lane_of(service: str) -> str:
    return "lock" if service in ("lock", "unlock") else service


class _Time:
    """Vehicle seconds to x values: seconds, or matplotlib dates (days since 1970, UTC)."""

    def __init__(self, timeline: Timeline, clock: bool) -> None:
        self.clock = clock and timeline.origin_epoch > 0
        self.origin = timeline.origin_epoch

    def __call__(self, t: float) -> float:
        return (self.origin + t) / 86400.0 if self.clock else t

    def many(self, ts: Sequence[float]) -> list[float]:
        return [self(t) for t in ts]


def _hms(x: float, _pos: Any = None) -> str:
    sign = "-" if x < 0 else ""
    s = round(abs(x))
    return f"{sign}{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"


def build_figure(
    timeline: Timeline, *, clock: bool = True, title: str = "", width_in: float = FIG_WIDTH_IN
) -> Any:
    """The figure (a ``matplotlib.figure.Figure``) for ``timeline``."""
    require("matplotlib", "a plot")
    from matplotlib.figure import Figure

    tx = _Time(timeline, clock)
    numeric_groups: dict[str, list[str]] = {}
    lanes: list[str] = []
    for p in timeline.signals:
        spec = CATALOGUE[p]
        if spec.kind == "float":
            numeric_groups.setdefault(spec.unit or p, []).append(p)
        else:
            lanes.append(p)
    rows: list[tuple[str, float, Callable[[Any], None]]] = []
    for unit, paths in numeric_groups.items():
        rows.append((f"signals:{unit}", 1.5, _numeric(timeline, tx, unit, paths)))
    if lanes:
        rows.append(("states", 0.3 * len(lanes) + 0.3, _states(timeline, tx, lanes)))
    rows.append(("sessions", 1.1, _sessions(timeline, tx, width_in)))
    rows.append(("verdicts", 1.5, _verdicts(timeline, tx, width_in)))
    rows.append(("link", 0.55, _link(timeline, tx)))
    rows.append(("telemetry", 1.3, _telemetry(timeline, tx)))
    heights = [h for _, h, _ in rows]
    # fixed margins in inches (a layout engine would measure every label twice)
    gap, top, bottom, left, right = 0.3, 0.45, 0.6, 1.6, 0.75
    height = sum(heights) + gap * (len(rows) - 1) + top + bottom
    fig = Figure(figsize=(width_in, height), dpi=DPI)
    grid = fig.add_gridspec(
        len(rows),
        1,
        height_ratios=heights,
        left=left / width_in,
        right=1 - right / width_in,
        top=1 - top / height,
        bottom=bottom / height,
        hspace=gap / (sum(heights) / len(rows)),
    )
    axes = [fig.add_subplot(grid[0])]
    axes += [fig.add_subplot(grid[i], sharex=axes[0]) for i in range(1, len(rows))]
    for ax in axes[:-1]:
        ax.tick_params(labelbottom=False)
    x0, x1 = tx(timeline.start), tx(max(timeline.end, timeline.start + 1e-3))
    for ax, (name, _, draw) in zip(axes, rows, strict=True):
        ax.set_label(name)
        ax.set_xlim(x0, x1)
        ax.grid(True, axis="x", color="#eeeeee", linewidth=0.6)
        draw(ax)
        for a, b in timeline.gaps():
            ax.axvspan(tx(a), tx(b), color="#bdbdbd", alpha=0.35, linewidth=0, gid="gap")
        for t in timeline.boots:
            ax.axvline(tx(t), color="#6d4c41", linestyle="--", linewidth=0.8, gid="boot")
    _time_axis(axes[-1], tx)
    span = timeline.end - timeline.start
    head = title or "tcu timeline"
    fig.suptitle(
        f"{head}  ({_hms(span)} of vehicle time)", fontsize=11, x=0.01, y=0.995, ha="left", va="top"
    )
    return fig


def _time_axis(ax: Any, tx: _Time) -> None:
    from matplotlib import dates as mdates
    from matplotlib.ticker import FuncFormatter, MaxNLocator

    if tx.clock:
        locator = mdates.AutoDateLocator(tz=UTC, minticks=5, maxticks=14)  # type: ignore[no-untyped-call]
        ax.xaxis.set_major_locator(locator)
        formatter = mdates.ConciseDateFormatter(locator, tz=UTC)  # type: ignore[no-untyped-call]
        ax.xaxis.set_major_formatter(formatter)
        ax.set_xlabel("UTC")
    else:
        ax.xaxis.set_major_locator(MaxNLocator(nbins=12, steps=[1, 2, 3, 5, 6, 10]))
        ax.xaxis.set_major_formatter(FuncFormatter(_hms))
        ax.set_xlabel("vehicle time (h:mm:ss)")


def _numeric(tl: Timeline, tx: _Time, unit: str, paths: list[str]) -> Callable[[Any], None]:
    def draw(ax: Any) -> None:
        for p in paths:
            ts, vs = tl.series[p].points()
            if not ts:
                continue
            ts, vs = [*ts, tl.end], [*vs, vs[-1]]
            ax.plot(tx.many(ts), vs, drawstyle="steps-post", linewidth=1.1, label=label(p), gid=p)
        ax.set_ylabel(unit.replace("celsius", "°C").replace("percent", "%"), fontsize=9)
        if len(paths) > 1 or paths:
            ax.legend(loc="upper left", fontsize=7, ncol=min(4, len(paths)), framealpha=0.7)

    return draw


def _segments(
    ts: Sequence[float], vs: Sequence[float], end: float
) -> list[tuple[float, float, float]]:
    """(start, end, value) runs of a step line."""
    out: list[tuple[float, float, float]] = []
    for i, (t, v) in enumerate(zip(ts, vs, strict=True)):
        t1 = ts[i + 1] if i + 1 < len(ts) else end
        if t1 <= t or (isinstance(v, float) and math.isnan(v)):
            continue
        if out and out[-1][2] == v and out[-1][1] == t:
            out[-1] = (out[-1][0], t1, v)
        else:
            out.append((t, t1, v))
    return out


def _states(tl: Timeline, tx: _Time, lanes: list[str]) -> Callable[[Any], None]:
    def draw(ax: Any) -> None:
        names = []
        for i, p in enumerate(reversed(lanes)):
            spec = CATALOGUE[p]
            ts, vs = tl.series[p].points()
            segs = _segments(ts, vs, tl.end)
            names.append(label(p))
            if spec.kind == "bool":
                bars = [(tx(a), tx(b) - tx(a)) for a, b, v in segs if v >= 0.5]
                ax.broken_barh(bars, (i - 0.35, 0.7), color="#1565c0", gid=p)
                continue
            colours = [ENUM_COLOURS[int(v) % len(ENUM_COLOURS)] for _, _, v in segs]
            bars = [(tx(a), tx(b) - tx(a)) for a, b, _ in segs]
            ax.broken_barh(bars, (i - 0.35, 0.7), facecolors=colours, gid=p)
            x_lo, x_hi = tx(tl.start), tx(tl.end)
            room = (x_hi - x_lo) / 90.0  # about 1/90 of the width: a short word fits
            for a, b, v in segs:
                a, b = max(a, tl.start), min(b, tl.end)  # the part in view
                if tx(b) - tx(a) >= room * max(1, len(spec.values[int(v)]) / 4):
                    ax.text(
                        (tx(a) + tx(b)) / 2,
                        i,
                        spec.values[int(v)],
                        ha="center",
                        va="center",
                        fontsize=6.5,
                        clip_on=True,
                    )
        ax.set_yticks(range(len(lanes)), names, fontsize=7.5)
        ax.set_ylim(-0.6, len(lanes) - 0.4)

    return draw


def _sessions(tl: Timeline, tx: _Time, width_in: float) -> Callable[[Any], None]:
    def draw(ax: Any) -> None:
        spans = tl.sessions()
        width = tx(tl.end) - tx(tl.start)
        least = width / 700.0  # a session of a second stays visible on a 13-hour axis
        # one collection per lane, colour and shade: hundreds of sessions draw at once
        whole: dict[tuple[int, str], list[tuple[float, float]]] = {}
        active: dict[tuple[int, str], list[tuple[float, float]]] = {}
        for s in spans:
            key = (
                SERVICE_LANES.index(lane_of(s["service"])),
                STATE_COLOURS.get(s["state"], RUNNING),
            )
            a, b = tx(s["start"]), tx(s["end"])
            whole.setdefault(key, []).append((a, max(b - a, least)))
            if s["active"] is not None:
                act = tx(s["active"])
                active.setdefault(key, []).append((act, max(b - act, least)))
        for (y, colour), bars in whole.items():
            ax.broken_barh(bars, (y - 0.3, 0.6), color=colour, alpha=0.45, gid="session")
        for (y, colour), bars in active.items():
            ax.broken_barh(bars, (y - 0.3, 0.6), color=colour, alpha=0.8, gid="session-active")
        # labels: the longest sessions first, each where it covers no other label
        placed: dict[int, list[tuple[float, float]]] = {}
        for s in sorted(spans, key=lambda s: s["start"] - s["end"]):
            y = SERVICE_LANES.index(lane_of(s["service"]))
            text = f"{s['session_id']} {s['state'].replace('_', ' ')}"
            a = tx(s["start"])
            b = a + width * (len(text) + 2) * 0.055 / width_in
            if any(a < q and p < b for p, q in placed.get(y, [])):
                continue
            placed.setdefault(y, []).append((a, b))
            ax.annotate(
                text,
                (a, y + 0.32),
                fontsize=6.5,
                va="bottom",
                annotation_clip=True,
                gid="session-label",
            )
        _service_axis(ax, "sessions")

    return draw


def verdict_text(v: dict[str, Any]) -> str:
    """``refused: rfid_rejected / not_full_by_departure`` (reasons / warnings)."""
    codes = ", ".join(v["reasons"])
    if v["warnings"]:
        codes = (codes + " / " if codes else "") + ", ".join(v["warnings"])
    outcome = str(v["outcome"]).replace("_", " ")
    return f"{outcome}: {codes}" if codes else outcome


SEVERITY = {"refused": 0, "allowed_with_warnings": 1, "allowed": 2, "not_needed": 3}


def cluster(
    items: Sequence[dict[str, Any]], x: Callable[[float], float], char: float
) -> list[tuple[dict[str, Any], int]]:
    """Verdicts of one lane whose labels would overlap, merged: (the one shown, how many).

    ``char`` is the width of one character of a label in x units. A group starts at its
    first verdict and takes every later one that falls under its label; it is shown by
    its most severe verdict (refused first), at the group's start, with ``(+N more)``.
    """
    groups: list[list[dict[str, Any]]] = []
    ends: dict[str, float] = {}
    longest: dict[str, int] = {}
    last: dict[str, list[dict[str, Any]]] = {}
    for it in sorted(items, key=lambda i: i["t"]):
        lane = lane_of(str(it["service"]))
        group = last.get(lane)
        n = len(verdict_text(it))
        if group is not None and x(it["t"]) < ends[lane]:
            group.append(it)
            longest[lane] = max(longest[lane], n)
            ends[lane] = x(group[0]["t"]) + (longest[lane] + 14) * char
            continue
        last[lane] = [it]
        longest[lane] = n
        ends[lane] = x(it["t"]) + (n + 14) * char
        groups.append(last[lane])
    out = []
    for group in groups:
        shown = min(group, key=lambda i: SEVERITY.get(str(i.get("outcome")), 9))
        out.append(({**shown, "t": group[0]["t"]}, len(group)))
    return out


def _verdicts(tl: Timeline, tx: _Time, width_in: float) -> Callable[[Any], None]:
    def draw(ax: Any) -> None:
        width = tx(tl.end) - tx(tl.start)
        # a character of a 6.5 pt label is about 0.055 inch wide
        char = width * 0.055 / width_in
        for outcome, (marker, colour) in OUTCOME_STYLE.items():
            mine = [v for v in tl.verdicts if v["outcome"] == outcome]
            if mine:
                ax.scatter(
                    [tx(v["t"]) for v in mine],
                    [SERVICE_LANES.index(lane_of(v["service"])) for v in mine],
                    marker=marker,
                    color=colour,
                    s=36,
                    zorder=3,
                    label=outcome.replace("_", " "),
                    gid=f"verdicts:{outcome}",
                )
        for v, n in cluster(tl.verdicts, tx, char):
            text = verdict_text(v) + (f" (+{n - 1} more)" if n > 1 else "")
            ax.annotate(
                text,
                (tx(v["t"]), SERVICE_LANES.index(lane_of(v["service"]))),
                xytext=(4, 5),
                textcoords="offset points",
                fontsize=6.5,
                color=OUTCOME_STYLE[v["outcome"]][1],
                annotation_clip=True,
                gid="verdict-label",
            )
        _service_axis(ax, "verdicts")
        if tl.verdicts:
            ax.legend(loc="upper right", fontsize=7, ncol=4, framealpha=0.7)

    return draw


def link_class(seg: dict[str, Any]) -> str:
    if not seg["registered"]:
        return "unregistered"
    return "roaming" if seg["roaming"] else "home"


def _link(tl: Timeline, tx: _Time) -> Callable[[Any], None]:
    def draw(ax: Any) -> None:
        segs = tl.link_segments()
        width = tx(tl.end) - tx(tl.start)
        for kind, colour in LINK_COLOURS.items():
            bars = [
                (tx(s["start"]), max(tx(s["end"]) - tx(s["start"]), width / 2000))
                for s in segs
                if link_class(s) == kind
            ]
            if bars:
                ax.broken_barh(bars, (0, 1), color=colour, label=kind, gid=f"link:{kind}")
        lo, hi = tx(tl.start), tx(tl.end)
        for s in segs:
            a, b = max(lo, tx(s["start"])), min(hi, tx(s["end"]))  # the part in view
            text = s["plmn"] or s["state"].replace("_", " ")
            if s["registered"] and s["operator"]:
                text = f"{s['plmn']} {s['operator']}"
            if b - a > width * len(text) / 160.0:
                ax.text((a + b) / 2, 0.5, text, ha="center", va="center", fontsize=7, clip_on=True)
        ax.set_yticks([])
        ax.set_ylim(0, 1)
        ax.set_ylabel("SIM", fontsize=9)
        if segs:
            ax.legend(loc="upper right", fontsize=7, ncol=3, framealpha=0.7)

    return draw


def _telemetry(tl: Timeline, tx: _Time) -> Callable[[Any], None]:
    def draw(ax: Any) -> None:
        tel = tl.telemetry
        ts, vs = tel["outbox_depth"].points()
        if ts:
            ax.plot(
                tx.many([*ts, tl.end]),
                [*vs, vs[-1]],
                drawstyle="steps-post",
                color="#6a1b9a",
                linewidth=1.1,
                label="outbox depth",
                gid="outbox_depth",
            )
        ax.set_ylabel("outbox", fontsize=9)
        ax.set_ylim(bottom=0)
        twin = ax.twinx()
        twin.set_label("telemetry:records")
        for key, colour in (("stored", "#9e9e9e"), ("sent", "#1565c0"), ("acked", "#2e7d32")):
            ts, vs = tel[key].points()
            if ts:
                twin.plot(
                    tx.many([*ts, tl.end]),
                    [*vs, vs[-1]],
                    drawstyle="steps-post",
                    color=colour,
                    linewidth=1.0,
                    linestyle="-" if key != "sent" else ":",
                    label=f"records {key}",
                    gid=key,
                )
        twin.set_ylabel("records", fontsize=9)
        twin.set_ylim(bottom=0)
        handles = ax.get_legend_handles_labels()
        more = twin.get_legend_handles_labels()
        if handles[0] or more[0]:
            ax.legend(
                handles[0] + more[0], handles[1] + more[1], loc="upper left", fontsize=7, ncol=4
            )

    return draw


def save_figure(timeline: Timeline, path: Path, *, clock: bool = True, title: str = "") -> None:
    """Draw ``timeline`` to ``path`` (.png, .svg or .pdf)."""
    fig = build_figure(timeline, clock=clock, title=title)
    fig.savefig(str(path), format=path.suffix.lstrip(".").lower(), dpi=DPI)
