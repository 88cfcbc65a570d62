"""The ``tcu`` command: one module per subcommand, each adding its own parser.

Every subcommand module exposes ``register(subparsers)``, which adds its parser and
sets ``func`` to a callable taking the parsed namespace and returning an exit code.
A ``TcuError`` (a user's mistake: bad file, bad option, bad configuration) is printed
as ``error: ...`` with exit code 2, never as a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from tcu import __version__
from tcu.errors import TcuError

SUBCOMMANDS = (
    "demo",
    "replay",
    "generate",
    "provision",
    "run",
    "vehicle",
    "scenario",
    "slcan_device",
    "fleet",
)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stderr)
        self.exit(2, f"error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="tcu", description="Electric van TCU simulator")
    parser.add_argument("--version", action="version", version=f"tcu-sim {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name in SUBCOMMANDS:
        try:
            module = importlib.import_module(f"tcu.cli.{name}")
        except ModuleNotFoundError as e:
            if e.name == f"tcu.cli.{name}":
                continue
            raise
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
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
