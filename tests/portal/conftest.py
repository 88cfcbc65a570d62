"""Fixtures of the portal tests: a backend data directory with registered modules."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from cloud_stub.portal.model import Portal
from cloud_stub.portal.server import open_portal
from cloud_stub.registry import Registry
from cloud_stub.service import REGISTRY_FILE
from cloud_stub.testing import VehicleDouble

VIN_A = "WTCUFLEET00000001"
VIN_B = "WTCUFLEET00000002"
VIN_C = "WTCUFLEET00000003"
PASSWORD = "correct horse battery"


def register_modules(data: Path, *vins: str, active: bool = False) -> list[VehicleDouble]:
    doubles = [VehicleDouble(vin) for vin in vins]
    with Registry(data / REGISTRY_FILE) as registry:
        for double in doubles:
            double.register(registry, active=active)
    return doubles


@pytest.fixture
def data(tmp_path: Path) -> Path:
    path = tmp_path / "cloud"
    register_modules(path, VIN_A, VIN_B, VIN_C)
    return path


@pytest.fixture
def portal(data: Path) -> Iterator[Portal]:
    portal, reader, registry = open_portal(data)
    try:
        yield portal
    finally:
        portal.close()
        reader.close()
        registry.close()
