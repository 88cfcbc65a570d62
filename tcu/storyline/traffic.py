"""The signals the TCU does not map: what the other ECUs put in their frames.

Theory of operation: a real bus carries far more than the TCU reads. For each message of
the reference van this module derives its unmapped signals from the storyline at the
frame's time: motor torque and speed from the speed track and its slope, wheel speeds
(the deflating tyre turns a little faster), pack voltage and current from the state of
charge and the power flowing, cell statistics around the average battery temperature,
charger AC input from the charging power and the infrastructure, and so on. A storyline
track named after a DBC signal (``HVAC_CabinTemp``) overrides the derivation; anything
left over is the encoder's default. Noise comes from the caller's seeded generator so the
same seed gives the same bytes.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass

from tcu.storyline.story import BusMode, Storyline
from tcu.vehicle import catalogue as c
from tcu.vehicle.catalogue import Value

MASS_KG = 3100.0
WHEEL_RADIUS_M = 0.345
GEAR_RATIO = 9.6
AC_TYPES = {"WALLBOX": 3, "PUBLIC_AC": 3, "HOME_SOCKET": 1}
CURRENT_LIMIT_A = {"WALLBOX": 32.0, "PUBLIC_AC": 16.0, "HOME_SOCKET": 10.0, "DC": 200.0}
MODULE_OFFSETS = tuple(0.5 * round(2.0 * math.sin(1.3 * i)) for i in range(24))


@dataclass(slots=True)
class FrameContext:
    """What a frame's unmapped signals are derived from."""

    story: Storyline
    t: float
    mode: BusMode
    rng: random.Random

    def get(self, key: str) -> Value | None:
        return self.story.value(key, self.t)

    def num(self, key: str, default: float = 0.0) -> float:
        v = self.story.value(key, self.t)
        if isinstance(v, bool):
            return 1.0 if v else 0.0
        return float(v) if isinstance(v, float) else default

    def accel(self) -> float:
        """Longitudinal acceleration in m/s^2 from the slope of the speed track."""
        v0 = self.story.value(c.SPEED, max(0.0, self.t - 0.5))
        v1 = self.story.value(c.SPEED, self.t + 0.5)
        if not isinstance(v0, float) or not isinstance(v1, float):
            return 0.0
        return (v1 - v0) / 3.6

    def running(self) -> bool:
        return self.get(c.IGNITION) in ("ON", "START")

    def charging(self) -> bool:
        return self.get(c.CHARGING_STATUS) == "CHARGING"

    def noise(self, sigma: float) -> float:
        return self.rng.gauss(0.0, sigma)


def _clip(v: float, lo: float, hi: float) -> float:
    return min(hi, max(lo, v))


def _traction(x: FrameContext) -> tuple[float, float]:
    """Motor torque (Nm) and electrical traction power (kW)."""
    v = x.num(c.SPEED) / 3.6
    if v < 0.05 and x.accel() <= 0:
        return 0.0, 0.0
    a = x.accel()
    force = MASS_KG * a + MASS_KG * 9.81 * 0.011 + 0.5 * 1.2 * 0.95 * 4.2 * v * v
    torque = force * WHEEL_RADIUS_M / GEAR_RATIO
    power = force * v / 1000.0
    power = power / 0.9 if power > 0 else power * 0.7
    return torque, power


def _motor_rpm(x: FrameContext) -> float:
    v = x.num(c.SPEED) / 3.6
    rpm = v / (2 * math.pi * WHEEL_RADIUS_M) * 60.0 * GEAR_RATIO
    return -rpm if x.get(c.GEAR) == "R" else rpm


def mcu_torque(x: FrameContext) -> dict[str, float]:
    torque, _ = _traction(x)
    moving = x.num(c.SPEED) > 0.1
    if moving:
        torque += x.noise(1.2)
    state = (4.0 if torque < 0 else 3.0) if moving else (2.0 if x.running() else 1.0)
    return {
        "MCU_TorqueActual": round(_clip(torque, -3276.8, 3276.7), 1),
        "MCU_MotorSpeed": float(round(_motor_rpm(x))),
        "MCU_InverterTemp": float(round(x.num(c.BATTERY_TEMP) + 12.0)),
        "MCU_State": state,
    }


