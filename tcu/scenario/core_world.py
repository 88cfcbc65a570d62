"""CoreWorld: the provisional world of the scenario runner, on what the TCU core has today.

Theory of operation. A ``TcuCore`` with the reference DBC and mapping and the services
part (charging, preconditioning, lock/unlock), on the replay driver's virtual clock.
The bus is a trace file, frames generated from a storyline in-process, or silent (the
steps set every signal). Vehicle time 0 is the first frame of a trace or the start of
a storyline; unless the scenario gives ``vehicle.start``, that instant is also the
services' ``origin_epoch``, so departure times line up with the bus.

``set``/``release``/``move`` to a position are scenario overrides of the vehicle state,
applied together and handed to the parts as one change. ``command`` is a ``Command``
from the backend, unsigned (this world has no backend to sign it). Verdicts, session
transitions and command results are read from the services part. Everything that needs
telemetry, the SIM link or the backend (coverage, broker, power cycle, signed and
hostile commands, activation, registration, backend records, roaming bytes, outbox
counters) raises ``NotSupported``: the case fails saying so, never passes unchecked.
"""

from __future__ import annotations

import itertools
from dataclasses import replace
from typing import Any

import can

from tcu.core import TcuCore
from tcu.errors import ConfigError
from tcu.events import Action, Command, Dispatch, Emit, Log, SendFrame, ServiceActivation
from tcu.runtime.replay import ReplayDriver
from tcu.scenario.bus import finish_bus, open_bus, reference_encoder, reference_setup
from tcu.scenario.model import Case, CommandSpec, Expectation, Step
from tcu.scenario.world import (
    NotSupported,
    Observation,
    WorldOptions,
    check,
    session_observation,
    verdict_observation,
)
from tcu.services.config import parse_hhmm
from tcu.services.part import ServicesPart
from tcu.vehicle.catalogue import LATITUDE, LONGITUDE

UNHANDLED = "no part handles "
NO_LINK = "CoreWorld has no SIM link, broker or backend"
NO_TELEMETRY = "CoreWorld has no telemetry, SIM link or backend"


