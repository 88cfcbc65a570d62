"""The signed downlink: every refusal with a signed status, counters that survive a restart."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cbor2
import pytest

from tcu.core import Part
from tcu.events import (
    Action,
    Command,
    Dispatch,
    Downlink,
    Log,
    Publish,
    SaveDownlink,
    ServiceActivation,
)
from tcu.telemetry.codec.cose import generate_key, key_id, sign1, verify1
from tcu.telemetry.codec.schema import (
    DownlinkMessage,
    StatusMessage,
    decode_status,
    encode_downlink,
)
from tcu.telemetry.downlink import DownlinkPart
from tcu.telemetry.policy import TelemetryConfig, TelemetryPart
from tcu.telemetry.storage.outbox import DOWNLINK_COUNTER, SERVICE_ACTIVE, Outbox
from tcu.vehicle.state import VehicleState

VIN = "WDB9066331S123456"
OTHER_VIN = "WDB9066331S654321"
ORIGIN = 1_700_000_000
NOW = 100.0
BACKEND = generate_key("EdDSA")
VEHICLE = generate_key("EdDSA")


def message(**overrides: Any) -> DownlinkMessage:
    fields: dict[str, Any] = {
        "vin": VIN,
        "command_id": "cmd-1",
        "counter": 1,
        "issued_at": ORIGIN + 90,
        "expires_at": ORIGIN + 400,
        "name": "activate",
    }
    fields.update(overrides)
    return DownlinkMessage(**fields)


def signed(msg: DownlinkMessage, key: Any = BACKEND) -> bytes:
    return sign1(encode_downlink(msg), key, kid=key_id(key))


def part(last_counter: int = 0) -> DownlinkPart:
    return DownlinkPart(
        vin=VIN,
        backend_key=BACKEND.public_key(),
        vehicle_key=VEHICLE,
        origin_epoch=ORIGIN,
        last_counter=last_counter,
    )


def saved(actions: list[Action] | None) -> list[tuple[int, bool | None]]:
    return [(a.counter, a.active) for a in actions or [] if isinstance(a, SaveDownlink)]


def carry_saves(box: Outbox, actions: list[Action] | None) -> list[Action] | None:
    """What the host does with the part's SaveDownlink actions."""
    for counter, active in saved(actions):
        box.save_downlink(counter, active)
    return actions


def statuses(actions: list[Action] | None) -> list[StatusMessage]:
    out = []
    for action in actions or []:
        if isinstance(action, Publish):
            assert action.topic_suffix == "status"
            verified = verify1(action.payload, VEHICLE.public_key())
            assert verified.kid == key_id(VEHICLE)
            out.append(decode_status(verified.payload))
    return out


def dispatched(actions: list[Action] | None) -> list[Any]:
    return [a.event for a in actions or [] if isinstance(a, Dispatch)]


def test_activation_is_accepted_persisted_first_and_dispatched() -> None:
    p = part()
    out = p.on_event(Downlink(payload=signed(message(counter=7))), NOW)
    (status,) = statuses(out)
    assert (status.outcome, status.command_id, status.counter, status.reason) == (
        "completed",
        "cmd-1",
        7,
        None,
    )
    assert status.t_ms == 100_000 and status.vin == VIN
    assert dispatched(out) == [ServiceActivation(active=True, command_id="cmd-1")]
    assert saved(out) == [(7, True)]
    kinds = [type(a) for a in out or []]
    assert kinds[0] is SaveDownlink, "persisted before anything else"
    assert kinds.index(SaveDownlink) < kinds.index(Dispatch)
    assert p.last_counter == 7
    assert any(isinstance(a, Log) and "activate" in a.text for a in out or [])


def test_remote_command_becomes_a_backend_command_and_its_result_a_status() -> None:
    p = part()
    msg = message(name="set_departure", argument="06:30", command_id="dep-1")
    out = p.on_event(Downlink(payload=signed(msg)), NOW)
    assert [s.outcome for s in statuses(out)] == ["accepted"]
    assert dispatched(out) == [
        Command(name="set_departure", argument="06:30", command_id="dep-1", source="backend")
    ]
    result = {"command_id": "dep-1", "command": "set_departure", "status": "sent", "reasons": []}
    (done,) = statuses(p.command_result(result, NOW + 1))
    assert (done.outcome, done.reason, done.counter) == ("completed", None, 1)
    assert p.command_result(result, NOW + 2) == [], "reported once"


def test_a_lock_is_final_only_when_confirmed_and_a_refusal_names_its_reason() -> None:
    p = part()
    p.on_event(Downlink(payload=signed(message(name="lock", command_id="L", counter=3))), NOW)
    assert p.command_result({"command_id": "L", "command": "lock", "status": "sent"}, NOW) == []
    (failed,) = statuses(
        p.command_result(
            {
                "command_id": "L",
                "command": "lock",
                "status": "failed",
                "reasons": ["not_confirmed"],
            },
            NOW + 5,
        )
    )
    assert (failed.outcome, failed.reason, failed.counter) == ("failed", "not_confirmed", 3)
    p.on_event(Downlink(payload=signed(message(name="unlock", command_id="U", counter=4))), NOW)
    (refused,) = statuses(
        p.command_result(
            {"command_id": "U", "command": "unlock", "status": "refused", "reasons": ["door_open"]},
            NOW,
        )
    )
    assert (refused.outcome, refused.reason) == ("failed", "door_open")
    assert p.command_result({"command_id": "nobody", "status": "failed"}, NOW) == []


