"""``cloud-stub``: run the stub backend, manage the registry, send commands, read counters.

Every subcommand takes ``--data DIR`` (default ``./cloud-stub-data``): the backend key, the
registry, the store and the saved counters live there. A mistake prints ``error: ...`` and
exits with status 2, without a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import logging
import signal
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Final

from cloud_stub.broker import LOOPBACK, MOSQUITTO_ACL, EmbeddedBroker, parse_broker_url
from cloud_stub.ca import FleetCA
from cloud_stub.commands import CommandBuilder
from cloud_stub.errors import BrokerError, CloudError
from cloud_stub.ingest import DEFAULT_PREFIX
from cloud_stub.keys import backend_public_key_pem, load_backend_key
from cloud_stub.mailbox import MAILBOX_FILE, Mailbox
from cloud_stub.portal import cli as portal_cli
from cloud_stub.portal.server import PortalServer, parse_http
from cloud_stub.registry import Registry
from cloud_stub.service import (
    DEFAULT_DATA,
    REGISTRY_FILE,
    STORE_FILE,
    Backend,
    TlsFiles,
    publish_once,
    read_stats,
    write_json_atomic,
)
from cloud_stub.stores import open_store
from cloud_stub.workers import (
    POOL_FILE,
    WorkerConfig,
    WorkerPool,
    end_sessions,
    merged_stats,
    parse_amqp_urls,
    previous_pool,
    raise_fd_limit,
    worker_client_id,
)
from tcu import __version__, validate
from tcu.errors import TcuError
from tcu.telemetry.codec.cose import key_id, public_key_from_pem
from tcu.validate import Parser, add_verbosity_arguments

__all__ = ["main"]

MAX_PEM_FILE: Final = 64 * 1024

Handler = Callable[[argparse.Namespace], int]


def _common() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--data", type=Path, default=Path(DEFAULT_DATA), help="data directory (%(default)s)"
    )
    common.add_argument("--prefix", default=DEFAULT_PREFIX, help="topic prefix (%(default)s)")
    add_verbosity_arguments(common)
    return common


def _serve_broker(text: str) -> str:
    """``serve --broker``: an MQTT URL, or RabbitMQ nodes as ``amqp://...[,amqp://...]``."""
    if text.startswith("amqp"):
        try:
            parse_amqp_urls(text)
        except BrokerError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
        return text
    return validate.broker_url(text)


def _broker_options(parser: argparse.ArgumentParser, *, required: bool, amqp: bool = False) -> None:
    parser.add_argument(
        "--broker",
        required=required,
        type=_serve_broker if amqp else validate.broker_url,
        help="mqtt://HOST:PORT or mqtts://HOST:PORT"
        + (", or amqp://NODE[,amqp://NODE...] (RabbitMQ)" if amqp else ""),
    )
    # the TLS options are spelt as tcu spells them; --cafile/--certfile/--keyfile still work
    for name, alias, text in (
        ("--ca", "--cafile", "CA certificate to trust (mqtts)"),
        ("--cert", "--certfile", "client certificate (mqtts)"),
        ("--key", "--keyfile", "client certificate's key (mqtts)"),
    ):
        parser.add_argument(name, dest=alias[2:], help=text)
        parser.add_argument(alias, dest=alias[2:], help=argparse.SUPPRESS)


def _db_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--db",
        metavar="URL",
        help="the store: postgresql://USER@HOST:PORT/DB (default: DIR/store.sqlite)",
    )


def _checked_db(args: argparse.Namespace) -> str | None:
    db: str | None = args.db
    if db is not None and not db.startswith(("postgresql://", "postgres://")):
        raise CloudError(f"--db {db!r} must be a postgresql:// URL")
    return db


