"""Sessions: charging, preconditioning and lock/unlock as state machines written as tables.

Theory of operation. A table maps ``{state: {event: next_state}}``. ``Session.fire``
looks the event up in the current state's row; a miss is an illegal transition and
raises ``TransitionError``. Every transition is recorded as a ``Transition`` naming the
session, both states, the event and the reasons (for an interruption: the precondition
that broke; for a refusal: every failing one). A state with an empty row is terminal.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from tcu.errors import TransitionError
from tcu.services.verdicts import SERVICES, Reason, Service

Table = Mapping[str, Mapping[str, str]]

CHARGING_TABLE: Table = {
    "idle": {"command": "requested", "auto": "requested"},
    "requested": {"allowed": "charging", "refused": "refused", "not_needed": "not_needed"},
    "charging": {"complete": "complete", "interrupt": "interrupted", "stop": "stopped"},
    "complete": {},
    "interrupted": {},
    "stopped": {},
    "refused": {},
    "not_needed": {},
}

PRECONDITIONING_TABLE: Table = {
    "idle": {"command": "scheduled", "auto": "scheduled"},
    "scheduled": {
        "allowed": "active",
        "refused": "refused",
        "not_needed": "not_needed",
        "stop": "cancelled",
        "disable": "cancelled",
    },
    "active": {"departure": "done", "abort": "aborted", "stop": "cancelled"},
    "done": {},
    "aborted": {},
    "cancelled": {},
    "refused": {},
    "not_needed": {},
}

LOCK_TABLE: Table = {
    "idle": {"command": "requested"},
    "requested": {"allowed": "sent", "refused": "refused", "not_needed": "not_needed"},
    "sent": {"confirmed": "completed", "timeout": "failed", "send_failed": "failed"},
    "completed": {},
    "failed": {},
    "refused": {},
    "not_needed": {},
}

TABLES: dict[Service, Table] = {
    "charging": CHARGING_TABLE,
    "preconditioning": PRECONDITIONING_TABLE,
    "lock": LOCK_TABLE,
    "unlock": LOCK_TABLE,
}

VERDICT_EVENTS = {
    "allowed": "allowed",
    "allowed_with_warnings": "allowed",
    "refused": "refused",
    "not_needed": "not_needed",
}


def next_state(table: Table, state: str, event: str) -> str:
    """The state ``event`` leads to from ``state``; TransitionError when it is not allowed."""
    try:
        return table[state][event]
    except KeyError:
        allowed = ", ".join(table.get(state, {})) or "none, the state is terminal"
        raise TransitionError(
            f"event {event!r} is not allowed in state {state!r} (allowed: {allowed})"
        ) from None


@dataclass(frozen=True, slots=True, kw_only=True)
class Transition:
    t: float
    service: Service
    session_id: str
    from_state: str
    to_state: str
    event: str
    reasons: tuple[Reason, ...] = ()

    def __post_init__(self) -> None:
        if self.service not in SERVICES:
            raise ValueError(f"unknown service {self.service!r}")
        if next_state(TABLES[self.service], self.from_state, self.event) != self.to_state:
            raise ValueError(
                f"{self.service}: {self.from_state} --{self.event}--> {self.to_state} "
                "is not in the table"
            )

    @property
    def reason(self) -> str | None:
        """The reason codes, comma-separated; None when the transition needs no reason."""
        return ",".join(r.code for r in self.reasons) or None

    def as_dict(self) -> dict[str, Any]:
        return {
            "t": self.t,
            "service": self.service,
            "session_id": self.session_id,
            "from_state": self.from_state,
            "to_state": self.to_state,
            "event": self.event,
            "reason": self.reason,
            "reasons": [r.as_dict() for r in self.reasons],
        }


class Session:
    """One run of a service through its table, from ``idle`` to a terminal state."""

    __slots__ = ("service", "session_id", "state", "table")

    def __init__(self, service: Service, session_id: str) -> None:
        self.service: Service = service
        self.session_id = session_id
        self.table = TABLES[service]
        self.state = "idle"

    @property
    def finished(self) -> bool:
        return not self.table[self.state]

    def fire(self, event: str, t: float, reasons: tuple[Reason, ...] = ()) -> Transition:
        try:
            to = next_state(self.table, self.state, event)
        except TransitionError as e:
            raise TransitionError(f"{self.session_id}: {e}") from None
        transition = Transition(
            t=t,
            service=self.service,
            session_id=self.session_id,
            from_state=self.state,
            to_state=to,
            event=event,
            reasons=reasons,
        )
        self.state = to
        return transition
