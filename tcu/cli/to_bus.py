"""``tcu replay TRACE --to-bus``: a trace's frames onto a CAN bus with their timing.

The pacing itself is ``tcu.bench.player.PacedPlayer``; this module is its command line:
the options, the signal handling, the warnings and the report.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from pathlib import Path
from types import FrameType
from typing import Any

from tcu.bench.player import PacedPlayer
from tcu.can.sources import open_trace
from tcu.errors import ConfigError, TraceError
from tcu.output import table
from tcu.runtime.bus import close_bus, open_bus, resolve_bus


def add_to_bus_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``tcu replay TRACE --to-bus``, added to the replay parser."""
    g = parser.add_argument_group("replay onto a CAN bus (--to-bus)")
    g.add_argument(
        "--to-bus",
        action="store_true",
        help="send the trace's frames onto a CAN bus with their timing, instead of decoding",
    )
    g.add_argument("-i", "--interface", help="python-can interface (slcan, socketcan, ...)")
    g.add_argument("-c", "--channel", help="channel (/dev/ttyACM0, can0, ...)")
    g.add_argument("-b", "--bitrate", type=int, help="bitrate in bit/s")
    g.add_argument("--fd", action="store_true", help="CAN FD bus")
    g.add_argument("--error-frames", action="store_true", help="also send error frames")
    g.add_argument(
        "--max-gap", type=float, metavar="S", help="shorten pauses in the trace to S seconds"
    )


def run_to_bus(args: argparse.Namespace) -> int:
    """``tcu replay TRACE --to-bus``: pace the trace onto the bus, print what happened."""
    speed = 1.0 if getattr(args, "realtime", False) else getattr(args, "speed", None) or 1.0
    if speed <= 0:
        raise ConfigError(f"--speed: must be > 0, got {speed}")
    ignored = [
        "--" + flag.replace("_", "-")
        for flag in (
            "command",
            "out_trace",
            "dbc",
            "mapping",
            "broker",
            "keystore",
            "workdir",
            "external_backend",
        )
        if getattr(args, flag, None)
    ]
    if ignored:
        raise ConfigError(
            f"{', '.join(ignored)}: not used with --to-bus (the frames go onto the bus as they "
            "are; nothing is decoded)"
        )
    trace = Path(args.trace)
    source = open_trace(trace)
    spec = resolve_bus(
        interface=args.interface, channel=args.channel, bitrate=args.bitrate, fd=args.fd
    )
    player_kwargs: dict[str, Any] = {
        "speed": speed,
        "max_gap": getattr(args, "max_gap", None),
        "error_frames": getattr(args, "error_frames", False),
        "start": getattr(args, "start", None),
        "stop": getattr(args, "stop", None),
    }
    bus = open_bus(spec)
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        player = PacedPlayer(bus, **player_kwargs)
        print(f"sending {trace} onto {spec.describe()} at {speed:g}x", file=sys.stderr)
        try:
            stats = player.play(source, stop=stop)
        except OSError as e:
            raise TraceError(f"{trace}: read failed: {e.strerror or e}") from None
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        close_bus(bus)
    warnings = [f"{trace}: {e}" for e in source.bad_examples]
    if source.bad_records:
        warnings.insert(0, f"{trace}: {source.bad_records} damaged records skipped")
    warnings += [f"send error: {e}" for e in stats.first_errors]
    for w in warnings:
        print(f"warning: {w}", file=sys.stderr)
    report = {"trace": str(trace), "bus": spec.describe(), "speed": speed, **stats.as_dict()}
    if getattr(args, "json", False):
        print(json.dumps(report, indent=2))
    else:
        print(render(report))
    return 0


def render(report: dict[str, Any]) -> str:
    rows = [
        ("trace", report["trace"]),
        ("bus", report["bus"]),
        ("speed", f"{report['speed']:g}x"),
        ("frames read", report["frames_read"]),
        ("frames sent", report["frames_sent"]),
        ("send errors", report["send_errors"]),
        ("error frames not sent", report["skipped_error_frames"]),
        ("frames outside --start/--stop", report["skipped_outside_window"]),
        ("trace span (s)", report["trace_span_s"]),
        ("wall time (s)", report["wall_s"]),
        ("drift (ms)", report["drift_ms"]),
        ("lag behind deadline p50 / p99 / max (ms)", _lags(report)),
        ("catch-up batches (frames)", f"{report['batches']} ({report['batched_frames']})"),
    ]
    if report["stopped_early"]:
        rows.append(("stopped early", True))
    return "Replay onto the bus\n" + table(rows)


def _lags(report: dict[str, Any]) -> str:
    return f"{report['lag_p50_ms']:g} / {report['lag_p99_ms']:g} / {report['lag_max_ms']:g}"
