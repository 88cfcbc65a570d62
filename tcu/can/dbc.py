"""Loading a CAN database (DBC, KCD, ARXML, SYM) with cantools.

Strict loading first; many real DBCs fail cantools' strict checks (overlapping
signals, signals past the frame end), so on such a failure the file is loaded again
non-strictly and the caller receives the reason as a warning to show the user.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cantools

from tcu.errors import ConfigError


def load_database(path: Path) -> tuple[Any, list[str]]:
    """The database at ``path`` and a list of warnings about how it was loaded."""
    if not path.exists():
        raise ConfigError(f"{path}: database file not found")
    try:
        return cantools.database.load_file(str(path), strict=True), []
    except (cantools.database.errors.UnsupportedDatabaseFormatError, ValueError, KeyError) as first:
        try:
            db = cantools.database.load_file(str(path), strict=False)
        except Exception as e:  # noqa: BLE001 - any parser failure is a bad file
            raise ConfigError(f"{path}: cannot parse CAN database: {_one_line(e)}") from None
        return db, [f"{path}: loaded non-strictly: {_one_line(first)}"]
    except OSError as e:
        raise ConfigError(f"{path}: cannot read: {e.strerror}") from None
    except Exception as e:  # noqa: BLE001
        raise ConfigError(f"{path}: cannot parse CAN database: {_one_line(e)}") from None


def _one_line(e: BaseException) -> str:
    text = str(e).strip().replace("\n", " ")
    return text[:300] or type(e).__name__
