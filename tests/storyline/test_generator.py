"""Storylines, the trace generator, the ``tcu generate`` command and the committed traces."""

from __future__ import annotations

import itertools
import math
from collections import defaultdict
from pathlib import Path
from typing import Any

import can
import pytest

from tcu.can.encoder import FrameEncoder
from tcu.cli.main import main
from tcu.errors import ConfigError
from tcu.link.geo import distance_m
from tcu.storyline import STORYLINES, StoryBuilder, depot_night, get
from tcu.storyline.generator import (
    KEEPALIVE_NODES,
    REFERENCE_TRACES,
    frames,
    load_reference_encoder,
    write_trace,
)
from tcu.storyline.writers import FORMATS
from tcu.vehicle import catalogue as c

TRACES = Path(__file__).resolve().parents[2] / "can_traces"
GOTHENBURG = (57.71, 11.97)
BORDER_LAT = 59.10


@pytest.fixture(scope="module")
def encoder() -> FrameEncoder:
    return load_reference_encoder()


def _decoded(
    encoder: FrameEncoder, messages: Any, paths: set[str] | None = None
) -> dict[str, list[tuple[float, Any]]]:
    """The (timestamp, value) series of mapped signals (of ``paths``) from frames."""
    bindings = defaultdict(list)
    for b in encoder.mapping.signals:
        if paths is None or b.path in paths:
            bindings[(b.message.frame_id, b.message.is_extended_frame)].append(b)
    out: dict[str, list[tuple[float, Any]]] = defaultdict(list)
    for msg in messages:
        bs = bindings.get((msg.arbitration_id, msg.is_extended_id))
        if not bs:
            continue
        decoded = bs[0].message.decode(bytes(msg.data), decode_choices=False)
        for b in bs:
            if b.signal in decoded:
                out[b.path].append((msg.timestamp, b.to_value(decoded[b.signal])))
    return out


# Storylines as data


def test_cross_border_drives_from_oslo_across_the_border_to_gothenburg() -> None:
    s = get("cross_border")
    lats = [s.value(c.LATITUDE, t) for t in range(0, math.ceil(s.duration))]
    assert isinstance(lats[0], float) and lats[0] > 59.5
    end = (s.value(c.LATITUDE, s.duration), s.value(c.LONGITUDE, s.duration))
    assert isinstance(end[0], float) and isinstance(end[1], float)
    assert distance_m(end, GOTHENBURG) < 2000
    north = [t for t, lat in enumerate(lats) if isinstance(lat, float) and lat > BORDER_LAT]
    south = [t for t, lat in enumerate(lats) if isinstance(lat, float) and lat < BORDER_LAT]
    assert north and south and max(north) < min(south)
    assert any("border" in e.text for e in s.events)
    speeds = [s.value(c.SPEED, float(t)) for t in range(int(s.duration))]
    assert 100.0 <= max(v for v in speeds if isinstance(v, float)) <= 111.0


def test_depot_night_charges_at_the_wallbox_and_wakes_before_departure() -> None:
    s = get("depot_night")
    start = next(e.t for e in s.events if e.text.startswith("charging starts"))
    done = next(e.t for e in s.events if e.text.startswith("charge complete"))
    soc0, soc1 = s.value(c.SOC, start), s.value(c.SOC, done)
    assert isinstance(soc0, float) and isinstance(soc1, float)
    assert 34.0 < soc0 < 36.0 and soc1 == pytest.approx(90.0)
    assert s.value(c.INFRA_TYPE, start) == "WALLBOX"
    assert s.value(c.RFID, start) == "ACCEPTED"
    assert s.value(c.RFID, start - 10) == "PENDING"
    assert s.value(c.CABIN_SETPOINT, start) != s.value(c.OUTSIDE_TEMP, start)
    assert s.value(c.DEPARTURE_TIME, start) == 390.0
    modes = [m for _, _, m in s.phases()]
    assert modes == ["awake", "charging", "asleep", "charging", "awake"]
    wake = s.phases()[3][0]
    departure = (depot_night.DEPARTURE - depot_night.START).total_seconds()
    assert 40 * 60 <= departure - wake <= 50 * 60
    assert s.value(c.GEAR, departure - 10 * 60) == "P"


