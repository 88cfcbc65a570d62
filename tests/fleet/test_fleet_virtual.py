"""A fleet in virtual time: the same bytes for the same seed, every record stored once."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from tcu.cli.main import main
from tcu.compose.fleet import FleetOptions, VirtualFleet, ensure_fds, vin_of
from tcu.errors import ConfigError


def _stored(workdir: Path) -> list[tuple[object, ...]]:
    db = sqlite3.connect(workdir / "backend" / "store.sqlite")
    try:
        return db.execute(
            "SELECT vin, epoch, seq, t_ms, kind, body FROM records ORDER BY vin, epoch, seq"
        ).fetchall()
    finally:
        db.close()


def _run(tmp: Path, **options: object) -> tuple[VirtualFleet, object]:
    opts = FleetOptions(workdir=tmp, **options)  # type: ignore[arg-type]
    fleet = VirtualFleet(opts)
    return fleet, fleet.run()


def test_same_seed_same_stored_bytes(tmp_path: Path) -> None:
    for name, seed in (("a", 5), ("b", 5), ("c", 6)):
        _run(tmp_path / name, vans=8, duration_s=7200.0, seed=seed)
    rows_a, rows_b, rows_c = (_stored(tmp_path / x) for x in "abc")
    assert len(rows_a) > 100
    assert rows_a == rows_b
    assert rows_a != rows_c


def test_fifty_vans_lose_nothing_and_store_each_record_once(tmp_path: Path) -> None:
    fleet, report = _run(tmp_path, vans=50, duration_s=2 * 3600.0, seed=1)
    assert report.lost == 0 and report.drained and report.outbox_depth == 0  # type: ignore[attr-defined]
    assert report.vans_activated == 50  # type: ignore[attr-defined]
    rows = _stored(tmp_path)
    keys = [(r[0], r[1], r[2]) for r in rows]
    assert len(keys) == len(set(keys)) == report.records_produced  # type: ignore[attr-defined]
    by_van: dict[str, list[int]] = {}
    for vin, epoch, seq in keys:
        assert epoch == 1
        by_van.setdefault(str(vin), []).append(int(seq))  # type: ignore[call-overload]
    assert set(by_van) == {vin_of(i) for i in range(50)}
    for van in fleet.vans:
        seqs = by_van[van.vin]
        assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))
        assert len(seqs) == van.host.counts.records_produced
    assert report.latency_samples == report.records_produced  # type: ignore[attr-defined]
    assert report.roaming_vans > 0  # type: ignore[attr-defined]


def test_cli_json_summary(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["fleet", "--vans", "3", "--duration", "900", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["mode"] == "virtual" and summary["vans"] == 3
    assert summary["lost"] == 0 and summary["records_stored"] == summary["records_produced"] > 0


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--vans", "0"], "--vans 0"),
        (["--vans", "2", "--duration", "nan"], "--duration"),
        (["--vans", "2", "--storm-at", "5"], "--storm-at needs --broker"),
        (["--vans", "2", "--ramp", "10"], "--ramp needs --broker"),
        (["--vans", "2", "--broker", "http://x"], "broker URL"),
        (["--vans", "2", "--signal-period", "0"], "--signal-period"),
        (["--vans", "2", "--seed", "-1"], "--seed"),
        (["--vans", "2", "--broker", "mqtt://127.0.0.1:1"], "cannot connect"),
    ],
)
def test_bad_options_exit_2(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["fleet", *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and "Traceback" not in err


def test_fd_limit_refuses_a_fleet_larger_than_the_hard_limit() -> None:
    import resource

    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        pytest.skip("no hard limit on file descriptors here")
    with pytest.raises(ConfigError, match="hard limit"):
        ensure_fds(hard + 1)
    assert "soft limit" in ensure_fds(10)
