"""The services part of the core: commands, signal changes and timers -> verdicts, sessions, frames.

Theory of operation. ``ServicesPart`` plugs into ``TcuCore`` through the ``Part``
protocol. It owns at most one charging session, one preconditioning session and one
lock/unlock session at a time, each a table-driven ``Session``.

- Commands (``on_event``) are decided at once by the rules; the verdict is emitted, a
  refused verdict is also an alarm, and an allowed one sends the request frame built by
  ``request_frame(name, argument)``.
- Signal changes (``on_signals``) start sessions automatically, end them, or interrupt
  them. Plugging in (plug connected, locked and connected to the infrastructure) arms
  automatic charging: the first evaluation happens then, and, while no session runs,
  again on every change of a charging precondition (a card tapped, the bonnet closed),
  until charging completes, a stop command arrives or the plug comes out. An automatic
  evaluation waits silently while a needed signal has never been received (the TCU has
  not seen the whole van yet) and does not repeat a refusal with the same reasons.
  A running session re-runs its rule on every change of a precondition; a refusal
  interrupts (charging) or aborts (preconditioning) it with those reasons, and the TCU
  sends the matching stop request.
- Timers (``on_tick``, ``next_deadline``): preconditioning becomes active at departure
  minus the lead time (the verdict is evaluated then) and is done at departure; a
  lock/unlock request fails when the van's lock status has not confirmed it within
  ``lock_timeout_s``.

A ``set_departure`` value is used until the van echoes ``DepartureTime``; an echo of a
different value means the van took another value, which then wins.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterator
from typing import Any

import can

from tcu.errors import TcuError
from tcu.events import Action, Command, Emit, Log, SendFrame
from tcu.services.config import VehicleConfig, format_hhmm, next_departure_t, parse_hhmm
from tcu.services.rules import (
    CHARGING_SIGNALS,
    PLUG_SIGNALS,
    PRECONDITIONING_SIGNALS,
    charging_verdict,
    departure_minutes,
    lock_verdict,
    preconditioning_verdict,
    unlock_verdict,
)
from tcu.services.sessions import VERDICT_EVENTS, Session, Transition
from tcu.services.verdicts import Reason, Service, Verdict, decide
from tcu.vehicle.catalogue import (
    CHARGING_STATUS,
    DEPARTURE_TIME,
    INFRA_CONNECTED,
    LOCKED,
    PLUG_CONNECTED,
    PLUG_LOCKED,
    PRECOND_ENABLED,
    SOC,
)
from tcu.vehicle.state import VehicleState

RequestFrame = Callable[[str, str | None], can.Message]

COMPLETION_SIGNALS = frozenset({SOC, CHARGING_STATUS})
AUTO_PRECONDITIONING_SIGNALS = PLUG_SIGNALS | {PRECOND_ENABLED, DEPARTURE_TIME}
WATCHED = frozenset(
    CHARGING_SIGNALS | PRECONDITIONING_SIGNALS | COMPLETION_SIGNALS | {LOCKED, DEPARTURE_TIME}
)
ALARM_PRIORITY = 1
_INF = math.inf


class ServicesPart:
    """Charging, climate preconditioning and remote lock/unlock for one van."""

    def __init__(
        self, state: VehicleState, config: VehicleConfig, request_frame: RequestFrame
    ) -> None:
        self.state = state
        self.config = config
        self.request_frame = request_frame
        self.verdicts: list[Verdict] = []
        self.transitions: list[Transition] = []
        self.charging: Session | None = None
        self.preconditioning: Session | None = None
        self.lock: Session | None = None
        self.commanded_departure: float | None = None
        self._ids: dict[Service, Iterator[int]] = {}
        self._plugged = False
        self._charge_armed = False
        self._last_auto_codes: tuple[str, ...] | None = None
        self._precond_ready = False
        self._precond_departure: float | None = None
        self._start_t = _INF
        self._departure_t = _INF
        self._lock_deadline = _INF
        self._lock_command: Command | None = None
        self.command_results: list[dict[str, Any]] = []  # every _result body, for reports
        self._handlers: dict[str, Callable[[Command, float], list[Action]]] = {
            "start_charging": self._start_charging,
            "stop_charging": self._stop_charging,
            "start_preconditioning": self._start_preconditioning,
            "stop_preconditioning": self._stop_preconditioning,
            "set_departure": self._set_departure,
            "lock": self._lock_or_unlock,
            "unlock": self._lock_or_unlock,
        }

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
            out += self._departure_echo(now)
        if LOCKED in cs and _running(self.lock, "sent"):
            out += self._lock_check(now, timed_out=False)
        out += self._charging_signals(cs, now)
        out += self._preconditioning_signals(cs, now)
        return out

    def on_tick(self, now: float) -> list[Action]:
        out: list[Action] = []
        if _running(self.preconditioning, "scheduled") and now >= self._start_t:
            out += self._activate(now)
        if _running(self.preconditioning, "active") and now >= self._departure_t:
            self._departure_t = _INF
            reason = Reason(
                code="departure_reached", message="The planned departure time was reached."
            )
            out += self._move(_must(self.preconditioning), "departure", now, (reason,))
        if _running(self.lock, "sent") and now >= self._lock_deadline:
            out += self._lock_check(now, timed_out=True)
        return out

    def next_deadline(self) -> float:
        deadline = _INF
        if _running(self.preconditioning, "scheduled"):
            deadline = self._start_t
        elif _running(self.preconditioning, "active"):
            deadline = self._departure_t
        if _running(self.lock, "sent"):
            deadline = min(deadline, self._lock_deadline)
        return deadline

    # -- the report ---------------------------------------------------------------------

    def contribute(self, report: Any, now: float) -> None:
        """Add the verdicts and session transitions to a replay report (duck-typed)."""
        report.extra["verdicts"] = [v.as_dict() for v in self.verdicts]
        report.extra["sessions"] = [t.as_dict() for t in self.transitions]
        report.sections.append(self.render())

    def render(self) -> str:
        lines = ["Services", "", "  Verdicts"]
        if not self.verdicts:
            lines.append("    (none)")
        else:
            lines.append(f"    {'t [s]':>10}  {'service':<15}  {'outcome':<21}  reasons / warnings")
            for v in self.verdicts:
                codes = ", ".join(v.codes) or "-"
                if v.warnings:
                    codes += " / " + ", ".join(v.warning_codes)
                lines.append(f"    {v.t:>10.3f}  {v.service:<15}  {v.outcome:<21}  {codes}")
        lines += ["", "  Session transitions"]
        if not self.transitions:
            lines.append("    (none)")
        else:
            lines.append(f"    {'t [s]':>10}  {'session':<18}  {'transition':<28}  reason")
            for t in self.transitions:
                move = f"{t.from_state} -> {t.to_state}"
                lines.append(f"    {t.t:>10.3f}  {t.session_id:<18}  {move:<28}  {t.reason or '-'}")
        return "\n".join(lines)

    # -- plumbing -----------------------------------------------------------------------

    def _new_session(self, service: Service) -> Session:
        n = next(self._ids.setdefault(service, itertools.count(1)))
        return Session(service, f"{service}-{n}")

    def _move(
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

    def _verdict(self, verdict: Verdict, session: Session | None) -> list[Action]:
        self.verdicts.append(verdict)
        out: list[Action] = [Emit(kind="verdict", body=verdict.as_dict())]
        codes = ", ".join((*verdict.codes, *verdict.warning_codes)) or "all preconditions met"
        level = "warning" if verdict.outcome == "refused" else "info"
        out.append(Log(level=level, text=f"{verdict.service} {verdict.outcome}: {codes}"))
        if verdict.outcome == "refused":
            out.append(self._alarm(verdict.t, verdict.service, "refused", session, verdict.reasons))
        return out

    def _alarm(
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

    def _result(
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
        self.command_results.append(body)
        return Emit(kind="command_result", body=body)

    def _send(self, name: str, argument: str | None, now: float) -> tuple[list[Action], bool]:
        try:
            message = self.request_frame(name, argument)
        except (TcuError, ValueError) as e:
            return [Log(level="error", text=f"cannot build the {name} request frame: {e}")], False
        return [SendFrame(message=message)], True

    def _send_failed(self, name: str) -> Reason:
        return Reason(
            code="request_not_sent",
            message=f"The {name} request frame could not be built; nothing was sent to the van.",
        )

    # -- charging -----------------------------------------------------------------------

    def _charging_verdict(self, now: float) -> Verdict:
        return charging_verdict(
            self.state, now, self.config, commanded_departure=self.commanded_departure
        )

    def _start_charging(self, cmd: Command, now: float) -> list[Action]:
        if _running(self.charging, "charging"):
            verdict = decide(now, "charging", (), (), (_already("charging"),))
            return [
                *self._verdict(verdict, None),
                self._result(cmd, now, "not_needed", verdict=verdict),
            ]
        out, verdict = self._request_charging("command", now, self._charging_verdict(now))
        out.append(self._result(cmd, now, verdict.outcome, self.charging, verdict))
        return out

    def _request_charging(
        self, trigger: str, now: float, verdict: Verdict
    ) -> tuple[list[Action], Verdict]:
        session = self.charging = self._new_session("charging")
        out = self._move(session, trigger, now)
        out += self._verdict(verdict, session)
        out += self._move(session, VERDICT_EVENTS[verdict.outcome], now, verdict.reasons)
        if verdict.goes_ahead:
            self._last_auto_codes = None
            sent, ok = self._send("start_charging", None, now)
            out += sent
            if not ok:
                reason = self._send_failed("start_charging")
                out.append(self._alarm(now, "charging", "request_not_sent", session, (reason,)))
        elif verdict.outcome == "refused":
            self._last_auto_codes = verdict.codes
        else:
            self._charge_armed = False
        return out, verdict

    def _stop_charging(self, cmd: Command, now: float) -> list[Action]:
        self._charge_armed = False
        out, _ = self._send("stop_charging", None, now)
        session = self.charging
        if _running(session, "charging"):
            reason = Reason(code="stop_requested", message="A stop_charging command ended it.")
            out += self._move(_must(session), "stop", now, (reason,))
            out.append(self._result(cmd, now, "stopped", session))
        else:
            out.append(self._result(cmd, now, "no_session"))
        return out

    def _charging_signals(self, cs: frozenset[str], now: float) -> list[Action]:
        out: list[Action] = []
        was_charging = _running(self.charging, "charging")
        if not cs.isdisjoint(PLUG_SIGNALS):
            plugged = self._is_plugged(now)
            if plugged and not self._plugged:
                self._charge_armed = True
                self._last_auto_codes = None
            elif not plugged:
                self._charge_armed = False
            self._plugged = plugged
        if was_charging:
            out += self._charging_progress(cs, now)
        elif self._charge_armed and not cs.isdisjoint(CHARGING_SIGNALS):
            out += self._auto_charging(now)
        return out

    def _charging_progress(self, cs: frozenset[str], now: float) -> list[Action]:
        session = _must(self.charging)
        status = self.state.get(CHARGING_STATUS, now)
        if status == "FAULT" and CHARGING_STATUS in cs:
            reason = Reason(
                code="charging_fault",
                message="The van reports a charging fault.",
                values={CHARGING_STATUS: status},
            )
            return self._interrupt(session, now, (reason,))
        if not cs.isdisjoint(CHARGING_SIGNALS):
            verdict = self._charging_verdict(now)
            if verdict.outcome == "refused":
                return self._interrupt(session, now, verdict.reasons)
        if cs.isdisjoint(COMPLETION_SIGNALS):
            return []
        soc = self.state.get(SOC, now)
        target = self.config.target_soc
        if isinstance(soc, int | float) and not isinstance(soc, bool) and soc >= target:
            reason = Reason(
                code="target_soc_reached",
                message=f"The battery reached {soc:g} % (target {target:g} %).",
                values={SOC: soc},
            )
            self._charge_armed = False
            return self._move(session, "complete", now, (reason,))
        if status == "COMPLETE":
            reason = Reason(
                code="charging_complete",
                message="The van reports the charge complete.",
                values={CHARGING_STATUS: status, SOC: soc},
            )
            self._charge_armed = False
            return self._move(session, "complete", now, (reason,))
        return []

    def _interrupt(self, session: Session, now: float, reasons: tuple[Reason, ...]) -> list[Action]:
        self._last_auto_codes = tuple(r.code for r in reasons)
        out = self._move(session, "interrupt", now, reasons)
        out.append(self._alarm(now, "charging", "interrupted", session, reasons))
        sent, _ = self._send("stop_charging", None, now)
        return out + sent

    def _auto_charging(self, now: float) -> list[Action]:
        verdict = self._charging_verdict(now)
        if verdict.outcome == "refused":
            if any(_never_received(self.state, r) for r in verdict.reasons):
                return []
            if verdict.codes == self._last_auto_codes:
                return []
        out, _ = self._request_charging("auto", now, verdict)
        return out

    def _is_plugged(self, now: float) -> bool:
        get = self.state.get
        return (
            get(PLUG_CONNECTED, now) is True
            and get(PLUG_LOCKED, now) is True
            and get(INFRA_CONNECTED, now) is True
        )

    # -- preconditioning ----------------------------------------------------------------

    def _preconditioning_verdict(self, now: float) -> Verdict:
        return preconditioning_verdict(
            self.state, now, self.config, commanded_departure=self.commanded_departure
        )

    def _start_preconditioning(self, cmd: Command, now: float) -> list[Action]:
        if _running(self.preconditioning, "scheduled", "active"):
            verdict = decide(now, "preconditioning", (), (), (_already("preconditioning"),))
            return [
                *self._verdict(verdict, None),
                self._result(cmd, now, "not_needed", verdict=verdict),
            ]
        out, status, decided = self._schedule("command", now)
        out.append(
            self._result(
                cmd,
                now,
                status,
                self.preconditioning,
                decided,
                start_t=_finite(self._start_t),
                departure_t=_finite(self._departure_t),
            )
        )
        return out

    def _schedule(self, trigger: str, now: float) -> tuple[list[Action], str, Verdict | None]:
        """Open a session; refuse at once when it cannot even be scheduled."""
        session = self.preconditioning = self._new_session("preconditioning")
        out = self._move(session, trigger, now)
        departure, _ = departure_minutes(self.state, now, self.commanded_departure)
        if departure is None or self.state.get(PRECOND_ENABLED, now) is not True:
            verdict = self._preconditioning_verdict(now)
            out += self._conclude(session, verdict, now)
            return out, verdict.outcome, verdict
        self._plan(departure, now)
        if self._start_t <= now:
            out += self._activate(now)
            return out, _must(self.preconditioning).state, self.verdicts[-1]
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
        self._departure_t = next_departure_t(departure, now, self.config.origin_epoch)
        self._start_t = self._departure_t - self.config.preconditioning_lead_s

    def _activate(self, now: float) -> list[Action]:
        self._start_t = _INF
        return self._conclude(_must(self.preconditioning), self._preconditioning_verdict(now), now)

    def _conclude(self, session: Session, verdict: Verdict, now: float) -> list[Action]:
        out = self._verdict(verdict, session)
        out += self._move(session, VERDICT_EVENTS[verdict.outcome], now, verdict.reasons)
        if verdict.goes_ahead:
            sent, ok = self._send("start_preconditioning", None, now)
            out += sent
            if not ok:
                reason = self._send_failed("start_preconditioning")
                out.append(
                    self._alarm(now, "preconditioning", "request_not_sent", session, (reason,))
                )
        else:
            self._departure_t = _INF
        return out

    def _stop_preconditioning(self, cmd: Command, now: float) -> list[Action]:
        session = self.preconditioning
        reason = Reason(code="stop_requested", message="A stop_preconditioning command ended it.")
        out: list[Action] = []
        if _running(session, "scheduled"):
            self._start_t = self._departure_t = _INF
            out += self._move(_must(session), "stop", now, (reason,))
            out.append(self._result(cmd, now, "cancelled", session))
            return out
        out, _ = self._send("stop_preconditioning", None, now)
        if _running(session, "active"):
            self._departure_t = _INF
            out += self._move(_must(session), "stop", now, (reason,))
            out.append(self._result(cmd, now, "cancelled", session))
        else:
            out.append(self._result(cmd, now, "no_session"))
        return out

    def _preconditioning_signals(self, cs: frozenset[str], now: float) -> list[Action]:
        session = self.preconditioning
        was_running = _running(session, "scheduled", "active")
        out: list[Action] = []
        if _running(session, "scheduled"):
            if PRECOND_ENABLED in cs and self.state.get(PRECOND_ENABLED, now) is False:
                self._start_t = self._departure_t = _INF
                reason = Reason(
                    code="preconditioning_disabled",
                    message="Climate preconditioning was switched off in the van.",
                    values={PRECOND_ENABLED: False},
                )
                out += self._move(_must(session), "disable", now, (reason,))
            elif DEPARTURE_TIME in cs:
                out += self._replan(now)
        elif _running(session, "active") and not cs.isdisjoint(PRECONDITIONING_SIGNALS):
            verdict = self._preconditioning_verdict(now)
            if verdict.outcome == "refused":
                self._departure_t = _INF
                out += self._move(_must(session), "abort", now, verdict.reasons)
                out.append(self._alarm(now, "preconditioning", "aborted", session, verdict.reasons))
                out += self._send("stop_preconditioning", None, now)[0]
            elif DEPARTURE_TIME in cs:
                out += self._replan(now)
        if not cs.isdisjoint(AUTO_PRECONDITIONING_SIGNALS):
            out += self._auto_preconditioning(now, allowed=not was_running)
        return out

    def _auto_preconditioning(self, now: float, *, allowed: bool = True) -> list[Action]:
        """Track 'enabled + departure set + plugged'; schedule when it starts to hold."""
        departure, _ = departure_minutes(self.state, now, self.commanded_departure)
        ready = (
            departure is not None
            and self.state.get(PRECOND_ENABLED, now) is True
            and self._is_plugged(now)
        )
        fresh = ready and (not self._precond_ready or departure != self._precond_departure)
        self._precond_ready = ready
        self._precond_departure = departure
        if not fresh or not allowed or _running(self.preconditioning, "scheduled", "active"):
            return []
        return self._schedule("auto", now)[0]

    def _replan(self, now: float) -> list[Action]:
        """The departure changed while a session is scheduled or active."""
        departure, _ = departure_minutes(self.state, now, self.commanded_departure)
        if departure is None:
            return []
        self._precond_departure = departure
        session = _must(self.preconditioning)
        if session.state == "active":
            self._departure_t = next_departure_t(departure, now, self.config.origin_epoch)
            return []
        self._plan(departure, now)
        if self._start_t <= now:
            return self._activate(now)
        return []

    # -- departure ----------------------------------------------------------------------

    def _set_departure(self, cmd: Command, now: float) -> list[Action]:
        try:
            minutes = parse_hhmm(cmd.argument or "")
        except ValueError as e:
            return [
                Log(level="warning", text=f"set_departure rejected: {e}"),
                self._result(cmd, now, "rejected", error=str(e)),
            ]
        hhmm = format_hhmm(minutes)
        out, ok = self._send("set_departure", hhmm, now)
        if not ok:
            out.append(self._result(cmd, now, "failed", error="request frame not built"))
            return out
        echoed = self.state.get(DEPARTURE_TIME, now)
        self.commanded_departure = None if echoed == minutes else float(minutes)
        out.append(self._result(cmd, now, "sent", departure=hhmm))
        if _running(self.preconditioning, "scheduled", "active"):
            out += self._replan(now)
        else:
            out += self._auto_preconditioning(now)
        return out

    def _departure_echo(self, now: float) -> list[Action]:
        commanded = self.commanded_departure
        if commanded is None:
            return []
        v = self.state.get(DEPARTURE_TIME, now)
        if not isinstance(v, int | float) or isinstance(v, bool):
            return []
        self.commanded_departure = None
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

    # -- lock / unlock ------------------------------------------------------------------

    def _lock_or_unlock(self, cmd: Command, now: float) -> list[Action]:
        service: Service = "lock" if cmd.name == "lock" else "unlock"
        pending = _running(self.lock, "sent")
        session = self._new_session(service)
        if pending:
            busy = Reason(
                code="request_in_progress",
                message=(
                    f"{_must(self.lock).session_id} is still waiting for the van's lock status."
                ),
            )
            verdict = decide(now, service, (busy,))
        else:
            rule = lock_verdict if service == "lock" else unlock_verdict
            verdict = rule(self.state, now, self.config)
            self.lock = session
        out = self._move(session, "command", now)
        out += self._verdict(verdict, session)
        out += self._move(session, VERDICT_EVENTS[verdict.outcome], now, verdict.reasons)
        if not verdict.goes_ahead:
            out.append(self._result(cmd, now, verdict.outcome, session, verdict))
            return out
        sent, ok = self._send(service, None, now)
        out += sent
        if not ok:
            reason = self._send_failed(service)
            out += self._move(session, "send_failed", now, (reason,))
            out.append(self._alarm(now, service, "failed", session, (reason,)))
            out.append(self._result(cmd, now, "failed", session, verdict))
            return out
        self._lock_command = cmd
        self._lock_deadline = now + self.config.lock_timeout_s
        out.append(self._result(cmd, now, "sent", session, verdict, deadline_t=self._lock_deadline))
        return out

    def _lock_check(self, now: float, *, timed_out: bool) -> list[Action]:
        session = _must(self.lock)
        cmd = self._lock_command
        want = session.service == "lock"
        status = self.state.get(LOCKED, now)
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
                    f"{self.config.lock_timeout_s:g} s."
                ),
                values={LOCKED: status},
            )
            event, result = "timeout", "failed"
        else:
            return []
        self._lock_deadline = _INF
        self._lock_command = None
        out = self._move(session, event, now, (reason,))
        if event == "timeout":
            out.append(self._alarm(now, session.service, "failed", session, (reason,)))
        if cmd is not None:
            out.append(self._result(cmd, now, result, session))
        return out


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


def _running(session: Session | None, *states: str) -> bool:
    return session is not None and session.state in states


def _must(session: Session | None) -> Session:
    if session is None:
        raise AssertionError("no session")
    return session


def _finite(t: float) -> float | None:
    return t if math.isfinite(t) else None


def _already(service: Service) -> Reason:
    if service == "charging":
        return Reason(code="already_active", message="The van is already charging.")
    return Reason(
        code="already_active", message="Climate preconditioning is already scheduled or running."
    )


def _never_received(state: VehicleState, reason: Reason) -> bool:
    if reason.code != "signal_unknown":
        return False
    return any(
        p in state.cells and p not in state.overrides and state.cells[p].source.seen == -math.inf
        for p in reason.values
    )
