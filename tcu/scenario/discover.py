"""Which files are scenario files: the collection rule shared by pytest and ``tcu scenario``.

Kept free of heavy imports: the pytest plugin consults it for every file pytest sees.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

SUFFIXES = (".yaml", ".yml")
SCENARIOS_DIR = "scenarios"
PENDING_DIR = "pending"


def is_scenario_file(path: Path, *, include_pending: bool = False) -> bool:
    """The collection rule.

    A YAML file is a scenario file when its name is ``scenario_*.yaml`` or
    ``*.scenario.yaml``, or when it lies below a directory called ``scenarios``. Below
    ``scenarios``, files in a ``pending`` directory are left out unless asked for, as
    are names starting with ``_`` or ``.``.
    """
    name = path.name
    if not name.endswith(SUFFIXES):
        return False
    stem = name.rsplit(".", 1)[0]
    if stem.startswith("scenario_") or stem.endswith(".scenario"):
        return True
    parts = path.parts[:-1]
    if SCENARIOS_DIR not in parts:
        return False
    below = parts[len(parts) - parts[::-1].index(SCENARIOS_DIR) :]
    if not include_pending and PENDING_DIR in below:
        return False
    return not any(p.startswith(("_", ".")) for p in (*below, name))


def find_files(paths: Iterable[str | Path], *, include_pending: bool = False) -> Iterator[Path]:
    """Scenario files named or found below the given paths, each once, in sorted order.

    A file named explicitly is taken whatever its name; a directory is searched with
    ``is_scenario_file`` (a directory given as ``.../pending`` is searched in full).
    """
    seen: set[Path] = set()
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            pending = include_pending or p.resolve().name == PENDING_DIR
            found = [
                f
                for f in sorted(p.rglob("*"))
                if f.is_file() and is_scenario_file(f, include_pending=pending)
            ]
            for f in found:
                if f.resolve() not in seen:
                    seen.add(f.resolve())
                    yield f
        else:
            if p.resolve() not in seen:
                seen.add(p.resolve())
                yield p
