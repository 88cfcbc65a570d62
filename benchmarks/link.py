"""How much faster than real time the link model runs.

A 24-hour day of the van: parked in Oslo, a drive over the Svinesund border to
Gothenburg, a coverage gap every hour, seeded random gaps on top, and a 40-minute dead
zone. A 300-byte record goes up every 5 s of vehicle time and a 40-byte acknowledgement
comes down. Three drivers run the same model side by side:

- event-driven: only the record times, the model jumps between its own wake-ups;
- tick 1 s: a naive driver that advances the model every vehicle second as well;
- wake-ups only: no traffic, just `next_wakeup()` jumps (what idle time costs).

The first two must produce the same summary. The last line is the event-driven ratio
of vehicle time to wall time.

Run: python benchmarks/link.py
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from tcu.link.sim import Link

DAY_S = 24 * 3600.0
RECORD_EVERY_S = 5.0
RECORD_BYTES = 300
ACK_BYTES = 40
REPEATS = 3


def config() -> dict[str, Any]:
    hourly = [
        {"name": f"hourly-{h:02d}", "start": h * 3600 + 1500, "end": h * 3600 + 1500 + 180}
        for h in range(24)
    ]
    return {
        "home_plmn": "242-01",
        "seed": 11,
        "route": [
            {"t": 0, "lat": 59.91, "lon": 10.75},
            {"t": 6 * 3600, "lat": 59.91, "lon": 10.75},
            {"t": 7 * 3600, "lat": 59.10, "lon": 11.27},
            {"t": 9 * 3600, "lat": 57.71, "lon": 11.97},
        ],
        "dead_zones": [*hourly, {"name": "forest", "start": 15 * 3600, "end": 15 * 3600 + 2400}],
        "random_gaps": {"seed": 11, "per_hour": 1.0, "mean_s": 90.0},
    }


def traffic(link: Link, t: float) -> None:
    if link.send(RECORD_BYTES, t) is not None:
        link.receive(ACK_BYTES, t)


def event_driven() -> Link:
    link = Link.from_dict(config())
    t = 0.0
    while t + RECORD_EVERY_S <= DAY_S:
        t += RECORD_EVERY_S
        traffic(link, t)
    link.advance(DAY_S)
    return link


def ticking() -> Link:
    link = Link.from_dict(config())
    for second in range(1, int(DAY_S) + 1):
        t = float(second)
        link.advance(t)
        if second % int(RECORD_EVERY_S) == 0:
            traffic(link, t)
    return link


def wakeups_only() -> Link:
    link = Link.from_dict(config())
    while (due := link.next_wakeup()) is not None and due <= DAY_S:
        link.advance(due)
    link.advance(DAY_S)
    return link


def best_of(run: Callable[[], Link]) -> tuple[float, Link]:
    best = float("inf")
    link = None
    for _ in range(REPEATS):
        started = time.perf_counter()
        link = run()
        best = min(best, time.perf_counter() - started)
    assert link is not None
    return best, link


def main() -> None:
    rows = []
    summaries = {}
    for name, run in (
        ("event-driven", event_driven),
        ("tick 1 s", ticking),
        ("wake-ups only", wakeups_only),
    ):
        wall, link = best_of(run)
        summary = link.summary()
        summaries[name] = summary
        sends = summary["sends"]
        rows.append((name, wall, DAY_S / wall, sends["ok"], sends["unregistered"]))

    header = f"{'driver':<14} {'vehicle s':>9} {'wall s':>8} {'virtual/wall':>13}"
    print(f"{header} {'transfers':>9} {'refused':>7}")
    for name, wall, ratio, ok, refused in rows:
        print(f"{name:<14} {DAY_S:>9.0f} {wall:>8.4f} {ratio:>13,.0f} {ok:>9} {refused:>7}")
    base = rows[1][1]
    print(f"event-driven vs tick 1 s: {base / rows[0][1]:.1f}x faster")
    same = summaries["event-driven"] == summaries["tick 1 s"]
    print(f"same summary for event-driven and tick 1 s: {'yes' if same else 'NO'}")

    day = summaries["event-driven"]
    print(
        "day: home {:.0f} s, roaming {:.0f} s, unregistered {:.0f} s, "
        "reconnects {}, PLMNs {}".format(
            day["time_home_s"],
            day["time_roaming_s"],
            day["time_unregistered_s"],
            day["reconnects"],
            ", ".join(day["plmns_seen"]),
        )
    )
    home, service = day["bytes_billed"]["home_plan"], day["bytes_billed"]["service"]
    print(
        f"billed: home plan {home['up']} B up / {home['down']} B down,"
        f" service {service['up']} B up / {service['down']} B down"
    )
    print(f"virtual/wall ratio: {rows[0][2]:.0f}")


if __name__ == "__main__":
    main()
