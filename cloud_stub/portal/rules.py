"""The portal's rules, each a plain function over plain values.

Theory of operation: the portal's store (`cloud_stub.portal.model`) reads rows, asks these
functions whether an operation is allowed and what it implies, then writes. A rule either
returns (a value, or nothing when the operation may go ahead) or raises `Refusal`, whose
``code`` is stable (clients and tests match on it) and whose ``sentence`` is what a person
reads. Nothing here touches a database, a clock or the network.

Roles: the ``administrator`` (exactly one per account) does everything in the account; a
``fleet_manager`` manages vehicles, their services, drivers and commands; a ``driver`` sees
and commands only the vehicles assigned to them. A vehicle's module transmits while at
least one service is assigned to it (FAQ 21); its data and the account's removed vehicles'
data are visible while at least one service is active in the account (FAQ 10).
"""

from __future__ import annotations

import re
from collections.abc import Collection
from typing import Final, Literal, TypeAlias, get_args

from cloud_stub.errors import CloudError
from tcu.telemetry.records import is_vin

__all__ = [
    "COMMAND_PRODUCTS",
    "PERMISSIONS",
    "PRODUCTS",
    "PRODUCT_TITLES",
    "ROLES",
    "Action",
    "Command",
    "Product",
    "Refusal",
    "Role",
    "Switch",
    "check_account_name",
    "check_can_command",
    "check_can_see",
    "check_email",
    "check_grantable",
    "check_handover",
    "check_password",
    "check_permitted",
    "check_product",
    "check_role",
    "check_seat",
    "check_user_removal",
    "check_vin",
    "check_vin_free",
    "data_available",
    "permitted",
    "switch_for",
]

Role: TypeAlias = Literal["administrator", "fleet_manager", "driver"]
ROLES: Final[tuple[str, ...]] = get_args(Role)

Product: TypeAlias = Literal["vehicle_status", "remote_lock", "ecell_charging", "preconditioning"]
PRODUCTS: Final[tuple[str, ...]] = get_args(Product)
PRODUCT_TITLES: Final[dict[str, str]] = {
    "vehicle_status": "vehicle status",
    "remote_lock": "remote lock",
    "ecell_charging": "eCell charging",
    "preconditioning": "preconditioning",
}

Command: TypeAlias = Literal[
    "lock",
    "unlock",
    "start_charging",
    "stop_charging",
    "start_preconditioning",
    "stop_preconditioning",
    "set_departure",
]

# Which service a remote command needs on the vehicle.
COMMAND_PRODUCTS: Final[dict[str, Product]] = {
    "lock": "remote_lock",
    "unlock": "remote_lock",
    "start_charging": "ecell_charging",
    "stop_charging": "ecell_charging",
    "start_preconditioning": "preconditioning",
    "stop_preconditioning": "preconditioning",
    "set_departure": "preconditioning",
}

Action: TypeAlias = Literal[
    "view_all_vehicles",
    "manage_vehicles",
    "manage_services",
    "buy_products",
    "manage_users",
    "manage_locations",
    "assign_drivers",
    "send_commands",
    "delete_account",
    "hand_over",
]

PERMISSIONS: Final[dict[str, frozenset[str]]] = {
    "administrator": frozenset(get_args(Action)),
    "fleet_manager": frozenset(
        {
            "view_all_vehicles",
            "manage_vehicles",
            "manage_services",
            "assign_drivers",
            "send_commands",
            "manage_locations",
        }
    ),
    "driver": frozenset({"send_commands"}),
}

Switch: TypeAlias = Literal["activate", "deactivate"]

_EMAIL: Final = re.compile(r"[A-Za-z0-9._%+-]{1,64}@[A-Za-z0-9-]{1,63}(\.[A-Za-z0-9-]{1,63})+")
_NAME: Final = re.compile(r"[^\x00-\x1f\x7f]{1,80}")
MIN_PASSWORD: Final = 10
MAX_PASSWORD: Final = 256


class Refusal(CloudError):
    """An operation the portal refuses: a stable ``code`` and a ``sentence`` for people."""

    def __init__(self, code: str, sentence: str) -> None:
        super().__init__(sentence)
        self.code = code
        self.sentence = sentence


# --- values from outside -------------------------------------------------------------------


def check_vin(vin: object) -> str:
    if not is_vin(vin):
        raise Refusal("bad_vin", f"{vin!r} is not a 17-character VIN (ISO 3779).")
    assert isinstance(vin, str)
    return vin


def check_email(email: object) -> str:
    if not isinstance(email, str) or len(email) > 254 or not _EMAIL.fullmatch(email):
        raise Refusal("bad_email", f"{email!r} is not an e-mail address.")
    return email.lower()


