"""``tcu demo`` serves the portal, prints its URL and the demo login; ``--no-http`` does not."""

from __future__ import annotations

import json

import pytest

from cloud_stub.portal.demo import DEMO_EMAIL, DEMO_PASSWORD
from tcu.cli.main import main


def test_the_demo_prints_the_portal_url_and_login(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--trace", "cross_border.log", "--json"]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out)["lost"] == 0, "stdout stays JSON"
    assert "fleet portal: http://127.0.0.1:" in err
    assert DEMO_EMAIL in err and DEMO_PASSWORD in err


def test_no_http_serves_no_portal(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--trace", "cross_border.log", "--no-http"]) == 0
    out, err = capsys.readouterr()
    assert "fleet portal" not in out + err
    assert "records verified and stored by the backend" in out


def test_a_bad_http_address_is_an_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--http", "127.0.0.1:99999"]) == 2
    assert capsys.readouterr().err.startswith("error: --http '127.0.0.1:99999'")
