"""The reporting policy: which facts become telemetry records, and when.

Theory of operation. ``TelemetryPart`` is a core part that also wraps the parts whose
``Emit`` actions it turns into records (the services): the core calls it, it calls
them, and every ``Emit`` they return is numbered and replaced by a record in the same
call. Whatever the part and its inner parts produce within one ``handle`` call leaves as
one ``StoreRecords`` action, which the driver commits in one transaction and the uplink
sends in one batch. Other actions (CAN frames, logs) pass through unchanged.

Its own observations, all on vehicle time:
- a snapshot every ``snapshot_period`` seconds (and one at activation), as a delta
  against the newest snapshot the backend has acknowledged (``Ack`` events), full when
  none is acknowledged yet in this boot epoch;
- change events for doors, windows, bonnet, lock, plug, gear and charging status. Each
  signal sends at most once per ``min_interval``; a change inside the interval is held and
  sent, with the value current then, when the interval ends. Changes due together share
  one record;
- a low-tyre alarm when a pressure falls below ``tyre_low_kpa``, once; it is cleared
  (and may be raised again) when the pressure is back above the threshold plus
  ``tyre_recover_kpa``.

The service is switched by ``ServiceActivation`` events (from the signed downlink). While
it is not active the part produces no record at all: inner parts still run, their
``Emit`` actions are discarded and counted. Activation produces a ``service`` record, the
low-tyre alarms that hold, and a snapshot; deactivation flushes held changes and ends
with a ``service`` record.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from tcu.core import Part
from tcu.errors import ConfigError
from tcu.events import Ack, Action, Emit, Log, ServiceActivation, StoreRecords
from tcu.telemetry.codec.schema import dumps
from tcu.telemetry.records import BASE_SEQ, KIND_CODES, SIGNAL_KINDS, Record, is_vin, wire_value
from tcu.vehicle import catalogue as cat
from tcu.vehicle.catalogue import CATALOGUE, SIGNAL_IDS, Value
from tcu.vehicle.state import VehicleState

CHANGE_PATHS: tuple[str, ...] = (
    *cat.DOORS,
    *cat.WINDOWS,
    cat.BONNET,
    cat.LOCKED,
    cat.PLUG_CONNECTED,
    cat.PLUG_LOCKED,
    cat.INFRA_CONNECTED,
    cat.GEAR,
    cat.CHARGING_STATUS,
)
EMIT_KINDS = frozenset(KIND_CODES) - SIGNAL_KINDS
INF = float("inf")

CommandResultHook = Callable[[Mapping[str, Any], float], list[Action]]


@dataclass(frozen=True, slots=True, kw_only=True)
class TelemetryConfig:
    vin: str
    snapshot_period: float = 60.0
    min_interval: float = 2.0
    tyre_low_kpa: float = 300.0
    tyre_recover_kpa: float = 10.0
    change_paths: tuple[str, ...] = CHANGE_PATHS
    snapshot_paths: tuple[str, ...] = tuple(CATALOGUE)
    remember_snapshots: int = 64

    def __post_init__(self) -> None:
        if not is_vin(self.vin):
            raise ConfigError(f"VIN {self.vin!r}: must be 17 characters A-Z/0-9 without I, O, Q")
        if not self.snapshot_period > 0:
            raise ConfigError(f"snapshot period must be > 0 s, got {self.snapshot_period}")
        if not self.min_interval >= 0:
            raise ConfigError(f"change minimum interval must be >= 0 s, got {self.min_interval}")
        if not self.tyre_recover_kpa >= 0:
            raise ConfigError("tyre recovery margin must be >= 0 kPa")
        if self.remember_snapshots < 1:
            raise ConfigError("remember_snapshots must be >= 1")
        for path in (*self.change_paths, *self.snapshot_paths):
            if path not in CATALOGUE:
                raise ConfigError(f"telemetry: unknown signal path {path!r}")


@dataclass(slots=True)
class TelemetryCounts:
    records: Counter[str] = field(default_factory=Counter)
    full_snapshots: int = 0
    delta_snapshots: int = 0
    coalesced_changes: int = 0
    suppressed_emits: int = 0
    rejected_emits: int = 0
    invalid_values: int = 0
    activations: int = 0
    deactivations: int = 0


class TelemetryPart:
    """Turns vehicle state and the inner parts' ``Emit`` actions into numbered records."""

    def __init__(
        self,
        state: VehicleState,
        config: TelemetryConfig,
        *,
        epoch: int,
        inner: Iterable[Part] = (),
        active: bool = False,
        on_command_result: CommandResultHook | None = None,
    ) -> None:
        self.state = state
        self.config = config
        self.epoch = epoch
        self.inner: list[Part] = list(inner)
        self.active = active
        self.on_command_result = on_command_result
        self.counts = TelemetryCounts()
        self.seq = 0
        self.base: tuple[int, dict[int, Value | None]] | None = None
        self._unacked: dict[int, dict[int, Value | None]] = {}
        self._change_paths = frozenset(config.change_paths)
        self._last_sent: dict[str, float] = {}
        self._held: dict[str, float] = {}
        self._tyres_low: set[str] = set()
        self._next_snapshot = 0.0 if active else INF
        self._ready: list[Record] = []
        self._changes: dict[str, Value | None] = {}

    # --- Part protocol -------------------------------------------------------------------

    def on_signals(self, changed: list[str], now: float) -> list[Action]:
        actions: list[Action] = []
        for part in self.inner:
            actions.extend(part.on_signals(changed, now))
        if self.active:
            for path in changed:
                if path in self._change_paths:
                    self._note_change(path, now)
                elif path in cat.TYRES:
                    self._check_tyre(path, now)
        return self._finish(actions, now)

    def on_event(self, event: Any, now: float) -> list[Action] | None:
        if isinstance(event, Ack):
            self._acknowledged(event)
            return []
        if isinstance(event, ServiceActivation):
            return self._finish(self._switch(event, now), now)
        actions: list[Action] = []
        handled = False
        for part in self.inner:
            out = part.on_event(event, now)
            if out is not None:
                handled = True
                actions.extend(out)
        if not handled:
            return None
        return self._finish(actions, now)

    def on_tick(self, now: float) -> list[Action]:
        actions: list[Action] = []
        for part in self.inner:
            if part.next_deadline() <= now:
                actions.extend(part.on_tick(now))
        if self.active:
            for path, due in list(self._held.items()):
                if due <= now:
                    del self._held[path]
                    self._send_change(path, now)
            if self._next_snapshot <= now:
                self._snapshot(now)
                period = self.config.snapshot_period
                while self._next_snapshot <= now:
                    self._next_snapshot += period
        return self._finish(actions, now)

    def next_deadline(self) -> float:
        own = min(self._held.values(), default=self._next_snapshot)
        own = min(own, self._next_snapshot)
        return min([own, *(p.next_deadline() for p in self.inner)])

    # --- driver hooks (replay session) -----------------------------------------------------

    def on_action(self, action: Action, now: float) -> None:
        for part in self.inner:
            sink = getattr(part, "on_action", None)
            if sink is not None:
                sink(action, now)

    def contribute(self, report: Any, now: float) -> None:
        c = self.counts
        summary = {
            "service_active": self.active,
            "epoch": self.epoch,
            "records": dict(sorted(c.records.items())),
            "last_seq": self.seq,
            "full_snapshots": c.full_snapshots,
            "delta_snapshots": c.delta_snapshots,
            "coalesced_changes": c.coalesced_changes,
            "suppressed_while_inactive": c.suppressed_emits,
            "rejected_emits": c.rejected_emits,
            "invalid_values": c.invalid_values,
            "activations": c.activations,
            "deactivations": c.deactivations,
        }
        report.extra["telemetry"] = summary
        lines = [
            "Telemetry",
            f"  service: {'active' if self.active else 'not active'}"
            f" (activated {c.activations}x, deactivated {c.deactivations}x)",
            f"  records produced: {self.seq} in epoch {self.epoch}"
            + "".join(f", {k} {v}" for k, v in sorted(c.records.items())),
            f"  snapshots: {c.full_snapshots} full, {c.delta_snapshots} delta;"
            f" changes coalesced: {c.coalesced_changes}",
            f"  emits discarded while inactive: {c.suppressed_emits};"
            f" refused: {c.rejected_emits}; invalid values: {c.invalid_values}",
        ]
        report.sections.append("\n".join(lines))
        for part in self.inner:
            hook = getattr(part, "contribute", None)
            if hook is not None:
                hook(report, now)

    # --- records ---------------------------------------------------------------------------

    def _finish(self, actions: list[Action], now: float) -> list[Action]:
        out: list[Action] = []
        for action in actions:
            if isinstance(action, Emit):
                out.extend(self._emitted(action, now))
                out.append(action)  # the host shows it to its sinks
            else:
                out.append(action)
        if self._changes:
            body = {SIGNAL_IDS[p]: v for p, v in self._changes.items()}
            self._changes = {}
            self._record("change", body, now)
        if self._ready:
            out.append(StoreRecords(records=tuple(self._ready)))
            self._ready = []
        return out

    def _record(self, kind: str, body: Mapping[Any, Any], now: float) -> None:
        record = Record(
            vin=self.config.vin,
            epoch=self.epoch,
            seq=self.seq + 1,
            t_ms=max(0, round(now * 1000)),
            kind=kind,
            body=body,
        )
        self.seq += 1
        self.counts.records[kind] += 1
        self._ready.append(record)

    def _emitted(self, emit: Emit, now: float) -> list[Action]:
        if not self.active:
            self.counts.suppressed_emits += 1
            return []
        problem = None
        if emit.kind not in EMIT_KINDS:
            problem = f"kind {emit.kind!r} is not one of {', '.join(sorted(EMIT_KINDS))}"
        elif not all(isinstance(k, str) for k in emit.body):
            problem = "body keys must be text"
        else:
            try:
                dumps(emit.body)
            except (ValueError, TypeError) as exc:
                problem = f"body cannot be encoded: {exc}"
        if problem is not None:
            self.counts.rejected_emits += 1
            return [Log(level="warning", text=f"telemetry: {emit.kind} record refused: {problem}")]
        self._record(emit.kind, emit.body, now)
        if emit.kind == "command_result" and self.on_command_result is not None:
            return self.on_command_result(emit.body, now)
        return []

    def _value(self, path: str, now: float) -> Value | None:
        try:
            return wire_value(path, self.state.get(path, now))
        except ValueError:
            self.counts.invalid_values += 1
            return None

    def _note_change(self, path: str, now: float) -> None:
        if path in self._held:
            self.counts.coalesced_changes += 1
            return
        last = self._last_sent.get(path, -INF)
        if now - last >= self.config.min_interval:
            self._send_change(path, now)
        else:
            self._held[path] = last + self.config.min_interval

    def _send_change(self, path: str, now: float) -> None:
        self._last_sent[path] = now
        self._changes[path] = self._value(path, now)

    def _check_tyre(self, path: str, now: float) -> None:
        value = self._value(path, now)
        if not isinstance(value, float):
            return
        threshold = self.config.tyre_low_kpa
        if path not in self._tyres_low and value < threshold:
            self._tyres_low.add(path)
            self._tyre_alarm(path, value, "raised", now)
        elif path in self._tyres_low and value >= threshold + self.config.tyre_recover_kpa:
            self._tyres_low.discard(path)
            self._tyre_alarm(path, value, "cleared", now)

    def _tyre_alarm(self, path: str, value: float, state: str, now: float) -> None:
        body = {
            "alarm": "tyre_pressure_low",
            "state": state,
            "signal": path,
            "pressure_kpa": value,
            "threshold_kpa": self.config.tyre_low_kpa,
        }
        self._record("alarm", body, now)

    def _snapshot(self, now: float) -> None:
        values = {SIGNAL_IDS[p]: self._value(p, now) for p in self.config.snapshot_paths}
        body: dict[int, Value | None]
        if self.base is None:
            body = {BASE_SEQ: 0, **values}
            self.counts.full_snapshots += 1
        else:
            base_seq, base = self.base
            body = {BASE_SEQ: base_seq}
            for key, value in values.items():
                old = base.get(key, _MISSING)
                if old is _MISSING or old != value or type(old) is not type(value):
                    body[key] = value
            self.counts.delta_snapshots += 1
        self._record("snapshot", body, now)
        self._unacked[self.seq] = values
        while len(self._unacked) > self.config.remember_snapshots:
            del self._unacked[next(iter(self._unacked))]

    def forget_dropped(self, dropped: Iterable[tuple[int, int, str]]) -> None:
        """The outbox dropped these (epoch, seq, kind): never use one as a delta base.

        The backend may acknowledge past a dropped record (the batch names it as missing),
        but it never stored it, so a delta against it could not be resolved.
        """
        for epoch, seq, kind in dropped:
            if epoch == self.epoch and kind == "snapshot":
                self._unacked.pop(seq, None)

    def _acknowledged(self, ack: Ack) -> None:
        if ack.epoch != self.epoch:
            return
        covered = [seq for seq in self._unacked if seq <= ack.sequence]
        if not covered:
            return
        newest = max(covered)
        self.base = (newest, self._unacked[newest])
        for seq in covered:
            del self._unacked[seq]

    def _switch(self, event: ServiceActivation, now: float) -> list[Action]:
        cause = f" (command {event.command_id})" if event.command_id else ""
        if event.active == self.active:
            state = "active" if self.active else "not active"
            return [Log(level="info", text=f"telemetry service already {state}{cause}")]
        if event.active:
            self.active = True
            self.counts.activations += 1
            self._last_sent.clear()
            self._held.clear()
            self._tyres_low.clear()
            self._record("service", {"active": True, "command_id": event.command_id}, now)
            for path in cat.TYRES:
                self._check_tyre(path, now)
            self._snapshot(now)
            self._next_snapshot = now + self.config.snapshot_period
            return [Log(level="info", text=f"telemetry service activated{cause}")]
        for path in list(self._held):
            self._send_change(path, now)
        self._held.clear()
        if self._changes:
            body = {SIGNAL_IDS[p]: v for p, v in self._changes.items()}
            self._changes = {}
            self._record("change", body, now)
        self._record("service", {"active": False, "command_id": event.command_id}, now)
        self.active = False
        self.counts.deactivations += 1
        self._next_snapshot = INF
        return [Log(level="info", text=f"telemetry service deactivated{cause}")]


_MISSING: Any = object()
