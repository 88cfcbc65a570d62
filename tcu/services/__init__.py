"""Charging, climate preconditioning and remote lock/unlock: rules, verdicts and sessions."""

from tcu.services.config import DEFAULT_VIN, VehicleConfig, next_departure_t, parse_hhmm
from tcu.services.part import RequestFrame, ServicesPart, encoder_requests
from tcu.services.rules import (
    charging_verdict,
    lock_verdict,
    preconditioning_verdict,
    time_to_full_s,
    unlock_verdict,
)
from tcu.services.sessions import (
    CHARGING_TABLE,
    LOCK_TABLE,
    PRECONDITIONING_TABLE,
    Session,
    Transition,
)
from tcu.services.verdicts import REASON_CODES, Reason, Verdict

__all__ = [
    "CHARGING_TABLE",
    "DEFAULT_VIN",
    "LOCK_TABLE",
    "PRECONDITIONING_TABLE",
    "REASON_CODES",
    "Reason",
    "RequestFrame",
    "ServicesPart",
    "Session",
    "Transition",
    "VehicleConfig",
    "Verdict",
    "charging_verdict",
    "encoder_requests",
    "lock_verdict",
    "next_departure_t",
    "parse_hhmm",
    "preconditioning_verdict",
    "time_to_full_s",
    "unlock_verdict",
]
