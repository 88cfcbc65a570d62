"""The portal's ``cloud-stub`` subcommands: ``account``, ``user``, ``vehicle``, ``service``.

The operator of the backend runs them against ``--data DIR``; they act for the account
named with ``--account``. A switch the portal decides (the first service assigned, the
last one taken away, a vehicle or an account removed) is carried out like ``cloud-stub
activate``/``deactivate``: the registry flag, and with ``--broker`` the signed command to
the vehicle. A refusal prints ``error: <sentence> [code]`` and exits 2.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from typing import Any

from cloud_stub.portal.model import Portal
from cloud_stub.portal.rules import PRODUCTS, ROLES, Refusal
from cloud_stub.portal.server import open_portal
from cloud_stub.registry import Registry

__all__ = ["register"]

SendSwitch = Callable[[argparse.Namespace, Registry, str, str], str]
AddBroker = Callable[[argparse.ArgumentParser], None]


def register(
    sub: Any, common: argparse.ArgumentParser, *, broker_options: AddBroker, send: SendSwitch
) -> None:
    """Add the portal's subcommands; `send` publishes a switch to a vehicle with --broker."""

    def parser(group: Any, name: str, help_text: str, handler: Callable[..., int]) -> Any:
        p = group.add_parser(name, parents=[common], help=help_text)
        p.set_defaults(handler=lambda args: _run(args, handler, send))
        return p

    account = sub.add_parser("account", help="portal accounts (companies)")
    accounts = account.add_subparsers(dest="action", required=True, metavar="ACTION")
    p = parser(accounts, "create", "create an account and its administrator", _account_create)
    p.add_argument("name")
    p.add_argument("--admin", required=True, metavar="EMAIL", help="the administrator's e-mail")
    p.add_argument(
        "--password-stdin",
        action="store_true",
        help="read the administrator's password from standard input (else print an invitation)",
    )
    p = parser(
        accounts, "delete", "delete an account; its vehicles stop transmitting", _account_delete
    )
    p.add_argument("name")
    broker_options(p)
    p = parser(accounts, "show", "print an account's users, vehicles and services", _account_show)
    p.add_argument("name")

    user = sub.add_parser("user", help="portal users")
    users = user.add_subparsers(dest="action", required=True, metavar="ACTION")
    p = parser(users, "invite", "invite a user by e-mail (prints the invitation token)", _invite)
    p.add_argument("email")
    p.add_argument("--account", required=True)
    p.add_argument("--role", required=True, choices=[r for r in ROLES if r != "administrator"])
    p = parser(users, "handover", "make this user the account's administrator (FAQ 11)", _handover)
    p.add_argument("email")
    p.add_argument("--account", required=True)

    vehicle = sub.add_parser("vehicle", help="vehicles of an account")
    vehicles = vehicle.add_subparsers(dest="action", required=True, metavar="ACTION")
    p = parser(vehicles, "add", "add a vehicle by VIN to an account", _vehicle_add)
    p.add_argument("vin")
    p.add_argument("--account", required=True)
    p.add_argument("--location")
    p = parser(vehicles, "remove", "remove a vehicle; it stops transmitting", _vehicle_remove)
    p.add_argument("vin")
    p.add_argument("--account", required=True)
    broker_options(p)
    p = parser(vehicles, "driver", "let a user of the account drive this vehicle", _driver)
    p.add_argument("vin")
    p.add_argument("email")
    p.add_argument("--account", required=True)

    service = sub.add_parser("service", help="service products: buy, assign, unassign")
    services = service.add_subparsers(dest="action", required=True, metavar="ACTION")
    p = parser(services, "buy", "buy service products for an account", _buy)
    p.add_argument("product", choices=PRODUCTS)
    p.add_argument("--account", required=True)
    p.add_argument("--count", type=int, default=1)
    for name, handler, text in (
        ("assign", _assign, "assign a service to a vehicle (the first one activates it)"),
        ("unassign", _unassign, "take a service away (the last one deactivates it)"),
    ):
        p = parser(services, name, text, handler)
        p.add_argument("vin")
        p.add_argument("product", choices=PRODUCTS)
        p.add_argument("--account", required=True)
        broker_options(p)


