"""The portal's accounts, users, locations, vehicles and services, in SQLite.

Theory of operation: `Portal` keeps one SQLite file (``portal.sqlite`` in the backend's data
directory, WAL mode like the registry and the store, so the CLI and a running server share
it). Each operation reads the rows it needs, asks `cloud_stub.portal.rules` whether it may go
ahead, writes in one transaction, and returns what the module must be told: a list of
``(vin, "activate" | "deactivate")`` switches. The portal sends nothing itself; the caller
carries the switches out (`cloud_stub.portal.switches`) with the backend's signed
activation and deactivation. An ``actor`` is the logged-in `User`, or ``None`` for the
backend's operator at the command line, who may do everything in the account named.

A vehicle remembers ``since_record``: the store's highest record id when it joined the
account, so an account sees only what the van sent while it belonged to it. A removed
vehicle keeps its window in ``removed`` and stays readable while the account has an active
service (FAQ 10).
"""

from __future__ import annotations

import hashlib
import os
import secrets
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Final

from cloud_stub.db import connect
from cloud_stub.portal import passwords
from cloud_stub.portal.rules import (
    ROLES,
    Refusal,
    Switch,
    check_account_name,
    check_can_command,
    check_can_see,
    check_email,
    check_grantable,
    check_handover,
    check_password,
    check_permitted,
    check_product,
    check_role,
    check_seat,
    check_user_removal,
    check_vin,
    check_vin_free,
    data_available,
    switch_for,
)

__all__ = ["PORTAL_FILE", "Account", "Portal", "User", "VehicleEntry"]

PORTAL_FILE: Final = "portal.sqlite"
SESSION_S: Final = 8 * 3600

_ROLE_LIST: Final = ", ".join(f"'{r}'" for r in ROLES)
_SCHEMA: Final = f"""
CREATE TABLE IF NOT EXISTS accounts (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    created_at REAL NOT NULL
) STRICT;
CREATE TABLE IF NOT EXISTS users (
    id INTEGER PRIMARY KEY,
    account_id INTEGER NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    email TEXT NOT NULL UNIQUE,
    role TEXT NOT NULL CHECK (role IN ({_ROLE_LIST})),
    password_hash TEXT,
    invite_hash BLOB UNIQUE
) STRICT;
CREATE TABLE IF NOT EXISTS locations (
    id INTEGER PRIMARY KEY,
    account_id INTEGER NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    UNIQUE (account_id, name)
) STRICT;
CREATE TABLE IF NOT EXISTS vehicles (
    vin TEXT PRIMARY KEY,
    account_id INTEGER NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    location_id INTEGER REFERENCES locations (id) ON DELETE SET NULL,
    since_record INTEGER NOT NULL
) STRICT;
CREATE TABLE IF NOT EXISTS removed (
    account_id INTEGER NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    vin TEXT NOT NULL,
    since_record INTEGER NOT NULL,
    until_record INTEGER NOT NULL,
    PRIMARY KEY (account_id, vin, since_record)
) STRICT;
CREATE TABLE IF NOT EXISTS products (
    account_id INTEGER NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    product TEXT NOT NULL,
    bought INTEGER NOT NULL CHECK (bought >= 0),
    PRIMARY KEY (account_id, product)
) STRICT;
CREATE TABLE IF NOT EXISTS assignments (
    vin TEXT NOT NULL REFERENCES vehicles (vin) ON DELETE CASCADE,
    product TEXT NOT NULL,
    PRIMARY KEY (vin, product)
) STRICT;
CREATE TABLE IF NOT EXISTS drivers (
    vin TEXT NOT NULL REFERENCES vehicles (vin) ON DELETE CASCADE,
    user_id INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    PRIMARY KEY (vin, user_id)
) STRICT;
CREATE TABLE IF NOT EXISTS sessions (
    token_hash BLOB PRIMARY KEY,
    user_id INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    csrf TEXT NOT NULL,
    expires_at REAL NOT NULL
) STRICT;
CREATE TABLE IF NOT EXISTS commands (
    id INTEGER PRIMARY KEY,
    vin TEXT NOT NULL,
    account_id INTEGER NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    user_email TEXT NOT NULL,
    command_id TEXT NOT NULL,
    counter INTEGER NOT NULL,
    name TEXT NOT NULL,
    argument TEXT,
    sent_at REAL NOT NULL
) STRICT;
"""


