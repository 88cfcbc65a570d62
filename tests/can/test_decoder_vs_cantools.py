"""The decoder gives what plain cantools gives: reproductions of past mismatches."""

from __future__ import annotations

import os
from pathlib import Path

import can
import pytest

from tcu.can.setup import load_bus_setup
from tcu.core import TcuCore
from tcu.vehicle import catalogue as c
from tests.helpers import SHARED

CANTOOLS_DBCS = SHARED / "dbc" / "cantools"


def shared_dbc(name: str) -> Path:
    """A DBC of the shared fixtures; skips without them (fails instead when CI=true)."""
    path = CANTOOLS_DBCS / name if name != "Model3CAN.dbc" else SHARED / "dbc" / name
    if not path.exists():
        if os.environ.get("CI") == "true":
            pytest.fail(f"{path}: shared fixture missing and CI=true")
        pytest.skip(f"{path}: shared fixtures not present")
    return path


def core_for(tmp_path: Path, dbc: Path, mapping: str) -> TcuCore:
    m = tmp_path / "m.yaml"
    m.write_text(mapping)
    return TcuCore(load_bus_setup(dbc=dbc, mapping=m).mapping)


MULTIPLEX_MAPPING = f"""signals:
  - path: {c.SPEED}
    message: Message1
    signal: Multiplexor
    stale_after: 0.5
  - path: {c.BONNET}
    message: Message1
    signal: BIT_J
    stale_after: 0.5
"""
PAGE_8 = bytes.fromhex("20008c0100000000")  # Multiplexor 8, BIT_J 1
PAGE_16 = bytes.fromhex("4000000000000000")  # Multiplexor 16, BIT_J 0


def ext(data: bytes) -> can.Message:
    return can.Message(arbitration_id=0x123456, is_extended_id=True, data=data)


def test_a_page_returning_unchanged_updates_the_signals_it_shares(tmp_path: Path) -> None:
    core = core_for(tmp_path, shared_dbc("multiplex.dbc"), MULTIPLEX_MAPPING)
    for i, data in enumerate((PAGE_8, PAGE_16, PAGE_8)):
        core.handle(ext(data), i * 0.1)
    assert core.state.get(c.SPEED, 0.2) == 8  # cantools: Multiplexor 8
    assert core.state.get(c.BONNET, 0.2) is True  # cantools: BIT_J 1


def test_a_page_repeating_keeps_its_shared_signals_fresh(tmp_path: Path) -> None:
    core = core_for(tmp_path, shared_dbc("multiplex.dbc"), MULTIPLEX_MAPPING)
    core.handle(ext(PAGE_8), 0.0)
    core.handle(ext(PAGE_16), 0.1)
    for i in range(29):
        core.handle(ext(PAGE_8), 0.2 + i * 0.1)
    assert core.state.get(c.BONNET, 3.0) is True  # every frame carries BIT_J
    assert core.state.get(c.SPEED, 3.0) == 8


def test_frames_cantools_rejects_do_not_refresh(tmp_path: Path) -> None:
    mapping = f"""signals:
  - path: {c.OUTSIDE_TEMP}
    message: ExampleMessage
    signal: Temperature
    stale_after: 0.5
"""
    core = core_for(tmp_path, shared_dbc("motohawk.dbc"), mapping)
    core.handle(can.Message(arbitration_id=496, is_extended_id=False, data=bytes(8)), 0.0)
    assert core.state.get(c.OUTSIDE_TEMP, 0.0) == pytest.approx(250.0)
    for i in range(1, 31):  # 2-byte frames: "Wrong data size" for cantools
        core.handle(can.Message(arbitration_id=496, is_extended_id=False, data=bytes(2)), i * 0.1)
    assert core.summary_counts()["bad_frames"] == 30
    assert core.state.get(c.OUTSIDE_TEMP, 3.0) is None
    assert core.state.is_stale(c.OUTSIDE_TEMP, 3.0)
