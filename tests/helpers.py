"""Small shared helpers for the tests (imported as ``tests.helpers``)."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Callable
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "fixtures"
PYCAN_FIXTURES = SHARED / "python-can"
COSE_FIXTURES = SHARED / "cose-wg"
MODEL3_DBC = SHARED / "dbc" / "Model3CAN.dbc"

# A modem that registers within a tenth of a second, for benches with a link model.
FAST_MODEM = {
    "search_s": [0.05, 0.1],
    "attach_home_s": [0.05, 0.1],
    "attach_roaming_s": [0.05, 0.1],
    "retry_s": [0.05, 0.1],
}

MINI_DBC = """VERSION ""

NS_ :

BS_:

BU_: BCM OBC TPMS BMS

BO_ 928 BODY: 2 BCM
 SG_ Bonnet : 0|1@1+ (1,0) [0|1] "" TCU
 SG_ Gear : 8|2@1+ (1,0) [0|3] "" TCU

BO_ 2566869221 CHARGER: 8 OBC
 SG_ PlugConnected : 0|1@1+ (1,0) [0|1] "" TCU
 SG_ Power : 8|16@1+ (0.1,0) [0|6553.5] "kW" TCU

BO_ 960 TPMS: 3 TPMS
 SG_ Wheel M : 0|2@1+ (1,0) [0|3] "" TCU
 SG_ PressureFL m0 : 8|8@1+ (2,0) [0|510] "kPa" TCU
 SG_ PressureFR m1 : 8|8@1+ (2,0) [0|510] "kPa" TCU

BO_ 700 BMS_FD: 64 BMS
 SG_ Soc : 0|10@1+ (0.1,0) [0|102.3] "%" TCU
 SG_ CellTemp : 504|8@1+ (1,-40) [-40|215] "degC" TCU

BA_DEF_ BO_ "VFrameFormat" ENUM "StandardCAN","ExtendedCAN","reserved","reserved","reserved","reserved","reserved","reserved","reserved","reserved","reserved","reserved","reserved","reserved","StandardCAN_FD","ExtendedCAN_FD";
BA_DEF_DEF_ "VFrameFormat" "StandardCAN";
BA_ "VFrameFormat" BO_ 700 14;

VAL_ 928 Gear 0 "P" 1 "R" 2 "N" 3 "D" ;
"""

MINI_MAPPING = """version: 1
dbc: mini.dbc
signals:
  - path: Vehicle.Body.Hood.IsOpen
    message: BODY
    signal: Bonnet
    stale_after: 1.0
  - path: Vehicle.Powertrain.Transmission.SelectedGear
    message: BODY
    signal: Gear
    stale_after: 1.0
    values: {0: P, 1: R, 2: N, 3: D}
  - path: Vehicle.Powertrain.TractionBattery.Charging.ChargingPort.AnyPosition.IsChargingCableConnected
    message: CHARGER
    signal: PlugConnected
    stale_after: 2.0
  - path: Vehicle.Private.Charging.Power
    message: CHARGER
    signal: Power
    stale_after: 2.0
  - path: Vehicle.Chassis.Axle.Row1.Wheel.Left.Tire.Pressure
    message: TPMS
    signal: PressureFL
    stale_after: 3.0
  - path: Vehicle.Chassis.Axle.Row1.Wheel.Right.Tire.Pressure
    message: TPMS
    signal: PressureFR
    stale_after: 3.0
  - path: Vehicle.Powertrain.TractionBattery.StateOfCharge.Current
    message: BMS_FD
    signal: Soc
    stale_after: 1.0
  - path: Vehicle.Powertrain.TractionBattery.Temperature.Average
    message: BMS_FD
    signal: CellTemp
    stale_after: 1.0
"""


def write_mini(tmp: Path, mapping: str = MINI_MAPPING, dbc: str = MINI_DBC) -> tuple[Path, Path]:
    """Write the small test DBC and mapping into ``tmp``; return (dbc, mapping) paths."""
    d = tmp / "mini.dbc"
    m = tmp / "mini.mapping.yaml"
    d.write_text(dbc)
    m.write_text(mapping)
    return d, m


async def until(what: str, predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    """Wait for ``predicate``; fail naming ``what`` if it does not come (a liveness bound)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            pytest.fail(f"timed out after {timeout:g} s waiting for {what}")
        await asyncio.sleep(0.01)


CANTOOLS_DBCS = SHARED / "dbc" / "cantools"


def shared_dbc(name: str) -> Path:
    """A DBC of the shared fixtures; skips without them (fails instead when CI=true)."""
    path = CANTOOLS_DBCS / name if name != "Model3CAN.dbc" else MODEL3_DBC
    if not path.exists():
        if os.environ.get("CI") == "true":
            pytest.fail(f"{path}: shared fixture missing and CI=true")
        pytest.skip(f"{path}: shared fixtures not present")
    return path


# --- the replay summary's JSON Schema (docs/replay-summary.schema.json) ---------------------

REPLAY_SUMMARY_SCHEMA = REPO / "docs" / "replay-summary.schema.json"


def assert_replay_summary(summary: object) -> None:
    """Fail unless ``summary`` (a parsed ``tcu replay --json``) follows the documented schema."""
    import jsonschema

    schema = json.loads(REPLAY_SUMMARY_SCHEMA.read_text(encoding="utf-8"))
    jsonschema.Draft202012Validator.check_schema(schema)
    jsonschema.Draft202012Validator(schema).validate(summary)
