"""Shared fixtures: MQTT brokers on loopback.

``embedded_broker`` runs amqtt in the test's event loop; ``mosquitto_broker`` runs the
``mosquitto`` binary with ``cloud_stub/mosquitto.conf``; ``broker`` is parametrized over both.
Without the binary the Mosquitto tests are skipped, except when ``CI=true``: then they fail.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from cloud_stub.broker import BrokerHandle, EmbeddedBroker, MosquittoProcess, find_mosquitto


@pytest.fixture
def mosquitto_binary() -> str:
    """Path of the mosquitto binary; skips without it, fails instead when CI=true."""
    binary = find_mosquitto()
    if binary is None:
        message = "mosquitto binary not found (apt-get install mosquitto)"
        if os.environ.get("CI") == "true":
            pytest.fail(message + " and CI=true")
        pytest.skip(message)
    return binary


@pytest.fixture
async def embedded_broker() -> AsyncIterator[EmbeddedBroker]:
    async with EmbeddedBroker() as broker:
        yield broker


@pytest.fixture
def mosquitto_broker(mosquitto_binary: str, tmp_path: Path) -> Iterator[MosquittoProcess]:
    with MosquittoProcess(tmp_path / "mosquitto", binary=mosquitto_binary) as broker:
        yield broker


@pytest.fixture(params=["embedded", "mosquitto"])
def broker(request: pytest.FixtureRequest) -> BrokerHandle:
    handle: BrokerHandle = request.getfixturevalue(f"{request.param}_broker")
    return handle
