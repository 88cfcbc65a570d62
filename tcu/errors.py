"""Error hierarchy of the TCU package.

One root (`TcuError`) and narrow children by stage. Third-party errors are translated
at the boundary (``raise TraceError(...) from None``) so the CLI can print
``error: <what and where>`` and exit 2 without a traceback.
"""

from __future__ import annotations


class TcuError(Exception):
    """Root of every error the TCU raises on purpose."""


class ConfigError(TcuError):
    """A DBC, mapping, vehicle configuration or scenario that cannot be used."""


class TraceError(TcuError):
    """A trace file that cannot be opened or read."""


class BusError(TcuError):
    """A live CAN bus or adapter that cannot be opened or used."""


class VerificationError(TcuError):
    """A signed message whose signature, key or content does not verify."""


class DecodeError(TcuError):
    """Bytes that are not a well-formed message of the expected schema."""


class TransitionError(TcuError):
    """An event that is not allowed in a state machine's current state."""
