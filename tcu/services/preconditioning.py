"""Climate preconditioning and the departure time.

Theory of operation. A session is scheduled for the departure (the van's
``DepartureTime``, or a ``set_departure`` value until the van echoes it; an echo of a
different value means the van took another value, which then wins). It becomes active at
departure minus the lead time, when the rule's verdict is evaluated, and is done at
departure. Climate enabled, a departure set and the plug in schedule it automatically.
While scheduled, switching the climate off ends it and a new departure re-plans it; while
active, a refused precondition aborts it and the TCU sends the stop request.
"""

from __future__ import annotations

import math

from tcu.events import Action, Command, Log
from tcu.services.config import format_hhmm, next_departure_t, parse_hhmm
from tcu.services.ledger import INF, Ledger, already, finite, must, running
from tcu.services.rules import (
    PLUG_SIGNALS,
    PRECONDITIONING_SIGNALS,
    departure_minutes,
    preconditioning_verdict,
)
from tcu.services.sessions import VERDICT_EVENTS, Session
from tcu.services.verdicts import Reason, Verdict, decide
from tcu.vehicle.catalogue import (
    DEPARTURE_TIME,
    PRECOND_ENABLED,
)

AUTO_PRECONDITIONING_SIGNALS = PLUG_SIGNALS | {PRECOND_ENABLED, DEPARTURE_TIME}


