"""The van's side of the bus: cyclic ECU frames from the DBC, and answers to the TCU.

Theory of operation. ``VehicleSim`` is sans-I/O. Its state is a storyline (a built-in one,
played at ``speed`` times real time, or, for a bench operator, a still one holding the
reference van's resting values) overlaid with values set by hand or by the van's answers
to requests. An overlaid value holds until the storyline's track of that signal has its
next knot (its next change), so a storyline keeps the last word. ``frames_due(now)``
returns every cyclic message of the DBC whose slot has come, at its ``GenMsgCycleTime``
from a fixed phase, encoded from the state (``FrameEncoder``), with the other ECUs'
unmapped signals derived as the trace generator derives them and rolling counters
advancing per frame; while the storyline's bus phase silences a sender, its slots pass
unsent. ``on_request(msg, now)`` answers the TCU's request frame as the van's ECUs would:

- lock: the central lock engages when every door is closed; unlock: it releases;
- start charging: charging starts (power from the infrastructure type) when the plug is
  connected and locked, the infrastructure connected, the gear in P and the bonnet closed;
  stop charging: idle. While a charge the simulator started runs, the state of charge rises
  with the power, the charge completes at the target, and stops when a condition fails;
- set departure: the climate ECU echoes the departure time;
- start/stop preconditioning: the climate ECU runs or stops its heater.

The message that carries a changed value goes out at once (as the body and charger ECUs
send on change), not only at its next cyclic slot. A request whose rolling counter and
payload repeat the previous one is a retransmission and is ignored, as the van's ECUs do.

``SimDriver`` is the thin driver: one thread that waits for a request frame until the next
slot is due, answers it and sends what is due; ``run_prompt`` reads ``set PATH VALUE``,
``release PATH``, ``show`` and ``quit`` from a stream.
"""

from __future__ import annotations

import bisect
import contextlib
import math
import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import IO, Any

import can

from tcu.can.encoder import FrameEncoder, counter_modulus
from tcu.errors import BusError, ConfigError
from tcu.lifecycle import Running
from tcu.storyline.generator import talks
from tcu.storyline.story import Storyline
from tcu.storyline.traffic import DERIVED, FrameContext
from tcu.storyline.van import start as van_start
from tcu.vehicle import catalogue as c
from tcu.vehicle.catalogue import CATALOGUE, Value

STILL_DURATION_S = 10 * 365 * 86_400.0
CHARGING_POWER_KW: Mapping[str, float] = {
    "WALLBOX": 22.0,
    "PUBLIC_AC": 11.0,
    "HOME_SOCKET": 2.3,
    "DC": 50.0,
}
PRECONDITIONING_HEATER_KW = 7.5
PHASE_STEP_S = 0.0007

Answer = tuple[bool, str, list[can.Message]]
"""Whether the van did what a request asked, what it did or why not, the frames it sent."""


@dataclass(frozen=True, slots=True, kw_only=True)
class RequestOutcome:
    """What the van did with one request frame."""

    t: float
    name: str
    counter: int | None
    accepted: bool
    detail: str

    def __str__(self) -> str:
        verb = "done" if self.accepted else "ignored"
        return (
            f"t={self.t:9.3f}s request {self.name} (counter {self.counter}): {verb}: {self.detail}"
        )


class _Slot:
    __slots__ = ("count", "cycle", "due", "message", "muxes")

    def __init__(self, message: Any, cycle: float, due: float, muxes: tuple[int, ...]) -> None:
        self.message = message
        self.cycle = cycle
        self.due = due
        self.count = 0
        self.muxes = muxes


class _Context(FrameContext):
    """The trace generator's frame context, reading the simulator's overlaid state."""

    __slots__ = ("sim", "sim_now")

    def __init__(self, sim: VehicleSim, now: float, rng: random.Random) -> None:
        t = sim.story_time(now)
        super().__init__(story=sim.story, t=t, mode=sim.story.mode(t), rng=rng)
        self.sim = sim
        self.sim_now = now

    def get(self, key: str) -> Value | None:
        return self.sim.value(key, self.sim_now)

    def num(self, key: str, default: float = 0.0) -> float:
        v = self.get(key)
        if isinstance(v, bool):
            return 1.0 if v else 0.0
        return float(v) if isinstance(v, float) else default


