"""The portal's rules as plain functions: each refusal has its code and its sentence."""

from __future__ import annotations

import pytest

from cloud_stub.portal import rules
from cloud_stub.portal.rules import Refusal


def refused(call: object, *args: object, **kwargs: object) -> Refusal:
    with pytest.raises(Refusal) as caught:
        call(*args, **kwargs)  # type: ignore[operator]
    return caught.value


def test_a_vin_of_another_account_is_refused_with_the_faq_32_sentence() -> None:
    rules.check_vin_free(holder=None, account=1)
    refusal = refused(rules.check_vin_free, holder=2, account=1)
    assert refusal.code == "vin_in_other_account"
    assert "already registered to another account" in refusal.sentence
    assert "previous owner must remove it" in refusal.sentence
    assert refused(rules.check_vin_free, holder=1, account=1).code == "vin_in_account"


def test_the_first_service_switches_on_and_the_last_one_off() -> None:
    assert rules.switch_for((), ("remote_lock",)) == "activate"
    assert rules.switch_for(("remote_lock",), ("remote_lock", "vehicle_status")) is None
    assert rules.switch_for(("remote_lock", "vehicle_status"), ("vehicle_status",)) is None
    assert rules.switch_for(("vehicle_status",), ()) == "deactivate"
    assert rules.switch_for((), ()) is None


def test_data_is_available_while_one_service_is_active() -> None:
    assert rules.data_available(1)
    assert not rules.data_available(0)


@pytest.mark.parametrize(
    ("role", "action", "allowed"),
    [
        ("administrator", "manage_users", True),
        ("administrator", "hand_over", True),
        ("fleet_manager", "manage_vehicles", True),
        ("fleet_manager", "manage_users", False),
        ("fleet_manager", "buy_products", False),
        ("fleet_manager", "hand_over", False),
        ("driver", "send_commands", True),
        ("driver", "manage_vehicles", False),
        ("driver", "view_all_vehicles", False),
        ("nobody", "send_commands", False),
    ],
)
def test_the_permission_table(role: str, action: str, allowed: bool) -> None:
    assert rules.permitted(role, action) is allowed


def test_a_driver_sees_only_assigned_vans_and_nobody_sees_another_account() -> None:
    rules.check_can_see(role="driver", user_account=1, vehicle_account=1, assigned_to_user=True)
    rules.check_can_see(
        role="fleet_manager", user_account=1, vehicle_account=1, assigned_to_user=False
    )
    for role, account, assigned in (("driver", 1, False), ("administrator", 2, False)):
        refusal = refused(
            rules.check_can_see,
            role=role,
            user_account=1,
            vehicle_account=account,
            assigned_to_user=assigned,
        )
        assert refusal.code == "not_found"


def test_a_command_needs_its_service() -> None:
    rules.check_can_command("lock", ("remote_lock",))
    assert refused(rules.check_can_command, "lock", ("vehicle_status",)).code == (
        "service_not_assigned"
    )
    assert refused(rules.check_can_command, "set_departure", ()).code == "service_not_assigned"
    assert refused(rules.check_can_command, "activate", ("remote_lock",)).code == "bad_command"


def test_seats_are_what_was_bought() -> None:
    rules.check_seat(product="remote_lock", bought=2, in_use=1)
    refusal = refused(rules.check_seat, product="remote_lock", bought=2, in_use=2)
    assert refusal.code == "no_product_left" and "2 of 2" in refusal.sentence


def test_handover_rules() -> None:
    ok = {"actor_id": 1, "target_id": 2, "same_account": True, "target_has_login": True}
    rules.check_handover(actor_role="administrator", **ok)  # type: ignore[arg-type]
    assert refused(rules.check_handover, actor_role="fleet_manager", **ok).code == "forbidden"
    assert (
        refused(rules.check_handover, actor_role="administrator", **{**ok, "target_id": 1}).code
        == "already_administrator"
    )
    assert (
        refused(
            rules.check_handover, actor_role="administrator", **{**ok, "same_account": False}
        ).code
        == "not_found"
    )
    assert (
        refused(
            rules.check_handover, actor_role="administrator", **{**ok, "target_has_login": False}
        ).code
        == "invitation_pending"
    )
    assert refused(rules.check_user_removal, target_role="administrator").code == (
        "administrator_cannot_leave"
    )
    rules.check_user_removal(target_role="driver")
    assert refused(rules.check_grantable, "administrator").code == "role_escalation"


@pytest.mark.parametrize(
    ("check", "value", "code"),
    [
        (rules.check_vin, "WTCU1234", "bad_vin"),
        (rules.check_vin, "WTCUI0000000000001", "bad_vin"),
        (rules.check_email, "not-an-email", "bad_email"),
        (rules.check_email, 42, "bad_email"),
        (rules.check_account_name, " padded", "bad_name"),
        (rules.check_account_name, "a\nb", "bad_name"),
        (rules.check_role, "root", "bad_role"),
        (rules.check_product, "teleport", "bad_product"),
        (rules.check_password, "short", "weak_password"),
    ],
)
def test_values_from_outside_are_checked(check: object, value: object, code: str) -> None:
    refusal = refused(check, value)
    assert refusal.code == code and refusal.sentence.endswith(".")


def test_every_remote_command_names_its_service_and_is_a_downlink() -> None:
    from typing import get_args

    from tcu.events import COMMAND_NAMES

    assert set(rules.COMMAND_PRODUCTS) == set(get_args(rules.Command)) == set(COMMAND_NAMES)
    assert set(rules.COMMAND_PRODUCTS.values()) <= set(rules.PRODUCTS)
