"""Charging: commanded and automatic sessions, progress, interruptions.

Theory of operation. Commands start or stop a session at once, after the rule's verdict.
Plugging in (plug connected, locked and connected to the infrastructure) arms automatic
charging: the first evaluation happens then, and, while no session runs, again on every
change of a charging precondition (a card tapped, the bonnet closed), until charging
completes, a stop command arrives or the plug comes out. An automatic evaluation waits
silently while a needed signal has never been received (the TCU has not seen the whole
van yet) and does not repeat a refusal with the same reasons. A running session re-runs
its rule on every change of a precondition; a refusal interrupts it with those reasons,
and the TCU sends the stop request. It ends complete at the target state of charge or
when the van says so.
"""

from __future__ import annotations

from tcu.events import Action, Command
from tcu.services.ledger import Ledger, already, must, never_received, running
from tcu.services.rules import (
    CHARGING_SIGNALS,
    PLUG_SIGNALS,
    charging_verdict,
)
from tcu.services.sessions import VERDICT_EVENTS, Session
from tcu.services.verdicts import Reason, Verdict, decide
from tcu.vehicle.catalogue import (
    CHARGING_STATUS,
    SOC,
)

COMPLETION_SIGNALS = frozenset({SOC, CHARGING_STATUS})


class ChargingPart:
    """The charging service of one van."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger
        self.charging: Session | None = None
        self._plugged = False
        self._charge_armed = False
        self._last_auto_codes: tuple[str, ...] | None = None

    def on_signals(self, cs: frozenset[str], now: float) -> list[Action]:
        return self._charging_signals(cs, now)

    def _charging_verdict(self, now: float) -> Verdict:
        return charging_verdict(
            self.ledger.state,
            now,
            self.ledger.config,
            commanded_departure=self.ledger.commanded_departure,
        )

    def start_charging(self, cmd: Command, now: float) -> list[Action]:
        if running(self.charging, "charging"):
            verdict = decide(now, "charging", (), (), (already("charging"),))
            return [
                *self.ledger.verdict(verdict, None),
                self.ledger.result(cmd, now, "not_needed", verdict=verdict),
            ]
        out, verdict = self._request_charging("command", now, self._charging_verdict(now))
        out.append(self.ledger.result(cmd, now, verdict.outcome, self.charging, verdict))
        return out

    def _request_charging(
        self, trigger: str, now: float, verdict: Verdict
    ) -> tuple[list[Action], Verdict]:
        session = self.charging = self.ledger.new_session("charging")
        out = self.ledger.move(session, trigger, now)
        out += self.ledger.verdict(verdict, session)
        out += self.ledger.move(session, VERDICT_EVENTS[verdict.outcome], now, verdict.reasons)
        if verdict.goes_ahead:
            self._last_auto_codes = None
            sent, ok = self.ledger.send("start_charging", None, now)
            out += sent
            if not ok:
                reason = self.ledger.send_failed("start_charging")
                out.append(
                    self.ledger.alarm(now, "charging", "request_not_sent", session, (reason,))
                )
        elif verdict.outcome == "refused":
            self._last_auto_codes = verdict.codes
        else:
            self._charge_armed = False
        return out, verdict

    def stop_charging(self, cmd: Command, now: float) -> list[Action]:
        self._charge_armed = False
        out, _ = self.ledger.send("stop_charging", None, now)
        session = self.charging
        if running(session, "charging"):
            reason = Reason(code="stop_requested", message="A stop_charging command ended it.")
            out += self.ledger.move(must(session), "stop", now, (reason,))
            out.append(self.ledger.result(cmd, now, "stopped", session))
        else:
            out.append(self.ledger.result(cmd, now, "no_session"))
        return out

    def _charging_signals(self, cs: frozenset[str], now: float) -> list[Action]:
        out: list[Action] = []
        was_charging = running(self.charging, "charging")
        if not cs.isdisjoint(PLUG_SIGNALS):
            plugged = self.ledger.is_plugged(now)
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
        session = must(self.charging)
        status = self.ledger.state.get(CHARGING_STATUS, now)
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
        soc = self.ledger.state.get(SOC, now)
        target = self.ledger.config.target_soc
        if isinstance(soc, int | float) and not isinstance(soc, bool) and soc >= target:
            reason = Reason(
                code="target_soc_reached",
                message=f"The battery reached {soc:g} % (target {target:g} %).",
                values={SOC: soc},
            )
            self._charge_armed = False
            return self.ledger.move(session, "complete", now, (reason,))
        if status == "COMPLETE":
            reason = Reason(
                code="charging_complete",
                message="The van reports the charge complete.",
                values={CHARGING_STATUS: status, SOC: soc},
            )
            self._charge_armed = False
            return self.ledger.move(session, "complete", now, (reason,))
        return []

    def _interrupt(self, session: Session, now: float, reasons: tuple[Reason, ...]) -> list[Action]:
        self._last_auto_codes = tuple(r.code for r in reasons)
        out = self.ledger.move(session, "interrupt", now, reasons)
        out.append(self.ledger.alarm(now, "charging", "interrupted", session, reasons))
        sent, _ = self.ledger.send("stop_charging", None, now)
        return out + sent

    def _auto_charging(self, now: float) -> list[Action]:
        verdict = self._charging_verdict(now)
        if verdict.outcome == "refused":
            if any(never_received(self.ledger.state, r) for r in verdict.reasons):
                return []
            if verdict.codes == self._last_auto_codes:
                return []
        out, _ = self._request_charging("auto", now, verdict)
        return out
