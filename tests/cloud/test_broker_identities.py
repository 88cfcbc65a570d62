"""Each van only on its own topics: the fleet CA, mutual TLS and the ACL, on a real Mosquitto
and on the embedded amqtt broker with the fleet plugins.

Every refusal is checked next to an acceptance that differs in one thing only (the same
certificate before revocation, the same topic for its own van, a marker message that does
arrive), so a test fails if the broker lets through what it should not, and also if it
refuses everything.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import json
import ssl
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import aiomqtt
import pytest
from cryptography.hazmat.primitives import serialization

from cloud_stub.broker import BrokerHandle, EmbeddedBroker, MosquittoProcess, mqtt_answers
from cloud_stub.ca import BACKEND_CN, CaError, FleetCA
from cloud_stub.ingest import Publish
from cloud_stub.provisioning import certification, registration
from cloud_stub.service import Backend, publish_once
from tcu.can.setup import load_bus_setup
from tcu.errors import ConfigError
from tcu.runtime.backoff import Backoff
from tcu.runtime.host import Host
from tcu.runtime.mqtt import BrokerURL, TelemetryUplink
from tcu.runtime.replay import ReplayDriver
from tcu.services import VehicleConfig
from tcu.telemetry.records import Record
from tcu.telemetry.storage.certificate import (
    FLEET_CA,
    TLS_CLIENT,
    ClientCertificate,
    make_csr,
    read_client_certificate,
    request_certificate,
)
from tcu.telemetry.storage.identity import load_identity, provision
from tcu.telemetry.storage.outbox import Outbox
from tcu.vehicle import catalogue as cat
from tcu.vehicle.catalogue import SIGNAL_IDS

VAN_A = "XECELLVAN0000000A"
VAN_B = "XECELLVAN0000000B"
WAIT = 5.0
QUIET = 0.5  # how long "nothing arrives" is watched, after a later marker did arrive


@dataclass
class Fleet:
    ca: FleetCA
    broker: BrokerHandle
    dir: Path
    reload: Callable[[], None]  # make the broker read the CRL again
    protocol: str = "auto"  # what the TCU speaks to it (amqtt: MQTT 3.1.1 only)

    def van_pem(
        self, vin: str, *, start: datetime.datetime | None = None, days: float = 365
    ) -> Path:
        """A van's key and certificate issued from its own CSR, as one PEM file."""
        key, csr = make_csr(vin)
        cert = self.ca.issue_vehicle(vin, csr, start=start, days=days)
        path = self.dir / f"{vin}-{len(list(self.dir.glob(vin + '*')))}.pem"
        path.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
            + cert
        )
        return path

    def backend_pem(self) -> Path:
        return self.ca.tls_dir / "backend.pem"

    def context(self, certfile: Path | None) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(self.ca.cert_path))
        if certfile is not None:
            context.load_cert_chain(str(certfile))
        return context

    @contextlib.asynccontextmanager
    async def client(
        self, certfile: Path | None, name: str, *, persistent: bool = False
    ) -> AsyncIterator[aiomqtt.Client]:
        async with aiomqtt.Client(
            self.broker.host,
            self.broker.port,
            identifier=name,
            protocol=aiomqtt.ProtocolVersion.V311,
            clean_session=not persistent,
            tls_context=self.context(certfile),
            timeout=WAIT,
        ) as client:
            yield client