def _refusal(p: DownlinkPart, payload: bytes) -> StatusMessage:
    out = p.on_event(Downlink(payload=payload), NOW)
    assert dispatched(out) == []
    (status,) = statuses(out)
    assert status.outcome == "refused"
    return status


@pytest.mark.parametrize(
    ("payload", "reason", "command_id"),
    [
        # unverified, or another vehicle's: the answer names no command id and counter 0
        (signed(message(), generate_key("EdDSA")), "bad_signature", ""),
        (signed(message(), generate_key("ES256")), "bad_signature", ""),
        (b"\xd2\x84junk", "malformed", ""),
        (sign1(b"\x01", BACKEND, kid=key_id(BACKEND)), "malformed", ""),
        (sign1(cbor2.dumps({1: VIN, 2: "x"}), BACKEND, kid=key_id(BACKEND)), "malformed", ""),
        (signed(message(vin=OTHER_VIN)), "wrong_vin", ""),
        (signed(message(expires_at=ORIGIN + 99)), "expired", "cmd-1"),
        (signed(message(name="self_destruct")), "unknown_command", "cmd-1"),
        (signed(message(name="set_departure")), "malformed", "cmd-1"),
        (signed(message(name="set_departure", argument="25:00")), "malformed", "cmd-1"),
        (signed(message(name="lock", argument="now")), "malformed", "cmd-1"),
    ],
)
def test_each_refusal_has_a_signed_status_with_its_reason(
    payload: bytes, reason: str, command_id: str
) -> None:
    p = part()
    out = p.on_event(Downlink(payload=payload), NOW)
    (status,) = statuses(out)
    assert status.reason == reason
    assert status.command_id == command_id
    assert status.counter == (1 if command_id else 0)
    assert saved(out) == [] and p.last_counter == 0
    assert p.refused[reason] == 1


def test_an_empty_payload_clears_a_retained_command_and_is_not_answered() -> None:
    p = part()
    assert p.on_event(Downlink(payload=b""), NOW) == []
    assert (p.cleared, sum(p.refused.values()), p.last_counter) == (1, 0, 0)


def test_replayed_counter_is_refused_and_the_counter_survives_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "outbox.sqlite"
    with Outbox(path) as box:
        first = part(last_counter=box.get(DOWNLINK_COUNTER))
        out = carry_saves(box, first.on_event(Downlink(payload=signed(message(counter=5))), NOW))
        assert statuses(out)[0].outcome == "completed"
        assert _refusal(first, signed(message(counter=5))).reason == "replayed"
        assert _refusal(first, signed(message(counter=4, name="lock"))).reason == "replayed"
    with Outbox(path) as box:
        assert box.get(DOWNLINK_COUNTER) == 5 and box.get(SERVICE_ACTIVE) == 1
        again = part(last_counter=box.get(DOWNLINK_COUNTER))
        assert _refusal(again, signed(message(counter=5))).reason == "replayed"
        payload = signed(message(counter=6, name="deactivate"))
        out = carry_saves(box, again.on_event(Downlink(payload=payload), NOW))
        assert dispatched(out) == [ServiceActivation(active=False, command_id="cmd-1")]
    with Outbox(path) as box:
        assert box.get(DOWNLINK_COUNTER) == 6 and box.get(SERVICE_ACTIVE) == 0


def test_other_events_are_not_the_downlinks_business() -> None:
    p = part()
    assert p.on_event(object(), NOW) is None
    assert p.next_deadline() == float("inf")


def test_activation_and_deactivation_switch_the_telemetry_service() -> None:
    """The driver's loop in small: Dispatch actions go back in as events."""
    downlink = part()
    telemetry = TelemetryPart(
        VehicleState(),
        TelemetryConfig(vin=VIN),
        epoch=1,
        on_command_result=downlink.command_result,
    )
    parts: list[Part] = [downlink, telemetry]

    def handle(event: Any, now: float) -> list[Action]:
        out: list[Action] = []
        for p in parts:
            got = p.on_event(event, now)
            for action in got or []:
                if isinstance(action, Dispatch):
                    out.extend(handle(action.event, now))
                else:
                    out.append(action)
        return out

    out = handle(Downlink(payload=signed(message(counter=1))), NOW)
    assert telemetry.active
    assert any(isinstance(a, Log) and a.text.startswith("telemetry service activated") for a in out)
    report = _Report()
    telemetry.contribute(report, NOW)
    downlink.contribute(report, NOW)
    assert report.extra["telemetry"]["service_active"] is True
    assert report.extra["downlink"]["accepted"] == {"activate": 1}
    assert any("service: active" in s for s in report.sections)
    handle(Downlink(payload=signed(message(counter=2, name="deactivate"))), NOW + 1)
    assert not telemetry.active
    assert telemetry.counts.activations == 1 and telemetry.counts.deactivations == 1


class _Report:
    def __init__(self) -> None:
        self.extra: dict[str, Any] = {}
        self.sections: list[str] = []
