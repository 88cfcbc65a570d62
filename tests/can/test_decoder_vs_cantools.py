"""The decoder gives what plain cantools gives: past mismatches, and a differential test."""

from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import Any

import can
import pytest
from cantools.database import DecodeError
from cantools.database.can import Message
from cantools.database.namedsignalvalue import NamedSignalValue
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tcu.can.dbc import load_database
from tcu.can.mapping import Mapping as MappingT
from tcu.can.mapping import SignalBinding, every_signal
from tcu.can.setup import load_bus_setup
from tcu.core import TcuCore
from tcu.vehicle import catalogue as c
from tests.helpers import CANTOOLS_DBCS, shared_dbc


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


# --- the differential property test -----------------------------------------------------
#
# hypothesis writes frame sequences for a few messages of a DBC: new payloads (every
# multiplexer page, now and then an undefined selector value), returns to an earlier
# payload, identical repeats, changes of bits no signal uses, changes of the bits of
# signals the mapping leaves out, short and long frames, error and remote frames, unknown
# ids and a known id with the other id kind. After every frame, each bound signal (all
# of them, or every other one) must hold the value the last plain ``Message.decode`` that
# carried it gave, and its source must have been seen exactly when that frame came. The
# whole selection is checked again at the end of each sequence.

DBC_FILES = [*sorted(p.name for p in CANTOOLS_DBCS.glob("*.dbc")), "Model3CAN.dbc"]
_LOADED: dict[str, tuple[Any, list[SignalBinding], dict[str, Fields]]] = {}


def loaded(name: str) -> tuple[Any, list[SignalBinding], dict[str, Fields]]:
    """A shared DBC, every signal of it bound, and its messages' fields (built once)."""
    if name not in _LOADED:
        db, _ = load_database(shared_dbc(name))
        _LOADED[name] = (db, every_signal(db), {})
    return _LOADED[name]


class Fields:
    """Raw bit fields of one message: where each signal sits, to write any raw value."""

    def __init__(self, message: Any) -> None:
        self.message = message
        self.length: int = message.length
        self._one: dict[str, Any] = {}
        self.used = 0
        for sig in message.signals:
            self.used |= self.mask(sig.name)

    def bits(self, name: str, raw: int) -> int:
        one = self._one.get(name)
        if one is None:
            sig = copy.deepcopy(self.message.get_signal_by_name(name))
            sig.is_multiplexer, sig.multiplexer_ids, sig.multiplexer_signal = False, None, None
            one = Message(frame_id=1, name="one", length=self.length, signals=[sig], strict=False)
            self._one[name] = one
        return int.from_bytes(one.encode({name: raw}, scaling=False, strict=False), "little")

    def mask(self, name: str) -> int:
        sig = self.message.get_signal_by_name(name)
        return self.bits(name, -1 if sig.is_signed else (1 << sig.length) - 1)

    def page(self, data: st.DataObject, base: int) -> int:
        """``base`` with every selector on the way set to a drawn (mostly defined) value."""
        node = self.message._codecs
        payload = base
        while node is not None and node["multiplexers"]:
            nxt = None
            for sel, branches in node["multiplexers"].items():
                sig = self.message.get_signal_by_name(sel)
                ids = sorted(branches)
                undefined = data.draw(st.integers(0, 9)) == 0
                if undefined:
                    width = min(sig.length, 16)
                    lo = -(1 << (width - 1)) if sig.is_signed else 0
                    raw = data.draw(st.integers(lo, lo + (1 << width) - 1))
                else:
                    raw = data.draw(st.sampled_from(ids))
                payload = (payload & ~self.mask(sel)) | self.bits(sel, raw)
                nxt = branches.get(raw)
            node = nxt
        return payload


KINDS = (
    *("new", "new", "again", "again", "repeat", "unused", "unbound", "short", "long"),
    *("error", "remote", "unknown", "other_kind"),
)


def expected_equal(ours: Any, theirs: Any) -> bool:
    if isinstance(theirs, NamedSignalValue):
        return ours == theirs.name
    if isinstance(ours, bool):
        return theirs in (0, 1) and ours == bool(theirs)
    if isinstance(theirs, float) and math.isnan(theirs):
        return isinstance(ours, float) and math.isnan(ours)
    return not isinstance(ours, str) and ours == theirs


def test_every_shared_dbc_takes_part() -> None:
    shared_dbc("multiplex.dbc")
    assert len(DBC_FILES) >= 22  # 21 or more of cantools' own, and Model3CAN.dbc


