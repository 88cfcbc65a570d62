"""Live mode at the outbox cap: a snapshot the outbox dropped never becomes a delta base."""

from __future__ import annotations

import uuid
from pathlib import Path

from cloud_stub.keys import load_backend_key
from tcu.events import ServiceActivation
from tcu.runtime.bus import resolve_bus
from tcu.runtime.live import LiveOptions, LiveSession
from tcu.telemetry.storage.identity import provision


def test_a_snapshot_dropped_while_offline_is_never_a_delta_base(tmp_path: Path) -> None:
    keystore = tmp_path / "keystore"
    backend = load_backend_key(tmp_path / "backend")
    provision(
        "XECELLVAN00000042",
        keystore,
        register=lambda vin, pem, kid: None,
        backend_pem=lambda: backend.public_key_pem,
    )
    t = [0.0]
    session = LiveSession(
        LiveOptions(
            bus=resolve_bus(interface="virtual", channel=f"cap-{uuid.uuid4().hex}"),
            keystore=keystore,
            snapshot_period=1.0,
        ),
        clock=lambda: t[0],
    )
    try:
        outbox = session.outbox
        assert outbox is not None and session.telemetry is not None
        outbox.cap, outbox.hard_cap = 2, 50  # offline: the oldest snapshots go first
        session.driver.inject(ServiceActivation(active=True))
        for _ in range(8):
            t[0] += 1.0
            session.driver.inject(ServiceActivation(active=True))  # a no-op that ticks
        dropped = outbox.dropped.get("snapshot", 0)
        assert dropped > 0, "the test needs snapshots dropped at the cap"
        held = {r.seq for r in outbox.pending(100)}
        remembered = set(session.telemetry._unacked)
        assert remembered <= held, f"dropped snapshots kept as delta bases: {remembered - held}"
    finally:
        if session.outbox is not None:
            session.outbox.close()
