"""The signed downlink: activation, deactivation and remote commands from the backend.

Theory of operation. ``DownlinkPart`` is a core part that handles ``Downlink(payload)``
events. A message is accepted only when every check passes, in this order, and the first
failure is the refusal reason:

1. the COSE_Sign1 signature verifies with the backend's public key (``bad_signature``;
   ``malformed`` when the bytes are not a COSE_Sign1 message at all);
2. the payload is a well-formed downlink map (``malformed``);
3. it names this vehicle (``wrong_vin``);
4. it has not expired on the vehicle clock, ``origin_epoch + now`` (``expired``);
5. its counter is above the last accepted one (``replayed``);
6. its name is a known command with a valid argument (``unknown_command``, ``malformed``).

Every message gets a status reply, signed with the vehicle key, as a ``Publish`` action on
``status``: ``refused`` with the reason, or ``accepted``. A refusal names the command's id
and counter only when the vehicle verified them as its own: a message refused for
``bad_signature``, ``malformed`` (before its signature was checked) or ``wrong_vin`` is
answered with an empty id and counter 0, so that no one who can publish can make the
vehicle sign another command's id into its answers. An empty payload is no message: it is
how MQTT takes a retained message off a topic (the backend does so once a vehicle has
picked up the command that waited for it), and it is counted, not answered.

On acceptance the counter is persisted first (a ``SaveDownlink`` action, with the new
service state for activation and deactivation, else None, ahead of every other action; the
host commits it before it carries out the rest) and only then acted upon, so a crash can
lose a command but never replay one. ``activate``/``deactivate`` become a
``ServiceActivation`` event and remote commands a ``tcu.events.Command(source="backend")``,
both returned as ``Dispatch`` actions for the driver to feed back into the core. Every
judged message ends with an ``Emit`` of kind ``downlink`` saying what became of it. A
command's result comes
back through ``command_result`` and is reported as ``completed`` or ``failed``.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from tcu.errors import DecodeError
from tcu.events import (
    Action,
    Command,
    Dispatch,
    Downlink,
    Emit,
    Log,
    Publish,
    SaveDownlink,
    ServiceActivation,
)
from tcu.telemetry.codec.cose import CoseError, SigningKey, VerifyKey, key_id, sign1, verify1
from tcu.telemetry.codec.schema import (
    DOWNLINK_NAMES,
    MAX_TEXT,
    DownlinkMessage,
    StatusMessage,
    decode_downlink,
    encode_status,
)
from tcu.vehicle.catalogue import COMMAND_NAMES

STATUS_TOPIC = "status"
_HHMM = re.compile(r"([01][0-9]|2[0-3]):[0-5][0-9]")
_COSE_MALFORMED = frozenset({"malformed", "missing_payload"})
MAX_OUTSTANDING = 256
_FAILED = frozenset({"refused", "rejected", "failed"})
DOWNLINK_EMIT = "downlink"
"""The kind of the ``Emit`` that reports what became of one downlink message."""
_PLAIN_SUCCESS = frozenset({"completed", "allowed", "sent"})
_CONFIRMED_LATER = frozenset({"lock", "unlock"})


@dataclass(frozen=True, slots=True, kw_only=True)
class Refusal:
    reason: str
    detail: str


class DownlinkPart:
    """Verifies backend messages and turns them into service switches and commands."""

    def __init__(
        self,
        *,
        vin: str,
        backend_key: VerifyKey,
        vehicle_key: SigningKey,
        origin_epoch: float,
        last_counter: int = 0,
    ) -> None:
        self.vin = vin
        self.backend_key = backend_key
        self.vehicle_key = vehicle_key
        self.kid = key_id(vehicle_key)
        self.origin_epoch = origin_epoch
        self.last_counter = last_counter
        self.accepted: Counter[str] = Counter()
        self.refused: Counter[str] = Counter()
        self.cleared = 0
        self._refusal: str | None = None
        self._outstanding: dict[str, int] = {}

    # --- Part protocol -----------------------------------------------------------------------

    def on_signals(self, changed: list[str], now: float) -> list[Action]:
        return []

    def on_event(self, event: Any, now: float) -> list[Action] | None:
        if not isinstance(event, Downlink):
            return None
        return self.receive(event.payload, now)

    def on_tick(self, now: float) -> list[Action]:
        return []

    def next_deadline(self) -> float:
        return float("inf")

    # --- messages ----------------------------------------------------------------------------

    def receive(self, payload: bytes, now: float) -> list[Action]:
        """Judge one downlink; the actions end with an ``Emit`` of kind ``downlink`` that
        tells observers what became of these bytes (``refused``: the reason, or None)."""
        if not payload:
            self.cleared += 1
            return []
        self._refusal = None
        actions = self._receive(payload, now)
        outcome = Emit(kind=DOWNLINK_EMIT, body={"payload": payload, "refused": self._refusal})
        return [*actions, outcome]

    def _receive(self, payload: bytes, now: float) -> list[Action]:
        try:
            message = self._verify(payload)
            refusal = self._check(message, now)
        except _Refused as exc:
            return self._refuse(exc.refusal, None, now)
        if refusal is not None:
            mine = refusal.reason != "wrong_vin"
            return self._refuse(refusal, message if mine else None, now)
        switch = {"activate": True, "deactivate": False}.get(message.name)
        self.last_counter = message.counter
        self.accepted[message.name] += 1
        return [SaveDownlink(counter=message.counter, active=switch), *self._act(message, now)]

    def _verify(self, payload: bytes) -> DownlinkMessage:
        try:
            signed = verify1(payload, self.backend_key)
        except CoseError as exc:
            reason = "malformed" if exc.reason in _COSE_MALFORMED else "bad_signature"
            raise _Refused(Refusal(reason=reason, detail=str(exc))) from None
        try:
            return decode_downlink(signed.payload)
        except DecodeError as exc:
            raise _Refused(Refusal(reason="malformed", detail=str(exc))) from None

    def _check(self, message: DownlinkMessage, now: float) -> Refusal | None:
        if message.vin != self.vin:
            return Refusal(reason="wrong_vin", detail=f"addressed to {message.vin}")
        clock = self.origin_epoch + now
        if clock > message.expires_at:
            late = clock - message.expires_at
            return Refusal(reason="expired", detail=f"expired {late:.0f} s ago")
        if message.counter <= self.last_counter:
            return Refusal(
                reason="replayed",
                detail=f"counter {message.counter} not above {self.last_counter}",
            )
        if message.name not in DOWNLINK_NAMES:
            return Refusal(reason="unknown_command", detail=f"unknown command {message.name!r}")
        if message.name == "set_departure":
            if message.argument is None or _HHMM.fullmatch(message.argument) is None:
                return Refusal(reason="malformed", detail="set_departure needs HH:MM")
        elif message.argument is not None:
            return Refusal(reason="malformed", detail=f"{message.name} takes no argument")
        return None

    def _act(self, message: DownlinkMessage, now: float) -> list[Action]:
        name = message.name
        cid = message.command_id
        if name in ("activate", "deactivate"):
            switch = ServiceActivation(active=name == "activate", command_id=cid)
            return [
                Log(level="info", text=f"backend {name}s the service (command {cid})"),
                self._status(cid, message.counter, "completed", None, now),
                Dispatch(event=switch),
            ]
        assert name in COMMAND_NAMES
        command = Command(name=name, argument=message.argument, command_id=cid, source="backend")
        self._outstanding[cid] = message.counter
        while len(self._outstanding) > MAX_OUTSTANDING:
            del self._outstanding[next(iter(self._outstanding))]
        return [
            Log(level="info", text=f"backend command {name} accepted (command {cid})"),
            self._status(cid, message.counter, "accepted", None, now),
            Dispatch(event=command),
        ]

    def command_result(self, body: Mapping[str, Any], now: float) -> list[Action]:
        """Report a service's ``command_result`` for a backend command on ``status``.

        The body names the command (``command_id``, ``command``) and its ``status``;
        "refused", "rejected" and "failed" report ``failed``, "sent" of a lock or unlock
        is not final (the van has yet to confirm), anything else reports ``completed``.
        The reason is the first of ``reasons``, else the status when it says more than
        plain success.
        """
        cid = body.get("command_id")
        if not isinstance(cid, str) or cid not in self._outstanding:
            return []
        status = body.get("status")
        if not isinstance(status, str):
            return []
        if status == "sent" and body.get("command") in _CONFIRMED_LATER:
            return []
        counter = self._outstanding.pop(cid)
        reasons = body.get("reasons")
        reason = reasons[0] if isinstance(reasons, list | tuple) and reasons else None
        if not isinstance(reason, str) or not 0 < len(reason) <= MAX_TEXT:
            reason = None if status in _PLAIN_SUCCESS else status[:MAX_TEXT] or None
        outcome = "failed" if status in _FAILED else "completed"
        return [self._status(cid, counter, outcome, reason, now)]

    def _refuse(
        self, refusal: Refusal, message: DownlinkMessage | None, now: float
    ) -> list[Action]:
        """Refuse; name the command only when `message` is verified and addressed to us."""
        self.refused[refusal.reason] += 1
        self._refusal = refusal.reason
        cid, counter = (message.command_id, message.counter) if message is not None else ("", 0)
        text = f"downlink refused: {refusal.reason}: {refusal.detail}"
        return [
            Log(level="warning", text=text),
            self._status(cid, counter, "refused", refusal.reason, now),
        ]

    def _status(
        self, command_id: str, counter: int, outcome: str, reason: str | None, now: float
    ) -> Publish:
        status = StatusMessage(
            vin=self.vin,
            command_id=command_id,
            counter=counter,
            outcome=outcome,
            reason=reason,
            t_ms=max(0, round(now * 1000)),
        )
        payload = sign1(encode_status(status), self.vehicle_key, kid=self.kid)
        return Publish(topic_suffix=STATUS_TOPIC, payload=payload)

    def contribute(self, report: Any, now: float) -> None:
        report.extra["downlink"] = {
            "accepted": dict(sorted(self.accepted.items())),
            "refused": dict(sorted(self.refused.items())),
            "last_counter": self.last_counter,
            "retained_cleared": self.cleared,
        }
        accepted = sum(self.accepted.values())
        refused = ", ".join(f"{k} {v}" for k, v in sorted(self.refused.items())) or "none"
        report.sections.append(
            f"Downlink\n  accepted: {accepted}; refused: {refused};"
            f" last counter: {self.last_counter}"
        )


class _Refused(Exception):
    def __init__(self, refusal: Refusal) -> None:
        super().__init__(refusal.reason)
        self.refusal = refusal
