"""The MQTT uplink against real brokers on loopback: amqtt in-process, Mosquitto when present."""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import aiomqtt
import pytest
from amqtt.broker import Broker

from tcu.errors import ConfigError
from tcu.events import Ack, Downlink
from tcu.runtime.backoff import Backoff
from tcu.runtime.mqtt import BrokerURL, TelemetryUplink
from tcu.telemetry.codec.cose import generate_key, key_id, sign1, verify1
from tcu.telemetry.codec.schema import AckMessage, BatchMessage, decode_batch, encode_ack
from tcu.telemetry.records import Record
from tcu.telemetry.storage.identity import VehicleIdentity
from tcu.telemetry.storage.outbox import Outbox
from tcu.telemetry.uplink import UplinkQueue
from tcu.vehicle import catalogue as cat
from tcu.vehicle.catalogue import SIGNAL_IDS

VIN = "WDB9066331S123456"
HOST = "127.0.0.1"
WAIT = 10.0
BACKEND = generate_key("EdDSA")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


@contextlib.asynccontextmanager
async def amqtt_broker(port: int) -> AsyncIterator[Broker]:
    config = {
        "listeners": {"default": {"type": "tcp", "bind": f"{HOST}:{port}"}},
        "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}},
    }
    broker = Broker(config)
    await broker.start()
    try:
        yield broker
    finally:
        await broker.shutdown()


@pytest.fixture
def port() -> int:
    return free_port()


@pytest.fixture
async def broker(port: int) -> AsyncIterator[Broker]:
    async with amqtt_broker(port) as b:
        yield b


@pytest.fixture
def identity() -> VehicleIdentity:
    key = generate_key("EdDSA")
    return VehicleIdentity(vin=VIN, key=key, kid=key_id(key), backend_key=BACKEND.public_key())


@pytest.fixture
def outbox(tmp_path: Path) -> Iterator[Outbox]:
    with Outbox(tmp_path / "outbox.sqlite", synchronous="NORMAL") as box:
        yield box


def records(epoch: int, seqs: range) -> list[Record]:
    out = []
    for seq in seqs:
        if seq % 2:
            body: dict[Any, Any] = {0: 0, SIGNAL_IDS[cat.SOC]: 50.0 + seq}
            kind = "snapshot"
        else:
            body, kind = {"alarm": "tyre_pressure_low", "n": seq}, "alarm"
        out.append(Record(vin=VIN, epoch=epoch, seq=seq, t_ms=seq * 1000, kind=kind, body=body))
    return out


@contextlib.asynccontextmanager
async def backend_client(port: int) -> AsyncIterator[aiomqtt.Client]:
    async with aiomqtt.Client(
        HOST, port, identifier="test-backend", protocol=aiomqtt.ProtocolVersion.V311
    ) as client:
        await client.subscribe(f"vehicles/{VIN}/telemetry", qos=1)
        await client.subscribe(f"vehicles/{VIN}/status", qos=1)
        yield client


async def receive(client: aiomqtt.Client) -> aiomqtt.Message:
    return await asyncio.wait_for(anext(client.messages), WAIT)


async def receive_batch(client: aiomqtt.Client, identity: VehicleIdentity) -> BatchMessage:
    message = await receive(client)
    assert message.topic.matches(f"vehicles/{VIN}/telemetry")
    assert isinstance(message.payload, bytes)
    signed = verify1(message.payload, identity.key.public_key())
    assert signed.kid == identity.kid
    return decode_batch(signed.payload)


async def send_ack(client: aiomqtt.Client, epoch: int, seq: int, key: Any = BACKEND) -> None:
    payload = sign1(encode_ack(AckMessage(vin=VIN, epoch=epoch, seq=seq)), key, kid=key_id(key))
    await client.publish(f"vehicles/{VIN}/ack", payload, qos=1)


@contextlib.asynccontextmanager
async def running(uplink: TelemetryUplink) -> AsyncIterator[TelemetryUplink]:
    task = asyncio.create_task(uplink.run())
    try:
        assert await uplink.wait_connected(WAIT)
        yield uplink
    finally:
        await uplink.close()
        await asyncio.wait_for(task, WAIT)


