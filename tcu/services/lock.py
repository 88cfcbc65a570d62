"""Remote lock and unlock: a request frame, then the van's lock status confirms it.

Theory of operation. A command is decided by the lock or unlock rule; when it goes ahead
the TCU sends the request and waits ``lock_timeout_s`` for the van's lock status to
confirm it. The session completes on the confirmation and fails (with an alarm) on the
timeout. One request at a time: another while one waits is refused.
"""

from __future__ import annotations

from tcu.events import Action, Command
from tcu.services.ledger import INF, Ledger, must, running
from tcu.services.rules import (
    lock_verdict,
    unlock_verdict,
)
from tcu.services.sessions import VERDICT_EVENTS, Session
from tcu.services.verdicts import Reason, Service, decide
from tcu.vehicle.catalogue import (
    LOCKED,
)


class LockPart:
    """Remote lock and unlock of one van."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger
        self.lock: Session | None = None
        self._lock_deadline = INF
        self._lock_command: Command | None = None

    def on_signals(self, cs: frozenset[str], now: float) -> list[Action]:
        if LOCKED in cs and running(self.lock, "sent"):
            return self._lock_check(now, timed_out=False)
        return []

    def on_tick(self, now: float) -> list[Action]:
        if running(self.lock, "sent") and now >= self._lock_deadline:
            return self._lock_check(now, timed_out=True)
        return []

    def next_deadline(self) -> float:
        return self._lock_deadline if running(self.lock, "sent") else INF

    def lock_or_unlock(self, cmd: Command, now: float) -> list[Action]:
        service: Service = "lock" if cmd.name == "lock" else "unlock"
        pending = running(self.lock, "sent")
        session = self.ledger.new_session(service)
        if pending:
            busy = Reason(
                code="request_in_progress",
                message=(
                    f"{must(self.lock).session_id} is still waiting for the van's lock status."
                ),
            )
            verdict = decide(now, service, (busy,))
        else:
            rule = lock_verdict if service == "lock" else unlock_verdict
            verdict = rule(self.ledger.state, now, self.ledger.config)
            self.lock = session
        out = self.ledger.move(session, "command", now)
        out += self.ledger.verdict(verdict, session)
        out += self.ledger.move(session, VERDICT_EVENTS[verdict.outcome], now, verdict.reasons)
        if not verdict.goes_ahead:
            out.append(self.ledger.result(cmd, now, verdict.outcome, session, verdict))
            return out
        sent, ok = self.ledger.send(service, None, now)
        out += sent
        if not ok:
            reason = self.ledger.send_failed(service)
            out += self.ledger.move(session, "send_failed", now, (reason,))
            out.append(self.ledger.alarm(now, service, "failed", session, (reason,)))
            out.append(self.ledger.result(cmd, now, "failed", session, verdict))
            return out
        self._lock_command = cmd
        self._lock_deadline = now + self.ledger.config.lock_timeout_s
        out.append(
            self.ledger.result(cmd, now, "sent", session, verdict, deadline_t=self._lock_deadline)
        )
        return out

    def _lock_check(self, now: float, *, timed_out: bool) -> list[Action]:
        session = must(self.lock)
        cmd = self._lock_command
        want = session.service == "lock"
        status = self.ledger.state.get(LOCKED, now)
        if status is want:
            reason = Reason(
                code="lock_confirmed",
                message=f"The van reports it is {'locked' if want else 'unlocked'}.",
                values={LOCKED: status},
            )
            event, result = "confirmed", "completed"
        elif timed_out:
            reason = Reason(
                code="not_confirmed",
                message=(
                    f"The van's lock status did not confirm the {session.service} request within "
                    f"{self.ledger.config.lock_timeout_s:g} s."
                ),
                values={LOCKED: status},
            )
            event, result = "timeout", "failed"
        else:
            return []
        self._lock_deadline = INF
        self._lock_command = None
        out = self.ledger.move(session, event, now, (reason,))
        if event == "timeout":
            out.append(self.ledger.alarm(now, session.service, "failed", session, (reason,)))
        if cmd is not None:
            out.append(self.ledger.result(cmd, now, result, session))
        return out
