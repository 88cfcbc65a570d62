"""Trace sources: every python-can fixture reads; damaged records are counted, not fatal."""

from __future__ import annotations

import gzip
from pathlib import Path

import can
import pytest

from tcu.can.sources import open_trace
from tcu.errors import TraceError
from tests.helpers import PYCAN_FIXTURES

FIXTURES = sorted(p for p in PYCAN_FIXTURES.glob("*") if p.name != "LICENSE.txt")


@pytest.mark.skipif(not FIXTURES, reason="shared fixtures not present")
@pytest.mark.parametrize("path", FIXTURES, ids=lambda p: p.name)
def test_every_python_can_fixture_reads_like_log_reader(path: Path) -> None:
    expected = list(can.LogReader(path))
    source = open_trace(path)
    got = list(source)
    assert len(got) == len(expected) > 0
    assert [m.arbitration_id for m in got] == [m.arbitration_id for m in expected]
    assert [bytes(m.data) for m in got] == [bytes(m.data) for m in expected]
    assert source.bad_records == 0


def test_garbled_candump_lines_are_counted_and_skipped(tmp_path: Path) -> None:
    f = tmp_path / "bad.log"
    f.write_text(
        "(1.000000) can0 123#DEADBEEF\n"
        "(1.100000) can0 12X#ZZ\n"
        "complete garbage\n"
        "(1.200000) can0 1234ABCD#0102\n"
    )
    source = open_trace(f)
    got = list(source)
    assert [m.arbitration_id for m in got] == [0x123, 0x1234ABCD]
    assert source.bad_records == 2
    assert source.bad_examples[0].startswith(f"{f}:2:")
    assert source.bad_examples[1].startswith(f"{f}:3:")


@pytest.mark.skipif(not FIXTURES, reason="shared fixtures not present")
def test_garbled_asc_line_keeps_the_header_timestamps(tmp_path: Path) -> None:
    lines = (PYCAN_FIXTURES / "logfile.asc").read_text().splitlines(True)
    damaged = [*lines[:8], "   1.0 1  ZZZ Rx d 8 00 11\n", *lines[8:]]
    f = tmp_path / "damaged.asc"
    f.write_text("".join(damaged))
    clean = list(can.LogReader(PYCAN_FIXTURES / "logfile.asc"))
    source = open_trace(f)
    got = list(source)
    assert source.bad_records == 1
    assert "damaged.asc:9:" in source.bad_examples[0]
    assert [m.timestamp for m in got] == [m.timestamp for m in clean]


def test_gzip_text_trace(tmp_path: Path) -> None:
    f = tmp_path / "x.log.gz"
    with gzip.open(f, "wt") as g:
        g.write("(5.0) can0 100#01\n(6.0) can0 101#02\n")
    assert [m.arbitration_id for m in open_trace(f)] == [0x100, 0x101]


def test_truncated_gzip_is_counted_not_raised(tmp_path: Path) -> None:
    body = "".join(f"({i}.0) can0 100#{i % 256:02X}\n" for i in range(20000))
    raw = gzip.compress(body.encode())
    f = tmp_path / "cut.log.gz"
    f.write_bytes(raw[: len(raw) // 2])
    source = open_trace(f)
    got = list(source)
    assert 0 < len(got) < 20000
    assert source.truncated and source.bad_records == 1


@pytest.mark.parametrize(
    ("name", "content", "match"),
    [
        ("missing.asc", None, "not found"),
        ("trace.xyz", b"", "unknown trace format '.xyz'"),
        ("noext", b"", "unknown trace format"),
        ("garbage.blf", b"LOGG" + bytes(100), "cannot read .blf header"),
    ],
)
def test_bad_files_raise_trace_error_naming_the_file(
    tmp_path: Path, name: str, content: bytes | None, match: str
) -> None:
    f = tmp_path / name
    if content is not None:
        f.write_bytes(content)
    with pytest.raises(TraceError, match=match) as e:
        list(open_trace(f))
    assert str(f) in str(e.value)
