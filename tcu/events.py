"""Events the TCU core handles and actions it returns.

The core is driven by ``handle(event, now)``. A CAN frame is handed over as the
``can.Message`` the source produced (no wrapper on the hot path); everything else is
one of the frozen event classes below. ``handle`` returns a list of actions for the
driver to carry out: send a CAN frame, store a telemetry record, publish bytes, log.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import can

from tcu.vehicle.catalogue import COMMAND_NAMES


@dataclass(frozen=True, slots=True, kw_only=True)
class Tick:
    """Time has advanced; fire whatever is due."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Command:
    """A request for a vehicle function, from the backend or injected on a trace."""

    name: str
    argument: str | None = None
    command_id: str = ""
    source: str = "local"

    def __post_init__(self) -> None:
        if self.name not in COMMAND_NAMES:
            raise ValueError(f"unknown command {self.name!r} (known: {', '.join(COMMAND_NAMES)})")
        if self.name == "set_departure" and self.argument is None:
            raise ValueError("set_departure needs a time argument HH:MM")


@dataclass(frozen=True, slots=True, kw_only=True)
class Downlink:
    """Signed bytes from the backend (activation, deactivation, command)."""

    payload: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class Ack:
    """The backend has stored every record of ``epoch`` up to ``sequence``."""

    epoch: int
    sequence: int


@dataclass(frozen=True, slots=True, kw_only=True)
class SignalOverride:
    """Set (or with ``release``, stop overriding) a signal's value, as a scenario does."""

    path: str
    value: Any = None
    release: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class SendFrame:
    message: can.Message


@dataclass(frozen=True, slots=True, kw_only=True)
class Log:
    level: str
    text: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Emit:
    """A fact a part reports: a verdict, session transition, alarm, command result, the
    outcome of a downlink. The reporting policy makes telemetry records of its inner
    parts' emits; the host shows every emit to its sinks."""

    kind: str
    body: dict[str, Any] = field(default_factory=dict)
    priority: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class ServiceActivation:
    """The backend switched the connected service on (``active``) or off."""

    active: bool
    command_id: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class StoreRecords:
    """Telemetry records produced together: commit them to the outbox in one transaction.

    The records are ``tcu.telemetry.records.Record`` objects; events know nothing of
    their shape, so this layer depends on none above it.
    """

    records: tuple[Any, ...]

    def __post_init__(self) -> None:
        if not self.records:
            raise ValueError("StoreRecords needs at least one record")


@dataclass(frozen=True, slots=True, kw_only=True)
class Publish:
    """Signed bytes for the driver to publish, QoS 1, on ``{prefix}/{vin}/{topic_suffix}``."""

    topic_suffix: str
    payload: bytes

    def __post_init__(self) -> None:
        if not self.topic_suffix or any(c in self.topic_suffix for c in "/+#"):
            raise ValueError(f"topic suffix must be one plain level: {self.topic_suffix!r}")
        if not isinstance(self.payload, bytes):
            raise TypeError("Publish payload must be bytes")


@dataclass(frozen=True, slots=True, kw_only=True)
class SaveDownlink:
    """Persist the last accepted downlink counter (and the service switch, unless None)
    before anything the downlink asks for is done, so a crash never replays a command."""

    counter: int
    active: bool | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Dispatch:
    """An event the driver feeds back into ``core.handle`` at the same vehicle time."""

    event: Any


Action = SendFrame | Log | Emit | StoreRecords | Publish | SaveDownlink | Dispatch
Event = can.Message | Tick | Command | Downlink | Ack | SignalOverride | ServiceActivation
