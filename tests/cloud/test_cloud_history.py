"""A command's history holds verified answers only: forgeries cannot write into it.

The bug: a command refused for a bad signature or for another VIN carried its unverified
command id and counter into the TCU's signed status, and the backend filed
"cmd-1 refused bad_signature" in the vehicle's history of cmd-1. Anyone who could publish
could write into a vehicle's history.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiomqtt

from cloud_stub.broker import BrokerHandle
from cloud_stub.commands import CommandBuilder, replayed, to_other_vin
from cloud_stub.ingest import Ingest
from cloud_stub.keys import load_backend_key
from cloud_stub.mailbox import Mailbox
from cloud_stub.registry import Registry
from cloud_stub.service import Backend
from cloud_stub.store import Store
from cloud_stub.testing import VehicleDouble
from tcu.events import Publish
from tcu.telemetry.codec.cose import generate_key
from tcu.telemetry.downlink import DownlinkPart
from tests.helpers import until

VIN = "WV1ZZZ7HZLH000001"
OTHER_VIN = "WV1ZZZ7HZLH000002"
NOW = 1_767_225_600
WAIT_S = 30.0


async def test_forged_commands_reusing_a_genuine_id_leave_its_history_unchanged(
    broker: BrokerHandle, tmp_path: Path
) -> None:
    vehicle = VehicleDouble(VIN)
    async with Backend(broker.url, tmp_path / "cloud", clock=lambda: NOW) as backend:
        vehicle.register(backend.registry)
        VehicleDouble(OTHER_VIN).register(backend.registry)
        tcu_part = DownlinkPart(
            vin=VIN,
            backend_key=backend.backend_key.key.public_key(),
            vehicle_key=vehicle.key,
            origin_epoch=NOW,
        )
        store = backend.store
        async with (
            aiomqtt.Client(
                broker.host, broker.port, identifier=f"tcu-{VIN}", clean_session=False
            ) as tcu,
            aiomqtt.Client(broker.host, broker.port, identifier="anyone") as attacker,
        ):
            await tcu.subscribe(f"vehicles/{VIN}/commands", qos=1)

            async def the_tcu() -> None:
                """The TCU's downlink part answers every message on its commands topic."""
                async for message in tcu.messages:
                    assert isinstance(message.payload, bytes)
                    for action in tcu_part.receive(message.payload, 10.0):
                        if isinstance(action, Publish):
                            await tcu.publish(vehicle.status_topic, action.payload, qos=1)

            answering = asyncio.create_task(the_tcu())
            try:
                genuine = await backend.send_command(VIN, "lock")
                await until("the genuine answer", lambda: bool(store.statuses(VIN)), WAIT_S)
                history = store.statuses(VIN)

                downlink = genuine.downlink
                forged = backend.commands.sign(downlink, key=generate_key("EdDSA"))
                for_other = backend.commands.build(OTHER_VIN, "unlock", now_epoch=NOW)
                assert for_other.downlink.command_id == downlink.command_id
                for attack in (
                    forged,
                    to_other_vin(for_other, VIN, backend.commands),
                    replayed(genuine),
                ):
                    await attacker.publish(attack.topic, attack.payload, qos=1)
                await until(
                    "three refusals", lambda: backend.stats().downlink_refusals == 3, WAIT_S
                )
            finally:
                answering.cancel()
        refusals = store.downlink_refusals(VIN)
        after = store.statuses(VIN)

    assert [(s.command_id, s.outcome) for s in history] == [("cmd-1", "accepted")]
    assert after == history
    assert sorted((s.reason, s.command_id, s.counter) for s in refusals) == [
        ("bad_signature", "", 0),
        ("replayed", "cmd-1", 1),  # verified by the vehicle, but cmd-1 was answered already
        ("wrong_vin", "", 0),
    ]
    assert dict(tcu_part.refused) == {"bad_signature": 1, "wrong_vin": 1, "replayed": 1}


