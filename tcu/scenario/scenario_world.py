"""ScenarioWorld: scenarios drive the TCU, its SIM link and the backend, on one virtual clock.

Theory of operation. Each case gets a ``tcu.compose.memory.MemoryWorld`` in a temporary
directory of its own: the TCU's host as every driver has it (services inside telemetry,
the signed downlink, the durable outbox and uplink queue), the SIM link model and the
cloud stub in memory, all scheduled on one replay driver.
The bus (a trace, frames generated from a storyline, or nothing) is fed frame by frame
in vehicle time; everything else happens on the driver's queue at its own instant.

The link is the modelled SIM link whenever the case says anything about it or about the
TCU's power (``home_plmn``, ``coverage``, ``move``, ``power_cycle``, ``registration``,
``roaming``); otherwise it is an ideal link, always registered at home, that delivers at
once, so service scenarios keep exact timings. The telemetry service starts inactive:
``activate``/``deactivate`` are the backend's signed commands, as in the field.

Steps. ``set``/``release`` (and ``move`` to a position) are overrides of the van's bus:
all values of one step are applied together, by one callable scheduled on the driver,
and applied again after every boot. ``command`` is signed by the backend and travels the
link; ``forged_command``, ``expired_command`` and ``replayed_command`` are the cloud
stub's hostile messages (``cloud_stub.commands``). ``coverage``, ``move`` to a country
and ``power_cycle`` are link events; a power cycle switches the TCU off (it hears
nothing, the modem detaches), and after ``off_for`` boots a new TCU on the same outbox.

Observations. The world is one sink of the host: it hears every boot, every stored
record, every emit (verdicts, sessions, alarms, command results, what the downlink part
made of each message) and every log line, with no hook into the core. Verdicts and
sessions come from the services of every boot; a command's outcome is ``rejected`` when
the TCU's downlink refused it, ``not_delivered`` while it has not reached the TCU, else
the latest result the services gave it. ``backend`` compares what the store holds with
what the TCU produced, epoch by epoch; ``registration`` and ``roaming`` read the link
model.
"""

from __future__ import annotations

import contextlib
import dataclasses
import shutil
import tempfile
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cloud_stub.commands import SignedDownlink, expired, forge, replayed
from cloud_stub.errors import CloudError
from tcu.compose.memory import MemoryWorld, scratch_dir
from tcu.compose.relay import BrokerRelay
from tcu.compose.replay import DEFAULT_HOME_PLMN
from tcu.events import Action, Emit
from tcu.link.sim import EnterCountry, Link, LinkConfig, Position, PowerOff, PowerOn, SetCoverage
from tcu.runtime.assembly import Tcu
from tcu.runtime.host import Sink
from tcu.runtime.memory import IdealLink
from tcu.scenario.bus import finish_bus, open_bus, reference_setup
from tcu.scenario.cases import Case, CommandSpec, Expectation, Step
from tcu.scenario.world import (
    NotSupported,
    Observation,
    WorldOptions,
    check,
    session_observation,
    verdict_observation,
)
from tcu.services.sessions import Transition
from tcu.services.verdicts import Verdict
from tcu.telemetry.downlink import DOWNLINK_EMIT
from tcu.telemetry.policy import TelemetryConfig
from tcu.telemetry.records import KIND_CODES, KIND_NAMES
from tcu.vehicle.catalogue import LATITUDE, LONGITUDE

LINK_NEEDS = frozenset({"coverage", "move", "power_cycle", "registration", "roaming"})
REPORTING = frozenset({"snapshot_period_s", "min_change_interval_s"})
CONNECTED_SERVICE = "telemetry"
UNHANDLED = "no part handles "


@dataclass(slots=True)
class _Sent:
    """A downlink message a step sent, and what the TCU made of it."""

    action: str
    name: str
    command_id: str
    payload: bytes
    t: float
    handled_at: float | None = None
    refused: str | None = None


def uses_link(case: Case) -> bool:
    """Whether the case needs the modelled SIM link rather than the ideal one."""
    return case.vehicle.home_plmn is not None or bool(case.needs & LINK_NEEDS)


def telemetry_config(case: Case) -> TelemetryConfig:
    """The reporting policy of the case's van (``vehicle.reporting``)."""
    config = TelemetryConfig(vin=case.vehicle.config.vin)
    reporting = case.vehicle.reporting
    return dataclasses.replace(
        config,
        snapshot_period=reporting.get("snapshot_period_s", config.snapshot_period),
        min_interval=reporting.get("min_change_interval_s", config.min_interval),
    )