def check_account_name(name: object) -> str:
    if not isinstance(name, str) or not _NAME.fullmatch(name) or name != name.strip():
        raise Refusal(
            "bad_name", "A name is 1 to 80 printable characters without leading or trailing space."
        )
    return name


def check_role(role: object) -> Role:
    if role not in ROLES:
        raise Refusal("bad_role", f"{role!r} is not a role; choose one of {', '.join(ROLES)}.")
    return role  # type: ignore[return-value]


def check_product(product: object) -> Product:
    if product not in PRODUCTS:
        raise Refusal(
            "bad_product", f"{product!r} is not a product; choose one of {', '.join(PRODUCTS)}."
        )
    return product  # type: ignore[return-value]


def check_password(password: object) -> str:
    if not isinstance(password, str) or not MIN_PASSWORD <= len(password) <= MAX_PASSWORD:
        raise Refusal(
            "weak_password", f"A password has {MIN_PASSWORD} to {MAX_PASSWORD} characters."
        )
    return password


# --- who may do what -----------------------------------------------------------------------


def permitted(role: str, action: str) -> bool:
    return action in PERMISSIONS.get(role, frozenset())


def check_permitted(role: str, action: str) -> None:
    if not permitted(role, action):
        raise Refusal("forbidden", f"A {role.replace('_', ' ')} may not do this ({action}).")


def check_can_see(
    *, role: str, user_account: int, vehicle_account: int | None, assigned_to_user: bool
) -> None:
    """A vehicle of another account, or a driver's unassigned van, does not exist for them."""
    if vehicle_account != user_account or not (
        permitted(role, "view_all_vehicles") or assigned_to_user
    ):
        raise Refusal("not_found", "No such vehicle in your account.")


def check_can_command(command: str, assigned: Collection[str]) -> None:
    """A remote command needs its service assigned to the vehicle."""
    product = COMMAND_PRODUCTS.get(command)
    if product is None:
        raise Refusal(
            "bad_command",
            f"{command!r} is not a remote command; choose one of {', '.join(COMMAND_PRODUCTS)}.",
        )
    if product not in assigned:
        raise Refusal(
            "service_not_assigned",
            f"The {PRODUCT_TITLES[product]} service is not assigned to this vehicle.",
        )


# --- vehicles and services -----------------------------------------------------------------


def check_vin_free(*, holder: int | None, account: int) -> None:
    """FAQ 32: a VIN is in one account; the previous owner must remove it first."""
    if holder is None:
        return
    if holder == account:
        raise Refusal("vin_in_account", "This vehicle is already in your account.")
    raise Refusal(
        "vin_in_other_account",
        "This vehicle is already registered to another account. The previous owner must"
        " remove it from their account first; then add it again.",
    )


def check_seat(*, product: str, bought: int, in_use: int) -> None:
    """A service is assigned out of what the account bought."""
    if in_use >= bought:
        raise Refusal(
            "no_product_left",
            f"Every {PRODUCT_TITLES.get(product, product)} service the account bought is"
            f" assigned ({in_use} of {bought}); buy more first.",
        )


def switch_for(before: Collection[str], after: Collection[str]) -> Switch | None:
    """FAQ 21 and 10: the first service switches the module on; losing the last switches it off."""
    if not before and after:
        return "activate"
    if before and not after:
        return "deactivate"
    return None


def data_available(active_services_in_account: int) -> bool:
    """FAQ 10: the account's vehicle data is there while any of its services is active."""
    return active_services_in_account > 0


# --- users ---------------------------------------------------------------------------------


def check_handover(
    *, actor_role: str, actor_id: int, target_id: int, same_account: bool, target_has_login: bool
) -> None:
    """FAQ 11: the administrator hands the role to another user of the account."""
    check_permitted(actor_role, "hand_over")
    if not same_account:
        raise Refusal("not_found", "No such user in your account.")
    if target_id == actor_id:
        raise Refusal("already_administrator", "You are the administrator already.")
    if not target_has_login:
        raise Refusal(
            "invitation_pending", "The user has not accepted the invitation yet; try again later."
        )


def check_user_removal(*, target_role: str) -> None:
    """The account keeps its administrator: hand the role over before leaving."""
    if target_role == "administrator":
        raise Refusal(
            "administrator_cannot_leave",
            "The administrator cannot be removed; hand the administrator role to another user"
            " first.",
        )


def check_grantable(role: str) -> None:
    """Users are invited as fleet managers or drivers; the administrator role is handed over."""
    if role == "administrator":
        raise Refusal(
            "role_escalation",
            "Nobody becomes administrator by invitation or role change; the administrator"
            " hands the role over.",
        )
