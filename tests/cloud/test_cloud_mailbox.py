"""Downlinks waiting for a vehicle that has not connected yet (`cloud_stub.mailbox`).

The bug these reproduce: ``cloud-stub activate VIN --broker URL`` before the TCU's first
connection published the activation to no one (no session existed yet), and the README's
flow stored nothing.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import aiomqtt
import pytest

from cloud_stub.broker import BrokerHandle
from cloud_stub.commands import SignedDownlink
from cloud_stub.ingest import Publish
from cloud_stub.mailbox import Mailbox
from cloud_stub.service import Backend
from cloud_stub.testing import VehicleDouble
from tcu.telemetry.codec.cose import VerifyKey
from tcu.telemetry.codec.schema import DownlinkMessage

VIN = "WV1ZZZ7HZLH000001"
TOPIC = f"vehicles/{VIN}/commands"
NOW = 1_767_225_600
WAIT_S = 30.0


def post(box: Mailbox, counter: int, *, now: float = NOW, validity: int = 300) -> list[Publish]:
    downlink = DownlinkMessage(
        vin=VIN,
        command_id=f"cmd-{counter}",
        counter=counter,
        issued_at=NOW,
        expires_at=int(now) + validity,
        name="lock",
    )
    signed = SignedDownlink(downlink=downlink, topic=TOPIC, payload=f"signed-{counter}".encode())
    return box.post(signed, now=now)


def shown(publishes: list[Publish]) -> list[tuple[bytes, bool]]:
    return [(p.payload, p.retain) for p in publishes]


@pytest.fixture
def box(tmp_path: Path) -> Iterator[Mailbox]:
    with Mailbox(tmp_path / "mailbox.sqlite") as mailbox:
        yield mailbox


# --- sans-I/O ----------------------------------------------------------------------------


def test_before_the_vehicle_is_heard_the_oldest_is_retained_and_the_rest_wait(
    box: Mailbox,
) -> None:
    assert shown(post(box, 1)) == [(b"signed-1", True)]
    assert shown(post(box, 2)) == []
    assert shown(post(box, 3)) == []
    assert [(p.counter, p.state, p.retained) for p in box.pending(VIN)] == [
        (1, "waiting", True),
        (2, "waiting", False),
        (3, "waiting", False),
    ]


def test_the_first_verified_message_clears_the_retained_one_and_sends_the_rest(
    box: Mailbox,
) -> None:
    post(box, 1)
    post(box, 2)
    post(box, 3)

    assert shown(box.heard(VIN, NOW + 5)) == [
        (b"", True),
        (b"signed-2", False),
        (b"signed-3", False),
    ]
    assert shown(box.heard(VIN, NOW + 6)) == []
    assert shown(post(box, 4)) == [(b"signed-4", False)]
    assert {p.state for p in box.pending(VIN)} == {"sent"}


def test_what_expires_while_waiting_is_never_sent(box: Mailbox) -> None:
    post(box, 1, validity=10)
    post(box, 2, validity=100)
    post(box, 3, validity=20)

    # the retained head expired: the next one still valid takes its place
    assert shown(box.expire(NOW + 30)) == [(b"signed-2", True)]
    assert shown(box.expire(NOW + 200)) == [(b"", True)]
    assert [p.state for p in box.pending(VIN)] == ["expired", "expired", "expired"]
    assert shown(box.heard(VIN, NOW + 300)) == []


def test_an_answer_names_an_issued_command_and_takes_a_retained_one_off(box: Mailbox) -> None:
    post(box, 1)
    assert box.answered(VIN, "cmd-1", 1) == (True, [Publish(topic=TOPIC, payload=b"", retain=True)])
    assert box.answered(VIN, "cmd-1", 2) == (False, [])
    assert box.answered(VIN, "cmd-9", 9) == (False, [])
    assert [p.state for p in box.pending(VIN)] == ["answered"]


def test_two_processes_share_the_mailbox(tmp_path: Path) -> None:
    with Mailbox(tmp_path / "m.sqlite") as cli, Mailbox(tmp_path / "m.sqlite") as serve:
        post(cli, 1)
        assert shown(serve.heard(VIN, NOW)) == [(b"", True)]
        assert shown(post(cli, 2)) == [(b"signed-2", False)]


# --- through a real broker ---------------------------------------------------------------


async def next_command(client: aiomqtt.Client) -> bytes:
    async with asyncio.timeout(WAIT_S):
        message = await anext(aiter(client.messages))
    assert isinstance(message.payload, bytes)
    return message.payload


async def test_commands_sent_before_the_vehicle_ever_connected_reach_it(
    broker: BrokerHandle, tmp_path: Path
) -> None:
    vehicle = VehicleDouble(VIN)
    async with Backend(broker.url, tmp_path / "cloud", clock=lambda: NOW) as backend:
        vehicle.register(backend.registry, active=False)
        key: VerifyKey = backend.backend_key.key.public_key()
        await backend.activate(VIN)
        await backend.send_command(VIN, "set_departure", "06:30")

        # the TCU's first connection: a stable id and a persistent session
        async with aiomqtt.Client(
            broker.host, broker.port, identifier=f"tcu-{VIN}", clean_session=False, timeout=10
        ) as tcu:
            await tcu.subscribe(TOPIC, qos=1)
            first = VehicleDouble.read_downlink(await next_command(tcu), key)
            answer = vehicle.status(first.command_id, first.counter, "completed", t_ms=1)
            await tcu.publish(vehicle.status_topic, answer, qos=1)
            cleared = await next_command(tcu)
            second = VehicleDouble.read_downlink(await next_command(tcu), key)

        # back again later: nothing is delivered twice. (Let the broker see the DISCONNECT
        # first: amqtt taking over a session it still thinks connected can lose a delivery.)
        await asyncio.sleep(0.5)
        async with aiomqtt.Client(
            broker.host, broker.port, identifier=f"tcu-{VIN}", clean_session=False, timeout=10
        ) as tcu:
            await tcu.subscribe(TOPIC, qos=1)
            await backend.send_command(VIN, "lock")
            third = VehicleDouble.read_downlink(await next_command(tcu), key)

        states = [(p.command_id, p.state) for p in backend.mailbox.pending(VIN)]

    assert (first.name, first.counter) == ("activate", 1)
    assert cleared == b""
    assert (second.name, second.argument, second.counter) == ("set_departure", "06:30", 2)
    assert (third.name, third.counter) == ("lock", 3)
    assert states == [("cmd-1", "answered"), ("cmd-2", "sent"), ("cmd-3", "sent")]


async def test_a_command_that_expired_waiting_is_never_delivered(
    broker: BrokerHandle, tmp_path: Path
) -> None:
    clock = [float(NOW)]
    vehicle = VehicleDouble(VIN)
    async with Backend(
        broker.url, tmp_path / "cloud", clock=lambda: clock[0], validity_s=60
    ) as backend:
        vehicle.register(backend.registry, active=False)
        key: VerifyKey = backend.backend_key.key.public_key()
        await backend.activate(VIN)
        clock[0] += 61  # serve's housekeeping finds it expired within a second
        async with asyncio.timeout(WAIT_S):
            while backend.mailbox.pending(VIN)[0].state != "expired":
                await asyncio.sleep(0.05)
        await backend.send_command(VIN, "lock")

        async with aiomqtt.Client(
            broker.host, broker.port, identifier=f"tcu-{VIN}", clean_session=False, timeout=10
        ) as tcu:
            await tcu.subscribe(TOPIC, qos=1)
            first = VehicleDouble.read_downlink(await next_command(tcu), key)

    assert (first.name, first.counter) == ("lock", 2)
