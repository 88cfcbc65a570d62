"""Finding and loading the DBC + mapping pair the TCU decodes with."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tcu.can.dbc import load_database
from tcu.can.mapping import Mapping, build_mapping, dbc_of, read_mapping_file
from tcu.errors import ConfigError
from tcu.output import table
from tcu.vehicle.state import VehicleState

REPO = Path(__file__).resolve().parents[2]
TRACES = REPO / "can_traces"
REFERENCE_MAPPING = TRACES / "van.mapping.yaml"


@dataclass(frozen=True, slots=True, kw_only=True)
class BusSetup:
    mapping: Mapping
    db: object
    dbc_path: Path
    mapping_path: Path
    warnings: tuple[str, ...] = ()


SIGNAL_SETS = ("catalogue", "all")


def load_bus_setup(
    dbc: str | Path | None = None,
    mapping: str | Path | None = None,
    signals: str | None = None,
) -> BusSetup:
    """The DBC and mapping to decode with: the reference van unless told otherwise.

    ``signals="all"`` adds every signal of the DBC under its ``Message.Signal`` name; a
    DBC of the user's own then needs no mapping.
    """
    if signals not in (None, *SIGNAL_SETS):
        raise ConfigError(f"--signals: expected one of {', '.join(SIGNAL_SETS)}, got {signals!r}")
    every = signals == "all"
    if dbc is not None and mapping is None:
        if every:
            db, warnings = load_database(Path(dbc))
            return BusSetup(
                mapping=build_mapping(db, {}, str(dbc), all_signals=True),
                db=db,
                dbc_path=Path(dbc),
                mapping_path=Path(dbc),
                warnings=tuple(warnings),
            )
        raise ConfigError(
            f"{dbc}: a DBC of your own needs --mapping to bind it to the catalogue "
            "(or --signals all)"
        )
    mapping_path = Path(mapping) if mapping is not None else REFERENCE_MAPPING
    if mapping is None and not mapping_path.exists():
        raise ConfigError(
            f"{mapping_path}: reference mapping not found (install from a checkout, or pass "
            "--dbc and --mapping)"
        )
    doc = read_mapping_file(mapping_path)
    dbc_path = Path(dbc) if dbc is not None else dbc_of(mapping_path, doc)
    if dbc_path is None:
        raise ConfigError(f"{mapping_path}: names no 'dbc:'; pass --dbc")
    if dbc is None and not dbc_path.exists():
        raise ConfigError(f"{mapping_path}: dbc: {dbc_path}: database file not found")
    db, warnings = load_database(dbc_path)
    built = build_mapping(db, doc, str(mapping_path), all_signals=every)
    return BusSetup(
        mapping=built,
        db=db,
        dbc_path=dbc_path,
        mapping_path=mapping_path,
        warnings=(*warnings, *built.warnings),
    )


def own_signals_section(
    mapping: Mapping, state: VehicleState, now: float
) -> tuple[dict[str, dict[str, Any]], str] | None:
    """The signals bound outside the catalogue, for a summary: JSON and a text table.

    ``{name: {"value": ..., "unit": ...}}`` (value None when unknown or stale), in the
    mapping's order; None when the mapping binds catalogue signals only.
    """
    own = mapping.own_names()
    if not own:
        return None
    values = {b.path: {"value": state.get(b.path, now), "unit": b.unit} for b in own}
    rows = [
        (p, "unknown" if v["value"] is None else v["value"], v["unit"]) for p, v in values.items()
    ]
    text = "\n".join(
        ["Signals outside the catalogue", table(rows, headers=("signal", "value", "unit"))]
    )
    return values, text
