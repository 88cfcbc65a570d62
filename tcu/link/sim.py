"""The SIM link as the TCU sees it: registration, throughput, delay and the bill.

Theory of operation: a `Link` owns a `Modem`, a `Coverage` and the route's country
timeline, and runs them in vehicle time only. Every public call takes `now`;
`advance(now)` walks forward from the last instant through every moment something can
change (a border on the route, a coverage edge, a modem timer), in order, feeding the
modem what changed and charging the elapsed time to home, roaming or unregistered.
Nothing happens between those moments, so a driver asks `next_wakeup()` and jumps:
a 40-minute dead zone is one step. `send` and `receive` move bytes only while the
modem is registered; otherwise they return None and count the refusal. Delivery time
is queueing behind earlier bytes, serialisation at the bandwidth of the current RAT
and signal, one-way latency (longer abroad: home-routed roaming), and recovery of
seeded segment losses (a retransmission timeout for a short message, a fast
retransmit for a long one); a transfer still in flight when the route or coverage is
known to cut the link fails. Delivered bytes are charged to
the serving PLMN: the home plan at home, the service provider when roaming, never
the driver. `batch_window` asks the batching policy how long to gather records
before sending; by default it batches more while roaming.
"""

from __future__ import annotations

import math
import random
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Protocol

from tcu.errors import ConfigError
from tcu.link._fields import integer, listing, mapping, nested, number, only_keys
from tcu.link.coverage import Coverage, DeadZone, RandomGaps, zones_from_list
from tcu.link.geo import check_country, check_latlon, country_at
from tcu.link.modem import (
    Cereg,
    CeregReport,
    CountryChanged,
    CoverageChanged,
    Modem,
    ModemEvent,
    ModemTimings,
    PowerOff,
    PowerOn,
    RegState,
    SignalChanged,
    Tick,
)
from tcu.link.operators import BY_PLMN, Operator, Rat, operator, parse_plmn
from tcu.link.route import Route, Waypoint

