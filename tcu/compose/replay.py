"""One replay, assembled: the in-memory world, a trace, injected commands, the report.

Theory of operation. ``replay_file`` opens the trace and the bus setup, builds a
``MemoryWorld`` (the TCU's host on the virtual clock, the SIM link model and the backend
in memory), schedules the ``--command`` injections, feeds the trace, lets the link drain,
and writes the ``ReplayReport``: every frame counted by what became of it, the state at
the end, verdicts and sessions, and what the telemetry, the backend and the link did.

The report holds what the trace source said about the file (damage, truncation, no
frame), the ids the mapping does not decode (counted on the way from the source to the
driver), and what became of every ``--command``: the services part keeps each command's
results, matched here by the command id each injected command is given (``trace-N``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import tempfile
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import can

from tcu.can.decoder import EXTENDED
from tcu.can.setup import load_bus_setup, own_signals_section
from tcu.can.sources import TraceSource, open_trace
from tcu.compose.memory import MemoryWorld
from tcu.errors import ConfigError, TraceError
from tcu.link.sim import LinkConfig
from tcu.output import Progress, table
from tcu.runtime.host import Sink
from tcu.services import DEFAULT_VIN, VehicleConfig
from tcu.validate import InjectedCommand, command
from tcu.vehicle.catalogue import CATALOGUE


@dataclass(frozen=True, slots=True, kw_only=True)
class ReplayOptions:
    trace: Path
    dbc: str | None = None
    mapping: str | None = None
    signals: str | None = None
    """``"all"``: every DBC signal too, as ``Message.Signal`` (``tcu.can.setup``)."""
    speed: float | None = None
    start: float | None = None
    stop: float | None = None
    commands: tuple[str | InjectedCommand, ...] = ()
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
    commands: list[dict[str, Any]] = field(default_factory=list)
    unknown_ids: list[dict[str, Any]] = field(default_factory=list)
    known_id_share: float | None = None

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
            "known_id_share": self.known_id_share,
            "unknown_ids": self.unknown_ids,
            "state": self.state,
            "commands": self.commands,
            "warnings": self.warnings,
            **self.extra,
        }


def _file_progress(
    source: TraceSource, progress: Progress | None
) -> Callable[[int, float], None] | None:
    """Progress as the share of the file's bytes read, with frames and vehicle time."""
    if progress is None or not progress.enabled:
        return None
    size = max(1, source.size)
    progress.total = float(size)

    def update(n: int, now: float) -> None:
        progress.update(
            float(source.bytes_read()), f"{n:,} frames, t={now:,.0f}s ({size / 1e6:.1f} MB file)"
        )

    return update


class _IdCount:
    """The frames of every identifier the decoder has no slot for, as the core counted them."""

    def __init__(self, core: Any) -> None:
        self.unknown: Counter[int] = core.unknown_ids
        counts = core.counts
        self.data_frames: int = counts.frames - counts.error_frames - counts.remote_frames

    def rows(self) -> list[dict[str, Any]]:
        return [
            {
                "id": f"0x{key & ~EXTENDED:X}",
                "extended": bool(key & EXTENDED),
                "frames": n,
            }
            for key, n in self.unknown.most_common()
        ]

    def share(self) -> float | None:
        if not self.data_frames:
            return None
        return round(1.0 - sum(self.unknown.values()) / self.data_frames, 6)


def _schedule_commands(world: MemoryWorld, commands: list[InjectedCommand]) -> list[str]:
    ids = []
    for n, c in enumerate(commands, 1):
        command_id = f"trace-{n}"
        world.driver.schedule(c.t, c.command(command_id))
        ids.append(command_id)
    return ids


ACCEPTED = frozenset(
    {"allowed", "allowed_with_warnings", "sent", "not_needed", "stopped", "cancelled", "completed"}
)


