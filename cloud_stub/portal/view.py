"""What the dashboard shows of a vehicle, folded from the records the backend stored.

Theory of operation: the backend's store keeps every verified record as CBOR, numbered by
an increasing row id. `VehicleFold` reads a vehicle's records past the last row it has
seen (within the window the account may see: ``since_record < id <= until_record``) and
folds them into a `VehicleState`: signal values from change records and snapshots (a delta
snapshot resolved against its base snapshot, so a value that changed and changed back
between them is right), the latest verdict, session and alarm per service, the last
command results, the service record, and link records (registration, PLMN, roaming
bytes). `StoreReader` keeps one fold per window and answers how far the store has grown,
so a live view recomputes only when something new arrived. Unknown or damaged bodies are
counted in ``undecodable``, never raised: the store holds what the vehicle signed.
"""

from __future__ import annotations

import math
import os
import sqlite3
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import cbor2

from cloud_stub.db import connect
from tcu.telemetry.records import BASE_SEQ, KIND_NAMES
from tcu.vehicle import catalogue as c

__all__ = ["StoreReader", "VehicleFold", "VehicleState"]

_BATCH: Final = 2000
_MAX_RESULTS: Final = 10

SIGNALS: Final[dict[str, str]] = {
    "soc": c.SOC,
    "locked": c.LOCKED,
    "bonnet_open": c.BONNET,
    "plug_connected": c.PLUG_CONNECTED,
    "plug_locked": c.PLUG_LOCKED,
    "infrastructure_connected": c.INFRA_CONNECTED,
    "infrastructure": c.INFRA_TYPE,
    "charging_status": c.CHARGING_STATUS,
    "charging_power_kw": c.CHARGING_POWER,
    "gear": c.GEAR,
    "speed_kmh": c.SPEED,
    "preconditioning_enabled": c.PRECOND_ENABLED,
    "departure_min_utc": c.DEPARTURE_TIME,
    "cabin_setpoint_c": c.CABIN_SETPOINT,
    "outside_c": c.OUTSIDE_TEMP,
    "latitude": c.LATITUDE,
    "longitude": c.LONGITUDE,
}
DOOR_NAMES: Final = {
    c.DOOR_FRONT_LEFT: "driver",
    c.DOOR_FRONT_RIGHT: "passenger",
    c.DOOR_SLIDING_LEFT: "sliding left",
    c.DOOR_SLIDING_RIGHT: "sliding right",
    c.DOOR_REAR: "rear",
}
WINDOW_NAMES: Final = {c.WINDOW_FRONT_LEFT: "driver", c.WINDOW_FRONT_RIGHT: "passenger"}
TYRE_NAMES: Final = {
    c.TYRE_FRONT_LEFT: "front left",
    c.TYRE_FRONT_RIGHT: "front right",
    c.TYRE_REAR_LEFT: "rear left",
    c.TYRE_REAR_RIGHT: "rear right",
}


@dataclass(slots=True)
class VehicleState:
    """The folded state of one vehicle within one window of records."""

    values: dict[str, Any] = field(default_factory=dict)
    verdicts: dict[str, dict[str, Any]] = field(default_factory=dict)
    sessions: dict[str, dict[str, Any]] = field(default_factory=dict)
    alarms: list[dict[str, Any]] = field(default_factory=list)
    results: list[dict[str, Any]] = field(default_factory=list)
    service: dict[str, Any] | None = None
    link: dict[str, Any] | None = None
    records: int = 0
    undecodable: int = 0
    last_epoch: int | None = None
    last_t_ms: int | None = None
    last_seen: float | None = None

    def as_json(self) -> dict[str, Any]:
        v = self.values

        def get(path: str) -> Any:
            value = v.get(path)
            return None if isinstance(value, float) and not math.isfinite(value) else value

        doors = {name: get(path) for path, name in DOOR_NAMES.items()}
        windows = {name: get(path) for path, name in WINDOW_NAMES.items()}
        return {
            **{key: get(path) for key, path in SIGNALS.items()},
            "doors_open": doors,
            "windows_open_percent": windows,
            "all_closed": _all_closed(doors, windows, get(c.BONNET)),
            "tyres_kpa": {name: get(path) for path, name in TYRE_NAMES.items()},
            "verdicts": self.verdicts,
            "sessions": self.sessions,
            "alarms": self.alarms[-_MAX_RESULTS:],
            "command_results": self.results[-_MAX_RESULTS:],
            "service": self.service,
            "link": self.link,
            "records": self.records,
            "undecodable": self.undecodable,
            "last_epoch": self.last_epoch,
            "last_t_ms": self.last_t_ms,
            "last_seen": self.last_seen,
        }


def _all_closed(doors: Mapping[str, Any], windows: Mapping[str, Any], bonnet: Any) -> bool | None:
    values = [*doors.values(), bonnet]
    if any(x is None for x in values) or any(x is None for x in windows.values()):
        return None
    return not any(values) and all(w <= 0.0 for w in windows.values())


