"""``link`` records: the SIM link's registration, network, roaming and billed bytes."""

from __future__ import annotations

from dataclasses import replace

from tcu.events import Emit
from tcu.link.reporter import LinkReporter, LinkStatus, link_status
from tcu.link.sim import Link, LinkConfig

HOME = LinkStatus(
    state="registered_home",
    plmn="242-01",
    operator="Telenor Norge",
    country="NO",
    roaming=False,
    rat="LTE",
    roaming_bytes=0,
    home_bytes=100,
)


def test_a_record_when_the_link_says_something_new() -> None:
    reporter = LinkReporter(byte_step=1000)
    (first,) = reporter.on_event(HOME, 0.0) or []
    assert isinstance(first, Emit) and first.kind == "link"
    assert first.body["plmn"] == "242-01" and first.body["roaming"] is False
    assert reporter.on_event(replace(HOME, home_bytes=5000), 1.0) == [], "home bytes: no news"
    abroad = replace(HOME, state="registered_roaming", plmn="240-01", roaming=True)
    (record,) = reporter.on_event(abroad, 2.0) or []
    assert isinstance(record, Emit) and record.body["state"] == "registered_roaming"
    assert reporter.on_event(replace(abroad, roaming_bytes=999), 3.0) == []
    (billed,) = reporter.on_event(replace(abroad, roaming_bytes=1000), 4.0) or []
    assert isinstance(billed, Emit) and billed.body["roaming_bytes"] == 1000
    assert reporter.on_event("something else", 5.0) is None


def test_the_status_read_from_the_link_model() -> None:
    model = Link(LinkConfig.from_dict({"home_plmn": "242-01", "seed": 1}))
    status = link_status(model, 0.0)
    assert (status.roaming, status.roaming_bytes, status.home_bytes) == (False, 0, 0)
    assert status.state == model.snapshot(0.0).state.value


def test_statuses_while_the_service_is_off_leave_no_trace() -> None:
    active = [False]
    reporter = LinkReporter(recording=lambda: active[0])
    assert reporter.on_event(HOME, 0.0) == []
    active[0] = True
    (record,) = reporter.on_event(HOME, 1.0) or []
    assert isinstance(record, Emit), "the same status, now recorded"
    assert reporter.on_event(HOME, 2.0) == []