@contextlib.asynccontextmanager
async def started_fleet(
    kind: str, request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[Fleet]:
    """The fleet CA and a broker with the fleet listener: Mosquitto, or amqtt embedded."""
    ca = FleetCA(tmp_path / "backend")
    listener = ca.fleet_listener()
    (tmp_path / "certs").mkdir()
    if kind == "mosquitto":
        binary = request.getfixturevalue("mosquitto_binary")
        with MosquittoProcess(tmp_path / "mosquitto", tls=listener, binary=binary) as broker:
            yield Fleet(ca=ca, broker=broker, dir=tmp_path / "certs", reload=broker.reload)
    else:
        async with EmbeddedBroker(tls=listener) as embedded:
            # amqtt's plugin reads the CRL again whenever the file changes.
            yield Fleet(
                ca=ca,
                broker=embedded,
                dir=tmp_path / "certs",
                reload=lambda: None,
                protocol="3.1.1",
            )


@pytest.fixture(params=["mosquitto", "amqtt"])
async def fleet(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Fleet]:
    async with started_fleet(request.param, request, tmp_path) as started:
        yield started


@pytest.fixture
async def mosquitto_fleet(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Fleet]:
    async with started_fleet("mosquitto", request, tmp_path) as started:
        yield started


@pytest.fixture
async def amqtt_fleet(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Fleet]:
    async with started_fleet("amqtt", request, tmp_path) as started:
        yield started


async def collect(client: aiomqtt.Client, into: list[tuple[str, bytes]]) -> None:
    async for message in client.messages:
        assert isinstance(message.payload, bytes)
        into.append((str(message.topic), message.payload))


async def until(what: str, condition: object, timeout: float = WAIT) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():  # type: ignore[operator]
        if asyncio.get_running_loop().time() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


async def refused(fleet: Fleet, certfile: Path | None) -> bool:
    """True if the broker does not let a client with `certfile` in (TLS alert or CONNACK).

    A raw CONNECT on a TLS socket: under TLS 1.3 the broker's verdict on the client's
    certificate arrives after the client's handshake has finished, as an alert on the
    first read, which this sees at once (an MQTT client library waits for its timeout).
    """
    context = fleet.context(certfile)
    answered = await asyncio.to_thread(
        mqtt_answers, fleet.broker.host, fleet.broker.port, tls=True, context=context
    )
    return not answered


# --- reading -------------------------------------------------------------------------------


async def test_a_van_reads_nothing_of_another_van(fleet: Fleet) -> None:
    a, b = fleet.van_pem(VAN_A), fleet.van_pem(VAN_B)
    seen_a: list[tuple[str, bytes]] = []
    seen_b: list[tuple[str, bytes]] = []
    seen_backend: list[tuple[str, bytes]] = []
    async with (
        fleet.client(a, "tcu-a") as van_a,
        fleet.client(b, "tcu-b") as van_b,
        fleet.client(fleet.backend_pem(), "cloud-stub") as backend,
    ):
        # Mosquitto 2.0 grants these subscriptions (SUBACK QoS 1) and checks read access
        # on each delivery instead: what counts is that nothing arrives.
        for topic in (
            f"vehicles/{VAN_B}/telemetry",
            f"vehicles/{VAN_B}/commands",
            f"vehicles/{VAN_B}/ack",
            "vehicles/#",
            "vehicles/+/telemetry",
            "#",
        ):
            await van_a.subscribe(topic, qos=1)
        await van_b.subscribe(f"vehicles/{VAN_B}/commands", qos=1)
        await van_b.subscribe(f"vehicles/{VAN_B}/ack", qos=1)
        await backend.subscribe("vehicles/+/telemetry", qos=1)
        tasks = [
            asyncio.create_task(collect(van_a, seen_a)),
            asyncio.create_task(collect(van_b, seen_b)),
            asyncio.create_task(collect(backend, seen_backend)),
        ]
        try:
            await van_b.publish(f"vehicles/{VAN_B}/telemetry", b"position of B", qos=1)
            await backend.publish(f"vehicles/{VAN_B}/ack", b"ack for B", qos=1)
            await backend.publish(f"vehicles/{VAN_B}/commands", b"unlock B", qos=1)
            await until("B's telemetry at the backend", lambda: len(seen_backend) == 1)
            await until("B's ack and command at B", lambda: len(seen_b) == 2)
            await asyncio.sleep(QUIET)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
    assert seen_backend == [(f"vehicles/{VAN_B}/telemetry", b"position of B")]
    assert sorted(seen_b) == [
        (f"vehicles/{VAN_B}/ack", b"ack for B"),
        (f"vehicles/{VAN_B}/commands", b"unlock B"),
    ]
    assert seen_a == []


async def test_a_van_reads_its_own_commands_but_not_its_own_telemetry(fleet: Fleet) -> None:
    a = fleet.van_pem(VAN_A)
    seen_a: list[tuple[str, bytes]] = []
    async with (
        fleet.client(a, "tcu-a") as van_a,
        fleet.client(fleet.backend_pem(), "cloud-stub") as backend,
    ):
        # Mosquitto grants all four and filters each delivery; amqtt's fleet plugin refuses
        # the last two at SUBSCRIBE. Either way only the command arrives.
        for suffix in ("commands", "ack", "telemetry", "#"):
            await van_a.subscribe(f"vehicles/{VAN_A}/{suffix}", qos=1)
        task = asyncio.create_task(collect(van_a, seen_a))
        try:
            await van_a.publish(f"vehicles/{VAN_A}/telemetry", b"own telemetry", qos=1)
            await van_a.publish(f"vehicles/{VAN_A}/status", b"own status", qos=1)
            await backend.publish(f"vehicles/{VAN_A}/commands", b"lock A", qos=1)
            await until("A's command at A", lambda: len(seen_a) >= 1)
            await asyncio.sleep(QUIET)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    assert seen_a == [(f"vehicles/{VAN_A}/commands", b"lock A")]


async def test_a_van_using_another_vans_client_id_gets_none_of_its_queue(fleet: Fleet) -> None:
    a, b = fleet.van_pem(VAN_A), fleet.van_pem(VAN_B)
    async with fleet.client(a, "tcu-A", persistent=True) as van_a:
        await van_a.subscribe(f"vehicles/{VAN_A}/commands", qos=1)
    async with fleet.client(fleet.backend_pem(), "cloud-stub") as backend:
        await backend.publish(f"vehicles/{VAN_A}/commands", b"for A only", qos=1)
    seen: list[tuple[str, bytes]] = []
    with contextlib.suppress(aiomqtt.MqttError):
        async with fleet.client(b, "tcu-A", persistent=True) as impostor:
            task = asyncio.create_task(collect(impostor, seen))
            await asyncio.sleep(QUIET)
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    assert seen == []
    # ... and the session is still A's, queue included (Mosquitto: use_username_as_clientid;
    # amqtt: the session is bound to the CN that made it).
    async with fleet.client(a, "tcu-A", persistent=True) as van_a:
        task = asyncio.create_task(collect(van_a, seen))
        await until("A's queued command", lambda: len(seen) >= 1)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert seen == [(f"vehicles/{VAN_A}/commands", b"for A only")]


async def test_the_command_line_tools_have_an_identity_of_their_own(
    fleet: Fleet, tmp_path: Path
) -> None:
    """``cloud-stub command`` publishes while ``serve`` stays connected, and reads nothing."""
    a = fleet.van_pem(VAN_A)
    seen: list[tuple[str, bytes]] = []
    async with (
        Backend(fleet.broker.url, tmp_path / "serve", tls=fleet.ca.backend_tls()) as backend,
        fleet.client(a, "tcu-a") as van_a,
        fleet.client(fleet.ca.tls_dir / "cli.pem", "tool") as tool,
    ):
        await van_a.subscribe(f"vehicles/{VAN_A}/commands", qos=1)
        await tool.subscribe("vehicles/+/telemetry", qos=1)
        tool_task = asyncio.create_task(collect(tool, seen))
        task = asyncio.create_task(collect(van_a, seen))
        try:
            url, topic = fleet.broker.url, f"vehicles/{VAN_A}/commands"
            message = Publish(topic=topic, payload=b"from the CLI")
            await publish_once(url, [message], tls=fleet.ca.backend_tls("cli.pem"))
            await van_a.publish(f"vehicles/{VAN_A}/telemetry", b"telemetry", qos=1)
            await until("the command at A", lambda: len(seen) >= 1)
            await asyncio.sleep(QUIET)
        finally:
            for t in (task, tool_task):
                t.cancel()
            await asyncio.gather(task, tool_task, return_exceptions=True)
        assert backend.connections == 1
    assert seen == [(f"vehicles/{VAN_A}/commands", b"from the CLI")]


# --- writing -------------------------------------------------------------------------------


async def test_a_van_cannot_publish_in_another_vans_name(fleet: Fleet) -> None:
    a, b = fleet.van_pem(VAN_A), fleet.van_pem(VAN_B)
    seen_b: list[tuple[str, bytes]] = []
    seen_backend: list[tuple[str, bytes]] = []
    forged = [f"vehicles/{VAN_B}/{suffix}" for suffix in ("commands", "ack", "telemetry", "status")]
    attempts = 0
    async with (
        fleet.client(b, "tcu-b") as van_b,
        fleet.client(fleet.backend_pem(), "cloud-stub") as backend,
    ):
        await van_b.subscribe(f"vehicles/{VAN_B}/commands", qos=1)
        await van_b.subscribe(f"vehicles/{VAN_B}/ack", qos=1)
        await backend.subscribe("vehicles/+/telemetry", qos=1)
        await backend.subscribe("vehicles/+/status", qos=1)
        tasks = [
            asyncio.create_task(collect(van_b, seen_b)),
            asyncio.create_task(collect(backend, seen_backend)),
        ]
        try:
            for topic in forged:
                # Mosquitto 2.0.11 acknowledges the PUBLISH (QoS 1), drops the message and
                # closes the publisher's connection; hence one connection per attempt.
                with contextlib.suppress(aiomqtt.MqttError):
                    async with fleet.client(a, f"tcu-a-{attempts}") as van_a:
                        await van_a.publish(topic, b"forged by A", qos=1, timeout=2.0)
                attempts += 1
            async with fleet.client(a, "tcu-a") as van_a:
                await van_a.publish(f"vehicles/{VAN_A}/telemetry", b"marker from A", qos=1)
            await until("A's marker at the backend", lambda: len(seen_backend) >= 1)
            await asyncio.sleep(QUIET)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
    assert seen_backend == [(f"vehicles/{VAN_A}/telemetry", b"marker from A")]
    assert seen_b == []


async def test_a_van_cannot_write_its_own_commands_or_acks(fleet: Fleet) -> None:
    a = fleet.van_pem(VAN_A)
    seen: list[tuple[str, bytes]] = []
    for suffix in ("commands", "ack"):
        # Mosquitto 2.0.11 closes the connection of a refused PUBLISH: one connection each,
        # each resuming the session (a clean one would discard its subscriptions).
        with contextlib.suppress(aiomqtt.MqttError):
            async with fleet.client(a, "tcu-a", persistent=True) as van_a:
                await van_a.subscribe(f"vehicles/{VAN_A}/commands", qos=1)
                await van_a.subscribe(f"vehicles/{VAN_A}/ack", qos=1)
                task = asyncio.create_task(collect(van_a, seen))
                try:
                    await van_a.publish(f"vehicles/{VAN_A}/{suffix}", b"self-made", qos=1)
                    await asyncio.sleep(QUIET)
                finally:
                    task.cancel()
                    await asyncio.gather(task, return_exceptions=True)
    async with fleet.client(fleet.backend_pem(), "cloud-stub") as backend:
        await backend.publish(f"vehicles/{VAN_A}/commands", b"from the backend", qos=1)
    async with fleet.client(a, "tcu-a", persistent=True) as van_a:
        task = asyncio.create_task(collect(van_a, seen))
        await until("the backend's command", lambda: len(seen) >= 1)
        await asyncio.sleep(QUIET)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert seen == [(f"vehicles/{VAN_A}/commands", b"from the backend")]


# --- who gets in ---------------------------------------------------------------------------


async def test_a_valid_van_and_the_backend_get_in(fleet: Fleet) -> None:
    assert not await refused(fleet, fleet.van_pem(VAN_A))
    assert not await refused(fleet, fleet.backend_pem())


async def test_no_certificate_is_refused(fleet: Fleet) -> None:
    assert await refused(fleet, None)


async def test_an_expired_certificate_is_refused(fleet: Fleet) -> None:
    start = datetime.datetime.now(datetime.UTC) - datetime.timedelta(days=2)
    expired = fleet.van_pem(VAN_A, start=start, days=1)
    not_yet = fleet.van_pem(VAN_A, start=start + datetime.timedelta(days=3), days=1)
    assert await refused(fleet, expired)
    assert await refused(fleet, not_yet)
    assert not await refused(fleet, fleet.van_pem(VAN_A))


async def test_a_certificate_of_another_ca_is_refused(fleet: Fleet, tmp_path: Path) -> None:
    other = FleetCA(tmp_path / "elsewhere")
    key, csr = make_csr(VAN_A)
    forged = tmp_path / "forged.pem"
    forged.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        + other.issue_vehicle(VAN_A, csr)
    )
    # Same CN as the backend, from another CA: still nobody.
    impostor = tmp_path / "impostor.pem"
    impostor.write_bytes(other.issue_client(BACKEND_CN))
    assert await refused(fleet, forged)
    assert await refused(fleet, impostor)


