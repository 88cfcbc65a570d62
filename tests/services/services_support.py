"""Helpers shared by the services tests: state builders, a fake encoder, a van harness."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import can

from tcu.events import Action, Command, Emit, SendFrame
from tcu.services import ServicesPart, VehicleConfig
from tcu.vehicle import catalogue as c
from tcu.vehicle.state import Source, VehicleState

VIN = "WDB9076331P000042"
# Vehicle time 0 is 06:00 UTC on 2023-11-14.
ORIGIN = 19675 * 86_400.0 + 6 * 3600.0
REQUEST_ID = 0x6A0
REQUEST_CODES = {
    "lock": 1,
    "unlock": 2,
    "start_charging": 3,
    "stop_charging": 4,
    "start_preconditioning": 5,
    "stop_preconditioning": 6,
    "set_departure": 7,
}

CHARGING_OK: dict[str, c.Value | None] = {
    c.PLUG_CONNECTED: True,
    c.PLUG_LOCKED: True,
    c.INFRA_CONNECTED: True,
    c.INFRA_TYPE: "WALLBOX",
    c.BONNET: False,
    c.GEAR: "P",
    c.RFID: "ACCEPTED",
    c.SOC: 50.0,
    c.CHARGING_POWER: 0.0,
    c.CHARGING_STATUS: "IDLE",
    c.DEPARTURE_TIME: None,
}

PRECONDITIONING_OK: dict[str, c.Value | None] = {
    **CHARGING_OK,
    **dict.fromkeys(c.DOORS, False),
    **dict.fromkeys(c.WINDOWS, 0.0),
    c.PRECOND_ENABLED: True,
    c.DEPARTURE_TIME: 420.0,
    c.CABIN_SETPOINT: 21.0,
    c.OUTSIDE_TEMP: 4.5,
}

LOCK_OK: dict[str, c.Value | None] = {
    **dict.fromkeys(c.DOORS, False),
    c.SPEED: 0.0,
    c.LOCKED: False,
}


def make_state(
    values: dict[str, c.Value | None],
    now: float,
    *,
    stale: Iterable[str] = (),
    stale_after: float = 5.0,
) -> VehicleState:
    """A state holding ``values``, fresh at ``now`` except the ``stale`` paths."""
    state = VehicleState(stale_after=dict.fromkeys(c.CATALOGUE, stale_after))
    fresh = Source()
    fresh.seen = now
    old = Source()
    old.seen = now - 10 * stale_after
    stale = set(stale)
    for path, value in values.items():
        state.update(path, value, old if path in stale else fresh)
    return state


class FakeEncoder:
    """Stands in for the reference van's request encoder; remembers every call."""

    def __init__(self, fail: Exception | None = None) -> None:
        self.calls: list[tuple[str, str | None]] = []
        self.fail = fail

    def __call__(self, name: str, argument: str | None) -> can.Message:
        if self.fail is not None:
            raise self.fail
        self.calls.append((name, argument))
        payload = bytes([REQUEST_CODES[name]]) + (argument or "").encode("ascii")[:7]
        return can.Message(arbitration_id=REQUEST_ID, data=payload, is_extended_id=False)


class Van:
    """A ServicesPart on a hand-driven state: set signals, send commands, advance time."""

    def __init__(
        self,
        values: dict[str, c.Value | None],
        *,
        config: VehicleConfig | None = None,
        notify: bool = False,
        encoder: FakeEncoder | None = None,
    ) -> None:
        self.state = VehicleState()
        self.encoder = encoder or FakeEncoder()
        self.config = config or VehicleConfig(vin=VIN, origin_epoch=ORIGIN)
        self.part = ServicesPart(self.state, self.config, self.encoder)
        self.actions: list[Action] = []
        out = self._store(values, 0.0)
        if notify:
            self.actions += self.part.on_signals(out, 0.0)

    def _store(self, values: dict[str, c.Value | None], now: float) -> list[str]:
        src = Source()
        src.seen = now
        return [p for p, v in values.items() if self.state.update(p, v, src)]

    def set(self, now: float, values: dict[str, c.Value | None]) -> list[Action]:
        out = self.part.on_signals(self._store(values, now), now)
        self.actions += out
        return out

    def command(self, now: float, name: str, argument: str | None = None) -> list[Action]:
        cmd = Command(name=name, argument=argument, command_id=f"c-{name}-{now:g}")
        out = self.part.on_event(cmd, now)
        assert out is not None
        self.actions += out
        return out

    def advance(self, until: float) -> list[Action]:
        """Fire every due timer up to ``until``, each at its own time, as the core does."""
        out: list[Action] = []
        while (t := self.part.next_deadline()) <= until:
            out += self.part.on_tick(t)
        self.actions += out
        return out


def emits(actions: Iterable[Action], kind: str) -> list[dict[str, Any]]:
    return [a.body for a in actions if isinstance(a, Emit) and a.kind == kind]


def sent(actions: Iterable[Action]) -> list[can.Message]:
    return [a.message for a in actions if isinstance(a, SendFrame)]


def states(van: Van, session_id: str) -> list[str]:
    """The states a session went through, from idle."""
    path = [t for t in van.part.transitions if t.session_id == session_id]
    return [path[0].from_state, *(t.to_state for t in path)] if path else []
