"""The MQTT transport: the host's outbox to the backend, acks and commands back.

Theory of operation. ``TelemetryUplink`` is a transport of a ``Host``
(``tcu.runtime.host``). It owns one aiomqtt client with a stable client id (``tcu-{vin}``)
and a persistent session (MQTT 5 with ``clean_start`` off and a session expiry, or MQTT
3.1.1 with ``clean_session`` off; ``protocol="auto"`` tries 5 and falls back to 3.1.1 when
the broker does not answer a version 5 CONNECT, then keeps 3.1.1). Everything is QoS 1.

Sending: it drives the host's uplink queue (``tcu.telemetry.uplink``), which builds the
signed batches from the outbox in production order; a batch is published on
``{prefix}/{vin}/telemetry`` and the queue's cursor moves past it once the broker has taken
it (PUBACK), which deletes nothing. At most ``window`` records are in flight. The resend
timer is the queue's, on this transport's clock (monotonic seconds): when no ack has come
for ``resend_after`` seconds, or after a reconnect, sending starts over from the oldest
record the outbox still holds (the backend stores each record once).

Receiving: a message on ``ack`` goes to ``host.receive_ack`` (verified with the backend
key; the outbox deletes what it covers and the core hears ``Ack``); a message on
``commands`` goes to ``host.receive_downlink`` untouched, and the core's downlink part
verifies it. Status replies come from the host through ``publish``. A lost connection is
retried with exponential backoff and full jitter (``Backoff``, RNG injectable).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Literal
from urllib.parse import urlsplit

import aiomqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from tcu.errors import ConfigError
from tcu.runtime.backoff import Backoff
from tcu.telemetry.uplink import UplinkQueue, UplinkStats

if TYPE_CHECKING:
    from tcu.runtime.host import Host

LOG = logging.getLogger("tcu.mqtt")

DEFAULT_PORTS: Final = {"mqtt": 1883, "mqtts": 8883}
SESSION_EXPIRY_S: Final = 7 * 24 * 3600
Protocol = Literal["auto", "5", "3.1.1"]
PROTOCOLS: Final = ("auto", "5", "3.1.1")
# paho leaves Nagle on: a PUBLISH written right after the PUBACK of a received message waits
# for the broker's delayed TCP ACK (40 ms on Linux) before it leaves.
_NO_DELAY: Final = (socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


# --- broker URL ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class BrokerURL:
    """``mqtt://HOST[:PORT]`` or ``mqtts://HOST[:PORT]``, with the TLS files for mqtts."""

    host: str
    port: int
    tls: bool = False
    ca: Path | None = None
    cert: Path | None = None
    key: Path | None = None

    def __post_init__(self) -> None:
        if not self.host:
            raise ConfigError("broker URL: no host")
        if isinstance(self.port, bool) or not 0 < self.port < 65536:
            raise ConfigError(f"broker URL: port {self.port} out of range 1-65535")
        if not self.tls and (self.ca or self.cert or self.key):
            raise ConfigError("--ca/--cert/--key need an mqtts:// broker URL")
        if (self.cert is None) != (self.key is None):
            raise ConfigError("--cert and --key go together")

    @classmethod
    def parse(
        cls,
        url: str,
        *,
        ca: str | Path | None = None,
        cert: str | Path | None = None,
        key: str | Path | None = None,
    ) -> BrokerURL:
        """Parse ``--broker``; ConfigError names what is wrong with it."""
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError as exc:
            raise ConfigError(f"broker URL {url!r}: {exc}") from None
        if parts.scheme not in DEFAULT_PORTS:
            raise ConfigError(f"broker URL {url!r}: must start with mqtt:// or mqtts://")
        if parts.path not in ("", "/") or parts.query or parts.fragment:
            raise ConfigError(f"broker URL {url!r}: only scheme://host[:port] is understood")
        if parts.username is not None or parts.password is not None:
            raise ConfigError(f"broker URL {url!r}: credentials in the URL are not supported")
        if not parts.hostname:
            raise ConfigError(f"broker URL {url!r}: no host")
        return cls(
            host=parts.hostname,
            port=port if port is not None else DEFAULT_PORTS[parts.scheme],
            tls=parts.scheme == "mqtts",
            ca=Path(ca) if ca else None,
            cert=Path(cert) if cert else None,
            key=Path(key) if key else None,
        )

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'mqtts' if self.tls else 'mqtt'}://{host}:{self.port}"

    def tls_context(self) -> ssl.SSLContext | None:
        if not self.tls:
            return None
        try:
            context = ssl.create_default_context(cafile=str(self.ca) if self.ca else None)
            if self.cert is not None and self.key is not None:
                context.load_cert_chain(str(self.cert), str(self.key))
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(f"broker TLS files: {exc}") from None
        return context


