"""Frame sources: trace files read through python-can, resilient to damaged records.

``open_trace(path)`` picks a reader by suffix, as ``can.LogReader`` does (``.asc``,
``.blf``, ``.log``, ``.trc``, ``.csv``, ``.db``, ``.mf4``, each optionally ``.gz``), and
returns a ``TraceSource``: an iterator of ``can.Message`` that counts what it had to skip.

python-can's readers are generators: one malformed line raises out of them and ends the
iteration. For the line-based formats the source feeds the reader through a line
counter; when the reader raises, the offending line is counted as a bad record (with
its line number kept for the summary) and a fresh reader resumes on the next line, with
the file's header lines replayed so timestamps keep their base. Binary formats cannot
be resynchronised: a damaged BLF or MF4 stops at the last good object, counted and
reported, never raised.
"""

from __future__ import annotations

import gzip
import io
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import can

from tcu.errors import TraceError

TEXT_READERS: dict[str, Any] = {
    ".asc": can.io.asc.ASCReader,
    ".log": can.io.canutils.CanutilsLogReader,
    ".trc": can.io.trc.TRCReader,
    ".csv": can.io.csv.CSVReader,
}
BINARY_SUFFIXES = (".blf", ".mf4", ".db")
SUFFIXES = (*TEXT_READERS, *BINARY_SUFFIXES)
MAX_BAD_EXAMPLES = 5


def trace_suffix(path: Path) -> tuple[str, bool]:
    """The reader suffix of ``path`` and whether it is gzip-compressed."""
    suffixes = [s.lower() for s in path.suffixes]
    gz = bool(suffixes) and suffixes[-1] == ".gz"
    if gz:
        suffixes = suffixes[:-1]
    suffix = suffixes[-1] if suffixes else ""
    if suffix not in SUFFIXES:
        known = ", ".join(SUFFIXES)
        raise TraceError(f"{path}: unknown trace format {suffix or '(none)'!r} (known: {known})")
    return suffix, gz


class _Lines:
    """Lines for one python-can reader: a replayed prefix, then the shared raw stream.

    ``counter[0]`` counts raw lines across readers, so it is the line number of the
    line a reader failed on. Raw lines are appended to ``capture`` while it is a list.
    """

    def __init__(self, prefix: list[str], raw: Iterator[str], state: _ReadState) -> None:
        self._prefix: Iterator[str] | None = iter(prefix) if prefix else None
        self._raw = raw
        self._state = state

    def __iter__(self) -> _Lines:
        return self

    def __next__(self) -> str:
        if self._prefix is not None:
            line = next(self._prefix, None)
            if line is not None:
                return line
            self._prefix = None
        line = next(self._raw)
        state = self._state
        state.line += 1
        if state.capture is not None:
            state.capture.append(line)
        return line

    def readline(self) -> str:
        return next(self, "")

    def close(self) -> None:
        pass


class _ReadState:
    __slots__ = ("capture", "line")

    def __init__(self) -> None:
        self.line = 0
        self.capture: list[str] | None = []


class TraceSource:
    """Iterates the frames of one trace file; ``bad_records`` counts what was skipped."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.suffix, self.gzipped = trace_suffix(path)
        if not path.exists():
            raise TraceError(f"{path}: trace file not found")
        if path.is_dir():
            raise TraceError(f"{path}: is a directory, not a trace file")
        self.bad_records = 0
        self.bad_examples: list[str] = []
        self.truncated = False

    def _bad(self, where: str, e: BaseException) -> None:
        self.bad_records += 1
        if len(self.bad_examples) < MAX_BAD_EXAMPLES:
            text = str(e).strip()
            detail = text.splitlines()[0][:120] if text else type(e).__name__
            self.bad_examples.append(f"{self.path}:{where}: {detail}")

    def __iter__(self) -> Iterator[can.Message]:
        if self.suffix in TEXT_READERS:
            return self._iter_text()
        return self._iter_binary()

    def _open_text(self) -> IO[str]:
        try:
            if self.gzipped:
                return io.TextIOWrapper(
                    gzip.open(self.path, "rb"), encoding="utf-8", errors="replace"
                )
            return open(self.path, encoding="utf-8", errors="replace")
        except OSError as e:
            raise TraceError(f"{self.path}: cannot open: {e.strerror}") from None

    def _iter_text(self) -> Iterator[can.Message]:
        reader_cls = TEXT_READERS[self.suffix]
        state = _ReadState()
        header: list[str] = []
        with self._open_text() as f:
            raw = iter(f)
            while True:
                started_at = state.line
                try:
                    for msg in reader_cls(file=_Lines(header, raw, state)):
                        if state.capture is not None:
                            header = state.capture[:-1]
                            state.capture = None
                        yield msg
                    return
                except (OSError, EOFError) as e:
                    self.truncated = True
                    self._bad(f"{state.line}", e)
                    return
                except Exception as e:  # noqa: BLE001 - any reader failure is a bad record
                    self._bad(f"{state.line}", e)
                    if state.capture is not None:
                        if state.capture:
                            state.capture.pop()
                        header = list(state.capture)
                    if state.line == started_at:
                        self.truncated = True
                        return

    def _open_binary(self) -> Any:
        if self.suffix == ".db":
            return can.io.sqlite.SqliteReader(str(self.path))
        if self.suffix == ".mf4":
            try:
                from can.io.mf4 import MF4Reader
            except ImportError:  # pragma: no cover - depends on asammdf
                raise TraceError(f"{self.path}: reading .mf4 needs asammdf installed") from None
            reader_cls: Any = MF4Reader
        else:
            reader_cls = can.io.blf.BLFReader
        try:
            f: Any = gzip.open(self.path, "rb") if self.gzipped else open(self.path, "rb")  # noqa: SIM115
        except OSError as e:
            raise TraceError(f"{self.path}: cannot open: {e.strerror}") from None
        try:
            return reader_cls(f)
        except Exception as e:  # noqa: BLE001 - the file's header is unreadable
            f.close()
            raise TraceError(f"{self.path}: cannot read {self.suffix} header: {e}") from None

    def _iter_binary(self) -> Iterator[can.Message]:
        reader = self._open_binary()
        try:
            yield from reader
        except Exception as e:  # noqa: BLE001 - a damaged object ends a binary file
            self.truncated = True
            self._bad("after the last good frame", e)
        finally:
            reader.stop()


def open_trace(path: str | Path) -> TraceSource:
    """A frame source for the trace file at ``path``; TraceError if it cannot be one."""
    return TraceSource(Path(path))
