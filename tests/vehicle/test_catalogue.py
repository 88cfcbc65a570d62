"""The signal catalogue: VSS paths where VSS has one, the Vehicle.Private branch elsewhere."""

from __future__ import annotations

from tcu.vehicle import catalogue as c
from tcu.vehicle.catalogue import CATALOGUE, SIGNAL_BY_ID, SIGNAL_IDS


def test_every_path_is_vss_or_the_private_branch() -> None:
    for path in CATALOGUE:
        assert path.startswith("Vehicle."), path
        assert all(part and part[0].isupper() for part in path.split(".")), path


def test_known_vss_names_are_used_as_vss_spells_them() -> None:
    assert c.BONNET == "Vehicle.Body.Hood.IsOpen"
    assert c.SOC == "Vehicle.Powertrain.TractionBattery.StateOfCharge.Current"
    assert c.GEAR == "Vehicle.Powertrain.Transmission.SelectedGear"
    assert c.PLUG_CONNECTED == (
        "Vehicle.Powertrain.TractionBattery.Charging.ChargingPort.AnyPosition."
        "IsChargingCableConnected"
    )


def test_signal_ids_are_a_bijection() -> None:
    assert set(SIGNAL_IDS) == set(CATALOGUE)
    assert len(set(SIGNAL_IDS.values())) == len(SIGNAL_IDS)
    assert all(SIGNAL_BY_ID[i] == p for p, i in SIGNAL_IDS.items())
