"""Signed downlink commands (activation, deactivation, remote commands) and their forgeries.

Theory of operation: `CommandBuilder.build` checks the command name and argument, takes the
next value of the VIN's downlink counter from the registry (persisted, so it keeps growing
across restarts and across builders), stamps the issue and expiry times from the caller's
clock (``now_epoch``: wall-clock seconds live, virtual seconds in a replay, so replays give
the same bytes) and signs the payload with the backend key. The module-level helpers build
the messages a vehicle must refuse - signed with another key, expired, replayed, meant for
another VIN - for tests and scenarios.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from cloud_stub.errors import CommandError
from cloud_stub.keys import BackendKey
from cloud_stub.registry import Registry
from tcu.telemetry.codec.cose import SigningKey, generate_key, sign1
from tcu.telemetry.codec.schema import DOWNLINK_NAMES, DownlinkMessage, encode_downlink

__all__ = [
    "ARGUMENT_COMMANDS",
    "DEFAULT_VALIDITY_S",
    "CommandBuilder",
    "SignedDownlink",
    "expired",
    "forge",
    "replayed",
    "stale_counter",
    "to_other_vin",
]

DEFAULT_VALIDITY_S: Final = 300
ARGUMENT_COMMANDS: Final = {"set_departure": re.compile(r"([01][0-9]|2[0-3]):[0-5][0-9]")}


@dataclass(frozen=True, slots=True, kw_only=True)
class SignedDownlink:
    """A downlink, its topic and its signed bytes."""

    downlink: DownlinkMessage
    topic: str
    payload: bytes


class CommandBuilder:
    """Builds signed downlinks with a per-VIN counter kept in the registry."""

    def __init__(
        self,
        registry: Registry,
        backend_key: BackendKey,
        *,
        prefix: str = "vehicles",
        validity_s: int = DEFAULT_VALIDITY_S,
    ) -> None:
        if validity_s <= 0:
            raise CommandError("validity must be positive")
        self._registry = registry
        self._backend_key = backend_key
        self._prefix = prefix
        self._validity_s = validity_s

    @property
    def validity_s(self) -> int:
        return self._validity_s

    @property
    def registry(self) -> Registry:
        return self._registry

    def topic(self, vin: str) -> str:
        return f"{self._prefix}/{vin}/commands"

    def build(
        self,
        vin: str,
        name: str,
        argument: str | None = None,
        *,
        now_epoch: int | float,
        validity_s: int | None = None,
    ) -> SignedDownlink:
        """The next command for `vin`; consumes one value of its counter."""
        check_command(name, argument)
        validity = self._validity_s if validity_s is None else validity_s
        if validity <= 0:
            raise CommandError("validity must be positive")
        issued_at = _epoch(now_epoch)
        counter = self._registry.next_counter(vin)
        return self.sign(_downlink(vin, counter, issued_at, issued_at + validity, name, argument))

    def sign(
        self, downlink: DownlinkMessage, *, key: SigningKey | None = None, kid: bytes | None = None
    ) -> SignedDownlink:
        """Sign any downlink, unchecked; with the backend key unless another is given."""
        payload = encode_downlink(downlink)
        if key is None:
            signed = self._backend_key.sign(payload)
        else:
            signed = sign1(payload, key, kid=self._backend_key.kid if kid is None else kid)
        return SignedDownlink(downlink=downlink, topic=self.topic(downlink.vin), payload=signed)


def check_command(name: str, argument: str | None) -> None:
    """Refuse an unknown command or an argument it does not take."""
    if name not in DOWNLINK_NAMES:
        raise CommandError(f"unknown command {name!r}; choose one of {', '.join(DOWNLINK_NAMES)}")
    pattern = ARGUMENT_COMMANDS.get(name)
    if pattern is None and argument is not None:
        raise CommandError(f"{name} takes no argument")
    if pattern is not None and (argument is None or not pattern.fullmatch(argument)):
        raise CommandError(f"{name} needs an argument like 06:30 (HH:MM), got {argument!r}")


def _epoch(now_epoch: int | float) -> int:
    if isinstance(now_epoch, bool) or not isinstance(now_epoch, int | float) or now_epoch < 0:
        raise CommandError(f"now_epoch must be non-negative seconds, got {now_epoch!r}")
    return int(now_epoch)


def _downlink(
    vin: str, counter: int, issued_at: int, expires_at: int, name: str, argument: str | None
) -> DownlinkMessage:
    try:
        return DownlinkMessage(
            vin=vin,
            command_id=f"cmd-{counter}",
            counter=counter,
            issued_at=issued_at,
            expires_at=expires_at,
            name=name,
            argument=argument,
        )
    except ValueError as exc:
        raise CommandError(str(exc)) from None


# --- messages a vehicle must refuse ------------------------------------------------------


def forge(
    builder: CommandBuilder,
    vin: str,
    name: str,
    argument: str | None = None,
    *,
    now_epoch: int | float,
    key: SigningKey | None = None,
) -> SignedDownlink:
    """A fresh, well-formed command under the backend's kid, signed by another key.

    It carries the counter the next genuine command would get, without consuming it.
    """
    issued_at = _epoch(now_epoch)
    counter = builder.registry.get(vin).downlink_counter + 1
    downlink = _downlink(vin, counter, issued_at, issued_at + builder.validity_s, name, argument)
    return builder.sign(downlink, key=key or generate_key("EdDSA"))


def expired(
    builder: CommandBuilder,
    vin: str,
    name: str,
    argument: str | None = None,
    *,
    now_epoch: int | float,
) -> SignedDownlink:
    """A genuine command (counter consumed) whose validity ended before `now_epoch`."""
    now = _epoch(now_epoch)
    validity = builder.validity_s
    issued_at = max(now - 2 * validity, 0)
    return builder.build(vin, name, argument, now_epoch=issued_at, validity_s=now - issued_at - 1)


def replayed(previous: SignedDownlink) -> SignedDownlink:
    """The same signed bytes again: its counter is no longer above the last accepted."""
    return SignedDownlink(
        downlink=previous.downlink, topic=previous.topic, payload=previous.payload
    )


def stale_counter(
    builder: CommandBuilder,
    previous: SignedDownlink,
    *,
    now_epoch: int | float,
) -> SignedDownlink:
    """A genuinely signed, fresh command reusing `previous`'s counter under a new id."""
    issued_at = _epoch(now_epoch)
    old = previous.downlink
    downlink = DownlinkMessage(
        vin=old.vin,
        command_id=f"{old.command_id}-again",
        counter=old.counter,
        issued_at=issued_at,
        expires_at=issued_at + builder.validity_s,
        name=old.name,
        argument=old.argument,
    )
    return builder.sign(downlink)


def to_other_vin(signed: SignedDownlink, vin: str, builder: CommandBuilder) -> SignedDownlink:
    """A genuine command for one VIN, delivered on another VIN's topic."""
    return SignedDownlink(
        downlink=signed.downlink, topic=builder.topic(vin), payload=signed.payload
    )
