"""Any DBC signal by name: own names with full values, messages by id, all signals, KCD, ARXML."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import can
import cantools
import pytest

from tcu.can.setup import BusSetup, load_bus_setup, own_signals_section
from tcu.cli.main import main
from tcu.core import TcuCore
from tcu.errors import ConfigError
from tcu.vehicle import catalogue as c
from tests.helpers import MINI_DBC, MINI_MAPPING, shared_dbc, write_mini


def setup_with(
    tmp_path: Path, mapping: str, dbc: str = MINI_DBC, name: str = "mini.dbc"
) -> BusSetup:
    d = tmp_path / name
    d.write_text(dbc)
    m = tmp_path / "m.yaml"
    m.write_text(mapping)
    return load_bus_setup(dbc=d, mapping=m)


def std(arb: int, data: bytes) -> can.Message:
    return can.Message(arbitration_id=arb, is_extended_id=False, data=data)


def ext(arb: int, data: bytes) -> can.Message:
    return can.Message(arbitration_id=arb, is_extended_id=True, data=data)


OWN = f"""signals:
  - {{path: Fleet.Body.Bonnet, message: BODY, signal: Bonnet}}
  - {{path: Vehicle.Private.Drive.GearLabel, message: BODY, signal: Gear}}
  - {{path: Vehicle.Powertrain.TractionBattery.CurrentPower, message: 0x18FF50E5x, signal: Power}}
  - {{path: {c.CHARGING_POWER}, message: CHARGER, signal: Power, stale_after: 2}}
  - {{path: Fleet.Charger.PowerW, message: CHARGER, signal: Power, scale: 1000, unit: W}}
  - {{path: Fleet.Tyres.FrontLeft, message: 960, signal: PressureFL, stale_after: 1}}
"""


def test_own_names_carry_the_full_value_with_its_unit(tmp_path: Path) -> None:
    setup = setup_with(tmp_path, OWN)
    core = TcuCore(setup.mapping)
    core.handle(std(0x3A0, bytes([1, 3])), 0.0)
    core.handle(ext(0x18FF50E5, bytes([1, 0x51, 0x04, 0, 0, 0, 0, 0])), 0.0)
    core.handle(std(0x3C0, bytes([0, 200, 0])), 0.0)
    get = core.state.get
    assert get("Fleet.Body.Bonnet", 0.0) is True  # a plain one-bit signal is a bool
    assert get("Vehicle.Private.Drive.GearLabel", 0.0) == "D"  # the DBC's label
    assert get("Vehicle.Powertrain.TractionBattery.CurrentPower", 0.0) == pytest.approx(110.5)
    assert get(c.CHARGING_POWER, 0.0) == pytest.approx(110.5)  # one signal, two names
    assert get("Fleet.Charger.PowerW", 0.0) == pytest.approx(110500)
    assert get("Fleet.Tyres.FrontLeft", 0.5) == 400
    assert get("Fleet.Tyres.FrontLeft", 1.5) is None  # its own stale_after
    assert get("Fleet.Body.Bonnet", 1e6) is True  # own names without one keep the last value
    section = own_signals_section(setup.mapping, core.state, 0.0)
    assert section is not None
    values, text = section
    assert values["Vehicle.Powertrain.TractionBattery.CurrentPower"]["unit"] == "kW"
    assert values["Fleet.Tyres.FrontLeft"] == {"value": 400, "unit": "kPa"}
    assert values["Fleet.Charger.PowerW"]["unit"] == "W"
    assert c.CHARGING_POWER not in values  # the catalogue is reported as the state
    assert "Vehicle.Private.Drive.GearLabel" in text and "kPa" in text


def test_a_catalogue_enum_takes_the_dbc_labels_without_a_value_map(tmp_path: Path) -> None:
    mapping = MINI_MAPPING.replace("    values: {0: P, 1: R, 2: N, 3: D}\n", "")
    _, m = write_mini(tmp_path, mapping=mapping)
    core = TcuCore(load_bus_setup(mapping=m).mapping)
    core.handle(std(0x3A0, bytes([0, 1])), 0.0)
    assert core.state.get(c.GEAR, 0.0) == "R"


def test_a_catalogue_enum_whose_labels_name_nothing_needs_a_value_map(tmp_path: Path) -> None:
    mapping = f"signals:\n  - {{path: {c.GEAR}, message: BODY, signal: Bonnet, stale_after: 1}}\n"
    with pytest.raises(ConfigError, match=r"signals\[0\]\.values: an enum signal needs"):
        setup_with(tmp_path, mapping)


TWINS = """VERSION ""
BS_:
BU_: ECU
BO_ 291 STD: 1 ECU
 SG_ A : 0|8@1+ (1,0) [0|255] "" ECU
