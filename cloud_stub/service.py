"""The backend's MQTT side: aiomqtt around `Ingest`, and signed commands out.

Theory of operation: `Backend` owns the data directory (``backend.key``, ``registry.sqlite``,
``store.sqlite``, ``stats.json``) and one MQTT connection with the stable client id
``cloud-stub`` and a persistent session (``clean_session=False``), subscribed at QoS 1 to
``{prefix}/+/telemetry`` and ``{prefix}/+/status``; while the backend is away the broker
keeps those messages for it. Each message goes to `Ingest.receive`; the acks it returns are
published at QoS 1 in the order they were made, without waiting for each PUBACK (at most
`_MAX_PENDING` in flight). A lost connection is retried with exponential backoff; `stop`
disconnects cleanly and saves the counters to ``stats.json``, which ``cloud-stub stats``
reads. The paho client under aiomqtt answers the broker's QoS 1 PUBLISH as soon as it
arrives: the vehicle learns that its records are safe only from the signed ack.

Group commit: the backend takes the message in hand and every message already waiting in
the client's queue (up to `_MAX_GROUP`), and gives them to `Ingest.receive_many`, which
stores their batches in one transaction. Idle, a group is one message and adds no wait;
busy, the queue fills while a group commits and the next group is larger.

One of several workers (``shared_group``): the client speaks MQTT 5 with a session that
outlives the connection (``clean_start`` false, session expiry `_SESSION_EXPIRY_S`) and
subscribes to ``$share/{group}/...``, so the broker hands each message to one worker of the
group. The store is given as ``store`` (a path or a ``postgresql://`` URL, `open_store`).

Commands go through the `Mailbox` (``mailbox.sqlite``): a vehicle that has never connected
gets them when it first subscribes (a retained head, then the queue), one that has gets
them through its persistent session. A housekeeping task expires waiting commands and
saves the counters every second, also when no message arrives.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import ssl
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Self

import aiomqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from cloud_stub.broker import BrokerUrl, client_tls_context, parse_broker_url
from cloud_stub.commands import DEFAULT_VALIDITY_S, CommandBuilder, SignedDownlink
from cloud_stub.errors import BrokerError, CloudError
from cloud_stub.ingest import DEFAULT_MAX_PAYLOAD, DEFAULT_PREFIX, Ingest, IngestStats, Publish
from cloud_stub.keys import load_backend_key
from cloud_stub.mailbox import MAILBOX_FILE, Mailbox
from cloud_stub.registry import Registry
from cloud_stub.stores import open_store

__all__ = [
    "CLIENT_ID",
    "DEFAULT_DATA",
    "REGISTRY_FILE",
    "STATS_FILE",
    "STORE_FILE",
    "Backend",
    "TlsFiles",
    "publish_once",
    "read_stats",
]

CLIENT_ID: Final = "cloud-stub"
DEFAULT_DATA: Final = "cloud-stub-data"  # also `tcu provision --backend-data`'s default
REGISTRY_FILE: Final = "registry.sqlite"
STORE_FILE: Final = "store.sqlite"
STATS_FILE: Final = "stats.json"
_STATS_EVERY_S: Final = 1.0
_MAX_PENDING: Final = 256
_MAX_GROUP: Final = 256
_SESSION_EXPIRY_S: Final = 3600
# paho leaves Nagle on: an ack published right after the PUBACK of a received batch would
# wait for the broker's delayed TCP ACK (40 ms on Linux) before it leaves.
_NO_DELAY: Final = (socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

log = logging.getLogger("cloud_stub")


@dataclass(frozen=True, slots=True, kw_only=True)
class TlsFiles:
    """Files for an ``mqtts://`` connection: the CA to trust, and an optional client cert."""

    cafile: str | None = None
    certfile: str | None = None
    keyfile: str | None = None

    def context(self) -> ssl.SSLContext:
        return client_tls_context(self.cafile, self.certfile, self.keyfile)


