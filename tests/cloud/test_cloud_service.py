"""End to end over real brokers: a vehicle double and the backend talk MQTT on loopback."""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import aiomqtt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from cloud_stub.broker import (
    MOSQUITTO_CONF,
    BrokerHandle,
    EmbeddedBroker,
    MosquittoProcess,
    TlsListener,
    free_port,
)
from cloud_stub.errors import BrokerError
from cloud_stub.service import Backend, TlsFiles, read_stats
from cloud_stub.testing import VehicleDouble
from tcu.telemetry.codec.cose import VerifyKey
from tcu.telemetry.codec.schema import BatchMessage, encode_batch

VIN = "WV1ZZZ7HZLH000001"
NOW = 1_767_225_600
WAIT_S = 30.0


async def eventually(condition: Callable[[], bool], what: str) -> None:
    """Wait until `condition` holds (a liveness bound, not a speed requirement)."""
    async with asyncio.timeout(WAIT_S):
        while not condition():
            await asyncio.sleep(0.01)
    assert condition(), what


async def next_payload(client: aiomqtt.Client) -> tuple[str, bytes]:
    async with asyncio.timeout(WAIT_S):
        message = await anext(aiter(client.messages))
    assert isinstance(message.payload, bytes)
    return message.topic.value, message.payload


async def publish_all(
    client: aiomqtt.Client, topic: str, messages: list[bytes], *, window: int = 64
) -> None:
    """Publish at QoS 1 with up to `window` messages awaiting their PUBACK."""
    for start in range(0, len(messages), window):
        chunk = messages[start : start + window]
        await asyncio.gather(*(client.publish(topic, m, qos=1) for m in chunk))


def vehicle_client(broker: BrokerHandle, *, clean: bool = True) -> aiomqtt.Client:
    return aiomqtt.Client(
        broker.host, broker.port, identifier=f"tcu-{VIN}", clean_session=clean, timeout=10
    )


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "cloud"


@pytest.fixture
async def backend(broker: BrokerHandle, data_dir: Path) -> AsyncIterator[Backend]:
    async with Backend(broker.url, data_dir, clock=lambda: NOW, backoff=(0.05, 0.5)) as service:
        yield service


@pytest.fixture
def vehicle(backend: Backend) -> VehicleDouble:
    double = VehicleDouble(VIN)
    double.register(backend.registry)
    return double


@pytest.fixture
def backend_public(backend: Backend) -> VerifyKey:
    return backend.backend_key.key.public_key()


async def test_batch_is_stored_and_a_signed_ack_comes_back(
    broker: BrokerHandle, backend: Backend, vehicle: VehicleDouble, backend_public: VerifyKey
) -> None:
    async with vehicle_client(broker) as client:
        await client.subscribe(vehicle.topic("ack"), qos=1)
        await client.publish(vehicle.telemetry_topic, b"\xd2\x84garbage", qos=1)
        await client.publish(vehicle.telemetry_topic, vehicle.batch(3, [1, 2, 3, 4]), qos=1)

        topic, payload = await next_payload(client)

    assert topic == f"vehicles/{VIN}/ack"
    ack = VehicleDouble.read_ack(payload, backend_public)
    assert (ack.vin, ack.epoch, ack.seq) == (VIN, 3, 4)
    assert [r.seq for r in backend.store.records(VIN, 3)] == [1, 2, 3, 4]
    assert dict(backend.stats().refused) == {"malformed_cose": 1}


async def test_command_reaches_the_vehicle_and_its_result_is_stored(
    broker: BrokerHandle, backend: Backend, vehicle: VehicleDouble, backend_public: VerifyKey
) -> None:
    async with vehicle_client(broker) as client:
        await client.subscribe(vehicle.topic("commands"), qos=1)
        sent = await backend.send_command(VIN, "set_departure", "07:15")
        topic, payload = await next_payload(client)
        command = VehicleDouble.read_downlink(payload, backend_public)
        result = vehicle.status(command.command_id, command.counter, "completed", t_ms=42)
        await client.publish(vehicle.status_topic, result, qos=1)
        await eventually(lambda: bool(backend.store.statuses(VIN)), "status stored")

    assert topic == f"vehicles/{VIN}/commands"
    assert command == sent.downlink
    assert (command.name, command.argument, command.issued_at) == ("set_departure", "07:15", NOW)
    (status,) = backend.store.statuses(VIN)
    assert (status.command_id, status.outcome) == (command.command_id, "completed")