def command_reports(
    world: MemoryWorld, commands: list[InjectedCommand], ids: list[str], end: float
) -> tuple[list[dict[str, Any]], list[str]]:
    """What became of every injected command, and a warning for each one that did not go."""
    results: dict[str, list[dict[str, Any]]] = {}
    for body in world.host.tcu.services.command_results:
        results.setdefault(str(body.get("command_id")), []).append(
            {
                "t": round(float(body["t"]), 6),
                "status": body["status"],
                "reasons": list(body.get("reasons", [])),
                "warnings": list(body.get("warnings", [])),
            }
        )
    out: list[dict[str, Any]] = []
    warnings: list[str] = []
    for c, command_id in zip(commands, ids, strict=True):
        steps = results.get(command_id, [])
        outcome = steps[-1]["status"] if steps else ("not_injected" if c.t > end else "unanswered")
        out.append(
            {
                "spec": c.spec,
                "t": c.t,
                "command": c.name,
                "argument": c.argument,
                "command_id": command_id,
                "injected": c.t <= end,
                "results": steps,
                "outcome": outcome,
            }
        )
        if not steps:
            why = (
                f"after the end of the trace ({end:g} s), not injected"
                if c.t > end
                else "the TCU gave no answer"
            )
            warnings.append(f"--command {c.spec}: {why}")
        elif outcome not in ACCEPTED:
            reasons = ", ".join(steps[-1]["reasons"]) or "no reason given"
            warnings.append(f"--command {c.spec}: {outcome} at t={steps[-1]['t']:g} s ({reasons})")
    return out, warnings


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
    setup = load_bus_setup(opts.dbc, opts.mapping, opts.signals)
    scheduled: list[InjectedCommand] = []
    for spec in opts.commands:
        if isinstance(spec, InjectedCommand):
            scheduled.append(spec)
            continue
        try:
            scheduled.append(command(spec))
        except ValueError as e:
            raise ConfigError(f"--command {e}") from None
    frames: Iterator[can.Message] = iter(source)
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
        command_ids = _schedule_commands(world, scheduled)
        try:
            stats = world.replay(
                itertools.chain([first], frames) if first is not None else frames,
                start=opts.start,
                stop=opts.stop,
                speed=opts.speed,
                on_progress=_file_progress(source, progress),
            )
            end = world.now
            drained = world.drain(opts.drain_s)
        except OSError as e:
            raise TraceError(f"{opts.trace}: read failed: {e.strerror or e}") from None
        finally:
            if out is not None:
                out.writer.stop()
        ids = _IdCount(world.core)
        warnings = list(setup.warnings) + source.warnings
        if source.truncated and not source.warnings:
            warnings.append(f"{opts.trace}: trace ends in a damaged record; read up to it")
        if source.bad_records:
            warnings.append(
                f"{opts.trace}: {source.bad_records:,} damaged records skipped "
                f"(first: {source.bad_examples[0] if source.bad_examples else '?'})"
            )
        if ids.data_frames and ids.share() == 0.0:
            warnings.append(
                f"no frame matches {setup.dbc_path.name} (as mapped by {setup.mapping_path.name}):"
                f" is this the right DBC? {len(ids.unknown)} unknown ids"
            )
        if (
            opts.start is not None
            and first is not None
            and stats.skipped_before_start
            and (stats.vehicle_time_s <= 0)
        ):
            warnings.append(
                f"--start {opts.start:g} s is after the last frame ({world.now:g} s): "
                "no frame was replayed"
            )
        commands_done, command_warnings = command_reports(world, scheduled, command_ids, end)
        warnings += command_warnings
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
            commands=commands_done,
            unknown_ids=ids.rows(),
            known_id_share=ids.share(),
        )
        report.extra["can_requests_sent"] = world.host.counts.frames_sent
        report.extra["out_trace"] = (
            {"path": str(opts.out_trace), "frames": out.count} if out is not None else None
        )
        for part in core.parts:
            contribute = getattr(part, "contribute", None)
            if contribute is not None:
                contribute(report, end)
        report.extra.update(world.summary())
        link_summary = report.extra.get("link")
        if isinstance(link_summary, dict):
            # the link's clock runs on after the last frame while the outbox drains
            link_summary["trace_s"] = round(end - (opts.start or 0.0), 3)
            link_t = float(link_summary.get("t", world.now))
            link_summary["after_trace_s"] = round(max(0.0, link_t - end), 3)
        report.sections.append(render_world(report.extra))
        own = own_signals_section(setup.mapping, core.state, end)
        if own is not None:
            report.extra["signals"], text = own
            report.sections.append(text)
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
            ("  of which after the last frame, draining (s)", link.get("after_trace_s")),
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
