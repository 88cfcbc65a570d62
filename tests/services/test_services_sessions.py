"""The session tables, walked: every legal move works, every other one raises."""

from __future__ import annotations

import itertools

import pytest

from tcu.errors import TransitionError
from tcu.services.sessions import (
    CHARGING_TABLE,
    LOCK_TABLE,
    PRECONDITIONING_TABLE,
    TABLES,
    Session,
    Table,
    Transition,
    next_state,
)
from tcu.services.verdicts import Reason

NAMED = {
    "charging": CHARGING_TABLE,
    "preconditioning": PRECONDITIONING_TABLE,
    "lock": LOCK_TABLE,
}


def events(table: Table) -> set[str]:
    return {e for row in table.values() for e in row}


def cells(table: Table) -> list[tuple[str, str]]:
    return [(s, e) for s in table for e in sorted(events(table))]


@pytest.mark.parametrize("name", NAMED)
def test_walk_every_cell_of_the_table(name: str) -> None:
    table = NAMED[name]
    for state, event in cells(table):
        if event in table[state]:
            assert next_state(table, state, event) == table[state][event]
        else:
            with pytest.raises(TransitionError, match=f"{event!r} is not allowed in state"):
                next_state(table, state, event)


@pytest.mark.parametrize("name", NAMED)
def test_every_state_is_reachable_and_every_path_ends(name: str) -> None:
    table = NAMED[name]
    assert all(target in table for row in table.values() for target in row.values())
    seen, todo = {"idle"}, ["idle"]
    while todo:
        for target in table[todo.pop()].values():
            if target not in seen:
                seen.add(target)
                todo.append(target)
    assert seen == set(table)
    terminal = {s for s, row in table.items() if not row}
    for state in table:
        reach, todo = {state}, [state]
        while todo:
            for target in table[todo.pop()].values():
                if target not in reach:
                    reach.add(target)
                    todo.append(target)
        assert reach & terminal, f"{name}: no way out of {state}"


@pytest.mark.parametrize(
    ("service", "path", "end"),
    [
        ("charging", ["command", "allowed", "interrupt"], "interrupted"),
        ("charging", ["auto", "allowed", "complete"], "complete"),
        ("charging", ["command", "refused"], "refused"),
        ("charging", ["command", "allowed", "stop"], "stopped"),
        ("preconditioning", ["command", "allowed", "departure"], "done"),
        ("preconditioning", ["auto", "allowed", "abort"], "aborted"),
        ("preconditioning", ["command", "stop"], "cancelled"),
        ("preconditioning", ["auto", "disable"], "cancelled"),
        ("preconditioning", ["command", "not_needed"], "not_needed"),
        ("lock", ["command", "allowed", "confirmed"], "completed"),
        ("unlock", ["command", "allowed", "timeout"], "failed"),
        ("lock", ["command", "refused"], "refused"),
    ],
)
def test_sessions_record_each_transition(service: str, path: list[str], end: str) -> None:
    session = Session(service, f"{service}-7")  # type: ignore[arg-type]
    recorded = [session.fire(event, float(i)) for i, event in enumerate(path)]
    assert session.state == end and session.finished
    assert [t.event for t in recorded] == path
    assert all(a.to_state == b.from_state for a, b in itertools.pairwise(recorded))
    assert recorded[0].from_state == "idle"
    assert {t.session_id for t in recorded} == {f"{service}-7"}


def test_an_illegal_transition_raises_and_leaves_the_session_alone() -> None:
    session = Session("charging", "charging-1")
    session.fire("command", 0.0)
    with pytest.raises(TransitionError, match="charging-1: event 'complete' is not allowed"):
        session.fire("complete", 1.0)
    assert session.state == "requested"
    session.fire("refused", 1.0)
    with pytest.raises(TransitionError, match="terminal"):
        session.fire("command", 2.0)


def test_transition_must_be_in_the_table_and_serialises() -> None:
    with pytest.raises(ValueError, match="not in the table"):
        Transition(
            t=1.0,
            service="charging",
            session_id="charging-1",
            from_state="charging",
            to_state="complete",
            event="interrupt",
        )
    with pytest.raises(TransitionError):
        Transition(
            t=1.0,
            service="lock",
            session_id="lock-1",
            from_state="idle",
            to_state="sent",
            event="allowed",
        )
    bonnet = Reason(code="bonnet_open", message="The bonnet is open.", values={"x": True})
    gear = Reason(code="gear_not_park", message="The gear selector is in D, not P.")
    tr = Transition(
        t=4.0,
        service="charging",
        session_id="charging-1",
        from_state="charging",
        to_state="interrupted",
        event="interrupt",
        reasons=(bonnet, gear),
    )
    assert tr.reason == "bonnet_open,gear_not_park"
    d = tr.as_dict()
    assert (d["from_state"], d["to_state"], d["reason"]) == (
        "charging",
        "interrupted",
        "bonnet_open,gear_not_park",
    )
    assert [r["code"] for r in d["reasons"]] == ["bonnet_open", "gear_not_park"]


def test_lock_and_unlock_share_one_table() -> None:
    assert TABLES["lock"] is TABLES["unlock"] is LOCK_TABLE
