"""Carrying the virtual world's messages across a real MQTT broker.

Theory of operation. The in-memory world (``tcu.compose.memory``) moves telemetry, acks,
status replies and commands between the TCU and the backend on the vehicle clock. With a
``BrokerRelay`` attached, every one of those messages really crosses a broker (amqtt
embedded in a background thread, or a Mosquitto process): the TCU's client
(``tcu-{vin}``) or the backend's (``cloud-stub``) publishes it at QoS 1 and the world
waits until the other side's subscription delivers it, then goes on with the bytes as
they arrived. One message at a time, so the scenario stays deterministic; a broker
outage (``down``/``up``) stops and restarts the broker process for real, and both
clients keep persistent sessions and reconnect by themselves.
"""

from __future__ import annotations

import asyncio
import queue
import threading
import time
from pathlib import Path
from typing import Any, Literal

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from cloud_stub.broker import EmbeddedBroker, MosquittoProcess
from tcu.errors import BusError

BrokerKind = Literal["embedded", "mosquitto"]
CONNECT_TIMEOUT_S = 15.0


class _EmbeddedInThread:
    """amqtt's broker on an event loop of its own, in a daemon thread."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.broker = EmbeddedBroker()
        self.port = 0

    def start(self) -> None:
        asyncio.run_coroutine_threadsafe(self.broker.start(), self.loop).result(15)
        self.port = self.broker.port

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.broker.stop(), self.loop).result(15)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()


class _Side:
    """One MQTT client: connects, subscribes, and puts what arrives in ``inbox``."""

    def __init__(self, client_id: str, topics: list[str], inbox: queue.Queue[Any]) -> None:
        self.topics = topics
        self.ready = threading.Event()
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id,
            clean_session=False,
            protocol=mqtt.MQTTv311,
        )
        self.client.reconnect_delay_set(min_delay=1, max_delay=1)
        self.client.on_connect = self._connected
        self.client.on_subscribe = lambda *a: self.ready.set()
        self.client.on_disconnect = lambda *a: self.ready.clear()
        self.client.on_message = lambda c, u, m: inbox.put((m.topic, bytes(m.payload)))

    def _connected(
        self, client: mqtt.Client, userdata: Any, flags: Any, rc: Any, props: Any
    ) -> None:
        if not rc.is_failure:
            client.subscribe([(t, 1) for t in self.topics])

    def open(self, host: str, port: int) -> None:
        self.client.connect(host, port, keepalive=30)
        self.client.loop_start()

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
        self.ready.clear()


class BrokerRelay:
    def __init__(
        self, kind: BrokerKind, workdir: Path, vin: str, *, prefix: str = "vehicles"
    ) -> None:
        self.kind = kind
        self.timeout = 10.0
        self.carried = 0
        self.lost = 0
        self.stray = 0
        self._embedded: _EmbeddedInThread | None = None
        self._mosquitto: MosquittoProcess | None = None
        if kind == "embedded":
            self._embedded = _EmbeddedInThread()
            self._embedded.start()
            host, port = "127.0.0.1", self._embedded.port
        else:
            self._mosquitto = MosquittoProcess(workdir / "mosquitto")
            self._mosquitto.start()
            host, port = self._mosquitto.host, self._mosquitto.port
        self.url = f"mqtt://{host}:{port}"
        self._port = port
        self._inbox: queue.Queue[tuple[str, bytes]] = queue.Queue()
        base = f"{prefix}/{vin}"
        self._subscriptions = {
            f"tcu-{vin}": [f"{base}/ack", f"{base}/commands"],
            "cloud-stub": [f"{prefix}/+/telemetry", f"{prefix}/+/status"],
        }
        self._connect_sides()

    def _connect_sides(self) -> None:
        """Both clients, new objects each time (persistent sessions keep their state)."""
        (tcu_id, tcu_topics), (backend_id, backend_topics) = self._subscriptions.items()
        self.tcu = _Side(tcu_id, tcu_topics, self._inbox)
        self.backend = _Side(backend_id, backend_topics, self._inbox)
        host = self.url.split("//")[1].rsplit(":", 1)[0]
        self.tcu.open(host, self._port)
        self.backend.open(host, self._port)
        self._wait_ready()

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + CONNECT_TIMEOUT_S
        for side in (self.tcu, self.backend):
            if not side.ready.wait(max(0.0, deadline - time.monotonic())):
                raise BusError(f"MQTT broker at {self.url}: clients did not connect")

    def carry(self, topic: str, payload: bytes) -> bytes | None:
        """Publish ``payload`` from its sender and return it as the receiver got it."""
        uplink = topic.endswith(("/telemetry", "/status"))
        sender = self.tcu if uplink else self.backend
        try:
            self._wait_ready()
            info = sender.client.publish(topic, payload, qos=1)
            info.wait_for_publish(self.timeout)
        except (BusError, RuntimeError, ValueError):
            self.lost += 1
            return None
        deadline = time.monotonic() + self.timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                got_topic, got = self._inbox.get(timeout=left)
            except queue.Empty:
                break
            if got_topic == topic and got == payload:
                self.carried += 1
                return got
            self.stray += 1  # a message the broker kept from before (persistent session)
        self.lost += 1
        return None

    def down(self) -> None:
        """Mosquitto: stop the process (its persistence stays). amqtt: cut both clients off.

        amqtt's shutdown can hang while a QoS 1 exchange is unfinished, and it keeps no
        sessions across a restart anyway; so the embedded broker stays up and both
        clients lose their connection instead, which is what the TCU and backend see.
        """
        if self._mosquitto is not None:
            self._mosquitto.stop()
        else:
            for side in (self.tcu, self.backend):
                side.close()

    def up(self) -> None:
        if self._mosquitto is not None:
            self._mosquitto.start()
            self._wait_ready()
        else:
            self._connect_sides()

    def stats(self) -> dict[str, Any]:
        return {
            "broker": self.kind,
            "url": self.url,
            "carried": self.carried,
            "lost": self.lost,
            "stray": self.stray,
        }

    def close(self) -> None:
        for side in (self.tcu, self.backend):
            side.close()
        if self._mosquitto is not None:
            self._mosquitto.stop()
        if self._embedded is not None:
            self._embedded.stop()
            self._embedded.close()
