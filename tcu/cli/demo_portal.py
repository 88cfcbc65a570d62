"""``tcu demo`` with the fleet portal: the replay's backend served as a web portal.

The portal (``cloud_stub.portal``) opens on the in-process backend's data directory once the
van is provisioned; the demo account holds the van with every service. The URL and the demo
login are printed (to standard error with ``--json``). At a terminal the portal stays up
after the summary until Ctrl-C; otherwise it stops with the replay.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from collections.abc import Callable
from typing import Any

from tcu.compose.online import OnlineOptions, OnlineReplay, OnlineReport
from tcu.errors import ConfigError


def interactive(args: argparse.Namespace) -> bool:
    """Keep the portal up after the summary only for a person at a terminal."""
    return not args.json and sys.stdin.isatty() and sys.stdout.isatty()


async def with_portal(
    opts: OnlineOptions,
    say: Callable[[str], None],
    show: Callable[[OnlineReport], None],
    http: str,
    stay: bool,
    *,
    quiet: bool,
) -> OnlineReport:
    """The replay with the fleet portal served beside its backend (cloud_stub.portal)."""
    from cloud_stub.errors import CloudError
    from cloud_stub.portal.demo import DEMO_EMAIL, DEMO_PASSWORD, DemoPortal
    from cloud_stub.portal.server import parse_http

    try:
        portal = DemoPortal(*parse_http(http))
    except CloudError as exc:
        raise ConfigError(str(exc)) from None

    async def attach(backend: Any, vin: str) -> None:
        try:
            url = await portal.attach(backend, vin)
        except CloudError as exc:
            raise ConfigError(f"fleet portal: {exc}") from None
        login = f"fleet portal: {url} (log in as {DEMO_EMAIL}, password {DEMO_PASSWORD})"
        print(login, file=sys.stderr if quiet else sys.stdout, flush=True)

    async def linger(report: OnlineReport) -> None:
        show(report)
        if stay:
            print("the fleet portal stays up; Ctrl-C to stop", flush=True)
            stop = asyncio.Event()
            for signum in (signal.SIGINT, signal.SIGTERM):
                asyncio.get_running_loop().add_signal_handler(signum, stop.set)
            await stop.wait()

    try:
        return await OnlineReplay(opts, say=say, on_backend=attach, linger=linger).run()
    finally:
        await portal.stop()
