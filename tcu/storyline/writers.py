"""python-can log writers that give the same bytes for the same frames.

python-can's writers are deterministic given frame timestamps, with three exceptions
this module removes: the ASC writer stamps its header with the wall clock
(``datetime.now()``) and its trigger block with the local time zone, and the TRC writer
writes the file's absolute path into its header. Here the ASC header carries the
start of the window written, in UTC (the measurement starts there, so the file's
relative timestamps count from it) and the TRC header the file's name only. BLF (which stores the
first and last frame times), candump ``.log`` and CSV need nothing. The TRC writer has no
CAN FD support, so FD frames are not offered to it; the generator counts them.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import can

from tcu.errors import ConfigError

FORMATS = ("blf", "asc", "log", "trc", "csv")
NO_FD = frozenset({"trc"})


class _AscWriter(can.ASCWriter):
    def __init__(self, file: Path, start: datetime) -> None:
        self._fixed_start = start
        super().__init__(str(file))
        self.log_event(f"eCell van trace from {start:%Y-%m-%dT%H:%M:%S}Z", start.timestamp())

    def _format_header_datetime(self, dt: datetime) -> str:
        return str(super()._format_header_datetime(self._fixed_start))


class _TrcWriter(can.TRCWriter):
    def __init__(self, file: Path) -> None:
        super().__init__(str(file))
        self.filepath = Path(file).name


def open_writer(path: Path, fmt: str, start: datetime) -> Any:
    """A python-can writer for ``fmt`` at ``path``; ``start`` is when the measurement starts."""
    if fmt not in FORMATS:
        raise ConfigError(f"unknown trace format {fmt!r} (known: {', '.join(FORMATS)})")
    try:
        if fmt == "blf":
            return can.BLFWriter(str(path), compression_level=9)
        if fmt == "asc":
            return _AscWriter(path, start)
        if fmt == "log":
            return can.CanutilsLogWriter(str(path), channel="can0")
        if fmt == "trc":
            return _TrcWriter(path)
        return can.CSVWriter(str(path))
    except OSError as e:
        raise ConfigError(f"{path}: cannot write: {e.strerror}") from None
