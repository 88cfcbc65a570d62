"""What to send next and what an ack deletes: the uplink's logic, with no I/O.

Theory of operation. ``UplinkQueue`` reads the outbox in production order from a
cursor. ``next_batch`` builds the next signed batch (records of one boot epoch, at most
``batch_records`` and ``batch_bytes``, the drop counters when due) and moves the cursor
past it; ``rewind`` undoes that when the bytes never left. At most ``window`` records are
in flight. ``start_over`` (after a reconnect, or when no ack came for a while) sends
again from the oldest record still held: the backend stores each record once.
Each batch names ``prev``: the last record sent before it in this epoch (0 after a
start-over). Every sequence number missing between ``prev`` and the batch's records is
one the outbox no longer holds (dropped at its cap), so the backend can acknowledge
past it instead of waiting for it forever. ``receive_ack`` verifies the backend's signed
ack, deletes what it covers and returns the ``Ack`` event for the core.

The resend timer lives here too, once, on the clock of whatever carries the bytes (the
virtual clock of the SIM link model, the monotonic clock of an MQTT connection): when
records are in flight and no ack has made progress for ``resend_after`` seconds,
``resend_due`` says so and ``resend_at`` says when to look again. The host owns one queue;
every transport drives it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

from tcu.errors import DecodeError
from tcu.events import Ack
from tcu.telemetry.codec.cose import CoseError, verify1
from tcu.telemetry.codec.schema import BatchMessage, decode_ack, encode_batch
from tcu.telemetry.records import Record
from tcu.telemetry.storage.identity import VehicleIdentity
from tcu.telemetry.storage.outbox import Outbox

BATCH_OVERHEAD: Final = 200


@dataclass(slots=True)
class UplinkStats:
    connects: int = 0
    connect_failures: int = 0
    batches: int = 0
    records_sent: int = 0
    bytes_sent: int = 0
    acks: int = 0
    records_acked: int = 0
    resends: int = 0
    status_sent: int = 0
    status_dropped: int = 0
    protocol: str = ""
    refused: Counter[str] = field(default_factory=Counter)

    def as_dict(self) -> dict[str, Any]:
        return {
            "connects": self.connects,
            "connect_failures": self.connect_failures,
            "batches": self.batches,
            "records_sent": self.records_sent,
            "bytes_sent": self.bytes_sent,
            "acks": self.acks,
            "records_acked": self.records_acked,
            "resends": self.resends,
            "status_sent": self.status_sent,
            "status_dropped": self.status_dropped,
            "protocol": self.protocol,
            "refused": dict(self.refused),
        }


class UplinkQueue:
    def __init__(
        self,
        outbox: Outbox,
        keys: VehicleIdentity,
        *,
        batch_records: int = 256,
        batch_bytes: int = 48 * 1024,
        window: int = 2048,
        clock_ms: Callable[[], float] | None = None,
        clock: Callable[[], float] | None = None,
        resend_after: float = 30.0,
    ) -> None:
        self.outbox = outbox
        self.keys = keys
        self.batch_records = batch_records
        self.batch_bytes = batch_bytes
        self.window = window
        self.clock_ms = clock_ms
        self.clock = clock if clock is not None else _zero
        self.resend_after = resend_after
        self.stats = UplinkStats()
        self.cursor: tuple[int, int] | None = None
        self.last_progress = self.clock()

    def in_flight(self) -> int:
        """Records sent and not yet acknowledged."""
        return 0 if self.cursor is None else self.outbox.count_through(*self.cursor)

    def start_over(self) -> None:
        """Send again from the oldest record held (after a reconnect, or no ack for long)."""
        if self.cursor is not None:
            self.stats.resends += 1
        self.cursor = None
        self.last_progress = self.clock()
        self.outbox.resend()

    def resend_due(self) -> bool:
        """Records are in flight and no ack made progress for ``resend_after`` seconds."""
        return self.cursor is not None and self.clock() >= self.resend_at() and self.in_flight() > 0

    def resend_at(self) -> float:
        """When, on the transport's clock, ``resend_due`` may next become true."""
        return self.last_progress + self.resend_after

    def next_batch(self, in_flight: int | None = None) -> tuple[BatchMessage, bytes] | None:
        """The next signed batch, or None when nothing is due or the window is full."""
        if in_flight is None:
            in_flight = self.in_flight()
        room = min(self.batch_records, self.window - in_flight)
        if room <= 0:
            return None
        rows = self.outbox.pending_wire(room, after=self.cursor)
        if not rows:
            return None
        epoch = rows[0][0].epoch
        records: list[Record] = []
        encoded: list[bytes] = []
        size = BATCH_OVERHEAD
        for record, wire in rows:
            if record.epoch != epoch or (records and size + len(wire) > self.batch_bytes):
                break
            records.append(record)
            encoded.append(wire)
            size += len(wire)
        drops = self.outbox.drops_for_batch(epoch, records[-1].seq)
        cursor = self.cursor
        prev = cursor[1] if cursor is not None and cursor[0] == epoch else 0
        message = BatchMessage(
            prev=prev,
            vin=self.keys.vin,
            epoch=epoch,
            records=tuple(records),
            drops=drops,
            sent_at_ms=max(0, round(self.clock_ms())) if self.clock_ms is not None else None,
        )
        payload = self.keys.sign(encode_batch(message, encoded))
        if not in_flight:
            self.last_progress = self.clock()  # the resend timer starts with the first batch
        self.sent(message, len(payload))
        return message, payload

    def sent(self, message: BatchMessage, nbytes: int) -> None:
        self.cursor = (message.epoch, message.records[-1].seq)
        self.stats.batches += 1
        self.stats.records_sent += len(message.records)
        self.stats.bytes_sent += nbytes

    def rewind(self, cursor: tuple[int, int] | None) -> None:
        """The batch after ``cursor`` never left: send it again next time."""
        self.cursor = cursor
        self.outbox.resend()

    def receive_ack(self, payload: bytes) -> Ack | None:
        """Verify and apply a signed ack; None (and counted) when it is refused."""
        try:
            signed = verify1(payload, self.keys.backend_key)
            ack = decode_ack(signed.payload)
        except CoseError as exc:
            self.stats.refused[f"ack_{exc.reason}"] += 1
            return None
        except DecodeError:
            self.stats.refused["ack_malformed"] += 1
            return None
        if ack.vin != self.keys.vin:
            self.stats.refused["ack_wrong_vin"] += 1
            return None
        deleted = self.outbox.ack(ack.epoch, ack.seq)
        self.stats.acks += 1
        self.stats.records_acked += deleted
        if deleted:
            self.last_progress = self.clock()
        return Ack(epoch=ack.epoch, sequence=ack.seq)


def _zero() -> float:
    return 0.0
