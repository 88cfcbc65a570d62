"""Folding stored records into what the dashboard shows."""

from __future__ import annotations

import cbor2

from cloud_stub.portal.view import VehicleFold
from tcu.telemetry.records import KIND_CODES
from tcu.vehicle import catalogue as c
from tcu.vehicle.catalogue import SIGNAL_IDS

LOCKED = SIGNAL_IDS[c.LOCKED]
SOC = SIGNAL_IDS[c.SOC]


def apply(fold: VehicleFold, row: int, seq: int, kind: str, body: object) -> None:
    fold.apply(row, 1, seq, seq * 1000, KIND_CODES[kind], cbor2.dumps(body))


def test_a_delta_snapshot_is_resolved_against_its_base_not_the_last_change() -> None:
    fold = VehicleFold()
    apply(fold, 1, 1, "snapshot", {0: 0, LOCKED: False, SOC: 50.0})
    apply(fold, 2, 2, "change", {LOCKED: True})
    assert fold.state.values[c.LOCKED] is True
    apply(fold, 3, 3, "snapshot", {0: 1, SOC: 49.0})  # locked again false, as in the base
    assert fold.state.values[c.LOCKED] is False
    assert fold.state.as_json()["soc"] == 49.0


def test_verdicts_sessions_results_and_damage() -> None:
    fold = VehicleFold()
    verdict = {"t": 1.0, "service": "charging", "outcome": "refused", "reasons": [], "warnings": []}
    apply(fold, 1, 1, "verdict", verdict)
    apply(fold, 2, 2, "command_result", {"command_id": "cmd-1", "status": "completed"})
    apply(fold, 3, 3, "service", {"active": True, "command_id": "cmd-0"})
    apply(fold, 4, 4, "change", {99_999: 1.0})  # an id the catalogue does not know
    fold.apply(5, 1, 5, 5000, KIND_CODES["change"], b"\xff")  # not CBOR
    out = fold.state.as_json()
    assert out["verdicts"]["charging"]["outcome"] == "refused"
    assert out["command_results"][0]["status"] == "completed"
    assert out["service"]["active"] is True
    assert (out["records"], out["undecodable"], out["last_t_ms"]) == (5, 2, 5000)
    assert out["all_closed"] is None, "doors never reported"
