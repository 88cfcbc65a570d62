"""The optional libraries of plots and exports, and the error when one is missing."""

from __future__ import annotations

import importlib
import importlib.util
from types import ModuleType

from tcu.errors import ConfigError

EXTRA = "tcu-sim[plot]"


class MissingLibraryError(ConfigError):
    """A plot or export needs a library that is not installed."""


def check_installed(module: str, what: str) -> None:
    """Fail early (before a replay) when ``module`` is missing, without importing it:
    the import waits until the replay is done, so its memory does not add to the replay's."""
    try:
        found = importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        found = False
    if not found:
        require(module, what)


def require(module: str, what: str) -> ModuleType:
    """Import ``module`` (e.g. ``matplotlib``) for ``what`` (e.g. ``--plot city.png``)."""
    try:
        return importlib.import_module(module)
    except ImportError:
        package = module.split(".")[0]
        raise MissingLibraryError(
            f"{what} needs the Python package {package}, which is not installed: "
            f"pip install '{EXTRA}' (or pip install {package})"
        ) from None
