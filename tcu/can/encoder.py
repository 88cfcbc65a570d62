"""Frame encoding: a catalogue state becomes the payload of DBC messages.

Theory of operation: the encoder is the inverse of decoding through a mapping. For a
message it gathers the signals the mapping binds, turns each catalogue value into its
physical DBC value with ``SignalBinding.to_physical`` (an unknown value becomes the
signal's "not available" value when the mapping names one, else the default below),
takes every other signal
from the caller's ``raw`` values or a default (the signal's start value, else 0 clipped
to its range), and lets cantools encode the lot strictly, so a value outside the DBC's
range is an error rather than a silently wrapped bit field. A multiplexed message is
encoded for one multiplexer value at a time, with only that branch's signals. A CAN FD
message comes out at its full DBC length.

The same encoder serves the trace generator and the vehicle ECU simulator; the TCU uses
``encode_request`` for the one frame it sends itself.
"""

from __future__ import annotations

from collections.abc import Mapping as AbcMapping
from typing import Any

import can

from tcu.can.mapping import Mapping, SignalBinding
from tcu.errors import ConfigError
from tcu.vehicle.catalogue import Value

_CACHE_LIMIT = 8192


def _default(signal: Any) -> float:
    if signal.initial is not None:
        return float(signal.initial)
    lo = signal.minimum
    hi = signal.maximum
    if lo is not None and lo > 0:
        return float(lo)
    if hi is not None and hi < 0:
        return float(hi)
    return 0.0


def _signal_range(signal: Any) -> int:
    """How many distinct raw values a counter signal can take."""
    return int(2**signal.length)


