"""The SIM link in telemetry: ``link`` records of registration, PLMN, roaming and bytes.

Theory of operation: the link model lives beside the core (in the link proxy), so a driver
reads it and hands the core a `LinkStatus` event now and then (`report_link`). `LinkReporter`,
one of the telemetry policy's inner parts, turns a status into a ``link`` record when the
registration, the network or roaming changed, or when the bytes billed to the service
(carried by roaming networks, FAQ 22) grew by at least ``byte_step``; a status that says
nothing new is taken and dropped. Like every record, a ``link`` record is produced only
while the service is active; the first status after an activation is always recorded.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from tcu.events import Action, Emit
from tcu.link.sim import Link

__all__ = ["LinkReporter", "LinkStatus", "link_status", "report_link"]

BYTE_STEP = 16 * 1024
REPORT_EVERY_S = 1.0


@dataclass(frozen=True, slots=True, kw_only=True)
class LinkStatus:
    """The link as a record reports it."""

    state: str
    plmn: str | None
    operator: str | None
    country: str | None
    roaming: bool
    rat: str
    roaming_bytes: int  # carried by roaming networks: billed to the service
    home_bytes: int  # carried by the home network: the home plan's


def link_status(model: Link, now: float) -> LinkStatus:
    snap = model.snapshot(now)
    billed = model.summary()["bytes_billed"]
    return LinkStatus(
        state=snap.state.value,
        plmn=snap.plmn,
        operator=snap.operator,
        country=snap.country,
        roaming=snap.roaming,
        rat=snap.rat.value,
        roaming_bytes=int(billed["service"]["up"] + billed["service"]["down"]),
        home_bytes=int(billed["home_plan"]["up"] + billed["home_plan"]["down"]),
    )


class LinkReporter:
    """A telemetry part: `LinkStatus` events in, ``link`` records out when they say news."""

    def __init__(
        self, *, recording: Callable[[], bool] = lambda: True, byte_step: int = BYTE_STEP
    ) -> None:
        self.recording = recording  # whether a record would be kept (the service is active)
        self.byte_step = byte_step
        self.last: LinkStatus | None = None

    def on_signals(self, changed: list[str], now: float) -> list[Action]:
        return []

    def on_tick(self, now: float) -> list[Action]:
        return []

    def next_deadline(self) -> float:
        return float("inf")

    def on_event(self, event: Any, now: float) -> list[Action] | None:
        if not isinstance(event, LinkStatus):
            return None
        if not self.recording():
            self.last = None  # nothing recorded: the first status after activation is news
            return []
        last = self.last
        if last is not None and (
            (last.state, last.plmn, last.roaming) == (event.state, event.plmn, event.roaming)
            and event.roaming_bytes - last.roaming_bytes < self.byte_step
        ):
            return []
        self.last = event
        return [Emit(kind="link", body=asdict(event))]


async def report_link(
    model: Link, clock: Callable[[], float], inject: Callable[[Any], object]
) -> None:
    """Hand the core the link's status every `REPORT_EVERY_S` until cancelled."""
    while True:
        inject(link_status(model, clock()))
        await asyncio.sleep(REPORT_EVERY_S)
