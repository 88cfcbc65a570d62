"""``tcu demo``: the whole chain on one machine, nothing to install.

An embedded MQTT broker, the cloud stub backend, a provisioned and activated van, and
the reference traces replayed through the TCU with signed telemetry over MQTT. The
summary shows what was produced, sent, verified and stored, refused and lost.
``--broker mosquitto-tls`` runs it through a Mosquitto child process that admits only
certificates of a fleet CA made for the run (mutual TLS, the CN as username, topic ACL).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cloud_stub.ca import FleetCA
from cloud_stub.errors import CloudError
from cloud_stub.provisioning import certification, registration
from tcu.compose.online import OnlineOptions, OnlineReport, reference_traces, run_online
from tcu.errors import ConfigError, TcuError
from tcu.output import shown_path, table
from tcu.runtime.mqtt import BrokerURL
from tcu.services import DEFAULT_VIN
from tcu.telemetry.storage.certificate import request_certificate
from tcu.telemetry.storage.identity import provision
from tcu.validate import add_broker_arguments, broker_from_args

MOSQUITTO_TLS = "mosquitto-tls"


def register(sub: Any) -> None:
    p = sub.add_parser("demo", help="replay the reference van through signed MQTT telemetry")
    add_broker_arguments(p, also=(MOSQUITTO_TLS,))  # see run_mutual_tls
    p.add_argument(
        "--trace",
        action="append",
        default=[],
        help="a reference trace by file name (default: the three storylines)",
    )
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.add_argument(
        "--http",
        default="127.0.0.1:0",
        metavar="HOST:PORT",
        help="serve the fleet portal here (default: a free port on 127.0.0.1)",
    )
    p.add_argument("--no-http", action="store_true", help="do not serve the fleet portal")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if getattr(args, "verbosity", 0) <= 0:
        logging.getLogger().setLevel(logging.ERROR)  # library chatter only with -v
    quiet = args.json or getattr(args, "verbosity", 0) < 0
    say = (lambda s: None) if quiet else (lambda s: print(f"- {s}", flush=True))
    traces = reference_traces(tuple(args.trace))

    def show(report: OnlineReport) -> None:
        print(json.dumps(report.as_json(), indent=2) if args.json else render(report))

    if args.broker == MOSQUITTO_TLS:
        if args.ca or args.cert or args.key:
            raise ConfigError("--broker mosquitto-tls makes its own CA and certificates")
        report = run_mutual_tls(traces, say)
        show(report)
        return 0 if report.lost == 0 and report.drained else 1
    broker = broker_from_args(args) if args.broker else None
    opts = OnlineOptions(traces=traces, broker=broker)
    if args.no_http:
        report = run_online(opts, say=say)
        show(report)
    else:
        from tcu.cli.demo_portal import interactive, with_portal

        stay = interactive(args)
        report = asyncio.run(with_portal(opts, say, show, args.http, stay, quiet=args.json))
    return 0 if report.lost == 0 and report.drained else 1


def run_mutual_tls(traces: tuple[Path, ...], say: Callable[[str], None]) -> OnlineReport:
    """The demo through a Mosquitto that admits fleet certificates only (mutual TLS, ACL).

    A throwaway fleet CA in the backend's data folder issues the broker's, the backend's and
    the van's certificates (``tcu provision`` does the van's: CN = VIN); the van and the
    backend each connect with their own identity, and the ACL holds each to its topics.
    """
    with tempfile.TemporaryDirectory(prefix="tcu-tls-") as tmp:
        work = Path(tmp)
        backend_data = work / "backend"
        keystore = work / "keystore"
        try:
            ca = FleetCA(backend_data)
            broker = ca.mosquitto(work / "mosquitto")
            register, backend_pem = registration(backend_data)
            provision(DEFAULT_VIN, keystore, register=register, backend_pem=backend_pem)
            cert = request_certificate(keystore, DEFAULT_VIN, certification(backend_data))
            say(f"fleet CA in {backend_data / 'ca'} (key mode 0600)")
            say(
                f"provisioned {DEFAULT_VIN}: signing key and TLS client certificate (CN={cert.vin})"
            )
            with broker:
                say(f"Mosquitto on {broker.url}: client certificates required, CN as username, ACL")
                url = BrokerURL.parse(broker.url, ca=ca.cert_path, cert=cert.path, key=cert.path)
                opts = OnlineOptions(
                    traces=traces,
                    broker=url,
                    workdir=work,
                    keystore=keystore,
                    backend_tls=ca.backend_tls(),
                    synchronous="NORMAL",  # a throwaway outbox, as in the plain demo
                )
                return run_online(opts, say=say)
        except CloudError as exc:
            raise TcuError(f"--broker {MOSQUITTO_TLS}: {exc}") from None


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
