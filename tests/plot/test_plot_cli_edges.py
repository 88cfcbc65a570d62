"""``tcu plot`` checks its window and commands as ``tcu replay`` does: error naming the
option and the value, exit 2 (``--start nan`` used to plot silently)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tcu.can.setup import TRACES
from tcu.cli.main import main


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--start", "nan"], "argument --start: 'nan'"),
        (["--stop", "-1"], "argument --stop: '-1'"),
        (["--start", "100", "--stop", "50"], "--start 100 s must be before --stop 50 s"),
        (["--command", "inf:lock"], "argument --command: 'inf:lock'"),
    ],
)
def test_bad_values_name_option_and_value_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], needle: str
) -> None:
    out = tmp_path / "x.png"
    assert main(["plot", str(TRACES / "cross_border.log"), "-o", str(out), *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and needle in err, err
    assert "Traceback" not in err
    assert not out.exists()