async def test_a_revoked_certificate_is_refused_after_the_broker_rereads_the_crl(
    fleet: Fleet,
) -> None:
    a = fleet.van_pem(VAN_A)
    b = fleet.van_pem(VAN_B)
    assert not await refused(fleet, a)
    revoked = fleet.ca.revoke(cn=VAN_A)
    assert [r.cn for r in revoked] == [VAN_A]
    fleet.reload()
    await until_refused(fleet, a)
    assert not await refused(fleet, b)  # the CRL names A only


async def test_an_open_connection_outlives_the_revocation_of_its_certificate(
    fleet: Fleet,
) -> None:
    """The documented limit: revocation is checked at the handshake (docs/security.md)."""
    a, b = fleet.van_pem(VAN_A), fleet.van_pem(VAN_B)
    seen: list[tuple[str, bytes]] = []
    async with (
        fleet.client(fleet.backend_pem(), "cloud-stub") as backend,
        fleet.client(a, "tcu-a") as van_a,
    ):
        await backend.subscribe("vehicles/+/telemetry", qos=1)
        task = asyncio.create_task(collect(backend, seen))
        try:
            fleet.ca.revoke(cn=VAN_A)
            fleet.ca.revoke(cn=VAN_B)
            fleet.reload()
            # Probing with A's own certificate would take A's session over (one client id
            # per CN): B's refusal says the broker holds the CRL that names A too.
            await until_refused(fleet, b)
            await van_a.publish(f"vehicles/{VAN_A}/telemetry", b"after revocation", qos=1)
            await until("telemetry on the open connection", lambda: len(seen) >= 1)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    assert seen == [(f"vehicles/{VAN_A}/telemetry", b"after revocation")]


