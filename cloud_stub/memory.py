"""The backend in memory: registry, store, ingest and signed commands, with no broker.

Theory of operation. ``MemoryBackend`` is the cloud stub as the in-memory transport
(``tcu.runtime.memory``) reaches it: ``receive(topic, payload, now)`` verifies and stores
exactly as the MQTT backend does (``Ingest``), counts every refusal by reason, and returns
the acks to publish and how many records were newly stored. Commands are signed on the
vehicle clock (``origin_epoch + now``) so they are fresh for the TCU. Deactivation
switches the service off in the registry only once the TCU's last record (its
``service`` record) is stored, as the live backend does (``Store.service_stopped``).
"""

from __future__ import annotations

import contextlib
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cloud_stub.commands import CommandBuilder, SignedDownlink
from cloud_stub.ingest import Ingest, Refused
from cloud_stub.keys import BackendKey, load_backend_key
from cloud_stub.registry import Registry
from cloud_stub.store import Store


@dataclass(frozen=True, slots=True, kw_only=True)
class Delivered:
    """What the backend did with one message: the replies to publish (topic, bytes) and how
    many records it newly stored."""

    replies: tuple[tuple[str, bytes], ...] = ()
    stored: int = 0


REGISTRY_FILE = "registry.sqlite"
STORE_FILE = "store.sqlite"


class MemoryBackend:
    """The cloud stub, driven by direct calls on the vehicle clock."""

    def __init__(self, data: Path, *, origin_epoch: float = 0.0) -> None:
        data.mkdir(parents=True, exist_ok=True)
        self.data = data
        self.origin_epoch = origin_epoch
        self.registry = Registry(data / REGISTRY_FILE)
        self.store = Store(data / STORE_FILE)
        self.backend_key: BackendKey = load_backend_key(data)
        self.ingest = Ingest(self.registry, self.store, backend_key=self.backend_key)
        self.commands = CommandBuilder(self.registry, self.backend_key)
        self.refused: Counter[str] = Counter()
        self._deactivating: dict[str, str] = {}

    # --- the BackendPort ---------------------------------------------------------------------

    def receive(self, topic: str, payload: bytes, now: float) -> Delivered:
        before = self.store.count_records()
        replies: list[tuple[str, bytes]] = []
        for reply in self.ingest.receive(topic, payload):
            if isinstance(reply, Refused):
                self.refused[reply.reason] += 1
            else:
                replies.append((reply.topic, reply.payload))
        for vin, command_id in list(self._deactivating.items()):
            if self.store.service_stopped(vin, command_id):
                del self._deactivating[vin]
                self.registry.deactivate(vin)
        return Delivered(replies=tuple(replies), stored=self.store.count_records() - before)

    # --- commands ----------------------------------------------------------------------------

    def register(self, vin: str, public_key_pem: bytes, kid: bytes) -> None:
        self.registry.register(vin, public_key_pem, kid)

    def sign_command(self, vin: str, name: str, argument: str | None, now: float) -> SignedDownlink:
        """A signed command (or activation) for ``vin``, issued at vehicle time ``now``."""
        return self.commands.build(vin, name, argument, now_epoch=self.origin_epoch + now)

    def activate(self, vin: str, now: float) -> SignedDownlink:
        self._deactivating.pop(vin, None)
        self.registry.activate(vin)
        return self.sign_command(vin, "activate", None, now)

    def deactivate(self, vin: str, now: float) -> SignedDownlink:
        """Tell the TCU to stop; the backend takes telemetry until the TCU's last record.

        The TCU ends its service with a ``service`` record; the registry switches the
        service off once that record, and every record before it, is stored. Switched off
        at once, the backend would refuse that record and the TCU would resend it forever.
        """
        signed = self.sign_command(vin, "deactivate", None, now)
        self._deactivating[vin] = signed.downlink.command_id
        return signed

    # --- reporting ---------------------------------------------------------------------------

    def summary(self, vin: str) -> dict[str, Any]:
        stats = self.ingest.stats()
        progress = [
            {"epoch": p.epoch, "acked": p.acked, "stored": p.stored}
            for p in self.store.progress()
            if p.vin == vin
        ]
        return {
            "records_stored": self.store.count_records(vin),
            "duplicates": stats.duplicates,
            "refused": dict(stats.refused),
            "statuses": stats.statuses,
            "epochs": progress,
            "records_beyond_a_gap": sum(max(0, p["stored"] - p["acked"]) for p in progress),
        }

    def close(self) -> None:
        for closer in (self.store.close, self.registry.close):
            with contextlib.suppress(Exception):
                closer()
