"""ServicesPart: commands, automatic sessions, interruptions and timers, end to end."""

from __future__ import annotations

import json
from types import SimpleNamespace

import can
import pytest
from services_support import (
    CHARGING_OK,
    LOCK_OK,
    ORIGIN,
    PRECONDITIONING_OK,
    REQUEST_ID,
    VIN,
    FakeEncoder,
    Van,
    emits,
    sent,
    states,
)

from tcu.can.mapping import Mapping
from tcu.core import TcuCore
from tcu.errors import ConfigError
from tcu.events import Ack, Command, Log, SignalOverride, Tick
from tcu.services import ServicesPart, VehicleConfig, encoder_requests
from tcu.vehicle import catalogue as c

# Vehicle time 0 is 06:00 UTC; departure 07:00 is t=3600, preconditioning starts at 1800.
DEPARTURE_T = 3600.0
START_T = 1800.0


def requests(van: Van) -> list[str]:
    return [name for name, _ in van.encoder.calls]


# -- charging -------------------------------------------------------------------------------


def test_start_charging_allowed_sends_the_request() -> None:
    van = Van(CHARGING_OK)
    out = van.command(1.0, "start_charging")
    [verdict] = emits(out, "verdict")
    assert (verdict["service"], verdict["outcome"]) == ("charging", "allowed")
    assert states(van, "charging-1") == ["idle", "requested", "charging"]
    [frame] = sent(out)
    assert frame.arbitration_id == REQUEST_ID
    assert requests(van) == ["start_charging"]
    [result] = emits(out, "command_result")
    assert (result["status"], result["command_id"], result["session_id"]) == (
        "allowed",
        "c-start_charging-1",
        "charging-1",
    )
    assert emits(out, "alarm") == []


def test_start_charging_refused_lists_every_reason_and_raises_an_alarm() -> None:
    van = Van({**CHARGING_OK, c.BONNET: True, c.GEAR: "D", c.RFID: "PENDING"})
    out = van.command(1.0, "start_charging")
    [verdict] = emits(out, "verdict")
    codes = [r["code"] for r in verdict["reasons"]]
    assert (verdict["outcome"], codes) == (
        "refused",
        ["bonnet_open", "gear_not_park", "rfid_pending"],
    )
    [alarm] = emits(out, "alarm")
    assert [r["code"] for r in alarm["reasons"]] == codes
    assert alarm["event"] == "refused"
    assert states(van, "charging-1") == ["idle", "requested", "refused"]
    assert van.part.transitions[-1].reason == "bonnet_open,gear_not_park,rfid_pending"
    assert sent(out) == []
    assert emits(out, "command_result")[0]["reasons"] == codes


def test_plugging_in_requests_a_charge_automatically() -> None:
    unplugged = {**CHARGING_OK, c.PLUG_CONNECTED: False, c.PLUG_LOCKED: False}
    van = Van({**unplugged, c.INFRA_CONNECTED: False}, notify=True)
    assert van.part.transitions == []
    van.set(10.0, {c.PLUG_CONNECTED: True})
    van.set(11.0, {c.PLUG_LOCKED: True})
    assert van.part.verdicts == []
    out = van.set(12.0, {c.INFRA_CONNECTED: True})
    assert [v["outcome"] for v in emits(out, "verdict")] == ["allowed"]
    assert van.part.transitions[0].event == "auto"
    assert states(van, "charging-1") == ["idle", "requested", "charging"]
    assert requests(van) == ["start_charging"]


def test_auto_charge_waits_for_the_card_and_does_not_repeat_a_refusal() -> None:
    van = Van({**CHARGING_OK, c.RFID: "PENDING", c.GEAR: "N"}, notify=True)
    assert [v.codes for v in van.part.verdicts] == [("gear_not_park", "rfid_pending")]
    van.set(5.0, {c.GEAR: "R"})
    assert len(van.part.verdicts) == 1
    van.set(6.0, {c.GEAR: "P"})
    assert [v.codes for v in van.part.verdicts][-1] == ("rfid_pending",)
    van.set(30.0, {c.RFID: "ACCEPTED"})
    assert van.part.verdicts[-1].outcome == "allowed"
    assert van.part.charging is not None and van.part.charging.state == "charging"
    assert [v.outcome for v in van.part.verdicts] == ["refused", "refused", "allowed"]
    assert len(emits(van.actions, "alarm")) == 2