async def until_refused(fleet: Fleet, certfile: Path) -> None:
    """The broker rereads on SIGHUP asynchronously: wait for the refusal, bounded."""
    deadline = asyncio.get_running_loop().time() + WAIT
    while not await refused(fleet, certfile):
        if asyncio.get_running_loop().time() > deadline:
            pytest.fail(f"{certfile.name} still accepted after revocation")
        await asyncio.sleep(0.05)


def test_the_ca_refuses_what_is_not_a_vans_request(tmp_path: Path) -> None:
    ca = FleetCA(tmp_path / "backend")
    _, csr_a = make_csr(VAN_A)
    with pytest.raises(CaError, match="names CN=XECELLVAN0000000A"):
        ca.issue_vehicle(VAN_B, csr_a)
    _, backend_csr = make_csr(BACKEND_CN)
    with pytest.raises(CaError, match="not a VIN"):
        ca.issue_vehicle(BACKEND_CN, backend_csr)
    with pytest.raises(CaError, match="validity"):
        ca.issue_vehicle(VAN_A, csr_a, days=0)
    assert ca.key_path.stat().st_mode & 0o777 == 0o600
    ca.key_path.chmod(0o640)
    with pytest.raises(CaError, match="accessible by others"):
        FleetCA(tmp_path / "backend")


