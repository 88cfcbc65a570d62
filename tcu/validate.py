"""Every value ``tcu`` and ``cloud-stub`` take on their command lines, checked once, here.

Theory of operation. Each public function is an argparse ``type=``: it takes the text the
user typed and returns the parsed value, or raises ``argparse.ArgumentTypeError`` with a
message that quotes the value. argparse puts the option's name in front
(``error: argument --start: 'nan' is not a time: ...``) and exits with status 2, so a bad
value never reaches the code behind the option, and no subcommand parses a number itself.

Times are seconds (``90``, ``1.5``) or ``H:MM:SS[.f]`` (``0:01:30``), read by the scenario
language's ``parse_time`` (kept here); NaN, infinities and negative values are refused, and so is
anything beyond ``MAX_SECONDS`` (ten years of vehicle time), so that no later arithmetic
meets a number it cannot handle. ``--command T:NAME[:ARG]`` splits at the first command
name, so T may itself hold colons (``0:01:00:lock``), and its argument is checked as the
command checks it (``set_departure`` takes ``HH:MM``, the others take none).

Checks that involve two options (``--start`` before ``--stop``) are ``check_window``,
called by the subcommand with the parsed values; it raises ``ConfigError`` (exit 2).
"""

from __future__ import annotations

import argparse
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from tcu.errors import ConfigError, TcuError
from tcu.events import Command
from tcu.services.config import parse_hhmm
from tcu.vehicle.catalogue import COMMAND_NAMES

if TYPE_CHECKING:
    from tcu.runtime.mqtt import BrokerURL

MAX_SECONDS: Final = 10 * 365 * 86400.0
MAX_SPEED: Final = 1e6
MIN_SPEED: Final = 1e-3
ARG_COMMANDS: Final = frozenset({"set_departure"})


class Invalid(argparse.ArgumentTypeError, ValueError):
    """A value refused; argparse shows it after the option's name, callers catch ValueError."""


def _float(text: str, what: str) -> float:
    try:
        value = float(text.strip())
    except ValueError:
        raise Invalid(f"{text!r} is not {what}") from None
    if not math.isfinite(value):
        raise Invalid(f"{text!r} is not {what}: must be a finite number")
    return value


def seconds(text: str) -> float:
    """A time: seconds >= 0 or ``H:MM:SS[.f]``, at most ``MAX_SECONDS``."""
    stripped = text.strip()
    try:
        if ":" in stripped:
            value = parse_time(stripped)
        else:
            value = parse_time(_float(text, "a time (seconds or H:MM:SS)"))
    except ValueError:
        raise Invalid(f"{text!r} is not a time: expected seconds >= 0 or H:MM:SS") from None
    if value > MAX_SECONDS:
        raise Invalid(f"{text!r}: more than {MAX_SECONDS:g} s")
    return value


def positive_seconds(text: str) -> float:
    """A duration > 0: seconds or ``H:MM:SS``."""
    value = seconds(text)
    if value <= 0:
        raise Invalid(f"{text!r}: must be more than 0 s")
    return value


def speed(text: str) -> float:
    """A pace factor: a finite number from ``MIN_SPEED`` to ``MAX_SPEED``."""
    value = _float(text, "a speed factor")
    if not MIN_SPEED <= value <= MAX_SPEED:
        raise Invalid(f"{text!r}: must be from {MIN_SPEED:g} to {MAX_SPEED:g} (x real time)")
    return value


def _int(text: str, what: str, low: int, high: int) -> int:
    try:
        value = int(text.strip(), 10)
    except ValueError:
        raise Invalid(f"{text!r} is not {what}") from None
    if not low <= value <= high:
        raise Invalid(f"{text!r}: {what} must be from {low} to {high}")
    return value


def port(text: str) -> int:
    """A TCP/UDP port, 1 to 65535."""
    return _int(text, "a port number", 1, 65535)


def bitrate(text: str) -> int:
    """A CAN bitrate in bit/s: 1 kbit/s to 12 Mbit/s (CAN FD data phases included)."""
    return _int(text, "a bitrate in bit/s", 1_000, 12_000_000)


