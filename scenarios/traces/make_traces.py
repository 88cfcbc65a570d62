"""Writes the small traces the shipped scenarios replay (deterministic: same seed, same bytes).

    python scenarios/traces/make_traces.py

``quiet_bus.blf``: the van parked and plugged into a wallbox (charging allowed on every
count); the bus is awake for 12 s, asleep from 12 s to 40 s (every signal goes stale),
awake again from 40 s to 50 s.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from tcu.storyline.generator import load_reference_encoder, write_trace
from tcu.storyline.van import start
from tcu.vehicle import catalogue as c

HERE = Path(__file__).resolve().parent
SEED = 7


def quiet_bus() -> None:
    b = start(
        "quiet_bus",
        "Parked at a wallbox; the bus sleeps for 28 s",
        datetime(2026, 1, 14, 18, 0, tzinfo=UTC),
        {
            c.PLUG_CONNECTED: True,
            c.PLUG_LOCKED: True,
            c.INFRA_CONNECTED: True,
            c.INFRA_TYPE: "WALLBOX",
            c.IGNITION: "OFF",
            c.SOC: 55.0,
        },
    )
    b.bus(0.0, "awake")
    b.bus(12.0, "asleep")
    b.bus(40.0, "awake")
    story = b.build(50.0)
    write_trace(story, load_reference_encoder(), HERE / "quiet_bus.blf", "blf", seed=SEED)


if __name__ == "__main__":
    quiet_bus()