# --- renewal -------------------------------------------------------------------------------


def records(vin: str, seqs: range) -> list[Record]:
    return [
        Record(
            vin=vin,
            epoch=1,
            seq=seq,
            t_ms=seq * 1000,
            kind="snapshot",
            body={0: 0, SIGNAL_IDS[cat.SOC]: 50.0 + seq % 40},
        )
        for seq in seqs
    ]


@dataclass
class Van:
    keystore: Path
    first: ClientCertificate
    first_copy: Path  # the first key and certificate, kept to show they are refused later
    url: BrokerURL


def provisioned_van(fleet: Fleet, tmp_path: Path) -> Van:
    data = fleet.ca.data_dir
    keystore = tmp_path / "keystore"
    register, backend_pem = registration(data)
    provision(VAN_A, keystore, register=register, backend_pem=backend_pem)
    with pytest.raises(ConfigError, match="cannot read"):
        read_client_certificate(keystore)  # no certificate yet: provision alone makes none
    first = request_certificate(keystore, VAN_A, certification(data))
    first_copy = tmp_path / "first.pem"
    first_copy.write_bytes((keystore / TLS_CLIENT).read_bytes())
    client = keystore / TLS_CLIENT
    url = BrokerURL.parse(fleet.broker.url, ca=keystore / FLEET_CA, cert=client, key=client)
    return Van(keystore=keystore, first=first, first_copy=first_copy, url=url)


