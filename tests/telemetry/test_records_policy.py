"""The reporting policy: snapshots, deltas, change events, alarms, and silence while inactive."""

from __future__ import annotations

from typing import Any

import pytest

from tcu.errors import ConfigError
from tcu.events import Ack, Action, Emit, Log, ServiceActivation, StoreRecords
from tcu.telemetry.codec.schema import BatchMessage, decode_batch, encode_batch, resolve_snapshot
from tcu.telemetry.policy import TelemetryConfig, TelemetryPart
from tcu.telemetry.records import BASE_SEQ, Record
from tcu.vehicle import catalogue as cat
from tcu.vehicle.catalogue import SIGNAL_IDS
from tcu.vehicle.state import VehicleState

VIN = "WDB9066331S123456"


class FakeService:
    """An inner part that emits what it is told to, on the next event."""

    def __init__(self) -> None:
        self.queue: list[Action] = []
        self.seen: list[Any] = []

    def on_signals(self, changed: list[str], now: float) -> list[Action]:
        out, self.queue = self.queue, []
        return out

    def on_event(self, event: Any, now: float) -> list[Action] | None:
        self.seen.append(event)
        out, self.queue = self.queue, []
        return out

    def on_tick(self, now: float) -> list[Action]:
        return []

    def next_deadline(self) -> float:
        return float("inf")


def make(
    *, active: bool = True, epoch: int = 3, **config: Any
) -> tuple[TelemetryPart, VehicleState, FakeService]:
    state = VehicleState()
    inner = FakeService()
    part = TelemetryPart(
        state, TelemetryConfig(vin=VIN, **config), epoch=epoch, inner=[inner], active=False
    )
    if active:
        part.on_event(ServiceActivation(active=True), 0.0)
    return part, state, inner


def records(actions: list[Action] | None) -> list[Record]:
    stores = [a for a in actions or [] if isinstance(a, StoreRecords)]
    assert len(stores) <= 1, "records of one call leave in one StoreRecords"
    return list(stores[0].records) if stores else []


def change(
    part: TelemetryPart, state: VehicleState, path: str, value: Any, now: float
) -> list[Record]:
    state.override(path, value)
    return records(part.on_signals([path], now))


def test_activation_sends_service_record_and_a_full_snapshot() -> None:
    part, state, _ = make(active=False)
    state.override(cat.SOC, 55.5)
    out = part.on_event(ServiceActivation(active=True, command_id="c-1"), 10.0)
    got = records(out)
    assert [r.kind for r in got] == ["service", "snapshot"]
    assert dict(got[0].body) == {"active": True, "command_id": "c-1"}
    snap = got[1]
    assert snap.base_seq == 0
    assert snap.body[SIGNAL_IDS[cat.SOC]] == 55.5
    assert len(snap.body) == len(cat.CATALOGUE) + 1
    assert [r.seq for r in got] == [1, 2]
    assert all(r.vin == VIN and r.epoch == 3 and r.t_ms == 10_000 for r in got)
    assert any(isinstance(a, Log) and "activated" in a.text for a in out or [])
    assert part.next_deadline() == 70.0


def test_snapshot_follows_the_configured_period() -> None:
    part, _, _ = make(snapshot_period=15.0)
    times: list[float] = []
    now = 0.0
    while len(times) < 4:
        now = part.next_deadline()
        if any(r.kind == "snapshot" for r in records(part.on_tick(now))):
            times.append(now)
    assert times == [15.0, 30.0, 45.0, 60.0]


def test_a_long_gap_gives_one_snapshot_not_a_burst() -> None:
    part, _, _ = make(snapshot_period=10.0)
    got = records(part.on_tick(95.0))
    assert [r.kind for r in got] == ["snapshot"]
    assert part.next_deadline() == 100.0


def test_snapshots_are_deltas_against_the_last_acknowledged_one() -> None:
    part, state, _ = make(snapshot_period=60.0)
    first = part.seq
    state.override(cat.SOC, 50.0)
    second = records(part.on_tick(60.0))[0]
    assert second.base_seq == 0, "nothing acknowledged yet: full"
    part.on_event(Ack(epoch=3, sequence=first), 61.0)
    state.override(cat.SOC, 49.0)
    state.override(cat.SPEED, 12.0)
    third = records(part.on_tick(120.0))[0]
    assert third.base_seq == first
    assert dict(third.body) == {
        BASE_SEQ: first,
        SIGNAL_IDS[cat.SOC]: 49.0,
        SIGNAL_IDS[cat.SPEED]: 12.0,
    }
    part.on_event(Ack(epoch=3, sequence=third.seq), 121.0)
    fourth = records(part.on_tick(180.0))[0]
    assert dict(fourth.body) == {BASE_SEQ: third.seq}, "nothing changed since the base"
    full_third = resolve_snapshot(third, resolve_snapshot(_first_snapshot(part, first), None))
    assert full_third[SIGNAL_IDS[cat.SOC]] == 49.0