def test_auto_charge_waits_for_signals_never_received() -> None:
    partial = {p: v for p, v in CHARGING_OK.items() if p not in (c.BONNET, c.GEAR)}
    van = Van(partial, notify=True)
    assert van.part.verdicts == []
    van.set(0.5, {c.BONNET: False})
    assert van.part.verdicts == []
    van.set(0.6, {c.GEAR: "P"})
    assert [v.outcome for v in van.part.verdicts] == ["allowed"]


def test_start_charging_decides_at_once_even_with_signals_never_received() -> None:
    van = Van({p: v for p, v in CHARGING_OK.items() if p != c.BONNET})
    out = van.command(0.1, "start_charging")
    [verdict] = emits(out, "verdict")
    assert [(r["code"], r["values"]) for r in verdict["reasons"]] == [
        ("signal_unknown", {c.BONNET: None})
    ]


def test_bonnet_opened_mid_charge_interrupts_with_that_reason() -> None:
    van = Van(CHARGING_OK, notify=True)
    assert van.part.charging is not None and van.part.charging.state == "charging"
    out = van.set(100.0, {c.BONNET: True})
    assert states(van, "charging-1") == ["idle", "requested", "charging", "interrupted"]
    last = van.part.transitions[-1]
    assert (last.t, last.event, last.reason) == (100.0, "interrupt", "bonnet_open")
    assert last.reasons[0].values == {c.BONNET: True}
    [alarm] = emits(out, "alarm")
    assert (alarm["event"], alarm["session_id"]) == ("interrupted", "charging-1")
    assert requests(van) == ["start_charging", "stop_charging"]
    assert emits(out, "verdict") == []
    # Closing the bonnet again while still plugged in resumes with a new session.
    van.set(160.0, {c.BONNET: False})
    assert states(van, "charging-2") == ["idle", "requested", "charging"]


@pytest.mark.parametrize(
    ("path", "value", "code"),
    [
        (c.PLUG_LOCKED, False, "plug_not_locked"),
        (c.PLUG_CONNECTED, False, "plug_not_connected"),
        (c.INFRA_CONNECTED, False, "infrastructure_not_connected"),
        (c.GEAR, "N", "gear_not_park"),
        (c.RFID, "REJECTED", "rfid_rejected"),
        (c.CHARGING_STATUS, "FAULT", "charging_fault"),
        (c.BONNET, None, "signal_unknown"),
    ],
)
def test_each_broken_precondition_interrupts_a_charge(
    path: str, value: c.Value | None, code: str
) -> None:
    van = Van(CHARGING_OK, notify=True)
    van.set(50.0, {path: value})
    assert van.part.charging is not None and van.part.charging.state == "interrupted"
    assert van.part.transitions[-1].reason == code


def test_unplugging_disarms_the_automatic_charge() -> None:
    van = Van(CHARGING_OK, notify=True)
    van.set(50.0, {c.PLUG_CONNECTED: False, c.PLUG_LOCKED: False})
    van.set(60.0, {c.BONNET: True})
    van.set(61.0, {c.BONNET: False})
    assert [s.session_id for s in [van.part.charging] if s] == ["charging-1"]
    van.set(70.0, {c.PLUG_CONNECTED: True, c.PLUG_LOCKED: True})
    assert states(van, "charging-2") == ["idle", "requested", "charging"]


