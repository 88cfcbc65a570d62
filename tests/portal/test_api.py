"""The portal's JSON API on a real socket, with a backend on a real broker behind it."""

from __future__ import annotations

import asyncio
import json

import aiomqtt
import httpx

from cloud_stub.keys import load_backend_key
from cloud_stub.testing import VehicleDouble
from tcu.telemetry.codec.cose import public_key_from_pem
from tests.helpers import until
from tests.portal.conftest import PASSWORD, VIN_A, VIN_B, Served, login


async def fleet(served: Served) -> None:
    """Fjord (anne, administrator) holds VIN_A with remote lock and vehicle status."""
    admin = served.account("Fjord", "anne@fjord.example")
    portal = served.portal
    portal.buy(admin, admin.account_id, "remote_lock", 2)
    portal.buy(admin, admin.account_id, "vehicle_status", 2)
    portal.add_vehicle(admin, admin.account_id, VIN_A)
    served.user(admin, "dan@fjord.example", "driver")
    served.user(admin, "fay@fjord.example", "fleet_manager")
    other = served.account("Nord", "bo@nord.example")
    served.user(other, "nils@nord.example", "driver")


async def test_login_me_and_the_openapi_document(served: Served) -> None:
    await fleet(served)
    async with served.client() as client:
        assert (await client.get("/api/me")).json()["error"]["code"] == "unauthenticated"
        response = await client.post(
            "/api/login", json={"email": "anne@fjord.example", "password": PASSWORD}
        )
        assert response.status_code == 200
        cookie = response.headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=strict" in cookie and "path=/" in cookie
        me = (await client.get("/api/me")).json()
        assert me["user"]["role"] == "administrator" and me["user"]["account"] == "Fjord"
        document = (await client.get("/openapi.json")).json()
        assert "/api/vehicles/{vin}/commands" in document["paths"]
        page = await client.get("/")
        assert "script-src 'self'" in page.headers["content-security-policy"]
        assert "http" not in page.text.replace("http-equiv", ""), "nothing from a CDN"


async def test_assigning_through_the_api_sends_the_signed_activation(served: Served) -> None:
    await fleet(served)
    key = public_key_from_pem(load_backend_key(served.data).public_key_pem)
    async with aiomqtt.Client(served.broker.host, served.broker.port) as van:
        await van.subscribe(f"vehicles/{VIN_A}/commands", qos=1)
        async with served.client() as client:
            await login(client, "anne@fjord.example")
            response = await client.post(
                f"/api/vehicles/{VIN_A}/services", json={"product": "remote_lock"}
            )
            assert response.status_code == 200, response.text
            (switch,) = response.json()["switches"]
            assert switch["switch"] == "activate" and switch["sent"]
            message = await asyncio.wait_for(anext(aiter(van.messages)), 10)
            downlink = VehicleDouble.read_downlink(bytes(message.payload), key)  # type: ignore[arg-type]
            assert (downlink.name, downlink.command_id) == ("activate", switch["command_id"])
            assert served.backend.registry.is_active(VIN_A)


async def test_a_command_goes_out_signed_and_the_vans_outcome_shows(served: Served) -> None:
    await fleet(served)
    portal = served.portal
    admin = portal.authenticate("anne@fjord.example", PASSWORD)
    assert admin is not None
    portal.assign(admin, admin.account_id, VIN_A, "remote_lock")
    served.backend.registry.activate(VIN_A)
    double = served.doubles[VIN_A]
    key = public_key_from_pem(load_backend_key(served.data).public_key_pem)
    async with aiomqtt.Client(served.broker.host, served.broker.port) as van:
        await van.subscribe(f"vehicles/{VIN_A}/commands", qos=1)
        async with served.client() as client:
            await login(client, "dan@fjord.example")
            response = await client.post(f"/api/vehicles/{VIN_A}/commands", json={"name": "lock"})
            assert response.json()["error"]["code"] == "not_found", "dan does not drive it yet"
            portal.assign_driver(admin, admin.account_id, VIN_A, "dan@fjord.example")
            response = await client.post(f"/api/vehicles/{VIN_A}/commands", json={"name": "lock"})
            assert response.status_code == 202, response.text
            sent = response.json()
            assert sent["outcomes"] == [] and sent["user"] == "dan@fjord.example"
            message = await asyncio.wait_for(anext(aiter(van.messages)), 10)
            downlink = VehicleDouble.read_downlink(bytes(message.payload), key)  # type: ignore[arg-type]
            assert (downlink.name, downlink.command_id) == ("lock", sent["command_id"])
            for outcome in ("accepted", "completed"):
                await van.publish(
                    double.status_topic,
                    double.status(downlink.command_id, downlink.counter, outcome, t_ms=5),
                    qos=1,
                )

            async def outcomes() -> list[str]:
                listed = (await client.get(f"/api/vehicles/{VIN_A}/commands")).json()
                return [o["outcome"] for o in listed[0]["outcomes"]]

            for _ in range(500):
                if await outcomes() == ["accepted", "completed"]:
                    break
                await asyncio.sleep(0.02)
            assert await outcomes() == ["accepted", "completed"]
            refused = await client.post(
                f"/api/vehicles/{VIN_A}/commands", json={"name": "start_charging"}
            )
            assert refused.status_code == 409
            assert refused.json()["error"]["code"] == "service_not_assigned"


async def test_the_faq_32_error_over_the_api(served: Served) -> None:
    await fleet(served)
    async with served.client() as client:
        await login(client, "bo@nord.example")
        response = await client.post("/api/vehicles", json={"vin": VIN_A})
        assert response.status_code == 409
        error = response.json()["error"]
        assert error["code"] == "vin_in_other_account"
        assert "already registered to another account" in error["message"]
        assert (await client.post("/api/vehicles", json={"vin": VIN_B})).status_code == 201


async def test_the_event_stream_pushes_the_vehicle_list(served: Served) -> None:
    await fleet(served)
    served.backend.registry.activate(VIN_A)
    portal = served.portal
    admin = portal.authenticate("anne@fjord.example", PASSWORD)
    assert admin is not None
    portal.assign(admin, admin.account_id, VIN_A, "vehicle_status")
    double = served.doubles[VIN_A]
    async with served.client() as client:
        await login(client, "anne@fjord.example")
        async with client.stream("GET", "/api/events") as stream:
            assert stream.headers["content-type"].startswith("text/event-stream")
            lines = stream.aiter_lines()
            first = json.loads((await anext(lines)).removeprefix("data: "))
            assert [v["vin"] for v in first["vehicles"]] == [VIN_A]
            assert first["vehicles"][0]["status"]["soc"] is None
            async with aiomqtt.Client(served.broker.host, served.broker.port) as van:
                await van.publish(double.telemetry_topic, double.batch(1, [42]), qos=1)
            async for line in lines:
                if line.startswith("data: "):
                    event = json.loads(line.removeprefix("data: "))
                    if event["vehicles"][0]["status"]["soc"] == 42.0:
                        break


async def test_a_client_that_waits_is_not_left_behind(served: Served) -> None:
    await fleet(served)
    async with served.client() as client:
        await login(client, "anne@fjord.example")
        await until("a served portal", lambda: served.server.url != "")
        response = await client.get(f"/api/vehicles/{VIN_A}")
        assert response.status_code == 200
        assert response.json()["status"] is None, "no vehicle status service: no data shown"
        assert isinstance(client, httpx.AsyncClient)
