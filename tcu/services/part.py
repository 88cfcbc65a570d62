"""The services part of the core: commands, signal changes and timers -> verdicts, sessions, frames.

Theory of operation. ``ServicesPart`` plugs into ``TcuCore`` through the ``Part``
protocol and puts three services together over one ``Ledger`` (the van's state and the
record of verdicts and sessions): ``ChargingPart``, ``PreconditioningPart`` (with the
departure time) and ``LockPart``. Each owns at most one table-driven ``Session`` at a
time. Commands go to the service that takes them; a signal change goes to each service
that watches it, in a fixed order (the departure echo, the lock status, charging,
preconditioning); timers are the services' own.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

import can

from tcu.events import Action, Command
from tcu.services.charging import COMPLETION_SIGNALS, ChargingPart
from tcu.services.config import VehicleConfig, parse_hhmm
from tcu.services.ledger import Ledger, RequestFrame
from tcu.services.lock import LockPart
from tcu.services.preconditioning import PreconditioningPart
from tcu.services.rules import CHARGING_SIGNALS, PRECONDITIONING_SIGNALS
from tcu.services.sessions import Session, Transition
from tcu.services.verdicts import Verdict
from tcu.vehicle.catalogue import DEPARTURE_TIME, LOCKED
from tcu.vehicle.state import VehicleState

__all__ = ["RequestFrame", "ServicesPart", "encoder_requests"]

WATCHED = frozenset(
    CHARGING_SIGNALS | PRECONDITIONING_SIGNALS | COMPLETION_SIGNALS | {LOCKED, DEPARTURE_TIME}
)


class ServicesPart:
    """Charging, climate preconditioning and remote lock/unlock for one van."""

    def __init__(
        self, state: VehicleState, config: VehicleConfig, request_frame: RequestFrame
    ) -> None:
        self.ledger = Ledger(state, config, request_frame)
        self.charging_part = ChargingPart(self.ledger)
        self.preconditioning_part = PreconditioningPart(self.ledger)
        self.lock_part = LockPart(self.ledger)
        pre, charging, lock = self.preconditioning_part, self.charging_part, self.lock_part
        self._handlers: dict[str, Callable[[Command, float], list[Action]]] = {
            "start_charging": charging.start_charging,
            "stop_charging": charging.stop_charging,
            "start_preconditioning": pre.start_preconditioning,
            "stop_preconditioning": pre.stop_preconditioning,
            "set_departure": pre.set_departure,
            "lock": lock.lock_or_unlock,
            "unlock": lock.lock_or_unlock,
        }

    @property
    def verdicts(self) -> list[Verdict]:
        return self.ledger.verdicts

    @property
    def transitions(self) -> list[Transition]:
        return self.ledger.transitions

    @property
    def charging(self) -> Session | None:
        return self.charging_part.charging

    @property
    def preconditioning(self) -> Session | None:
        return self.preconditioning_part.preconditioning

    @property
    def lock(self) -> Session | None:
        return self.lock_part.lock

    # -- the Part protocol ----------------------------------------------------------------

    def on_event(self, event: Any, now: float) -> list[Action] | None:
        handler = self._handlers.get(event.name) if isinstance(event, Command) else None
        return None if handler is None else handler(event, now)

    def on_signals(self, changed: list[str], now: float) -> list[Action]:
        if not any(p in WATCHED for p in changed):
            return []
        cs = frozenset(changed)
        out: list[Action] = []
        if DEPARTURE_TIME in cs:
            out += self.preconditioning_part.departure_echo(now)
        out += self.lock_part.on_signals(cs, now)
        out += self.charging_part.on_signals(cs, now)
        out += self.preconditioning_part.on_signals(cs, now)
        return out

    def on_tick(self, now: float) -> list[Action]:
        return self.preconditioning_part.on_tick(now) + self.lock_part.on_tick(now)

    def next_deadline(self) -> float:
        return min(self.preconditioning_part.next_deadline(), self.lock_part.next_deadline())

    # -- the report ---------------------------------------------------------------------

    def contribute(self, report: Any, now: float) -> None:
        """Add the verdicts and session transitions to a replay report (duck-typed)."""
        report.extra["verdicts"] = [v.as_dict() for v in self.verdicts]
        report.extra["sessions"] = [t.as_dict() for t in self.transitions]
        report.sections.append(render(self.verdicts, self.transitions))


def render(verdicts: list[Verdict], transitions: list[Transition]) -> str:
    """The verdicts and session transitions as the replay summary shows them."""
    lines = ["Services", "", "  Verdicts"]
    if not verdicts:
        lines.append("    (none)")
    else:
        lines.append(f"    {'t [s]':>10}  {'service':<15}  {'outcome':<21}  reasons / warnings")
        for v in verdicts:
            codes = ", ".join(v.codes) or "-"
            if v.warnings:
                codes += " / " + ", ".join(v.warning_codes)
            lines.append(f"    {v.t:>10.3f}  {v.service:<15}  {v.outcome:<21}  {codes}")
    lines += ["", "  Session transitions"]
    if not transitions:
        lines.append("    (none)")
    else:
        lines.append(f"    {'t [s]':>10}  {'session':<18}  {'transition':<28}  reason")
        for t in transitions:
            move = f"{t.from_state} -> {t.to_state}"
            lines.append(f"    {t.t:>10.3f}  {t.session_id:<18}  {move:<28}  {t.reason or '-'}")
    return "\n".join(lines)


def encoder_requests(encode_request: Callable[[str, float, int], can.Message]) -> RequestFrame:
    """Adapt an ``encode_request(name, argument, counter)`` (the reference van's encoder).

    An ``HH:MM`` argument becomes minutes after midnight, no argument 0; every request
    carries the next value of a rolling counter (the encoder wraps it to the signal).
    """
    counter = itertools.count()

    def request(name: str, argument: str | None) -> can.Message:
        value = float(parse_hhmm(argument)) if argument is not None else 0.0
        return encode_request(name, value, next(counter))

    return request
