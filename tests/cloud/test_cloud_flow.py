"""The README's backend flow, typed in its order, and ``cloud-stub serve`` as a user sees it.

Each program runs as a subprocess, as a user runs it: ``cloud-stub serve``, ``tcu provision``,
``cloud-stub activate``, ``tcu replay --external-backend``, ``cloud-stub stats``.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from cloud_stub.broker import MosquittoProcess, free_port, wait_for_broker
from cloud_stub.testing import VehicleDouble
from tests.helpers import REPO

VIN = "XECELLVAN00000001"
TRACE = REPO / "can_traces" / "city_delivery_bakery.asc"
WAIT_S = 30.0
ENV = {**os.environ, "PYTHONUNBUFFERED": "1"}


def program(name: str) -> list[str]:
    module = {"tcu": "tcu.cli.main", "cloud-stub": "cloud_stub.cli"}[name]
    return [sys.executable, "-m", module]


def typed(cwd: Path, name: str, *argv: str) -> subprocess.CompletedProcess[str]:
    """One command line, as typed in `cwd`; bounded so a hang fails instead of waiting."""
    return subprocess.run(
        [*program(name), *argv],
        cwd=cwd,
        capture_output=True,
        text=True,
        env=ENV,
        timeout=120,
        check=False,
    )


def stats(cwd: Path, data: str) -> dict[str, Any]:
    done = typed(cwd, "cloud-stub", "stats", "--data", data)
    assert done.returncode == 0, done.stderr
    report: dict[str, Any] = json.loads(done.stdout)
    return report


def until(condition: Callable[[], bool], what: str) -> None:
    """Poll `condition` (a liveness bound, not a speed requirement)."""
    deadline = time.monotonic() + WAIT_S
    while not condition():
        assert time.monotonic() < deadline, f"not within {WAIT_S} s: {what}"
        time.sleep(0.1)


class Serve:
    """``cloud-stub serve ...`` in the background; `stop` sends SIGTERM and returns stderr."""

    def __init__(self, cwd: Path, *argv: str) -> None:
        self.process = subprocess.Popen(
            [*program("cloud-stub"), "serve", *argv],
            cwd=cwd,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=ENV,
        )
        assert self.process.stdout is not None
        self.banner = self.process.stdout.readline()

    def stop(self) -> tuple[int, str, str]:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        out, err = self.process.communicate(timeout=30)
        return self.process.returncode, out, err


@pytest.fixture
def serving(tmp_path: Path) -> Iterator[Callable[..., Serve]]:
    started: list[Serve] = []

    def start(*argv: str) -> Serve:
        serve = Serve(tmp_path, *argv)
        started.append(serve)
        return serve

    yield start
    for serve in started:
        if serve.process.poll() is None:
            serve.process.kill()
            serve.process.communicate(timeout=30)


@pytest.mark.parametrize("broker", ["mosquitto", "embedded"])
def test_the_readme_backend_flow_stores_records(
    tmp_path: Path, request: pytest.FixtureRequest, serving: Callable[..., Serve], broker: str
) -> None:
    """README "The backend", in its order; the activation is sent before the TCU connects.

    With ``--broker`` (Mosquitto, as the README's first line), or without (``serve`` runs
    amqtt embedded).
    """
    if broker == "mosquitto":
        port = request.getfixturevalue("mosquitto_broker").port
        serve = serving("--broker", f"mqtt://127.0.0.1:{port}", "--data", "backend/")
    else:
        port = free_port()
        serve = serving("--port", str(port), "--data", "backend/")
    url = f"mqtt://127.0.0.1:{port}"
    assert serve.banner.startswith(f"cloud-stub: serving {url}"), serve.banner

    provisioned = typed(
        tmp_path, "tcu", "provision", "--vin", VIN, "--keystore", "keys/", "--backend-data",
        "backend/",
    )  # fmt: skip
    assert provisioned.returncode == 0, provisioned.stderr
    activated = typed(
        tmp_path, "cloud-stub", "activate", VIN, "--data", "backend/", "--broker", url
    )
    assert activated.returncode == 0, activated.stderr
    assert "activate cmd-1 (counter 1) waits for the vehicle" in activated.stdout

    replay = typed(
        tmp_path, "tcu", "replay", str(TRACE), "--broker", url, "--external-backend",
        "--keystore", "keys/", "--json",
    )  # fmt: skip
    assert replay.returncode == 0, replay.stderr
    summary = json.loads(replay.stdout)
    produced = summary["records_produced"]
    assert produced > 0
    assert summary["records_acked"] == produced
    assert summary["warnings"] == []

    # cloud-stub stats, while serve runs: the records and the ingest counters are current
    until(
        lambda: (stats(tmp_path, "backend/")["ingest"] or {}).get("records_stored") == produced,
        "the ingest counters in cloud-stub stats",
    )
    report = stats(tmp_path, "backend/")
    assert [(p["vin"], p["stored"], p["acked"]) for p in report["progress"]] == [
        (VIN, produced, produced)
    ]
    assert report["downlinks"] == {
        VIN: [{"command_id": "cmd-1", "name": "activate", "state": "answered"}]
    }
    assert report["downlink_refusals"] == {VIN: []}
    code, _, err = serve.stop()
    assert code == 0
    assert "Traceback" not in err


def test_a_replay_whose_service_was_never_activated_says_so_and_makes_its_workdir(
    tmp_path: Path, mosquitto_broker: MosquittoProcess, serving: Callable[..., Serve]
) -> None:
    url = f"mqtt://127.0.0.1:{mosquitto_broker.port}"
    serving("--broker", url, "--data", "backend")
    assert typed(tmp_path, "tcu", "provision", "--vin", VIN, "--keystore", "keys").returncode == 0

    replay = typed(
        tmp_path, "tcu", "replay", str(TRACE), "--broker", url, "--external-backend",
        "--keystore", "keys", "--workdir", "work/not/there/yet", "--json",
    )  # fmt: skip
    assert (tmp_path / "work/not/there/yet/outbox.sqlite").is_file(), replay.stderr
    summary = json.loads(replay.stdout)
    (warning,) = summary["warnings"]
    assert warning.startswith(f"service never active: the backend did not activate {VIN}")
    assert f"warning: {warning}" in replay.stderr
    assert summary["records_produced"] == 0


def test_provision_and_cloud_stub_share_one_default_data_directory(tmp_path: Path) -> None:
    assert typed(tmp_path, "tcu", "provision", "--vin", VIN).returncode == 0
    report = stats(tmp_path, "cloud-stub-data")
    done = typed(tmp_path, "cloud-stub", "stats")
    assert [v["vin"] for v in report["vehicles"]] == [VIN]
    assert json.loads(done.stdout) == report


def test_directories_a_command_writes_into_are_created(tmp_path: Path) -> None:
    """Every program creates what it writes into (``--workdir`` has its own test above)."""
    provisioned = typed(
        tmp_path, "tcu", "provision", "--vin", VIN, "--keystore", "a/keys",
        "--backend-data", "b/backend",
    )  # fmt: skip
    assert provisioned.returncode == 0, provisioned.stderr
    (tmp_path / "vehicle.pub").write_bytes((tmp_path / "a/keys/vehicle.pub").read_bytes())
    registered = typed(tmp_path, "cloud-stub", "register", VIN, "vehicle.pub", "--data", "c/d")
    assert registered.returncode == 0, registered.stderr
    replayed = typed(tmp_path, "tcu", "replay", str(TRACE), "--out-trace", "e/f/out.asc")
    assert replayed.returncode == 0, replayed.stderr
    assert (tmp_path / "b/backend/registry.sqlite").is_file()
    assert (tmp_path / "c/d/registry.sqlite").is_file()
    assert (tmp_path / "e/f/out.asc").is_file()


def test_stats_on_a_missing_data_directory_is_refused(tmp_path: Path) -> None:
    done = typed(tmp_path, "cloud-stub", "stats", "--data", "nowhere")
    assert done.returncode == 2
    assert done.stderr.startswith("error: --data nowhere: no such directory")
    assert not (tmp_path / "nowhere").exists()


def _hang_up_during_connect(port: int, version: int, cut: int = 0) -> None:
    """A CONNECT (cut short by `cut` bytes), then a reset before the broker answers."""
    body = b"\x00\x04MQTT" + bytes([version]) + b"\x02\x00\x3c"
    body += (b"\x00" if version == 5 else b"") + b"\x00\x01x"
    packet = bytes([0x10, len(body)]) + body
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.sendall(packet[: len(packet) - cut])


@pytest.mark.parametrize("verbose", [False, True])
def test_a_client_hanging_up_prints_no_library_traceback(
    tmp_path: Path, serving: Callable[..., Serve], verbose: bool
) -> None:
    """amqtt printed "Errno 107" and "Connection lost" tracebacks for each of these."""
    port = free_port()
    serve = serving("--port", str(port), "--data", "cloud", *(["-v"] if verbose else []))
    wait_for_broker("127.0.0.1", port, timeout=WAIT_S)
    for version, cut in ((5, 0), (5, 3), (4, 0), (4, 3)):
        _hang_up_during_connect(port, version, cut)
    # the broker still serves
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id="after")
    assert client.connect("127.0.0.1", port) == 0
    client.disconnect()

    # and stops while a client is half-way through its CONNECT
    with socket.create_connection(("127.0.0.1", port), timeout=5) as lingering:
        lingering.sendall(b"\x10\x20\x00\x04MQTT")
        code, _, err = serve.stop()
    assert code == 0
    assert "Traceback" not in err
    assert ("hung up before its MQTT session began" in err) is verbose
    assert ("refused an MQTT protocol level 5 CONNECT" in err) is verbose


def test_stats_follow_a_running_serve(
    tmp_path: Path, mosquitto_broker: MosquittoProcess, serving: Callable[..., Serve]
) -> None:
    """Two batches in quick succession: the second is in ``stats`` without a third message."""
    vehicle = VehicleDouble(VIN)
    (tmp_path / "vehicle.pub").write_bytes(vehicle.public_key_pem)
    assert typed(tmp_path, "cloud-stub", "register", VIN, "vehicle.pub").returncode == 0
    assert typed(tmp_path, "cloud-stub", "activate", VIN).returncode == 0
    serving("--broker", mosquitto_broker.url)
    acks: list[bytes] = []
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id="van")
    client.on_message = lambda c, u, message: acks.append(message.payload)
    client.connect(mosquitto_broker.host, mosquitto_broker.port)
    client.subscribe(vehicle.topic("ack"), qos=1)
    client.loop_start()
    try:
        client.publish(vehicle.telemetry_topic, vehicle.batch(1, [1, 2]), qos=1)
        client.publish(vehicle.telemetry_topic, vehicle.batch(1, [3]), qos=1)
        until(lambda: len(acks) == 2, "two acks")
    finally:
        client.loop_stop()
        client.disconnect()

    until(
        lambda: (stats(tmp_path, "cloud-stub-data")["ingest"] or {}).get("batches") == 2,
        "both batches counted in cloud-stub stats",
    )
    assert stats(tmp_path, "cloud-stub-data")["ingest"]["records_stored"] == 3