def jobs(text: str) -> int:
    """A number of worker processes, 1 to 256."""
    return _int(text, "a number of processes", 1, 256)


def seed(text: str) -> int:
    """A random seed, 0 to 2**63 - 1."""
    return _int(text, "a seed", 0, 2**63 - 1)


def vin(text: str) -> str:
    """A VIN: 17 characters, digits and capitals without I, O, Q."""
    from tcu.telemetry.storage.identity import validate_vin

    try:
        return validate_vin(text)
    except ConfigError as e:
        raise Invalid(str(e)) from None


def text_id(text: str) -> str:
    """A name or identifier: 1 to 200 printable characters, no spaces."""
    if not text or len(text) > 200 or not text.isprintable() or any(c.isspace() for c in text):
        raise Invalid(f"{text!r}: expected 1 to 200 printable characters without spaces")
    return text


def broker_url(text: str) -> str:
    """An ``mqtt://HOST[:PORT]`` or ``mqtts://HOST[:PORT]`` URL (kept as text)."""
    from tcu.runtime.mqtt import BrokerURL

    try:
        BrokerURL.parse(text)
    except TcuError as e:
        raise Invalid(str(e)) from None
    return text


def existing_file(text: str) -> Path:
    """A path to a file that exists."""
    path = Path(text)
    if not text or not path.exists():
        raise Invalid(f"{text!r}: file not found")
    if path.is_dir():
        raise Invalid(f"{text!r}: is a directory, not a file")
    return path


def out_trace(text: str) -> Path:
    """A trace file to write, in a format ``tcu replay`` reads back."""
    from tcu.can.sources import trace_suffix

    path = Path(text)
    try:
        trace_suffix(path)
    except TcuError as e:
        raise Invalid(str(e).replace(f"{path}: ", "", 1)) from None
    if path.suffix.lower() == ".mf4" or (path.suffix.lower() == ".db" and path.exists()):
        # .mf4 needs asammdf to write; a .db would be appended to, not replaced
        raise Invalid(f"{text!r}: write .asc, .blf, .log, .trc or .csv (optionally .gz)")
    if path.is_dir():
        raise Invalid(f"{text!r}: is a directory")
    if path.parent.exists() and not path.parent.is_dir():
        raise Invalid(f"{text!r}: {str(path.parent)!r} is not a folder")
    return path


_HMS = re.compile(r"(\d+):([0-5]\d):([0-5]\d(?:\.\d+)?)")


def parse_time(value: object) -> float:
    """A time as the scenario language and every time option write it: seconds from a
    number >= 0 or ``"H:MM:SS[.f]"``; ValueError otherwise."""
    if isinstance(value, bool):
        raise ValueError(f"expected a time, got {value!r}")
    if isinstance(value, int | float):
        t = float(value)
    elif isinstance(value, str):
        m = _HMS.fullmatch(value.strip())
        if m is None:
            raise ValueError(f'expected seconds or "H:MM:SS", got {value!r}')
        t = int(m.group(1)) * 3600 + int(m.group(2)) * 60 + float(m.group(3))
    else:
        raise ValueError(f"expected a time, got {value!r}")
    if not math.isfinite(t) or t < 0:
        raise ValueError(f"a time must be a finite number >= 0, got {value!r}")
    return t


@dataclass(frozen=True, slots=True, kw_only=True)
class InjectedCommand:
    """``--command T:NAME[:ARG]``: a command to hand the core at vehicle time ``t``."""

    spec: str
    t: float
    name: str
    argument: str | None

    def command(self, command_id: str) -> Command:
        return Command(
            name=self.name, argument=self.argument, command_id=command_id, source="trace"
        )