def esc_wheel_speeds(x: FrameContext) -> dict[str, float]:
    v = x.num(c.SPEED)
    out: dict[str, float] = {}
    for wheel, tyre in zip(("FL", "FR", "RL", "RR"), c.TYRES, strict=True):
        rolling = 1.0 + (450.0 - x.num(tyre, 450.0)) / 450.0 * 0.03
        w = v * rolling + (x.noise(0.03) if v > 0.1 else 0.0)
        out[f"ESC_WheelSpeed{wheel}"] = round(_clip(w, 0.0, 409.575), 3)
    out["ESC_BrakePressed"] = 1.0 if x.accel() < -0.4 or (v < 0.1 and x.running()) else 0.0
    return out


def vcu_drive(x: FrameContext) -> dict[str, float]:
    a = x.accel()
    v = x.num(c.SPEED)
    pedal = _clip(18.0 + a * 45.0, 0.0, 100.0) if v > 0.1 and a >= -0.05 else 0.0
    return {
        "VCU_AccelPedal": round(pedal, 1),
        "VCU_BrakePedal": 1.0 if a < -0.4 or (v < 0.1 and x.running()) else 0.0,
        "VCU_ReadyToDrive": 1.0 if x.running() else 0.0,
        "VCU_DriveMode": 1.0,
    }


def _pack_voltage(x: FrameContext) -> float:
    return 330.0 + 0.75 * x.num(c.SOC)


def bms_status(x: FrameContext) -> dict[str, float]:
    volts = _pack_voltage(x)
    _, traction_kw = _traction(x)
    kw = traction_kw + (1.2 if x.running() else 0.0) + x.num("HVAC_HeaterPower")
    if x.charging():
        kw -= x.num(c.CHARGING_POWER)
    amps = kw * 1000.0 / volts + x.noise(0.15)
    closed = x.running() or x.charging() or x.num("HVAC_PrecondActive") > 0
    return {
        "BMS_PackVoltage": round(volts - 0.04 * amps, 1),
        "BMS_PackCurrent": round(_clip(amps, -1000.0, 1000.0), 1),
        "BMS_ContactorState": 2.0 if closed else 0.0,
        "BMS_IsolationOk": 1.0,
    }


def bms_energy(x: FrameContext) -> dict[str, float]:
    cap = x.num("BMS_UsableCapacity", 90.0)
    heater = x.num("HVAC_PrecondActive") > 0 and x.num(c.BATTERY_TEMP) < 15.0
    return {
        "BMS_StateOfHealth": 96.0,
        "BMS_EnergyRemaining": round(x.num(c.SOC) / 100.0 * cap, 2),
        "BMS_UsableCapacity": round(cap, 2),
        "BMS_HeaterActive": 1.0 if heater else 0.0,
    }


def bms_cell_stats(x: FrameContext) -> dict[str, float]:
    soc = x.num(c.SOC)
    avg_v = 3.30 + 0.0085 * soc
    temp = x.num(c.BATTERY_TEMP)
    out = {
        "BMS_CellVoltageAvg": round(avg_v, 3),
        "BMS_CellVoltageMin": round(avg_v - 0.012, 3),
        "BMS_CellVoltageMax": round(avg_v + 0.009, 3),
        "BMS_CellTempMin": _clip(temp - 1.5, -40.0, 87.5),
        "BMS_CellTempMax": _clip(temp + 2.0, -40.0, 87.5),
        "BMS_CellIdxVoltageMin": 17.0,
        "BMS_CellIdxVoltageMax": 83.0,
        "BMS_BalancingActive": 1.0 if x.charging() and soc > 85.0 else 0.0,
        "BMS_CoolantInletTemp": _clip(temp - 2.0, -40.0, 87.5),
        "BMS_CoolantOutletTemp": _clip(temp + 1.0, -40.0, 87.5),
    }
    for i, offset in enumerate(MODULE_OFFSETS, start=1):
        out[f"BMS_ModuleTemp{i:02d}"] = _clip(temp + offset, -40.0, 87.5)
    return out


def obc_charging(x: FrameContext) -> dict[str, float]:
    infra = x.get(c.INFRA_TYPE)
    limit = CURRENT_LIMIT_A.get(infra, 0.0) if isinstance(infra, str) else 0.0
    power = x.num(c.CHARGING_POWER)
    target = x.num("OBC_TargetSoC", 100.0)
    ttf = 4095.0
    if x.charging() and power > 0:
        cap = x.num("BMS_UsableCapacity", 90.0)
        ttf = _clip(round(max(0.0, target - x.num(c.SOC)) / 100.0 * cap / power * 60.0), 0, 4094)
    return {
        "OBC_CurrentLimit": limit if x.get(c.INFRA_CONNECTED) is True else 0.0,
        "OBC_TargetSoC": round(target),
        "OBC_TimeToFull": float(ttf),
    }


