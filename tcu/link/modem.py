"""The LTE modem's network registration, as a sans-I/O state machine.

Theory of operation: `TRANSITIONS` is the whole behaviour, ``{state: {event: next}}``;
an event missing from a state's row raises `TransitionError`. Inputs from outside
(`PowerOn`, `PowerOff`, `CountryChanged`, `CoverageChanged`) become the events
``power_on``, ``power_off``, ``moved``, ``lost`` and ``regained``; the modem's own
timers produce the rest (``search_done``, ``attach_home``, ``attach_roaming``,
``attach_rejected``, ``retry``, ``detached``). Entering a state, even the same one
again, cancels the pending timer and arms the state's own: a search takes a seeded
random time within `ModemTimings.search_s` and only runs while a network could be
heard; an attach takes `attach_home_s` or, abroad, the longer `attach_roaming_s`
(authentication goes via the home network). A border crossing is ``moved``: the
serving network is gone, the modem searches again and tries the home operator's
preferred partner in the new country first, then the others; a network that rejects
the attach (forbidden PLMN) is skipped after a short back-off. Each change of the
3GPP registration status (+CEREG <stat>) or of the serving network is reported.
The caller owns time: `handle(event, now)` first fires the timers due by `now`,
and `next_wakeup()` says when the next one is due.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import IntEnum, StrEnum

from tcu.errors import TransitionError
from tcu.link._fields import mapping, only_keys, span
from tcu.link.geo import check_country
from tcu.link.operators import Operator, Rat, candidates

LTE_FLOOR_DBM = -116.0
UMTS_FLOOR_DBM = -122.0


class RegState(StrEnum):
    IDLE = "idle"
    SEARCHING = "searching"
    ATTACHING = "attaching"
    REGISTERED_HOME = "registered_home"
    REGISTERED_ROAMING = "registered_roaming"
    DENIED = "denied"
    DETACHING = "detaching"


class Cereg(IntEnum):
    """<stat> of 3GPP TS 27.007 +CEREG."""

    NOT_REGISTERED = 0
    REGISTERED_HOME = 1
    SEARCHING = 2
    DENIED = 3
    UNKNOWN = 4
    REGISTERED_ROAMING = 5


S = RegState
TRANSITIONS: Mapping[RegState, Mapping[str, RegState]] = {
    S.IDLE: {
        "power_on": S.SEARCHING,
        "moved": S.IDLE,
        "lost": S.IDLE,
        "regained": S.IDLE,
    },
    S.SEARCHING: {
        "search_done": S.ATTACHING,
        "moved": S.SEARCHING,
        "lost": S.SEARCHING,
        "regained": S.SEARCHING,
        "power_off": S.IDLE,
    },
    S.ATTACHING: {
        "attach_home": S.REGISTERED_HOME,
        "attach_roaming": S.REGISTERED_ROAMING,
        "attach_rejected": S.DENIED,
        "moved": S.SEARCHING,
        "lost": S.SEARCHING,
        "power_off": S.DETACHING,
    },
    S.REGISTERED_HOME: {
        "moved": S.SEARCHING,
        "lost": S.SEARCHING,
        "power_off": S.DETACHING,
    },
    S.REGISTERED_ROAMING: {
        "moved": S.SEARCHING,
        "lost": S.SEARCHING,
        "power_off": S.DETACHING,
    },
    S.DENIED: {
        "retry": S.SEARCHING,
        "moved": S.SEARCHING,
        "lost": S.DENIED,
        "regained": S.DENIED,
        "power_off": S.IDLE,
    },
    S.DETACHING: {
        "detached": S.IDLE,
        "moved": S.DETACHING,
        "lost": S.IDLE,
    },
}

CEREG_OF: Mapping[RegState, Cereg] = {
    S.IDLE: Cereg.NOT_REGISTERED,
    S.SEARCHING: Cereg.SEARCHING,
    S.ATTACHING: Cereg.SEARCHING,
    S.REGISTERED_HOME: Cereg.REGISTERED_HOME,
    S.REGISTERED_ROAMING: Cereg.REGISTERED_ROAMING,
    S.DENIED: Cereg.DENIED,
    S.DETACHING: Cereg.NOT_REGISTERED,
}

REGISTERED: frozenset[RegState] = frozenset({S.REGISTERED_HOME, S.REGISTERED_ROAMING})


def next_state(state: RegState, event: str) -> RegState:
    """Look `event` up in `state`'s row of the table; TransitionError if absent."""
    try:
        return TRANSITIONS[state][event]
    except KeyError:
        allowed = ", ".join(sorted(TRANSITIONS.get(state, {})))
        raise TransitionError(
            f"modem: event {event!r} is not allowed in state {state.value!r} (allowed: {allowed})"
        ) from None


