"""Hardening of the portal's edge: roles, accounts, CSRF, sessions, login rate, hostile JSON."""

from __future__ import annotations

import httpx
import pytest

from cloud_stub.portal.security import LoginLimiter, json_depth
from tests.portal.conftest import PASSWORD, VIN_A, VIN_C, Served, login


def code(response: httpx.Response) -> str:
    error: str = response.json()["error"]["code"]
    return error


@pytest.fixture
async def two_fleets(served: Served) -> Served:
    """Fjord: anne (administrator), fay (fleet manager), dan (driver of VIN_A); Nord: bo."""
    admin = served.account("Fjord", "anne@fjord.example")
    portal = served.portal
    portal.buy(admin, admin.account_id, "remote_lock", 5)
    portal.add_vehicle(admin, admin.account_id, VIN_A)
    served.user(admin, "fay@fjord.example", "fleet_manager")
    served.user(admin, "dan@fjord.example", "driver")
    portal.assign_driver(admin, admin.account_id, VIN_A, "dan@fjord.example")
    served.account("Nord", "bo@nord.example")
    return served


async def test_role_escalation_is_refused(two_fleets: Served) -> None:
    served = two_fleets
    fay = served.portal.authenticate("fay@fjord.example", PASSWORD)
    assert fay is not None
    async with served.client() as driver:
        await login(driver, "dan@fjord.example")
        for method, path, body in (
            ("POST", "/api/users", {"email": "x@fjord.example", "role": "fleet_manager"}),
            ("POST", "/api/products", {"product": "remote_lock", "count": 1}),
            ("POST", "/api/vehicles", {"vin": VIN_C}),
            ("POST", f"/api/vehicles/{VIN_A}/services", {"product": "remote_lock"}),
            ("POST", f"/api/users/{fay.id}/administrator", None),
            ("DELETE", "/api/account", None),
            ("GET", "/api/users", None),
        ):
            response = await driver.request(method, path, json=body)
            assert (response.status_code, code(response)) == (403, "forbidden"), path
    async with served.client() as manager:
        await login(manager, "fay@fjord.example")
        response = await manager.post(
            "/api/users", json={"email": "eve@fjord.example", "role": "administrator"}
        )
        assert (response.status_code, code(response)) == (403, "forbidden")
        response = await manager.post(f"/api/users/{fay.id}/administrator")
        assert (response.status_code, code(response)) == (403, "forbidden")
    async with served.client() as admin:
        await login(admin, "anne@fjord.example")
        response = await admin.post(
            "/api/users", json={"email": "eve@fjord.example", "role": "administrator"}
        )
        assert (response.status_code, code(response)) == (403, "role_escalation")
        response = await admin.post(
            "/api/users", json={"email": "eve@fjord.example", "role": "driver", "account_id": 2}
        )
        assert (response.status_code, code(response)) == (422, "invalid"), "no extra fields"
    assert [u.role for u in served.portal.users(None, fay.account_id)] == [
        "administrator",
        "fleet_manager",
        "driver",
    ]


async def test_another_accounts_ids_answer_404_like_ids_that_do_not_exist(
    two_fleets: Served,
) -> None:
    served = two_fleets
    portal = served.portal
    anne = portal.authenticate("anne@fjord.example", PASSWORD)
    assert anne is not None
    async with served.client() as bo:
        await login(bo, "bo@nord.example")
        absent = await bo.get("/api/vehicles/WTCUNKNWN00000000")
        for method, path, body in (
            ("GET", f"/api/vehicles/{VIN_A}", None),
            ("DELETE", f"/api/vehicles/{VIN_A}", None),
            ("POST", f"/api/vehicles/{VIN_A}/services", {"product": "remote_lock"}),
            ("DELETE", f"/api/vehicles/{VIN_A}/services/remote_lock", None),
            ("POST", f"/api/vehicles/{VIN_A}/commands", {"name": "unlock"}),
            ("GET", f"/api/vehicles/{VIN_A}/commands", None),
            ("POST", f"/api/vehicles/{VIN_A}/drivers", {"email": "bo@nord.example"}),
            ("GET", f"/api/events?vin={VIN_A}", None),
            ("DELETE", f"/api/users/{anne.id}", None),
            ("POST", f"/api/users/{anne.id}/administrator", None),
        ):
            response = await bo.request(method, path, json=body)
            assert response.status_code == 404, (method, path, response.text)
            assert code(response) == "not_found"
        assert (
            absent.status_code == 404
            and absent.json() == (await bo.get(f"/api/vehicles/{VIN_A}")).json()
        ), "another account's VIN reads like no VIN at all"
        assert (await bo.get("/api/vehicles")).json() == []
    assert [v.vin for v in portal.vehicles(None, anne.account_id)] == [VIN_A]
    assert portal.user(anne.id).role == "administrator"
    async with served.client() as dan:
        await login(dan, "dan@fjord.example")
        portal.add_vehicle(anne, anne.account_id, VIN_C)
        assert (await dan.get(f"/api/vehicles/{VIN_C}")).status_code == 404, "not dan's van"
        assert [v["vin"] for v in (await dan.get("/api/vehicles")).json()] == [VIN_A]


