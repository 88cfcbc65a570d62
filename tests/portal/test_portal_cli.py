"""``cloud-stub account|user|vehicle|service``: the operator's side of the portal."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from cloud_stub.broker import MosquittoProcess
from cloud_stub.cli import main
from cloud_stub.keys import backend_public_key_pem
from cloud_stub.registry import Registry
from cloud_stub.service import REGISTRY_FILE
from cloud_stub.testing import VehicleDouble
from tcu.telemetry.codec.cose import public_key_from_pem
from tests.portal.conftest import PASSWORD, VIN_A, VIN_B, register_modules


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_account_vehicle_and_service_commands(
    capsys: pytest.CaptureFixture[str], data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    register_modules(data, VIN_A, VIN_B)
    d = ["--data", str(data)]
    monkeypatch.setattr("sys.stdin", io.StringIO(PASSWORD + "\n"))
    code, out, _ = run(
        capsys,
        "account",
        "create",
        "Fjord",
        "--admin",
        "anne@fjord.example",
        "--password-stdin",
        *d,
    )
    assert code == 0 and "password set" in out
    code, out, _ = run(capsys, "account", "create", "Nord", "--admin", "bo@nord.example", *d)
    assert code == 0 and "invitation token for bo@nord.example" in out
    assert run(capsys, "vehicle", "add", VIN_A, "--account", "Fjord", *d)[0] == 0

    code, out, err = run(capsys, "vehicle", "add", VIN_A, "--account", "Nord", *d)
    assert code == 2 and out == ""
    assert "already registered to another account" in err
    assert err.startswith("error: ") and "[vin_in_other_account]" in err
    assert "Traceback" not in err

    assert run(capsys, "service", "buy", "remote_lock", "--account", "Fjord", *d)[0] == 0
    code, out, _ = run(capsys, "service", "assign", VIN_A, "remote_lock", "--account", "Fjord", *d)
    assert code == 0 and "registry only" in out
    with Registry(data / REGISTRY_FILE) as registry:
        assert registry.is_active(VIN_A)
    code, out, _ = run(capsys, "account", "show", "Fjord", *d)
    assert f"vehicle {VIN_A} services remote_lock" in out
    assert "product remote_lock: 1 of 1 assigned" in out
    code, _, err = run(capsys, "service", "assign", VIN_B, "remote_lock", "--account", "Fjord", *d)
    assert code == 2 and "[not_found]" in err
    code, _, _ = run(capsys, "service", "unassign", VIN_A, "remote_lock", "--account", "Fjord", *d)
    with Registry(data / REGISTRY_FILE) as registry:
        assert not registry.is_active(VIN_A)
    code, _, err = run(capsys, "vehicle", "add", VIN_B, "--account", "Nobody", *d)
    assert code == 2 and "no account named 'Nobody'" in err


def test_assign_and_unassign_send_the_signed_activation_and_deactivation(
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    mosquitto_broker: MosquittoProcess,
) -> None:
    data = tmp_path / "cloud"
    double = VehicleDouble(VIN_A)
    with Registry(data / REGISTRY_FILE) as registry:
        double.register(registry, active=False)
    d = ["--data", str(data)]
    broker = ["--broker", mosquitto_broker.url]
    received: list[bytes] = []
    subscribed = threading.Event()
    subscriber = paho.Client(CallbackAPIVersion.VERSION2, client_id="portal-cli-test")
    subscriber.on_message = lambda c, u, message: received.append(bytes(message.payload))
    subscriber.on_subscribe = lambda *args: subscribed.set()
    subscriber.connect(mosquitto_broker.host, mosquitto_broker.port)
    subscriber.subscribe(f"vehicles/{VIN_A}/commands", qos=1)
    subscriber.loop_start()
    try:
        assert subscribed.wait(10)
        run(capsys, "account", "create", "Fjord", "--admin", "anne@fjord.example", *d)
        run(capsys, "vehicle", "add", VIN_A, "--account", "Fjord", *d)
        run(capsys, "service", "buy", "vehicle_status", "--account", "Fjord", "--count", "2", *d)
        code, out, _ = run(
            capsys, "service", "assign", VIN_A, "vehicle_status", "--account", "Fjord", *broker, *d
        )
        assert code == 0 and "activate" in out and "(counter 1) waits for the vehicle" in out
        code, out, _ = run(capsys, "vehicle", "remove", VIN_A, "--account", "Fjord", *broker, *d)
        assert code == 0 and "deactivate" in out and "(counter 2) waits for the vehicle" in out
        deadline = time.monotonic() + 10
        while not received and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        subscriber.loop_stop()
        subscriber.disconnect()
    key = public_key_from_pem(backend_public_key_pem(data))
    commands = [VehicleDouble.read_downlink(p, key) for p in received]
    # the van was never heard from: the first command waits retained on its topic, the next
    # in the backend's mailbox (cloud_stub.mailbox), until the van connects
    assert [(c.name, c.counter) for c in commands] == [("activate", 1)]


def test_serve_with_http_serves_the_portal_until_sigterm(
    tmp_path: Path, mosquitto_broker: MosquittoProcess
) -> None:
    data = tmp_path / "cloud"
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
            "--http",
            "127.0.0.1:0",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    try:
        assert serve.stdout is not None
        assert serve.stdout.readline().decode().startswith("cloud-stub: serving mqtt://")
        banner = serve.stdout.readline().decode()
        assert banner.startswith("cloud-stub: fleet portal on http://127.0.0.1:")
        url = banner.split(" on ")[1].strip()
        document = httpx.get(f"{url}openapi.json", timeout=10).json()
        assert document["info"]["title"] == "cloud-stub fleet portal"
        assert httpx.get(f"{url}api/vehicles", timeout=10).status_code == 401
        page = httpx.get(url, timeout=10)
        assert page.status_code == 200 and "/static/app.js" in page.text
    finally:
        serve.send_signal(signal.SIGTERM)
        _, err = serve.communicate(timeout=20)
    assert serve.returncode == 0, err.decode()
    assert b"Traceback" not in err


def test_serve_with_a_bad_http_address_is_an_error(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, _, err = run(capsys, "serve", "--http", "no-port", "--data", str(tmp_path))
    assert code == 2 and err.startswith("error: --http 'no-port'")