BO_ 2147483939 EXT: 1 ECU
 SG_ B : 0|8@1+ (1,0) [0|255] "" ECU
BO_ 2147483649 TINY: 1 ECU
 SG_ C : 0|8@1+ (1,0) [0|255] "" ECU
"""


def test_messages_by_id_tell_standard_from_extended(tmp_path: Path) -> None:
    mapping = """signals:
  - {path: Own.Ext, message: 0x123x, signal: B}
  - {path: Own.ExtByField, message: 0x123, extended: true, signal: B}
  - {path: Own.Std, message: 291, extended: false, signal: A}
  - {path: Own.Tiny, message: 1, signal: C}
  - {path: Own.TinyByName, message: TINY, extended: true, signal: C}
"""
    setup = setup_with(tmp_path, mapping, dbc=TWINS, name="twins.dbc")
    core = TcuCore(setup.mapping)
    core.handle(std(0x123, bytes([7])), 0.0)
    core.handle(ext(0x123, bytes([9])), 0.0)
    core.handle(ext(0x001, bytes([5])), 0.0)
    core.handle(std(0x001, bytes([6])), 0.0)  # no standard message 1
    assert core.state.get("Own.Std", 0.0) == 7
    assert core.state.get("Own.Ext", 0.0) == core.state.get("Own.ExtByField", 0.0) == 9
    assert core.state.get("Own.Tiny", 0.0) == core.state.get("Own.TinyByName", 0.0) == 5
    assert core.summary_counts()["unknown_id_frames"] == 1


@pytest.mark.parametrize(
    ("entry", "match"),
    [
        ("{path: Own.X, message: 0x123, signal: A}", r"both a standard and an extended.*0x123x"),
        ("{path: Own.X, message: '291', signal: A}", r"both a standard and an extended"),
        ("{path: Own.X, message: 0x123x, extended: false, signal: B}", r"extended id but"),
        ("{path: Own.X, message: STD, extended: true, signal: A}", r"STD is a standard message"),
        ("{path: Own.X, message: 0x124, signal: A}", r"has no message 292"),
        ("{path: Own.X, message: 0x2x, signal: A}", r"has no extended message '0x2x'"),
        ("{path: Own.X, message: STD, extended: yes please, signal: A}", r"extended: expected"),
        ("{path: Own.X, message: [1], signal: A}", r"expected a message name or frame id"),
        ("{path: Own, message: STD, signal: A}", r"path: expected a catalogue path or a dotted"),
        ("{path: Own.X, message: STD, signal: Z}", r"message STD has no signal 'Z'"),
        ("{path: Own.X, message: STD, signal: A, stale_after: 0}", r"stale_after: must be > 0"),
        ("{path: Own.X, message: STD, signal: A, unit: 3}", r"unit: expected a string"),
        (
            f"{{path: {c.SPEED}, message: STD, signal: A, stale_after: 1, unit: mph}}",
            r"unit: a catalogue path has the catalogue's unit",
        ),
    ],
)
def test_bad_entries_name_the_field(tmp_path: Path, entry: str, match: str) -> None:
    with pytest.raises(ConfigError, match=r"m\.yaml: signals\[0\]") as e:
        setup_with(tmp_path, f"signals:\n  - {entry}\n", dbc=TWINS, name="twins.dbc")
    assert e.match(match)


@pytest.mark.parametrize(
    ("doc", "match"),
    [
        ("signalz: []\n", r"unknown field 'signalz'"),
        ("all_signals: yes please\n", r"all_signals: expected true or false"),
        ("signals: []\n", r"signals: expected a non-empty list"),
    ],
)
def test_bad_mapping_documents(tmp_path: Path, doc: str, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        setup_with(tmp_path, doc, dbc=TWINS, name="twins.dbc")


def test_a_name_close_to_a_catalogue_path_is_a_warning(tmp_path: Path) -> None:
    mapping = "signals:\n  - {path: Vehicle.Body.Hood.IsOpn, message: BODY, signal: Bonnet}\n"
    setup = setup_with(tmp_path, mapping)
    assert any("did you mean Vehicle.Body.Hood.IsOpen" in w for w in setup.warnings)


def test_all_signals_from_the_mapping_or_the_option(tmp_path: Path) -> None:
    setup = setup_with(tmp_path, "all_signals: true\n")
    names = [b.path for b in setup.mapping.signals]
    assert names == [
        "BODY.Bonnet",
        "BODY.Gear",
        "CHARGER.PlugConnected",
        "CHARGER.Power",
        "TPMS.Wheel",
        "TPMS.PressureFL",
        "TPMS.PressureFR",
        "BMS_FD.Soc",
        "BMS_FD.CellTemp",
    ]
    d, m = write_mini(tmp_path)
    both = load_bus_setup(mapping=m, signals="all").mapping
    assert len(both.signals) == 8 + 9  # the catalogue bindings, then every signal
    only = load_bus_setup(dbc=d, signals="all").mapping
    assert [b.path for b in only.signals] == names
    with pytest.raises(ConfigError, match=r"needs --mapping .*or --signals all"):
        load_bus_setup(dbc=d)
    with pytest.raises(ConfigError, match=r"--signals: expected one of"):
        load_bus_setup(dbc=d, signals="most")


KCD = """<?xml version="1.0" encoding="UTF-8"?>
<NetworkDefinition xmlns="http://kayak.2codeornot2code.org/1.0">
  <Document name="van" version="1"/>
  <Bus name="Body">
    <Message id="0x2BC" name="BMS_Status" length="2">
      <Signal name="Soc" offset="0" length="8"><Value slope="0.5" unit="%"/></Signal>
      <Signal name="Gear" offset="8" length="2">
        <LabelSet>
          <Label value="0" name="GEAR_P"/><Label value="1" name="GEAR_R"/>
          <Label value="2" name="GEAR_N"/><Label value="3" name="GEAR_D"/>
        </LabelSet>
      </Signal>
    </Message>
    <Message id="0x2BC" format="extended" name="BMS_Ext" length="1">
      <Signal name="Fault" offset="0" length="1"/>
    </Message>
  </Bus>