def still_storyline(when: datetime | None = None) -> Storyline:
    """The reference van at rest, forever: parked, gear P, doors closed, unlocked, awake."""
    b = van_start(
        "bench",
        "The reference van at rest, set by hand",
        (when or datetime.now(UTC)).replace(microsecond=0),
        {},
    )
    b.bus(0.0, "awake")
    return b.build(STILL_DURATION_S)


class VehicleSim:
    """The van's ECUs as one sans-I/O object: state, ``on_request``, ``frames_due``."""

    def __init__(
        self,
        encoder: FrameEncoder,
        *,
        storyline: Storyline | None = None,
        speed: float = 1.0,
        start: float = 0.0,
        fd: bool = True,
        seed: int = 1,
    ) -> None:
        if not (speed > 0 and math.isfinite(speed)):
            raise ConfigError(f"--speed must be > 0, got {speed}")
        if start < 0:
            raise ConfigError(f"storyline start must be >= 0 s, got {start}")
        requests = encoder.mapping.requests
        if requests is None:
            raise ConfigError(f"{encoder.mapping.source}: the mapping has no requests section")
        self.encoder = encoder
        self.story = storyline if storyline is not None else still_storyline()
        self.speed = speed
        self.start = start
        self.fd = fd
        self.requests = requests
        self._request_names = {v: k for k, v in requests.types.items()}
        self._rng = random.Random(seed)
        self._signals = {s.name: s for m in encoder.db.messages for s in m.signals}
        self._path_of_signal = {b.signal: b.path for b in encoder.mapping.signals}
        self._carriers = self._carrier_messages()
        self._overlay: dict[str, tuple[Value | None, float]] = {}
        self._knot_times: dict[str, tuple[float, ...]] = {}
        self._last_request: tuple[int | None, bytes] | None = None
        self._charging_since: float | None = None
        self._charged_until = 0.0
        self.slots: list[_Slot] = []
        self.skipped_fd: list[str] = []
        for i, (message, cycle) in enumerate(encoder.cyclic_messages()):
            if message.is_fd and not fd:
                self.skipped_fd.append(message.name)
                continue
            muxes = encoder.mux_values(message)
            self.slots.append(_Slot(message, cycle, (i * PHASE_STEP_S) % cycle, muxes))
        self.frames_sent: Counter[str] = Counter()
        self.requests_seen: Counter[str] = Counter()
        self.requests_done: Counter[str] = Counter()
        self.requests_ignored: Counter[str] = Counter()
        self.repeated_requests = 0
        self.late_slots = 0
        self.silent_slots = 0

    # --- state ----------------------------------------------------------------------------

    def story_time(self, now: float) -> float:
        return min(self.start + now * self.speed, self.story.duration)

    def _base(self, key: str, now: float) -> Value | None:
        if key in self.story.tracks:
            return self.story.value(key, self.story_time(now))
        return None

    def value(self, key: str, now: float) -> Value | None:
        """The van's value of a catalogue path or an unmapped DBC signal at ``now``."""
        held = self._overlay.get(key)
        if held is not None:
            value, since = held
            if not self._moved(key, since, self.story_time(now)):
                return value
            del self._overlay[key]
        return self._base(key, now)

    def _moved(self, key: str, since: float, until: float) -> bool:
        """Whether the storyline's track of ``key`` has a knot in ``(since, until]``."""
        times = self._knot_times.get(key)
        if times is None:
            knots = self.story.tracks.get(key, ())
            times = self._knot_times[key] = tuple(k.t for k in knots)
        return bisect.bisect_right(times, since) < bisect.bisect_right(times, until)

    def state(self, now: float) -> dict[str, Value | None]:
        return {path: self.value(path, now) for path in CATALOGUE}

    def overlaid(self) -> frozenset[str]:
        return frozenset(self._overlay)

    def resolve_key(self, key: str) -> str:
        """A catalogue path, a unique tail of one (``DriverSide.IsLocked``), or a DBC signal."""
        if key in CATALOGUE:
            return key
        if key in self._signals:
            path = self._path_of_signal.get(key)
            if path is not None:
                raise ConfigError(f"{key} carries {path}: set that instead")
            return key
        low = key.lower()
        tails = [p for p in CATALOGUE if p.lower().endswith("." + low) or p.lower() == low]
        if len(tails) == 1:
            return tails[0]
        if len(tails) > 1:
            raise ConfigError(f"{key!r} is ambiguous: {', '.join(tails)}")
        raise ConfigError(f"no signal {key!r} (a catalogue path, or a signal of the DBC)")

    def set(self, key: str, value: Value | None, now: float) -> list[can.Message]:
        """Overlay ``key`` with ``value``; the frames that now carry it (sent at once)."""
        key = self.resolve_key(key)
        checked = self._check(key, value)
        previous = self._overlay.get(key)
        self._overlay[key] = (checked, self.story_time(now))
        try:
            frames = self._push(key, now)
        except ConfigError:
            if previous is None:
                del self._overlay[key]
            else:
                self._overlay[key] = previous
            raise
        return frames

    def set_text(self, key: str, text: str, now: float) -> list[can.Message]:
        """``set`` with the value parsed from text for the signal's kind."""
        key = self.resolve_key(key)
        return self.set(key, parse_value(key, text), now)

    def release(self, key: str, now: float) -> list[can.Message]:
        """Drop the overlay of ``key``: the storyline's value again."""
        key = self.resolve_key(key)
        if self._overlay.pop(key, None) is None:
            return []
        return self._push(key, now)

    def _check(self, key: str, value: Value | None) -> Value | None:
        if key not in CATALOGUE:
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ConfigError(f"{key}: a DBC signal takes a number, not {value!r}")
            return float(value)
        spec = CATALOGUE[key]
        if value is None:
            return None
        if spec.kind == "bool" and isinstance(value, bool):
            return value
        if spec.kind == "float" and isinstance(value, int | float) and not isinstance(value, bool):
            if not math.isfinite(value):
                raise ConfigError(f"{key}: {value!r} is not a finite number")
            return float(value)
        if spec.kind == "enum" and isinstance(value, str) and value in spec.values:
            return value
        expected = {"bool": "true or false", "float": "a number"}.get(
            spec.kind, " / ".join(spec.values)
        )
        raise ConfigError(f"{key}: {value!r} is not {expected}")

    def _set_many(self, values: Mapping[str, Value | None], now: float) -> list[can.Message]:
        frames: list[can.Message] = []
        for key, value in values.items():
            self._overlay[key] = (value, self.story_time(now))
        for key in values:
            frames += self._push(key, now)
        return _unique(frames)

    def _carrier_messages(self) -> dict[str, list[Any]]:
        carriers: dict[str, list[Any]] = {}
        for b in self.encoder.mapping.signals:
            carriers.setdefault(b.path, []).append(b.message)
        for m in self.encoder.db.messages:
            for s in m.signals:
                carriers.setdefault(s.name, []).append(m)
        return carriers

    def _push(self, key: str, now: float) -> list[can.Message]:
        """Frames of the cyclic messages carrying ``key``, sent now, off their schedule."""
        names = {m.name for m in self._carriers.get(key, [])}
        return [self._frame(slot, now) for slot in self.slots if slot.message.name in names]

    # --- the bus ----------------------------------------------------------------------------

    def next_due(self) -> float:
        return min((s.due for s in self.slots), default=math.inf)

    def frames_due(self, now: float) -> list[can.Message]:
        """Every cyclic frame whose slot is at or before ``now``, in slot order."""
        self._advance(now)
        out: list[can.Message] = []
        t = self.story_time(now)
        mode = self.story.mode(t)
        for slot in sorted((s for s in self.slots if s.due <= now), key=lambda s: s.due):
            if slot.due < now - slot.cycle:
                missed = int((now - slot.due) // slot.cycle)
                self.late_slots += missed
                slot.due += missed * slot.cycle
            slot.due += slot.cycle
            if not talks(slot.message, slot.cycle, mode):
                self.silent_slots += 1
                continue
            out.append(self._frame(slot, now))
        return out

    def _frame(self, slot: _Slot, now: float) -> can.Message:
        message = slot.message
        enc = self.encoder
        state = {b.path: self.value(b.path, now) for b in enc.bindings_of(message)}
        derive = DERIVED.get(message.name)
        raw: dict[str, float] = derive(_Context(self, now, self._rng)) if derive else {}
        for s in message.signals:
            v = self.value(s.name, now)
            if isinstance(v, float) and not isinstance(v, bool):
                raw[s.name] = v
        for sig in enc.counter_signals(message):
            raw[sig.name] = float(slot.count % counter_modulus(sig))
        mux = slot.muxes[slot.count % len(slot.muxes)] if slot.muxes else None
        slot.count += 1
        data = enc.encode(message, state, mux=mux, raw=raw)
        self.frames_sent[message.name] += 1
        return enc.to_message(message, data, is_rx=False)

    # --- the van's answers --------------------------------------------------------------------

    def is_request(self, msg: can.Message) -> bool:
        m = self.requests.message
        return (
            not msg.is_error_frame
            and not msg.is_remote_frame
            and msg.arbitration_id == m.frame_id
            and bool(msg.is_extended_id) == bool(m.is_extended_frame)
        )

    def on_request(
        self, msg: can.Message, now: float
    ) -> tuple[RequestOutcome, list[can.Message]] | None:
        """Answer a TCU request frame; None for any other frame."""
        if not self.is_request(msg):
            return None
        req = self.requests
        data = bytes(msg.data)
        try:
            fields = req.message.decode(data, decode_choices=False, scaling=True)
        except Exception as e:  # noqa: BLE001 - cantools raises several kinds on bad bytes
            self.requests_ignored["undecodable"] += 1
            return RequestOutcome(
                t=now, name="undecodable", counter=None, accepted=False, detail=str(e)[:120]
            ), []
        counter = int(fields[req.counter_signal]) if req.counter_signal else None
        kind = int(fields[req.type_signal])
        name = self._request_names.get(kind, f"type {kind}")
        self.requests_seen[name] += 1
        if counter is not None and self._last_request == (counter, data):
            self.repeated_requests += 1
            return RequestOutcome(
                t=now, name=name, counter=counter, accepted=False, detail="repeated counter"
            ), []
        self._last_request = (counter, data)
        argument = float(fields[req.argument_signal]) if req.argument_signal else 0.0
        handler = self._HANDLERS.get(name)
        frames: list[can.Message] = []
        if handler is None:
            accepted, detail = False, "unknown request type"
        else:
            accepted, detail, frames = handler(self, argument, now)
        (self.requests_done if accepted else self.requests_ignored)[name] += 1
        return RequestOutcome(
            t=now, name=name, counter=counter, accepted=accepted, detail=detail
        ), frames

    def _lock(self, argument: float, now: float) -> Answer:
        not_closed = [p for p in c.DOORS if self.value(p, now) is not False]
        if not_closed:
            names = ", ".join(p.removeprefix("Vehicle.") for p in not_closed)
            return False, f"not all doors closed ({names})", []
        return True, "locked", self._set_many({c.LOCKED: True}, now)

    def _unlock(self, argument: float, now: float) -> Answer:
        return True, "unlocked", self._set_many({c.LOCKED: False}, now)

    def charging_problems(self, now: float) -> list[str]:
        """Why the charger would not (or no longer) charge; empty when it may."""
        v = self.value
        problems = [
            text
            for ok, text in (
                (v(c.PLUG_CONNECTED, now) is True, "plug not connected"),
                (v(c.PLUG_LOCKED, now) is True, "plug not locked"),
                (v(c.INFRA_CONNECTED, now) is True, "no infrastructure"),
                (v(c.GEAR, now) == "P", "gear not P"),
                (v(c.BONNET, now) is False, "bonnet not closed"),
            )
            if not ok
        ]
        return problems

    def _start_charging(self, argument: float, now: float) -> Answer:
        problems = self.charging_problems(now)
        if problems:
            return False, ", ".join(problems), []
        infra = self.value(c.INFRA_TYPE, now)
        power = CHARGING_POWER_KW.get(infra if isinstance(infra, str) else "", 11.0)
        self._charging_since = self._charged_until = now
        frames = self._set_many({c.CHARGING_STATUS: "CHARGING", c.CHARGING_POWER: power}, now)
        return True, f"charging at {power:g} kW", frames

    def _stop_charging(self, argument: float, now: float) -> Answer:
        self._charging_since = None
        frames = self._set_many({c.CHARGING_STATUS: "IDLE", c.CHARGING_POWER: 0.0}, now)
        return True, "charging stopped", frames

    def _set_departure(self, argument: float, now: float) -> Answer:
        if not 0 <= argument < 1440:
            return False, f"departure {argument:g} min is not a time of day", []
        frames = self._set_many({c.DEPARTURE_TIME: float(argument)}, now)
        hhmm = f"{int(argument) // 60:02d}:{int(argument) % 60:02d}"
        return True, f"departure {hhmm} UTC", frames

    def _start_preconditioning(self, argument: float, now: float) -> Answer:
        frames = self._set_many(
            {"HVAC_PrecondActive": 1.0, "HVAC_HeaterPower": PRECONDITIONING_HEATER_KW}, now
        )
        return True, "preconditioning running", frames

    def _stop_preconditioning(self, argument: float, now: float) -> Answer:
        frames = self._set_many({"HVAC_PrecondActive": 0.0, "HVAC_HeaterPower": 0.0}, now)
        return True, "preconditioning stopped", frames

    _HANDLERS: Mapping[str, Callable[[VehicleSim, float, float], Answer]] = {
        "lock": _lock,
        "unlock": _unlock,
        "start_charging": _start_charging,
        "stop_charging": _stop_charging,
        "set_departure": _set_departure,
        "start_preconditioning": _start_preconditioning,
        "stop_preconditioning": _stop_preconditioning,
    }

    def _advance(self, now: float) -> None:
        """Run a charge the simulator started: SoC up with the power, end when due."""
        if self._charging_since is None:
            return
        if self.value(c.CHARGING_STATUS, now) != "CHARGING":
            self._charging_since = None
            return
        if self.charging_problems(now):
            self._charging_since = None
            self._set_many({c.CHARGING_STATUS: "IDLE", c.CHARGING_POWER: 0.0}, now)
            return
        dt = now - self._charged_until
        self._charged_until = now
        soc = self.value(c.SOC, now)
        power = self.value(c.CHARGING_POWER, now)
        cap = self.value("BMS_UsableCapacity", now)
        target = self.value("OBC_TargetSoC", now)
        if not all(isinstance(x, float) for x in (soc, power, cap)) or dt <= 0:
            return
        assert isinstance(soc, float) and isinstance(power, float) and isinstance(cap, float)
        goal = target if isinstance(target, float) else 100.0
        soc = min(goal, soc + power * dt * self.speed / 3600.0 / cap * 100.0)
        if soc >= goal:
            self._charging_since = None
            self._set_many({c.SOC: goal, c.CHARGING_STATUS: "COMPLETE", c.CHARGING_POWER: 0.0}, now)
        else:
            self._overlay[c.SOC] = (soc, self.story_time(now))

    def counters(self) -> dict[str, Any]:
        return {
            "frames_sent": sum(self.frames_sent.values()),
            "requests_seen": dict(self.requests_seen),
            "requests_done": dict(self.requests_done),
            "requests_ignored": dict(self.requests_ignored),
            "repeated_requests": self.repeated_requests,
            "late_slots": self.late_slots,
            "silent_slots": self.silent_slots,
            "skipped_fd_messages": list(self.skipped_fd),
        }


def _unique(frames: Iterable[can.Message]) -> list[can.Message]:
    seen: dict[int, can.Message] = {}
    for f in frames:
        seen[f.arbitration_id] = f
    return list(seen.values())


_TRUE = {"true", "1", "yes", "on", "open", "locked"}
_FALSE = {"false", "0", "no", "off", "closed", "unlocked"}
_NONE = {"none", "null", "unknown", "-"}


def parse_value(key: str, text: str) -> Value | None:
    """The value ``text`` means for ``key``'s kind; ConfigError with what was expected."""
    word = text.strip()
    low = word.lower()
    if low in _NONE:
        return None
    spec = CATALOGUE.get(key)
    if spec is not None and spec.kind == "bool":
        if low in _TRUE:
            return True
        if low in _FALSE:
            return False
        raise ConfigError(f"{key}: {word!r} is not true or false")
    if spec is not None and spec.kind == "enum":
        for v in spec.values:
            if v.lower() == low:
                return v
        raise ConfigError(f"{key}: {word!r} is not one of {', '.join(spec.values)}")
    if spec is not None and key == c.DEPARTURE_TIME and ":" in word:
        hh, _, mm = word.partition(":")
        if hh.isdigit() and mm.isdigit() and int(hh) < 24 and int(mm) < 60:
            return float(int(hh) * 60 + int(mm))
    try:
        number = float(word)
    except ValueError:
        raise ConfigError(f"{key}: {word!r} is not a number") from None
    if not math.isfinite(number):
        raise ConfigError(f"{key}: {word!r} is not a finite number")
    return number


@dataclass(slots=True)
class DriverCounts:
    frames_sent: int = 0
    send_errors: int = 0
    recv_errors: int = 0
    encode_errors: int = 0
    other_frames: int = 0


class SimDriver(Running):
    """One thread: waits for request frames until the next slot, answers, sends what is due."""

    def __init__(
        self,
        sim: VehicleSim,
        bus: can.BusABC,
        *,
        clock: Callable[[], float] = time.monotonic,
        on_report: Callable[[str], None] | None = None,
        send_timeout: float = 0.05,
        max_wait: float = 0.05,
    ) -> None:
        self.sim = sim
        self.bus = bus
        self.clock = clock
        self.on_report = on_report
        self.send_timeout = send_timeout
        self.max_wait = max_wait
        self.counts = DriverCounts()
        self.outcomes: list[RequestOutcome] = []
        self.lock = threading.Lock()
        self._t0 = clock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    @property
    def now(self) -> float:
        return self.clock() - self._t0

    def start(self) -> None:
        if self._thread is not None:
            raise BusError("vehicle simulator already running")
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="vehicle-sim", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def set(self, key: str, text: str) -> str:
        """``set KEY VALUE`` from the prompt; returns the resolved key."""
        with self.lock:
            now = self.now
            resolved = self.sim.resolve_key(key)
            frames = self.sim.set_text(resolved, text, now)
        self._send(frames)
        return resolved

    def release(self, key: str) -> str:
        with self.lock:
            now = self.now
            resolved = self.sim.resolve_key(key)
            frames = self.sim.release(resolved, now)
        self._send(frames)
        return resolved

    def show(self) -> list[tuple[str, Value | None, bool]]:
        with self.lock:
            now = self.now
            over = self.sim.overlaid()
            return [(p, v, p in over) for p, v in self.sim.state(now).items()]

    def _run(self) -> None:
        sim = self.sim
        while not self._stop.is_set():
            with self.lock:
                wait = min(self.max_wait, max(0.0, sim.next_due() - self.now))
            try:
                msg = self.bus.recv(wait)
            except (can.CanError, OSError, ValueError) as e:
                self.counts.recv_errors += 1
                self._report(f"warning: receive failed: {e}")
                self._stop.wait(self.max_wait)
                continue
            frames: list[can.Message] = []
            try:
                with self.lock:
                    now = self.now
                    if msg is not None:
                        answer = sim.on_request(msg, now)
                        if answer is None:
                            self.counts.other_frames += 1
                        else:
                            outcome, frames = answer
                            self.outcomes.append(outcome)
                            self._report(str(outcome))
                    frames += sim.frames_due(now)
            except ConfigError as e:
                self.counts.encode_errors += 1
                if self.counts.encode_errors <= 5:
                    self._report(f"error: {e}")
            self._send(frames)

    def _send(self, frames: list[can.Message]) -> None:
        for frame in frames:
            try:
                self.bus.send(frame, self.send_timeout)
            except (can.CanError, OSError, ValueError) as e:
                self.counts.send_errors += 1
                if self.counts.send_errors <= 5:
                    self._report(f"warning: frame {frame.arbitration_id:#x} not sent: {e}")
            else:
                self.counts.frames_sent += 1

    def _report(self, text: str) -> None:
        if self.on_report is not None:
            self.on_report(text)


PROMPT_HELP = """commands:
  set PATH VALUE   set a signal (catalogue path, a unique tail like DriverSide.IsLocked,
                   or a DBC signal name); VALUE: true/false, a number, an enum value,
                   HH:MM for the departure time, or none
  release PATH     back to the storyline's value
  show             every catalogue signal (* = set here or by an answered request)
  quit             stop"""


def run_prompt(
    driver: SimDriver,
    stream: IO[str],
    out: IO[str],
    *,
    prompt: str = "van> ",
    interactive: bool = False,
) -> bool:
    """Read commands until ``quit`` or end of input; True when the user asked to quit."""
    while True:
        if interactive:
            out.write(prompt)
            out.flush()
        line = stream.readline()
        if not line:
            return False
        words = line.split()
        if not words:
            continue
        command, args = words[0].lower(), words[1:]
        try:
            if command in ("quit", "exit"):
                return True
            if command == "help":
                print(PROMPT_HELP, file=out)
            elif command == "show":
                for path, value, mine in driver.show():
                    mark = "*" if mine else " "
                    print(f"{mark} {path} = {_show(value)}", file=out)
            elif command == "set" and len(args) == 2:
                key = driver.set(args[0], args[1])
                print(f"{key} = {args[1]}", file=out)
            elif command == "release" and len(args) == 1:
                key = driver.release(args[0])
                print(f"{key} released", file=out)
            else:
                print(f"error: unknown command {line.strip()!r}; try help", file=out)
        except ConfigError as e:
            print(f"error: {e}", file=out)
        with contextlib.suppress(OSError, ValueError):
            out.flush()


def _show(value: Value | None) -> str:
    if value is None:
        return "unknown"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:g}"
    return value