async def test_state_changes_need_the_sessions_csrf_token_and_our_origin(
    two_fleets: Served,
) -> None:
    served = two_fleets
    async with served.client() as other:
        other_csrf = await login(other, "bo@nord.example")
    async with served.client() as client:
        csrf = await login(client, "anne@fjord.example")
        body = {"name": "Depot North"}
        for headers in ({}, {"X-CSRF-Token": "guess"}, {"X-CSRF-Token": other_csrf}):
            client.headers.pop("X-CSRF-Token", None)
            response = await client.post("/api/locations", json=body, headers=headers)
            assert (response.status_code, code(response)) == (403, "csrf"), headers
        response = await client.post(
            "/api/locations",
            json=body,
            headers={"X-CSRF-Token": csrf, "Origin": "http://evil.example"},
        )
        assert (response.status_code, code(response)) == (403, "bad_origin")
        assert (await client.get("/api/account")).json()["locations"] == []
        response = await client.post(
            "/api/locations", json=body, headers={"X-CSRF-Token": csrf, "Origin": served.url}
        )
        assert response.status_code == 201
        assert response.json()["locations"] == ["Depot North"]
        response = await client.post(
            "/api/login",
            json={"email": "anne@fjord.example", "password": PASSWORD},
            headers={"Origin": "http://evil.example"},
        )
        assert (response.status_code, code(response)) == (403, "bad_origin")


async def test_login_issues_a_new_session_whatever_cookie_came_with_it(
    two_fleets: Served,
) -> None:
    served = two_fleets
    async with served.client() as attacker:
        await login(attacker, "bo@nord.example")
        planted = attacker.cookies["portal_session"]
    async with served.client() as victim:
        victim.cookies.set("portal_session", planted)
        assert (await victim.get("/api/me")).json()["user"]["email"] == "bo@nord.example"
        response = await victim.post(
            "/api/login", json={"email": "anne@fjord.example", "password": PASSWORD}
        )
        fresh = response.cookies["portal_session"]
        assert fresh != planted
    async with served.client() as victim:
        victim.cookies.set("portal_session", fresh)
        assert (await victim.get("/api/me")).json()["user"]["email"] == "anne@fjord.example"
    async with served.client() as replay:
        replay.cookies.set("portal_session", planted)
        response = await replay.get("/api/me")
        assert (response.status_code, code(response)) == (401, "unauthenticated")
        replay.cookies.set("portal_session", "x" * 2_000)
        assert (await replay.get("/api/me")).status_code == 401
        replay.cookies.set("portal_session", "x" * 100_000)
        with pytest.raises(httpx.TransportError):
            await replay.get("/api/me")  # the HTTP parser refuses headers that large
    async with served.client() as user:
        await login(user, "anne@fjord.example")
        cookie = user.cookies["portal_session"]
        assert (await user.post("/api/logout")).status_code == 200
    async with served.client() as later:
        later.cookies.set("portal_session", cookie)
        assert (await later.get("/api/me")).status_code == 401, "logout ends it on the server"


