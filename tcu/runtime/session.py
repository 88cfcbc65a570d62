"""One replay, assembled: bus setup, core and its parts, the driver, the report."""

from __future__ import annotations

import dataclasses
import itertools
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import can

from tcu.can.encoder import FrameEncoder
from tcu.can.setup import BusSetup, load_bus_setup
from tcu.can.sources import open_trace
from tcu.cli.output import Progress
from tcu.core import TcuCore, command_event
from tcu.errors import ConfigError, TraceError
from tcu.events import Action, Log, SendFrame
from tcu.runtime.replay import ReplayDriver
from tcu.services import ServicesPart, VehicleConfig, encoder_requests
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
            self.writer = can.Logger(str(path))
        except ValueError as e:
            raise ConfigError(f"--out-trace {path}: {e}") from None
        except OSError as e:
            raise ConfigError(f"--out-trace {path}: {e.strerror}") from None
        self.count = 0

    def write(self, msg: can.Message) -> None:
        self.writer.on_message_received(msg)
        self.count += 1


def replay_file(
    opts: ReplayOptions,
    *,
    progress: Progress | None = None,
    parts_factory: Callable[[TcuCore], list[Any]] | None = None,
) -> ReplayReport:
    source = open_trace(opts.trace)
    setup = load_bus_setup(opts.dbc, opts.mapping)
    frames = iter(source)
    first = next(frames, None)
    origin = first.timestamp if first is not None and is_epoch(first.timestamp) else 0.0
    vehicle = dataclasses.replace(
        opts.vehicle or VehicleConfig(vin=DEFAULT_VIN), origin_epoch=origin
    )
    core = TcuCore(setup.mapping)
    if parts_factory is not None:
        parts = parts_factory(core)
    else:
        parts = default_parts(core, setup, vehicle)
    for part in parts:
        core.add_part(part)
    scheduled = []
    for spec in opts.commands:
        try:
            scheduled.append(command_event(spec))
        except ValueError as e:
            raise ConfigError(str(e)) from None
    out = _OutTrace(opts.out_trace) if opts.out_trace else None
    logs: list[str] = []
    sent: list[can.Message] = []

    def on_action(action: Action, now: float) -> None:
        if isinstance(action, SendFrame):
            msg = action.message
            msg.timestamp = (driver.stats.first_timestamp or 0.0) + now
            sent.append(msg)
            if out is not None:
                out.write(msg)
        elif isinstance(action, Log):
            logs.append(f"t={now:9.3f}s {action.level}: {action.text}")
        for part in parts:
            sink = getattr(part, "on_action", None)
            if sink is not None:
                sink(action, now)

    driver = ReplayDriver(
        core,
        itertools.chain([first], frames) if first is not None else frames,
        start=opts.start,
        stop=opts.stop,
        speed=opts.speed,
        on_action=on_action,
        on_progress=_file_progress(opts.trace, progress),
    )
    for t, event in scheduled:
        driver.schedule(t, event)
    try:
        stats = driver.run()
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
    now = driver.now
    report = ReplayReport(
        trace=str(opts.trace),
        counts=core.summary_counts(),
        damaged_records=source.bad_records,
        vehicle_time_s=stats.vehicle_time_s,
        wall_s=stats.wall_s,
        state={p: core.state.get(p, now) for p in CATALOGUE},
        warnings=warnings,
        examples=source.bad_examples + core.decoder.bad_examples,
        logs=logs,
    )
    report.extra["can_requests_sent"] = len(sent)
    if out is not None:
        report.extra["out_trace"] = {"path": str(opts.out_trace), "frames": out.count}
    for part in parts:
        contribute = getattr(part, "contribute", None)
        if contribute is not None:
            contribute(report, now)
    return report


DEFAULT_VIN = "XECELLVAN00000001"


def is_epoch(t: float) -> bool:
    """Whether a trace timestamp looks like a UTC epoch (2001..2100) rather than relative."""
    return 1e9 < t < 4.1e9


def default_parts(core: TcuCore, setup: BusSetup, vehicle: VehicleConfig) -> list[Any]:
    """The parts a replay runs with."""
    parts: list[Any] = []
    if setup.mapping.requests is not None:
        encoder = FrameEncoder(setup.db, setup.mapping)
        requests = encoder_requests(encoder.encode_request)
    else:
        requests = _no_requests(setup)
    parts.append(ServicesPart(core.state, vehicle, requests))
    return parts


def _no_requests(setup: BusSetup) -> Callable[[str, str | None], can.Message]:
    def request(name: str, argument: str | None) -> can.Message:
        raise ConfigError(f"{setup.mapping.source}: the mapping has no requests section")

    return request
