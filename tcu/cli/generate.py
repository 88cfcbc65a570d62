"""``tcu generate``: write CAN traces of the reference van's storylines."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tcu import validate
from tcu.errors import ConfigError
from tcu.storyline import STORYLINES, Storyline, get
from tcu.storyline.generator import (
    DEFAULT_SEED,
    REFERENCE_TRACES,
    TraceSummary,
    load_reference_encoder,
    write_trace,
)
from tcu.storyline.writers import FORMATS


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "generate",
        help="write CAN traces of the reference van's storylines",
        description="Play storylines on the reference van's bus (can_traces/van.dbc) and "
        "write the frames with python-can's log writers. Same seed, same bytes.",
    )
    p.add_argument(
        "storylines",
        nargs="*",
        metavar="STORYLINE",
        help=f"storylines to play (default: all of {', '.join(STORYLINES)})",
    )
    p.add_argument("--out-dir", type=Path, default=Path("."), help="output folder (default: .)")
    p.add_argument(
        "--format",
        dest="formats",
        nargs="+",
        action="extend",
        metavar="FMT",
        help=f"trace formats, one file each: {', '.join(FORMATS)} (default: blf)",
    )
    p.add_argument(
        "--seed",
        type=validate.seed,
        default=DEFAULT_SEED,
        help=f"seed for timing jitter and noise (default: {DEFAULT_SEED})",
    )
    p.add_argument(
        "--duration", type=validate.positive_seconds, help="only the first S seconds (from --from)"
    )
    p.add_argument(
        "--from",
        dest="t_from",
        type=validate.seconds,
        default=0.0,
        metavar="S",
        help="start the trace S seconds into the storyline",
    )
    p.add_argument(
        "--mapping",
        type=Path,
        help="mapping file naming the DBC (default: can_traces/van.mapping.yaml)",
    )
    p.add_argument(
        "--reference",
        action="store_true",
        help="write the reference set committed in can_traces/ instead",
    )
    p.add_argument(
        "--list", action="store_true", help="list the storylines and their events, write nothing"
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.reference and (args.storylines or args.formats or args.duration or args.t_from):
        raise ConfigError(
            "--reference writes a fixed set: no STORYLINE, --format, --from, --duration"
        )
    names: list[str] = args.storylines or list(STORYLINES)
    for name in names:
        if name not in STORYLINES:
            raise ConfigError(f"unknown storyline {name!r} (known: {', '.join(STORYLINES)})")
    formats: list[str] = args.formats or ["blf"]
    for fmt in formats:
        if fmt not in FORMATS:
            raise ConfigError(f"unknown trace format {fmt!r} (known: {', '.join(FORMATS)})")
    if args.list:
        for name in names:
            print(describe(get(name)))
        return 0
    encoder = load_reference_encoder(args.mapping)
    out: Path = args.out_dir
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ConfigError(f"{out}: cannot create the output folder: {e.strerror}") from None
    jobs: list[tuple[Storyline, str, Path, float, float | None]] = []
    stories: dict[str, Storyline] = {}
    if args.reference:
        for ref in REFERENCE_TRACES:
            story = stories.setdefault(ref.storyline, get(ref.storyline))
            jobs.append((story, ref.fmt, out / ref.file, ref.t_from, ref.duration))
    else:
        for name in names:
            story = stories.setdefault(name, get(name))
            if args.t_from >= story.duration:
                raise ConfigError(
                    f"--from {args.t_from}: storyline {name} lasts {story.duration:.0f} s"
                )
            for fmt in formats:
                jobs.append((story, fmt, out / f"{name}.{fmt}", args.t_from, args.duration))
    for story, fmt, path, t_from, duration in jobs:
        summary = write_trace(
            story,
            encoder,
            path,
            fmt,
            seed=args.seed,
            t_from=t_from,
            duration=duration,
            progress=_progress(path.name),
        )
        print(summary_line(summary))
    return 0


def _progress(label: str) -> Callable[[float], None] | None:
    if not sys.stderr.isatty():
        return None

    def show(fraction: float) -> None:
        end = "\n" if fraction >= 1.0 else ""
        print(f"\r{label}: {min(fraction, 1.0):6.1%}", end=end, file=sys.stderr, flush=True)

    return show


def summary_line(s: TraceSummary) -> str:
    line = f"{s.path}: {s.frames} frames, span {s.span:.1f} s, {s.size} bytes"
    if s.skipped_fd:
        line += f", {s.skipped_fd} CAN FD frames left out (the format has no CAN FD)"
    return line


def describe(story: Storyline) -> str:
    """The storyline's title, bus phases and events, one per line, with UTC times."""
    lines = [
        f"{story.name}: {story.title}",
        f"  starts {story.start:%Y-%m-%dT%H:%M:%SZ}, lasts {story.duration:.0f} s",
    ]
    if story.time_compression != 1:
        lines.append(f"  time compression 1:{story.time_compression:g}")
    for a, b, mode in story.phases():
        lines.append(f"  bus {mode:<8} {story.clock(a)}-{story.clock(b)}  t={a:.0f}-{b:.0f} s")
    for ev in story.events:
        lines.append(f"  {story.clock(ev.t)}  t={ev.t:8.1f}  {ev.text}")
    return "\n".join(lines)
