"""Ingest workers on RabbitMQ: competing AMQP consumers of the MQTT plugin's topic exchange.

Theory of operation: RabbitMQ's MQTT plugin publishes what vehicles send over MQTT to the
``amq.topic`` exchange, the topic's ``/`` turned into ``.`` (``vehicles/VIN/telemetry`` is the
routing key ``vehicles.VIN.telemetry``), and delivers to an MQTT subscriber whatever is
published there under the matching key. `AmqpWorker` declares one durable quorum queue
(replicated on the cluster's nodes, so it outlives a node), binds it to ``amq.topic`` for
``{prefix}.*.telemetry`` and ``{prefix}.*.status``, and consumes from it with a bounded
prefetch (worker *i* starts on node *i*); every worker of every process consumes from the
same queue, and RabbitMQ hands each message to one of them.

A group is the message in hand and whatever else has arrived (up to `MAX_GROUP`); it goes
to `Ingest.receive_many` (one store transaction). The signed acks are published to
``amq.topic`` under ``{prefix}.{VIN}.ack`` (persistent, with publisher confirms), and only
then is the group acknowledged to RabbitMQ (one ``basic.ack`` with ``multiple``). A worker
or node that dies before that leaves the group unacknowledged: RabbitMQ delivers it again to
another consumer, and the store counts the copies as duplicates. The connection is retried
over the given node URLs in turn, so a worker whose node dies moves to another.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Final
from urllib.parse import urlsplit

import aio_pika
import aiormq
from aio_pika.abc import AbstractIncomingMessage

from cloud_stub.ingest import DEFAULT_PREFIX, Ingest, Publish
from cloud_stub.keys import load_backend_key
from cloud_stub.registry import Registry
from cloud_stub.service import REGISTRY_FILE, STORE_FILE, write_json_atomic
from cloud_stub.stores import open_store

__all__ = ["MAX_GROUP", "QUEUE", "AmqpWorker", "routing_key"]

QUEUE: Final = "cloud-stub.ingest"
MAX_GROUP: Final = 256
_PREFETCH: Final = 2 * MAX_GROUP
_STATS_EVERY_S: Final = 1.0
_SETUP_TIMEOUT_S: Final = 15.0
_CLOSE_TIMEOUT_S: Final = 5.0

log = logging.getLogger("cloud_stub.amqp")


def routing_key(topic: str) -> str:
    """The AMQP routing key RabbitMQ's MQTT plugin uses for an MQTT topic (and back)."""
    return topic.translate(_SWAP)


_SWAP: Final = str.maketrans({"/": ".", ".": "/"})


class AmqpWorker:
    """One competing consumer of the ingest queue, storing in groups and acking end to end."""

    def __init__(
        self,
        urls: Sequence[str],
        data_dir: str | os.PathLike[str],
        *,
        prefix: str = DEFAULT_PREFIX,
        store: str | os.PathLike[str] | None = None,
        stats_file: str = "stats.json",
        backoff: tuple[float, float] = (0.2, 2.0),
        first_node: int = 0,
    ) -> None:
        self.urls = list(urls)
        self._first_node = first_node
        self.data_dir = Path(data_dir)
        self.registry = Registry(self.data_dir / REGISTRY_FILE)
        self.store = open_store(self.data_dir / STORE_FILE if store is None else store)
        self.ingest = Ingest(
            self.registry, self.store, backend_key=load_backend_key(self.data_dir), prefix=prefix
        )
        self._stats_file = stats_file
        self._backoff = backoff
        self._inbox: asyncio.Queue[AbstractIncomingMessage] = asyncio.Queue()
        self.connections = 0
        self.connected = asyncio.Event()
        self._saved_at = 0.0

    def close(self) -> None:
        self.save_stats()
        self.store.close()
        self.registry.close()

    def save_stats(self) -> None:
        write_json_atomic(self.data_dir / self._stats_file, self.ingest.stats().as_dict())

    async def run(self) -> None:
        """Consume until cancelled, moving to the next node URL when a connection is lost."""
        first, longest = self._backoff
        delay = first
        attempt = self._first_node
        while True:
            url = self.urls[attempt % len(self.urls)]
            attempt += 1
            try:
                await self._session(url)
            except (aiormq.exceptions.AMQPError, ConnectionError, OSError, TimeoutError) as exc:
                log.warning("AMQP %s: %s; next node in %.1fs", _host(url), exc, delay)
            self.connected.clear()
            await asyncio.sleep(delay)
            delay = min(delay * 2, longest)
            if self.connections:
                delay = first

    async def _session(self, url: str) -> None:
        async with asyncio.timeout(_SETUP_TIMEOUT_S):
            connection = await aio_pika.connect(url, timeout=_SETUP_TIMEOUT_S)
        try:
            async with asyncio.timeout(_SETUP_TIMEOUT_S):
                channel = await connection.channel(publisher_confirms=True)
                await channel.set_qos(prefetch_count=_PREFETCH)
                exchange = await channel.get_exchange("amq.topic", ensure=False)
                queue = await channel.declare_queue(
                    QUEUE, durable=True, arguments={"x-queue-type": "quorum"}
                )
                prefix = routing_key(self.ingest.prefix)
                for leaf in ("telemetry", "status"):
                    await queue.bind(exchange, routing_key=f"{prefix}.*.{leaf}")
                self._inbox = asyncio.Queue()
                await queue.consume(self._inbox.put)
            self.connections += 1
            self.connected.set()
            log.info("consuming %s on %s", QUEUE, _host(url))
            closed = asyncio.ensure_future(connection.closed())
            try:
                while True:
                    getter = asyncio.ensure_future(self._inbox.get())
                    done, _ = await asyncio.wait(
                        {getter, closed}, return_when=asyncio.FIRST_COMPLETED
                    )
                    if getter not in done:
                        getter.cancel()
                        raise ConnectionError("connection closed")
                    group = [getter.result()]
                    while not self._inbox.empty() and len(group) < MAX_GROUP:
                        group.append(self._inbox.get_nowait())
                    async with asyncio.timeout(_SETUP_TIMEOUT_S):
                        await self._handle(exchange, group)
            finally:
                closed.cancel()
        finally:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(connection.close(), _CLOSE_TIMEOUT_S)

    async def _handle(
        self, exchange: aio_pika.abc.AbstractExchange, group: list[AbstractIncomingMessage]
    ) -> None:
        received = [(routing_key(m.routing_key or ""), m.body) for m in group]
        publishes = []
        for replies in self.ingest.receive_many(received):
            for reply in replies:
                if isinstance(reply, Publish):
                    message = aio_pika.Message(
                        reply.payload, delivery_mode=aio_pika.DeliveryMode.PERSISTENT
                    )
                    publishes.append(exchange.publish(message, routing_key(reply.topic)))
                else:
                    log.info("refused %s: %s (%s)", reply.topic, reply.reason, reply.detail)
        await asyncio.gather(*publishes)
        await group[-1].ack(multiple=True)
        loop = asyncio.get_running_loop()
        if loop.time() - self._saved_at > _STATS_EVERY_S:
            self._saved_at = loop.time()
            self.save_stats()


def _host(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.hostname}:{parts.port or 5672}"