async def renew_and_revoke(fleet: Fleet, van: Van) -> ClientCertificate:
    sentinel = fleet.van_pem(VAN_B)
    second = request_certificate(van.keystore, VAN_A, certification(fleet.ca.data_dir))
    assert second.serial != van.first.serial
    fleet.ca.revoke(serial=van.first.serial)
    fleet.ca.revoke(cn=VAN_B)
    fleet.reload()
    # Not probed with A's first certificate until the CRL is in: accepted, that probe would
    # take over A's session (one client id per CN).
    await until_refused(fleet, sentinel)
    assert await refused(fleet, van.first_copy)
    return second


def uplink_for(fleet: Fleet, van: Van, outbox: Outbox) -> TelemetryUplink:
    """The van's MQTT transport, handed a host on the outbox (a TCU at rest)."""
    identity = load_identity(van.keystore)
    uplink = TelemetryUplink(
        identity.vin,
        van.url,
        protocol=fleet.protocol,  # type: ignore[arg-type]
        backoff=Backoff(base=0.05, cap=0.2),
    )
    driver = ReplayDriver()
    host = Host(
        load_bus_setup(),
        VehicleConfig(vin=identity.vin),
        clock=driver,
        transport=uplink,
        outbox=outbox,
        identity=identity,
    )
    driver.drive(host)
    return uplink


@contextlib.asynccontextmanager
async def running(uplink: TelemetryUplink) -> AsyncIterator[TelemetryUplink]:
    task = asyncio.create_task(uplink.run())
    try:
        yield uplink
    finally:
        await uplink.close()
        await asyncio.wait_for(task, WAIT)