def _run(args: argparse.Namespace, handler: Callable[..., int], send: SendSwitch) -> int:
    portal, reader, registry = open_portal(args.data)
    try:
        return handler(args, portal, registry, send)
    except Refusal as refusal:
        print(f"error: {refusal.sentence} [{refusal.code}]", file=sys.stderr)
        return 2
    finally:
        portal.close()
        reader.close()
        registry.close()


def _switch(
    args: argparse.Namespace,
    registry: Registry,
    send: SendSwitch,
    switches: Sequence[tuple[str, str]],
) -> None:
    for vin, what in switches:
        if what == "activate":
            registry.activate(vin)
        else:
            registry.deactivate(vin)
        state = "active" if what == "activate" else "inactive"
        if getattr(args, "broker", None) is None:
            print(
                f"warning: {vin}: {state} in the registry only; give --broker to tell the vehicle"
            )
            continue
        outcome = send(args, registry, vin, what)
        print(f"{vin}: {state}; {what} {outcome}")


def _account_create(args: argparse.Namespace, portal: Portal, *_: Any) -> int:
    account, admin, token = portal.create_account(args.name, args.admin)
    print(f"account {account.name!r} created; administrator {admin.email}")
    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\n")
        portal.accept_invitation(token, password)
        print(f"{admin.email}: password set")
    else:
        print(f"invitation token for {admin.email}: {token}")
    return 0


def _account_delete(
    args: argparse.Namespace, portal: Portal, registry: Registry, send: SendSwitch
) -> int:
    account = portal.account(args.name)
    switches = portal.delete_account(None, account.id)
    print(f"account {account.name!r} deleted")
    _switch(args, registry, send, switches)
    return 0


def _account_show(args: argparse.Namespace, portal: Portal, *_: Any) -> int:
    account = portal.account(args.name)
    print(f"account {account.name!r}")
    for u in portal.users(None, account.id):
        print(f"  user {u.email} {u.role}{'' if u.has_login else ' (invited)'}")
    for product, (bought, used) in portal.products(account.id).items():
        print(f"  product {product}: {used} of {bought} assigned")
    for v in portal.vehicles(None, account.id):
        print(f"  vehicle {v.vin} services {', '.join(v.services) or 'none'}")
    return 0


def _invite(args: argparse.Namespace, portal: Portal, *_: Any) -> int:
    account = portal.account(args.account)
    user, token = portal.invite(None, account.id, args.email, args.role)
    print(f"{user.email} invited as {user.role}; invitation token {token}")
    return 0


def _handover(args: argparse.Namespace, portal: Portal, *_: Any) -> int:
    user = portal.hand_over_as_operator(portal.account(args.account).id, args.email)
    print(f"{user.email} is now the administrator of {user.account!r}")
    return 0


def _vehicle_add(args: argparse.Namespace, portal: Portal, *_: Any) -> int:
    account = portal.account(args.account)
    entry = portal.add_vehicle(None, account.id, args.vin, location=args.location)
    print(f"{entry.vin} added to {account.name!r}; assign a service to activate its module")
    return 0


def _vehicle_remove(
    args: argparse.Namespace, portal: Portal, registry: Registry, send: SendSwitch
) -> int:
    account = portal.account(args.account)
    switches = portal.remove_vehicle(None, account.id, args.vin)
    print(f"{args.vin} removed from {account.name!r}")
    _switch(args, registry, send, switches)
    return 0


def _driver(args: argparse.Namespace, portal: Portal, *_: Any) -> int:
    account = portal.account(args.account)
    portal.assign_driver(None, account.id, args.vin, args.email)
    print(f"{args.email} drives {args.vin}")
    return 0


def _buy(args: argparse.Namespace, portal: Portal, *_: Any) -> int:
    account = portal.account(args.account)
    bought = portal.buy(None, account.id, args.product, args.count)
    print(f"{account.name!r} has bought {bought} {args.product}")
    return 0


def _assign(args: argparse.Namespace, portal: Portal, registry: Registry, send: SendSwitch) -> int:
    account = portal.account(args.account)
    switches = portal.assign(None, account.id, args.vin, args.product)
    print(f"{args.product} assigned to {args.vin}")
    _switch(args, registry, send, switches)
    return 0


def _unassign(
    args: argparse.Namespace, portal: Portal, registry: Registry, send: SendSwitch
) -> int:
    account = portal.account(args.account)
    switches = portal.unassign(None, account.id, args.vin, args.product)
    print(f"{args.product} taken from {args.vin}")
    _switch(args, registry, send, switches)
    return 0
