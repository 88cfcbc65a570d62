"""``tcu provision --vin VIN``: make the vehicle's keys and register it with the backend.

``tcu provision`` makes the signing key pair, registers it, and gets the van its TLS client
certificate (CN = VIN) from the fleet CA; ``tcu renew`` gets a new TLS key and certificate
for a provisioned keystore (the signing key stays).
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from cloud_stub.provisioning import certification, registration
from cloud_stub.service import DEFAULT_DATA
from tcu.errors import ConfigError
from tcu.output import table
from tcu.telemetry.storage.certificate import read_client_certificate, request_certificate
from tcu.telemetry.storage.identity import ALGORITHMS, load_identity, provision

DEFAULT_KEYSTORE = "keystore"
DEFAULT_BACKEND_DATA = DEFAULT_DATA  # the directory cloud-stub uses by default
DEFAULT_DAYS = 365


def _days(text: str) -> float:
    try:
        days = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--days {text!r}: not a number") from None
    if not 0 < days <= 3650:
        raise argparse.ArgumentTypeError(f"--days {text}: must be more than 0 and at most 3650")
    return days


def _common(p: Any) -> None:
    p.add_argument(
        "--keystore", default=DEFAULT_KEYSTORE, help=f"key directory (default {DEFAULT_KEYSTORE})"
    )
    p.add_argument(
        "--backend-data",
        default=DEFAULT_BACKEND_DATA,
        help=f"cloud stub data directory (default {DEFAULT_BACKEND_DATA})",
    )
    p.add_argument(
        "--days",
        type=_days,
        default=DEFAULT_DAYS,
        help=f"validity of the TLS client certificate in days (default {DEFAULT_DAYS})",
    )
    p.add_argument("--json", action="store_true", help="print the result as one JSON object")


def register(sub: Any) -> None:
    p = sub.add_parser("provision", help="make the vehicle keys and register the VIN")
    p.add_argument("--vin", required=True, help="vehicle identification number (17 characters)")
    _common(p)
    p.add_argument("--alg", choices=ALGORITHMS, default="EdDSA", help="signature algorithm")
    p.add_argument("--force", action="store_true", help="replace an existing vehicle key")
    p.set_defaults(func=run)
    r = sub.add_parser("renew", help="a new TLS key and client certificate for the vehicle")
    _common(r)
    r.set_defaults(func=renew)


def run(args: argparse.Namespace) -> int:
    register_vehicle, backend_pem = registration(args.backend_data)
    done = provision(
        args.vin,
        args.keystore,
        register=register_vehicle,
        backend_pem=backend_pem,
        alg=args.alg,
        force=args.force,
    )
    cert = request_certificate(
        done.keystore, done.vin, certification(args.backend_data, days=args.days)
    )
    result = {
        "vin": done.vin,
        "kid": done.kid.hex(),
        "alg": done.alg,
        "keystore": str(done.keystore),
        "backend_data": args.backend_data,
        "tls_certificate": str(cert.path),
        "tls_serial": f"{cert.serial:x}",
        "tls_not_after": cert.not_after.isoformat(),
    }
    _show("Provisioned", result, args.json)
    return 0


def renew(args: argparse.Namespace) -> int:
    vin = load_identity(args.keystore).vin
    try:
        old: str | None = f"{read_client_certificate(args.keystore).serial:x}"
    except ConfigError:
        old = None
    cert = request_certificate(args.keystore, vin, certification(args.backend_data, days=args.days))
    result = {
        "vin": vin,
        "tls_certificate": str(cert.path),
        "previous_serial": old or "-",
        "tls_serial": f"{cert.serial:x}",
        "tls_not_after": cert.not_after.isoformat(),
    }
    _show("Renewed; the previous certificate is valid until revoked", result, args.json)
    return 0


def _show(title: str, result: dict[str, str], as_json: bool) -> None:
    if as_json:
        print(json.dumps(result, indent=2))
    else:
        print(title)
        print(table(list(result.items())))