async def test_a_renewed_certificate_keeps_the_outbox(fleet: Fleet, tmp_path: Path) -> None:
    van = provisioned_van(fleet, tmp_path)
    data = fleet.ca.data_dir
    async with Backend(fleet.broker.url, data, tls=fleet.ca.backend_tls()) as backend:
        backend.registry.activate(VAN_A)
        with Outbox(tmp_path / "outbox.sqlite", synchronous="NORMAL") as outbox:
            outbox.append(records(VAN_A, range(1, 101)))
            async with running(uplink_for(fleet, van, outbox)) as uplink:
                assert await uplink.drain(WAIT)
            # Offline: records wait in the outbox while the certificate is renewed and the
            # old one revoked.
            outbox.append(records(VAN_A, range(101, 301)))
            second = await renew_and_revoke(fleet, van)
            assert outbox.depth() == 200
            async with running(uplink_for(fleet, van, outbox)) as uplink:
                assert await uplink.drain(WAIT)
        stored = backend.store.count_records(VAN_A)
    assert stored == 300
    assert uplink.stats.connect_failures == 0
    assert read_client_certificate(van.keystore).serial == second.serial


async def test_a_running_tcu_takes_the_renewed_certificate_at_its_next_connection(
    mosquitto_fleet: Fleet, tmp_path: Path
) -> None:
    """Mosquitto only: a restarted amqtt broker forgets every session."""
    fleet = mosquitto_fleet
    broker = fleet.broker
    assert isinstance(broker, MosquittoProcess)
    van = provisioned_van(fleet, tmp_path)
    data = fleet.ca.data_dir
    async with Backend(broker.url, data, tls=fleet.ca.backend_tls()) as backend:
        backend.registry.activate(VAN_A)
        with Outbox(tmp_path / "outbox.sqlite", synchronous="NORMAL") as outbox:
            outbox.append(records(VAN_A, range(1, 101)))
            async with running(uplink_for(fleet, van, outbox)) as uplink:
                assert await uplink.drain(WAIT)
                await renew_and_revoke(fleet, van)  # while the TCU stays connected
                await asyncio.to_thread(broker.restart)  # every connection cut
                outbox.append(records(VAN_A, range(101, 301)))
                uplink.notify()
                assert await uplink.drain(3 * WAIT)
        stored = backend.store.count_records(VAN_A)
    assert stored == 300
    assert uplink.stats.connects == 2  # reconnected after the restart, with the new certificate


# --- the whole demo ------------------------------------------------------------------------


