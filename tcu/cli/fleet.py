"""``tcu fleet``: N vans in one process, in virtual time or in real time against a broker.

Without ``--broker`` the fleet runs in virtual time, as fast as the machine goes, with
each van's SIM link model and the cloud stub in memory; with ``--broker mqtt://...`` it
runs in real time, each van its own MQTT client, for load tests of a broker and backend.
A status line is drawn on stderr when it is a terminal; the summary (or ``--json``)
tells what was produced, stored, acknowledged and lost (0), the reconnects and the
latency from record to stored. Exit code 1 when anything was lost or not drained.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from typing import Any

from tcu.compose.fleet import FleetOptions, FleetReport, run_fleet, status_line
from tcu.errors import ConfigError
from tcu.output import Progress, table
from tcu.validate import add_broker_arguments, broker_from_args


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    return value


def register(sub: Any) -> None:
    p = sub.add_parser("fleet", help="a fleet of vans in one process (virtual time or a broker)")
    p.add_argument("--vans", type=int, required=True, help="how many vans")
    p.add_argument(
        "--duration",
        type=_seconds,
        default=None,
        metavar="S",
        help="seconds of the fleet's life (default: a day virtual, 60 s against a broker)",
    )
    p.add_argument("--seed", type=int, default=0, help="varies the vans' storylines and keys")
    add_broker_arguments(p)
    p.add_argument(
        "--ramp",
        type=float,
        default=None,
        help="connections per second at start (broker; default 500)",
    )
    p.add_argument(
        "--backend",
        choices=("process", "inline"),
        default="process",
        help="against a broker: the cloud stub in a child process (default) or in this one",
    )
    p.add_argument(
        "--storm-at",
        type=_seconds,
        action="append",
        default=[],
        metavar="S",
        help="every van's connection drops at S s into the run (broker; repeatable)",
    )
    p.add_argument(
        "--signal-period",
        type=_seconds,
        default=10.0,
        metavar="S",
        help="ramps (charge, speed, position) reach the TCU every S s (default 10)",
    )
    p.add_argument(
        "--snapshot-period",
        type=_seconds,
        default=60.0,
        metavar="S",
        help="a van's snapshot record every S s (default 60)",
    )
    p.add_argument(
        "--drain-timeout",
        type=_seconds,
        default=120.0,
        metavar="S",
        help="at the end, wait at most S s for every record to be acknowledged",
    )
    p.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    p.set_defaults(func=run)


def options(args: argparse.Namespace) -> FleetOptions:
    broker = broker_from_args(args) if args.broker else None
    if args.ramp is not None and broker is None:
        raise ConfigError("--ramp needs --broker (connections of a real-time fleet)")
    duration = args.duration
    if duration is None:
        duration = 86400.0 if broker is None else 60.0
    return FleetOptions(
        vans=args.vans,
        duration_s=duration,
        seed=args.seed,
        broker=broker,
        ramp=500.0 if args.ramp is None else args.ramp,
        storm_at=tuple(args.storm_at),
        period_s=args.signal_period,
        snapshot_period_s=args.snapshot_period,
        drain_timeout_s=args.drain_timeout,
        backend=args.backend,
    )


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.ERROR, format="%(name)s: %(message)s")
    opts = options(args)
    progress = Progress("fleet")
    started = time.monotonic()

    def show(fleet: Any) -> None:
        if progress.enabled:
            progress.update(0, status_line(fleet, time.monotonic() - started))

    report = run_fleet(opts, progress=show if progress.enabled else None)
    progress.close()
    if args.json:
        print(json.dumps(report.as_json(), indent=2))
    else:
        print(render(report))
    return 0 if report.ok else 1


def _storms(n: int) -> str:
    return "" if not n else f" ({n} storm{'s' if n > 1 else ''})"


def _s(x: float | None) -> str:
    return "-" if x is None else f"{x:.3f} s"


def render(report: FleetReport) -> str:
    mode = "virtual time, in memory" if report.broker is None else f"real time, {report.broker}"
    rows: list[tuple[str, Any]] = [
        ("mode", mode),
        ("vans", f"{report.vans:,} (seed {report.seed})"),
        ("fleet time", f"{report.duration_s:,.0f} s ({report.vehicle_hours:,.1f} vehicle-hours)"),
        ("wall time", f"{report.wall_s:,.1f} s"),
        ("vans connected at the end", f"{report.vans_connected:,}"),
        ("vans activated", f"{report.vans_activated:,}"),
        ("vans that roamed", f"{report.roaming_vans:,}"),
        ("records produced", f"{report.records_produced:,}"),
        ("records stored by the backend", f"{report.records_stored:,}"),
        ("records per wall second", f"{report.records_per_s:,.1f}"),
        ("acks received", f"{report.acks:,}"),
        ("duplicates received (resent)", f"{report.duplicates:,}"),
        ("still in outboxes", f"{report.outbox_depth:,}"),
        ("lost", f"{report.lost:,}"),
        (
            "reconnects",
            f"{report.reconnects:,}" + _storms(report.storms),
        ),
        ("latency record to stored p50", _s(report.latency_p50_s)),
        ("latency record to stored p99", _s(report.latency_p99_s)),
        ("latency record to stored max", _s(report.latency_max_s)),
        ("latency measured at", report.latency_measured_at),
        ("CPU per van", f"{report.cpu_ms_per_van_s:.3f} ms per wall second"),
        ("CPU per vehicle-hour", f"{report.cpu_s_per_vehicle_hour * 1000:.1f} ms"),
        ("memory per van", f"{report.memory_kb_per_van:,.1f} KiB (peak RSS growth / vans)"),
    ]
    if report.connect_s is not None:
        rows.insert(5, ("all vans connected after", f"{report.connect_s:.1f} s"))
    if report.fd_limit:
        rows.append(("file descriptors", report.fd_limit))
    out = [table(rows)]
    if report.broker is None:
        out.append("(latency in vehicle time: the SIM link's batch windows and coverage gaps)")
    out.extend(f"warning: {w}" for w in report.warnings)
    if not report.drained:
        out.append("warning: the outboxes did not drain before --drain-timeout")
    return "\n".join(out)