def select_rat(rsrp: float | None, rats: tuple[Rat, ...]) -> Rat:
    """Best RAT the network offers at this signal level (LTE, else 3G, else 2G)."""
    if Rat.LTE in rats and (rsrp is None or rsrp >= LTE_FLOOR_DBM):
        return Rat.LTE
    if Rat.UMTS in rats and rsrp is not None and rsrp >= UMTS_FLOOR_DBM:
        return Rat.UMTS
    for rat in (Rat.GSM, Rat.UMTS, Rat.LTE):
        if rat in rats:
            return rat
    return Rat.NONE


@dataclass(frozen=True, slots=True, kw_only=True)
class ModemTimings:
    """Ranges [low, high] in seconds from which each procedure's duration is drawn."""

    search_s: tuple[float, float] = (2.0, 12.0)
    attach_home_s: tuple[float, float] = (0.5, 2.5)
    attach_roaming_s: tuple[float, float] = (1.5, 6.0)
    detach_s: tuple[float, float] = (0.2, 1.5)
    retry_s: tuple[float, float] = (1.0, 5.0)

    def __post_init__(self) -> None:
        for name in ("search_s", "attach_home_s", "attach_roaming_s", "detach_s", "retry_s"):
            span(getattr(self, name), name)

    @classmethod
    def from_dict(cls, raw: object) -> ModemTimings:
        fields = mapping(raw, "")
        names = {"search_s", "attach_home_s", "attach_roaming_s", "detach_s", "retry_s"}
        only_keys(fields, names, "")
        return cls(**{name: span(value, name) for name, value in fields.items()})


@dataclass(frozen=True, slots=True, kw_only=True)
class PowerOn:
    """Radio on (AT+CFUN=1): start searching."""


@dataclass(frozen=True, slots=True, kw_only=True)
class PowerOff:
    """Radio off (AT+CFUN=4): detach if attached."""


@dataclass(frozen=True, slots=True, kw_only=True)
class CountryChanged:
    """The van is now in `country` (None: no country, e.g. at sea)."""

    country: str | None

    def __post_init__(self) -> None:
        if self.country is not None:
            check_country(self.country)


@dataclass(frozen=True, slots=True, kw_only=True)
class CoverageChanged:
    covered: bool

    def __post_init__(self) -> None:
        if not isinstance(self.covered, bool):
            raise TypeError(f"covered must be a bool, got {self.covered!r}")


@dataclass(frozen=True, slots=True, kw_only=True)
class SignalChanged:
    """Serving-cell RSRP in dBm (None: nothing heard)."""

    rsrp: float | None

    def __post_init__(self) -> None:
        if self.rsrp is not None and not -140.0 <= self.rsrp <= -44.0:
            raise ValueError(f"rsrp {self.rsrp!r} dBm is outside -140..-44")


@dataclass(frozen=True, slots=True, kw_only=True)
class Tick:
    """Only let time pass (fire due timers)."""


ModemEvent = PowerOn | PowerOff | CountryChanged | CoverageChanged | SignalChanged | Tick


@dataclass(frozen=True, slots=True, kw_only=True)
class CeregReport:
    """One change of registration status, as +CEREG would report it."""

    t: float
    stat: Cereg
    state: RegState
    plmn: str | None  # serving network; in DENIED, the one that refused
    country: str | None
    rat: Rat
    event: str

    def at_line(self) -> str:
        """The unsolicited result code, ``+CEREG: <stat>`` (AcT appended when known)."""
        act = {Rat.LTE: 7, Rat.UMTS: 2, Rat.GSM: 0}.get(self.rat)
        return f"+CEREG: {int(self.stat)}" + (f",,,{act}" if act is not None else "")


@dataclass(slots=True)
class _Timer:
    t: float
    event: str