@pytest.mark.parametrize(
    ("values", "code"),
    [
        ({c.SOC: 100.0}, "target_soc_reached"),
        ({c.CHARGING_STATUS: "COMPLETE", c.SOC: 97.0}, "charging_complete"),
    ],
)
def test_charge_completes_and_does_not_restart_on_its_own(
    values: dict[str, c.Value], code: str
) -> None:
    van = Van(CHARGING_OK, notify=True)
    van.set(10.0, {c.CHARGING_STATUS: "CHARGING", c.SOC: 80.0})
    assert van.part.charging is not None and van.part.charging.state == "charging"
    van.set(3000.0, values)
    assert states(van, "charging-1")[-1] == "complete"
    assert van.part.transitions[-1].reason == code
    van.set(3100.0, {c.BONNET: True})
    van.set(3101.0, {c.BONNET: False})
    assert len(van.part.verdicts) == 1


def test_plugging_in_a_full_van_is_not_needed_once() -> None:
    van = Van({**CHARGING_OK, c.SOC: 100.0}, notify=True)
    assert [v.codes for v in van.part.verdicts] == [("target_soc_reached",)]
    van.set(5.0, {c.GEAR: "N"})
    van.set(6.0, {c.GEAR: "P"})
    assert len(van.part.verdicts) == 1
    assert states(van, "charging-1") == ["idle", "requested", "not_needed"]


def test_target_soc_comes_from_the_config() -> None:
    cfg = VehicleConfig(vin=VIN, target_soc=80.0, origin_epoch=ORIGIN)
    van = Van(CHARGING_OK, config=cfg, notify=True)
    van.set(10.0, {c.SOC: 79.9})
    assert van.part.charging is not None and van.part.charging.state == "charging"
    van.set(20.0, {c.SOC: 80.0})
    assert van.part.charging.state == "complete"


def test_stop_charging_stops_and_disarms() -> None:
    van = Van(CHARGING_OK, notify=True)
    out = van.command(20.0, "stop_charging")
    assert states(van, "charging-1")[-1] == "stopped"
    assert van.part.transitions[-1].reason == "stop_requested"
    assert emits(out, "command_result")[0]["status"] == "stopped"
    assert requests(van) == ["start_charging", "stop_charging"]
    van.set(30.0, {c.GEAR: "N"})
    van.set(31.0, {c.GEAR: "P"})
    assert len(van.part.verdicts) == 1
    again = van.command(40.0, "stop_charging")
    assert emits(again, "command_result")[0]["status"] == "no_session"


def test_start_charging_while_charging_is_not_needed() -> None:
    van = Van(CHARGING_OK, notify=True)
    out = van.command(5.0, "start_charging")
    [verdict] = emits(out, "verdict")
    assert (verdict["outcome"], verdict["reasons"][0]["code"]) == ("not_needed", "already_active")
    assert van.part.charging is not None and van.part.charging.session_id == "charging-1"


def test_charge_verdict_warns_when_not_full_by_departure() -> None:
    cfg = VehicleConfig(vin=VIN, usable_capacity_kwh=22.0, origin_epoch=ORIGIN)
    van = Van({**CHARGING_OK, c.DEPARTURE_TIME: 6 * 60.0 + 30}, config=cfg)
    out = van.command(0.0, "start_charging")
    [verdict] = emits(out, "verdict")
    assert verdict["outcome"] == "allowed_with_warnings"
    [warning] = verdict["warnings"]
    assert warning["code"] == "not_full_by_departure"
    assert warning["values"]["estimate.full_at_t"] == pytest.approx(3600.0)
    assert warning["values"]["estimate.departure_t"] == pytest.approx(1800.0)
    assert van.part.charging is not None and van.part.charging.state == "charging"


# -- preconditioning ------------------------------------------------------------------------


def test_preconditioning_runs_from_lead_time_to_departure() -> None:
    van = Van(PRECONDITIONING_OK)
    out = van.command(10.0, "start_preconditioning")
    [result] = emits(out, "command_result")
    assert (result["status"], result["start_t"], result["departure_t"]) == (
        "scheduled",
        pytest.approx(START_T),
        pytest.approx(DEPARTURE_T),
    )
    assert emits(out, "verdict") == []
    assert van.part.next_deadline() == pytest.approx(START_T)
    assert van.advance(START_T - 1) == []
    out = van.advance(START_T)
    assert [v["outcome"] for v in emits(out, "verdict")] == ["allowed"]
    assert van.part.verdicts[-1].t == pytest.approx(START_T)
    assert requests(van) == ["start_preconditioning"]
    assert van.part.next_deadline() == pytest.approx(DEPARTURE_T)
    van.advance(DEPARTURE_T)
    assert states(van, "preconditioning-1") == ["idle", "scheduled", "active", "done"]
    assert van.part.transitions[-1].reason == "departure_reached"
    assert van.part.next_deadline() == float("inf")