class EventHost:
    """The host's side of the uplink: its queue, and the events the core would hear."""

    def __init__(self, queue: UplinkQueue, events: list[Any]) -> None:
        self.queue = queue
        self.events = events
        self.clock = SimpleNamespace(now=0.0)

    def receive_ack(self, payload: bytes, now: float) -> bool:
        ack = self.queue.receive_ack(payload)
        if ack is not None:
            self.events.append(ack)
        return ack is not None

    def receive_downlink(self, payload: bytes, now: float) -> None:
        self.events.append(Downlink(payload=payload))


def uplink_for(
    outbox: Outbox,
    identity: VehicleIdentity,
    port: int,
    events: list[Any],
    *,
    clock: Callable[[], float] | None = None,
    batch_records: int = 256,
    **kw: Any,
) -> TelemetryUplink:
    options: dict[str, Any] = {
        "protocol": "3.1.1",
        "backoff": Backoff(0.05, 0.2, random.Random(7)),
        **kw,
    }
    uplink = TelemetryUplink(VIN, BrokerURL.parse(f"mqtt://{HOST}:{port}"), **options)
    queue = UplinkQueue(
        outbox,
        identity,
        batch_records=batch_records,
        clock_ms=(lambda: clock() * 1000.0) if clock is not None else None,
        clock=uplink.time,
    )
    uplink.attach(EventHost(queue, events))  # type: ignore[arg-type]
    return uplink


async def test_a_batch_is_published_signed_and_the_backend_ack_empties_the_outbox(
    broker: Broker, port: int, outbox: Outbox, identity: VehicleIdentity
) -> None:
    epoch = outbox.start_epoch()
    stored = records(epoch, range(1, 6))
    outbox.append(stored)
    events: list[Any] = []
    uplink = uplink_for(outbox, identity, port, events, clock=lambda: 12.5)
    async with backend_client(port) as backend, running(uplink):
        batch = await receive_batch(backend, identity)
        assert batch.records == tuple(stored)
        assert (batch.vin, batch.epoch, batch.sent_at_ms) == (VIN, epoch, 12_500)
        assert outbox.depth() == 5, "a PUBACK deletes nothing"
        await send_ack(backend, epoch, 3)
        await send_ack(backend, epoch, 5)
        assert await uplink.drain(WAIT)
    assert outbox.depth() == 0
    assert events == [Ack(epoch=epoch, sequence=3), Ack(epoch=epoch, sequence=5)]


async def test_drain_waits_for_acks_and_batches_keep_production_order(
    broker: Broker, port: int, outbox: Outbox, identity: VehicleIdentity
) -> None:
    first = outbox.start_epoch()
    outbox.append(records(first, range(1, 4)))
    second = outbox.start_epoch()
    outbox.append(records(second, range(1, 6)))
    events: list[Any] = []
    uplink = uplink_for(outbox, identity, port, events, batch_records=2)
    async with backend_client(port) as backend, running(uplink):
        assert not await uplink.drain(0.05)
        got = []
        for _ in range(5):
            batch = await receive_batch(backend, identity)
            assert len({r.epoch for r in batch.records}) == 1
            got += [(r.epoch, r.seq) for r in batch.records]
            await send_ack(backend, batch.epoch, batch.records[-1].seq)
        assert got == [(first, s) for s in (1, 2, 3)] + [(second, s) for s in (1, 2, 3, 4, 5)]
        assert await uplink.drain(WAIT)
        outbox.append(records(second, range(6, 7)))
        uplink.notify()
        late = await receive_batch(backend, identity)
        assert [r.seq for r in late.records] == [6]
    assert uplink.stats.batches == 6 and uplink.stats.records_sent == 9


