"""Finding and loading the DBC + mapping pair the TCU decodes with."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tcu.can.dbc import load_database
from tcu.can.mapping import Mapping, build_mapping, dbc_of, read_mapping_file
from tcu.errors import ConfigError

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


def load_bus_setup(dbc: str | Path | None = None, mapping: str | Path | None = None) -> BusSetup:
    """The DBC and mapping to decode with: the reference van unless told otherwise."""
    if dbc is not None and mapping is None:
        raise ConfigError(f"{dbc}: a DBC of your own needs --mapping to bind it to the catalogue")
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
    built = build_mapping(db, doc, str(mapping_path))
    return BusSetup(
        mapping=built,
        db=db,
        dbc_path=dbc_path,
        mapping_path=mapping_path,
        warnings=tuple(warnings),
    )
