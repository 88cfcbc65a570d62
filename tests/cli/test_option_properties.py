"""Property tests: any text or number given to any option ends in bounded time, exit 0 or 2.

The parsers of ``tcu.validate`` either return a value inside their documented range or
raise ``Invalid`` (a ``ValueError``), whatever the input. ``tcu replay`` driven in-process
with arbitrary values for its options ends with exit status 0 or 2 within a time limit
(an alarm fails the example otherwise), and never lets a traceback out.
"""

from __future__ import annotations

import contextlib
import math
import signal
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tcu import validate
from tcu.cli.main import main
from tests.helpers import write_mini

LIMIT_S = 30
# three frames over 1 ms: even the slowest --speed (0.001) replays it in about a second
TRACE = "".join(f"({1700000000 + i * 0.0005:.6f}) can0 3A0#01{i:02X}\n" for i in range(3))

numbers = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(min_value=-(10**30), max_value=10**30),
).map(str)
times = st.tuples(st.integers(0, 120), st.integers(0, 99), st.floats(0, 99)).map(
    lambda t: f"{t[0]}:{t[1]:02d}:{t[2]:g}"
)
commands = st.tuples(
    st.one_of(numbers, times, st.text(max_size=8)),
    st.sampled_from(["lock", "unlock", "set_departure", "start_charging", "fly", ""]),
    st.one_of(st.none(), st.text(max_size=8), st.sampled_from(["07:30", "25:99", "23:59"])),
).map(lambda c: f"{c[0]}:{c[1]}" + ("" if c[2] is None else f":{c[2]}"))
valid = st.sampled_from(["0", "0.0004", "0:00:00", "0:lock", "2", "1.5", "x.asc", "y.log.gz"])
values = st.one_of(valid, numbers, times, commands, st.text(max_size=40))


@contextlib.contextmanager
def time_limit(seconds: int) -> Iterator[None]:
    def expired(signum: int, frame: Any) -> None:
        raise AssertionError(f"did not end within {seconds} s")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


PARSERS: list[tuple[Callable[[str], Any], Callable[[Any], bool]]] = [
    (validate.seconds, lambda v: math.isfinite(v) and 0 <= v <= validate.MAX_SECONDS),
    (validate.positive_seconds, lambda v: 0 < v <= validate.MAX_SECONDS),
    (validate.speed, lambda v: validate.MIN_SPEED <= v <= validate.MAX_SPEED),
    (validate.port, lambda v: 1 <= v <= 65535),
    (validate.bitrate, lambda v: 1_000 <= v <= 12_000_000),
    (validate.jobs, lambda v: 1 <= v <= 256),
    (validate.seed, lambda v: v >= 0),
    (validate.vin, lambda v: len(v) == 17),
    (validate.text_id, lambda v: 0 < len(v) <= 200),
    (validate.broker_url, lambda v: v.startswith(("mqtt://", "mqtts://"))),
    (validate.command, lambda v: math.isfinite(v.t) and v.t >= 0),
]


@settings(max_examples=300, deadline=None)
@given(value=values, which=st.integers(0, len(PARSERS) - 1))
def test_parsers_return_a_value_in_range_or_refuse(value: str, which: int) -> None:
    parse, in_range = PARSERS[which]
    try:
        parsed = parse(value)
    except validate.Invalid as e:
        assert repr(value) in str(e) or "broker URL" in str(e) or "VIN" in str(e)
        return
    assert in_range(parsed), (value, parsed)


@settings(max_examples=200, deadline=None)
@given(value=st.one_of(numbers, times, st.text(max_size=20)))
def test_seconds_and_h_mm_ss_agree(value: str) -> None:
    try:
        t = validate.seconds(value)
    except validate.Invalid:
        return
    if ":" in value:
        h, m, s = value.strip().split(":")
        assert t == pytest.approx(int(h) * 3600 + int(m) * 60 + float(s))
    else:
        assert t == float(value)


# (--broker is left to the parser test: a valid URL would reach for a host off loopback)
OPTIONS = ["--start", "--stop", "--speed", "--command", "--out-trace", "--max-gap"]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    base = tmp_path_factory.mktemp("props")
    d, m = write_mini(base)
    t = base / "trace.log"
    t.write_text(TRACE)
    return d, m, t


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    pairs=st.lists(
        st.tuples(
            st.sampled_from(OPTIONS),
            st.one_of(values, st.text(alphabet=st.characters(exclude_characters="/\\\x00"))),
        ),
        min_size=1,
        max_size=3,
    ),
    json_out=st.booleans(),
)
def test_replay_ends_with_0_or_2_whatever_the_values(
    tiny: tuple[Path, Path, Path],
    capsys: pytest.CaptureFixture[str],
    pairs: list[tuple[str, str]],
    json_out: bool,
) -> None:
    d, m, t = tiny
    argv = ["replay", str(t), "--dbc", str(d), "--mapping", str(m)]
    for option, value in pairs:
        if option == "--out-trace" and "/" in value:
            continue  # never write outside the example's own folder
        argv.append(f"{option}={value}")
    if json_out:
        argv.append("--json")
    with (
        tempfile.TemporaryDirectory() as work,
        contextlib.chdir(work),
        time_limit(LIMIT_S),
    ):
        code = main(argv)
    captured = capsys.readouterr()
    assert code in (0, 2), (argv, captured.err)
    assert "Traceback" not in captured.err
    if code == 2:
        assert captured.err.startswith("error: "), captured.err