class ScenarioWorld:
    """The TCU, its SIM link and the backend in virtual time; see the module docstring."""

    def __init__(self, case: Case, options: WorldOptions) -> None:
        self.case = case
        self._unsupported: NotSupported | None = None
        extra = sorted(set(case.vehicle.reporting) - REPORTING)
        if extra:
            self._unsupported = NotSupported(
                "vehicle.reporting." + ", vehicle.reporting.".join(extra),
                "the telemetry policy has a snapshot period and a change interval only",
            )
        self.bus, origin = open_bus(case)
        vehicle = case.vehicle.config
        if origin is not None and not case.vehicle.start_given:
            vehicle = dataclasses.replace(vehicle, origin_epoch=origin)
        self.vin = vehicle.vin
        self.modelled_link = uses_link(case)
        link = None
        if self.modelled_link:
            link = LinkConfig(home_plmn=case.vehicle.home_plmn or DEFAULT_HOME_PLMN)
        by_country = any(s.action == "move" and "country" in s.value for s in case.steps)
        self.workdir = Path(tempfile.mkdtemp(prefix="tcu-scenario-", dir=scratch_dir()))
        self.boots: list[Tcu] = []
        self.results: list[dict[str, Any]] = []
        self.alarms = 0
        self.unhandled = 0
        self.sent: list[_Sent] = []
        self.produced: dict[int, int] = {}
        self.overrides: dict[str, Any] = {}
        self._genuine: dict[str, SignedDownlink] = {}
        self.relay: BrokerRelay | None = None
        try:
            self.world = MemoryWorld(
                reference_setup(),
                vehicle,
                self.workdir,
                telemetry=telemetry_config(case),
                link=link if link is not None else IdealLink(latency=0.0),
                follow_gnss=not by_country,
                activate=False,
                sinks=[_Observer(self)],
            )
        except BaseException:
            self.bus.close()
            shutil.rmtree(self.workdir, ignore_errors=True)
            raise
        self.host = self.world.host
        self.transport = self.world.transport
        if options.broker != "memory":
            try:
                self.relay = BrokerRelay(
                    options.broker,  # type: ignore[arg-type]
                    self.workdir,
                    self.vin,
                )
            except BaseException:
                self.close()
                raise
            self.transport.carry = self.relay.carry

    # -- the World protocol ---------------------------------------------------------------

    def advance(self, until: float) -> None:
        if self._unsupported is not None:
            raise self._unsupported
        bus = self.bus
        driver = self.world.driver
        host = self.host
        while bus.next is not None and bus.next_t <= until:
            msg, t = bus.next, bus.next_t
            driver.advance(t)
            actions = host.frame(msg, t)
            if actions:
                host.carry_out(actions, t)
            bus.pull()
        driver.advance(until)

    def apply(self, step: Step, now: float) -> None:
        action = step.action
        value = step.value
        w = self.world
        t = self.transport
        if action == "set":
            self._set(dict(value), now)
        elif action == "release":
            self._release(tuple(value), now)
        elif action == "move":
            if "country" in value:
                t.link_event(EnterCountry(country=value["country"]), now)
            else:
                self._set({LATITUDE: value["lat"], LONGITUDE: value["lon"]}, now)
                t.link_event(Position(lat=value["lat"], lon=value["lon"]), now)
        elif action == "coverage":
            t.link_event(SetCoverage(covered=None if value else False), now)
        elif action == "broker":
            self._broker(bool(value), now)
        elif action == "power_cycle":
            self._power_off(now)
            w.driver.schedule(now + float(value), self._boot)
        elif action in ("command", "forged_command", "expired_command", "replayed_command"):
            self._command(action, value, now)
        elif action == "activate":
            w.activate(now)
        elif action == "deactivate":
            w.deactivate(now)
        else:
            raise NotSupported(str(action))
        w.advance(now)

    def observe(self, expectation: Expectation, now: float) -> Observation:
        kind = expectation.kind
        f = expectation.fields
        if kind == "verdict":
            return self._verdict(expectation, f["service"])
        if kind == "session":
            return self._session(expectation, f["service"])
        if kind == "vehicle":
            state = self.host.core.state
            return check(expectation, {p: state.get(p, now) for p in f})
        if kind == "command":
            return self._command_outcome(expectation, f["name"])
        if kind == "counters":
            return check(expectation, self.counters())
        if kind == "backend":
            return check(expectation, self.backend())
        if kind == "registration":
            return check(expectation, self.registration(now))
        if kind == "roaming":
            return check(expectation, self.roaming())
        raise NotSupported(kind)

    def finish(self, until: float | None) -> float:
        return finish_bus(self.bus, self.advance, self.world.now, until)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.bus.close()
        with contextlib.suppress(Exception):
            self.world.close()
        if self.relay is not None:
            with contextlib.suppress(Exception):
                self.relay.close()
        shutil.rmtree(self.workdir, ignore_errors=True)

    # -- what the world reports -----------------------------------------------------------

    def counters(self) -> dict[str, int]:
        """Every counter of docs/scenarios.md, summed over the TCU's boots."""
        w, host, sent = self.world, self.host, self.transport.counts
        counts: Counter[str] = Counter()
        for boot in self.boots:
            counts.update(boot.core.summary_counts())
        stats = w.backend.ingest.stats()
        counts.update(
            verdicts=len(self.verdicts()),
            transitions=len(self.transitions()),
            alarms=self.alarms,
            can_requests=host.counts.frames_sent,
            unhandled_events=self.unhandled,
            records=host.counts.records_produced,
            dropped=host.counts.records_dropped_at_cap,
            published=sent.batches_sent + sent.status_sent,
            acked=host.queue.stats.records_acked if host.queue is not None else 0,
            stored=w.backend.store.count_records(self.vin),
            duplicates=stats.duplicates,
            rejected=sum(stats.refused.values()),
            commands_rejected=sum(
                sum(b.downlink.refused.values()) for b in self.boots if b.downlink is not None
            ),
            outbox_depth=w.outbox.depth(),
        )
        return dict(counts)

    def backend(self) -> dict[str, Any]:
        """What the store holds for this van against what the TCU produced, epoch by epoch."""
        store = self.world.backend.store
        epochs = set(self.produced) | {p.epoch for p in store.progress() if p.vin == self.vin}
        kinds: Counter[str] = Counter(dict.fromkeys(KIND_CODES, 0))
        records = duplicates = gaps = missing = unexpected = 0
        for epoch in sorted(epochs):
            rows = store.records(self.vin, epoch)
            seqs = [r.seq for r in rows]
            kinds.update(KIND_NAMES.get(r.kind, str(r.kind)) for r in rows)
            stored = set(seqs)
            records += len(seqs)
            duplicates += len(seqs) - len(stored)
            gaps += max(stored, default=0) - len(stored)
            produced = set(range(1, self.produced.get(epoch, 0) + 1))
            missing += len(produced - stored)
            unexpected += len(stored - produced)
        return {
            "complete": missing == 0 and unexpected == 0,
            "records": records,
            "duplicates": duplicates,
            "gaps": gaps,
            "kinds": dict(kinds),
            "missing": missing,
            "received_twice": self.world.backend.ingest.stats().duplicates,
        }

    def registration(self, now: float) -> dict[str, Any]:
        link = self.transport.link
        if not isinstance(link, Link):
            return {"state": "registered_home", "plmn": None, "roaming": False}
        link.advance(max(now, link.t))
        snap = link.snapshot()
        return {
            "state": snap.state.value,
            "plmn": snap.plmn,
            "roaming": snap.roaming,
            "country": snap.country,
            "operator": snap.operator,
        }

    def roaming(self) -> dict[str, Any]:
        """Bytes carried by roaming networks: the connected service's, billed to the service."""
        summary = self.transport.link.summary()
        by_plmn: Mapping[str, Mapping[str, Any]] = summary.get("bytes_by_plmn", {})
        roamed = sum(u["up"] + u["down"] for u in by_plmn.values() if u.get("roaming"))
        billed = summary.get("bytes_billed", {}).get("service", {"up": 0, "down": 0})
        return {
            "service": CONNECTED_SERVICE,
            "bytes": roamed,
            "billed_to_service": billed["up"] + billed["down"],
        }

    def verdicts(self) -> list[Verdict]:
        return [v for b in self.boots for v in b.services.verdicts]

    def transitions(self) -> list[tuple[int, Transition]]:
        return [(i, t) for i, b in enumerate(self.boots) for t in b.services.transitions]

    # -- observations ---------------------------------------------------------------------

    def _verdict(self, expectation: Expectation, service: str) -> Observation:
        return verdict_observation(expectation, self.verdicts(), service)

    def _session(self, expectation: Expectation, service: str) -> Observation:
        return session_observation(expectation, self.transitions(), service)

    def _command_outcome(self, expectation: Expectation, name: str) -> Observation:
        sent = [s for s in self.sent if s.name == name]
        if not sent:
            return check(expectation, None, f"no {name} command was sent yet")
        s = sent[-1]
        reason: str | None = s.refused
        if s.handled_at is None:
            outcome = "not_delivered"
        elif s.refused is not None:
            outcome = "rejected"
        else:
            mine = [r for r in self.results if r.get("command_id") == s.command_id]
            outcome = str(mine[-1].get("status")) if mine else "accepted"
            codes = mine[-1].get("reasons") if mine else None
            reason = codes[0] if isinstance(codes, list) and codes else None
        statuses = [
            st
            for st in self.world.backend.store.statuses(self.vin)
            if st.command_id == s.command_id
        ]
        return check(
            expectation,
            {
                "name": name,
                "outcome": outcome,
                "sent_as": s.action,
                "command_id": s.command_id,
                "reason": reason,
                "backend_status": statuses[-1].outcome if statuses else None,
            },
        )

    # -- steps --------------------------------------------------------------------------

    def _set(self, values: dict[str, Any], now: float) -> None:
        self.overrides.update(values)
        self.world.driver.schedule(now, _Overrides(self, values, ()))

    def _release(self, paths: tuple[str, ...], now: float) -> None:
        for path in paths:
            self.overrides.pop(path, None)
        self.world.driver.schedule(now, _Overrides(self, {}, paths))

    def _command(self, action: str, spec: CommandSpec, now: float) -> None:
        commands = self.world.backend.commands
        epoch = self.world.vehicle.origin_epoch + now
        try:
            if action == "command":
                signed = commands.build(self.vin, spec.name, spec.argument, now_epoch=epoch)
                if spec.command_id is not None:
                    renamed = dataclasses.replace(signed.downlink, command_id=spec.command_id)
                    signed = commands.sign(renamed)
                self._genuine[spec.name] = signed
            elif action == "forged_command":
                signed = forge(commands, self.vin, spec.name, spec.argument, now_epoch=epoch)
            elif action == "expired_command":
                signed = expired(commands, self.vin, spec.name, spec.argument, now_epoch=epoch)
            else:
                signed = replayed(self._genuine[spec.name])
        except (CloudError, ValueError) as e:
            raise NotSupported(f"{action} {spec}", f"the backend cannot build it: {e}") from None
        self.sent.append(
            _Sent(
                action=action,
                name=spec.name,
                command_id=signed.downlink.command_id,
                payload=signed.payload,
                t=now,
            )
        )
        self.transport.deliver_downlink(signed.payload, now)

    def _broker(self, up: bool, now: float) -> None:
        if self.relay is not None and up != self.transport.broker_up:
            (self.relay.up if up else self.relay.down)()
        self.transport.set_broker(up, now)

    def _power_off(self, now: float) -> None:
        self.world.power_off(now)
        self.transport.link_event(PowerOff(), now)

    def _boot(self, now: float) -> list[Action]:
        self.world.power_on(now)
        self.transport.link_event(PowerOn(), now)
        if not self.overrides:
            return []
        core = self.host.core
        for path, value in self.overrides.items():
            core.state.override(path, value)
        actions: list[Action] = core.signals_changed(list(self.overrides), now)
        return actions

    # -- what the host tells ---------------------------------------------------------------

    def _emitted(self, emit: Emit, now: float) -> None:
        if emit.kind == "command_result":
            self.results.append(dict(emit.body))
        elif emit.kind == "alarm":
            self.alarms += 1
        elif emit.kind == DOWNLINK_EMIT:
            for s in self.sent:
                if s.handled_at is None and s.payload == emit.body["payload"]:
                    s.handled_at = now
                    s.refused = emit.body["refused"]
                    return


