"""``tcu vehicle``: the van's ECUs on a CAN bus, answering the TCU's requests."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from types import FrameType
from typing import Any

from tcu import validate
from tcu.bench.vehicle_sim import PROMPT_HELP, SimDriver, VehicleSim, run_prompt
from tcu.can.encoder import FrameEncoder
from tcu.can.setup import load_bus_setup
from tcu.errors import ConfigError
from tcu.output import table
from tcu.runtime.bus import close_bus, open_bus, resolve_bus

FD_INTERFACES = frozenset({"virtual", "udp_multicast"})


def register(sub: Any) -> None:
    p = sub.add_parser(
        "vehicle",
        help="simulate the van's ECUs on a CAN bus (cyclic frames, answers to TCU requests)",
        description=(
            "Plays the van's side of the bus from the DBC: every cyclic message at its cycle "
            "time, from a storyline or from values set at the prompt, and answers the TCU's "
            "request frames as the van would. Prompt commands: set PATH VALUE, release PATH, "
            "show, quit."
        ),
    )
    add_bus_arguments(p)
    p.add_argument("--dbc", help="CAN database (DBC, KCD, ARXML); needs --mapping")
    p.add_argument("--mapping", help="mapping file from DBC signals to the signal catalogue")
    p.add_argument("--storyline", help="play this built-in storyline (default: the van at rest)")
    p.add_argument(
        "--speed", type=validate.speed, default=1.0, help="storyline time per second (1)"
    )
    p.add_argument(
        "--start", type=validate.seconds, default=0.0, help="storyline time to start at (s)"
    )
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="PATH=VALUE",
        help="set a signal before starting (repeatable)",
    )
    p.add_argument("--no-prompt", action="store_true", help="do not read commands from stdin")
    p.set_defaults(func=run)


def add_bus_arguments(p: argparse.ArgumentParser) -> None:
    """python-can's bus options: ``-i/-c/-b``, ``--fd``; the rest from python-can's config."""
    p.add_argument("-i", "--interface", help="python-can interface (slcan, socketcan, ...)")
    p.add_argument("-c", "--channel", help="channel (/dev/ttyACM0, can0, ...)")
    p.add_argument("-b", "--bitrate", type=validate.bitrate, help="bitrate in bit/s")
    p.add_argument("--fd", action="store_true", help="CAN FD bus")


class _Stop(Exception):
    pass


def run(args: argparse.Namespace) -> int:
    spec = resolve_bus(
        interface=args.interface, channel=args.channel, bitrate=args.bitrate, fd=args.fd
    )
    setup = load_bus_setup(args.dbc, args.mapping)
    story = None
    if args.storyline:
        from tcu.storyline import get

        story = get(args.storyline)
    fd = args.fd or spec.interface in FD_INTERFACES
    sim = VehicleSim(
        FrameEncoder(setup.db, setup.mapping),
        storyline=story,
        speed=args.speed,
        start=args.start,
        fd=fd,
    )
    initial: list[tuple[str, str]] = []
    for item in args.set:
        key, eq, value = item.partition("=")
        if not eq or not key or not value:
            raise ConfigError(f"--set {item!r}: expected PATH=VALUE")
        initial.append((key, value))
    bus = open_bus(spec)
    err = sys.stderr
    lock = threading.Lock()

    def report(text: str) -> None:
        with lock:
            print(text, file=err, flush=True)

    def on_signal(signum: int, frame: FrameType | None) -> None:
        raise _Stop

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    driver = SimDriver(sim, bus, on_report=report)
    try:
        try:
            for key, value in initial:
                sim.set_text(key, value, 0.0)
            driver.start()
            where = spec.describe()
            name = story.name if story is not None else "the van at rest"
            report(f"vehicle simulator on {where}: {name}, {len(sim.slots)} cyclic messages")
            for skipped in sim.skipped_fd:
                report(
                    f"note: {skipped} is CAN FD and the bus is not (-i virtual, or --fd): not sent"
                )
            interactive = sys.stdin is not None and sys.stdin.isatty()
            if not args.no_prompt and sys.stdin is not None:
                if interactive:
                    report(PROMPT_HELP)
                quit_asked = run_prompt(driver, sys.stdin, sys.stdout, interactive=interactive)
                if not quit_asked and not interactive:
                    threading.Event().wait()
            else:
                threading.Event().wait()
        except _Stop:
            pass  # Ctrl-C or SIGTERM, at any point after the handlers are in place
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        driver.stop()
        close_bus(bus)
    counts = sim.counters()
    rows = [
        ("frames sent", driver.counts.frames_sent),
        ("send errors", driver.counts.send_errors),
        ("receive errors", driver.counts.recv_errors),
        ("requests answered", sum(counts["requests_done"].values())),
        ("requests ignored", sum(counts["requests_ignored"].values())),
        ("repeated requests", counts["repeated_requests"]),
        ("late slots", counts["late_slots"]),
    ]
    print(table(rows), file=err)
    return 0
