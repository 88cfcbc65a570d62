"""Error hierarchy of the cloud stub."""

from __future__ import annotations


class CloudError(Exception):
    """Root of every error the cloud stub raises on purpose."""


class IngestRefused(CloudError):
    """A telemetry message the backend refuses; ``reason`` is a stable code."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


class RegistryError(CloudError):
    """An unknown VIN or a registration that cannot be made."""


class BrokerError(CloudError):
    """A broker that cannot be started, reached or stopped."""


class KeyStoreError(CloudError):
    """The backend signing key cannot be created or loaded."""


class CommandError(CloudError):
    """A downlink command that cannot be built or sent."""
