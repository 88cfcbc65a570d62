"""The ``tcu`` command: one module per subcommand, each adding its own parser.

Every subcommand module exposes ``register(subparsers)``, which adds its parser and
sets ``func`` to a callable taking the parsed namespace and returning an exit code.
A ``TcuError`` (a user's mistake: bad file, bad option, bad configuration) is printed
as ``error: ...`` with exit code 2, never as a traceback. Values are checked by the
``type=`` functions of ``tcu.validate`` as argparse reads them.

Every subcommand takes ``-v`` (more: log INFO, ``-vv`` DEBUG) and ``-q`` (less: no progress,
no warnings on stderr unless ``--strict``, log only errors); the subcommand reads the
result as ``args.verbosity`` (-1, 0, 1, 2).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence
from typing import Any

from tcu import __version__
from tcu.errors import TcuError
from tcu.validate import Parser, add_verbosity_arguments

SUBCOMMANDS = (
    "demo",
    "replay",
    "plot",
    "generate",
    "provision",
    "run",
    "vehicle",
    "scenario",
    "slcan_device",
    "fleet",
)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="tcu", description="Electric van TCU simulator")
    parser.add_argument("--version", action="version", version=f"tcu-sim {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    for name in SUBCOMMANDS:
        try:
            module = importlib.import_module(f"tcu.cli.{name}")
        except ModuleNotFoundError as e:
            if e.name == f"tcu.cli.{name}":
                continue
            raise
        module.register(sub)
    _add_verbosity(sub)
    return parser


def _add_verbosity(sub: Any) -> None:
    for parser in sub.choices.values():
        nested = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        if nested:
            for action in nested:
                _add_verbosity(action)
        else:
            add_verbosity_arguments(parser)


def verbosity(args: argparse.Namespace) -> int:
    """-1 with -q, else the number of -v; sets the logging level to match."""
    level = -1 if getattr(args, "quiet", False) else min(2, getattr(args, "verbose", 0))
    log_level = (logging.ERROR, logging.WARNING, logging.INFO, logging.DEBUG)[level + 1]
    logging.basicConfig(level=log_level, format="%(name)s: %(message)s")
    logging.getLogger().setLevel(log_level)
    return level


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # --help, --version, or a value argparse refused (exit 2)
        return e.code if isinstance(e.code, int) else 0 if e.code is None else 2
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    args.verbosity = verbosity(args)
    try:
        code: int = args.func(args)
    except TcuError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
