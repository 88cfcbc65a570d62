"""The host's sinks hear a whole replay: boots, records, emits, batches, acks, the link."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from tcu.can.setup import TRACES
from tcu.compose.replay import ReplayOptions, replay_file
from tcu.events import Emit
from tcu.link.sim import LinkConfig
from tcu.runtime.assembly import Tcu
from tcu.runtime.host import LinkState, Sink


class Everything(Sink):
    def __init__(self) -> None:
        self.heard: Counter[str] = Counter()
        self.records = 0
        self.sent = 0
        self.deleted = 0
        self.links: list[LinkState] = []

    def booted(self, tcu: Tcu, now: float) -> None:
        self.heard["booted"] += 1

    def stored(self, records: tuple[Any, ...], dropped: dict[str, int], now: float) -> None:
        self.records += len(records)

    def emitted(self, emit: Emit, now: float) -> None:
        self.heard[emit.kind] += 1

    def batch_sent(self, records: int, nbytes: int, now: float) -> None:
        self.sent += records

    def acked(self, epoch: int, sequence: int, deleted: int, now: float) -> None:
        self.deleted += deleted

    def link_changed(self, link: LinkState, now: float) -> None:
        self.links.append(link)


def test_a_cross_border_replay_is_heard_whole(tmp_path: Path) -> None:
    sink = Everything()
    report = replay_file(
        ReplayOptions(
            trace=TRACES / "cross_border.log",
            link=LinkConfig(home_plmn="242-01"),
            workdir=tmp_path,
            sinks=(sink,),
        )
    )
    telemetry, backend = report.extra["telemetry"], report.extra["backend"]
    assert sink.heard["booted"] == 1
    assert sink.records == telemetry["records_produced"] > 0
    assert sink.deleted == backend["records_stored"] == sink.records
    assert sink.sent >= sink.records  # resent batches count again
    assert sink.heard["verdict"] == len(report.extra["verdicts"])
    assert sink.heard["downlink"] == 1  # the activation
    roaming = [s for s in sink.links if s.roaming]
    assert sink.links[0].registered is False or sink.links[0].plmn == "242-01"
    assert roaming and roaming[0].plmn == "240-08" and roaming[0].country == "SE"