def test_preconditioning_verdict_is_taken_at_start_not_at_scheduling() -> None:
    van = Van({**PRECONDITIONING_OK, c.DOOR_REAR: True})
    van.command(10.0, "start_preconditioning")
    van.set(600.0, {c.DOOR_REAR: False, c.WINDOW_FRONT_RIGHT: 30.0})
    out = van.advance(START_T)
    [verdict] = emits(out, "verdict")
    assert verdict["outcome"] == "refused"
    assert [(r["code"], r["values"]) for r in verdict["reasons"]] == [
        ("window_open", {c.WINDOW_FRONT_RIGHT: 30.0})
    ]
    assert states(van, "preconditioning-1") == ["idle", "scheduled", "refused"]
    assert emits(out, "alarm")[0]["event"] == "refused"
    assert requests(van) == []


def test_door_opening_aborts_active_preconditioning() -> None:
    van = Van(PRECONDITIONING_OK)
    van.command(10.0, "start_preconditioning")
    van.advance(START_T)
    out = van.set(2000.0, {c.DOOR_SLIDING_LEFT: True})
    assert states(van, "preconditioning-1")[-1] == "aborted"
    last = van.part.transitions[-1]
    assert (last.reason, last.reasons[0].values) == ("door_open", {c.DOOR_SLIDING_LEFT: True})
    assert emits(out, "alarm")[0]["event"] == "aborted"
    assert requests(van) == ["start_preconditioning", "stop_preconditioning"]
    assert van.part.next_deadline() == float("inf")


def test_preconditioning_not_needed_when_setpoint_equals_outside() -> None:
    van = Van({**PRECONDITIONING_OK, c.OUTSIDE_TEMP: 21.0})
    van.command(10.0, "start_preconditioning")
    out = van.advance(START_T)
    [verdict] = emits(out, "verdict")
    assert (verdict["outcome"], verdict["reasons"][0]["code"]) == (
        "not_needed",
        "setpoint_equals_outside",
    )
    assert states(van, "preconditioning-1")[-1] == "not_needed"
    assert emits(out, "alarm") == [] and requests(van) == []


def test_preconditioning_off_a_wallbox_runs_with_a_warning() -> None:
    van = Van({**PRECONDITIONING_OK, c.INFRA_TYPE: "PUBLIC_AC"})
    van.command(10.0, "start_preconditioning")
    out = van.advance(START_T)
    [verdict] = emits(out, "verdict")
    assert verdict["outcome"] == "allowed_with_warnings"
    assert states(van, "preconditioning-1")[-1] == "active"


def test_preconditioning_without_departure_is_refused_at_once() -> None:
    van = Van({**PRECONDITIONING_OK, c.DEPARTURE_TIME: None, c.BONNET: True})
    out = van.command(10.0, "start_preconditioning")
    [verdict] = emits(out, "verdict")
    assert [r["code"] for r in verdict["reasons"]] == ["departure_not_set", "bonnet_open"]
    assert emits(out, "command_result")[0]["status"] == "refused"
    assert states(van, "preconditioning-1") == ["idle", "scheduled", "refused"]
    assert van.part.next_deadline() == float("inf")


def test_preconditioning_asked_for_inside_the_lead_time_starts_now() -> None:
    van = Van(PRECONDITIONING_OK)
    out = van.command(3000.0, "start_preconditioning")
    assert emits(out, "command_result")[0]["status"] == "active"
    assert states(van, "preconditioning-1") == ["idle", "scheduled", "active"]
    assert van.part.next_deadline() == pytest.approx(DEPARTURE_T)