def _client(
    address: BrokerUrl,
    *,
    identifier: str,
    clean_session: bool,
    tls: TlsFiles | None,
    timeout: float = 10.0,
    mqtt5: bool = False,
) -> aiomqtt.Client:
    context = (tls or TlsFiles()).context() if address.tls else None
    if mqtt5:
        properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        properties.SessionExpiryInterval = 0 if clean_session else _SESSION_EXPIRY_S
        return aiomqtt.Client(
            address.host,
            address.port,
            identifier=identifier,
            protocol=aiomqtt.ProtocolVersion.V5,
            clean_start=clean_session,
            properties=properties,
            tls_context=context,
            timeout=timeout,
            socket_options=(_NO_DELAY,),
        )
    return aiomqtt.Client(
        address.host,
        address.port,
        identifier=identifier,
        clean_session=clean_session,
        protocol=aiomqtt.ProtocolVersion.V311,
        tls_context=context,
        timeout=timeout,
        socket_options=(_NO_DELAY,),
    )


class Backend:
    """The stub fleet backend on one MQTT broker."""

    def __init__(
        self,
        broker_url: str,
        data_dir: str | os.PathLike[str],
        *,
        prefix: str = DEFAULT_PREFIX,
        client_id: str = CLIENT_ID,
        tls: TlsFiles | None = None,
        clock: Callable[[], float] = time.time,
        max_payload: int = DEFAULT_MAX_PAYLOAD,
        validity_s: int = DEFAULT_VALIDITY_S,
        backoff: tuple[float, float] = (0.1, 5.0),
        connect_timeout: float = 10.0,
        store: str | os.PathLike[str] | None = None,
        shared_group: str | None = None,
        stats_file: str = STATS_FILE,
    ) -> None:
        self.address = parse_broker_url(broker_url)
        if self.address.tls is False and tls is not None:
            raise BrokerError("TLS files given for an mqtt:// (plain) broker URL")
        self.data_dir = Path(data_dir)
        self.backend_key = load_backend_key(self.data_dir)
        self.registry = Registry(self.data_dir / REGISTRY_FILE)
        self.store = open_store(self.data_dir / STORE_FILE if store is None else store)
        self.mailbox = Mailbox(self.data_dir / MAILBOX_FILE)
        self.ingest = Ingest(
            self.registry,
            self.store,
            backend_key=self.backend_key,
            prefix=prefix,
            max_payload=max_payload,
            mailbox=self.mailbox,
            clock=clock,
        )
        self.commands = CommandBuilder(
            self.registry, self.backend_key, prefix=prefix, validity_s=validity_s
        )
        self._client_id = client_id
        self._shared_group = shared_group
        self._stats_file = stats_file
        self._tls = tls
        self._clock = clock
        self._backoff = backoff
        self._connect_timeout = connect_timeout
        self._client: aiomqtt.Client | None = None
        self._connected = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stats_saved_at = 0.0
        self._pending: set[asyncio.Task[None]] = set()
        self.connections = 0
        self._deactivating: dict[str, str] = {}  # vin -> deactivate command id

    # --- lifecycle --------------------------------------------------------------------

    async def start(self, *, timeout: float | None = None) -> None:
        """Run in the background and wait for the first connection and subscription."""
        if self._task is not None:
            raise CloudError("backend already started")
        self._task = asyncio.create_task(self.run(), name="cloud-stub")
        try:
            await self.wait_connected(timeout=timeout or self._connect_timeout)
        except BaseException:
            await self._cancel()
            raise

    async def wait_connected(self, *, timeout: float = 10.0) -> None:
        waiter = asyncio.ensure_future(self._connected.wait())
        pending = {waiter} if self._task is None else {waiter, self._task}
        done, _ = await asyncio.wait(pending, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        if waiter not in done:
            waiter.cancel()
            if self._task is not None and self._task in done:
                self._task.result()
            raise BrokerError(f"backend not connected to {self.address.url} after {timeout}s")

    async def stop(self) -> None:
        """Disconnect cleanly, save the counters, close the databases."""
        await self._cancel()
        self.save_stats()
        self.store.close()
        self.mailbox.close()
        self.registry.close()

    async def _cancel(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def __aenter__(self) -> Self:
        try:
            await self.start()
        except BaseException:
            await self.stop()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    async def run(self) -> None:
        """Connect, subscribe, ingest; reconnect with backoff until cancelled."""
        first, longest = self._backoff
        delay = first
        while True:
            try:
                async with _client(
                    self.address,
                    identifier=self._client_id,
                    clean_session=False,
                    tls=self._tls,
                    mqtt5=self._shared_group is not None,
                ) as client:
                    client.pending_calls_threshold = _MAX_PENDING + 1
                    await client.subscribe([(topic, 1) for topic in self.subscriptions])
                    self._client = client
                    self.connections += 1
                    self._connected.set()
                    delay = first
                    log.info("connected to %s as %s", self.address.url, self._client_id)
                    housekeeping = asyncio.create_task(self._housekeeping(client))
                    try:
                        messages = client.messages
                        while True:
                            group = [await anext(messages)]
                            while len(messages) and len(group) < _MAX_GROUP:
                                group.append(await anext(messages))
                            await self._handle(client, group)
                    finally:
                        housekeeping.cancel()
                        with contextlib.suppress(asyncio.CancelledError):
                            await housekeeping
            except aiomqtt.MqttError as exc:
                log.warning("broker %s: %s; retrying in %.1fs", self.address.url, exc, delay)
            finally:
                self._client = None
                self._connected.clear()
                await self._drop_pending()
            await asyncio.sleep(delay)
            delay = min(delay * 2, longest)

    @property
    def subscriptions(self) -> list[str]:
        """The topic filters, as shared subscriptions when this is one worker of a group."""
        topics = self.ingest.subscriptions
        if self._shared_group is None:
            return list(topics)
        return [f"$share/{self._shared_group}/{topic}" for topic in topics]

    async def _handle(self, client: aiomqtt.Client, messages: list[aiomqtt.Message]) -> None:
        received = [
            (m.topic.value, bytes(m.payload) if isinstance(m.payload, bytes | bytearray) else b"")
            for m in messages
        ]
        for replies in self.ingest.receive_many(received):
            for reply in replies:
                if isinstance(reply, Publish):
                    await self._send_reply(client, reply)
                else:
                    log.info("refused %s: %s (%s)", reply.topic, reply.reason, reply.detail)
        for vin, command_id in list(self._deactivating.items()):
            if self.store.service_stopped(vin, command_id):
                del self._deactivating[vin]
                self.registry.deactivate(vin)
                log.info("%s stopped its service: deactivated", vin)
        if time.monotonic() - self._stats_saved_at > _STATS_EVERY_S:
            self.save_stats()

    async def _housekeeping(self, client: aiomqtt.Client) -> None:
        """Every second: expire waiting commands, save the counters for ``cloud-stub stats``."""
        while True:
            await asyncio.sleep(_STATS_EVERY_S)
            for reply in self.mailbox.expire(self._clock()):
                await self._send_reply(client, reply)
            if time.monotonic() - self._stats_saved_at >= _STATS_EVERY_S:
                self.save_stats()

    async def _send_reply(self, client: aiomqtt.Client, reply: Publish) -> None:
        """Publish without waiting for the PUBACK, at most `_MAX_PENDING` in flight.

        paho writes the PUBLISH when the task first runs, and tasks start in creation order,
        so acks leave in the order they were made. A lost ack costs nothing: the vehicle
        resends and the duplicate is acknowledged again.
        """
        while len(self._pending) >= _MAX_PENDING:
            await asyncio.wait(self._pending, return_when=asyncio.FIRST_COMPLETED)
        task = asyncio.create_task(
            client.publish(reply.topic, reply.payload, qos=reply.qos, retain=reply.retain)
        )
        self._pending.add(task)
        task.add_done_callback(self._reply_done)

    def _reply_done(self, task: asyncio.Task[None]) -> None:
        self._pending.discard(task)
        if not task.cancelled() and (error := task.exception()) is not None:
            log.warning("ack not delivered: %s", error)

    async def _drop_pending(self) -> None:
        pending = list(self._pending)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)

    # --- commands ---------------------------------------------------------------------

    async def send_command(
        self, vin: str, name: str, argument: str | None = None, *, timeout: float = 10.0
    ) -> SignedDownlink:
        """Build and sign a command to `vin`; publish it (QoS 1) when its vehicle can get it.

        See `Mailbox`: a vehicle never heard from gets it retained (or after the one that is),
        any other through its persistent session.
        """
        signed = self.commands.build(vin, name, argument, now_epoch=self._clock())
        for reply in self.mailbox.post(signed, now=self._clock()):
            await self.publish_raw(reply.topic, reply.payload, retain=reply.retain, timeout=timeout)
        return signed

    async def publish(self, signed: SignedDownlink, *, timeout: float = 10.0) -> None:
        """Publish an already built downlink (genuine or crafted) at QoS 1, at once."""
        await self.publish_raw(signed.topic, signed.payload, timeout=timeout)

    async def publish_raw(
        self, topic: str, payload: bytes, *, retain: bool = False, timeout: float = 10.0
    ) -> None:
        await self.wait_connected(timeout=timeout)
        client = self._client
        if client is None:
            raise BrokerError(f"not connected to {self.address.url}")
        try:
            await client.publish(topic, payload, qos=1, retain=retain, timeout=timeout)
        except aiomqtt.MqttError as exc:
            raise BrokerError(f"cannot publish to {topic}: {exc}") from None

    async def activate(self, vin: str) -> SignedDownlink:
        """Mark the service active and tell the vehicle."""
        self._deactivating.pop(vin, None)
        self.registry.activate(vin)
        return await self.send_command(vin, "activate")

    async def deactivate(self, vin: str) -> SignedDownlink:
        """Tell the vehicle to stop; mark the service inactive once it has.

        The vehicle's last record (its ``service`` record naming this command) and every
        record before it are still taken; the registry switches the service off when they
        are stored (`Store.service_stopped`), so nothing the vehicle sent is refused.
        """
        signed = await self.send_command(vin, "deactivate")
        self._deactivating[vin] = signed.downlink.command_id
        return signed

    # --- counters ---------------------------------------------------------------------

    def stats(self) -> IngestStats:
        return self.ingest.stats()

    def save_stats(self) -> None:
        self._stats_saved_at = time.monotonic()
        write_json_atomic(self.data_dir / self._stats_file, self.stats().as_dict())


def write_json_atomic(path: Path, content: dict[str, Any]) -> None:
    fd, temp = tempfile.mkstemp(prefix=f".{path.name}-", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as file:
            json.dump(content, file, indent=2, sort_keys=True)
            file.write("\n")
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)
        raise


def read_stats(data_dir: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The counters the last (or running) backend saved, or None."""
    path = Path(data_dir) / STATS_FILE
    try:
        content = json.loads(path.read_text("utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise CloudError(f"cannot read {path}: {exc}") from None
    if not isinstance(content, dict):
        raise CloudError(f"{path} does not hold a JSON object")
    return content


async def publish_once(
    broker_url: str,
    messages: Sequence[Publish],
    *,
    tls: TlsFiles | None = None,
    timeout: float = 10.0,
) -> None:
    """Connect with a throw-away client id, publish the messages at QoS 1 in order, leave."""
    address = parse_broker_url(broker_url)
    identifier = f"{CLIENT_ID}-cli-{os.getpid()}"
    try:
        async with _client(
            address, identifier=identifier, clean_session=True, tls=tls, timeout=timeout
        ) as client:
            for message in messages:
                await client.publish(
                    message.topic,
                    message.payload,
                    qos=message.qos,
                    retain=message.retain,
                    timeout=timeout,
                )
    except aiomqtt.MqttError as exc:
        raise BrokerError(f"cannot publish to {address.url}: {exc}") from None