class VehicleFold:
    """Folds a vehicle's stored records, in row order, into a `VehicleState`."""

    def __init__(self) -> None:
        self.state = VehicleState()
        self.last_id = 0
        self._snapshots: dict[tuple[int, int], dict[int, Any]] = {}

    def apply(self, row_id: int, epoch: int, seq: int, t_ms: int, kind: int, body: bytes) -> None:
        self.last_id = row_id
        state = self.state
        state.records += 1
        state.last_epoch, state.last_t_ms = epoch, t_ms
        try:
            fields = cbor2.loads(body)
            if not isinstance(fields, dict):
                raise ValueError("body is not a map")
            self._apply(KIND_NAMES.get(kind, "?"), epoch, seq, fields)
        except (ValueError, TypeError, KeyError, cbor2.CBORDecodeError):
            state.undecodable += 1

    def _apply(self, kind: str, epoch: int, seq: int, fields: dict[Any, Any]) -> None:
        state = self.state
        if kind == "change":
            self._signals(fields)
        elif kind == "snapshot":
            base_seq = fields.get(BASE_SEQ, 0)
            full = dict(self._snapshots.get((epoch, base_seq), {})) if base_seq else {}
            full.update({k: v for k, v in fields.items() if k != BASE_SEQ})
            self._snapshots[(epoch, seq)] = full
            if len(self._snapshots) > 64:
                del self._snapshots[next(iter(self._snapshots))]
            self._signals(full)
        elif kind == "verdict":
            state.verdicts[str(fields["service"])] = fields
        elif kind == "session":
            state.sessions[str(fields["service"])] = fields
        elif kind == "alarm":
            state.alarms.append(fields)
            del state.alarms[:-_MAX_RESULTS]
        elif kind == "command_result":
            state.results.append(fields)
            del state.results[:-_MAX_RESULTS]
        elif kind == "service":
            state.service = fields
        elif kind == "link":
            state.link = fields
        else:
            raise ValueError(f"unknown kind {kind}")

    def _signals(self, body: Mapping[Any, Any]) -> None:
        for key, value in body.items():
            path = c.SIGNAL_BY_ID.get(key) if isinstance(key, int) else None
            if path is None:
                raise KeyError(key)
            self.state.values[path] = value


class StoreReader:
    """Reads the backend's store file for the portal; one fold per vehicle window."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self._db = connect(path)
        self._db.executescript(
            "CREATE TABLE IF NOT EXISTS records (id INTEGER PRIMARY KEY, vin TEXT NOT NULL,"
            " epoch INTEGER NOT NULL, seq INTEGER NOT NULL, t_ms INTEGER NOT NULL,"
            " kind INTEGER NOT NULL, body BLOB NOT NULL, UNIQUE (vin, epoch, seq)) STRICT;"
        )
        self._folds: dict[tuple[str, int, int | None], VehicleFold] = {}

    def close(self) -> None:
        self._db.close()

    def mark(self) -> int:
        """The highest record id stored so far."""
        row = self._db.execute("SELECT COALESCE(MAX(id), 0) FROM records").fetchone()
        return int(row[0])

    def statuses_mark(self) -> int:
        try:
            row = self._db.execute("SELECT COALESCE(MAX(id), 0) FROM statuses").fetchone()
        except sqlite3.OperationalError:  # the backend has not made the table yet
            return 0
        return int(row[0])

    def state(self, vin: str, since: int, until: int | None = None) -> VehicleState:
        key = (vin, since, until)
        fold = self._folds.get(key)
        if fold is None:
            fold = self._folds[key] = VehicleFold()
        start = max(fold.last_id, since)
        while True:
            rows = self._db.execute(
                "SELECT id, epoch, seq, t_ms, kind, body FROM records WHERE vin = ? AND id > ?"
                " AND id <= ? ORDER BY id LIMIT ?",
                (vin, start, until if until is not None else 2**62, _BATCH),
            ).fetchall()
            for row in rows:
                fold.apply(*row)
            if rows:
                fold.state.last_seen = time.time()
                start = rows[-1][0]
            if len(rows) < _BATCH:
                break
        return fold.state

    def statuses(self, vin: str, command_ids: list[str]) -> dict[str, list[dict[str, Any]]]:
        """The van's own reports on commands (accepted, refused with reason, completed)."""
        if not command_ids:
            return {}
        try:
            rows = self._db.execute(
                "SELECT command_id, outcome, reason, t_ms FROM statuses WHERE vin = ?"
                f" AND command_id IN ({', '.join('?' * len(command_ids))}) ORDER BY id",
                (vin, *command_ids),
            ).fetchall()
        except sqlite3.OperationalError:  # the backend has not made the table yet
            return {}
        out: dict[str, list[dict[str, Any]]] = {}
        for command_id, outcome, reason, t_ms in rows:
            out.setdefault(command_id, []).append(
                {"outcome": outcome, "reason": reason or None, "t_ms": t_ms}
            )
        return out