def test_the_demo_over_mutual_tls_stores_every_record(
    mosquitto_binary: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from tcu.cli.main import main

    code = main(["demo", "--broker", "mosquitto-tls", "--json"])
    report = json.loads(capsys.readouterr().out)
    assert report["broker"].startswith("mqtts://127.0.0.1:")
    assert [Path(t["trace"]).name for t in report["traces"]] == [
        "depot_night.blf",
        "city_delivery.blf",
        "cross_border.log",
    ]
    assert report["records_produced"] > 900
    assert report["records_stored"] == report["records_produced"]
    assert report["lost"] == 0
    assert report["refused"] == {}
    assert report["drained"] is True
    assert code == 0


def test_the_demo_refuses_tls_files_with_mosquitto_tls(capsys: pytest.CaptureFixture[str]) -> None:
    from tcu.cli.main import main

    assert main(["demo", "--broker", "mosquitto-tls", "--ca", "x.pem"]) == 2
    assert "makes its own CA" in capsys.readouterr().err


# --- the commands --------------------------------------------------------------------------


def test_provision_and_renew_commands(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from tcu.cli.main import main

    keystore, data = str(tmp_path / "keys"), str(tmp_path / "backend")
    args = ["--keystore", keystore, "--backend-data", data, "--json"]
    assert main(["renew", *args]) == 2
    assert "identity.json" in capsys.readouterr().err
    assert main(["provision", "--vin", VAN_A, *args, "--days", "30"]) == 0
    first = json.loads(capsys.readouterr().out)
    installed = read_client_certificate(keystore)
    assert (installed.vin, f"{installed.serial:x}") == (VAN_A, first["tls_serial"])
    assert installed.path.stat().st_mode & 0o777 == 0o600
    assert 29 < (installed.not_after - installed.not_before).days <= 30
    assert main(["renew", *args]) == 0
    renewed = json.loads(capsys.readouterr().out)
    assert renewed["previous_serial"] == first["tls_serial"]
    assert renewed["tls_serial"] != first["tls_serial"]
    assert f"{read_client_certificate(keystore).serial:x}" == renewed["tls_serial"]
    with pytest.raises(SystemExit) as exited:
        main(["renew", *args, "--days", "0"])
    assert exited.value.code == 2
    assert "--days 0: must be more than 0" in capsys.readouterr().err


def test_the_ca_certifies_registered_vans_only(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"fleet CA in .*unknown VIN"):
        request_certificate(tmp_path / "keys", VAN_A, certification(tmp_path / "backend"))


def test_pki_commands(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from cloud_stub.cli import main

    data = ["--data", str(tmp_path / "backend")]
    assert main(["pki", "init", *data]) == 0
    assert "crlfile" in capsys.readouterr().out
    assert main(["pki", "revoke", *data, VAN_A]) == 2
    assert f"no valid certificate of {VAN_A}" in capsys.readouterr().err
    assert main(["pki", "revoke", *data, "--serial", "xyz"]) == 2
    assert "not hex" in capsys.readouterr().err
    assert main(["pki", "revoke", *data, BACKEND_CN]) == 0
    assert "revoked cloud-stub" in capsys.readouterr().out
    assert main(["pki", "list", *data]) == 0
    listed = {i["role"]: i for i in json.loads(capsys.readouterr().out)}
    assert listed["backend"]["revoked_at"] is not None
    assert listed["broker"]["revoked_at"] is None
    from cryptography import x509

    crl = x509.load_pem_x509_crl((tmp_path / "backend" / "ca" / "crl.pem").read_bytes())
    assert [f"{r.serial_number:x}" for r in crl] == [listed["backend"]["serial"]]


async def test_mosquitto_refuses_tls_1_2_where_the_client_certificate_travels_in_clear(
    mosquitto_fleet: Fleet,
) -> None:
    """Mosquitto only: amqtt's listener takes TLS 1.2 (docs/security.md)."""
    fleet = mosquitto_fleet
    context = fleet.context(fleet.backend_pem())
    assert await asyncio.to_thread(
        mqtt_answers, fleet.broker.host, fleet.broker.port, tls=True, context=context
    )
    context.maximum_version = ssl.TLSVersion.TLSv1_2
    assert not await asyncio.to_thread(
        mqtt_answers, fleet.broker.host, fleet.broker.port, tls=True, context=context
    )


async def test_mosquitto_refuses_everyone_once_the_crl_is_out_of_date(
    mosquitto_fleet: Fleet, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Mosquitto only: amqtt's plugin does not look at nextUpdate (docs/security.md)."""
    fleet = mosquitto_fleet
    backend = fleet.backend_pem()
    assert not await refused(fleet, backend)
    monkeypatch.setattr("cloud_stub.ca.CRL_DAYS", -0.002)  # nextUpdate three minutes ago
    fleet.ca.refresh_crl()
    fleet.reload()
    await until_refused(fleet, backend)
    monkeypatch.undo()
    fleet.ca.refresh_crl()
    fleet.reload()
    deadline = asyncio.get_running_loop().time() + WAIT
    while await refused(fleet, backend):
        assert asyncio.get_running_loop().time() < deadline, "fresh CRL still refused"
        await asyncio.sleep(0.05)


async def test_amqtt_refuses_everyone_while_the_crl_is_damaged(amqtt_fleet: Fleet) -> None:
    fleet = amqtt_fleet
    backend = fleet.backend_pem()
    assert not await refused(fleet, backend)
    good = fleet.ca.crl_path.read_bytes()
    fleet.ca.crl_path.write_bytes(b"-----BEGIN X509 CRL-----\ngarbage\n-----END X509 CRL-----\n")
    assert await refused(fleet, backend)
    fleet.ca.crl_path.write_bytes(good)
    assert not await refused(fleet, backend)