def obc_ac_input(x: FrameContext) -> dict[str, float]:
    infra = x.get(c.INFRA_TYPE)
    phases = AC_TYPES.get(infra, 0) if isinstance(infra, str) else 0
    if not phases or x.get(c.INFRA_CONNECTED) is not True:
        return {
            "OBC_AcVoltage": 0.0,
            "OBC_AcCurrent": 0.0,
            "OBC_AcFrequency": 0.0,
            "OBC_AcPhases": 0.0,
            "OBC_Temperature": round(x.num(c.OUTSIDE_TEMP)),
        }
    kw = (x.num(c.CHARGING_POWER) if x.charging() else 0.0) + x.num("HVAC_HeaterPower")
    amps = kw * 1000.0 / (phases * 230.0 * 0.94)
    return {
        "OBC_AcVoltage": round(230.0 + x.noise(0.6), 1),
        "OBC_AcCurrent": round(_clip(amps + x.noise(0.05), 0.0, 100.0), 1),
        "OBC_AcFrequency": round(50.0 + x.noise(0.01), 2),
        "OBC_AcPhases": float(phases),
        "OBC_Temperature": float(round(x.num(c.OUTSIDE_TEMP) + 8.0 + kw)),
    }


def bcm_body(x: FrameContext) -> dict[str, float]:
    door_open = any(x.get(d) is True for d in c.DOORS)
    return {
        "BCM_AlarmArmed": 1.0 if x.get(c.LOCKED) is True and not x.running() else 0.0,
        "BCM_InteriorLight": 1.0 if door_open else 0.0,
        "BCM_BatteryVoltage12V": 14.1 if x.running() or x.charging() else 12.7,
    }


def tpms_pressures(x: FrameContext) -> dict[str, float]:
    out: dict[str, float] = {}
    warm = x.num(c.OUTSIDE_TEMP) + 4.0 + x.num(c.SPEED) * 0.06
    for wheel in ("FL", "FR", "RL", "RR"):
        out[f"TPMS_Temperature{wheel}"] = float(round(_clip(warm, -40.0, 120.0)))
    low = any(x.num(t, 450.0) < 340.0 for t in c.TYRES)
    out["TPMS_WarningActive"] = 1.0 if low else 0.0
    return out


def hvac_climate(x: FrameContext) -> dict[str, float]:
    active = x.num("HVAC_PrecondActive") > 0
    cabin = x.num("HVAC_CabinTemp", 20.0)
    setpoint = x.num(c.CABIN_SETPOINT, 21.0)
    blower = 4.0 if active else (2.0 if x.running() else 0.0)
    cooling = (active or x.running()) and cabin > setpoint + 1.0
    return {"HVAC_BlowerLevel": blower, "HVAC_CompressorOn": 1.0 if cooling else 0.0}


def gnss_status(x: FrameContext) -> dict[str, float]:
    moving = x.num(c.SPEED) > 0.1
    return {
        "GNSS_FixType": 2.0,
        "GNSS_Satellites": float(10 + round(x.noise(1.0))) if moving else 11.0,
        "GNSS_Speed": round(_clip(x.num(c.SPEED), 0.0, 320.0), 2),
        "GNSS_Hdop": round(_clip(0.9 + abs(x.noise(0.15)), 0.5, 25.5), 1),
    }


DERIVED: dict[str, Callable[[FrameContext], dict[str, float]]] = {
    "MCU_Torque": mcu_torque,
    "ESC_WheelSpeeds": esc_wheel_speeds,
    "VCU_Drive": vcu_drive,
    "BMS_Status": bms_status,
    "BMS_Energy": bms_energy,
    "BMS_CellStats": bms_cell_stats,
    "OBC_Charging": obc_charging,
    "OBC_AcInput": obc_ac_input,
    "BCM_Body": bcm_body,
    "TPMS_Pressures": tpms_pressures,
    "HVAC_Climate": hvac_climate,
    "GNSS_Status": gnss_status,
}