def test_stop_preconditioning_cancels_scheduled_and_active() -> None:
    van = Van(PRECONDITIONING_OK)
    van.command(10.0, "start_preconditioning")
    van.command(20.0, "stop_preconditioning")
    assert states(van, "preconditioning-1")[-1] == "cancelled"
    assert requests(van) == []
    assert van.part.next_deadline() == float("inf")
    van.command(30.0, "start_preconditioning")
    van.advance(START_T)
    out = van.command(2000.0, "stop_preconditioning")
    assert states(van, "preconditioning-2")[-1] == "cancelled"
    assert emits(out, "command_result")[0]["status"] == "cancelled"
    assert requests(van) == ["start_preconditioning", "stop_preconditioning"]


def test_switching_preconditioning_off_cancels_the_schedule() -> None:
    van = Van(PRECONDITIONING_OK)
    van.command(10.0, "start_preconditioning")
    van.set(20.0, {c.PRECOND_ENABLED: False})
    assert states(van, "preconditioning-1")[-1] == "cancelled"
    assert van.part.transitions[-1].reason == "preconditioning_disabled"


def test_preconditioning_is_scheduled_automatically_when_plugged_with_a_departure() -> None:
    van = Van({**PRECONDITIONING_OK, c.PRECOND_ENABLED: False}, notify=True)
    assert van.part.preconditioning is None
    van.set(30.0, {c.PRECOND_ENABLED: True})
    assert states(van, "preconditioning-1") == ["idle", "scheduled"]
    assert van.part.transitions[-1].event == "auto"
    van.advance(DEPARTURE_T)
    assert states(van, "preconditioning-1")[-1] == "done"
    # The same plan does not schedule twice; a new departure does.
    van.set(DEPARTURE_T + 10, {c.GEAR: "P", c.PLUG_LOCKED: True})
    assert van.part.preconditioning.session_id == "preconditioning-1"
    van.set(DEPARTURE_T + 20, {c.DEPARTURE_TIME: 8 * 60.0})
    assert states(van, "preconditioning-2") == ["idle", "scheduled"]


def test_set_departure_sends_the_request_and_is_used_until_echoed() -> None:
    van = Van(PRECONDITIONING_OK)
    van.command(10.0, "start_preconditioning")
    out = van.command(20.0, "set_departure", "8:00")
    assert requests(van) == ["set_departure"]
    assert van.encoder.calls == [("set_departure", "08:00")]
    assert sent(out)[0].arbitration_id == REQUEST_ID
    assert emits(out, "command_result")[0]["status"] == "sent"
    assert van.part.ledger.commanded_departure == 480.0
    assert van.part.next_deadline() == pytest.approx(2 * 3600.0 - 1800.0)
    van.set(25.0, {c.DEPARTURE_TIME: 480.0})
    assert van.part.ledger.commanded_departure is None
    assert van.part.next_deadline() == pytest.approx(2 * 3600.0 - 1800.0)


def test_set_departure_already_passed_plans_for_tomorrow() -> None:
    van = Van({**PRECONDITIONING_OK, c.PLUG_LOCKED: False})
    van.command(10.0, "set_departure", "05:30")
    out = van.command(11.0, "start_preconditioning")
    assert emits(out, "command_result")[0]["departure_t"] == pytest.approx(23.5 * 3600.0)
    assert van.part.next_deadline() == pytest.approx(23.5 * 3600.0 - 1800.0)


def test_set_departure_while_plugged_schedules_preconditioning() -> None:
    van = Van({**PRECONDITIONING_OK, c.DEPARTURE_TIME: None})
    van.command(10.0, "set_departure", "07:00")
    assert states(van, "preconditioning-1") == ["idle", "scheduled"]
    assert van.part.transitions[0].event == "auto"
    out = van.command(11.0, "start_preconditioning")
    assert [v["reasons"][0]["code"] for v in emits(out, "verdict")] == ["already_active"]
    assert van.part.next_deadline() == pytest.approx(START_T)


