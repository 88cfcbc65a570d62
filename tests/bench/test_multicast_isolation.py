"""udp_multicast buses opened by tcu hear their own group only, not every group on the port.

Linux hands a socket bound to a port the datagrams of every group joined on that port by
any socket, unless ``IP_MULTICAST_ALL`` is off. Two benches on one machine that share
python-can's default port would then hear each other's vans. Each test uses its own
group and a port picked for it.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import can
import pytest

from tcu.runtime.bus import IP_MULTICAST_ALL, BusSpec, close_bus, open_bus
from tests.helpers import REPO

pytestmark = pytest.mark.skipif(IP_MULTICAST_ALL is None, reason="Linux-only socket option")


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def groups() -> tuple[str, str]:
    base = os.getpid() % 200 + 20
    return f"239.74.{base}.11", f"239.74.{base}.12"


def test_a_tcu_bus_drops_other_groups_on_its_port() -> None:
    port = free_udp_port()
    mine, other = groups()
    bus = open_bus(BusSpec(interface="udp_multicast", channel=mine, options={"port": port}))
    plain = can.Bus(interface="udp_multicast", channel=mine, port=port)  # python-can as is
    neighbour = can.Bus(interface="udp_multicast", channel=other, port=port)
    peer = can.Bus(interface="udp_multicast", channel=mine, port=port)
    try:
        neighbour.send(can.Message(arbitration_id=0x222, data=[2], is_extended_id=False))
        heard = plain.recv(2.0)
        assert heard is not None and heard.arbitration_id == 0x222, "the kernel mixes groups"
        assert bus.recv(0.5) is None, "the other group's frame reached the isolated bus"
        peer.send(can.Message(arbitration_id=0x111, data=[1], is_extended_id=False))
        got = bus.recv(2.0)
        assert got is not None and got.arbitration_id == 0x111
    finally:
        for b in (plain, neighbour, peer):
            b.shutdown()
        close_bus(bus)


@pytest.mark.slow
def test_pacing_benchmark_completes_beside_another_bus(tmp_path: Path) -> None:
    """It crashed with IndexError when another bench's frames reached its receiver."""
    port = free_udp_port()
    mine, other = groups()
    stop = threading.Event()
    neighbour = can.Bus(interface="udp_multicast", channel=other, port=port)

    def chatter() -> None:
        n = 0
        while not stop.is_set():
            data = (10**6 + n).to_bytes(4, "big") + bytes(4)
            neighbour.send(can.Message(arbitration_id=0x105, data=data, is_extended_id=False))
            n += 1
            time.sleep(0.002)

    thread = threading.Thread(target=chatter, daemon=True)
    thread.start()
    try:
        p = subprocess.run(
            [
                *(sys.executable, str(REPO / "benchmarks" / "pacing.py")),
                *("--seconds", "2", "--rate", "400", "--group", mine, "--port", str(port)),
            ],
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
            cwd=tmp_path,
        )
    finally:
        stop.set()
        thread.join()
        neighbour.shutdown()
    assert p.returncode == 0, p.stderr[-2000:]
    assert "pacing drift ratio tcu/can.player:" in p.stdout
    for line in p.stdout.splitlines():
        if " received (" in line:
            assert "(0 lost" in line, line