def test_claims_an_unverified_refusal_makes_stay_out_of_every_history(tmp_path: Path) -> None:
    """A TCU of the old kind still named the forged id: the backend files none of it."""
    vehicle = VehicleDouble(VIN)
    with Registry(tmp_path / "r.sqlite") as registry, Store(tmp_path / "s.sqlite") as store:
        vehicle.register(registry)
        ingest = Ingest(registry, store, backend_key=load_backend_key(tmp_path / "backend"))
        genuine = vehicle.status("cmd-3", 3, "completed", t_ms=100)
        claims = [
            vehicle.status("cmd-3", 3, "refused", reason="bad_signature", t_ms=200),
            vehicle.status("cmd-3", 3, "refused", reason="wrong_vin", t_ms=300),
            vehicle.status("cmd-3", 3, "refused", reason="malformed", t_ms=400),
            vehicle.status("cmd-3", 3, "refused", reason="expired", t_ms=500),
        ]
        ingest.receive(vehicle.status_topic, genuine)
        for claim in claims:
            assert ingest.receive(vehicle.status_topic, claim) == []
        ingest.receive(vehicle.status_topic, claims[0])

        history = [(s.command_id, s.outcome, s.reason) for s in store.statuses(VIN)]
        logged = [(s.reason, s.command_id) for s in store.downlink_refusals(VIN)]
        stats = ingest.stats()

    assert history == [("cmd-3", "completed", None)]
    assert logged == [
        ("bad_signature", "cmd-3"),
        ("wrong_vin", "cmd-3"),
        ("malformed", "cmd-3"),
        ("expired", "cmd-3"),
    ]
    assert (stats.statuses, stats.downlink_refusals, stats.status_duplicates) == (1, 4, 1)


def test_the_first_answer_to_a_verified_command_is_its_history(tmp_path: Path) -> None:
    vehicle = VehicleDouble(VIN)
    with Registry(tmp_path / "r.sqlite") as registry, Store(tmp_path / "s.sqlite") as store:
        vehicle.register(registry)
        ingest = Ingest(registry, store, backend_key=load_backend_key(tmp_path / "backend"))
        ingest.receive(
            vehicle.status_topic, vehicle.status("cmd-4", 4, "refused", reason="expired")
        )
        ingest.receive(vehicle.status_topic, vehicle.status("", 0, "refused", reason="malformed"))
        history = [(s.command_id, s.reason) for s in store.statuses(VIN)]
        logged = [(s.command_id, s.reason) for s in store.downlink_refusals(VIN)]

    assert history == [("cmd-4", "expired")]
    assert logged == [("", "malformed")]


def test_with_a_mailbox_a_refusal_is_history_only_for_a_command_issued_here(
    tmp_path: Path,
) -> None:
    vehicle = VehicleDouble(VIN)
    with (
        Registry(tmp_path / "r.sqlite") as registry,
        Store(tmp_path / "s.sqlite") as store,
        Mailbox(tmp_path / "m.sqlite") as mailbox,
    ):
        vehicle.register(registry)
        key = load_backend_key(tmp_path / "backend")
        ingest = Ingest(registry, store, backend_key=key, mailbox=mailbox, clock=lambda: NOW)
        issued = CommandBuilder(registry, key).build(VIN, "lock", now_epoch=NOW)
        mailbox.post(issued, now=NOW)
        for status in (
            vehicle.status("cmd-1", 1, "refused", reason="expired", t_ms=1),  # issued here
            vehicle.status("cmd-7", 7, "refused", reason="expired", t_ms=2),  # never issued
            vehicle.status("cmd-8", 8, "accepted", t_ms=3),  # its signature was verified
        ):
            ingest.receive(vehicle.status_topic, status)
        history = [(s.command_id, s.outcome) for s in store.statuses(VIN)]
        logged = [s.command_id for s in store.downlink_refusals(VIN)]
        states = [p.state for p in mailbox.pending(VIN)]

    assert history == [("cmd-1", "refused"), ("cmd-8", "accepted")]
    assert logged == ["cmd-7"]
    assert states == ["answered"]