def _tls(args: argparse.Namespace) -> TlsFiles | None:
    if not (args.cafile or args.certfile or args.keyfile):
        return None
    if not str(args.broker or "").startswith("mqtts://"):
        raise CloudError("--ca/--cert/--key need an mqtts:// broker")
    return TlsFiles(cafile=args.cafile, certfile=args.certfile, keyfile=args.keyfile)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="cloud-stub",
        description="The stub fleet backend: ingest signed telemetry, acknowledge it, send"
        " signed commands. Files live in --data DIR (default ./cloud-stub-data).",
    )
    parser.add_argument("--version", action="version", version=f"cloud-stub {__version__}")
    sub: Any = parser.add_subparsers(
        dest="command", required=True, metavar="SUBCOMMAND", parser_class=Parser
    )
    common = _common()

    serve = sub.add_parser("serve", parents=[common], help="run the backend until SIGINT/SIGTERM")
    _broker_options(serve, required=False, amqp=True)
    serve.add_argument(
        "--port",
        type=validate.port,
        default=1883,
        help="without --broker: port of the embedded broker on 127.0.0.1 (%(default)s)",
    )
    serve.add_argument(
        "--http", metavar="HOST:PORT", help="serve the fleet portal (API and dashboard) here"
    )
    serve.add_argument(
        "--workers",
        type=int,
        default=0,
        metavar="K",
        help="K ingest processes: MQTT 5 shared subscriptions on --broker mqtt://, or competing"
        " consumers on --broker amqp://NODE[,amqp://NODE...] (RabbitMQ); default: one, in process",
    )
    _db_option(serve)
    serve.set_defaults(handler=_serve)

    register = sub.add_parser("register", parents=[common], help="register a vehicle's key")
    register.add_argument("vin")
    register.add_argument("public_key", type=Path, help="the vehicle's public key (PEM file)")
    register.add_argument("--kid", help="key id in hex (default: derived from the key)")
    register.set_defaults(handler=_register)

    for name, help_text in (
        ("activate", "mark the service active (and send the command with --broker)"),
        ("deactivate", "mark the service inactive (and send the command with --broker)"),
    ):
        flag = sub.add_parser(name, parents=[common], help=help_text)
        flag.add_argument("vin")
        _broker_options(flag, required=False)
        flag.set_defaults(handler=_set_service, active=name == "activate")

    command = sub.add_parser("command", parents=[common], help="send a signed remote command")
    command.add_argument("vin")
    command.add_argument("name")
    command.add_argument("argument", nargs="?")
    _broker_options(command, required=True)
    command.set_defaults(handler=_command)

    stats = sub.add_parser("stats", parents=[common], help="print stored figures and counters")
    _db_option(stats)
    stats.set_defaults(handler=_stats)

    public = sub.add_parser("public-key", parents=[common], help="print the backend public key")
    public.set_defaults(handler=_public_key)
    _pki_parser(sub, common)
    portal_cli.register(sub, common, broker_options=_portal_broker, send=_portal_send)
    return parser


# --- the fleet portal (cloud_stub.portal) --------------------------------------------------


def _portal_broker(parser: argparse.ArgumentParser) -> None:
    _broker_options(parser, required=False)


