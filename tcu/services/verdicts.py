"""Verdicts: what the TCU decided about a vehicle function, and every reason why.

Theory of operation. A rule looks at the vehicle state and returns one ``Verdict``:
``allowed``, ``allowed_with_warnings``, ``not_needed`` or ``refused``. A verdict names
every failing precondition, never just the first, each as a ``Reason`` with a stable
machine-readable code (``REASON_CODES``), a sentence for the fleet operator and the
values behind it (signal path -> value, plus named estimates such as
``estimate.full_at_t``). Each code has a kind that fixes where it may appear: refusal
codes in ``reasons`` of a refused verdict, warning codes in ``warnings``, not-needed
codes in ``reasons`` of a not-needed verdict, session codes only on session transitions.
The classes check this on construction, so a malformed verdict cannot exist.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from tcu.vehicle.catalogue import Value

Service = Literal["charging", "preconditioning", "lock", "unlock"]
Outcome = Literal["allowed", "allowed_with_warnings", "not_needed", "refused"]
ReasonKind = Literal["refusal", "warning", "not_needed", "session"]

SERVICES: tuple[Service, ...] = ("charging", "preconditioning", "lock", "unlock")
OUTCOMES: tuple[Outcome, ...] = ("allowed", "allowed_with_warnings", "not_needed", "refused")

REASON_CODES: dict[str, tuple[ReasonKind, str]] = {
    "signal_unknown": ("refusal", "a signal the rule needs is unknown, stale or not available"),
    "signal_invalid": ("refusal", "a signal carries a value outside its range"),
    "plug_not_connected": ("refusal", "the charge plug is not connected"),
    "plug_not_locked": ("refusal", "the charge plug is not locked in the inlet"),
    "infrastructure_not_connected": (
        "refusal",
        "the plug is not connected to the charging infrastructure",
    ),
    "bonnet_open": ("refusal", "the bonnet is open"),
    "gear_not_park": ("refusal", "the gear selector is not in P"),
    "rfid_pending": ("refusal", "the station is still waiting for the RFID card"),
    "rfid_rejected": ("refusal", "the station rejected the RFID card"),
    "preconditioning_disabled": ("refusal", "climate preconditioning is switched off"),
    "departure_not_set": ("refusal", "no departure time is set"),
    "door_open": ("refusal", "one or more doors are open (values name them)"),
    "window_open": ("refusal", "one or more windows are open (values name them)"),
    "battery_too_low": ("refusal", "the battery is at or below the preconditioning minimum"),
    "vehicle_moving": ("refusal", "the van is moving"),
    "request_in_progress": ("refusal", "another lock or unlock request is still pending"),
    "not_full_by_departure": ("warning", "the battery will not be full by the departure"),
    "estimate_unavailable": ("warning", "the time to full charge could not be estimated"),
    "not_wallbox": ("warning", "not on a wallbox: preconditioning may be less effective"),
    "setpoint_equals_outside": ("not_needed", "the cabin setpoint equals the outside air"),
    "target_soc_reached": ("not_needed", "the battery is at or above the target charge"),
    "already_active": ("not_needed", "the service is already scheduled or running"),
    "already_locked": ("not_needed", "the van is already locked"),
    "already_unlocked": ("not_needed", "the van is already unlocked"),
    "charging_fault": ("session", "the van reports a charging fault"),
    "charging_complete": ("session", "the van reports the charge complete"),
    "stop_requested": ("session", "a stop command ended the session"),
    "departure_reached": ("session", "the planned departure time was reached"),
    "lock_confirmed": ("session", "the van's lock status confirms the request"),
    "not_confirmed": ("session", "the van's lock status did not confirm in time"),
    "request_not_sent": ("session", "the request frame could not be built"),
}

_VERDICT_KINDS: dict[Outcome, ReasonKind | None] = {
    "allowed": None,
    "allowed_with_warnings": None,
    "not_needed": "not_needed",
    "refused": "refusal",
}


def reason_kind(code: str) -> ReasonKind:
    try:
        return REASON_CODES[code][0]
    except KeyError:
        raise ValueError(f"unknown reason code {code!r}") from None


@dataclass(frozen=True, slots=True, kw_only=True)
class Reason:
    """One named cause: a stable code, a sentence, and the values behind it."""

    code: str
    message: str
    values: dict[str, Value | None] = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        reason_kind(self.code)
        if not self.message.strip():
            raise ValueError(f"reason {self.code}: empty message")
        for key, value in self.values.items():
            if not isinstance(key, str) or not key:
                raise ValueError(f"reason {self.code}: value keys must be non-empty strings")
            if value is not None and not isinstance(value, bool | int | float | str):
                raise ValueError(f"reason {self.code}: {key}: not a JSON scalar: {value!r}")

    @property
    def kind(self) -> ReasonKind:
        return reason_kind(self.code)

    def as_dict(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message, "values": dict(self.values)}


@dataclass(frozen=True, slots=True, kw_only=True)
class Verdict:
    """The decision about one vehicle function at vehicle time ``t``."""

    t: float
    service: Service
    outcome: Outcome
    reasons: tuple[Reason, ...] = ()
    warnings: tuple[Reason, ...] = ()

    def __post_init__(self) -> None:
        if not math.isfinite(self.t):
            raise ValueError(f"verdict time must be finite, not {self.t!r}")
        if self.service not in SERVICES:
            raise ValueError(f"unknown service {self.service!r}")
        if self.outcome not in OUTCOMES:
            raise ValueError(f"unknown outcome {self.outcome!r}")
        if not isinstance(self.reasons, tuple) or not isinstance(self.warnings, tuple):
            raise ValueError("reasons and warnings must be tuples")
        for r in (*self.reasons, *self.warnings):
            if not isinstance(r, Reason):
                raise ValueError(f"not a Reason: {r!r}")
        want = _VERDICT_KINDS[self.outcome]
        if want is None and self.reasons:
            raise ValueError(f"an {self.outcome} verdict has no reasons")
        if want is not None and not self.reasons:
            raise ValueError(f"a {self.outcome} verdict needs at least one reason")
        for r in self.reasons:
            if r.kind != want:
                raise ValueError(f"{r.code} ({r.kind}) cannot be a reason of a {self.outcome}")
        for w in self.warnings:
            if w.kind != "warning":
                raise ValueError(f"{w.code} ({w.kind}) is not a warning")
        if self.outcome == "allowed" and self.warnings:
            raise ValueError("an allowed verdict with warnings is allowed_with_warnings")
        if self.outcome == "allowed_with_warnings" and not self.warnings:
            raise ValueError("allowed_with_warnings needs at least one warning")
        if self.outcome == "not_needed" and self.warnings:
            raise ValueError("a not_needed verdict carries no warnings")

    @property
    def codes(self) -> tuple[str, ...]:
        return tuple(r.code for r in self.reasons)

    @property
    def warning_codes(self) -> tuple[str, ...]:
        return tuple(w.code for w in self.warnings)

    @property
    def goes_ahead(self) -> bool:
        return self.outcome in ("allowed", "allowed_with_warnings")

    def as_dict(self) -> dict[str, Any]:
        return {
            "t": self.t,
            "service": self.service,
            "outcome": self.outcome,
            "reasons": [r.as_dict() for r in self.reasons],
            "warnings": [w.as_dict() for w in self.warnings],
        }


def decide(
    t: float,
    service: Service,
    refusals: Sequence[Reason],
    warnings: Sequence[Reason] = (),
    not_needed: Sequence[Reason] = (),
) -> Verdict:
    """The verdict for what the checks found: refusals win, then not-needed, then warnings."""
    if refusals:
        return Verdict(
            t=t,
            service=service,
            outcome="refused",
            reasons=tuple(refusals),
            warnings=tuple(warnings),
        )
    if not_needed:
        return Verdict(t=t, service=service, outcome="not_needed", reasons=tuple(not_needed))
    if warnings:
        return Verdict(
            t=t, service=service, outcome="allowed_with_warnings", warnings=tuple(warnings)
        )
    return Verdict(t=t, service=service, outcome="allowed")