def test_city_delivery_puncture_rfid_retry_and_unneeded_preconditioning() -> None:
    s = get("city_delivery")
    assert 30 * 60 <= s.duration <= 60 * 60
    rr = s.value(c.TYRE_REAR_RIGHT, 0.0)
    assert isinstance(rr, float) and rr >= 445.0
    end_rr = s.value(c.TYRE_REAR_RIGHT, s.duration)
    assert isinstance(end_rr, float) and end_rr < 300.0
    rfid = [s.value(c.RFID, float(t)) for t in range(int(s.duration))]
    changes = [v for i, v in enumerate(rfid) if i == 0 or rfid[i - 1] != v]
    assert changes[1:5] == ["PENDING", "REJECTED", "PENDING", "ACCEPTED"]
    infra = {s.value(c.INFRA_TYPE, float(t)) for t in range(int(s.duration))}
    assert {"PUBLIC_AC", "HOME_SOCKET"} <= infra
    enabled = [t for t in range(int(s.duration)) if s.value(c.PRECOND_ENABLED, float(t))]
    assert enabled
    assert all(s.value(c.CABIN_SETPOINT, t) == s.value(c.OUTSIDE_TEMP, t) for t in enabled)
    for path in (c.BONNET, c.DOOR_REAR, c.DOOR_SLIDING_LEFT, c.DOOR_SLIDING_RIGHT):
        assert any(s.value(path, float(t)) is True for t in range(int(s.duration))), path
    window = [s.value(c.WINDOW_FRONT_LEFT, float(t)) for t in range(int(s.duration))]
    assert max(w for w in window if isinstance(w, float)) == 100.0 and window[-1] == 0.0


def test_builder_rejects_going_back_in_time() -> None:
    from datetime import UTC, datetime

    b = StoryBuilder("t", "t", datetime(2026, 1, 1, tzinfo=UTC))
    b.set(0.0, {c.SPEED: 0.0})
    b.ramp(c.SPEED, 10.0, 20.0, 50.0)
    assert b.number(c.SPEED, 15.0) == pytest.approx(25.0)
    with pytest.raises(ValueError, match="before the last change"):
        b.set(12.0, {c.SPEED: 1.0})
    with pytest.raises(ValueError, match="no track"):
        b.build(30.0)


# The generator


def test_same_seed_same_bytes_other_seed_other_bytes(encoder: FrameEncoder, tmp_path: Path) -> None:
    story = get("city_delivery")
    sizes = {}
    for fmt in FORMATS:
        paths = []
        for run, seed in (("a", 7), ("b", 7), ("c", 8)):
            folder = tmp_path / run
            folder.mkdir(exist_ok=True)
            path = folder / f"city.{fmt}"
            write_trace(story, encoder, path, fmt, seed=seed, duration=4.0)
            paths.append(path.read_bytes())
        assert paths[0] == paths[1], fmt
        assert paths[0] != paths[2], fmt
        sizes[fmt] = len(paths[0])
    assert all(size > 1000 for size in sizes.values())


def test_a_window_holds_exactly_the_frames_of_the_whole(encoder: FrameEncoder) -> None:
    story = get("cross_border")
    whole = [
        m for m in frames(story, encoder, duration=40.0) if m.timestamp >= story.start_epoch + 25.0
    ]
    window = list(frames(story, encoder, t_from=25.0, duration=15.0))
    assert len(window) > 100
    assert [(m.timestamp, m.arbitration_id, bytes(m.data)) for m in window] == [
        (m.timestamp, m.arbitration_id, bytes(m.data)) for m in whole
    ]


def test_mapped_signals_never_go_stale_while_their_sender_talks(encoder: FrameEncoder) -> None:
    story = get("cross_border")
    stale = {}
    for b in encoder.mapping.signals:
        key = (b.message.frame_id, b.signal)
        stale[key] = min(stale.get(key, math.inf), b.stale_after)
    series = _decoded(encoder, frames(story, encoder, duration=300.0))
    by_path = encoder.mapping.by_path()
    for path, points in series.items():
        b = by_path[path]
        charging_ecu = bool(KEEPALIVE_NODES.intersection(b.message.senders))
        for (t0, _), (t1, _) in itertools.pairwise(points):
            mid = (t0 + t1) / 2 - story.start_epoch
            if story.mode(mid) == "awake" or charging_ecu:
                assert t1 - t0 < b.stale_after, (path, t0 - story.start_epoch, t1 - t0)
    assert set(series) == set(c.CATALOGUE)


def test_counters_roll_and_fd_frames_are_64_bytes(encoder: FrameEncoder) -> None:
    story = get("depot_night")
    msgs = list(frames(story, encoder, duration=1.0))
    vcu = [m for m in msgs if m.arbitration_id == 0xC0]
    assert 95 <= len(vcu) <= 101
    counters = [m.data[6] >> 4 for m in vcu]
    assert all((b - a) % 16 == 1 for a, b in itertools.pairwise(counters))
    gaps = [b.timestamp - a.timestamp for a, b in itertools.pairwise(vcu)]
    assert all(0.008 < g < 0.012 for g in gaps) and len(set(gaps)) > 10
    fd = [m for m in frames(story, encoder, duration=3.0) if m.is_fd]
    assert fd and all(len(m.data) == 64 and m.bitrate_switch for m in fd)