def _portal_send(args: argparse.Namespace, registry: Registry, vin: str, name: str) -> str:
    tls = _tls(args)
    parse_broker_url(args.broker)
    return _send(args, registry, name, None, tls, vin=vin)


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # --help, --version, or a value argparse refused (exit 2)
        return exc.code if isinstance(exc.code, int) else 0 if exc.code is None else 2
    handler: Handler = args.handler
    try:
        return handler(args)
    except (CloudError, TcuError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


# --- subcommands -------------------------------------------------------------------------


def _serve(args: argparse.Namespace) -> int:
    logging.basicConfig(
        level=logging.WARNING, format="%(asctime)s %(name)s %(levelname)s %(message)s"
    )
    quiet = logging.ERROR if args.quiet else logging.WARNING
    logging.getLogger("cloud_stub").setLevel(logging.INFO if args.verbose else quiet)
    # amqtt warns about every client that tries MQTT 5 first (a TCU does): -v shows them
    logging.getLogger("amqtt").setLevel(logging.WARNING if args.verbose else logging.ERROR)
    if args.http is not None:
        parse_http(args.http)  # a mistake is reported before anything starts
    asyncio.run(_serve_async(args))
    return 0


def _announce_fd_limit() -> None:
    before, after = raise_fd_limit()
    if after != before:
        print(f"cloud-stub: open files soft limit raised from {before} to {after}", flush=True)


async def _serve_async(args: argparse.Namespace) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    db = _checked_db(args)
    _announce_fd_limit()
    if args.workers < 0:
        raise CloudError(f"--workers {args.workers} must be at least 1")
    if args.workers or str(args.broker or "").startswith("amqp://"):
        await _serve_workers(args, db, stop)
        return
    for stale in args.data.glob("stats.worker-*.json"):
        stale.unlink()  # a pool's counters, not this backend's
    async with contextlib.AsyncExitStack() as stack:
        url = args.broker
        if url is None:
            embedded = await stack.enter_async_context(
                EmbeddedBroker(host=LOOPBACK, port=args.port)
            )
            url = embedded.url
        backend = Backend(url, args.data, prefix=args.prefix, tls=_tls(args), store=db)
        await stack.enter_async_context(backend)
        gc.freeze()  # start-up objects out of the collector's full passes (docs/backend.md)
        print(
            f"cloud-stub: serving {backend.address.url}, data {args.data},"
            f" backend kid {backend.backend_key.kid.hex()}",
            flush=True,
        )
        if args.http is not None:
            host, port = parse_http(args.http)
            portal = await stack.enter_async_context(
                PortalServer(args.data, host, port, sender=backend)
            )
            print(f"cloud-stub: fleet portal on {portal.url}", flush=True)
        await stop.wait()
        print(f"cloud-stub: stopping; {json.dumps(backend.stats().as_dict())}", flush=True)


async def _serve_workers(args: argparse.Namespace, db: str | None, stop: asyncio.Event) -> None:
    broker = args.broker
    if broker is None:
        raise CloudError(
            "--workers needs --broker: an MQTT 5 broker (mqtt://, e.g. Mosquitto)"
            " or RabbitMQ nodes (amqp://...)"
        )
    if broker.startswith("amqp://"):
        parse_amqp_urls(broker)
        if args.cafile or args.certfile or args.keyfile:
            raise CloudError("--cafile/--certfile/--keyfile need an mqtts:// broker")
    else:
        parse_broker_url(broker)
    tls = _tls(args)
    load_backend_key(args.data)  # made once here, not raced by K processes
    Registry(args.data / REGISTRY_FILE).close()
    open_store(db or args.data / STORE_FILE).close()
    configs = [
        WorkerConfig(
            broker=broker,
            data_dir=str(args.data),
            prefix=args.prefix,
            store=db,
            index=index,
            cafile=tls.cafile if tls else None,
            certfile=tls.certfile if tls else None,
            keyfile=tls.keyfile if tls else None,
        )
        for index in range(max(args.workers, 1))
    ]
    previous = previous_pool(args.data)
    if previous is not None and previous[0] == broker and not broker.startswith("amqp://"):
        gone = [worker_client_id(i) for i in range(len(configs), previous[1])]
        if gone:
            await end_sessions(broker, gone, tls=tls)
            print(f"cloud-stub: ended the sessions of {', '.join(gone)}", flush=True)
    write_json_atomic(args.data / POOL_FILE, {"broker": broker, "workers": len(configs)})
    pool = WorkerPool(configs)
    pool.start()
    try:
        await pool.wait_ready(timeout=60)
        print(
            f"cloud-stub: serving {broker} with {len(configs)} workers, data {args.data},"
            f" store {db or args.data / STORE_FILE}",
            flush=True,
        )
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=0.5)
            pool.check()
    finally:
        pool.stop()
    stats = merged_stats(args.data) or {}
    stats["restarts"] = pool.restarts
    print(f"cloud-stub: stopping; {json.dumps(stats)}", flush=True)