class PreconditioningPart:
    """The preconditioning service and the departure time of one van."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger
        self.preconditioning: Session | None = None
        self._precond_ready = False
        self._precond_departure: float | None = None
        self._start_t = INF
        self._departure_t = INF

    def on_signals(self, cs: frozenset[str], now: float) -> list[Action]:
        return self._preconditioning_signals(cs, now)

    def on_tick(self, now: float) -> list[Action]:
        out: list[Action] = []
        if running(self.preconditioning, "scheduled") and now >= self._start_t:
            out += self._activate(now)
        if running(self.preconditioning, "active") and now >= self._departure_t:
            self._departure_t = INF
            reason = Reason(
                code="departure_reached", message="The planned departure time was reached."
            )
            out += self.ledger.move(must(self.preconditioning), "departure", now, (reason,))
        return out

    def next_deadline(self) -> float:
        if running(self.preconditioning, "scheduled"):
            return self._start_t
        if running(self.preconditioning, "active"):
            return self._departure_t
        return INF

    def _preconditioning_verdict(self, now: float) -> Verdict:
        return preconditioning_verdict(
            self.ledger.state,
            now,
            self.ledger.config,
            commanded_departure=self.ledger.commanded_departure,
        )

    def start_preconditioning(self, cmd: Command, now: float) -> list[Action]:
        if running(self.preconditioning, "scheduled", "active"):
            verdict = decide(now, "preconditioning", (), (), (already("preconditioning"),))
            return [
                *self.ledger.verdict(verdict, None),
                self.ledger.result(cmd, now, "not_needed", verdict=verdict),
            ]
        out, status, decided = self._schedule("command", now)
        out.append(
            self.ledger.result(
                cmd,
                now,
                status,
                self.preconditioning,
                decided,
                start_t=finite(self._start_t),
                departure_t=finite(self._departure_t),
            )
        )
        return out

    def _schedule(self, trigger: str, now: float) -> tuple[list[Action], str, Verdict | None]:
        """Open a session; refuse at once when it cannot even be scheduled."""
        session = self.preconditioning = self.ledger.new_session("preconditioning")
        out = self.ledger.move(session, trigger, now)
        departure, _ = departure_minutes(self.ledger.state, now, self.ledger.commanded_departure)
        if departure is None or self.ledger.state.get(PRECOND_ENABLED, now) is not True:
            verdict = self._preconditioning_verdict(now)
            out += self._conclude(session, verdict, now)
            return out, verdict.outcome, verdict
        self._plan(departure, now)
        if self._start_t <= now:
            out += self._activate(now)
            return out, must(self.preconditioning).state, self.ledger.verdicts[-1]
        out.append(
            Log(
                level="info",
                text=(
                    f"{session.session_id}: preconditioning from t={self._start_t:.0f}s "
                    f"for the departure at {format_hhmm(departure)} UTC "
                    f"(t={self._departure_t:.0f}s)"
                ),
            )
        )
        return out, "scheduled", None

    def _plan(self, departure: float, now: float) -> None:
        self._departure_t = next_departure_t(departure, now, self.ledger.config.origin_epoch)
        self._start_t = self._departure_t - self.ledger.config.preconditioning_lead_s

    def _activate(self, now: float) -> list[Action]:
        self._start_t = INF
        return self._conclude(must(self.preconditioning), self._preconditioning_verdict(now), now)

    def _conclude(self, session: Session, verdict: Verdict, now: float) -> list[Action]:
        out = self.ledger.verdict(verdict, session)
        out += self.ledger.move(session, VERDICT_EVENTS[verdict.outcome], now, verdict.reasons)
        if verdict.goes_ahead:
            sent, ok = self.ledger.send("start_preconditioning", None, now)
            out += sent
            if not ok:
                reason = self.ledger.send_failed("start_preconditioning")
                out.append(
                    self.ledger.alarm(
                        now, "preconditioning", "request_not_sent", session, (reason,)
                    )
                )
        else:
            self._departure_t = INF
        return out

    def stop_preconditioning(self, cmd: Command, now: float) -> list[Action]:
        session = self.preconditioning
        reason = Reason(code="stop_requested", message="A stop_preconditioning command ended it.")
        out: list[Action] = []
        if running(session, "scheduled"):
            self._start_t = self._departure_t = INF
            out += self.ledger.move(must(session), "stop", now, (reason,))
            out.append(self.ledger.result(cmd, now, "cancelled", session))
            return out
        out, _ = self.ledger.send("stop_preconditioning", None, now)
        if running(session, "active"):
            self._departure_t = INF
            out += self.ledger.move(must(session), "stop", now, (reason,))
            out.append(self.ledger.result(cmd, now, "cancelled", session))
        else:
            out.append(self.ledger.result(cmd, now, "no_session"))
        return out

    def _preconditioning_signals(self, cs: frozenset[str], now: float) -> list[Action]:
        session = self.preconditioning
        was_running = running(session, "scheduled", "active")
        out: list[Action] = []
        if running(session, "scheduled"):
            if PRECOND_ENABLED in cs and self.ledger.state.get(PRECOND_ENABLED, now) is False:
                self._start_t = self._departure_t = INF
                reason = Reason(
                    code="preconditioning_disabled",
                    message="Climate preconditioning was switched off in the van.",
                    values={PRECOND_ENABLED: False},
                )
                out += self.ledger.move(must(session), "disable", now, (reason,))
            elif DEPARTURE_TIME in cs:
                out += self._replan(now)
        elif running(session, "active") and not cs.isdisjoint(PRECONDITIONING_SIGNALS):
            verdict = self._preconditioning_verdict(now)
            if verdict.outcome == "refused":
                self._departure_t = INF
                out += self.ledger.move(must(session), "abort", now, verdict.reasons)
                out.append(
                    self.ledger.alarm(now, "preconditioning", "aborted", session, verdict.reasons)
                )
                out += self.ledger.send("stop_preconditioning", None, now)[0]
            elif DEPARTURE_TIME in cs:
                out += self._replan(now)
        if not cs.isdisjoint(AUTO_PRECONDITIONING_SIGNALS):
            out += self._auto_preconditioning(now, allowed=not was_running)
        return out

    def _auto_preconditioning(self, now: float, *, allowed: bool = True) -> list[Action]:
        """Track 'enabled + departure set + plugged'; schedule when it starts to hold."""
        departure, _ = departure_minutes(self.ledger.state, now, self.ledger.commanded_departure)
        ready = (
            departure is not None
            and self.ledger.state.get(PRECOND_ENABLED, now) is True
            and self.ledger.is_plugged(now)
        )
        fresh = ready and (not self._precond_ready or departure != self._precond_departure)
        self._precond_ready = ready
        self._precond_departure = departure
        if not fresh or not allowed or running(self.preconditioning, "scheduled", "active"):
            return []
        return self._schedule("auto", now)[0]

    def _replan(self, now: float) -> list[Action]:
        """The departure changed while a session is scheduled or active."""
        departure, _ = departure_minutes(self.ledger.state, now, self.ledger.commanded_departure)
        if departure is None:
            return []
        self._precond_departure = departure
        session = must(self.preconditioning)
        if session.state == "active":
            self._departure_t = next_departure_t(departure, now, self.ledger.config.origin_epoch)
            return []
        self._plan(departure, now)
        if self._start_t <= now:
            return self._activate(now)
        return []

    def set_departure(self, cmd: Command, now: float) -> list[Action]:
        try:
            minutes = parse_hhmm(cmd.argument or "")
        except ValueError as e:
            return [
                Log(level="warning", text=f"set_departure rejected: {e}"),
                self.ledger.result(cmd, now, "rejected", error=str(e)),
            ]
        hhmm = format_hhmm(minutes)
        out, ok = self.ledger.send("set_departure", hhmm, now)
        if not ok:
            out.append(self.ledger.result(cmd, now, "failed", error="request frame not built"))
            return out
        echoed = self.ledger.state.get(DEPARTURE_TIME, now)
        self.ledger.commanded_departure = None if echoed == minutes else float(minutes)
        out.append(self.ledger.result(cmd, now, "sent", departure=hhmm))
        if running(self.preconditioning, "scheduled", "active"):
            out += self._replan(now)
        else:
            out += self._auto_preconditioning(now)
        return out

    def departure_echo(self, now: float) -> list[Action]:
        commanded = self.ledger.commanded_departure
        if commanded is None:
            return []
        v = self.ledger.state.get(DEPARTURE_TIME, now)
        if not isinstance(v, int | float) or isinstance(v, bool):
            return []
        self.ledger.commanded_departure = None
        if math.isclose(v, commanded, abs_tol=1e-6):
            return [Log(level="info", text=f"the van confirms the departure {format_hhmm(v)} UTC")]
        return [
            Log(
                level="warning",
                text=(
                    f"the van reports the departure {format_hhmm(v)} UTC, not the commanded "
                    f"{format_hhmm(commanded)} UTC; using the van's"
                ),
            )
        ]
