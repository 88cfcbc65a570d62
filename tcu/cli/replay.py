"""``tcu replay TRACE``: a trace through the TCU core, with a summary at the end."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from tcu.cli.to_bus import add_to_bus_arguments, run_to_bus
from tcu.compose.replay import ReplayOptions, ReplayReport, replay_file
from tcu.errors import ConfigError
from tcu.output import Progress, table
from tcu.runtime.mqtt import add_broker_arguments, broker_from_args


def register(sub: Any) -> None:
    p = sub.add_parser("replay", help="replay a CAN trace through the TCU")
    p.add_argument("trace", help="trace file (.asc .blf .log .trc .csv .db .mf4, optionally .gz)")
    p.add_argument("--dbc", help="CAN database (DBC, KCD, ARXML); needs --mapping")
    p.add_argument("--mapping", help="mapping file from DBC signals to the signal catalogue")
    pace = p.add_mutually_exclusive_group()
    pace.add_argument("--speed", type=float, help="pace at X times real time")
    pace.add_argument("--realtime", action="store_true", help="keep the trace's timing")
    p.add_argument("--start", type=float, help="vehicle time (s) to start at")
    p.add_argument("--stop", type=float, help="vehicle time (s) to stop at")
    p.add_argument(
        "--command",
        action="append",
        default=[],
        metavar="T:NAME[:ARG]",
        help="inject a command at vehicle time T (repeatable)",
    )
    p.add_argument("--out-trace", help="write the TCU's own CAN frames to this file")
    p.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    online = p.add_argument_group("through a real MQTT broker")
    add_broker_arguments(online)
    online.add_argument(
        "--keystore", help="the vehicle's keystore (tcu provision); default: a fresh one"
    )
    online.add_argument(
        "--workdir",
        help="keep the outbox (and a fresh keystore) here, so a restarted replay resends",
    )
    online.add_argument(
        "--external-backend",
        action="store_true",
        help="a cloud-stub serve runs elsewhere on the broker; do not start one here",
    )
    add_to_bus_arguments(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.to_bus:
        return run_to_bus(args)
    if args.broker:
        return run_broker(args)
    speed = 1.0 if args.realtime else args.speed
    if speed is not None and speed <= 0:
        raise ConfigError(f"--speed: must be > 0, got {speed}")
    opts = ReplayOptions(
        trace=Path(args.trace),
        dbc=args.dbc,
        mapping=args.mapping,
        speed=speed,
        start=args.start,
        stop=args.stop,
        commands=tuple(args.command),
        out_trace=Path(args.out_trace) if args.out_trace else None,
    )
    progress = Progress("replay", total=None)
    report = replay_file(opts, progress=None if args.json else progress)
    progress.close()
    for w in report.warnings:
        print(f"warning: {w}", file=sys.stderr)
    if args.json:
        print(json.dumps(report.as_json(), indent=2, sort_keys=False))
    else:
        print(render(report))
    return 0


def run_broker(args: argparse.Namespace) -> int:
    from tcu.cli.demo import render as render_online
    from tcu.compose.online import OnlineOptions, run_online

    for opt in ("speed", "start", "stop", "out_trace"):
        if getattr(args, opt):
            raise ConfigError(f"--{opt.replace('_', '-')} is not available with --broker")
    if args.command or args.realtime:
        raise ConfigError("--command and --realtime are not available with --broker")
    broker = broker_from_args(args)
    opts = OnlineOptions(
        traces=(Path(args.trace),),
        broker=broker,
        external_backend=args.external_backend,
        keystore=Path(args.keystore) if args.keystore else None,
        workdir=Path(args.workdir) if args.workdir else None,
        dbc=args.dbc,
        mapping=args.mapping,
    )
    say = (lambda s: None) if args.json else (lambda s: print(f"- {s}", flush=True))
    report = run_online(opts, say=say)
    for w in report.warnings:
        print(f"warning: {w}", file=sys.stderr)
    if args.json:
        print(json.dumps(report.as_json(), indent=2))
    else:
        print(render_online(report))
    return 0 if report.drained else 1


def render(report: ReplayReport) -> str:
    d = report.as_json()
    rows = [
        ("trace", d["trace"]),
        ("frames read", d["frames"]),
        ("frames decoded", d["decoded_frames"]),
        ("frames unchanged (not decoded)", d["unchanged_frames"]),
        ("unknown-ID frames", d["unknown_id_frames"]),
        ("bad frames (wrong length, undecodable)", d["bad_frames"]),
        ("damaged trace records skipped", d["damaged_records"]),
        ("error frames", d["error_frames"]),
        ("remote frames", d["remote_frames"]),
        ("vehicle time covered (s)", d["vehicle_time_s"]),
        ("wall time (s)", d["wall_s"]),
        ("frames per second", d["frames_per_s"]),
    ]
    out = ["Replay summary", table(rows)]
    if report.examples:
        out += ["", "Skipped (first examples)"] + [f"  {e}" for e in report.examples]
    for section in report.sections:
        out += ["", section]
    state_rows = [(p, v) for p, v in d["state"].items()]
    out += ["", "Final vehicle state", table(state_rows, headers=("signal", "value"))]
    return "\n".join(out)
