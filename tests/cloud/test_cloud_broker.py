from __future__ import annotations

import socket
from pathlib import Path

import aiomqtt
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from cloud_stub.broker import (
    MOSQUITTO_CONF,
    BrokerUrl,
    EmbeddedBroker,
    MosquittoProcess,
    parse_broker_url,
)
from cloud_stub.errors import BrokerError


def test_broker_urls() -> None:
    assert parse_broker_url("mqtt://127.0.0.1") == BrokerUrl(host="127.0.0.1", port=1883, tls=False)
    assert parse_broker_url("mqtts://broker.example:9883").port == 9883
    assert parse_broker_url("mqtts://broker.example").url == "mqtts://broker.example:8883"
    for bad in ("tcp://x:1", "mqtt://:1883", "mqtt://x:99999", "mqtt://x/path", "mqtt://x:y"):
        with pytest.raises(BrokerError):
            parse_broker_url(bad)


def test_repo_conf_lifts_the_queue_limits_and_persists() -> None:
    settings = {}
    for line in MOSQUITTO_CONF.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, value = line.partition(" ")
            settings[name] = value
    assert settings["persistence"] == "true"
    for limit in ("max_queued_messages", "max_queued_bytes", "max_inflight_messages"):
        assert settings[limit] == "0"
    assert "listener" not in settings
    assert "persistence_location" not in settings


def test_generated_conf_holds_listener_and_persistence(
    mosquitto_broker: MosquittoProcess,
) -> None:
    conf = mosquitto_broker.conf_path.read_text()
    assert conf.startswith(MOSQUITTO_CONF.read_text().rstrip("\n"))
    assert f"listener {mosquitto_broker.port} 127.0.0.1" in conf
    assert f"persistence_location {mosquitto_broker.data_dir.resolve()}/" in conf


def test_mosquitto_with_a_broken_conf_reports_its_log(
    mosquitto_binary: str, tmp_path: Path
) -> None:
    broken = tmp_path / "broken.conf"
    broken.write_text("no_such_option 1\n")
    process = MosquittoProcess(tmp_path / "m", binary=mosquitto_binary, base_conf=broken)
    with pytest.raises(BrokerError, match="no_such_option"):
        process.start()
    assert not process.running


def test_mosquitto_on_a_taken_port_fails(mosquitto_binary: str, tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        process = MosquittoProcess(tmp_path / "m", binary=mosquitto_binary, port=port)
        with pytest.raises(BrokerError, match="exited during start-up"):
            process.start()


def test_missing_mosquitto_binary(tmp_path: Path) -> None:
    with pytest.raises(BrokerError, match="cannot start"):
        MosquittoProcess(tmp_path, binary=str(tmp_path / "mosquitto")).start()


async def test_embedded_broker_on_a_taken_port_fails() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        with pytest.raises(BrokerError, match="cannot listen"):
            async with EmbeddedBroker(port=taken.getsockname()[1]):
                pytest.fail("listening on a taken port")


async def test_the_embedded_broker_refuses_an_mqtt5_connect_at_once() -> None:
    """A TCU's MQTT 5 CONNECT (session expiry property): amqtt used to wait for bytes that
    never came, until the client's connect timeout; now it answers "unacceptable protocol
    version" and the client falls back to 3.1.1, which still connects."""
    properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    properties.SessionExpiryInterval = 3600
    async with EmbeddedBroker() as broker:
        v5 = aiomqtt.Client(
            broker.host,
            broker.port,
            identifier="tcu-v5",
            protocol=aiomqtt.ProtocolVersion.V5,
            clean_start=False,
            properties=properties,
            timeout=5,
        )
        with pytest.raises(aiomqtt.MqttCodeError) as refused:
            async with v5:
                pass
        async with aiomqtt.Client(broker.host, broker.port, identifier="tcu-v311") as client:
            await client.subscribe("t", qos=1)
            await client.publish("t", b"still 3.1.1", qos=1)
            message = await anext(aiter(client.messages))
    assert refused.value.rc == 132  # Unsupported protocol version, not a timeout
    assert message.payload == b"still 3.1.1"
