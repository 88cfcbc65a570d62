"""``tcu provision --vin VIN``: make the vehicle key pair and register it with the backend."""

from __future__ import annotations

import argparse
import json
from typing import Any

from cloud_stub.provisioning import registration
from tcu import validate
from tcu.output import table
from tcu.telemetry.identity import ALGORITHMS, provision

DEFAULT_KEYSTORE = "keystore"
DEFAULT_BACKEND_DATA = "cloud-data"


def register(sub: Any) -> None:
    p = sub.add_parser("provision", help="make the vehicle key pair and register the VIN")
    p.add_argument(
        "--vin",
        required=True,
        type=validate.vin,
        help="vehicle identification number (17 characters)",
    )
    p.add_argument(
        "--keystore", default=DEFAULT_KEYSTORE, help=f"key directory (default {DEFAULT_KEYSTORE})"
    )
    p.add_argument(
        "--backend-data",
        default=DEFAULT_BACKEND_DATA,
        help=f"cloud stub data directory (default {DEFAULT_BACKEND_DATA})",
    )
    p.add_argument("--alg", choices=ALGORITHMS, default="EdDSA", help="signature algorithm")
    p.add_argument("--force", action="store_true", help="replace an existing vehicle key")
    p.add_argument("--json", action="store_true", help="print the result as one JSON object")
    p.set_defaults(func=run)


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
    result = {
        "vin": done.vin,
        "kid": done.kid.hex(),
        "alg": done.alg,
        "keystore": str(done.keystore),
        "backend_data": args.backend_data,
    }
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print("Provisioned")
        print(table(list(result.items())))
    return 0
