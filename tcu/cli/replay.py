"""``tcu replay TRACE``: a trace through the TCU core, with a summary at the end."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from tcu import validate
from tcu.can.sources import integrity_warnings
from tcu.cli.plot import replay_with_outputs
from tcu.cli.to_bus import add_to_bus_arguments, run_to_bus
from tcu.compose.replay import ReplayOptions, ReplayReport
from tcu.errors import ConfigError
from tcu.output import Progress, fold_unknown, table
from tcu.plot.outputs import Outputs, add_output_arguments, output_options
from tcu.validate import add_broker_arguments, broker_from_args

TOP_UNKNOWN_IDS = 20


def register(sub: Any) -> None:
    p = sub.add_parser("replay", help="replay a CAN trace through the TCU")
    p.add_argument("trace", help="trace file (.asc .blf .log .trc .csv .db .mf4, optionally .gz)")
    p.add_argument("--dbc", help="CAN database (DBC, KCD, ARXML); needs --mapping or --signals all")
    p.add_argument("--mapping", help="mapping file from DBC signals to the signal catalogue")
    p.add_argument(
        "--signals",
        choices=("catalogue", "all"),
        help="all: also decode every DBC signal, reported as Message.Signal",
    )
    pace = p.add_mutually_exclusive_group()
    pace.add_argument(
        "--speed", type=validate.speed, help="pace at X times real time (0.001 to 1e6)"
    )
    pace.add_argument("--realtime", action="store_true", help="keep the trace's timing")
    validate.add_window_and_commands(p)
    p.add_argument(
        "--out-trace",
        type=validate.out_trace,
        help="write the TCU's own CAN frames to this file (.asc .blf .log .trc .csv, .gz)",
    )
    p.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    p.add_argument(
        "--strict", action="store_true", help="exit 1 when the summary holds any warning (for CI)"
    )
    shown = p.add_argument_group("timeline and export (docs/plots.md)")
    shown.add_argument("--plot", metavar="FILE", help="draw the timeline: .png .svg .pdf .html")
    shown.add_argument(
        "--signal",
        action="append",
        default=[],
        metavar="SIGNAL",
        help="a signal to plot, VSS path or alias (repeatable; default: as tcu plot)",
    )
    add_output_arguments(shown)
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
    validate.check_window(args.start, args.stop)
    if (args.plot or args.export) and (args.to_bus or args.broker):
        raise ConfigError("--plot and --export are not available with --to-bus or --broker")
    if args.to_bus:
        return run_to_bus(args)
    if args.broker:
        return run_broker(args)
    speed = 1.0 if args.realtime else args.speed
    opts = ReplayOptions(
        trace=Path(args.trace),
        dbc=args.dbc,
        mapping=args.mapping,
        signals=args.signals,
        speed=speed,
        start=args.start,
        stop=args.stop,
        commands=tuple(args.command),
        out_trace=args.out_trace,
    )
    outputs = Outputs(output_options(args, args.plot, args.signal, "--plot"))
    progress = Progress("replay", total=None)
    quiet = args.json or args.verbosity < 0
    try:
        report, written = replay_with_outputs(opts, outputs, progress=None if quiet else progress)
    finally:
        progress.close()
    if written:
        report.extra["written"] = [str(w) for w in written]
    if args.json:
        print(json.dumps(summary_json(report), indent=2, sort_keys=False))
    else:
        print(render(report))
    return _exit(report.warnings, args)


def _exit(warnings: list[str], args: argparse.Namespace, *, text_lists_them: bool = True) -> int:
    """Warnings on stderr besides the JSON (the text summary lists them); 1 under --strict."""
    if (args.json or not text_lists_them) and (args.verbosity >= 0 or args.strict):
        for w in warnings:
            print(f"warning: {w}", file=sys.stderr)
    return 1 if args.strict and warnings else 0


def summary_json(report: ReplayReport) -> dict[str, Any]:
    """The replay summary as docs/replay-summary.schema.json describes it (mode memory)."""
    return {"mode": "memory", "broker": None, **report.as_json()}


def run_broker(args: argparse.Namespace) -> int:
    from tcu.cli.demo import render as render_online
    from tcu.compose.online import OnlineOptions, run_online

    for opt in ("speed", "start", "stop", "out_trace", "signals"):
        if getattr(args, opt) is not None:
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
    quiet = args.json or args.verbosity < 0
    say = (lambda s: None) if quiet else (lambda s: print(f"- {s}", flush=True))
    report = run_online(opts, say=say)
    summary = broker_summary_json(report)
    summary["warnings"][:0] = integrity_warnings(Path(args.trace))
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print(render_online(report))
    code = _exit(summary["warnings"], args, text_lists_them=False)
    return code if report.drained else 1


NULL_COUNTS = (
    "decoded_frames",
    "unchanged_frames",
    "unknown_id_frames",
    "bad_frames",
    "damaged_records",
    "error_frames",
    "remote_frames",
    "frames_per_s",
    "known_id_share",
    "unknown_ids",
    "state",
    "can_requests_sent",
    "out_trace",
    "verdicts",
    "sessions",
    "downlink",
    "link",
)


def broker_summary_json(report: Any) -> dict[str, Any]:
    """An online report in the replay summary's shape: what a broker run cannot know is null."""
    d = report.as_json()
    trace = d["traces"][0] if d["traces"] else {"trace": None, "frames": 0, "vehicle_time_s": 0}
    warnings = list(getattr(report, "warnings", []))
    if not report.drained:
        warnings.append("the outbox did not drain before the timeout")
    out: dict[str, Any] = {
        "mode": "broker",
        "broker": {
            "url": d["broker"],
            "vin": d["vin"],
            "messages_sent": d["messages_sent"],
            "records_acked": d["records_acked"],
            "drained": d["drained"],
            "uplink": d["uplink"],
            "traces": d["traces"],
        },
        "trace": trace["trace"],
        "frames": trace["frames"],
        "vehicle_time_s": trace["vehicle_time_s"],
        "wall_s": d["wall_s"],
        "commands": [],
        "warnings": warnings,
        "telemetry": {
            "records_produced": d["records_produced"],
            "batches_sent": d["messages_sent"],
            "bytes_up": d["bytes_sent"],
            "outbox_depth": d["outbox_depth"],
            "lost": d["lost"],
        },
        "backend": {
            "records_stored": d["records_stored"],
            "duplicates": d["duplicates"],
            "refused": d["refused"],
        },
    }
    out.update({key: None for key in NULL_COUNTS})
    return out


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
        ("share of data frames with a known id", _percent(d["known_id_share"])),
        ("vehicle time covered (s)", d["vehicle_time_s"]),
        ("wall time (s)", d["wall_s"]),
        ("frames per second", d["frames_per_s"]),
    ]
    out = ["Replay summary", table(rows)]
    if report.warnings:
        out += ["", "Warnings"] + [f"  {w}" for w in report.warnings]
    if report.examples:
        out += ["", "Skipped (first examples)"] + [f"  {e}" for e in report.examples]
    if report.unknown_ids:
        shown = report.unknown_ids[:TOP_UNKNOWN_IDS]
        title = f"Unknown ids ({len(report.unknown_ids)}"
        title += f", top {len(shown)} by frames)" if len(shown) < len(report.unknown_ids) else ")"
        id_rows = [(u["id"] + (" (ext)" if u["extended"] else ""), u["frames"]) for u in shown]
        out += ["", title, table(id_rows, headers=("id", "frames"))]
    if report.commands:
        cmd_rows = [
            (
                c["spec"],
                "yes" if c["injected"] else "no",
                " -> ".join(
                    f"{r['status']}@{r['t']:g}s"
                    + (f" ({', '.join(r['reasons'])})" if r["reasons"] else "")
                    for r in c["results"]
                )
                or "-",
                c["outcome"],
            )
            for c in report.commands
        ]
        out += [
            "",
            "Injected commands",
            table(cmd_rows, headers=("command", "injected", "results", "outcome")),
        ]
    for section in report.sections:
        out += ["", section]
    state_rows, never = fold_unknown(d["state"])
    out += ["", "Final vehicle state", table(state_rows, headers=("signal", "value"))]
    if never:
        out.append(f"never seen ({len(never)}): {', '.join(never)}")
    return "\n".join(out)


def _percent(share: float | None) -> str | None:
    return None if share is None else f"{share * 100:.1f} %"
