"""Scenario text the scenario tests share."""

PORT = "Vehicle.Powertrain.TractionBattery.Charging.ChargingPort.AnyPosition"
PLUGGED = f"""
initial:
  Vehicle.Powertrain.Transmission.SelectedGear: P
  Vehicle.Body.Hood.IsOpen: true
  Vehicle.Private.Charging.RfidAuthorization: NOT_REQUIRED
  Vehicle.Powertrain.TractionBattery.StateOfCharge.Current: 40
  Vehicle.Private.Climate.DepartureTime: null
  {PORT}.IsChargingCableConnected: true
  {PORT}.IsChargingCableLocked: true
  Vehicle.Private.Charging.IsInfrastructureConnected: true
"""
"""A van in P with the bonnet open, plugged in: charging is refused until it is closed."""
