"""``tcu vehicle``: the prompt on stdin, signals, and mistakes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from tcu.cli.main import main

CMD = [sys.executable, "-m", "tcu.cli.main", "vehicle", "-i", "virtual", "-c", "vehicle-cli"]
ENV = {**os.environ, "PYTHONWARNINGS": "error"}


def test_the_prompt_reads_commands_from_stdin() -> None:
    script = "set Hood.IsOpen true\nshow\nset SelectedGear Q\nquit\n"
    done = subprocess.run(
        CMD, input=script, capture_output=True, text=True, timeout=20, env=ENV, check=False
    )
    assert done.returncode == 0, done.stderr
    assert "Vehicle.Body.Hood.IsOpen = true" in done.stdout
    assert "* Vehicle.Body.Hood.IsOpen = true" in done.stdout
    assert "  Vehicle.Powertrain.Transmission.SelectedGear = P" in done.stdout
    assert "error: Vehicle.Powertrain.Transmission.SelectedGear: 'Q' is not one of" in done.stdout
    assert "vehicle simulator on virtual:vehicle-cli: the van at rest" in done.stderr
    assert "frames sent" in done.stderr
    assert "Traceback" not in done.stderr


def test_sigterm_stops_a_storyline_cleanly() -> None:
    proc = subprocess.Popen(
        [*CMD, "--storyline", "depot_night", "--speed", "60", "--no-prompt"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=ENV,
    )
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline()
        assert "depot_night, 13 cyclic messages" in line, line
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    assert "Traceback" not in err
    sent = next(row for row in err.splitlines() if row.startswith("frames sent"))
    assert int(sent.split()[-1].replace(",", "")) > 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--storyline", "nosuch"], "error: unknown storyline 'nosuch'"),
        (["--set", "Hood.IsOpen"], "error: --set 'Hood.IsOpen': expected PATH=VALUE"),
        (["--set", "Nothing=1"], "error: no signal 'Nothing'"),
        (["--speed", "0"], "error: argument --speed: '0': must be from 0.001"),
    ],
)
def test_mistakes_are_errors(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["vehicle", "-i", "virtual", "-c", "vehicle-cli", "--no-prompt", *args]) == 2
    err = capsys.readouterr().err
    assert err.splitlines()[-1].startswith(message) and "Traceback" not in err, err
