"""``tcu demo``: the whole chain on one machine, nothing to install.

An embedded MQTT broker, the cloud stub backend, a provisioned and activated van, and
the reference traces replayed through the TCU with signed telemetry over MQTT. The
summary shows what was produced, sent, verified and stored, refused and lost.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

from tcu.output import shown_path, table
from tcu.runtime.mqtt import add_broker_arguments, broker_from_args
from tcu.runtime.online import OnlineOptions, OnlineReport, reference_traces, run_online


def register(sub: Any) -> None:
    p = sub.add_parser("demo", help="replay the reference van through signed MQTT telemetry")
    add_broker_arguments(p)
    p.add_argument(
        "--trace",
        action="append",
        default=[],
        help="a reference trace by file name (default: the three storylines)",
    )
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if getattr(args, "verbosity", 0) <= 0:
        logging.getLogger().setLevel(logging.ERROR)  # library chatter only with -v
    broker = broker_from_args(args) if args.broker else None
    opts = OnlineOptions(traces=reference_traces(tuple(args.trace)), broker=broker)
    quiet = args.json or getattr(args, "verbosity", 0) < 0
    say = (lambda s: None) if quiet else (lambda s: print(f"- {s}", flush=True))
    report = run_online(opts, say=say)
    if args.json:
        print(json.dumps(report.as_json(), indent=2))
    else:
        print(render(report))
    return 0 if report.lost == 0 and report.drained else 1


def render(report: OnlineReport) -> str:
    rows = [
        (
            shown_path(Path(t.trace)),
            t.frames,
            round(t.vehicle_time_s),
            t.epoch,
            t.records,
            ", ".join(f"{k} {v}" for k, v in sorted(t.verdicts.items())) or "-",
        )
        for t in report.traces
    ]
    out = [
        "",
        table(rows, headers=("trace", "frames", "vehicle s", "epoch", "records", "verdicts")),
        "",
        "Telemetry end to end",
    ]
    summary = [
        ("records produced", report.records_produced),
        ("messages sent (signed batches)", report.messages_sent),
        ("bytes sent", report.bytes_sent),
        ("records acknowledged by the backend", report.records_acked),
        ("records verified and stored by the backend", report.stored),
        ("duplicates received (stored once)", report.duplicates),
        ("messages refused by the backend", sum(report.refused.values())),
        ("records still in the outbox", report.outbox_depth),
        ("lost", report.lost),
        ("wall time (s)", round(report.wall_s, 2)),
    ]
    out.append(table(summary))
    if not report.drained:
        out.append("warning: the outbox did not drain before the timeout")
    return "\n".join(out)


if __name__ == "__main__":  # pragma: no cover
    from tcu.cli.main import main

    sys.exit(main(["demo", *sys.argv[1:]]))