</NetworkDefinition>
"""


def test_kcd_loads_through_cantools(tmp_path: Path) -> None:
    mapping = f"""signals:
  - {{path: {c.SOC}, message: BMS_Status, signal: Soc, stale_after: 1}}
  - {{path: {c.GEAR}, message: 0x2BC, extended: false, signal: Gear, stale_after: 1}}
  - {{path: Fleet.Bms.Fault, message: 0x2BCx, signal: Fault}}
"""
    setup = setup_with(tmp_path, mapping, dbc=KCD, name="van.kcd")
    core = TcuCore(setup.mapping)
    core.handle(std(0x2BC, bytes([0x91, 0x03])), 0.0)
    core.handle(ext(0x2BC, bytes([1])), 0.0)
    assert core.state.get(c.SOC, 0.0) == pytest.approx(72.5)
    assert core.state.get(c.GEAR, 0.0) == "D"  # GEAR_D names the catalogue's D
    assert core.state.get("Fleet.Bms.Fault", 0.0) is True


ARXML = """<?xml version="1.0" encoding="UTF-8"?>
<AUTOSAR xmlns="http://autosar.org/schema/r4.0">
  <AR-PACKAGES><AR-PACKAGE><SHORT-NAME>Van</SHORT-NAME><ELEMENTS>
    <CAN-CLUSTER><SHORT-NAME>Body</SHORT-NAME><CAN-CLUSTER-VARIANTS><CAN-CLUSTER-CONDITIONAL>
      <BAUDRATE>500000</BAUDRATE>
      <PHYSICAL-CHANNELS><CAN-PHYSICAL-CHANNEL><SHORT-NAME>Channel</SHORT-NAME>
        <FRAME-TRIGGERINGS><CAN-FRAME-TRIGGERING><SHORT-NAME>FT_Charger</SHORT-NAME>
          <FRAME-REF DEST="CAN-FRAME">/Van/Charger</FRAME-REF>
          <CAN-ADDRESSING-MODE>EXTENDED</CAN-ADDRESSING-MODE>
          <IDENTIFIER>419385573</IDENTIFIER>
        </CAN-FRAME-TRIGGERING></FRAME-TRIGGERINGS>
      </CAN-PHYSICAL-CHANNEL></PHYSICAL-CHANNELS>
      <PROTOCOL-NAME>CAN</PROTOCOL-NAME>
    </CAN-CLUSTER-CONDITIONAL></CAN-CLUSTER-VARIANTS></CAN-CLUSTER>
    <CAN-FRAME><SHORT-NAME>Charger</SHORT-NAME><FRAME-LENGTH>8</FRAME-LENGTH>
      <PDU-TO-FRAME-MAPPINGS><PDU-TO-FRAME-MAPPING><SHORT-NAME>ChargerPdu</SHORT-NAME>
        <PACKING-BYTE-ORDER>MOST-SIGNIFICANT-BYTE-LAST</PACKING-BYTE-ORDER>
        <PDU-REF DEST="I-SIGNAL-I-PDU">/Van/Charger_Pdu</PDU-REF>
        <START-POSITION>0</START-POSITION>
      </PDU-TO-FRAME-MAPPING></PDU-TO-FRAME-MAPPINGS>
    </CAN-FRAME>
    <I-SIGNAL-I-PDU><SHORT-NAME>Charger_Pdu</SHORT-NAME><LENGTH>8</LENGTH>
      <I-SIGNAL-TO-PDU-MAPPINGS><I-SIGNAL-TO-I-PDU-MAPPING><SHORT-NAME>Power</SHORT-NAME>
        <I-SIGNAL-REF DEST="I-SIGNAL">/Van/Power</I-SIGNAL-REF>
        <PACKING-BYTE-ORDER>MOST-SIGNIFICANT-BYTE-LAST</PACKING-BYTE-ORDER>
        <START-POSITION>8</START-POSITION>
      </I-SIGNAL-TO-I-PDU-MAPPING></I-SIGNAL-TO-PDU-MAPPINGS>
    </I-SIGNAL-I-PDU>
    <I-SIGNAL><SHORT-NAME>Power</SHORT-NAME><LENGTH>16</LENGTH>
      <SYSTEM-SIGNAL-REF DEST="SYSTEM-SIGNAL">/Van/PowerSignal</SYSTEM-SIGNAL-REF>
    </I-SIGNAL>
    <SYSTEM-SIGNAL><SHORT-NAME>PowerSignal</SHORT-NAME><PHYSICAL-PROPS>
      <SW-DATA-DEF-PROPS-VARIANTS><SW-DATA-DEF-PROPS-CONDITIONAL>
        <COMPU-METHOD-REF DEST="COMPU-METHOD">/Van/TenthKw</COMPU-METHOD-REF>
        <UNIT-REF DEST="UNIT">/Van/kW</UNIT-REF>
      </SW-DATA-DEF-PROPS-CONDITIONAL></SW-DATA-DEF-PROPS-VARIANTS>
    </PHYSICAL-PROPS></SYSTEM-SIGNAL>
    <COMPU-METHOD><SHORT-NAME>TenthKw</SHORT-NAME><CATEGORY>LINEAR</CATEGORY>
      <COMPU-INTERNAL-TO-PHYS><COMPU-SCALES><COMPU-SCALE><COMPU-RATIONAL-COEFFS>
        <COMPU-NUMERATOR><V>0</V><V>0.1</V></COMPU-NUMERATOR>
        <COMPU-DENOMINATOR><V>1</V></COMPU-DENOMINATOR>
      </COMPU-RATIONAL-COEFFS></COMPU-SCALE></COMPU-SCALES></COMPU-INTERNAL-TO-PHYS>
    </COMPU-METHOD>
    <UNIT><SHORT-NAME>kW</SHORT-NAME><DISPLAY-NAME>kW</DISPLAY-NAME></UNIT>
  </ELEMENTS></AR-PACKAGE></AR-PACKAGES>