async def test_activation_flips_the_registry_and_tells_the_vehicle(
    broker: BrokerHandle, backend: Backend, backend_public: VerifyKey
) -> None:
    vehicle = VehicleDouble(VIN)
    vehicle.register(backend.registry, active=False)
    async with vehicle_client(broker) as client:
        await client.subscribe(f"vehicles/{VIN}/commands", qos=1)
        await backend.activate(VIN)
        _, first = await next_payload(client)
        # a vehicle never heard from gets its first command retained; its answer clears it
        answer = vehicle.status("cmd-1", 1, "completed")
        await client.publish(vehicle.status_topic, answer, qos=1)
        assert await next_payload(client) == (f"vehicles/{VIN}/commands", b"")
        await backend.deactivate(VIN)
        _, second = await next_payload(client)
        names = [VehicleDouble.read_downlink(p, backend_public) for p in (first, second)]
        assert [(n.name, n.counter) for n in names] == [("activate", 1), ("deactivate", 2)]
        # the vehicle's last records are still taken: it says it stopped in one of them
        assert backend.registry.is_active(VIN) is True
        last = BatchMessage(
            vin=VIN,
            epoch=1,
            records=(
                vehicle.record(1, 1),
                vehicle.record(
                    1,
                    2,
                    kind="service",
                    body={"active": False, "command_id": names[1].command_id},
                ),
            ),
        )
        await client.publish(vehicle.telemetry_topic, vehicle.sign(encode_batch(last)), qos=1)
        await eventually(lambda: not backend.registry.is_active(VIN), "service switched off")
    assert backend.store.count_records(VIN) == 2


async def test_batches_sent_while_the_backend_is_away_arrive_when_it_returns(
    broker: BrokerHandle, data_dir: Path, backend: Backend, vehicle: VehicleDouble
) -> None:
    await backend.stop()

    async with vehicle_client(broker) as client:
        for seq in range(1, 21):
            await client.publish(vehicle.telemetry_topic, vehicle.batch(1, [seq]), qos=1)

    async with Backend(broker.url, data_dir) as returned:
        await eventually(lambda: returned.store.count_records(VIN) == 20, "20 records stored")
        assert returned.store.acked(VIN, 1) == 20
    assert read_stats(data_dir) is not None


async def test_backend_reconnects_after_a_mosquitto_restart_and_gets_its_queue(
    mosquitto_broker: MosquittoProcess, tmp_path: Path
) -> None:
    data = tmp_path / "cloud"
    vehicle = VehicleDouble(VIN)
    async with Backend(mosquitto_broker.url, data, backoff=(0.05, 0.2)) as backend:
        vehicle.register(backend.registry)
        await asyncio.to_thread(mosquitto_broker.restart)
        await eventually(lambda: backend.connections == 2, "reconnected")
        async with vehicle_client(mosquitto_broker) as client:
            await client.publish(vehicle.telemetry_topic, vehicle.batch(1, [1]), qos=1)
        await eventually(lambda: backend.store.count_records(VIN) == 1, "record 1 stored")

    async with vehicle_client(mosquitto_broker) as client:
        for seq in range(2, 12):
            await client.publish(vehicle.telemetry_topic, vehicle.batch(1, [seq]), qos=1)
    await asyncio.to_thread(mosquitto_broker.restart)

    async with Backend(mosquitto_broker.url, data) as returned:
        await eventually(lambda: returned.store.count_records(VIN) == 11, "queue survived")
        assert returned.store.acked(VIN, 1) == 11


async def test_killed_mosquitto_comes_back_on_the_same_port(
    mosquitto_broker: MosquittoProcess,
) -> None:
    port = mosquitto_broker.port
    mosquitto_broker.kill()
    assert not mosquitto_broker.running
    await asyncio.to_thread(mosquitto_broker.restart)
    assert (mosquitto_broker.running, mosquitto_broker.port) == (True, port)
    async with vehicle_client(mosquitto_broker) as client:
        await client.publish("vehicles/x", b"alive", qos=1)


async def test_embedded_broker_on_a_given_port(tmp_path: Path) -> None:
    async with EmbeddedBroker() as first:
        port = first.port
    async with EmbeddedBroker(port=port) as again:
        assert again.url == f"mqtt://127.0.0.1:{port}"
        async with vehicle_client(again) as client:
            await client.publish("vehicles/x", b"alive", qos=1)