def test_set_departure_rejects_a_bad_time() -> None:
    van = Van(PRECONDITIONING_OK)
    out = van.command(10.0, "set_departure", "25:00")
    assert emits(out, "command_result")[0]["status"] == "rejected"
    assert requests(van) == [] and van.part.ledger.commanded_departure is None


def test_the_van_taking_another_departure_wins() -> None:
    van = Van(PRECONDITIONING_OK)
    van.command(10.0, "set_departure", "08:00")
    out = van.set(12.0, {c.DEPARTURE_TIME: 510.0})
    assert van.part.ledger.commanded_departure is None
    assert any(isinstance(a, Log) and a.level == "warning" for a in out)


# -- lock and unlock ------------------------------------------------------------------------


def test_lock_completes_when_the_van_confirms() -> None:
    van = Van(LOCK_OK)
    out = van.command(10.0, "lock")
    [frame] = sent(out)
    assert frame.arbitration_id == REQUEST_ID and frame.data[0] == 1
    assert emits(out, "command_result")[0]["status"] == "sent"
    assert van.part.next_deadline() == pytest.approx(15.0)
    van.set(11.0, {c.SPEED: 0.0})
    assert states(van, "lock-1")[-1] == "sent"
    out = van.set(11.5, {c.LOCKED: True})
    assert states(van, "lock-1") == ["idle", "requested", "sent", "completed"]
    assert emits(out, "command_result")[0]["status"] == "completed"
    assert emits(out, "command_result")[0]["command_id"] == "c-lock-10"
    assert van.part.next_deadline() == float("inf")


def test_lock_fails_after_the_timeout_without_confirmation() -> None:
    van = Van(LOCK_OK)
    van.command(10.0, "lock")
    assert van.advance(14.999) == []
    out = van.advance(15.0)
    assert states(van, "lock-1")[-1] == "failed"
    assert van.part.transitions[-1].reason == "not_confirmed"
    assert emits(out, "alarm")[0]["event"] == "failed"
    assert emits(out, "command_result")[0]["status"] == "failed"
    van.set(16.0, {c.LOCKED: True})
    assert states(van, "lock-1")[-1] == "failed"


def test_lock_timeout_comes_from_the_config() -> None:
    cfg = VehicleConfig(vin=VIN, lock_timeout_s=1.5, origin_epoch=ORIGIN)
    van = Van(LOCK_OK, config=cfg)
    van.command(2.0, "lock")
    assert van.part.next_deadline() == pytest.approx(3.5)


@pytest.mark.parametrize(
    ("values", "code"),
    [
        ({c.DOOR_FRONT_RIGHT: True}, "door_open"),
        ({c.SPEED: 12.0}, "vehicle_moving"),
        ({c.SPEED: None}, "signal_unknown"),
    ],
)
def test_lock_refused_sends_nothing(values: dict[str, c.Value | None], code: str) -> None:
    van = Van({**LOCK_OK, **values})
    out = van.command(10.0, "lock")
    assert [v.codes for v in van.part.verdicts] == [(code,)]
    assert sent(out) == [] and emits(out, "alarm")
    assert states(van, "lock-1") == ["idle", "requested", "refused"]
    assert van.part.next_deadline() == float("inf")


def test_unlock_completes_when_the_van_reports_unlocked() -> None:
    van = Van({**LOCK_OK, c.LOCKED: True, c.DOOR_REAR: True})
    van.command(1.0, "unlock")
    assert van.encoder.calls == [("unlock", None)]
    van.set(2.0, {c.LOCKED: False})
    assert states(van, "unlock-1")[-1] == "completed"


def test_a_second_request_while_one_is_pending_is_refused() -> None:
    van = Van(LOCK_OK)
    van.command(1.0, "lock")
    van.command(2.0, "unlock")
    assert van.part.verdicts[-1].codes == ("request_in_progress",)
    assert states(van, "unlock-1") == ["idle", "requested", "refused"]
    assert van.part.lock is not None and van.part.lock.session_id == "lock-1"
    van.set(3.0, {c.LOCKED: True})
    assert states(van, "lock-1")[-1] == "completed"


