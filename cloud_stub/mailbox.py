"""Downlinks waiting for their vehicle: a retained head and a pending queue (SQLite).

Theory of operation. A TCU connects with a stable client id and a persistent session, so
once it has subscribed the broker keeps every QoS 1 command published while it is away.
Before its first connection there is no session, and a command published then reaches no
one: the README's flow (provision, activate, then start the van) lost its activation that
way. Retained messages alone do not close the gap (a topic retains one message, and a TCU
that resubscribes gets it again and refuses it as replayed); a queue alone does not either
(the backend cannot see a vehicle connect, and an inactive TCU sends nothing). Together
they do:

- a VIN the backend has never heard from (no verified message on its topics yet) gets its
  oldest pending downlink published *retained* on ``{prefix}/{VIN}/commands``: the TCU
  receives it the moment it subscribes. Later downlinks wait here, in counter order;
- the first verified message from the VIN (its answer to that downlink, or any telemetry)
  proves the TCU has subscribed with its persistent session: the retained message is
  cleared (an empty retained publish, which the TCU ignores) and every downlink still
  waiting and unexpired is published, plain QoS 1, in counter order;
- from then on a downlink is published at once, plain QoS 1, and the broker's persistent
  session carries it to the TCU;
- a waiting downlink whose ``expires_at`` passes is dropped (``expired``), never sent; an
  expired retained head is cleared and the next waiting one takes its place;
- a verified status naming a downlink's id and counter marks it ``answered``.

The CLI (``cloud-stub activate``/``command``) and ``cloud-stub serve`` share the file from
separate processes; each change is one ``BEGIN IMMEDIATE`` transaction. The mailbox is
sans-I/O: every method returns the `Publish` items the caller must send.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Final

from cloud_stub.commands import SignedDownlink
from cloud_stub.db import SqliteFile, transaction
from cloud_stub.ingest import Publish

__all__ = ["MAILBOX_FILE", "Mailbox", "Pending"]

MAILBOX_FILE: Final = "mailbox.sqlite"
_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS heard (
    vin TEXT PRIMARY KEY,
    at REAL NOT NULL
) STRICT;
CREATE TABLE IF NOT EXISTS downlinks (
    vin TEXT NOT NULL,
    counter INTEGER NOT NULL,
    command_id TEXT NOT NULL,
    name TEXT NOT NULL,
    topic TEXT NOT NULL,
    payload BLOB NOT NULL,
    expires_at REAL NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('waiting', 'sent', 'answered', 'expired')),
    retained INTEGER NOT NULL DEFAULT 0 CHECK (retained IN (0, 1)),
    PRIMARY KEY (vin, counter)
) STRICT;
"""


@dataclass(frozen=True, slots=True, kw_only=True)
class Pending:
    """A downlink the mailbox knows, and what became of it."""

    vin: str
    counter: int
    command_id: str
    name: str
    expires_at: float
    state: str
    retained: bool