@dataclass(slots=True)
class _Plan:
    target: Operator | None = None
    rejected: set[str] = field(default_factory=set)


class Modem:
    """Registration state machine of the TCU's modem; drive it with `handle`."""

    def __init__(
        self,
        *,
        home: Operator,
        timings: ModemTimings | None = None,
        seed: int = 0,
        forbidden: Iterable[str] = (),
        partners: Mapping[str, tuple[str, ...]] | None = None,
    ) -> None:
        self.home = home
        self.timings = timings or ModemTimings()
        self.forbidden = frozenset(forbidden)
        self._partners = partners
        self._rng = random.Random(seed)
        self.state = RegState.IDLE
        self.country: str | None = None
        self.covered = True
        self.rsrp: float | None = None
        self.serving: Operator | None = None
        self._now = float("-inf")
        self._timer: _Timer | None = None
        self._plan = _Plan()

    @property
    def cereg(self) -> Cereg:
        return CEREG_OF[self.state]

    @property
    def registered(self) -> bool:
        return self.state in REGISTERED

    @property
    def plmn(self) -> str | None:
        return self.serving.plmn if self.serving is not None else None

    @property
    def rat(self) -> Rat:
        if self.serving is None:
            return Rat.NONE
        return select_rat(self.rsrp, self.serving.rats)

    def candidates(self) -> tuple[Operator, ...]:
        return candidates(self.home, self.country, self._partners)

    def next_wakeup(self) -> float | None:
        return self._timer.t if self._timer is not None else None

    def handle(self, event: ModemEvent, now: float) -> list[CeregReport]:
        if now < self._now:
            raise ValueError(f"modem: time went backwards ({now:g} < {self._now:g})")
        reports: list[CeregReport] = []
        while self._timer is not None and self._timer.t <= now:
            due, self._timer = self._timer, None
            self._now = due.t
            self._fire(due.event, reports)
        self._now = now
        match event:
            case PowerOn():
                self._plan.rejected.clear()
                self._fire("power_on", reports)
            case PowerOff():
                self._fire("power_off", reports)
            case CountryChanged(country=country) if country != self.country:
                self.country = country
                self._plan.rejected.clear()
                self._fire("moved", reports)
            case CoverageChanged(covered=covered) if covered != self.covered:
                self.covered = covered
                self._fire("regained" if covered else "lost", reports)
            case SignalChanged(rsrp=rsrp):
                self.rsrp = rsrp
            case _:
                pass
        return reports

    def _untried(self) -> list[Operator]:
        return [op for op in self.candidates() if op.plmn not in self._plan.rejected]

    def _arm(self, span_s: tuple[float, float], event: str) -> None:
        self._timer = _Timer(self._now + self._rng.uniform(*span_s), event)

    def _fire(self, event: str, reports: list[CeregReport]) -> None:
        before = (self.cereg, self.plmn)
        self.state = next_state(self.state, event)
        self._enter(event)
        if (self.cereg, self.plmn) != before:
            plmn = self.plmn
            if self.state is RegState.DENIED and self._plan.target is not None:
                plmn = self._plan.target.plmn
            reports.append(
                CeregReport(
                    t=self._now,
                    stat=self.cereg,
                    state=self.state,
                    plmn=plmn,
                    country=self.country,
                    rat=self.rat,
                    event=event,
                )
            )

    def _enter(self, event: str) -> None:
        self._timer = None
        plan, t = self._plan, self.timings
        state = self.state
        if state in REGISTERED:
            self.serving = plan.target
            return
        self.serving = None
        if state is RegState.SEARCHING:
            if self.covered and self._untried():
                self._arm(t.search_s, "search_done")
        elif state is RegState.ATTACHING:
            target = plan.target = self._untried()[0]
            if target.plmn in self.forbidden:
                outcome = "attach_rejected"
            elif target == self.home:
                outcome = "attach_home"
            else:
                outcome = "attach_roaming"
            self._arm(t.attach_home_s if target == self.home else t.attach_roaming_s, outcome)
        elif state is RegState.DENIED:
            if event == "attach_rejected" and plan.target is not None:
                plan.rejected.add(plan.target.plmn)
            if self._untried():
                self._arm(t.retry_s, "retry")
        elif state is RegState.DETACHING:
            self._arm(t.detach_s, "detached")
