"""The portal model on a real SQLite file: accounts, vehicles, services and their switches."""

from __future__ import annotations

from pathlib import Path

import pytest

from cloud_stub.portal.model import Portal, User
from cloud_stub.portal.rules import Refusal
from cloud_stub.portal.view import StoreReader
from cloud_stub.service import STORE_FILE
from cloud_stub.store import Store
from tcu.telemetry.codec.schema import decode_batch
from tests.portal.conftest import PASSWORD, VIN_A, VIN_B, VIN_C, register_modules


def account_with_admin(portal: Portal, name: str, email: str) -> User:
    _, _, token = portal.create_account(name, email)
    return portal.accept_invitation(token, PASSWORD)


def code(call: object, *args: object, **kwargs: object) -> str:
    with pytest.raises(Refusal) as caught:
        call(*args, **kwargs)  # type: ignore[operator]
    return caught.value.code


def test_a_vin_is_in_one_account_until_its_owner_removes_it(portal: Portal) -> None:
    first = account_with_admin(portal, "Fjord Logistics", "anne@fjord.example")
    second = account_with_admin(portal, "Nord Bakery", "bo@nord.example")
    portal.add_vehicle(first, first.account_id, VIN_A)
    with pytest.raises(Refusal) as caught:
        portal.add_vehicle(second, second.account_id, VIN_A)
    assert caught.value.code == "vin_in_other_account"
    assert "already registered to another account" in caught.value.sentence
    assert code(portal.add_vehicle, first, first.account_id, VIN_A) == "vin_in_account"
    portal.remove_vehicle(first, first.account_id, VIN_A)
    assert portal.add_vehicle(second, second.account_id, VIN_A).account_id == second.account_id


def test_an_unknown_module_or_a_malformed_vin_is_refused(portal: Portal) -> None:
    admin = account_with_admin(portal, "Fjord", "anne@fjord.example")
    assert code(portal.add_vehicle, admin, admin.account_id, "WTCUNREGSTERED999") == (
        "unknown_module"
    )
    assert code(portal.add_vehicle, admin, admin.account_id, "short") == "bad_vin"


def test_assigning_switches_the_module_on_and_the_last_unassign_off(portal: Portal) -> None:
    admin = account_with_admin(portal, "Fjord", "anne@fjord.example")
    acc = admin.account_id
    portal.add_vehicle(admin, acc, VIN_A)
    assert code(portal.assign, admin, acc, VIN_A, "remote_lock") == "no_product_left"
    portal.buy(admin, acc, "remote_lock", 1)
    portal.buy(admin, acc, "vehicle_status", 2)
    assert portal.assign(admin, acc, VIN_A, "remote_lock") == [(VIN_A, "activate")]
    assert portal.assign(admin, acc, VIN_A, "vehicle_status") == []
    assert code(portal.assign, admin, acc, VIN_A, "vehicle_status") == "already_assigned"
    portal.add_vehicle(admin, acc, VIN_B)
    assert code(portal.assign, admin, acc, VIN_B, "remote_lock") == "no_product_left"
    assert portal.products(acc) == {"remote_lock": (1, 1), "vehicle_status": (2, 1)}
    assert portal.unassign(admin, acc, VIN_A, "vehicle_status") == []
    assert portal.unassign(admin, acc, VIN_A, "remote_lock") == [(VIN_A, "deactivate")]
    assert code(portal.unassign, admin, acc, VIN_A, "remote_lock") == "not_assigned"


def test_removing_a_vehicle_or_the_account_switches_modules_off(portal: Portal) -> None:
    admin = account_with_admin(portal, "Fjord", "anne@fjord.example")
    acc = admin.account_id
    portal.buy(admin, acc, "vehicle_status", 5)
    for vin in (VIN_A, VIN_B, VIN_C):
        portal.add_vehicle(admin, acc, vin)
    portal.assign(admin, acc, VIN_A, "vehicle_status")
    portal.assign(admin, acc, VIN_B, "vehicle_status")
    assert portal.remove_vehicle(admin, acc, VIN_C) == [], "no service: nothing to switch off"
    assert portal.remove_vehicle(admin, acc, VIN_B) == [(VIN_B, "deactivate")]
    assert portal.delete_account(admin, acc) == [(VIN_A, "deactivate")]
    assert code(portal.account, "Fjord") == "no_account"
    assert portal.session("anything") is None
    assert portal.authenticate("anne@fjord.example", PASSWORD) is None


def test_faq_10_removed_vehicles_data_stays_while_a_service_is_active(portal: Portal) -> None:
    admin = account_with_admin(portal, "Fjord", "anne@fjord.example")
    acc = admin.account_id
    portal.buy(admin, acc, "vehicle_status", 5)
    portal.add_vehicle(admin, acc, VIN_A)
    portal.add_vehicle(admin, acc, VIN_B)
    portal.assign(admin, acc, VIN_A, "vehicle_status")
    portal.assign(admin, acc, VIN_B, "vehicle_status")
    portal.remove_vehicle(admin, acc, VIN_B)
    assert [v.vin for v in portal.removed_vehicles(admin, acc)] == [VIN_B]
    assert portal.vehicle(admin, acc, VIN_B).removed
    assert portal.data_available(acc)
    portal.unassign(admin, acc, VIN_A, "vehicle_status")
    assert not portal.data_available(acc)
    assert portal.removed_vehicles(admin, acc) == []
    assert code(portal.vehicle, admin, acc, VIN_B) == "not_found"


