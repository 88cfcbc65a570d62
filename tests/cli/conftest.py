"""Fixtures of the command-line tests: a mini DBC, its mapping and a six-frame trace."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import write_mini

TRACE = """(1700000000.000000) can0 3A0#0103
(1700000000.100000) can0 3A0#0103
(1700000000.200000) can0 123#1122
(1700000000.300000) can0 3A0#01
(1700000000.400000) can0 3C0#00C800
(1700000000.500000) can0 3A0#0003
"""


@pytest.fixture
def mini(tmp_path: Path) -> tuple[Path, Path, Path]:
    d, m = write_mini(tmp_path)
    t = tmp_path / "trace.log"
    t.write_text(TRACE)
    return d, m, t