def test_decimating_storylines_thin_the_fast_traffic(encoder: FrameEncoder) -> None:
    story = get("city_delivery")
    assert story.log_min_period == pytest.approx(0.1)
    msgs = list(frames(story, encoder, t_from=20.0, duration=5.0))
    vcu = [m for m in msgs if m.arbitration_id == 0xC0]
    assert 48 <= len(vcu) <= 51
    counters = [m.data[6] >> 4 for m in vcu]
    assert all((b - a) % 16 == 10 for a, b in itertools.pairwise(counters))


# The command


def test_generate_command_writes_and_summarises(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(
        [
            "generate",
            "depot_night",
            "--out-dir",
            str(tmp_path),
            "--format",
            "log",
            "asc",
            "--duration",
            "2",
            "--seed",
            "3",
        ]
    )
    assert code == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 2 and "frames" in out[0] and "bytes" in out[0]
    for fmt in ("log", "asc"):
        path = tmp_path / f"depot_night.{fmt}"
        assert sum(1 for _ in can.LogReader(path)) > 300


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["generate", "lunar_landing"], "lunar_landing"),
        (["generate", "depot_night", "--format", "mf4"], "mf4"),
        (["generate", "depot_night", "--duration", "0"], "--duration"),
    ],
)
def test_generate_command_rejects_unknowns(
    argv: list[str], needle: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([*argv, "--out-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and needle in err
    assert not list(tmp_path.iterdir())


def test_unknown_storyline_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="known: depot_night"):
        get("nope")
    assert set(STORYLINES) == {"depot_night", "city_delivery", "cross_border"}


# The committed traces


@pytest.fixture(scope="module")
def committed() -> dict[str, list[can.Message]]:
    out = {}
    for ref in REFERENCE_TRACES:
        path = TRACES / ref.file
        frames_read = list(can.LogReader(path))
        story = get(ref.storyline)
        span = story.duration - ref.t_from if ref.duration is None else ref.duration
        low = high = 0.0
        for a, b, mode in story.phases():
            overlap = max(0.0, min(b, ref.t_from + span) - max(a, ref.t_from))
            low += overlap * {"awake": 20.0, "charging": 4.0, "asleep": 0.0}[mode]
            high += overlap * {"awake": 300.0, "charging": 8.0, "asleep": 0.0}[mode]
        assert low < len(frames_read) < high, ref.file
        stamps = [m.timestamp for m in frames_read]
        assert stamps == sorted(stamps), ref.file
        assert stamps[-1] - stamps[0] == pytest.approx(span, abs=1.5), ref.file
        out[ref.file] = frames_read
    return out


def test_committed_traces_fit_the_budget_and_are_listed() -> None:
    files = [TRACES / ref.file for ref in REFERENCE_TRACES]
    assert {p.suffix for p in files} >= {".blf", ".asc", ".log", ".trc"}
    total = sum(p.stat().st_size for p in TRACES.iterdir() if p.is_file())
    assert total < 6_000_000
    readme = (TRACES / "README.md").read_text(encoding="utf-8")
    for p in files:
        assert p.name in readme


def test_committed_traces_tell_their_stories(
    encoder: FrameEncoder, committed: dict[str, list[can.Message]]
) -> None:
    def series(file: str, path: str) -> list[tuple[float, Any]]:
        return _decoded(encoder, committed[file], {path})[path]

    lat = series("cross_border.log", c.LATITUDE)
    assert lat[0][1] > 59.5 and lat[-1][1] == pytest.approx(GOTHENBURG[0], abs=0.02)
    assert any(a[1] > BORDER_LAT >= b[1] for a, b in itertools.pairwise(lat))

    soc = [v for _, v in series("depot_night.blf", c.SOC)]
    assert soc[0] < 36.0 and max(soc) == pytest.approx(90.0, abs=0.2)
    rfid = [v for _, v in series("depot_night.blf", c.RFID)]
    assert "PENDING" in rfid and "ACCEPTED" in rfid

    tyre = [v for _, v in series("city_delivery.blf", c.TYRE_REAR_RIGHT)]
    assert tyre[0] > 445.0 and tyre[-1] < 300.0
    assert any(v is True for _, v in series("city_delivery_bakery.asc", c.DOOR_SLIDING_RIGHT))
    lunch = [v for _, v in series("city_delivery_lunch.trc", c.RFID)]
    assert "REJECTED" in lunch and lunch[-1] == "ACCEPTED"


def test_committed_bakery_excerpt_is_what_the_generator_writes(
    encoder: FrameEncoder, tmp_path: Path
) -> None:
    ref = next(r for r in REFERENCE_TRACES if r.fmt == "asc")
    out = tmp_path / ref.file
    write_trace(get(ref.storyline), encoder, out, ref.fmt, t_from=ref.t_from, duration=ref.duration)
    assert out.read_bytes() == (TRACES / ref.file).read_bytes()
