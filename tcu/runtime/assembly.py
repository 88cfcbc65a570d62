"""Putting a TCU together: the core and its parts, as every driver runs them.

Replay, the virtual world, the live bench and the demo all run the same TCU: services
inside the telemetry part (which numbers their records), and the signed downlink part
when the TCU has an identity. This module builds that once.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import can

from tcu.can.encoder import FrameEncoder
from tcu.can.setup import BusSetup
from tcu.core import Part, TcuCore
from tcu.errors import ConfigError
from tcu.services import ServicesPart, VehicleConfig, encoder_requests
from tcu.telemetry.downlink import DownlinkPart
from tcu.telemetry.policy import TelemetryConfig, TelemetryPart
from tcu.telemetry.storage.identity import VehicleIdentity
from tcu.telemetry.storage.outbox import DOWNLINK_COUNTER, SERVICE_ACTIVE, Outbox

RequestFrame = Callable[[str, str | None], can.Message]


def request_frames(setup: BusSetup) -> RequestFrame:
    """How the services build the TCU's own request frames on this bus."""
    if setup.mapping.requests is not None:
        return encoder_requests(FrameEncoder(setup.db, setup.mapping).encode_request)
    source = setup.mapping.source

    def missing(name: str, argument: str | None) -> can.Message:
        raise ConfigError(f"{source}: the mapping has no requests section")

    return missing


@dataclass(slots=True)
class Tcu:
    """A built TCU: the core and handles on its parts."""

    core: TcuCore
    services: ServicesPart
    telemetry: TelemetryPart | None = None
    downlink: DownlinkPart | None = None
    epoch: int = 0


def build_tcu(
    setup: BusSetup,
    vehicle: VehicleConfig,
    *,
    outbox: Outbox | None = None,
    identity: VehicleIdentity | None = None,
    telemetry: TelemetryConfig | None = None,
) -> Tcu:
    """The core with services and, given an outbox, telemetry (and downlink with an identity).

    With an outbox this is a new boot: the outbox's epoch grows by one, and the last
    accepted downlink counter and the service switch come back from it.
    """
    core = TcuCore(setup.mapping)
    services = ServicesPart(core.state, vehicle, request_frames(setup))
    if outbox is None:
        core.add_part(services)
        return Tcu(core=core, services=services)
    epoch = outbox.start_epoch()
    downlink = None
    if identity is not None:
        downlink = DownlinkPart(
            vin=vehicle.vin,
            backend_key=identity.backend_key,
            vehicle_key=identity.key,
            origin_epoch=vehicle.origin_epoch,
            last_counter=outbox.get(DOWNLINK_COUNTER),
        )
    part = TelemetryPart(
        core.state,
        telemetry or TelemetryConfig(vin=vehicle.vin),
        epoch=epoch,
        inner=[services],
        active=bool(outbox.get(SERVICE_ACTIVE)),
        on_command_result=downlink.command_result if downlink is not None else None,
    )
    parts: list[Part] = [part]
    if downlink is not None:
        parts.append(downlink)
    for p in parts:
        core.add_part(p)
    return Tcu(core=core, services=services, telemetry=part, downlink=downlink, epoch=epoch)