async def test_failed_logins_are_rate_limited(two_fleets: Served) -> None:
    served = two_fleets
    async with served.client() as client:
        for _ in range(5):
            response = await client.post(
                "/api/login", json={"email": "anne@fjord.example", "password": "wrong" * 3}
            )
            assert (response.status_code, code(response)) == (401, "bad_login")
        response = await client.post(
            "/api/login", json={"email": "anne@fjord.example", "password": PASSWORD}
        )
        assert (response.status_code, code(response)) == (429, "rate_limited")
        assert 1 <= int(response.headers["retry-after"]) <= 60
        response = await client.post(
            "/api/login", json={"email": "bo@nord.example", "password": PASSWORD}
        )
        assert response.status_code == 429, "the same client address is limited too"
        assert "portal_session" not in client.cookies


def test_the_limiter_forgets_failures_after_its_window() -> None:
    now = [0.0]
    limiter = LoginLimiter(max_failures=3, window_s=60.0, clock=lambda: now[0])
    for _ in range(3):
        assert limiter.retry_after("k") == 0
        limiter.failed("k")
    assert limiter.retry_after("k") == pytest.approx(60.0)
    assert limiter.retry_after("other") == 0
    now[0] = 30.0
    assert limiter.retry_after("k") == pytest.approx(30.0)
    now[0] = 60.5
    assert limiter.retry_after("k") == 0
    limiter.failed("k")
    limiter.succeeded("k")
    assert limiter.retry_after("k") == 0


async def test_hostile_json_is_refused_and_the_server_stays_up(two_fleets: Served) -> None:
    served = two_fleets
    async with served.client() as client:
        await login(client, "anne@fjord.example")
        huge = b'{"vin": "' + b"A" * 200_000 + b'"}'
        response = await client.post(
            "/api/vehicles", content=huge, headers={"Content-Type": "application/json"}
        )
        assert (response.status_code, code(response)) == (413, "body_too_large")

        async def chunks():  # type: ignore[no-untyped-def]
            for _ in range(20):
                yield b" " * 10_000

        response = await client.post(
            "/api/vehicles", content=chunks(), headers={"Content-Type": "application/json"}
        )
        assert (response.status_code, code(response)) == (413, "body_too_large"), "no length"
        deep = b"[" * 20_000 + b"]" * 20_000
        response = await client.post(
            "/api/vehicles", content=deep, headers={"Content-Type": "application/json"}
        )
        assert (response.status_code, code(response)) == (400, "too_deep")
        for body, where in (
            (b'{"vin": 12345}', "vin"),
            (b'{"vin": ["' + VIN_C.encode() + b'"]}', "vin"),
            (b'{"vin": null}', "vin"),
            (b"[]", "body"),
            (b'"' + VIN_C.encode() + b'"', "body"),
            (b'{"vin": "' + VIN_C.encode() + b'"', "body"),
            (b'{"vin": "' + VIN_C.encode() + b'", "vin": 1}', "vin"),
        ):
            response = await client.post(
                "/api/vehicles", content=body, headers={"Content-Type": "application/json"}
            )
            assert (response.status_code, code(response)) == (422, "invalid"), body[:40]
            assert where in response.json()["error"]["message"]
        response = await client.post(
            "/api/vehicles",
            content=b"\xff\xfe not json",
            headers={"Content-Type": "application/json"},
        )
        assert (response.status_code, code(response)) == (400, "malformed")
        for body in (
            {"product": "remote_lock", "count": "5"},
            {"product": "remote_lock", "count": 5.0},
            {"product": "remote_lock", "count": True},
            {"product": "remote_lock", "count": 10**30},
            {"product": "remote_lock", "count": 0},
            {"product": "everything", "count": 1},
        ):
            response = await client.post("/api/products", json=body)
            assert (response.status_code, code(response)) == (422, "invalid"), body
        response = await client.post(
            "/api/products",
            content=b'{"product": "remote_lock", "count": NaN}',
            headers={"Content-Type": "application/json"},
        )
        assert response.status_code == 422
        assert (await client.get("/api/products")).json()[1] == {
            "product": "remote_lock",
            "bought": 5,
            "assigned": 0,
        }
        assert (await client.get("/api/me")).status_code == 200


def test_json_depth_counts_brackets_outside_strings() -> None:
    assert json_depth(b"{}") == 1
    assert json_depth(b'{"a": [[1], {"b": 2}]}') == 3
    assert json_depth(b'{"a": "[[[[[[\\"[[["}') == 1
    assert json_depth(b"1") == 0