class _Observer(Sink):
    """The scenario world's ears on the host."""

    def __init__(self, world: ScenarioWorld) -> None:
        self.world = world

    def booted(self, tcu: Tcu, now: float) -> None:
        self.world.boots.append(tcu)

    def stored(self, records: tuple[Any, ...], dropped: dict[str, int], now: float) -> None:
        produced = self.world.produced
        for r in records:
            if r.seq > produced.get(r.epoch, 0):
                produced[r.epoch] = r.seq

    def emitted(self, emit: Emit, now: float) -> None:
        self.world._emitted(emit, now)

    def logged(self, level: str, text: str, now: float) -> None:
        if text.startswith(UNHANDLED):
            self.world.unhandled += 1


class _Overrides:
    """One step's overrides of the bus, applied together at the step's instant."""

    __slots__ = ("owner", "release", "values")

    def __init__(
        self, owner: ScenarioWorld, values: dict[str, Any], release: tuple[str, ...]
    ) -> None:
        self.owner, self.values, self.release = owner, values, release

    def __call__(self, now: float) -> list[Action]:
        host = self.owner.host
        if host.off:
            return []  # the TCU is off: the bus's values are applied when it boots
        core = host.core
        state = core.state
        for path in self.release:
            state.release(path)
        for path, value in self.values.items():
            state.override(path, value)
        actions: list[Action] = core.signals_changed([*self.release, *self.values], now)
        return actions
