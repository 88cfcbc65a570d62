"""One van, its SIM link and the backend, in memory on one virtual clock.

Theory of operation. ``MemoryWorld`` is the in-memory pair (as h11's
``ConnectionPair``): a ``Host`` (the TCU as every driver builds it, its durable outbox
and uplink queue) on a ``ReplayDriver`` (the virtual clock), with a ``MemoryTransport``
(the SIM link model) to the cloud stub's ``MemoryBackend``. The vehicle is provisioned
with that backend in the work folder on first use. Nothing here opens a socket or reads
a clock. ``tcu replay`` and the scenario world are this world with a trace, commands,
scenario steps and sinks of their own.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import can

from cloud_stub.memory import MemoryBackend
from tcu.can.setup import BusSetup
from tcu.link.sim import Link, LinkConfig
from tcu.runtime.host import Host, Sink
from tcu.runtime.memory import IdealLink, LinkModel, MemoryTransport
from tcu.runtime.replay import ReplayDriver, ReplayStats
from tcu.services import VehicleConfig
from tcu.telemetry.policy import TelemetryConfig
from tcu.telemetry.storage.identity import load_identity, provision
from tcu.telemetry.storage.outbox import Outbox

OUTBOX_FILE = "outbox.sqlite"


def scratch_dir() -> str | None:
    """Where case directories go: memory-backed when the system has it (SQLite's syncs
    cost nothing there), else the default temporary directory."""
    shm = Path("/dev/shm")
    return str(shm) if shm.is_dir() and os.access(shm, os.W_OK | os.X_OK) else None


class MemoryWorld:
    """One van, its link and the backend, in virtual time."""

    def __init__(
        self,
        setup: BusSetup,
        vehicle: VehicleConfig,
        workdir: Path,
        *,
        telemetry: TelemetryConfig | None = None,
        link: LinkConfig | LinkModel | None = None,
        outbox_cap: int = 10_000,
        follow_gnss: bool = True,
        activate: bool = True,
        sinks: Iterable[Sink] = (),
        send_frame: Callable[[can.Message, float], None] | None = None,
    ) -> None:
        self.vehicle = vehicle
        self.workdir = workdir
        self.backend = MemoryBackend(workdir / "backend", origin_epoch=vehicle.origin_epoch)
        keystore = workdir / "keystore"
        if not (keystore / "vehicle.key").exists():
            provision(
                vehicle.vin,
                keystore,
                register=self.backend.register,
                backend_pem=lambda: self.backend.backend_key.public_key_pem,
            )
        identity = load_identity(keystore, vehicle.vin)
        self.vin = identity.vin
        self.driver = ReplayDriver()
        model: LinkModel
        if isinstance(link, LinkConfig):
            model = Link(link)
        else:
            model = IdealLink() if link is None else link
        self.transport = MemoryTransport(
            self.driver, self.backend, self.vin, link=model, follow_gnss=follow_gnss
        )
        self.outbox = Outbox(workdir / OUTBOX_FILE, cap=outbox_cap, synchronous="NORMAL")
        try:
            self.host = Host(
                setup,
                vehicle,
                clock=self.driver,
                transport=self.transport,
                outbox=self.outbox,
                identity=identity,
                telemetry=telemetry or TelemetryConfig(vin=vehicle.vin),
                send_frame=send_frame,
                sinks=sinks,
            )
        except BaseException:
            self.close()
            raise
        self.driver.drive(self.host)
        if activate:
            self.driver.schedule(0.0, self.activate)

    # --- time --------------------------------------------------------------------------------

    @property
    def now(self) -> float:
        return self.driver.now

    @property
    def core(self) -> Any:
        return self.host.core

    def replay(
        self,
        frames: Iterable[can.Message],
        *,
        start: float | None = None,
        stop: float | None = None,
        speed: float | None = None,
        on_progress: Callable[[int, float], None] | None = None,
    ) -> ReplayStats:
        """Run the trace's frames through the world; the driver's stats."""
        d = self.driver
        d.frames, d.start, d.stop, d.speed, d.on_progress = frames, start, stop, speed, on_progress
        return d.run()

    def advance(self, until: float) -> None:
        self.driver.advance(until)

    def drain(self, limit_s: float = 3600.0, step_s: float = 5.0) -> bool:
        """Let virtual time run until the backend holds every record (or ``limit_s``)."""
        end = self.now + limit_s
        while self.outbox.depth() and self.now < end:
            self.advance(min(end, self.now + step_s))
        return self.outbox.depth() == 0

    # --- the backend's side ------------------------------------------------------------------

    def send_command(self, name: str, argument: str | None, now: float) -> str:
        """The backend signs ``name`` and publishes it; returns the command id."""
        signed = self.backend.sign_command(self.vin, name, argument, now)
        self.transport.deliver_downlink(signed.payload, now)
        return signed.downlink.command_id

    def activate(self, now: float) -> None:
        self.transport.deliver_downlink(self.backend.activate(self.vin, now).payload, now)

    def deactivate(self, now: float) -> None:
        self.transport.deliver_downlink(self.backend.deactivate(self.vin, now).payload, now)

    # --- the world changing ------------------------------------------------------------------

    def power_off(self, now: float) -> None:
        self.host.power_off()
        self.transport.disconnect()

    def power_on(self, now: float) -> None:
        """The TCU boots again: a new core and epoch on the same outbox."""
        self.host.boot(now)

    # --- reporting ---------------------------------------------------------------------------

    def summary(self) -> dict[str, Any]:
        host, transport = self.host, self.transport
        backend = self.backend.summary(self.vin)
        depth = self.outbox.depth()
        produced = host.counts.records_produced
        telemetry = {
            "records_produced": produced,
            "records_dropped_at_cap": host.counts.records_dropped_at_cap,
            **transport.as_dict(),
            "max_outbox_depth": host.counts.max_outbox_depth,
            "power_cycles": host.counts.power_cycles,
            "frames_sent": host.counts.frames_sent,
            "refused_by_backend": dict(self.backend.refused),
            "outbox_depth": depth,
            "outbox_dropped": dict(self.outbox.dropped),
            "uplink": host.queue.stats.as_dict() if host.queue is not None else {},
            "lost": max(0, produced - backend["records_stored"] - depth),
        }
        link = transport.summary()
        link["largest_outbox_depth"] = host.counts.max_outbox_depth
        return {"telemetry": telemetry, "backend": backend, "link": link}

    def close(self) -> None:
        closers: list[Callable[[], None]] = [self.backend.close]
        if hasattr(self, "outbox"):
            closers.insert(0, self.outbox.close)
        for closer in closers:
            with contextlib.suppress(Exception):
                closer()