class Mailbox(SqliteFile):
    """Holds downlinks until their vehicle can receive them; see the module docstring."""

    SCHEMA = _SCHEMA

    def __init__(self, path: str | os.PathLike[str]) -> None:
        super().__init__(path)
        self._heard: set[str] = set()

    # --- events ------------------------------------------------------------------------

    def post(self, signed: SignedDownlink, *, now: float) -> list[Publish]:
        """A new signed downlink: what to publish now (maybe nothing yet)."""
        d = signed.downlink
        vin = d.vin
        with transaction(self._db):
            out = self._expire(now, vin)
            heard = self._is_heard(vin)
            head = not heard and self._retained_row(vin) is None
            state = "sent" if heard else "waiting"
            self._db.execute(
                "INSERT INTO downlinks (vin, counter, command_id, name, topic, payload,"
                " expires_at, state, retained) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    vin,
                    d.counter,
                    d.command_id,
                    d.name,
                    signed.topic,
                    signed.payload,
                    d.expires_at,
                    state,
                    int(head),
                ),
            )
            if heard:
                out.append(Publish(topic=signed.topic, payload=signed.payload))
            elif head:
                out.append(Publish(topic=signed.topic, payload=signed.payload, retain=True))
        return out

    def heard(self, vin: str, now: float) -> list[Publish]:
        """A verified message from `vin` arrived: release what waited for it."""
        if vin in self._heard:
            return []
        with transaction(self._db):
            out = self._expire(now, vin)
            if self._db.execute("SELECT 1 FROM heard WHERE vin = ?", (vin,)).fetchone():
                self._heard.add(vin)
                return out
            self._db.execute("INSERT INTO heard (vin, at) VALUES (?, ?)", (vin, now))
            rows = self._db.execute(
                "SELECT counter, topic, payload, retained FROM downlinks"
                " WHERE vin = ? AND state = 'waiting' ORDER BY counter",
                (vin,),
            ).fetchall()
            for _counter, topic, payload, retained in rows:
                if retained:
                    # the TCU received it when it subscribed; take it off the topic
                    out.append(Publish(topic=topic, payload=b"", retain=True))
                else:
                    out.append(Publish(topic=topic, payload=payload))
            self._db.execute(
                "UPDATE downlinks SET state = 'sent', retained = 0"
                " WHERE vin = ? AND state = 'waiting'",
                (vin,),
            )
        self._heard.add(vin)
        return out

    def answered(self, vin: str, command_id: str, counter: int) -> tuple[bool, list[Publish]]:
        """The vehicle's verified status names a downlink: is it one we sent, and what to clear."""
        with transaction(self._db):
            row = self._db.execute(
                "SELECT topic, retained FROM downlinks"
                " WHERE vin = ? AND counter = ? AND command_id = ?",
                (vin, counter, command_id),
            ).fetchone()
            if row is None:
                return False, []
            topic, retained = row
            self._db.execute(
                "UPDATE downlinks SET state = 'answered', retained = 0"
                " WHERE vin = ? AND counter = ?",
                (vin, counter),
            )
        return True, [Publish(topic=topic, payload=b"", retain=True)] if retained else []

    def expire(self, now: float) -> list[Publish]:
        """Drop waiting downlinks past their expiry; move the retained head on."""
        due = self._db.execute(
            "SELECT 1 FROM downlinks WHERE state = 'waiting' AND expires_at < ? LIMIT 1", (now,)
        ).fetchone()
        if due is None:  # the usual case: no write transaction every second
            return []
        with transaction(self._db):
            return self._expire(now, None)

    # --- reading ------------------------------------------------------------------------

    def pending(self, vin: str) -> list[Pending]:
        rows = self._db.execute(
            "SELECT vin, counter, command_id, name, expires_at, state, retained FROM downlinks"
            " WHERE vin = ? ORDER BY counter",
            (vin,),
        ).fetchall()
        return [
            Pending(vin=v, counter=c, command_id=i, name=n, expires_at=e, state=s, retained=bool(r))
            for v, c, i, n, e, s, r in rows
        ]

    def is_heard(self, vin: str) -> bool:
        return vin in self._heard or self._is_heard(vin)

    # --- inside a transaction -----------------------------------------------------------

    def _is_heard(self, vin: str) -> bool:
        return self._db.execute("SELECT 1 FROM heard WHERE vin = ?", (vin,)).fetchone() is not None

    def _retained_row(self, vin: str) -> tuple[int] | None:
        row: tuple[int] | None = self._db.execute(
            "SELECT counter FROM downlinks WHERE vin = ? AND retained = 1", (vin,)
        ).fetchone()
        return row

    def _expire(self, now: float, vin: str | None) -> list[Publish]:
        where = "state = 'waiting' AND expires_at < ?"
        params: tuple[object, ...] = (now,)
        if vin is not None:
            where += " AND vin = ?"
            params += (vin,)
        rows = self._db.execute(
            f"SELECT vin, counter, topic, retained FROM downlinks WHERE {where}", params
        ).fetchall()
        out: list[Publish] = []
        for row_vin, counter, topic, retained in rows:
            self._db.execute(
                "UPDATE downlinks SET state = 'expired', retained = 0"
                " WHERE vin = ? AND counter = ?",
                (row_vin, counter),
            )
            if not retained:
                continue
            following = self._db.execute(
                "SELECT counter, payload FROM downlinks WHERE vin = ? AND state = 'waiting'"
                " AND expires_at >= ? ORDER BY counter LIMIT 1",
                (row_vin, now),
            ).fetchone()
            if following is None:
                out.append(Publish(topic=topic, payload=b"", retain=True))
            else:
                self._db.execute(
                    "UPDATE downlinks SET retained = 1 WHERE vin = ? AND counter = ?",
                    (row_vin, following[0]),
                )
                out.append(Publish(topic=topic, payload=following[1], retain=True))
        return out
