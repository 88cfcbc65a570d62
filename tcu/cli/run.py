"""``tcu run``: the TCU on a live CAN bus (a bench with a USB-CAN adapter, or a virtual bus)."""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import sys
from pathlib import Path
from typing import Any

import yaml

from tcu import validate
from tcu.errors import ConfigError
from tcu.link.sim import LinkConfig
from tcu.output import table
from tcu.runtime.bus import resolve_bus
from tcu.runtime.live import LiveOptions, LiveReport, LiveSession, StatusLine, serve
from tcu.runtime.mqtt import PROTOCOLS
from tcu.validate import add_broker_arguments, broker_from_args


def register(sub: Any) -> None:
    p = sub.add_parser(
        "run",
        help="run the TCU on a live CAN bus",
        description=(
            "Runs the TCU on a CAN bus through python-can. Without -i/-c the bus comes from "
            "python-can's configuration (CAN_INTERFACE, CAN_CHANNEL, CAN_BITRATE, CAN_CONFIG, "
            "~/.canrc). Ctrl-C or SIGTERM stops it and prints a summary."
        ),
    )
    p.add_argument("-i", "--interface", help="python-can interface: slcan, socketcan, pcan, ...")
    p.add_argument("-c", "--channel", help="channel: /dev/ttyACM0, can0, PCAN_USBBUS1, ...")
    p.add_argument("-b", "--bitrate", type=validate.bitrate, help="bitrate in bit/s (500000)")
    p.add_argument("--fd", action="store_true", help="CAN FD bus")
    p.add_argument(
        "--listen-only", action="store_true", help="never send on the bus (requests suppressed)"
    )
    p.add_argument("--can-config", metavar="FILE", help="python-can config file to read")
    p.add_argument("--dbc", help="CAN database (DBC, KCD, ARXML); needs --mapping")
    p.add_argument("--mapping", help="mapping file from DBC signals to the signal catalogue")
    add_broker_arguments(p)
    p.add_argument(
        "--vin", type=validate.vin, help="vehicle identification number (default: the keystore's)"
    )
    p.add_argument("--keystore", help="keystore directory made by tcu provision")
    p.add_argument("--outbox", help="outbox file (default: KEYSTORE/outbox.sqlite)")
    p.add_argument(
        "--no-link-proxy",
        action="store_true",
        help="connect to the broker directly, not through the link proxy",
    )
    p.add_argument(
        "--link",
        metavar="FILE",
        help="SIM link model (YAML, as a scenario's link: section) shaping the broker path",
    )
    p.add_argument(
        "--topic-prefix",
        type=validate.text_id,
        default="vehicles",
        help="MQTT topic prefix (vehicles)",
    )
    p.add_argument(
        "--mqtt-protocol",
        choices=PROTOCOLS,
        default="auto",
        help="MQTT version; auto tries 5, then 3.1.1 (default auto)",
    )
    p.add_argument(
        "--snapshot-period",
        type=validate.positive_seconds,
        default=60.0,
        help="seconds between snapshots (60)",
    )
    p.add_argument(
        "--duration", type=validate.positive_seconds, help="stop after this long (s or H:MM:SS)"
    )
    p.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    spec = resolve_bus(
        interface=args.interface,
        channel=args.channel,
        bitrate=args.bitrate,
        fd=args.fd,
        listen_only=args.listen_only,
        config_file=args.can_config,
    )
    opts = LiveOptions(
        bus=spec,
        dbc=args.dbc,
        mapping=args.mapping,
        vin=args.vin,
        keystore=Path(args.keystore) if args.keystore else None,
        outbox=Path(args.outbox) if args.outbox else None,
        broker=broker_from_args(args) if args.broker else None,
        link_proxy=not args.no_link_proxy,
        link=_link_config(args.link) if args.link else None,
        topic_prefix=args.topic_prefix,
        mqtt_protocol=args.mqtt_protocol,
        snapshot_period=args.snapshot_period,
    )
    quiet = getattr(args, "verbosity", 0) < 0
    status = StatusLine(io.StringIO() if quiet else sys.stderr)  # -q: no status line
    report = asyncio.run(_main(opts, status, args.duration))
    for w in [] if quiet else report.warnings:
        print(f"warning: {w}", file=sys.stderr)
    if args.json:
        print(json.dumps(report.as_json(), indent=2, default=str))
    else:
        print(render(report))
    return 0


def _link_config(path: str) -> LinkConfig:
    try:
        raw = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except OSError as e:
        raise ConfigError(f"--link {path}: {e.strerror}") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"--link {path}: not YAML: {str(e).splitlines()[0]}") from None
    if isinstance(raw, dict) and set(raw) == {"link"}:
        raw = raw["link"]
    return LinkConfig.from_dict(raw, where=path)


async def _main(opts: LiveOptions, status: StatusLine, duration: float | None) -> LiveReport:
    session = LiveSession(opts, on_report=status.print)
    return await serve(session, status=status, duration=duration)


def render(report: LiveReport) -> str:
    d = report.as_json()
    h = report.bus_health
    drv = report.driver
    rows = [
        ("bus", report.bus),
        ("VIN", report.vin),
        ("wall time (s)", d["wall_s"]),
        ("frames received", d["frames"]),
        ("frames decoded", d["decoded_frames"]),
        ("unknown-ID frames", d["unknown_id_frames"]),
        ("bad frames", d["bad_frames"]),
        ("error frames", h["error_frames"]),
        (
            "error warning / passive / bus-off",
            f"{h['error_warning']} / {h['error_passive']} / {h['bus_off']}",
        ),
        ("adapter lost", h["adapter_lost"]),
        ("bus reopened (attempts failed)", f"{h['reopened']} ({h['open_failures']})"),
        ("unreadable adapter input", h["bad_input"]),
        ("request frames sent", drv["frames_sent"]),
        ("request frames suppressed (listen-only)", drv["sends_suppressed"]),
        ("request frames not sent", drv["send_failures"]),
    ]
    outbox = report.extra.get("outbox")
    if isinstance(outbox, dict):
        rows.append(
            ("records stored / waiting in the outbox", f"{outbox['stored']} / {outbox['depth']}")
        )
    uplink = report.extra.get("uplink")
    if isinstance(uplink, dict):
        rows.append(
            ("records sent / acknowledged", f"{uplink['records_sent']} / {uplink['records_acked']}")
        )
    out = ["Live run summary", table(rows)]
    if report.faults:
        out += ["", "Bus faults"] + [f"  {f}" for f in report.faults[-10:]]
    for section in report.sections:
        out += ["", section]
    return "\n".join(out)