class CoreWorld:
    """TCU core + services on a virtual clock; see the module docstring for what it covers."""

    def __init__(self, case: Case, options: WorldOptions) -> None:
        if options.broker != "memory":
            raise ConfigError(
                f"--broker {options.broker}: the scenario world in use (CoreWorld: TCU core and "
                "services only) runs no broker; it takes only --broker memory"
            )
        self.case = case
        setup = reference_setup()
        self.core = TcuCore(setup.mapping)
        self.bus, origin = open_bus(case)
        config = case.vehicle.config
        if origin is not None and not case.vehicle.start_given:
            config = replace(config, origin_epoch=origin)
        self.services = ServicesPart(self.core.state, config, self._request_frame)
        self.core.add_part(self.services)
        self.driver = ReplayDriver(self.core, (), on_action=self._on_action)
        self.results: list[dict[str, Any]] = []
        self.sent: list[tuple[float, can.Message]] = []
        self.logs: list[str] = []
        self.alarms = 0
        self.unhandled = 0
        self._counter = itertools.count()
        self._command_ids = itertools.count(1)

    # -- the bus ------------------------------------------------------------------------

    # -- the World protocol ---------------------------------------------------------------

    def advance(self, until: float) -> None:
        core = self.core
        driver = self.driver
        frame = core.frame
        on_action = self._on_action
        bus = self.bus
        while bus.next is not None and bus.next_t <= until:
            msg, t = bus.next, bus.next_t
            if core.next_deadline <= t:
                driver.advance(t)
            driver.now = t
            actions = frame(msg, t)
            if actions:
                for a in actions:
                    on_action(a, t)
            bus.pull()
        driver.advance(until)

    def apply(self, step: Step, now: float) -> None:
        action = step.action
        value = step.value
        if action == "set":
            self._set(dict(value), now)
        elif action == "release":
            for path in value:
                self.core.state.release(path)
            self._dispatch(self.core.signals_changed(list(value), now), now)
        elif action == "move":
            if "country" in value:
                raise NotSupported("move to a country", NO_LINK)
            self._set({LATITUDE: value["lat"], LONGITUDE: value["lon"]}, now)
        elif action == "command":
            self._command(value, now)
        elif action in ("activate", "deactivate"):
            event = ServiceActivation(active=action == "activate")
            self._handle(event, now, action)
        elif action in ("forged_command", "expired_command", "replayed_command"):
            raise NotSupported(action, "needs signed downlink commands through the backend")
        elif action in ("coverage", "broker", "power_cycle"):
            raise NotSupported(action, NO_LINK if action != "power_cycle" else NO_TELEMETRY)
        else:
            raise NotSupported(str(action))

    def observe(self, expectation: Expectation, now: float) -> Observation:
        kind = expectation.kind
        f = expectation.fields
        if kind == "verdict":
            return verdict_observation(expectation, self.services.verdicts, f["service"])
        if kind == "session":
            moves = [(0, t) for t in self.services.transitions]
            return session_observation(expectation, moves, f["service"])
        if kind == "vehicle":
            state = self.core.state
            return check(expectation, {p: state.get(p, now) for p in f})
        if kind == "command":
            name = f["name"]
            results = [r for r in self.results if r.get("command") == name]
            if not results:
                return check(expectation, None, f"no result for a {name} command yet")
            return check(expectation, {"name": name, "outcome": results[-1].get("status")})
        if kind == "counters":
            counts = self.counters()
            missing = [n for n in f if n not in counts]
            if missing:
                raise NotSupported(
                    "counters." + ", counters.".join(missing),
                    f"CoreWorld counts only {', '.join(sorted(counts))}",
                )
            return check(expectation, {n: counts[n] for n in f})
        raise NotSupported(kind, NO_LINK)

    def finish(self, until: float | None) -> float:
        return finish_bus(self.bus, self.advance, self.driver.now, until)

    def close(self) -> None:
        self.bus.close()

    # -- plumbing -----------------------------------------------------------------------

    def counters(self) -> dict[str, int]:
        counts = self.core.summary_counts()
        counts["verdicts"] = len(self.services.verdicts)
        counts["transitions"] = len(self.services.transitions)
        counts["alarms"] = self.alarms
        counts["can_requests"] = len(self.sent)
        counts["unhandled_events"] = self.unhandled
        return counts

    def _set(self, values: dict[str, Any], now: float) -> None:
        state = self.core.state
        for path, value in values.items():
            state.override(path, value)
        self._dispatch(self.core.signals_changed(list(values), now), now)

    def _command(self, spec: CommandSpec, now: float) -> None:
        cmd = Command(
            name=spec.name,
            argument=spec.argument,
            command_id=spec.command_id or f"scenario-{next(self._command_ids)}",
            source="backend",
        )
        self._handle(cmd, now, "command")

    def _handle(self, event: Any, now: float, kind: str) -> None:
        actions = self.core.handle(event, now)
        if any(isinstance(a, Log) and a.text.startswith(UNHANDLED) for a in actions):
            self.unhandled += 1
            raise NotSupported(kind, f"no part of the core handles {type(event).__name__}")
        self._dispatch(actions, now)

    def _dispatch(self, actions: list[Action], now: float) -> None:
        for a in actions:
            self._on_action(a, now)

    def _on_action(self, action: Action, now: float) -> None:
        if isinstance(action, Emit):
            if action.kind == "command_result":
                self.results.append(dict(action.body))
            elif action.kind == "alarm":
                self.alarms += 1
        elif isinstance(action, SendFrame):
            self.sent.append((now, action.message))
        elif isinstance(action, Log):
            self.logs.append(f"t={now:.3f}s {action.level}: {action.text}")
            if action.text.startswith(UNHANDLED):
                self.unhandled += 1
        elif isinstance(action, Dispatch):
            self._dispatch(self.core.handle(action.event, now), now)

    def _request_frame(self, name: str, argument: str | None) -> can.Message:
        value = float(parse_hhmm(argument)) if name == "set_departure" and argument else 0.0
        return reference_encoder().encode_request(name, value, next(self._counter))
