"""Verdicts and reasons validate on construction and serialise to JSON."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tcu.services.verdicts import REASON_CODES, Reason, Verdict, decide
from tcu.vehicle import catalogue as c

DOCS = Path(__file__).resolve().parents[2] / "docs" / "services.md"

BONNET = Reason(code="bonnet_open", message="The bonnet is open.", values={c.BONNET: True})
WALLBOX = Reason(code="not_wallbox", message="Not a wallbox.", values={c.INFRA_TYPE: "DC"})
SAME = Reason(code="setpoint_equals_outside", message="Nothing to do.")


@pytest.mark.parametrize(
    ("outcome", "reasons", "warnings"),
    [
        ("refused", (), ()),
        ("refused", (), (WALLBOX,)),
        ("refused", (SAME,), ()),
        ("refused", (WALLBOX,), ()),
        ("allowed", (BONNET,), ()),
        ("allowed", (), (WALLBOX,)),
        ("allowed_with_warnings", (), ()),
        ("allowed_with_warnings", (BONNET,), (WALLBOX,)),
        ("allowed_with_warnings", (), (BONNET,)),
        ("not_needed", (), ()),
        ("not_needed", (BONNET,), ()),
        ("not_needed", (SAME,), (WALLBOX,)),
        ("maybe", (), ()),
    ],
)
def test_malformed_verdicts_cannot_be_built(
    outcome: str, reasons: tuple[Reason, ...], warnings: tuple[Reason, ...]
) -> None:
    with pytest.raises(ValueError):
        Verdict(t=1.0, service="charging", outcome=outcome, reasons=reasons, warnings=warnings)  # type: ignore[arg-type]


def test_bad_service_time_and_containers() -> None:
    with pytest.raises(ValueError, match="service"):
        Verdict(t=1.0, service="wash", outcome="allowed")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="finite"):
        Verdict(t=float("nan"), service="lock", outcome="allowed")
    with pytest.raises(ValueError, match="tuples"):
        Verdict(t=1.0, service="lock", outcome="refused", reasons=[BONNET])  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"code": "no_such_code", "message": "x"},
        {"code": "bonnet_open", "message": "  "},
        {"code": "bonnet_open", "message": "x", "values": {"": 1}},
        {"code": "bonnet_open", "message": "x", "values": {c.BONNET: [1, 2]}},
    ],
)
def test_malformed_reasons_cannot_be_built(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        Reason(**kwargs)  # type: ignore[arg-type]


def test_as_dict_is_json_with_the_agreed_keys() -> None:
    v = Verdict(
        t=12.5, service="charging", outcome="refused", reasons=(BONNET,), warnings=(WALLBOX,)
    )
    d = json.loads(json.dumps(v.as_dict()))
    assert list(d) == ["t", "service", "outcome", "reasons", "warnings"]
    assert d["reasons"] == [
        {"code": "bonnet_open", "message": "The bonnet is open.", "values": {c.BONNET: True}}
    ]
    assert d["warnings"][0]["code"] == "not_wallbox"
    assert (v.codes, v.warning_codes, v.goes_ahead) == (("bonnet_open",), ("not_wallbox",), False)


def test_verdicts_are_frozen_and_hashable() -> None:
    v = Verdict(t=1.0, service="lock", outcome="refused", reasons=(BONNET,))
    with pytest.raises(AttributeError):
        v.outcome = "allowed"  # type: ignore[misc]
    assert hash(v) == hash(Verdict(t=1.0, service="lock", outcome="refused", reasons=(BONNET,)))


@pytest.mark.parametrize(
    ("refusals", "warnings", "not_needed", "outcome"),
    [
        ((), (), (), "allowed"),
        ((), (WALLBOX,), (), "allowed_with_warnings"),
        ((), (WALLBOX,), (SAME,), "not_needed"),
        ((BONNET,), (WALLBOX,), (SAME,), "refused"),
    ],
)
def test_decide_refusals_win_then_not_needed_then_warnings(
    refusals: tuple[Reason, ...],
    warnings: tuple[Reason, ...],
    not_needed: tuple[Reason, ...],
    outcome: str,
) -> None:
    assert decide(3.0, "preconditioning", refusals, warnings, not_needed).outcome == outcome


def test_every_reason_code_is_documented() -> None:
    if not DOCS.exists():
        pytest.skip("docs/services.md not present")
    text = DOCS.read_text(encoding="utf-8")
    section = text.split("\n## Reason codes\n", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| `([a-z_]+)` \| ([a-z_]+) \|", section, re.M)
    assert {code: kind for code, kind in rows} == {k: v[0] for k, v in REASON_CODES.items()}
    assert len(rows) == len(REASON_CODES)
