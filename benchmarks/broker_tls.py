"""What mutual TLS with the fleet ACL costs the demo, next to the same Mosquitto in plain MQTT.

The reference demo (three traces, 978 records, signed batches, acks back) runs through a
Mosquitto child process twice per round, alternating: once on a plain listener, once on the
fleet listener (client certificates required, the CN as username, the ACL; the TCU and the
backend each with its own certificate). Each report's own wall time is taken (the run
through the broker, without starting it or making the CA). Both must store every record.
The last line is the ratio of the medians, TLS over plain.

Run: python benchmarks/broker_tls.py [rounds]
"""

from __future__ import annotations

import statistics
import sys
import tempfile
from pathlib import Path

from cloud_stub.broker import MosquittoProcess
from tcu.cli.demo import run_mutual_tls
from tcu.compose.online import OnlineOptions, OnlineReport, reference_traces, run_online
from tcu.runtime.mqtt import BrokerURL


def plain(traces: tuple[Path, ...]) -> OnlineReport:
    with (
        tempfile.TemporaryDirectory(prefix="bench-plain-") as tmp,
        MosquittoProcess(Path(tmp) / "mosquitto") as broker,
    ):
        return run_online(OnlineOptions(traces=traces, broker=BrokerURL.parse(broker.url)))


def check(name: str, report: OnlineReport) -> float:
    if report.lost != 0 or report.stored != report.records_produced:
        raise SystemExit(f"{name}: stored {report.stored} of {report.records_produced}")
    return report.wall_s


def main() -> None:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    traces = reference_traces()
    walls: dict[str, list[float]] = {"plain": [], "mutual TLS": []}
    records = 0
    for n in range(rounds):
        for name, run in (
            ("plain", lambda: plain(traces)),
            ("mutual TLS", lambda: run_mutual_tls(traces, lambda s: None)),
        ):
            report = run()
            walls[name].append(check(name, report))
            records = report.records_produced
            print(
                f"round {n + 1} {name:<10} {report.wall_s:6.2f} s  {report.messages_sent} batches"
            )
    for name, values in walls.items():
        print(f"{name:<10} median {statistics.median(values):.2f} s for {records} records, 0 lost")
    ratio = statistics.median(walls["mutual TLS"]) / statistics.median(walls["plain"])
    print(f"mutual TLS / plain wall time: {ratio:.2f}x")


if __name__ == "__main__":
    main()