def _register(args: argparse.Namespace) -> int:
    try:
        with args.public_key.open("rb") as file:
            pem = file.read(MAX_PEM_FILE + 1)
    except OSError as exc:
        raise CloudError(f"cannot read {args.public_key}: {exc.strerror}") from None
    if len(pem) > MAX_PEM_FILE:
        raise CloudError(f"{args.public_key} is larger than {MAX_PEM_FILE} bytes")
    if args.kid is None:
        kid = key_id(public_key_from_pem(pem))
    else:
        try:
            kid = bytes.fromhex(args.kid)
        except ValueError:
            raise CloudError(f"--kid {args.kid!r} is not hex") from None
    with Registry(args.data / REGISTRY_FILE) as registry:
        vehicle = registry.register(args.vin, pem, kid)
    print(f"{vehicle.vin}: registered, kid {vehicle.kid.hex()}, active {vehicle.active}")
    return 0


def _set_service(args: argparse.Namespace) -> int:
    tls = _tls(args)
    if args.broker is not None:
        parse_broker_url(args.broker)
    with Registry(args.data / REGISTRY_FILE) as registry:
        if args.active:
            registry.activate(args.vin)
        else:
            registry.deactivate(args.vin)
        state = "active" if args.active else "inactive"
        if args.broker is None:
            print(f"{args.vin}: {state} (registry only; give --broker to tell the vehicle)")
            return 0
        name = "activate" if args.active else "deactivate"
        sent = _send(args, registry, name, None, tls)
    print(f"{args.vin}: {state}; {name} {sent}")
    return 0


def _command(args: argparse.Namespace) -> int:
    tls = _tls(args)
    parse_broker_url(args.broker)
    with Registry(args.data / REGISTRY_FILE) as registry:
        sent = _send(args, registry, args.name, args.argument, tls)
    print(f"{args.vin}: {args.name} {sent}")
    return 0


def _send(
    args: argparse.Namespace,
    registry: Registry,
    name: str,
    argument: str | None,
    tls: TlsFiles | None,
    *,
    vin: str | None = None,
) -> str:
    """Sign the command and hand it to the mailbox; say whether it left or waits."""
    vin = args.vin if vin is None else vin
    builder = CommandBuilder(registry, load_backend_key(args.data), prefix=args.prefix)
    now = time.time()
    signed = builder.build(vin, name, argument, now_epoch=now)
    downlink = signed.downlink
    with Mailbox(args.data / MAILBOX_FILE) as mailbox:
        messages = mailbox.post(signed, now=now)
        heard = mailbox.is_heard(vin)
    if messages:
        asyncio.run(publish_once(args.broker, messages, tls=tls))
    done = f"{downlink.command_id} (counter {downlink.counter})"
    if heard:
        return f"{done} sent"
    return (
        f"{done} waits for the vehicle, which has not connected yet,"
        f" until {_utc(downlink.expires_at)}"
    )


def _utc(epoch: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(epoch))


def _stats(args: argparse.Namespace) -> int:
    if not args.data.is_dir():
        raise CloudError(
            f"--data {args.data}: no such directory (cloud-stub serve, register or"
            " tcu provision --backend-data create it)"
        )
    report: dict[str, Any] = {}
    with Registry(args.data / REGISTRY_FILE) as registry:
        report["vehicles"] = [
            {
                "vin": v.vin,
                "kid": v.kid.hex(),
                "active": v.active,
                "downlink_counter": v.downlink_counter,
            }
            for v in registry.vehicles()
        ]
    with open_store(_checked_db(args) or args.data / STORE_FILE) as store:
        report["progress"] = [
            {
                "vin": p.vin,
                "epoch": p.epoch,
                "stored": p.stored,
                "acked": p.acked,
                "duplicates": p.duplicates,
                "conflicts": p.conflicts,
            }
            for p in store.progress()
        ]
        report["drops"] = {v["vin"]: store.drops(v["vin"]) for v in report["vehicles"]}
        report["downlink_refusals"] = {
            v["vin"]: [
                {"reason": r.reason, "t_ms": r.t_ms, "claimed_command_id": r.command_id}
                for r in store.downlink_refusals(v["vin"])
            ]
            for v in report["vehicles"]
        }
    with Mailbox(args.data / MAILBOX_FILE) as mailbox:
        report["downlinks"] = {
            v["vin"]: [
                {"command_id": d.command_id, "name": d.name, "state": d.state}
                for d in mailbox.pending(v["vin"])
            ]
            for v in report["vehicles"]
        }
    report["ingest"] = merged_stats(args.data) or read_stats(args.data)
    print(json.dumps(report, indent=2))
    return 0


