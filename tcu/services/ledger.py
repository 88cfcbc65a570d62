"""What the three services share: the van's state, the record of verdicts and sessions.

Theory of operation. ``Ledger`` is handed to the charging, preconditioning and lock
parts. It keeps every verdict and session transition in order, numbers sessions per
service, and builds the actions the services return: a verdict (with its log line, and an
alarm when refused), a session transition, an alarm, a command result, a request frame
(``request_frame(name, argument)``; a frame that cannot be built is a log line, never an
exception). It also holds the departure a ``set_departure`` command asked for until the
van echoes it, which both charging (is there time?) and preconditioning use.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterator
from typing import Any

import can

from tcu.errors import TcuError
from tcu.events import Action, Command, Emit, Log, SendFrame
from tcu.services.config import VehicleConfig
from tcu.services.sessions import Session, Transition
from tcu.services.verdicts import Reason, Service, Verdict
from tcu.vehicle.catalogue import INFRA_CONNECTED, PLUG_CONNECTED, PLUG_LOCKED
from tcu.vehicle.state import VehicleState

RequestFrame = Callable[[str, str | None], can.Message]
ALARM_PRIORITY = 1
INF = math.inf


class Ledger:
    """The shared state of the services part and the actions every service builds."""

    def __init__(
        self, state: VehicleState, config: VehicleConfig, request_frame: RequestFrame
    ) -> None:
        self.state = state
        self.config = config
        self.request_frame = request_frame
        self.verdicts: list[Verdict] = []
        self.transitions: list[Transition] = []
        self.commanded_departure: float | None = None
        self._ids: dict[Service, Iterator[int]] = {}

    def new_session(self, service: Service) -> Session:
        n = next(self._ids.setdefault(service, itertools.count(1)))
        return Session(service, f"{service}-{n}")

    def move(
        self, session: Session, event: str, now: float, reasons: tuple[Reason, ...] = ()
    ) -> list[Action]:
        tr = session.fire(event, now, reasons)
        self.transitions.append(tr)
        why = f" ({tr.reason})" if tr.reason else ""
        return [
            Emit(kind="session", body=tr.as_dict()),
            Log(
                level="info",
                text=f"{tr.session_id}: {tr.from_state} -> {tr.to_state} on {event}{why}",
            ),
        ]

    def verdict(self, verdict: Verdict, session: Session | None) -> list[Action]:
        self.verdicts.append(verdict)
        out: list[Action] = [Emit(kind="verdict", body=verdict.as_dict())]
        codes = ", ".join((*verdict.codes, *verdict.warning_codes)) or "all preconditions met"
        level = "warning" if verdict.outcome == "refused" else "info"
        out.append(Log(level=level, text=f"{verdict.service} {verdict.outcome}: {codes}"))
        if verdict.outcome == "refused":
            out.append(self.alarm(verdict.t, verdict.service, "refused", session, verdict.reasons))
        return out

    def alarm(
        self,
        now: float,
        service: Service,
        what: str,
        session: Session | None,
        reasons: tuple[Reason, ...],
    ) -> Emit:
        body = {
            "t": now,
            "service": service,
            "event": what,
            "session_id": session.session_id if session is not None else None,
            "reasons": [r.as_dict() for r in reasons],
        }
        return Emit(kind="alarm", body=body, priority=ALARM_PRIORITY)

    def result(
        self,
        cmd: Command,
        now: float,
        status: str,
        session: Session | None = None,
        verdict: Verdict | None = None,
        **extra: Any,
    ) -> Emit:
        body: dict[str, Any] = {
            "t": now,
            "command": cmd.name,
            "command_id": cmd.command_id,
            "source": cmd.source,
            "status": status,
            "session_id": session.session_id if session is not None else None,
            "reasons": list(verdict.codes) if verdict is not None else [],
            "warnings": list(verdict.warning_codes) if verdict is not None else [],
            **extra,
        }
        return Emit(kind="command_result", body=body)

    def send(self, name: str, argument: str | None, now: float) -> tuple[list[Action], bool]:
        try:
            message = self.request_frame(name, argument)
        except (TcuError, ValueError) as e:
            return [Log(level="error", text=f"cannot build the {name} request frame: {e}")], False
        return [SendFrame(message=message)], True

    def send_failed(self, name: str) -> Reason:
        return Reason(
            code="request_not_sent",
            message=f"The {name} request frame could not be built; nothing was sent to the van.",
        )

    def is_plugged(self, now: float) -> bool:
        get = self.state.get
        return (
            get(PLUG_CONNECTED, now) is True
            and get(PLUG_LOCKED, now) is True
            and get(INFRA_CONNECTED, now) is True
        )


def running(session: Session | None, *states: str) -> bool:
    return session is not None and session.state in states


def must(session: Session | None) -> Session:
    if session is None:
        raise AssertionError("no session")
    return session


def finite(t: float) -> float | None:
    return t if math.isfinite(t) else None


def already(service: Service) -> Reason:
    if service == "charging":
        return Reason(code="already_active", message="The van is already charging.")
    return Reason(
        code="already_active", message="Climate preconditioning is already scheduled or running."
    )


def never_received(state: VehicleState, reason: Reason) -> bool:
    if reason.code != "signal_unknown":
        return False
    return any(
        p in state.cells and p not in state.overrides and state.cells[p].source.seen == -math.inf
        for p in reason.values
    )
