from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import aiomqtt
import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from cloud_stub.broker import MosquittoProcess, free_port
from cloud_stub.cli import main
from cloud_stub.mailbox import Mailbox
from cloud_stub.registry import Registry
from cloud_stub.testing import VehicleDouble
from tcu.telemetry.codec.cose import public_key_from_pem

VIN = "WV1ZZZ7HZLH000001"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def data(tmp_path: Path) -> Path:
    return tmp_path / "cloud"


@pytest.fixture
def vehicle(tmp_path: Path) -> VehicleDouble:
    double = VehicleDouble(VIN)
    (tmp_path / "vehicle.pub").write_bytes(double.public_key_pem)
    return double


def test_register_activate_and_stats(
    capsys: pytest.CaptureFixture[str], data: Path, vehicle: VehicleDouble, tmp_path: Path
) -> None:
    code, out, _ = run(capsys, "register", VIN, str(tmp_path / "vehicle.pub"), "--data", str(data))
    assert code == 0
    assert vehicle.kid.hex() in out

    code, out, _ = run(capsys, "activate", VIN, "--data", str(data))
    assert (code, "registry only" in out) == (0, True)

    code, out, _ = run(capsys, "stats", "--data", str(data))
    report = json.loads(out)
    assert code == 0
    assert report["vehicles"] == [
        {"vin": VIN, "kid": vehicle.kid.hex(), "active": True, "downlink_counter": 0}
    ]
    assert (report["progress"], report["ingest"]) == ([], None)

    run(capsys, "deactivate", VIN, "--data", str(data))
    with Registry(data / "registry.sqlite") as registry:
        assert registry.is_active(VIN) is False


def test_public_key_is_the_backend_key(capsys: pytest.CaptureFixture[str], data: Path) -> None:
    code, out, _ = run(capsys, "public-key", "--data", str(data))
    assert code == 0
    assert public_key_from_pem(out.encode())
    assert run(capsys, "public-key", "--data", str(data))[1] == out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["activate", VIN], "unknown VIN"),
        (["register", "NOT-A-VIN", "{pub}"], "ISO 3779"),
        (["register", VIN, "{missing}"], "cannot read"),
        (["register", VIN, "{pub}", "--kid", "zz"], "not hex"),
        (["command", VIN, "lock", "--broker", "http://example"], "mqtt://"),
        (["activate", VIN, "--broker", "mqtt://x", "--cafile", "ca.pem"], "mqtts://"),
    ],
)
def test_mistakes_print_error_and_exit_2(
    capsys: pytest.CaptureFixture[str],
    data: Path,
    vehicle: VehicleDouble,
    tmp_path: Path,
    argv: list[str],
    message: str,
) -> None:
    argv = [a.format(pub=tmp_path / "vehicle.pub", missing=tmp_path / "missing.pub") for a in argv]

    code, _, err = run(capsys, *argv, "--data", str(data))

    assert code == 2
    assert err.startswith("error: ")
    assert message in err
    assert "Traceback" not in err


def test_commands_through_mosquitto_wait_for_a_vehicle_never_heard_from(
    capsys: pytest.CaptureFixture[str],
    data: Path,
    vehicle: VehicleDouble,
    tmp_path: Path,
    mosquitto_broker: MosquittoProcess,
) -> None:
    run(capsys, "register", VIN, str(tmp_path / "vehicle.pub"), "--data", str(data))
    _, pem, _ = run(capsys, "public-key", "--data", str(data))
    broker = ["--broker", mosquitto_broker.url]
    # sent before the vehicle ever connected
    code, out, _ = run(
        capsys, "command", VIN, "set_departure", "06:45", *broker, "--data", str(data)
    )
    assert (code, "cmd-1 (counter 1) waits for the vehicle" in out) == (0, True)
    code, out, _ = run(capsys, "activate", VIN, *broker, "--data", str(data))
    assert (code, "cmd-2 (counter 2) waits for the vehicle" in out) == (0, True)

    received: list[bytes] = []
    subscribed = threading.Event()
    subscriber = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"tcu-{VIN}")
    subscriber.on_message = lambda client, userdata, message: received.append(
        bytes(message.payload)
    )
    subscriber.on_subscribe = lambda *args: subscribed.set()
    subscriber.connect(mosquitto_broker.host, mosquitto_broker.port)
    subscriber.subscribe(f"vehicles/{VIN}/commands", qos=1)
    subscriber.loop_start()
    try:
        assert subscribed.wait(10)
        deadline = time.monotonic() + 10
        while not received and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        subscriber.loop_stop()
        subscriber.disconnect()

    key = public_key_from_pem(pem.encode())
    commands = [VehicleDouble.read_downlink(p, key) for p in received]
    # the oldest is retained for the vehicle's first subscription; the next waits for the
    # backend to hear from the vehicle (cloud-stub serve releases it)
    assert [(c.name, c.argument, c.counter) for c in commands] == [("set_departure", "06:45", 1)]
    with Mailbox(data / "mailbox.sqlite") as mailbox:
        assert [(p.command_id, p.state) for p in mailbox.pending(VIN)] == [
            ("cmd-1", "waiting"),
            ("cmd-2", "waiting"),
        ]


def test_command_to_an_absent_broker_is_an_error(
    capsys: pytest.CaptureFixture[str], data: Path, vehicle: VehicleDouble, tmp_path: Path
) -> None:
    run(capsys, "register", VIN, str(tmp_path / "vehicle.pub"), "--data", str(data))
    code, _, err = run(
        capsys,
        "command",
        VIN,
        "lock",
        "--broker",
        f"mqtt://127.0.0.1:{free_port()}",
        "--data",
        str(data),
    )
    assert code == 2
    assert err.startswith("error: cannot publish")


async def test_serve_stores_acks_and_stops_cleanly(
    mosquitto_broker: MosquittoProcess, data: Path, vehicle: VehicleDouble, tmp_path: Path
) -> None:
    assert main(["register", VIN, str(tmp_path / "vehicle.pub"), "--data", str(data)]) == 0
    assert main(["activate", VIN, "--data", str(data)]) == 0
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    serve = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "cloud_stub.cli",
            "serve",
            "--broker",
            mosquitto_broker.url,
            "--data",
            str(data),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    try:
        assert serve.stdout is not None
        banner = serve.stdout.readline().decode()
        assert banner.startswith("cloud-stub: serving mqtt://127.0.0.1:")
        async with aiomqtt.Client(mosquitto_broker.host, mosquitto_broker.port) as client:
            await client.subscribe(vehicle.topic("ack"), qos=1)
            await client.publish(vehicle.telemetry_topic, vehicle.batch(1, [1, 2]), qos=1)
            message = await anext(aiter(client.messages))
        assert isinstance(message.payload, bytes)
    finally:
        serve.send_signal(signal.SIGTERM)
        out, err = serve.communicate(timeout=20)

    assert serve.returncode == 0, err.decode()
    assert b"Traceback" not in err
    assert b'"records_stored": 2' in out
    stats = json.loads((data / "stats.json").read_text())
    assert (stats["records_stored"], stats["acks"]) == (2, 1)
