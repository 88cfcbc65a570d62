"""One replay, assembled: the in-memory world, a trace, injected commands, the report.

Theory of operation. ``replay_file`` opens the trace and the bus setup, builds a
``MemoryWorld`` (the TCU's host on the virtual clock, the SIM link model and the backend
in memory), schedules the ``--command`` injections, feeds the trace, lets the link drain,
and writes the ``ReplayReport``: every frame counted by what became of it, the state at
the end, verdicts and sessions, and what the telemetry, the backend and the link did.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import can

from tcu.can.setup import load_bus_setup
from tcu.can.sources import open_trace
from tcu.compose.memory import MemoryWorld
from tcu.core import command_event
from tcu.errors import ConfigError, TraceError
from tcu.link.sim import LinkConfig
from tcu.output import Progress, table
from tcu.runtime.host import Sink
from tcu.services import DEFAULT_VIN, VehicleConfig
from tcu.vehicle.catalogue import CATALOGUE


@dataclass(frozen=True, slots=True, kw_only=True)
class ReplayOptions:
    trace: Path
    dbc: str | None = None
    mapping: str | None = None
    speed: float | None = None
    start: float | None = None
    stop: float | None = None
    commands: tuple[str, ...] = ()
    out_trace: Path | None = None
    vehicle: VehicleConfig | None = None
    link: LinkConfig | None = None
    activate: bool = True
    outbox_cap: int = 10_000
    workdir: Path | None = None
    drain_s: float = 3600.0
    sinks: tuple[Sink, ...] = ()
    """Observers of the host (``tcu.runtime.host.Sink``): a plot, an export."""


@dataclass(slots=True, kw_only=True)
class ReplayReport:
    trace: str
    counts: dict[str, int]
    damaged_records: int
    vehicle_time_s: float
    wall_s: float
    state: dict[str, Any]
    warnings: list[str] = field(default_factory=list)
    examples: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)
    sections: list[str] = field(default_factory=list)
    logs: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        c = self.counts
        frames = c["frames"]
        return {
            "trace": self.trace,
            "frames": frames,
            "decoded_frames": c["decoded_frames"],
            "unchanged_frames": c["unchanged_frames"],
            "unknown_id_frames": c["unknown_id_frames"],
            "bad_frames": c["bad_frames"] + self.damaged_records,
            "damaged_records": self.damaged_records,
            "error_frames": c["error_frames"],
            "remote_frames": c["remote_frames"],
            "vehicle_time_s": round(self.vehicle_time_s, 6),
            "wall_s": round(self.wall_s, 6),
            "frames_per_s": round(frames / self.wall_s, 1) if self.wall_s > 0 else None,
            "state": self.state,
            "warnings": self.warnings,
            **self.extra,
        }


def _file_progress(trace: Path, progress: Progress | None) -> Callable[[int, float], None] | None:
    if progress is None or not progress.enabled:
        return None
    size = os.path.getsize(trace)
    progress.total = 1.0

    def update(n: int, now: float) -> None:
        progress.update(0.0, f"{n:,} frames, t={now:,.0f}s ({size / 1e6:.1f} MB file)")

    return update


class _OutTrace:
    def __init__(self, path: Path) -> None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self.writer = can.Logger(str(path))
        except ValueError as e:
            raise ConfigError(f"--out-trace {path}: {e}") from None
        except OSError as e:
            raise ConfigError(f"--out-trace {path}: {e.strerror}") from None
        self.count = 0

    def write(self, msg: can.Message) -> None:
        self.writer.on_message_received(msg)
        self.count += 1


def replay_file(opts: ReplayOptions, *, progress: Progress | None = None) -> ReplayReport:
    """Replay one trace through the TCU, its SIM link and the backend, in virtual time."""
    source = open_trace(opts.trace)
    setup = load_bus_setup(opts.dbc, opts.mapping)
    scheduled = []
    for spec in opts.commands:
        try:
            scheduled.append(command_event(spec))
        except ValueError as e:
            raise ConfigError(str(e)) from None
    frames = iter(source)
    try:
        first = next(frames, None)
    except OSError as e:
        raise TraceError(f"{opts.trace}: read failed: {e.strerror or e}") from None
    origin = first.timestamp if first is not None and is_epoch(first.timestamp) else 0.0
    vehicle = dataclasses.replace(
        opts.vehicle or VehicleConfig(vin=DEFAULT_VIN), origin_epoch=origin
    )
    link = opts.link if opts.link is not None else LinkConfig(home_plmn=DEFAULT_HOME_PLMN)
    out = _OutTrace(opts.out_trace) if opts.out_trace else None
    with contextlib.ExitStack() as stack:
        if opts.workdir is None:
            workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="tcu-replay-")))
        else:
            workdir = opts.workdir
        base = first.timestamp if first is not None else 0.0

        def on_frame(msg: can.Message, now: float) -> None:
            msg.timestamp = base + now
            if out is not None:
                out.write(msg)

        world = MemoryWorld(
            setup,
            vehicle,
            workdir,
            link=link,
            outbox_cap=opts.outbox_cap,
            activate=opts.activate,
            send_frame=on_frame,
            sinks=opts.sinks,
        )
        stack.callback(world.close)
        for t, event in scheduled:
            world.driver.schedule(t, event)
        try:
            stats = world.replay(
                itertools.chain([first], frames) if first is not None else frames,
                start=opts.start,
                stop=opts.stop,
                speed=opts.speed,
                on_progress=_file_progress(opts.trace, progress),
            )
            end = world.now
            drained = world.drain(opts.drain_s)
        except OSError as e:
            raise TraceError(f"{opts.trace}: read failed: {e.strerror or e}") from None
        finally:
            if out is not None:
                out.writer.stop()
        warnings = list(setup.warnings)
        if source.truncated:
            warnings.append(f"{opts.trace}: trace ends in a damaged record; read up to it")
        warnings += stats.late_events
        if stats.time_reversals:
            warnings.append(f"{opts.trace}: timestamps went backwards {stats.time_reversals} times")
        if not drained:
            warnings.append(
                f"{world.outbox.depth()} records still in the outbox {opts.drain_s:g} s "
                "after the trace (link down or service inactive); they are kept, not lost"
            )
        telemetry = world.host.tcu.telemetry
        if telemetry is not None and not telemetry.active and not telemetry.counts.activations:
            warnings.append(
                f"service never active: the backend did not activate {vehicle.vin},"
                " so no telemetry was recorded"
            )
        core = world.core
        report = ReplayReport(
            trace=str(opts.trace),
            counts=core.summary_counts(),
            damaged_records=source.bad_records,
            vehicle_time_s=stats.vehicle_time_s,
            wall_s=stats.wall_s,
            state={p: core.state.get(p, end) for p in CATALOGUE},
            warnings=warnings,
            examples=source.bad_examples + core.decoder.bad_examples,
            logs=world.host.logs,
        )
        report.extra["can_requests_sent"] = world.host.counts.frames_sent
        if out is not None:
            report.extra["out_trace"] = {"path": str(opts.out_trace), "frames": out.count}
        for part in core.parts:
            contribute = getattr(part, "contribute", None)
            if contribute is not None:
                contribute(report, end)
        report.extra.update(world.summary())
        report.sections.append(render_world(report.extra))
        return report


def render_world(extra: dict[str, Any]) -> str:
    """The telemetry, backend and link part of a replay summary, as text."""
    t, b, link = extra["telemetry"], extra["backend"], extra["link"]
    rows = [
        ("records produced", t["records_produced"]),
        ("batches sent", t["batches_sent"]),
        ("bytes up / down", f"{t['bytes_up']:,} / {t['bytes_down']:,}"),
        ("records stored by the backend", b["records_stored"]),
        ("duplicates received (stored once)", b["duplicates"]),
        ("refused by the backend", sum(b["refused"].values())),
        ("records still in the outbox", t["outbox_depth"]),
        ("dropped at the outbox cap", t["records_dropped_at_cap"]),
        ("lost", t["lost"]),
    ]
    out = ["Delivery to the backend", table(rows)]
    if link.get("model") != "ideal":
        lrows = [
            ("time registered home (s)", link.get("time_home_s")),
            ("time registered roaming (s)", link.get("time_roaming_s")),
            ("time unregistered (s)", link.get("time_unregistered_s")),
            ("PLMNs seen", ", ".join(link.get("plmns_seen", []))),
            ("registrations after the first", link.get("reconnects")),
            ("MQTT sessions (re)started", link.get("uplink_connects")),
            ("largest outbox depth", link.get("largest_outbox_depth")),
            ("records delayed > 60 s", link.get("records_delayed")),
            ("largest delay (s)", link.get("largest_delay_s")),
        ]
        out += ["", "SIM link", table(lrows)]
        by_plmn = link.get("bytes_by_plmn", {})
        if by_plmn:
            prow = [
                (
                    plmn,
                    u.get("up"),
                    u.get("down"),
                    "roaming" if u.get("roaming") else "home",
                    u.get("billed_to"),
                )
                for plmn, u in by_plmn.items()
            ]
            out += ["", table(prow, headers=("PLMN", "bytes up", "bytes down", "", "billed to"))]
    return "\n".join(out)


DEFAULT_HOME_PLMN = "242-01"


def is_epoch(t: float) -> bool:
    """Whether a trace timestamp looks like a UTC epoch (2001..2100) rather than relative."""
    return 1e9 < t < 4.1e9