def _public_key(args: argparse.Namespace) -> int:
    sys.stdout.write(backend_public_key_pem(args.data).decode("ascii"))
    return 0


# --- the fleet CA ------------------------------------------------------------------------


def _pki_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    pki = sub.add_parser("pki", help="the fleet CA: broker identities, revocation, CRL")
    actions = pki.add_subparsers(dest="pki_action", required=True, metavar="ACTION")
    init = actions.add_parser(
        "init", parents=[common], help="make the CA, the broker's and the backend's certificates"
    )
    init.add_argument(
        "--days", type=float, default=365, help="validity of the two certificates (%(default)s)"
    )
    init.set_defaults(handler=_pki_init)
    listing = actions.add_parser("list", parents=[common], help="every certificate issued")
    listing.set_defaults(handler=_pki_list)
    revoke = actions.add_parser(
        "revoke", parents=[common], help="revoke a VIN's certificates (or one serial)"
    )
    revoke.add_argument("cn", nargs="?", help="the VIN (or CN) whose certificates to revoke")
    revoke.add_argument("--serial", help="revoke only the certificate with this serial (hex)")
    revoke.set_defaults(handler=_pki_revoke)
    crl = actions.add_parser("crl", parents=[common], help="sign the CRL again (new nextUpdate)")
    crl.set_defaults(handler=_pki_crl)


def _pki_init(args: argparse.Namespace) -> int:
    ca = FleetCA(args.data)
    backend = ca.issue_backend(days=args.days)
    listener = ca.issue_broker(days=args.days)
    print(f"fleet CA {ca.cert_path} (key {ca.key_path}, mode 0600)")
    print(f"backend certificate and key {backend} (mode 0600): cloud-stub serve --broker")
    print(
        f"  mqtts://127.0.0.1:8883 --cafile {ca.cert_path} --certfile {backend} --keyfile {backend}"
    )
    cli = backend.with_name("cli.pem")
    print(f"command-line tools (command, activate, deactivate): --certfile {cli} --keyfile {cli}")
    print("Mosquitto: cloud_stub/mosquitto.conf, then 'listener 8883 127.0.0.1', then")
    print(f"cloud_stub/mosquitto-tls.conf, then:\n  acl_file {MOSQUITTO_ACL}")
    for name, path in (
        ("crlfile", listener.crlfile),
        ("cafile", listener.cafile),
        ("certfile", listener.certfile),
        ("keyfile", listener.keyfile),
    ):
        print(f"  {name} {Path(str(path)).resolve()}")
    return 0


def _pki_list(args: argparse.Namespace) -> int:
    print(json.dumps([i.as_dict() for i in FleetCA(args.data).issued()], indent=2))
    return 0


def _pki_revoke(args: argparse.Namespace) -> int:
    serial = None
    if args.serial is not None:
        try:
            serial = int(args.serial, 16)
        except ValueError:
            raise CloudError(f"--serial {args.serial!r} is not hex") from None
    if (args.cn is None) == (serial is None):
        raise CloudError("revoke takes a VIN (or CN) or --serial, one of the two")
    revoked = FleetCA(args.data).revoke(cn=args.cn, serial=serial)
    for item in revoked:
        print(f"revoked {item.cn} serial {item.serial:x}")
    print("the broker reads the new CRL on SIGHUP (kill -HUP <mosquitto pid>) or restart")
    return 0


def _pki_crl(args: argparse.Namespace) -> int:
    print(f"{FleetCA(args.data).refresh_crl()}: signed again; send the broker SIGHUP")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
