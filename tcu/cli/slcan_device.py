"""``tcu slcan-device``: a software LAWICEL/slcan adapter on a pseudo-terminal."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from dataclasses import fields
from types import FrameType
from typing import Any

import can

from tcu.bench.slcan_device import SlcanDevice
from tcu.errors import BusError


def register(sub: Any) -> None:
    p = sub.add_parser(
        "slcan-device",
        help="serve a software slcan USB-CAN adapter on a pty, bridged to a python-can bus",
    )
    add_arguments(p)
    p.set_defaults(func=run)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-i", "--bus-interface", default="virtual", help="python-can interface to bridge to"
    )
    parser.add_argument("-c", "--bus-channel", default="bench", help="channel of that interface")
    parser.add_argument("-b", "--bus-bitrate", type=int, help="bitrate of that bus, if any")
    parser.add_argument("--link", help="keep a symlink to the current pty at this path")
    parser.add_argument("--serial-number", default="TCU0", help="answer to N (4 letters/digits)")


def run(args: argparse.Namespace) -> int:
    options = {} if args.bus_bitrate is None else {"bitrate": args.bus_bitrate}
    where = f"{args.bus_interface}:{args.bus_channel}"
    try:
        bus = can.Bus(interface=args.bus_interface, channel=args.bus_channel, **options)
    except (can.CanError, ValueError, ImportError, OSError) as exc:
        raise BusError(f"cannot open bus {where}: {exc}") from None
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        try:
            device = SlcanDevice(bus, serial_number=args.serial_number, link=args.link)
        except ValueError as exc:
            raise BusError(str(exc)) from None
        with device:
            print(device.port, flush=True)
            print(f"slcan adapter bridged to {where}; Ctrl-C to stop", file=sys.stderr)
            while not stop.wait(0.5):
                pass
        counts = device.counters()
        summary = ", ".join(f"{f.name}={getattr(counts, f.name)}" for f in fields(counts))
        print(f"stopped: {summary}", file=sys.stderr)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        bus.shutdown()
    return 0
