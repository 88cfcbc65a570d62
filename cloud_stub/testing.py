"""A vehicle double for tests and scenarios: its own key, signed batches and command results.

It speaks the wire protocol with the real schema and COSE functions, so what it sends is what
a TCU sends; it has none of the TCU's logic (no outbox, no policy, no service rules).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from cloud_stub.registry import Registry, Vehicle
from tcu.telemetry.codec.cose import (
    SigningKey,
    VerifyKey,
    generate_key,
    key_id,
    public_key_to_pem,
    sign1,
    verify1,
)
from tcu.telemetry.codec.schema import (
    AckMessage,
    BatchMessage,
    DownlinkMessage,
    StatusMessage,
    decode_ack,
    decode_downlink,
    encode_batch,
    encode_status,
)
from tcu.telemetry.records import Record
from tcu.vehicle.catalogue import SIGNAL_IDS

__all__ = ["SOC_SIGNAL", "VehicleDouble"]

SOC_SIGNAL = SIGNAL_IDS["Vehicle.Powertrain.TractionBattery.StateOfCharge.Current"]


class VehicleDouble:
    """A VIN with a vehicle key that signs telemetry batches and status messages."""

    def __init__(
        self, vin: str, *, key: SigningKey | None = None, prefix: str = "vehicles"
    ) -> None:
        self.vin = vin
        self.key = key or generate_key("EdDSA")
        self.kid = key_id(self.key)
        self.prefix = prefix

    @property
    def public_key_pem(self) -> bytes:
        return public_key_to_pem(self.key)

    def register(self, registry: Registry, *, active: bool = True) -> Vehicle:
        registry.register(self.vin, self.public_key_pem, self.kid)
        return registry.activate(self.vin) if active else registry.get(self.vin)

    def topic(self, leaf: str) -> str:
        return f"{self.prefix}/{self.vin}/{leaf}"

    @property
    def telemetry_topic(self) -> str:
        return self.topic("telemetry")

    @property
    def status_topic(self) -> str:
        return self.topic("status")

    def record(
        self,
        epoch: int,
        seq: int,
        *,
        kind: str = "change",
        body: Mapping[Any, Any] | None = None,
        t_ms: int | None = None,
    ) -> Record:
        """A record; by default a change of the state of charge to ``seq % 100`` percent."""
        return Record(
            vin=self.vin,
            epoch=epoch,
            seq=seq,
            t_ms=seq * 1000 if t_ms is None else t_ms,
            kind=kind,
            body={SOC_SIGNAL: float(seq % 100)} if body is None else body,
        )

    def batch_payload(
        self,
        epoch: int,
        seqs: Iterable[int],
        *,
        drops: Mapping[str, int] | None = None,
        sent_at_ms: int | None = None,
    ) -> bytes:
        """The unsigned CBOR payload of a batch of default records."""
        records = tuple(self.record(epoch, seq) for seq in seqs)
        return encode_batch(
            BatchMessage(
                vin=self.vin,
                epoch=epoch,
                records=records,
                drops=drops or {},
                sent_at_ms=sent_at_ms,
            )
        )

    def sign(self, payload: bytes, *, kid: bytes | None = None) -> bytes:
        return sign1(payload, self.key, kid=self.kid if kid is None else kid)

    def batch(self, epoch: int, seqs: Iterable[int], **options: Any) -> bytes:
        """A signed telemetry batch of default records with sequence numbers `seqs`."""
        return self.sign(self.batch_payload(epoch, seqs, **options))

    def status(
        self,
        command_id: str,
        counter: int,
        outcome: str,
        *,
        reason: str | None = None,
        t_ms: int = 0,
    ) -> bytes:
        """A signed command result."""
        message = StatusMessage(
            vin=self.vin,
            command_id=command_id,
            counter=counter,
            outcome=outcome,
            reason=reason,
            t_ms=t_ms,
        )
        return self.sign(encode_status(message))

    @staticmethod
    def read_ack(message: bytes, backend_key: VerifyKey) -> AckMessage:
        """Verify an ack with the backend's public key and decode it."""
        return decode_ack(verify1(message, backend_key).payload)

    @staticmethod
    def read_downlink(message: bytes, backend_key: VerifyKey) -> DownlinkMessage:
        """Verify a downlink with the backend's public key and decode it."""
        return decode_downlink(verify1(message, backend_key).payload)