def test_faq_11_the_administrator_hands_over_and_may_then_leave(portal: Portal) -> None:
    admin = account_with_admin(portal, "Fjord", "anne@fjord.example")
    acc = admin.account_id
    manager, token = portal.invite(admin, acc, "carl@fjord.example", "fleet_manager")
    assert code(portal.hand_over, admin, manager.id) == "invitation_pending"
    portal.accept_invitation(token, PASSWORD)
    assert code(portal.remove_user, admin, acc, admin.id) == "administrator_cannot_leave"
    assert code(portal.hand_over, portal.user(manager.id), admin.id) == "forbidden"
    new_admin = portal.hand_over(admin, manager.id)
    assert new_admin.role == "administrator"
    assert portal.user(admin.id).role == "fleet_manager"
    portal.remove_user(new_admin, acc, admin.id)
    assert [u.email for u in portal.users(new_admin, acc)] == ["carl@fjord.example"]


def test_nobody_is_invited_as_administrator_and_invitations_are_used_once(
    portal: Portal,
) -> None:
    admin = account_with_admin(portal, "Fjord", "anne@fjord.example")
    acc = admin.account_id
    assert code(portal.invite, admin, acc, "eve@fjord.example", "administrator") == (
        "role_escalation"
    )
    driver, token = portal.invite(admin, acc, "dan@fjord.example", "driver")
    assert code(portal.invite, admin, acc, "DAN@fjord.example", "driver") == "email_taken"
    assert portal.authenticate("dan@fjord.example", PASSWORD) is None, "no password yet"
    portal.accept_invitation(token, PASSWORD)
    assert code(portal.accept_invitation, token, "another password") == "bad_invitation"
    assert portal.authenticate("Dan@Fjord.example", PASSWORD) == portal.user(driver.id)
    assert portal.authenticate("dan@fjord.example", PASSWORD + "!") is None
    assert code(portal.invite, portal.user(driver.id), acc, "x@fjord.example", "driver") == (
        "forbidden"
    )


def test_sessions_are_new_tokens_and_end(portal: Portal) -> None:
    admin = account_with_admin(portal, "Fjord", "anne@fjord.example")
    token, csrf = portal.open_session(admin)
    again, csrf_again = portal.open_session(admin)
    assert token != again and csrf != csrf_again
    assert portal.session(token) == (admin, csrf)
    portal.close_session(token)
    assert portal.session(token) is None
    assert portal.session(again) == (admin, csrf_again)


def test_a_driver_sees_only_the_vans_assigned_to_them(portal: Portal) -> None:
    admin = account_with_admin(portal, "Fjord", "anne@fjord.example")
    acc = admin.account_id
    _, token = portal.invite(admin, acc, "dan@fjord.example", "driver")
    driver = portal.accept_invitation(token, PASSWORD)
    portal.add_vehicle(admin, acc, VIN_A)
    portal.add_vehicle(admin, acc, VIN_B)
    portal.assign_driver(admin, acc, VIN_A, "dan@fjord.example")
    assert [v.vin for v in portal.vehicles(driver, acc)] == [VIN_A]
    assert [v.vin for v in portal.vehicles(admin, acc)] == [VIN_A, VIN_B]
    assert code(portal.vehicle, driver, acc, VIN_B) == "not_found"
    assert code(portal.add_vehicle, driver, acc, VIN_C) == "forbidden"
    assert code(portal.check_command, driver, acc, VIN_A, "lock") == "service_not_assigned"
    portal.buy(admin, acc, "remote_lock", 1)
    portal.assign(admin, acc, VIN_A, "remote_lock")
    portal.check_command(driver, acc, VIN_A, "lock")
    assert code(portal.check_command, driver, acc, VIN_B, "lock") == "not_found"


def test_a_new_owner_sees_only_what_the_van_sent_since_it_joined(
    tmp_path: Path, data: Path, portal: Portal
) -> None:
    (double,) = register_modules(tmp_path / "other", VIN_A)  # the same VIN's key, elsewhere
    admin = account_with_admin(portal, "Fjord", "anne@fjord.example")
    other = account_with_admin(portal, "Nord", "bo@nord.example")
    reader = StoreReader(data / STORE_FILE)
    store = Store(data / STORE_FILE)
    try:
        portal.add_vehicle(admin, admin.account_id, VIN_A)
        store.add_batch(decode_batch(double.batch_payload(1, [1, 2, 3])))
        entry = portal.vehicle(admin, admin.account_id, VIN_A)
        assert reader.state(VIN_A, entry.since_record).records == 3
        portal.remove_vehicle(admin, admin.account_id, VIN_A)
        moved = portal.add_vehicle(other, other.account_id, VIN_A)
        assert reader.state(VIN_A, moved.since_record).records == 0
        store.add_batch(decode_batch(double.batch_payload(1, [4])))
        state = reader.state(VIN_A, moved.since_record)
        assert state.records == 1 and state.values
    finally:
        store.close()
        reader.close()


def test_a_session_ends_after_its_lifetime(data: Path) -> None:
    from cloud_stub.portal.model import PORTAL_FILE, SESSION_S

    register_modules(data, VIN_A)
    now = [1000.0]
    portal = Portal(
        data / PORTAL_FILE,
        is_registered=lambda vin: True,
        record_mark=lambda: 0,
        clock=lambda: now[0],
    )
    try:
        admin = account_with_admin(portal, "Fjord", "anne@fjord.example")
        token, _ = portal.open_session(admin)
        now[0] += SESSION_S - 1
        assert portal.session(token) is not None
        now[0] += 2
        assert portal.session(token) is None
    finally:
        portal.close()
