"""The fleet's rules on the embedded amqtt broker, as far as its plugins reach.

Theory of operation. amqtt's TLS listener asks for a client certificate but does not demand
one (``CERT_OPTIONAL``): a certificate that is presented is checked against the fleet CA
during the handshake (an expired one or one of another CA fails there), and a client with
none completes the handshake. `FleetAuthPlugin` then decides at CONNECT: no certificate, or
one whose serial is on the CA's CRL (``crl.pem``, read again when it changes), gets CONNACK
"not authorised"; otherwise the session's username becomes the certificate's CN, whatever
the client sent. `FleetTopicPlugin` holds each username to the same topics as
``mosquitto.acl``: a van (CN = VIN) publishes its own telemetry and status and subscribes to
and receives its own commands and acks; the backend (CN ``cloud-stub``) the other way round;
its command-line tools (CN ``cloud-stub-cli``) publish commands only; any other CN nothing.
A subscription must name one of those filters (or a topic they match); anything else gets
SUBACK 0x80, and a refused PUBLISH is dropped. A persistent session stays bound to the CN
that created it: another certificate presenting the same client id is refused, since the
session's queue holds messages already cleared for its owner.

amqtt 0.12 keeps, on a resumed persistent session, the TLS object of the connection that
created it, so a plugin would judge a returning client by another connection's certificate.
`FleetBroker` gives the session the TLS object of the connection at hand before the plugins
run. Where amqtt still falls short of Mosquitto is in docs/security.md.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from amqtt.broker import Broker
from amqtt.contexts import Action
from amqtt.plugins.base import BaseAuthPlugin, BaseTopicPlugin
from cryptography import x509
from cryptography.x509.oid import NameOID

from tcu.errors import ConfigError
from tcu.telemetry.records import is_vin
from tcu.telemetry.storage.certificate import read_bounded

__all__ = ["BACKEND_USER", "FleetAuthPlugin", "FleetBroker", "FleetTopicPlugin", "allowed"]

BACKEND_USER: Final = "cloud-stub"
CLI_USER: Final = "cloud-stub-cli"
PREFIX: Final = "vehicles"
_MAX_CRL: Final = 16 * 1024 * 1024
_BOUND: Final = "fleet_identity"  # attribute on an amqtt Session: the CN it was created for

_Rules = dict[Action, tuple[str, ...]]
_CLI: Final[_Rules] = {Action.PUBLISH: ("{p}/+/commands",)}
# (action, username) -> topic filters; "{u}" is the username (a VIN).
_VAN: Final[_Rules] = {
    Action.PUBLISH: ("{p}/{u}/telemetry", "{p}/{u}/status"),
    Action.SUBSCRIBE: ("{p}/{u}/commands", "{p}/{u}/ack"),
    Action.RECEIVE: ("{p}/{u}/commands", "{p}/{u}/ack"),
}
_BACKEND: Final[_Rules] = {
    Action.PUBLISH: ("{p}/+/ack", "{p}/+/commands"),
    Action.SUBSCRIBE: ("{p}/+/telemetry", "{p}/+/status"),
    Action.RECEIVE: ("{p}/+/telemetry", "{p}/+/status"),
}


def _matches(topic: str, pattern: str) -> bool:
    """MQTT filter matching of a concrete `topic` against `pattern` ('+' and '#')."""
    parts, wanted = topic.split("/"), pattern.split("/")
    for n, level in enumerate(wanted):
        if level == "#":
            return True
        if n >= len(parts) or (level != "+" and level != parts[n]):
            return False
    return len(parts) == len(wanted)


def allowed(username: str | None, action: Action, topic: str, prefix: str = PREFIX) -> bool:
    """The fleet ACL: may `username` do `action` on `topic` (a filter for SUBSCRIBE)?"""
    if username == BACKEND_USER:
        rules = _BACKEND
    elif username == CLI_USER:
        rules = _CLI
    elif username is not None and is_vin(username):
        rules = _VAN
    else:
        return False
    patterns = [p.format(p=prefix, u=username) for p in rules.get(action, ())]
    if action == Action.SUBSCRIBE and any(c in topic for c in "+#"):
        return topic in patterns
    return any(_matches(topic, p) for p in patterns)


class FleetAuthPlugin(BaseAuthPlugin):  # type: ignore[misc]
    """A client certificate of the fleet CA, not revoked; its CN becomes the username."""

    @dataclass
    class Config:
        crlfile: str | None = None

    def __init__(self, context: Any) -> None:
        super().__init__(context)
        self._crl_stamp: tuple[int, int] | None = None
        self._revoked: frozenset[int] = frozenset()

    def _revoked_serials(self) -> frozenset[int] | None:
        """Serials on the CRL; None when the CRL cannot be read (then nobody gets in)."""
        path = self.config.crlfile
        if path is None:
            return frozenset()
        try:
            info = os.stat(path)
            stamp = (info.st_mtime_ns, info.st_size)
            if stamp != self._crl_stamp:
                crl = x509.load_pem_x509_crl(read_bounded(Path(path), _MAX_CRL))
                self._revoked = frozenset(r.serial_number for r in crl)
                self._crl_stamp = stamp
        except (OSError, ValueError, ConfigError):
            self.context.logger.warning("CRL %s unreadable: refusing every client", path)
            return None
        return self._revoked

    async def authenticate(self, *, session: Any) -> bool:
        ssl_object = getattr(session, "ssl_object", None)
        der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
        if not der:
            self.context.logger.info("%s: no client certificate", session.client_id)
            return False
        cert = x509.load_der_x509_certificate(der)
        revoked = self._revoked_serials()
        if revoked is None or cert.serial_number in revoked:
            self.context.logger.info("%s: certificate revoked", session.client_id)
            return False
        names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        if len(names) != 1:
            return False
        identity = str(names[0].value)
        bound = getattr(session, _BOUND, None)
        if bound is not None and bound != identity:
            # A persistent session holds messages already cleared for its first identity.
            self.context.logger.info("%s: session belongs to %s", session.client_id, bound)
            return False
        setattr(session, _BOUND, identity)
        session.username = identity
        return True


class FleetTopicPlugin(BaseTopicPlugin):  # type: ignore[misc]
    """Each certificate's CN to its own topics, as ``mosquitto.acl`` does."""

    @dataclass
    class Config:
        prefix: str = PREFIX

    async def topic_filtering(
        self, *, session: Any = None, topic: str | None = None, action: Action | None = None
    ) -> bool:
        if session is None or topic is None or action is None:
            return False
        return allowed(session.username, action, topic, self.config.prefix)


class FleetBroker(Broker):  # type: ignore[misc]
    """amqtt's broker, judging each connection by its own TLS object (see the module doc)."""

    async def _initialize_client_session(self, reader: Any, writer: Any, *args: Any) -> Any:
        handler, session = await super()._initialize_client_session(reader, writer, *args)
        with contextlib.suppress(AttributeError):
            session.ssl_object = writer.get_ssl_info()
        return handler, session