def _first_snapshot(part: TelemetryPart, seq: int) -> Record:
    values = {k: None for k in SIGNAL_IDS.values()}
    return Record(
        vin=VIN, epoch=part.epoch, seq=seq, t_ms=0, kind="snapshot", body={0: 0, **values}
    )


def test_an_ack_of_another_epoch_moves_no_base_and_a_restart_is_full_again() -> None:
    part, _state, _ = make(epoch=3)
    part.on_event(Ack(epoch=2, sequence=99), 1.0)
    assert records(part.on_tick(60.0))[0].base_seq == 0
    part.on_event(Ack(epoch=3, sequence=part.seq), 61.0)
    assert records(part.on_tick(120.0))[0].base_seq != 0
    restarted, _, _ = make(epoch=4)
    assert restarted.base is None
    assert records(restarted.on_tick(60.0))[0].base_seq == 0


def test_a_delta_notices_a_signal_going_unknown_and_bool_versus_float() -> None:
    part, state, _ = make()
    state.override(cat.BONNET, True)
    state.override(cat.SOC, 1.0)
    snap = records(part.on_tick(60.0))[0]
    part.on_event(Ack(epoch=3, sequence=snap.seq), 60.5)
    state.override(cat.BONNET, None)
    delta = records(part.on_tick(120.0))[0]
    assert dict(delta.body) == {BASE_SEQ: snap.seq, SIGNAL_IDS[cat.BONNET]: None}


def test_a_change_is_sent_at_once_and_flapping_is_coalesced_not_lost() -> None:
    part, state, _ = make(min_interval=2.0)
    door = cat.DOOR_REAR
    first = change(part, state, door, True, 1.0)
    assert [(r.kind, dict(r.body)) for r in first] == [("change", {SIGNAL_IDS[door]: True})]
    for i, value in enumerate([False, True, False, True, False]):
        assert change(part, state, door, value, 1.2 + 0.3 * i) == []
    assert part.next_deadline() == 3.0
    held = records(part.on_tick(3.0))
    assert [(r.kind, dict(r.body), r.t_ms) for r in held] == [
        ("change", {SIGNAL_IDS[door]: False}, 3000)
    ]
    assert part.counts.coalesced_changes == 4
    assert change(part, state, door, True, 5.5) != [], "interval over: sent at once again"


def test_a_flap_back_to_the_sent_value_is_still_reported() -> None:
    part, state, _ = make(min_interval=2.0)
    change(part, state, cat.LOCKED, True, 0.0)
    change(part, state, cat.LOCKED, False, 0.5)
    change(part, state, cat.LOCKED, True, 1.0)
    (held,) = records(part.on_tick(2.0))
    assert dict(held.body) == {SIGNAL_IDS[cat.LOCKED]: True}


def test_changes_due_together_share_one_record() -> None:
    part, state, _ = make()
    state.override(cat.GEAR, "D")
    state.override(cat.PLUG_CONNECTED, False)
    got = records(part.on_signals([cat.GEAR, cat.PLUG_CONNECTED, cat.SPEED], 4.0))
    assert len(got) == 1
    assert dict(got[0].body) == {SIGNAL_IDS[cat.GEAR]: "D", SIGNAL_IDS[cat.PLUG_CONNECTED]: False}


def test_low_tyre_alarm_once_when_crossing_and_again_after_recovery() -> None:
    part, state, _ = make(tyre_low_kpa=300.0, tyre_recover_kpa=10.0)
    tyre = cat.TYRE_REAR_LEFT
    seen = []
    for t, kpa in enumerate([320.0, 290.0, 280.0, 305.0, 295.0, 315.0, 299.0]):
        for r in change(part, state, tyre, kpa, float(t)):
            assert r.kind == "alarm"
            seen.append((kpa, r.body["state"]))
    assert seen == [(290.0, "raised"), (315.0, "cleared"), (299.0, "raised")]


def test_activation_raises_an_alarm_for_a_tyre_already_low() -> None:
    part, state, _ = make(active=False)
    state.override(cat.TYRE_FRONT_LEFT, 250.0)
    got = records(part.on_event(ServiceActivation(active=True), 5.0))
    alarms = [r for r in got if r.kind == "alarm"]
    assert len(alarms) == 1 and alarms[0].body["signal"] == cat.TYRE_FRONT_LEFT


