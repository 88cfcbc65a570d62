"""Fleet registry: which VIN signs with which key, whether its service is active.

Theory of operation: one SQLite table, one row per VIN, holding the vehicle's public key (PEM),
its key id, the service flag and the downlink counter. Every call reads or writes the file, so
a CLI in another process (``cloud-stub activate``) and the running backend see the same state;
WAL mode and a busy timeout let them share it. The downlink counter only grows: `next_counter`
increments and returns it in one statement. Unknown VINs and unusable registrations raise
`RegistryError`.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from typing import Final

from cloud_stub.db import SqliteFile
from cloud_stub.errors import RegistryError
from tcu.errors import ConfigError
from tcu.telemetry.codec.cose import MAX_KID_LEN, VerifyKey, public_key_from_pem
from tcu.telemetry.records import is_vin

__all__ = ["Registry", "Vehicle"]

_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS vehicles (
    vin TEXT PRIMARY KEY,
    public_key_pem BLOB NOT NULL,
    kid BLOB NOT NULL UNIQUE,
    active INTEGER NOT NULL DEFAULT 0 CHECK (active IN (0, 1)),
    downlink_counter INTEGER NOT NULL DEFAULT 0 CHECK (downlink_counter >= 0)
) STRICT;
"""
_COLUMNS: Final = "vin, public_key_pem, kid, active, downlink_counter"
_MAX_PEM: Final = 8 * 1024


@dataclass(frozen=True, slots=True, kw_only=True)
class Vehicle:
    """A registered vehicle."""

    vin: str
    public_key_pem: bytes
    kid: bytes
    active: bool
    downlink_counter: int

    def public_key(self) -> VerifyKey:
        try:
            return public_key_from_pem(self.public_key_pem)
        except ConfigError as exc:
            raise RegistryError(f"{self.vin}: {exc}") from None


class Registry(SqliteFile):
    """VIN -> public key, kid, service flag and downlink counter, in SQLite at `path`."""

    SCHEMA = _SCHEMA

    def register(self, vin: str, public_key_pem: bytes, kid: bytes) -> Vehicle:
        """Add a vehicle (inactive), or replace the key of a known one (flag and counter stay)."""
        if not is_vin(vin):
            raise RegistryError(f"{vin!r} is not a 17-character ISO 3779 VIN")
        if not isinstance(public_key_pem, bytes) or len(public_key_pem) > _MAX_PEM:
            raise RegistryError(f"{vin}: public key must be PEM bytes of at most {_MAX_PEM}")
        try:
            public_key_from_pem(public_key_pem)
        except ConfigError as exc:
            raise RegistryError(f"{vin}: {exc}") from None
        if not isinstance(kid, bytes) or not 0 < len(kid) <= MAX_KID_LEN:
            raise RegistryError(f"{vin}: kid must be 1 to {MAX_KID_LEN} bytes")
        try:
            self._db.execute(
                "INSERT INTO vehicles (vin, public_key_pem, kid) VALUES (?, ?, ?)"
                " ON CONFLICT (vin) DO UPDATE SET"
                " public_key_pem = excluded.public_key_pem, kid = excluded.kid",
                (vin, public_key_pem, kid),
            )
        except sqlite3.IntegrityError:
            raise RegistryError(f"{vin}: kid {kid.hex()} already belongs to another VIN") from None
        return self.get(vin)

    def activate(self, vin: str) -> Vehicle:
        return self._set_active(vin, True)

    def deactivate(self, vin: str) -> Vehicle:
        return self._set_active(vin, False)

    def _set_active(self, vin: str, active: bool) -> Vehicle:
        cursor = self._db.execute("UPDATE vehicles SET active = ? WHERE vin = ?", (active, vin))
        if cursor.rowcount != 1:
            raise RegistryError(f"unknown VIN {vin!r}")
        return self.get(vin)

    def get(self, vin: str) -> Vehicle:
        row = self._db.execute(f"SELECT {_COLUMNS} FROM vehicles WHERE vin = ?", (vin,)).fetchone()
        if row is None:
            raise RegistryError(f"unknown VIN {vin!r}")
        return _vehicle(row)

    def find(self, vin: str) -> Vehicle | None:
        """The vehicle, or None when the VIN is unknown."""
        row = self._db.execute(f"SELECT {_COLUMNS} FROM vehicles WHERE vin = ?", (vin,)).fetchone()
        return None if row is None else _vehicle(row)

    def is_active(self, vin: str) -> bool:
        return self.get(vin).active

    def by_kid(self, kid: bytes) -> Vehicle:
        row = self._db.execute(f"SELECT {_COLUMNS} FROM vehicles WHERE kid = ?", (kid,)).fetchone()
        if row is None:
            raise RegistryError(f"unknown kid {kid.hex()}")
        return _vehicle(row)

    def vehicles(self) -> list[Vehicle]:
        rows = self._db.execute(f"SELECT {_COLUMNS} FROM vehicles ORDER BY vin").fetchall()
        return [_vehicle(row) for row in rows]

    def next_counter(self, vin: str) -> int:
        """Increment the VIN's downlink counter and return the new value."""
        rows = self._db.execute(
            "UPDATE vehicles SET downlink_counter = downlink_counter + 1 WHERE vin = ?"
            " RETURNING downlink_counter",
            (vin,),
        ).fetchall()
        if not rows:
            raise RegistryError(f"unknown VIN {vin!r}")
        counter: int = rows[0][0]
        return counter


def _vehicle(row: tuple[str, bytes, bytes, int, int]) -> Vehicle:
    vin, pem, kid, active, counter = row
    return Vehicle(
        vin=vin, public_key_pem=pem, kid=kid, active=bool(active), downlink_counter=counter
    )