async def test_forged_or_foreign_acks_delete_nothing(
    broker: Broker, port: int, outbox: Outbox, identity: VehicleIdentity
) -> None:
    epoch = outbox.start_epoch()
    outbox.append(records(epoch, range(1, 3)))
    events: list[Any] = []
    uplink = uplink_for(outbox, identity, port, events)
    async with backend_client(port) as backend, running(uplink):
        await receive_batch(backend, identity)
        await send_ack(backend, epoch, 2, key=generate_key("EdDSA"))
        await backend.publish(f"vehicles/{VIN}/ack", b"\x00not cose", qos=1)
        await send_ack(backend, epoch, 1)
        assert await asyncio.wait_for(_until(lambda: outbox.depth() == 1), WAIT)
    assert [(r.epoch, r.seq) for r in outbox.pending()] == [(epoch, 2)]
    assert uplink.stats.refused == {"ack_bad_signature": 1, "ack_malformed": 1}
    assert events == [Ack(epoch=epoch, sequence=1)]


async def _until(condition: Any) -> bool:
    while not condition():
        await asyncio.sleep(0.01)
    return True


async def test_commands_reach_the_core_and_status_replies_go_out(
    broker: Broker, port: int, outbox: Outbox, identity: VehicleIdentity
) -> None:
    outbox.start_epoch()
    events: list[Any] = []
    uplink = uplink_for(outbox, identity, port, events)
    async with backend_client(port) as backend, running(uplink):
        command = sign1(b"\xa0", BACKEND, kid=key_id(BACKEND))
        await backend.publish(f"vehicles/{VIN}/commands", command, qos=1)
        assert await asyncio.wait_for(_until(lambda: events), WAIT)
        assert events == [Downlink(payload=command)]
        reply = identity.sign(b"status bytes")
        uplink.publish("status", reply, 0.0)
        message = await receive(backend)
        assert message.topic.matches(f"vehicles/{VIN}/status")
        assert message.payload == reply
    with pytest.raises(ValueError, match="status"):
        uplink.publish("telemetry", b"", 0.0)


async def test_drop_counters_ride_on_the_next_batch_and_clear_with_its_ack(
    broker: Broker, port: int, tmp_path: Path, identity: VehicleIdentity
) -> None:
    with Outbox(tmp_path / "small.sqlite", cap=2, hard_cap=10, synchronous="NORMAL") as box:
        epoch = box.start_epoch()
        box.append(records(epoch, range(1, 8)))
        assert box.drop_counts() == {"snapshot": 4}
        uplink = uplink_for(box, identity, port, [])
        async with backend_client(port) as backend, running(uplink):
            batch = await receive_batch(backend, identity)
            assert dict(batch.drops) == {"snapshot": 4}
            await send_ack(backend, epoch, batch.records[-1].seq)
            assert await uplink.drain(WAIT)
        assert box.drop_counts() == {}


async def test_reconnects_after_the_broker_restarts_and_sends_the_unacked_again(
    port: int, outbox: Outbox, identity: VehicleIdentity
) -> None:
    epoch = outbox.start_epoch()
    outbox.append(records(epoch, range(1, 4)))
    uplink = uplink_for(outbox, identity, port, [])
    task = None
    try:
        async with amqtt_broker(port):
            task = asyncio.create_task(uplink.run())
            async with backend_client(port) as backend:
                first = await receive_batch(backend, identity)
        assert [r.seq for r in first.records] == [1, 2, 3]
        async with amqtt_broker(port), backend_client(port) as backend:
            again = await receive_batch(backend, identity)
            assert again.records == first.records
            await send_ack(backend, epoch, 3)
            assert await uplink.drain(WAIT)
        assert uplink.stats.connects >= 2
    finally:
        await uplink.close()
        if task is not None:
            await asyncio.wait_for(task, WAIT)