def test_inner_emits_become_records_in_the_same_batch() -> None:
    hook_calls: list[Any] = []
    part, state, inner = make()

    def hook(body: Any, now: float) -> list[Action]:
        hook_calls.append(dict(body))
        return []

    part.on_command_result = hook
    inner.queue = [
        Emit(kind="verdict", body={"service": "charging", "outcome": "refused"}),
        Emit(kind="command_result", body={"command_id": "c-9", "status": "refused"}),
        Log(level="info", text="passes through"),
    ]
    state.override(cat.BONNET, True)
    out = part.on_signals([cat.BONNET], 7.0)
    got = records(out)
    assert [r.kind for r in got] == ["verdict", "command_result", "change"]
    assert [r.seq for r in got] == [part.seq - 2, part.seq - 1, part.seq]
    assert any(isinstance(a, Log) and a.text == "passes through" for a in out)
    assert hook_calls == [{"command_id": "c-9", "status": "refused"}]
    batch = BatchMessage(vin=VIN, epoch=3, records=tuple(got))
    assert decode_batch(encode_batch(batch)) == batch


def test_an_emit_that_cannot_go_on_the_wire_is_refused_and_counted() -> None:
    part, _, inner = make()
    inner.queue = [Emit(kind="verdict", body={1: "int key"}), Emit(kind="gossip", body={})]  # type: ignore[dict-item]
    out = part.on_event(object(), 1.0)
    assert records(out) == []
    assert part.counts.rejected_emits == 2
    assert sum(isinstance(a, Log) and a.level == "warning" for a in out or []) == 2


def test_nothing_at_all_while_inactive() -> None:
    part, state, inner = make(active=False)
    assert part.next_deadline() == float("inf")
    inner.queue = [Emit(kind="alarm", body={"alarm": "x"})]
    state.override(cat.DOOR_FRONT_LEFT, True)
    state.override(cat.TYRE_FRONT_LEFT, 100.0)
    out = part.on_signals([cat.DOOR_FRONT_LEFT, cat.TYRE_FRONT_LEFT], 1.0)
    out += part.on_tick(3600.0)
    out += part.on_event(Ack(epoch=3, sequence=1), 3601.0) or []
    assert not any(isinstance(a, StoreRecords) for a in out)
    assert [a for a in out if isinstance(a, Emit)] == [Emit(kind="alarm", body={"alarm": "x"})]
    assert part.seq == 0
    assert part.counts.suppressed_emits == 1


def test_deactivation_flushes_held_changes_then_goes_silent() -> None:
    part, state, _ = make(min_interval=2.0)
    change(part, state, cat.BONNET, True, 1.0)
    change(part, state, cat.BONNET, False, 1.5)
    got = records(part.on_event(ServiceActivation(active=False, command_id="c-2"), 1.6))
    assert [r.kind for r in got] == ["change", "service"]
    assert dict(got[0].body) == {SIGNAL_IDS[cat.BONNET]: False}
    assert dict(got[1].body) == {"active": False, "command_id": "c-2"}
    assert part.next_deadline() == float("inf")
    assert change(part, state, cat.BONNET, True, 9.0) == []


def test_events_the_part_does_not_know_go_to_the_inner_parts() -> None:
    part, _, inner = make()
    marker = object()
    assert part.on_event(marker, 1.0) == []
    assert inner.seen[-1] is marker


def test_config_is_checked() -> None:
    with pytest.raises(ConfigError, match="VIN"):
        TelemetryConfig(vin="WDB9066331S12345O")
    with pytest.raises(ConfigError, match="period"):
        TelemetryConfig(vin=VIN, snapshot_period=0)
    with pytest.raises(ConfigError, match=r"Vehicle\.Nope"):
        TelemetryConfig(vin=VIN, change_paths=("Vehicle.Nope",))


def test_a_dropped_snapshot_is_never_a_delta_base() -> None:
    part, state, _ = make(snapshot_period=60.0)
    first = part.seq
    part.on_event(Ack(epoch=3, sequence=first), 1.0)
    state.override(cat.SOC, 50.0)
    second = records(part.on_tick(60.0))[0]
    part.forget_dropped([(3, second.seq, "snapshot"), (2, second.seq + 1, "snapshot")])
    # the backend acknowledges past the dropped record; the base stays the stored one
    part.on_event(Ack(epoch=3, sequence=second.seq), 61.0)
    third = records(part.on_tick(120.0))[0]
    assert third.base_seq == first
    assert dict(third.body)[SIGNAL_IDS[cat.SOC]] == 50.0