class FrameEncoder:
    """Encodes catalogue states into the payloads of the messages of ``db``."""

    def __init__(self, db: Any, mapping: Mapping) -> None:
        self.db = db
        self.mapping = mapping
        self._bindings: dict[str, tuple[SignalBinding, ...]] = {}
        for b in mapping.signals:
            name = b.message.name
            self._bindings[name] = (*self._bindings.get(name, ()), b)
        self._branches: dict[tuple[str, int | None], tuple[Any, ...]] = {}
        self._cache: dict[tuple[Any, ...], bytes] = {}

    def message(self, ref: Any) -> Any:
        """The cantools message for a name, a frame id or a message itself."""
        if not isinstance(ref, str | int):
            return ref
        try:
            if isinstance(ref, str):
                return self.db.get_message_by_name(ref)
            return self.db.get_message_by_frame_id(ref)
        except KeyError:
            raise ConfigError(f"the DBC has no message {ref!r}") from None

    def bindings_of(self, message: Any) -> tuple[SignalBinding, ...]:
        """The mapping's bindings carried by ``message``."""
        return self._bindings.get(self.message(message).name, ())

    def mux_values(self, message: Any) -> tuple[int, ...]:
        """The multiplexer values of a multiplexed message; () for a plain one."""
        msg = self.message(message)
        values: set[int] = set()
        for s in msg.signals:
            if s.multiplexer_ids:
                values.update(s.multiplexer_ids)
        return tuple(sorted(values))

    def signals_of(self, message: Any, mux: int | None = None) -> tuple[Any, ...]:
        """The signals encoded in one frame of ``message`` (one branch if multiplexed)."""
        msg = self.message(message)
        key = (msg.name, mux)
        cached = self._branches.get(key)
        if cached is not None:
            return cached
        muxes = self.mux_values(msg)
        if muxes and mux not in muxes:
            raise ConfigError(
                f"{msg.name}: multiplexer value {mux!r} is not one of {', '.join(map(str, muxes))}"
            )
        if not muxes and mux is not None:
            raise ConfigError(f"{msg.name}: the message is not multiplexed")
        branch = tuple(s for s in msg.signals if not s.multiplexer_ids or mux in s.multiplexer_ids)
        self._branches[key] = branch
        return branch

    def encode(
        self,
        message: Any,
        state: AbcMapping[str, Value | None],
        *,
        mux: int | None = None,
        raw: AbcMapping[str, float] | None = None,
    ) -> bytes:
        """The payload of ``message`` for a catalogue state.

        ``state`` maps catalogue paths to values (None or absent: not available);
        ``raw`` gives physical values for signals the mapping does not bind (counters,
        motor torque...); ``mux`` selects the branch of a multiplexed message.
        """
        msg = self.message(message)
        signals = self.signals_of(msg, mux)
        bound = {b.signal: b for b in self.bindings_of(msg)}
        raw = raw or {}
        data: dict[str, float] = {}
        for s in signals:
            if s.is_multiplexer:
                data[s.name] = float(mux if mux is not None else 0)
                continue
            b = bound.get(s.name)
            if b is None:
                data[s.name] = float(raw[s.name]) if s.name in raw else _default(s)
                continue
            value = state.get(b.path)
            if value is None and not b.invalid:
                data[s.name] = _default(s)
                continue
            try:
                data[s.name] = b.to_physical(value)
            except ValueError as e:
                raise ConfigError(f"{msg.name}: {e}") from None
        key = (msg.name, mux, *data.values())
        payload = self._cache.get(key)
        if payload is not None:
            return payload
        try:
            payload = bytes(msg.encode(data, scaling=True, padding=False, strict=True))
        except Exception as e:  # noqa: BLE001 - cantools raises EncodeError or ValueError
            text = str(e).strip().replace("\n", " ")[:300] or type(e).__name__
            raise ConfigError(f"{msg.name}: cannot encode: {text}") from None
        if len(self._cache) >= _CACHE_LIMIT:
            self._cache.clear()
        self._cache[key] = payload
        return payload

    def to_message(
        self,
        message: Any,
        data: bytes,
        *,
        timestamp: float = 0.0,
        is_rx: bool = True,
        channel: str | int | None = None,
    ) -> can.Message:
        """A python-can frame carrying ``data`` with the id and flags of ``message``."""
        msg = self.message(message)
        return can.Message(
            timestamp=timestamp,
            arbitration_id=msg.frame_id,
            is_extended_id=bool(msg.is_extended_frame),
            is_fd=bool(msg.is_fd),
            bitrate_switch=bool(msg.is_fd) and _brs(msg),
            data=data,
            is_rx=is_rx,
            channel=channel,
            check=True,
        )

    def encode_request(
        self, name: str, argument: float = 0, counter: int = 0, *, timestamp: float = 0.0
    ) -> can.Message:
        """The request frame the TCU sends: ``name`` is one of the mapping's request types."""
        req = self.mapping.requests
        if req is None:
            raise ConfigError(f"{self.mapping.source}: the mapping has no requests section")
        if name not in req.types:
            raise ConfigError(
                f"{self.mapping.source}: requests.types has no {name!r} "
                f"(known: {', '.join(req.types)})"
            )
        raw: dict[str, float] = {req.type_signal: float(req.types[name])}
        by_name = {s.name: s for s in req.message.signals}
        if req.argument_signal is not None:
            raw[req.argument_signal] = float(argument)
        elif argument:
            raise ConfigError(f"{req.message.name}: the mapping names no argument signal")
        if req.counter_signal is not None:
            raw[req.counter_signal] = float(counter % _signal_range(by_name[req.counter_signal]))
        data = self.encode(req.message, {}, raw=raw)
        return self.to_message(req.message, data, timestamp=timestamp, is_rx=False)

    def cyclic_messages(self) -> list[tuple[Any, float]]:
        """Every message with a ``GenMsgCycleTime``, with its cycle in seconds, by frame id."""
        out = [
            (m, m.cycle_time / 1000.0)
            for m in self.db.messages
            if m.cycle_time is not None and m.cycle_time > 0
        ]
        return sorted(out, key=lambda mc: (mc[0].frame_id, mc[0].name))

    def counter_signals(self, message: Any) -> tuple[Any, ...]:
        """Unmapped signals named ``...Counter``: rolling counters the sender increments."""
        bound = {b.signal for b in self.bindings_of(message)}
        return tuple(
            s
            for s in self.message(message).signals
            if s.name.endswith("Counter") and s.name not in bound and not s.is_multiplexer
        )


def _brs(message: Any) -> bool:
    specifics = getattr(message, "dbc", None)
    attributes = getattr(specifics, "attributes", None) or {}
    attr = attributes.get("CANFD_BRS")
    if attr is None:
        return True
    return str(attr.value) not in ("0", "False")


def counter_modulus(signal: Any) -> int:
    """The number of values a rolling counter signal takes before wrapping."""
    return _signal_range(signal)