</AUTOSAR>
"""


def test_arxml_loads_through_cantools(tmp_path: Path) -> None:
    mapping = f"""signals:
  - {{path: {c.CHARGING_POWER}, message: Charger, signal: Power, stale_after: 2}}
  - {{path: Fleet.Charger.Power, message: 0x18FF50E5x, signal: Power}}
"""
    setup = setup_with(tmp_path, mapping, dbc=ARXML, name="van.arxml")
    core = TcuCore(setup.mapping)
    core.handle(ext(0x18FF50E5, bytes([0, 0x51, 0x04, 0, 0, 0, 0, 0])), 0.0)
    assert core.state.get(c.CHARGING_POWER, 0.0) == pytest.approx(110.5)
    section = own_signals_section(setup.mapping, core.state, 0.0)
    assert section is not None
    assert section[0]["Fleet.Charger.Power"]["value"] == pytest.approx(110.5)
    assert section[0]["Fleet.Charger.Power"]["unit"] == "kW"


def model3_trace(db: Any, path: Path) -> dict[str, Any]:
    """One frame of every page of every Model 3 message; what cantools decodes from them."""
    expected: dict[str, Any] = {}
    t = 1.0
    with can.Logger(str(path)) as log:
        for m in db.messages:
            zero = {s.name: 0 for s in m.signals}
            muxes = m._codecs["multiplexers"]
            pages = [{sel: v} for sel, branches in muxes.items() for v in branches] or [{}]
            for page in pages:
                try:
                    data = m.encode(zero | page, scaling=False, strict=False)
                    decoded = m.decode(data)
                except (
                    cantools.database.EncodeError,
                    cantools.database.DecodeError,
                    ValueError,
                    OverflowError,
                ):
                    continue  # a message whose signals do not fit its frame
                t += 0.001
                frame = can.Message(
                    timestamp=t,
                    arbitration_id=m.frame_id,
                    is_extended_id=m.is_extended_frame,
                    data=data,
                )
                log.on_message_received(frame)
                expected.update({f"{m.name}.{k}": v for k, v in decoded.items()})
    return expected


def test_replay_with_all_signals_reports_every_model3_signal(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dbc = shared_dbc("Model3CAN.dbc")
    db = cantools.database.load_file(str(dbc), strict=False)
    trace = tmp_path / "m3.log"
    expected = model3_trace(db, trace)
    assert len(expected) > 3000
    assert main(["replay", str(trace), "--dbc", str(dbc), "--signals", "all", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    signals = out["signals"]
    assert len(signals) == sum(len(m.signals) for m in db.messages)
    for name, value in expected.items():
        got = signals[name]["value"]
        want = getattr(value, "name", value)
        assert got == want or (isinstance(got, bool) and got == bool(value)), name
    unknown = {n for n, v in signals.items() if v["value"] is None}
    assert unknown == set(signals) - set(expected)  # only signals no frame could carry
    assert signals["ID118DriveSystemStatus.DI_gear"] == {"value": "DI_GEAR_INVALID", "unit": ""}
    assert any("loaded non-strictly" in w for w in out["warnings"])