def test_a_request_frame_that_cannot_be_built_fails_the_lock() -> None:
    van = Van(LOCK_OK, encoder=FakeEncoder(fail=ConfigError("no TCU_Request in the mapping")))
    out = van.command(1.0, "lock")
    assert states(van, "lock-1")[-1] == "failed"
    assert van.part.transitions[-1].reason == "request_not_sent"
    assert any(isinstance(a, Log) and "TCU_Request" in a.text for a in out)
    assert van.part.next_deadline() == float("inf")


# -- the part in the core, and the report ---------------------------------------------------


def test_through_the_core_commands_overrides_and_ticks() -> None:
    core = TcuCore(Mapping(source="test", signals=()))
    calls: list[tuple[str, str | None]] = []

    def frame(name: str, argument: str | None) -> object:
        calls.append((name, argument))
        return FakeEncoder()(name, argument)

    part = ServicesPart(core.state, VehicleConfig(vin=VIN, origin_epoch=ORIGIN), frame)  # type: ignore[arg-type]
    core.add_part(part)
    for path, value in LOCK_OK.items():
        core.handle(SignalOverride(path=path, value=value), 0.0)
    assert core.handle(Ack(epoch=1, sequence=1), 0.5)[0].text == "no part handles Ack"  # type: ignore[union-attr]
    core.handle(Command(name="lock", command_id="x1"), 1.0)
    assert core.next_deadline == pytest.approx(6.0)
    core.handle(Tick(), 6.0)
    assert part.lock is not None and part.lock.state == "failed"
    assert core.next_deadline == float("inf")
    assert calls == [("lock", None)]


def test_contribute_adds_verdicts_sessions_and_a_readable_section() -> None:
    van = Van(CHARGING_OK, notify=True)
    van.set(9.0, {c.BONNET: True})
    van.command(10.0, "lock")
    report = SimpleNamespace(extra={}, sections=[])
    van.part.contribute(report, 20.0)
    verdicts = report.extra["verdicts"]
    assert [set(v) for v in verdicts] == [{"t", "service", "outcome", "reasons", "warnings"}] * 2
    assert [v["service"] for v in verdicts] == ["charging", "lock"]
    sessions = report.extra["sessions"]
    assert [(s["session_id"], s["to_state"]) for s in sessions] == [
        ("charging-1", "requested"),
        ("charging-1", "charging"),
        ("charging-1", "interrupted"),
        ("lock-1", "requested"),
        ("lock-1", "refused"),
    ]
    json.dumps(report.extra)
    [text] = report.sections
    assert "charging-1" in text and "charging -> interrupted" in text and "bonnet_open" in text
    assert "signal_unknown" in text


def test_the_same_inputs_give_the_same_outputs() -> None:
    def run() -> list[object]:
        van = Van(PRECONDITIONING_OK, notify=True)
        van.set(100.0, {c.RFID: "REJECTED"})
        van.command(200.0, "lock")
        van.advance(DEPARTURE_T)
        return [getattr(a, "body", None) or repr(a) for a in van.actions]

    assert run() == run()


def test_non_command_events_are_not_handled() -> None:
    van = Van(CHARGING_OK)
    assert van.part.on_event(Ack(epoch=1, sequence=2), 1.0) is None
    assert van.part.on_signals([c.LATITUDE, c.TYRE_REAR_LEFT], 1.0) == []


def test_encoder_requests_turns_hhmm_into_minutes_and_counts() -> None:
    seen: list[tuple[str, float, int]] = []

    def encode_request(name: str, argument: float, counter: int) -> can.Message:
        seen.append((name, argument, counter))
        return can.Message(arbitration_id=REQUEST_ID, data=bytes([counter]))

    van = Van(LOCK_OK, encoder=encoder_requests(encode_request))  # type: ignore[arg-type]
    van.command(1.0, "set_departure", "07:45")
    van.command(2.0, "lock")
    assert seen == [("set_departure", 465.0, 0), ("lock", 0.0, 1)]
    assert [m.data[0] for m in sent(van.actions)] == [0, 1]