def command(text: str) -> InjectedCommand:
    """``T:NAME[:ARG]``; T in seconds or H:MM:SS, NAME a command, ARG what NAME takes."""
    parts = text.split(":")
    at = next((i for i, p in enumerate(parts) if p.strip() in COMMAND_NAMES), None)
    if at is None:
        unknown = next((p for p in parts[1:] if p and not p.strip().isdigit()), None)
        known = ", ".join(COMMAND_NAMES)
        if len(parts) < 2 or unknown is None:
            raise Invalid(f"{text!r}: expected T:NAME[:ARG] with NAME one of {known}")
        raise Invalid(f"{text!r}: unknown command {unknown!r} (known: {known})")
    name = parts[at].strip()
    time_text = ":".join(parts[:at])
    if not time_text:
        raise Invalid(f"{text!r}: T (vehicle time) is missing before {name}")
    try:
        t = seconds(time_text)
    except Invalid as e:
        raise Invalid(f"{text!r}: T must be seconds >= 0 or H:MM:SS of vehicle time: {e}") from None
    argument = ":".join(parts[at + 1 :]) if at + 1 < len(parts) else None
    if name in ARG_COMMANDS:
        try:
            parse_hhmm(argument or "")
        except ValueError as e:
            raise Invalid(f"{text!r}: {name} needs a departure time HH:MM: {e}") from None
    elif argument is not None:
        raise Invalid(f"{text!r}: {name} takes no argument, got {argument!r}")
    return InjectedCommand(spec=text, t=t, name=name, argument=argument)


def check_window(start: float | None, stop: float | None) -> None:
    """``--start`` must lie before ``--stop`` when both are given."""
    if start is not None and stop is not None and not start < stop:
        raise ConfigError(f"--start {start:g} s must be before --stop {stop:g} s")


def add_broker_arguments(
    parser: Any, default: str | None = None, *, also: tuple[str, ...] = ()
) -> None:
    """``--broker URL`` plus ``--ca``, ``--cert``, ``--key`` for an mqtts:// broker.

    ``also`` names words the command takes in place of a URL (``tcu demo``'s mosquitto-tls).
    """

    def broker(text: str) -> str:
        return text if text in also else broker_url(text)

    parser.add_argument(
        "--broker",
        default=default,
        type=broker,
        metavar="URL",
        help="mqtt://HOST:PORT or mqtts://HOST:PORT" + "".join(f", or {w}" for w in also),
    )
    parser.add_argument("--ca", help="CA certificate file (PEM) for mqtts://")
    parser.add_argument("--cert", help="client certificate file (PEM) for mqtts://")
    parser.add_argument("--key", help="client private key file (PEM) for mqtts://")


def broker_from_args(args: Any) -> BrokerURL:
    """The ``BrokerURL`` of ``--broker`` and its TLS files."""
    from tcu.runtime.mqtt import BrokerURL

    return BrokerURL.parse(args.broker, ca=args.ca, cert=args.cert, key=args.key)


# --- the command lines both programs share ---------------------------------------------


class Parser(argparse.ArgumentParser):
    """argparse with the project's error line: ``error: ...`` (and where to look), exit 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"error: {message} (see {self.prog} --help)\n")


def add_verbosity_arguments(p: argparse.ArgumentParser) -> None:
    """``-v``/``-q`` on one parser (tcu's subcommands and cloud-stub's share them)."""
    p.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=0,
        help="say more (-v: log INFO, -vv: DEBUG)",
    )
    p.add_argument("-q", "--quiet", action="store_true", help="say less: no progress, only errors")


def add_window_and_commands(parser: argparse.ArgumentParser) -> None:
    """``--start``, ``--stop`` and ``--command``, as ``tcu replay`` and ``tcu plot`` take them."""
    parser.add_argument(
        "--start", type=seconds, help="vehicle time to start at (seconds or H:MM:SS)"
    )
    parser.add_argument("--stop", type=seconds, help="vehicle time to stop at (seconds or H:MM:SS)")
    parser.add_argument(
        "--command",
        action="append",
        default=[],
        type=command,
        metavar="T:NAME[:ARG]",
        help="inject a command at vehicle time T, seconds or H:MM:SS (repeatable)",
    )
