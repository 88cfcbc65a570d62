"""The recorder's downsampling: bounded buckets that keep every peak."""

from __future__ import annotations

import math

from tcu.plot.signals import DEFAULT_SIGNALS, resolve
from tcu.plot.timeline import Series, Timeline
from tcu.vehicle import catalogue as cat


def test_series_stays_bounded_and_keeps_peaks() -> None:
    s = Series("Vehicle.Speed", max_buckets=256)
    n = 200_000
    for i in range(n):
        t = i * 0.01
        v = 100.0 if i == 123_457 else (-50.0 if i == 7 else math.sin(t))
        s.add(t, v)
    assert len(s.buckets) <= 256
    ts, vs = s.points()
    assert max(vs) == 100.0 and min(vs) == -50.0
    assert ts == sorted(ts)
    assert ts[0] == 0.0 and ts[-1] == (n - 1) * 0.01


def test_series_sparse_changes_are_exact() -> None:
    s = Series("Vehicle.Speed", max_buckets=64)
    for t, v in ((0.0, 1.0), (10.0, 2.0), (3600.0, 3.0)):
        s.add(t, v)
    assert s.points() == ([0.0, 10.0, 3600.0], [1.0, 2.0, 3.0])


def test_unknown_values_break_the_line() -> None:
    s = Series("Vehicle.Speed")
    s.add(0.0, 1.0)
    s.add(5.0, math.nan)
    s.add(9.0, 2.0)
    assert s.as_dict()["v"] == [1.0, None, 2.0]


def test_aliases_and_defaults() -> None:
    assert resolve(["soc", cat.SPEED, "soc"]) == [cat.SOC, cat.SPEED]
    defaults = resolve([])
    assert len(defaults) > len(DEFAULT_SIGNALS)  # doors and tyres expand
    assert set(cat.TYRES) <= set(defaults) and set(cat.DOORS) <= set(defaults)


def test_sessions_become_spans() -> None:
    tl = Timeline(signals=[], series={}, end=100.0)
    for t, frm, to, ev in (
        (1.0, "idle", "requested", "auto"),
        (1.0, "requested", "charging", "allowed"),
        (50.0, "charging", "complete", "complete"),
    ):
        tl.transitions.append(
            {
                "t": t,
                "boot": 0,
                "service": "charging",
                "session_id": "charging-1",
                "from_state": frm,
                "to_state": to,
                "event": ev,
                "reason": None,
            }
        )
    tl.transitions.append({**tl.transitions[0], "t": 80.0, "session_id": "charging-2"})
    spans = tl.sessions()
    assert [(s["start"], s["end"], s["state"], s["active"]) for s in spans] == [
        (1.0, 50.0, "complete", 1.0),
        (80.0, 100.0, "requested", None),
    ]
    assert spans[1]["open"] is True