@pytest.mark.parametrize(("conf", "sent"), [("repo", 2000), ("mosquitto-defaults", 1200)])
async def test_qos1_burst_queued_for_an_absent_backend_arrives_complete(
    mosquitto_binary: str, tmp_path: Path, conf: str, sent: int
) -> None:
    """With the repository's conf the whole burst waits for the backend and is acknowledged.

    With Mosquitto's defaults (max_queued_messages 1000) the same burst loses messages.
    """
    base_conf = MOSQUITTO_CONF
    if conf != "repo":
        base_conf = tmp_path / "defaults.conf"
        base_conf.write_text("allow_anonymous true\n")
    data = tmp_path / "cloud"
    vehicle = VehicleDouble(VIN)
    acks: dict[int, int] = {}
    with MosquittoProcess(
        tmp_path / "mosquitto", binary=mosquitto_binary, base_conf=base_conf
    ) as mosquitto:
        async with Backend(mosquitto.url, data) as backend:
            vehicle.register(backend.registry)
            backend_public = backend.backend_key.key.public_key()
        async with vehicle_client(mosquitto) as client:
            await client.subscribe(vehicle.topic("ack"), qos=1)
            messages = [vehicle.batch(1, [seq]) for seq in range(1, sent + 1)]
            await publish_all(client, vehicle.telemetry_topic, messages)
            async with Backend(mosquitto.url, data) as backend:
                await client.publish(vehicle.telemetry_topic, vehicle.batch(2, [1]), qos=1)
                async with asyncio.timeout(WAIT_S):
                    async for message in client.messages:
                        assert isinstance(message.payload, bytes)
                        ack = VehicleDouble.read_ack(message.payload, backend_public)
                        acks[ack.epoch] = ack.seq
                        if ack.epoch == 2:
                            break
                stored = backend.store.count_records(VIN) - 1

    if conf == "repo":
        assert stored == sent
        assert acks == {1: sent, 2: 1}
    else:
        assert 0 < stored < sent
        assert acks[1] < sent


def write_test_pki(directory: Path) -> TlsListener:
    """A CA and a server certificate for 127.0.0.1, written as PEM files."""
    now = datetime.datetime.now(datetime.UTC)

    def certificate(
        subject: str,
        key: ec.EllipticCurvePrivateKey,
        issuer: x509.Name | None,
        signer: ec.EllipticCurvePrivateKey,
        *,
        ca: bool,
    ) -> x509.Certificate:
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
        builder = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(issuer or name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(hours=1))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )
        if not ca:
            builder = builder.add_extension(
                x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                critical=False,
            )
        return builder.sign(signer, hashes.SHA256())

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = certificate("tcu-sim test CA", ca_key, None, ca_key, ca=True)
    server_key = ec.generate_private_key(ec.SECP256R1())
    server_cert = certificate("127.0.0.1", server_key, ca_cert.subject, ca_key, ca=False)
    files = TlsListener(
        cafile=directory / "ca.pem",
        certfile=directory / "server.pem",
        keyfile=directory / "server.key",
    )
    files.cafile.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    files.certfile.write_bytes(server_cert.public_bytes(serialization.Encoding.PEM))
    files.keyfile.write_bytes(
        server_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    files.keyfile.chmod(0o600)
    return files


async def test_backend_over_mqtts(mosquitto_binary: str, tmp_path: Path) -> None:
    pki = write_test_pki(tmp_path)
    vehicle = VehicleDouble(VIN)
    with MosquittoProcess(tmp_path / "mosquitto", binary=mosquitto_binary, tls=pki) as mosquitto:
        assert mosquitto.url.startswith("mqtts://127.0.0.1:")
        tls = TlsFiles(cafile=str(pki.cafile))
        async with Backend(mosquitto.url, tmp_path / "cloud", tls=tls) as backend:
            vehicle.register(backend.registry)
            context = tls.context()
            async with aiomqtt.Client(
                mosquitto.host, mosquitto.port, identifier="tcu-tls", tls_context=context
            ) as client:
                await client.subscribe(vehicle.topic("ack"), qos=1)
                await client.publish(vehicle.telemetry_topic, vehicle.batch(1, [1]), qos=1)
                _, payload = await next_payload(client)
            ack = VehicleDouble.read_ack(payload, backend.backend_key.key.public_key())
        assert (ack.epoch, ack.seq) == (1, 1)


async def test_backend_without_a_broker_fails_to_start(tmp_path: Path) -> None:
    url = f"mqtt://127.0.0.1:{free_port()}"
    backend = Backend(url, tmp_path / "cloud", backoff=(0.01, 0.05), connect_timeout=0.5)
    with pytest.raises(BrokerError, match="not connected"):
        async with backend:
            pytest.fail("started without a broker")
    assert backend.connections == 0