@pytest.mark.parametrize("dbc", DBC_FILES)
@settings(
    max_examples=50,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(data=st.data())
def test_decoding_equals_plain_cantools(dbc: str, data: st.DataObject) -> None:
    db, everything, all_fields = loaded(dbc)
    messages = [m for m in db.messages if m.signals and not getattr(m, "is_container", False)]
    chosen = data.draw(
        st.lists(st.sampled_from(messages), min_size=1, max_size=4, unique_by=lambda m: m.name)
    )
    names = {m.name for m in chosen}
    half = data.draw(st.booleans())
    bindings = [
        b for i, b in enumerate(everything) if b.message.name in names and not (half and i % 2)
    ]
    if not bindings:
        return
    core = TcuCore(MappingT(source=dbc, signals=tuple(bindings)))
    by_message: dict[str, list[SignalBinding]] = {}
    for b in bindings:
        by_message.setdefault(b.message.name, []).append(b)
    for m in chosen:
        if m.name not in all_fields:
            all_fields[m.name] = Fields(m)
    fields = {m.name: all_fields[m.name] for m in chosen}
    ids = {(m.frame_id, m.is_extended_frame) for m in db.messages}
    history: dict[str, list[bytes]] = {m.name: [] for m in chosen}
    reference: dict[str, tuple[Any, float]] = {}
    refused = 0
    now = 0.0
    for _ in range(data.draw(st.integers(1, 60))):
        now += data.draw(st.sampled_from((0.0, 0.01, 0.1, 0.5, 2.0)))
        msg = data.draw(st.sampled_from(chosen))
        f = fields[msg.name]
        seen = history[msg.name]
        kind = data.draw(st.sampled_from(KINDS))
        ext, arb = msg.is_extended_frame, msg.frame_id
        payload: bytes | None = None
        last = seen[-1] if seen else None
        full = (last or b"")[: f.length].ljust(f.length, b"\0")
        if kind == "new" or last is None:
            base = int.from_bytes(data.draw(st.binary(min_size=f.length, max_size=f.length)))
            payload = f.page(data, base).to_bytes(f.length, "little")
        elif kind == "again":
            payload = data.draw(st.sampled_from(seen))
        elif kind == "repeat":
            payload = last
        elif kind == "unused":
            noise = int.from_bytes(data.draw(st.binary(min_size=f.length, max_size=f.length)))
            payload = (int.from_bytes(full, "little") ^ (noise & ~f.used)).to_bytes(
                f.length, "little"
            )
        elif kind == "unbound":  # bits of signals this mapping leaves out change
            noise = int.from_bytes(data.draw(st.binary(min_size=f.length, max_size=f.length)))
            bound = 0
            for b in by_message.get(msg.name, []):
                bound |= f.mask(b.signal)
            payload = (int.from_bytes(full, "little") ^ (noise & ~bound)).to_bytes(
                f.length, "little"
            )
        elif kind == "short":
            payload = full[: data.draw(st.integers(0, max(0, f.length - 1)))]
        elif kind == "long":
            payload = full + data.draw(st.binary(min_size=1, max_size=8))
        if kind == "error":
            frame = can.Message(is_error_frame=True, arbitration_id=arb, is_extended_id=ext)
        elif kind == "remote":
            frame = can.Message(
                is_remote_frame=True, arbitration_id=arb, is_extended_id=ext, dlc=min(f.length, 8)
            )
        elif kind == "unknown":
            arb = data.draw(st.integers(0, 0x7FF if not ext else 0x1FFFFFFF))
            if (arb, ext) in ids:
                continue
            frame = can.Message(arbitration_id=arb, is_extended_id=ext, data=bytes(8))
        elif kind == "other_kind":
            frame = can.Message(
                arbitration_id=arb, is_extended_id=not ext, data=last or bytes(f.length)
            )
        else:
            assert payload is not None
            seen.append(payload)
            frame = can.Message(
                arbitration_id=arb, is_extended_id=ext, is_fd=len(payload) > 8, data=payload
            )
            try:
                decoded = msg.decode(payload)  # plain cantools: the reference
            except (DecodeError, ValueError):
                refused += msg.name in by_message  # bound, so the TCU looks at it
            else:
                for b in by_message.get(msg.name, []):
                    if b.signal in decoded:
                        reference[b.path] = (decoded[b.signal], now)
        if kind == "other_kind" and (arb, not ext) in ids:
            continue  # a message of its own, not bound here: skip rather than model it
        core.handle(frame, now)
        check(core, by_message.get(msg.name, []), reference)
    check(core, bindings, reference)
    assert core.summary_counts()["bad_frames"] == refused


def check(core: TcuCore, bindings: list[SignalBinding], reference: dict[str, Any]) -> None:
    for b in bindings:
        cell = core.state.cells[b.path]
        if b.path not in reference:
            assert cell.source.seen == -math.inf, f"{b.path} refreshed by a frame it is not in"
            continue
        value, seen = reference[b.path]
        assert expected_equal(cell.value, value), f"{b.path}: {cell.value!r}, cantools {value!r}"
        assert cell.source.seen == seen, f"{b.path}: seen at {cell.source.seen}, last in {seen}"
