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

Each reader also knows how its format ends, and says so in ``warnings`` when a file
does not end that way: a BLF header states the file's size and object count, so a BLF
that stops before that size is cut (and the warning says where, and how many objects
the header promised); a gzip stream that ends before its trailer is cut; a text trace
whose last line has no line end, or an ASC file that opened a ``Begin TriggerBlock`` and
never closed it, was cut mid-write; a file that yields no frame at all, from however
many lines, is named as such. ``bytes_read()`` is how far into the file (as stored, so
compressed bytes for ``.gz``) the readers have got, for progress bars.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import itertools
from collections.abc import Iterator
from operator import itemgetter
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
        state.last = line
        if state.capture is not None:
            state.capture.append(line)
        return line

    def readline(self) -> str:
        return next(self, "")

    def close(self) -> None:
        pass


class _ReadState:
    __slots__ = ("capture", "last", "line")

    def __init__(self) -> None:
        self.line = 0
        self.capture: list[str] | None = []
        self.last = ""


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
        self.frames_read = 0
        self.warnings: list[str] = []
        self.size = path.stat().st_size
        self._raw: IO[bytes] | None = None

    def bytes_read(self) -> int:
        """How many bytes of the file (as stored) the reader has consumed so far."""
        raw = self._raw
        if raw is None or raw.closed:
            return self.size if raw is not None else 0
        try:
            return raw.tell()
        except (OSError, ValueError):
            return 0

    def _warn(self, text: str) -> None:
        self.warnings.append(f"{self.path}: {text}")

    def _no_frame(self) -> None:
        if self.frames_read == 0:
            self._warn(f"no frame read from {self.size:,} bytes: is this a {self.suffix} trace?")

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

    def _open_raw(self) -> IO[bytes]:
        try:
            raw = open(self.path, "rb")  # noqa: SIM115 - closed by the reader that wraps it
        except OSError as e:
            raise TraceError(f"{self.path}: cannot open: {e.strerror}") from None
        self._raw = raw
        return raw

    def _open_text(self) -> IO[str]:
        raw = self._open_raw()
        stream: Any = gzip.GzipFile(fileobj=raw, mode="rb") if self.gzipped else raw
        return io.TextIOWrapper(stream, encoding="utf-8", errors="replace")

    def _cut_gzip(self, e: BaseException, where: str) -> None:
        self.truncated = True
        self._warn(
            f"gzip stream cut ({e}): the compressed file ends at byte {self.size:,}; "
            f"read up to {where}"
        )

    def _text_end(self, state: _ReadState) -> None:
        """Warnings for a text trace that does not end as its format does."""
        if state.last and not state.last.endswith("\n") and not self.truncated:
            self._warn(
                f"the last line ({state.line}) has no line end: the file was cut mid-line "
                f"at byte {self.size:,}"
            )
        if self.suffix == ".asc" and self._asc_open_block:
            self._warn(
                "'Begin TriggerBlock' is never closed by 'End TriggerBlock': the file is cut"
            )

    def _iter_text(self) -> Iterator[can.Message]:
        reader_cls = TEXT_READERS[self.suffix]
        state = _ReadState()
        header: list[str] = []
        self._asc_open_block = False
        with self._open_text() as f, contextlib.closing(self._raw or f):
            raw = self._watch_asc(iter(f)) if self.suffix == ".asc" else iter(f)
            yield from self._text_frames(reader_cls, raw, state, header)
            self._text_end(state)
        self._no_frame()

    def _watch_asc(self, lines: Iterator[str]) -> Iterator[str]:
        for line in lines:
            head = line.lstrip()[:18].lower()
            if head.startswith("begin triggerblock"):
                self._asc_open_block = True
            elif head.startswith("end triggerblock"):
                self._asc_open_block = False
            yield line

    def _text_frames(
        self, reader_cls: Any, raw: Iterator[str], state: _ReadState, header: list[str]
    ) -> Iterator[can.Message]:
        while True:
            started_at = state.line
            try:
                for msg in reader_cls(file=_Lines(header, raw, state)):
                    if state.capture is not None:
                        header = state.capture[:-1]
                        state.capture = None
                    self.frames_read += 1
                    yield msg
                return
            except (OSError, EOFError) as e:
                self.truncated = True
                self._bad(f"{state.line}", e)
                if self.gzipped:
                    self._cut_gzip(e, f"line {state.line:,}")
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
        raw = self._open_raw()
        f: Any = gzip.GzipFile(fileobj=raw, mode="rb") if self.gzipped else raw
        try:
            return reader_cls(f)
        except Exception as e:  # noqa: BLE001 - the file's header is unreadable
            f.close()
            raw.close()
            raise TraceError(f"{self.path}: cannot read {self.suffix} header: {e}") from None

    def _iter_binary(self) -> Iterator[can.Message]:
        reader = self._open_binary()
        counter = itertools.count()
        ended = False
        read: list[int] = []

        def frames() -> int:
            """How many frames the reader gave (the counter's next value, taken once)."""
            if not read:
                read.append(next(counter))
            return read[0]

        try:
            # counted in C (zip takes the frame first, so the counter never runs ahead)
            yield from map(itemgetter(0), zip(reader, counter, strict=False))
            ended = True
        except (EOFError, OSError) as e:
            self.truncated = True
            self._bad("after the last good frame", e)
            if self.gzipped:
                self._cut_gzip(e, f"frame {frames():,}")
        except Exception as e:  # noqa: BLE001 - a damaged object ends a binary file
            self.truncated = True
            self._bad("after the last good frame", e)
            self._warn(
                f"damaged {self.suffix} object after frame {frames():,}: read up to it ({e})"
            )
        else:
            ended = True
        finally:
            self.frames_read = frames()
            if ended and isinstance(reader, can.io.blf.BLFReader):
                self._blf_end(reader, self.frames_read)
            reader.stop()
            if self._raw is not None:
                self._raw.close()
        self._no_frame()

    def _blf_end(self, reader: Any, frames: int) -> None:
        """Compare what was read with what the BLF header promised."""
        stated, objects = int(reader.file_size), int(reader.object_count)
        if self.gzipped:
            return  # a cut gzip stream raises EOFError; its inner size is not known here
        at = self.size
        if stated <= 0:
            self._warn("the BLF header states no file size: the writer never finished it")
        elif at < stated:
            self.truncated = True
            self._warn(
                f"BLF header says {objects:,} objects in {stated:,} bytes, {frames:,} frames "
                f"read: truncated at byte {at:,}"
            )


def integrity_warnings(path: str | Path) -> list[str]:
    """Read the whole trace at ``path`` and return what its source warns about it.

    For drivers that read the trace elsewhere (through a broker, in another process) and
    still owe their summary the trace's damage and truncation.
    """
    source = open_trace(path)
    for _ in source:
        pass
    out = list(source.warnings)
    if source.bad_records:
        out.append(f"{path}: {source.bad_records:,} damaged records skipped")
    return out


def open_trace(path: str | Path) -> TraceSource:
    """A frame source for the trace file at ``path``; TraceError if it cannot be one."""
    return TraceSource(Path(path))