@dataclass(frozen=True, slots=True, kw_only=True)
class Account:
    id: int
    name: str


@dataclass(frozen=True, slots=True, kw_only=True)
class User:
    id: int
    account_id: int
    account: str
    email: str
    role: str
    has_login: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class VehicleEntry:
    """A vehicle as the portal knows it: its account, location, services and drivers."""

    vin: str
    account_id: int
    location: str | None
    services: tuple[str, ...]
    drivers: tuple[str, ...]
    since_record: int
    until_record: int | None = None  # set for a vehicle removed from the account

    @property
    def removed(self) -> bool:
        return self.until_record is not None


Switches = list[tuple[str, Switch]]


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8")).digest()


class Portal:
    """Accounts, users, vehicles and services in SQLite at `path`.

    ``is_registered(vin)`` tells whether the backend knows the VIN's module (its key);
    ``record_mark()`` gives the store's highest record id, where a vehicle's window starts.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        is_registered: Callable[[str], bool],
        record_mark: Callable[[], int],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._db = connect(path)
        self._db.execute("PRAGMA foreign_keys = ON")
        self._db.executescript(_SCHEMA)
        self._is_registered = is_registered
        self._record_mark = record_mark
        self._clock = clock

    def close(self) -> None:
        self._db.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise

    # --- accounts --------------------------------------------------------------------------

    def create_account(self, name: str, admin_email: str) -> tuple[Account, User, str]:
        """A new account with its administrator; returns the administrator's invitation token."""
        name = check_account_name(name)
        email = check_email(admin_email)
        with self._transaction() as db:
            if db.execute("SELECT 1 FROM accounts WHERE name = ?", (name,)).fetchone():
                raise Refusal("account_exists", f"An account named {name!r} exists already.")
            self._check_email_free(email)
            account_id = db.execute(
                "INSERT INTO accounts (name, created_at) VALUES (?, ?) RETURNING id",
                (name, self._clock()),
            ).fetchone()[0]
            user, token = self._insert_user(account_id, email, "administrator")
        return Account(id=account_id, name=name), user, token

    def account(self, name: str) -> Account:
        row = self._db.execute("SELECT id, name FROM accounts WHERE name = ?", (name,)).fetchone()
        if row is None:
            raise Refusal("no_account", f"There is no account named {name!r}.")
        return Account(id=row[0], name=row[1])

    def delete_account(self, actor: User | None, account_id: int) -> Switches:
        """FAQ 16-18: the whole account goes; every vehicle with a service is switched off."""
        self._check(actor, account_id, "delete_account")
        with self._transaction() as db:
            rows = db.execute(
                "SELECT DISTINCT a.vin FROM assignments a JOIN vehicles v ON v.vin = a.vin"
                " WHERE v.account_id = ? ORDER BY a.vin",
                (account_id,),
            ).fetchall()
            db.execute("DELETE FROM accounts WHERE id = ?", (account_id,))
        return [(vin, "deactivate") for (vin,) in rows]

    # --- users -----------------------------------------------------------------------------

    def _check_email_free(self, email: str) -> None:
        if self._db.execute("SELECT 1 FROM users WHERE email = ?", (email,)).fetchone():
            raise Refusal("email_taken", f"{email} already has a user.")

    def _insert_user(self, account_id: int, email: str, role: str) -> tuple[User, str]:
        token = secrets.token_urlsafe(24)
        user_id = self._db.execute(
            "INSERT INTO users (account_id, email, role, invite_hash) VALUES (?, ?, ?, ?)"
            " RETURNING id",
            (account_id, email, role, _digest(token)),
        ).fetchone()[0]
        return self.user(user_id), token

    def invite(
        self, actor: User | None, account_id: int, email: str, role: str
    ) -> tuple[User, str]:
        """FAQ 12: a user is invited by e-mail; the token is what the e-mail carries."""
        self._check(actor, account_id, "manage_users")
        email = check_email(email)
        check_grantable(check_role(role))
        with self._transaction():
            self._check_email_free(email)
            return self._insert_user(account_id, email, role)

    def accept_invitation(self, token: str, password: str) -> User:
        return self.accept_hashed(token, passwords.hash_password(check_password(password)))

    def accept_hashed(self, token: str, hashed: str) -> User:
        """Accept an invitation with a password hashed already (off the event loop)."""
        with self._transaction() as db:
            row = db.execute(
                "UPDATE users SET password_hash = ?, invite_hash = NULL WHERE invite_hash = ?"
                " RETURNING id",
                (hashed, _digest(token)),
            ).fetchone()
        if row is None:
            raise Refusal("bad_invitation", "This invitation is unknown or was used already.")
        return self.user(row[0])

    def user(self, user_id: int) -> User:
        row = self._db.execute(
            "SELECT u.id, u.account_id, a.name, u.email, u.role, u.password_hash IS NOT NULL"
            " FROM users u JOIN accounts a ON a.id = u.account_id WHERE u.id = ?",
            (user_id,),
        ).fetchone()
        if row is None:
            raise Refusal("not_found", "No such user in your account.")
        return _user(row)

    def users(self, actor: User | None, account_id: int) -> list[User]:
        self._check(actor, account_id, "manage_users")
        rows = self._db.execute(
            "SELECT u.id, u.account_id, a.name, u.email, u.role, u.password_hash IS NOT NULL"
            " FROM users u JOIN accounts a ON a.id = u.account_id WHERE u.account_id = ?"
            " ORDER BY u.id",
            (account_id,),
        ).fetchall()
        return [_user(row) for row in rows]

    def authenticate(self, email: str, password: str) -> User | None:
        found = self.credentials(email)
        if found is None:
            passwords.verify_nobody(password)
            return None
        return self.user(found[0]) if passwords.verify(password, found[1]) else None

    def credentials(self, email: str) -> tuple[int, str] | None:
        """The user id and password hash for an e-mail; None if unknown or not yet accepted."""
        row = self._db.execute(
            "SELECT id, password_hash FROM users WHERE email = ?", (email.lower(),)
        ).fetchone()
        return None if row is None or row[1] is None else (int(row[0]), str(row[1]))

    def remove_user(self, actor: User | None, account_id: int, user_id: int) -> None:
        self._check(actor, account_id, "manage_users")
        target = self._user_in(account_id, user_id)
        check_user_removal(target_role=target.role)
        with self._transaction() as db:
            db.execute("DELETE FROM users WHERE id = ?", (user_id,))

    def hand_over(self, actor: User, user_id: int) -> User:
        """FAQ 11: the administrator role passes to another user; the old one manages the fleet."""
        try:
            target = self.user(user_id)
        except Refusal:
            target = None
        check_handover(
            actor_role=actor.role,
            actor_id=actor.id,
            target_id=user_id,
            same_account=target is not None and target.account_id == actor.account_id,
            target_has_login=target is not None and target.has_login,
        )
        with self._transaction() as db:
            db.execute("UPDATE users SET role = 'fleet_manager' WHERE id = ?", (actor.id,))
            db.execute("UPDATE users SET role = 'administrator' WHERE id = ?", (user_id,))
        return self.user(user_id)

    def hand_over_as_operator(self, account_id: int, email: str) -> User:
        """The operator's way, for an administrator who left without handing over."""
        row = self._db.execute(
            "SELECT id FROM users WHERE account_id = ? AND role = 'administrator'", (account_id,)
        ).fetchone()
        target = self._db.execute(
            "SELECT id FROM users WHERE account_id = ? AND email = ?",
            (account_id, check_email(email)),
        ).fetchone()
        if target is None:
            raise Refusal("not_found", "No such user in your account.")
        return self.hand_over(self.user(row[0]), target[0])

    def _user_in(self, account_id: int, user_id: int) -> User:
        user = self.user(user_id)
        if user.account_id != account_id:
            raise Refusal("not_found", "No such user in your account.")
        return user

    # --- sessions --------------------------------------------------------------------------

    def open_session(self, user: User) -> tuple[str, str]:
        """A fresh session token and CSRF token; nothing a client brought is reused."""
        token, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
        now = self._clock()
        with self._transaction() as db:
            db.execute("DELETE FROM sessions WHERE expires_at < ?", (now,))
            db.execute(
                "INSERT INTO sessions (token_hash, user_id, csrf, expires_at) VALUES (?, ?, ?, ?)",
                (_digest(token), user.id, csrf, now + SESSION_S),
            )
        return token, csrf

    def session(self, token: str) -> tuple[User, str] | None:
        row = self._db.execute(
            "SELECT user_id, csrf, expires_at FROM sessions WHERE token_hash = ?",
            (_digest(token),),
        ).fetchone()
        if row is None or row[2] < self._clock():
            return None
        return self.user(row[0]), row[1]

    def close_session(self, token: str) -> None:
        self._db.execute("DELETE FROM sessions WHERE token_hash = ?", (_digest(token),))

    # --- locations -------------------------------------------------------------------------

    def add_location(self, actor: User | None, account_id: int, name: str) -> None:
        """FAQ 13: an account has several locations."""
        self._check(actor, account_id, "manage_locations")
        name = check_account_name(name)
        try:
            self._db.execute(
                "INSERT INTO locations (account_id, name) VALUES (?, ?)", (account_id, name)
            )
        except sqlite3.IntegrityError:
            raise Refusal("location_exists", f"The location {name!r} exists already.") from None

    def locations(self, account_id: int) -> list[str]:
        rows = self._db.execute(
            "SELECT name FROM locations WHERE account_id = ? ORDER BY name", (account_id,)
        ).fetchall()
        return [name for (name,) in rows]

    # --- vehicles --------------------------------------------------------------------------

    def add_vehicle(
        self, actor: User | None, account_id: int, vin: str, *, location: str | None = None
    ) -> VehicleEntry:
        self._check(actor, account_id, "manage_vehicles")
        vin = check_vin(vin)
        with self._transaction() as db:
            row = db.execute("SELECT account_id FROM vehicles WHERE vin = ?", (vin,)).fetchone()
            check_vin_free(holder=None if row is None else row[0], account=account_id)
            if not self._is_registered(vin):
                raise Refusal(
                    "unknown_module",
                    "No connectivity module with this VIN is known to the backend; check the VIN.",
                )
            location_id = self._location_id(account_id, location)
            db.execute(
                "INSERT INTO vehicles (vin, account_id, location_id, since_record)"
                " VALUES (?, ?, ?, ?)",
                (vin, account_id, location_id, self._record_mark()),
            )
        return self._entry(vin)

    def _location_id(self, account_id: int, location: str | None) -> int | None:
        if location is None:
            return None
        row = self._db.execute(
            "SELECT id FROM locations WHERE account_id = ? AND name = ?", (account_id, location)
        ).fetchone()
        if row is None:
            raise Refusal("no_location", f"The account has no location {location!r}.")
        return int(row[0])

    def remove_vehicle(self, actor: User | None, account_id: int, vin: str) -> Switches:
        """FAQ 32, 10: the VIN is free for another account; the module stops transmitting."""
        self._check(actor, account_id, "manage_vehicles")
        entry = self._owned(account_id, vin)
        with self._transaction() as db:
            db.execute(
                "INSERT OR REPLACE INTO removed (account_id, vin, since_record, until_record)"
                " VALUES (?, ?, ?, ?)",
                (account_id, vin, entry.since_record, self._record_mark()),
            )
            db.execute("DELETE FROM vehicles WHERE vin = ?", (vin,))
        switch = switch_for(entry.services, ())
        return [] if switch is None else [(vin, switch)]

    def _owned(self, account_id: int, vin: str) -> VehicleEntry:
        entry = self._find(vin)
        if entry is None or entry.account_id != account_id:
            raise Refusal("not_found", "No such vehicle in your account.")
        return entry

    def _find(self, vin: str) -> VehicleEntry | None:
        row = self._db.execute(
            "SELECT v.vin, v.account_id, l.name, v.since_record FROM vehicles v"
            " LEFT JOIN locations l ON l.id = v.location_id WHERE v.vin = ?",
            (vin,),
        ).fetchone()
        if row is None:
            return None
        services = self._db.execute(
            "SELECT product FROM assignments WHERE vin = ? ORDER BY product", (vin,)
        ).fetchall()
        drivers = self._db.execute(
            "SELECT u.email FROM drivers d JOIN users u ON u.id = d.user_id WHERE d.vin = ?"
            " ORDER BY u.email",
            (vin,),
        ).fetchall()
        return VehicleEntry(
            vin=row[0],
            account_id=row[1],
            location=row[2],
            services=tuple(p for (p,) in services),
            drivers=tuple(e for (e,) in drivers),
            since_record=row[3],
        )

    def _entry(self, vin: str) -> VehicleEntry:
        entry = self._find(vin)
        if entry is None:
            raise Refusal("not_found", "No such vehicle in your account.")
        return entry

    def vehicle(self, actor: User | None, account_id: int, vin: str) -> VehicleEntry:
        """The vehicle as `actor` may see it; another account's VIN is simply not found."""
        entry = self._find(vin) if isinstance(vin, str) else None
        if entry is None or entry.account_id != account_id:
            for removed in self.removed_vehicles(actor, account_id):
                if removed.vin == vin:
                    return removed
        self._check_sees(actor, account_id, entry)
        assert entry is not None
        return entry

    def _check_sees(self, actor: User | None, account_id: int, entry: VehicleEntry | None) -> None:
        if actor is None:
            if entry is None or entry.account_id != account_id:
                raise Refusal("not_found", "No such vehicle in your account.")
            return
        check_can_see(
            role=actor.role,
            user_account=actor.account_id,
            vehicle_account=None if entry is None else entry.account_id,
            assigned_to_user=entry is not None and actor.email in entry.drivers,
        )

    def vehicles(self, actor: User | None, account_id: int) -> list[VehicleEntry]:
        if actor is not None and actor.account_id != account_id:
            return []
        rows = self._db.execute(
            "SELECT vin FROM vehicles WHERE account_id = ? ORDER BY vin", (account_id,)
        ).fetchall()
        out = []
        for (vin,) in rows:
            entry = self._entry(vin)
            try:
                self._check_sees(actor, account_id, entry)
            except Refusal:
                continue
            out.append(entry)
        return out

    def removed_vehicles(self, actor: User | None, account_id: int) -> list[VehicleEntry]:
        """FAQ 10: removed vehicles' data, while the account has an active service."""
        if actor is not None and (
            actor.account_id != account_id or actor.role not in ("administrator", "fleet_manager")
        ):
            return []
        if not self.data_available(account_id):
            return []
        rows = self._db.execute(
            "SELECT vin, since_record, until_record FROM removed WHERE account_id = ?"
            " ORDER BY vin, since_record",
            (account_id,),
        ).fetchall()
        return [
            VehicleEntry(
                vin=vin,
                account_id=account_id,
                location=None,
                services=(),
                drivers=(),
                since_record=since,
                until_record=until,
            )
            for vin, since, until in rows
        ]

    def data_available(self, account_id: int) -> bool:
        row = self._db.execute(
            "SELECT count(*) FROM assignments a JOIN vehicles v ON v.vin = a.vin"
            " WHERE v.account_id = ?",
            (account_id,),
        ).fetchone()
        return data_available(int(row[0]))

    def assign_driver(self, actor: User | None, account_id: int, vin: str, email: str) -> None:
        self._check(actor, account_id, "assign_drivers")
        self._owned(account_id, vin)
        row = self._db.execute(
            "SELECT id, role FROM users WHERE account_id = ? AND email = ?",
            (account_id, check_email(email)),
        ).fetchone()
        if row is None:
            raise Refusal("not_found", "No such user in your account.")
        self._db.execute(
            "INSERT OR IGNORE INTO drivers (vin, user_id) VALUES (?, ?)", (vin, row[0])
        )

    # --- services --------------------------------------------------------------------------

    def buy(self, actor: User | None, account_id: int, product: str, count: int) -> int:
        """Buy `count` more of a service product; returns how many the account has bought."""
        self._check(actor, account_id, "buy_products")
        product = check_product(product)
        if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= 1_000_000:
            raise Refusal("bad_count", "Buy 1 to 1000000 at a time.")
        row = self._db.execute(
            "INSERT INTO products (account_id, product, bought) VALUES (?, ?, ?)"
            " ON CONFLICT (account_id, product) DO UPDATE SET bought = bought + excluded.bought"
            " RETURNING bought",
            (account_id, product, count),
        ).fetchone()
        return int(row[0])

    def products(self, account_id: int) -> dict[str, tuple[int, int]]:
        """Product -> (bought, assigned)."""
        rows = self._db.execute(
            "SELECT p.product, p.bought, (SELECT count(*) FROM assignments a JOIN vehicles v"
            " ON v.vin = a.vin WHERE v.account_id = p.account_id AND a.product = p.product)"
            " FROM products p WHERE p.account_id = ? ORDER BY p.product",
            (account_id,),
        ).fetchall()
        return {p: (int(b), int(u)) for p, b, u in rows}

    def assign(self, actor: User | None, account_id: int, vin: str, product: str) -> Switches:
        """FAQ 21: assigning the first service switches the module on."""
        self._check(actor, account_id, "manage_services")
        product = check_product(product)
        with self._transaction() as db:
            entry = self._owned(account_id, vin)
            if product in entry.services:
                raise Refusal("already_assigned", "This service is assigned to the vehicle.")
            bought, in_use = self.products(account_id).get(product, (0, 0))
            check_seat(product=product, bought=bought, in_use=in_use)
            db.execute("INSERT INTO assignments (vin, product) VALUES (?, ?)", (vin, product))
        switch = switch_for(entry.services, (*entry.services, product))
        return [] if switch is None else [(vin, switch)]

    def unassign(self, actor: User | None, account_id: int, vin: str, product: str) -> Switches:
        """Taking away the last service switches the module off."""
        self._check(actor, account_id, "manage_services")
        product = check_product(product)
        with self._transaction() as db:
            entry = self._owned(account_id, vin)
            if product not in entry.services:
                raise Refusal("not_assigned", "This service is not assigned to the vehicle.")
            db.execute("DELETE FROM assignments WHERE vin = ? AND product = ?", (vin, product))
        after = tuple(p for p in entry.services if p != product)
        switch = switch_for(entry.services, after)
        return [] if switch is None else [(vin, switch)]

    # --- commands --------------------------------------------------------------------------

    def check_command(self, actor: User | None, account_id: int, vin: str, name: str) -> None:
        """Whether `actor` may send `name` to `vin` (seen, permitted, service assigned)."""
        entry = self.vehicle(actor, account_id, vin)
        if entry.removed:
            raise Refusal("vehicle_removed", "The vehicle was removed from the account.")
        self._check(actor, account_id, "send_commands")
        check_can_command(name, entry.services)

    def log_command(
        self,
        *,
        account_id: int,
        vin: str,
        user_email: str,
        command_id: str,
        counter: int,
        name: str,
        argument: str | None,
    ) -> None:
        self._db.execute(
            "INSERT INTO commands (vin, account_id, user_email, command_id, counter, name,"
            " argument, sent_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (vin, account_id, user_email, command_id, counter, name, argument, self._clock()),
        )

    def commands(self, account_id: int, vin: str, limit: int = 20) -> list[dict[str, object]]:
        rows = self._db.execute(
            "SELECT user_email, command_id, counter, name, argument, sent_at FROM commands"
            " WHERE account_id = ? AND vin = ? ORDER BY id DESC LIMIT ?",
            (account_id, vin, limit),
        ).fetchall()
        keys = ("user", "command_id", "counter", "name", "argument", "sent_at")
        return [dict(zip(keys, row, strict=True)) for row in rows]

    def version(self) -> int:
        """Changes whenever anything in the portal changes (for live views)."""
        return int(self._db.execute("PRAGMA data_version").fetchone()[0]) + self._db.total_changes

    # --- helpers ---------------------------------------------------------------------------

    def _check(self, actor: User | None, account_id: int, action: str) -> None:
        if actor is None:
            return
        if actor.account_id != account_id:
            raise Refusal("not_found", "No such account.")
        check_permitted(actor.role, action)


def _user(row: tuple[int, int, str, str, str, int]) -> User:
    uid, account_id, account, email, role, has_login = row
    return User(
        id=uid,
        account_id=account_id,
        account=account,
        email=email,
        role=role,
        has_login=bool(has_login),
    )