# --- topics ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Topics:
    prefix: str
    vin: str

    def __post_init__(self) -> None:
        if not self.prefix or any(c in self.prefix for c in "+#") or self.prefix.endswith("/"):
            raise ConfigError(f"topic prefix {self.prefix!r}: no wildcards, no trailing '/'")

    def topic(self, suffix: str) -> str:
        return f"{self.prefix}/{self.vin}/{suffix}"

    @property
    def telemetry(self) -> str:
        return self.topic("telemetry")

    @property
    def ack(self) -> str:
        return self.topic("ack")

    @property
    def commands(self) -> str:
        return self.topic("commands")

    @property
    def status(self) -> str:
        return self.topic("status")


async def _wait_event(event: asyncio.Event, timeout: float | None) -> bool:
    """Wait for `event` at most `timeout` seconds; False on timeout.

    ``asyncio.timeout`` rather than ``wait_for``: on Python 3.11 ``wait_for`` swallows a
    cancellation that arrives as the event is set, and the task then never stops.
    """
    try:
        async with asyncio.timeout(timeout):
            await event.wait()
    except TimeoutError:
        return False
    return True


# --- the uplink ------------------------------------------------------------------------------


class TelemetryUplink:
    """Publishes the host's outbox over MQTT and hands acks and downlinks back to it."""

    def __init__(
        self,
        vin: str,
        broker: BrokerURL,
        *,
        topic_prefix: str = "vehicles",
        protocol: Protocol = "auto",
        backoff: Backoff | None = None,
        window: int = 2048,
        resend_after: float = 30.0,
        connect_timeout: float = 10.0,
        publish_timeout: float = 30.0,
        status_queue: int = 256,
        keepalive: int = 60,
    ) -> None:
        if protocol not in PROTOCOLS:
            raise ConfigError(f"MQTT protocol {protocol!r}: choose one of {', '.join(PROTOCOLS)}")
        if window < 1:
            raise ConfigError("uplink needs window >= 1")
        self.broker = broker
        self.topics = Topics(prefix=topic_prefix, vin=vin)
        self.protocol = protocol
        self.backoff = backoff if backoff is not None else Backoff()
        self.window = window
        self.resend_after = resend_after
        self.connect_timeout = connect_timeout
        self.publish_timeout = publish_timeout
        self.keepalive = keepalive
        self.host: Host | None = None
        self.queue: UplinkQueue | None = None
        self.stats = UplinkStats()
        self.identifier = f"tcu-{vin}"
        self._status: deque[bytes] = deque(maxlen=status_queue)
        self._wake = asyncio.Event()
        self._progress = asyncio.Event()
        self._closing = asyncio.Event()
        self._connected = asyncio.Event()
        self._v5_refused = False
        self._session_client: aiomqtt.Client | None = None

    # --- the Transport protocol ----------------------------------------------------------------

    def time(self) -> float:
        return time.monotonic()

    def attach(self, host: Host) -> None:
        """The host's queue is the one this uplink drives, across the host's boots."""
        if host.queue is None:
            raise ConfigError("the MQTT uplink needs a host with an outbox and an identity")
        self.host = host
        self.queue = host.queue
        self.queue.resend_after = self.resend_after
        self.stats = self.queue.stats
        self._wake.set()

    def records_ready(self, now: float) -> None:
        """New records were committed to the outbox."""
        self._wake.set()

    def publish(self, topic_suffix: str, payload: bytes, now: float) -> None:
        """Queue a signed message from the core (a status reply) for ``.../{topic_suffix}``."""
        if topic_suffix != "status":
            raise ValueError(f"the core publishes on status only, not {topic_suffix!r}")
        if len(self._status) == self._status.maxlen:
            self.stats.status_dropped += 1
        self._status.append(payload)
        self._wake.set()

    # --- public face ---------------------------------------------------------------------------

    def notify(self) -> None:
        """Records are waiting in the outbox (at start, from an earlier run)."""
        self._wake.set()

    @property
    def connected(self) -> bool:
        """Connected and subscribed to ``ack`` and ``commands``."""
        return self._connected.is_set()

    async def wait_connected(self, timeout: float) -> bool:
        return await _wait_event(self._connected, timeout)

    async def drain(self, timeout: float) -> bool:
        """Wait until the outbox is empty (every record acknowledged); False on timeout."""
        deadline = asyncio.get_running_loop().time() + timeout
        while self.queue is None or self.queue.outbox.depth() > 0:
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                return False
            self._progress.clear()
            await _wait_event(self._progress, remaining)
        return True

    def drop(self) -> None:
        """Cut the connection as a network failure would; ``run`` reconnects with backoff."""
        client = self._session_client
        sock = client._client.socket() if client is not None else None  # paho's socket
        if isinstance(sock, socket.socket):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    async def close(self) -> None:
        """Stop ``run`` (it returns after disconnecting)."""
        self._closing.set()
        self._wake.set()

    async def run(self) -> None:
        """Connect, send and receive until ``close``; reconnect with backoff on failure."""
        attempt = 0
        while not self._closing.is_set():
            try:
                async with contextlib.AsyncExitStack() as stack:
                    client = await self._connect(stack)
                    attempt = 0
                    self.stats.connects += 1
                    await self._session(client)
            except aiomqtt.MqttError as exc:
                LOG.warning("MQTT connection to %s: %s", self.broker.url, exc)
            finally:
                self._connected.clear()
            if self._closing.is_set():
                break
            delay = self.backoff.delay(attempt)
            attempt += 1
            await _wait_event(self._closing, delay)

    # --- connection --------------------------------------------------------------------------

    def _versions(self) -> list[aiomqtt.ProtocolVersion]:
        if self.protocol == "5":
            return [aiomqtt.ProtocolVersion.V5]
        if self.protocol == "3.1.1" or self._v5_refused:
            return [aiomqtt.ProtocolVersion.V311]
        return [aiomqtt.ProtocolVersion.V5, aiomqtt.ProtocolVersion.V311]

    def _client(self, version: aiomqtt.ProtocolVersion) -> aiomqtt.Client:
        options: dict[str, Any] = {}
        if version == aiomqtt.ProtocolVersion.V5:
            properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
            properties.SessionExpiryInterval = SESSION_EXPIRY_S
            options.update(clean_start=False, properties=properties)
        else:
            options.update(clean_session=False)
        return aiomqtt.Client(
            self.broker.host,
            self.broker.port,
            identifier=self.identifier,
            protocol=version,
            timeout=self.connect_timeout,
            keepalive=self.keepalive,
            tls_context=self.broker.tls_context(),
            socket_options=(_NO_DELAY,),
            **options,
        )

    async def _connect(self, stack: contextlib.AsyncExitStack) -> aiomqtt.Client:
        versions = self._versions()
        for n, version in enumerate(versions):
            client = self._client(version)
            try:
                await stack.enter_async_context(client)
            except aiomqtt.MqttError:
                self.stats.connect_failures += 1
                if n + 1 == len(versions):
                    if len(versions) > 1:
                        self._v5_refused = False
                    raise
                LOG.info("broker %s refused MQTT 5; trying 3.1.1", self.broker.url)
                self._v5_refused = True
                continue
            self.stats.protocol = "5" if version == aiomqtt.ProtocolVersion.V5 else "3.1.1"
            return client
        raise AssertionError("unreachable")

    async def _session(self, client: aiomqtt.Client) -> None:
        self._session_client = client
        try:
            await self._run_session(client)
        finally:
            self._session_client = None

    async def _run_session(self, client: aiomqtt.Client) -> None:
        await client.subscribe(self.topics.ack, qos=1)
        await client.subscribe(self.topics.commands, qos=1)
        self._connected.set()
        LOG.info("connected to %s as %s", self.broker.url, self.identifier)
        if self.queue is not None:
            self.queue.start_over()
        tasks = {
            asyncio.create_task(self._receive(client)),
            asyncio.create_task(self._send(client)),
            asyncio.create_task(self._closing.wait()),
        }
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        for task in done:
            exc = None if task.cancelled() else task.exception()
            if exc is not None:
                raise exc

    # --- sending -----------------------------------------------------------------------------

    async def _send(self, client: aiomqtt.Client) -> None:
        timeout = self.publish_timeout
        while True:
            self._wake.clear()
            while self._status:
                await client.publish(self.topics.status, self._status[0], qos=1, timeout=timeout)
                self._status.popleft()
                self.stats.status_sent += 1
            queue = self.queue
            if queue is None:
                await _wait_event(self._wake, None)
                continue
            if queue.resend_due():
                LOG.info(
                    "no ack for %.0f s: sending again from the oldest record", self.resend_after
                )
                queue.start_over()
            in_flight = queue.in_flight()
            batch = queue.next_batch(in_flight) if in_flight < self.window else None
            if batch is None:
                wait = max(0.0, queue.resend_at() - self.time()) if in_flight else None
                await _wait_event(self._wake, wait)
                continue
            _message, payload = batch
            await client.publish(self.topics.telemetry, payload, qos=1, timeout=timeout)

    # --- receiving ---------------------------------------------------------------------------

    async def _receive(self, client: aiomqtt.Client) -> None:
        async for message in client.messages:
            payload = message.payload
            if not isinstance(payload, bytes | bytearray):
                self._refuse("not_bytes", str(message.topic))
                continue
            host = self.host
            if host is None:
                self._refuse("no_host", str(message.topic))
                continue
            if message.topic.matches(self.topics.ack):
                if not host.receive_ack(bytes(payload), host.clock.now):
                    LOG.warning("refused an ack from the backend")
                self._progress.set()
                self._wake.set()
            elif message.topic.matches(self.topics.commands):
                host.receive_downlink(bytes(payload), host.clock.now)

    def _refuse(self, reason: str, detail: str) -> None:
        assert self.stats.refused is not None
        self.stats.refused[reason] += 1
        LOG.warning("refused message from the backend: %s: %s", reason, detail)