@contextlib.asynccontextmanager
async def mqtt311_only(upstream: int) -> AsyncIterator[int]:
    """A front for the broker that answers an MQTT 5 CONNECT as a 3.1.1-only broker does:
    CONNACK "unacceptable protocol version", then close. Anything else is piped through."""

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError):
            while data := await reader.read(4096):
                writer.write(data)
                await writer.drain()
        writer.close()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readexactly(2)
        length, shift, byte = head[1] & 0x7F, 7, head[1]
        while byte & 0x80:
            byte = (await reader.readexactly(1))[0]
            head += bytes([byte])
            length |= (byte & 0x7F) << shift
            shift += 7
        body = await reader.readexactly(length)
        if body[6] == 5:
            writer.write(b"\x20\x02\x00\x01")
            await writer.drain()
            writer.close()
            await writer.wait_closed()
            return
        up_reader, up_writer = await asyncio.open_connection(HOST, upstream)
        up_writer.write(head + body)
        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    server = await asyncio.start_server(serve, HOST, 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        await server.wait_closed()


async def test_auto_protocol_falls_back_to_3_1_1_when_the_broker_refuses_mqtt5(
    broker: Broker, port: int, outbox: Outbox, identity: VehicleIdentity
) -> None:
    epoch = outbox.start_epoch()
    outbox.append(records(epoch, range(1, 2)))
    async with mqtt311_only(port) as front:
        uplink = uplink_for(outbox, identity, front, [], protocol="auto")
        async with backend_client(port) as backend, running(uplink):
            assert uplink.stats.protocol == "3.1.1"
            assert uplink.stats.connect_failures == 1
            batch = await receive_batch(backend, identity)
            assert [r.seq for r in batch.records] == [1]


@pytest.mark.mosquitto
async def test_mqtt5_persistent_session_with_mosquitto(
    mosquitto_broker: Any, outbox: Outbox, identity: VehicleIdentity
) -> None:
    epoch = outbox.start_epoch()
    outbox.append(records(epoch, range(1, 3)))
    port = mosquitto_broker.port
    uplink = uplink_for(outbox, identity, port, [], protocol="auto")
    async with backend_client(port) as backend, running(uplink):
        assert uplink.stats.protocol == "5"
        batch = await receive_batch(backend, identity)
        await send_ack(backend, epoch, batch.records[-1].seq)
        assert await uplink.drain(WAIT)


def test_backoff_is_bounded_full_jitter_and_reproducible() -> None:
    a = Backoff(0.5, 8.0, random.Random(42))
    b = Backoff(0.5, 8.0, random.Random(42))
    delays = [a.delay(n) for n in range(12)]
    assert delays == [b.delay(n) for n in range(12)]
    assert [a.ceiling(n) for n in range(6)] == [0.5, 1.0, 2.0, 4.0, 8.0, 8.0]
    assert all(0.0 <= d <= a.ceiling(n) for n, d in enumerate(delays))
    assert a.ceiling(10_000) == 8.0
    with pytest.raises(ConfigError):
        Backoff(0.0, 1.0)


@pytest.mark.parametrize(
    ("url", "host", "port", "tls"),
    [
        ("mqtt://127.0.0.1:1884", "127.0.0.1", 1884, False),
        ("mqtt://broker.local", "broker.local", 1883, False),
        ("mqtts://broker.local", "broker.local", 8883, True),
        ("mqtt://[::1]:1999/", "::1", 1999, False),
    ],
)
def test_broker_url_parses(url: str, host: str, port: int, tls: bool) -> None:
    parsed = BrokerURL.parse(url)
    assert (parsed.host, parsed.port, parsed.tls) == (host, port, tls)
    assert BrokerURL.parse(parsed.url) == parsed


@pytest.mark.parametrize(
    "url",
    [
        "http://host:1883",
        "mqtt://",
        "mqtt://host:0",
        "mqtt://host:99999",
        "mqtt://host:port",
        "mqtt://host/topic",
        "mqtt://user:pw@host",
        "host:1883",
    ],
)
def test_a_bad_broker_url_is_a_config_error(url: str) -> None:
    with pytest.raises(ConfigError, match="broker"):
        BrokerURL.parse(url)


def test_tls_files_need_mqtts() -> None:
    with pytest.raises(ConfigError, match="mqtts"):
        BrokerURL.parse("mqtt://host", ca="ca.pem")
    with pytest.raises(ConfigError, match="together"):
        BrokerURL.parse("mqtts://host", cert="c.pem")
    with pytest.raises(ConfigError, match="TLS"):
        BrokerURL.parse("mqtts://host", ca="/nonexistent/ca.pem").tls_context()