__all__ = [
    "EnterCountry",
    "Link",
    "LinkConfig",
    "LinkSnapshot",
    "Position",
    "PowerOff",
    "PowerOn",
    "RoamingBatchPolicy",
    "SetCoverage",
    "Tick",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class RadioProfile:
    """Typical figures of a RAT at a good signal: one-way latency, throughput, loss."""

    latency_s: float
    uplink_bytes_per_s: float
    downlink_bytes_per_s: float
    loss: float


PROFILES: Mapping[Rat, RadioProfile] = {
    Rat.LTE: RadioProfile(
        latency_s=0.030, uplink_bytes_per_s=1_250_000, downlink_bytes_per_s=5_000_000, loss=0.002
    ),
    Rat.UMTS: RadioProfile(
        latency_s=0.080, uplink_bytes_per_s=180_000, downlink_bytes_per_s=900_000, loss=0.01
    ),
    Rat.GSM: RadioProfile(
        latency_s=0.300, uplink_bytes_per_s=12_000, downlink_bytes_per_s=24_000, loss=0.02
    ),
}
ROAMING_EXTRA_LATENCY_S = 0.025
GOOD_RSRP_DBM = -80.0
EDGE_RSRP_DBM = -125.0
SEGMENT_BYTES = 1400
MIN_RTO_S = 0.2
FAST_RETRANSMIT_SEGMENTS = 4
REPORTS_KEPT = 10_000


@dataclass(frozen=True, slots=True, kw_only=True)
class RoamingBatchPolicy:
    """Gather records for `home_s` at home and `roaming_s` abroad or without service."""

    home_s: float = 10.0
    roaming_s: float = 120.0

    def __post_init__(self) -> None:
        number(self.home_s, "home_s", minimum=0.0)
        number(self.roaming_s, "roaming_s", minimum=0.0)

    def window(self, link: LinkSnapshot) -> float:
        return self.home_s if link.cereg is Cereg.REGISTERED_HOME else self.roaming_s

    @classmethod
    def from_dict(cls, raw: object) -> RoamingBatchPolicy:
        fields = mapping(raw, "")
        only_keys(fields, {"home_s", "roaming_s"}, "")
        defaults = cls()
        return cls(
            home_s=number(fields.get("home_s", defaults.home_s), "home_s", minimum=0.0),
            roaming_s=number(fields.get("roaming_s", defaults.roaming_s), "roaming_s", minimum=0.0),
        )


class BatchPolicy(Protocol):
    """How long to gather telemetry before sending, given the link's state."""

    def window(self, link: LinkSnapshot) -> float: ...


def _partners(raw: object) -> Mapping[str, tuple[str, ...]]:
    out: dict[str, tuple[str, ...]] = {}
    for country, plmns in mapping(raw, "").items():
        try:
            check_country(country)
        except ConfigError as exc:
            raise ConfigError(f"{country}: {str(exc).split(': ', 1)[1]}") from None
        chosen = []
        for i, plmn in enumerate(listing(plmns, country)):
            field_name = f"{country}[{i}]"
            found = operator(parse_plmn(plmn, field_name), field_name)
            if found.country != country:
                raise ConfigError(
                    f"{field_name}: {plmn} is a {found.country} network, not {country}"
                )
            chosen.append(found.plmn)
        out[country] = tuple(chosen)
    return MappingProxyType(out)


_KEYS = {
    "home_plmn",
    "seed",
    "route",
    "dead_zones",
    "random_gaps",
    "preferred_partners",
    "forbidden_plmns",
    "modem",
    "batch",
    "start_t",
}


@dataclass(frozen=True, slots=True, kw_only=True)
class LinkConfig:
    """Everything that shapes the link, as it comes from the scenario's ``link:`` key."""

    home_plmn: str
    seed: int = 0
    route: tuple[Waypoint, ...] = ()
    dead_zones: tuple[DeadZone, ...] = ()
    random_gaps: RandomGaps | None = None
    preferred_partners: Mapping[str, tuple[str, ...]] = field(
        default_factory=lambda: MappingProxyType({})
    )
    forbidden_plmns: frozenset[str] = frozenset()
    modem: ModemTimings = field(default_factory=ModemTimings)
    batch: RoamingBatchPolicy = field(default_factory=RoamingBatchPolicy)
    start_t: float | None = None

    def __post_init__(self) -> None:
        operator(self.home_plmn, "home_plmn")
        integer(self.seed, "seed")
        try:
            Route(self.route)
        except ConfigError as exc:
            raise nested("route", exc) from None
        for i, plmn in enumerate(sorted(self.forbidden_plmns)):
            parse_plmn(plmn, f"forbidden_plmns[{i}]")
        try:
            _partners(dict(self.preferred_partners))
        except ConfigError as exc:
            raise nested("preferred_partners", exc) from None
        if self.start_t is not None:
            number(self.start_t, "start_t")

    @classmethod
    def from_dict(cls, raw: object, where: str = "link") -> LinkConfig:
        """Build from plain data (as loaded from YAML); errors name ``<where>.<field>``."""
        try:
            return cls._from_dict(raw)
        except ConfigError as exc:
            raise nested(where, exc) from None

    @classmethod
    def _from_dict(cls, raw: object) -> LinkConfig:
        fields = mapping(raw, "")
        only_keys(fields, _KEYS, "")
        if "home_plmn" not in fields:
            raise ConfigError("home_plmn: missing (the SIM's home network, e.g. '242-01')")
        home = parse_plmn(fields["home_plmn"], "home_plmn")
        kwargs: dict[str, Any] = {"home_plmn": home}
        if "seed" in fields:
            kwargs["seed"] = integer(fields["seed"], "seed")
        parts: list[tuple[str, Any]] = [
            ("route", lambda v: Route.from_list(v).waypoints),
            ("dead_zones", zones_from_list),
            ("random_gaps", lambda v: None if v is None else RandomGaps.from_dict(v)),
            ("preferred_partners", _partners),
            ("modem", ModemTimings.from_dict),
            ("batch", RoamingBatchPolicy.from_dict),
        ]
        for key, build in parts:
            if key in fields:
                try:
                    kwargs[key] = build(fields[key])
                except ConfigError as exc:
                    raise nested(key, exc) from None
        if "forbidden_plmns" in fields:
            items = listing(fields["forbidden_plmns"], "forbidden_plmns")
            kwargs["forbidden_plmns"] = frozenset(
                parse_plmn(p, f"forbidden_plmns[{i}]") for i, p in enumerate(items)
            )
        if fields.get("start_t") is not None:
            kwargs["start_t"] = number(fields["start_t"], "start_t")
        return cls(**kwargs)


@dataclass(frozen=True, slots=True, kw_only=True)
class Position:
    """A position fix (e.g. from GNSS): the country and dead zones follow from it."""

    lat: float
    lon: float

    def __post_init__(self) -> None:
        check_latlon(self.lat, self.lon)


@dataclass(frozen=True, slots=True, kw_only=True)
class EnterCountry:
    """The van is now in `country`, position unknown (None: no country)."""

    country: str | None

    def __post_init__(self) -> None:
        if self.country is not None:
            check_country(self.country)


@dataclass(frozen=True, slots=True, kw_only=True)
class SetCoverage:
    """Force coverage on or off; None hands it back to the configured model."""

    covered: bool | None


LinkEvent = Tick | Position | EnterCountry | SetCoverage | PowerOn | PowerOff


@dataclass(frozen=True, slots=True, kw_only=True)
class LinkSnapshot:
    """The link at one instant: registration, radio and what a transfer would see."""

    t: float
    state: RegState
    cereg: Cereg
    plmn: str | None
    operator: str | None
    country: str | None
    roaming: bool
    rat: Rat
    rsrp: float | None
    latency_s: float | None
    uplink_bytes_per_s: float
    downlink_bytes_per_s: float
    loss: float

    @property
    def registered(self) -> bool:
        return self.cereg in (Cereg.REGISTERED_HOME, Cereg.REGISTERED_ROAMING)


@dataclass(slots=True)
class _Usage:
    up: int = 0
    down: int = 0


class Link:
    """Sans-I/O model of the van's SIM link; every call takes vehicle time `now`."""

    def __init__(self, config: LinkConfig, *, policy: BatchPolicy | None = None) -> None:
        self.config = config
        self.home: Operator = operator(config.home_plmn, "home_plmn")
        self.policy: BatchPolicy = policy or config.batch
        self.route = Route(config.route)
        start = config.start_t
        if start is None:
            start = self.route.start if self.route.start is not None else 0.0
        self.coverage = Coverage(
            zones=config.dead_zones,
            random_gaps=config.random_gaps,
            route=self.route,
            origin=start,
            signal_seed=config.seed,
        )
        self.modem = Modem(
            home=self.home,
            timings=config.modem,
            seed=config.seed,
            forbidden=config.forbidden_plmns,
            partners=config.preferred_partners or None,
        )
        self._countries = self.route.countries() or [(start, self.home.country)]
        self._ci = max(0, sum(1 for t, _ in self._countries if t <= start) - 1)
        self._country = self._countries[self._ci][1]
        self._forced: bool | None = None
        self._live_zone: str | None = None
        self._rng = random.Random(config.seed ^ 0x5EED_1105)
        self._t = start
        self.start = start
        self._busy_up = start
        self._busy_down = start
        self.reports: deque[CeregReport] = deque(maxlen=REPORTS_KEPT)
        self._reports_total = 0
        self._collect: list[CeregReport] | None = None
        self._time = {"home": 0.0, "roaming": 0.0, "unregistered": 0.0}
        self._time_by_plmn: dict[str, float] = {}
        self._usage: dict[str, _Usage] = {}
        self._plmns_seen: dict[str, None] = {}
        self._countries_seen: dict[str, None] = {}
        self._denials: dict[str, int] = {}
        self._registrations = 0
        self._counts = {
            "ok": 0,
            "unregistered": 0,
            "interrupted": 0,
            "retransmissions": 0,
            "bytes_not_sent": 0,
            "bytes_unattributed": 0,
        }
        self._step(start, power_on=True)

    # -- time -----------------------------------------------------------------

    @property
    def t(self) -> float:
        """Vehicle time up to which the model has run."""
        return self._t

    def next_wakeup(self) -> float | None:
        """Next vehicle time at which something may change, or None if nothing will."""
        times = [self.modem.next_wakeup()]
        if self._ci + 1 < len(self._countries):
            times.append(self._countries[self._ci + 1][0])
        if self._forced is None:
            times.append(self.coverage.next_transition(self._t))
        due = [t for t in times if t is not None]
        return min(due) if due else None

    def advance(self, now: float) -> None:
        """Run the model up to `now`, through every change on the way, in order."""
        if now < self._t:
            raise ValueError(f"link: time went backwards ({now:g} < {self._t:g})")
        while True:
            due = self.next_wakeup()
            if due is None or due > now:
                break
            self._step(due)
        if now > self._t:
            self._step(now)

    def handle(self, event: LinkEvent, now: float) -> list[CeregReport]:
        """Apply one event at `now`; returns the registration changes it caused."""
        self._collect = []
        try:
            self.advance(now)
            match event:
                case Position(lat=lat, lon=lon):
                    self._country = country_at(lat, lon)
                    self._live_zone = self.coverage.zone_at(lat, lon)
                case EnterCountry(country=country):
                    self._country = country
                    self._live_zone = None
                case SetCoverage(covered=covered):
                    self._forced = covered
                case PowerOn() | PowerOff():
                    self._feed(event, now)
                case Tick():
                    pass
            self._step(now)
            return self._collect
        finally:
            self._collect = None

    def _covered(self, t: float) -> bool:
        if self._forced is not None:
            return self._forced
        return self._live_zone is None and self.coverage.covered(t)

    def _step(self, t: float, *, power_on: bool = False) -> None:
        self._accumulate(t)
        self._t = t
        while self._ci + 1 < len(self._countries) and self._countries[self._ci + 1][0] <= t:
            self._ci += 1
            self._country = self._countries[self._ci][1]
            self._live_zone = None
        if self._country is not None:
            self._countries_seen.setdefault(self._country, None)
        modem = self.modem
        covered = self._covered(t)
        due = modem.next_wakeup()
        if (
            power_on
            or (due is not None and due <= t)
            or self._country != modem.country
            or covered != modem.covered
        ):
            self._sense(t, covered)
            self._feed(CountryChanged(country=self._country), t)
            self._feed(CoverageChanged(covered=covered), t)
            self._feed(Tick(), t)
        if power_on:
            self._feed(PowerOn(), t)

    def _sense(self, t: float, covered: bool) -> None:
        rsrp = self.coverage.rsrp(t) if covered else None
        if rsrp != self.modem.rsrp:
            self._feed(SignalChanged(rsrp=rsrp), t)

    def _feed(self, event: ModemEvent, t: float) -> None:
        for report in self.modem.handle(event, t):
            self.reports.append(report)
            self._reports_total += 1
            if self._collect is not None:
                self._collect.append(report)
            if report.stat in (Cereg.REGISTERED_HOME, Cereg.REGISTERED_ROAMING):
                self._registrations += 1
                if report.plmn is not None:
                    self._plmns_seen.setdefault(report.plmn, None)
            elif report.stat is Cereg.DENIED and report.plmn is not None:
                self._denials[report.plmn] = self._denials.get(report.plmn, 0) + 1

    def _accumulate(self, t: float) -> None:
        dt = t - self._t
        if dt <= 0:
            return
        stat = self.modem.cereg
        key = {Cereg.REGISTERED_HOME: "home", Cereg.REGISTERED_ROAMING: "roaming"}.get(
            stat, "unregistered"
        )
        self._time[key] += dt
        plmn = self.modem.plmn
        if plmn is not None:
            self._time_by_plmn[plmn] = self._time_by_plmn.get(plmn, 0.0) + dt

    # -- state ----------------------------------------------------------------

    @property
    def registered(self) -> bool:
        return self.modem.registered

    def snapshot(self, now: float | None = None) -> LinkSnapshot:
        """The link at `now` (default: where the model stands)."""
        if now is not None:
            self.advance(now)
        modem = self.modem
        self._sense(self._t, self._covered(self._t))
        serving = modem.serving
        roaming = modem.state is RegState.REGISTERED_ROAMING
        rat = modem.rat
        latency: float | None = None
        up = down = 0.0
        loss = 1.0
        profile = PROFILES.get(rat)
        if serving is not None and profile is not None:
            rsrp = modem.rsrp if modem.rsrp is not None else GOOD_RSRP_DBM
            quality = (rsrp - EDGE_RSRP_DBM) / (GOOD_RSRP_DBM - EDGE_RSRP_DBM)
            quality = min(1.0, max(0.05, quality))
            latency = profile.latency_s * (2.0 - quality)
            if roaming:
                latency += ROAMING_EXTRA_LATENCY_S
            up = profile.uplink_bytes_per_s * quality
            down = profile.downlink_bytes_per_s * quality
            loss = min(0.5, profile.loss + (1.0 - quality) * 0.03)
        return LinkSnapshot(
            t=self._t,
            state=modem.state,
            cereg=modem.cereg,
            plmn=modem.plmn,
            operator=serving.name if serving is not None else None,
            country=self._country,
            roaming=roaming,
            rat=rat,
            rsrp=modem.rsrp,
            latency_s=latency,
            uplink_bytes_per_s=up,
            downlink_bytes_per_s=down,
            loss=loss,
        )

    @property
    def country(self) -> str | None:
        """The country the van is in, as the model last placed it."""
        return self._country

    def batch_window(self, now: float) -> float:
        """Seconds of records to gather before the next send (the policy's answer)."""
        return self.policy.window(self.snapshot(now))

    # -- traffic --------------------------------------------------------------

    def send(self, nbytes: int, now: float) -> float | None:
        """Upload `nbytes` at `now`: vehicle time of delivery, or None if not sent."""
        return self._transfer(nbytes, now, up=True)

    def receive(self, nbytes: int, now: float) -> float | None:
        """Download `nbytes` at `now`: vehicle time of delivery, or None if not received."""
        return self._transfer(nbytes, now, up=False)

    def account(self, now: float, *, up: int = 0, down: int = 0) -> None:
        """Charge bytes that really crossed (the proxy's traffic) to the serving network."""
        if up < 0 or down < 0:
            raise ValueError("link: byte counts cannot be negative")
        self.advance(now)
        plmn = self.modem.plmn
        if plmn is None:
            self._counts["bytes_unattributed"] += up + down
            return
        usage = self._usage.setdefault(plmn, _Usage())
        usage.up += up
        usage.down += down

    def _disruption_after(self, now: float) -> float | None:
        times = []
        if self._ci + 1 < len(self._countries):
            times.append(self._countries[self._ci + 1][0])
        if self._forced is None:
            edge = self.coverage.next_transition(now)
            if edge is not None:
                times.append(edge)
        return min(times) if times else None

    def _lost_segments(self, segments: int, loss: float) -> int:
        """Seeded count of segments lost once (each is resent)."""
        if segments <= 64:
            return sum(self._rng.random() < loss for _ in range(segments))
        mean = segments * loss
        return max(0, round(self._rng.gauss(mean, math.sqrt(mean * (1.0 - loss)))))

    def _transfer(self, nbytes: int, now: float, *, up: bool) -> float | None:
        if isinstance(nbytes, bool) or not isinstance(nbytes, int) or nbytes < 0:
            raise ValueError(f"link: nbytes must be a non-negative int, got {nbytes!r}")
        self.advance(now)
        link = self.snapshot()
        if not link.registered or link.plmn is None or link.latency_s is None:
            self._counts["unregistered"] += 1
            self._counts["bytes_not_sent"] += nbytes
            return None
        rate = link.uplink_bytes_per_s if up else link.downlink_bytes_per_s
        start = max(now, self._busy_up if up else self._busy_down)
        serialised = start + nbytes / rate
        segments = max(1, math.ceil(nbytes / SEGMENT_BYTES))
        lost = self._lost_segments(segments, link.loss)
        delivered = serialised + link.latency_s
        if lost:
            serialised += lost * min(nbytes, SEGMENT_BYTES) / rate
            if segments < FAST_RETRANSMIT_SEGMENTS:
                recovery = max(MIN_RTO_S, 4.0 * link.latency_s)
            else:
                recovery = 2.0 * link.latency_s
            delivered = serialised + link.latency_s + recovery
        cut = self._disruption_after(now)
        if cut is not None and delivered > cut:
            self._counts["interrupted"] += 1
            self._counts["bytes_not_sent"] += nbytes
            serialised = min(serialised, cut)
            delivered_at: float | None = None
        else:
            self._counts["ok"] += 1
            self._counts["retransmissions"] += lost
            usage = self._usage.setdefault(link.plmn, _Usage())
            if up:
                usage.up += nbytes
            else:
                usage.down += nbytes
            delivered_at = delivered
        if up:
            self._busy_up = serialised
        else:
            self._busy_down = serialised
        return delivered_at

    # -- report ---------------------------------------------------------------

    def summary(self) -> dict[str, Any]:
        """Plain-data account of the run so far (JSON-serialisable)."""
        by_plmn: dict[str, dict[str, Any]] = {}
        billed = {"home_plan": {"up": 0, "down": 0}, "service": {"up": 0, "down": 0}}
        for plmn, usage in sorted(self._usage.items()):
            op = BY_PLMN[plmn]
            roaming = plmn != self.home.plmn
            payer = "service" if roaming else "home_plan"
            by_plmn[plmn] = {
                "operator": op.name,
                "country": op.country,
                "up": usage.up,
                "down": usage.down,
                "roaming": roaming,
                "billed_to": payer,
            }
            billed[payer]["up"] += usage.up
            billed[payer]["down"] += usage.down
        snap = self.snapshot()
        return {
            "t": round(self._t, 3),
            "home_plmn": self.home.plmn,
            "state": snap.state.value,
            "cereg": int(snap.cereg),
            "plmn": snap.plmn,
            "country": snap.country,
            "rat": snap.rat.value,
            "time_home_s": round(self._time["home"], 3),
            "time_roaming_s": round(self._time["roaming"], 3),
            "time_unregistered_s": round(self._time["unregistered"], 3),
            "time_by_plmn_s": {p: round(s, 3) for p, s in sorted(self._time_by_plmn.items())},
            "plmns_seen": list(self._plmns_seen),
            "countries_seen": list(self._countries_seen),
            "bytes_by_plmn": by_plmn,
            "bytes_billed": billed,
            "registrations": self._registrations,
            "reconnects": max(0, self._registrations - 1),
            "denials": dict(sorted(self._denials.items())),
            "sends": {
                "ok": self._counts["ok"],
                "unregistered": self._counts["unregistered"],
                "interrupted": self._counts["interrupted"],
                "retransmissions": self._counts["retransmissions"],
            },
            "bytes_not_sent": self._counts["bytes_not_sent"],
            "bytes_unattributed": self._counts["bytes_unattributed"],
            "cereg_reports": self._reports_total,
        }

    @classmethod
    def from_dict(cls, raw: object, where: str = "link") -> Link:
        return cls(LinkConfig.from_dict(raw, where))
