"""A run's timeline as one self-contained, zoomable HTML page.

Theory of operation. The page is one file: the timeline as JSON in a
``<script type="application/json" id="tcu-timeline-data">`` element, and a small script
(``timeline.js`` next to this module, no library) that draws it on a canvas: the same
rows as the static figure (``tcu.plot.figure``), sharing one time axis. The wheel zooms
around the pointer, a drag pans, a double click shows the whole run again, and hovering
a verdict, session or link segment shows what it was; ``page.html#t=600,660`` opens
on that window of vehicle time. Lines are reduced to the smallest
and largest value per pixel column of what is in view, and verdict markers closer than a
label's width merge into one with a count, so the page stays readable from 13 hours down
to a minute. Nothing is loaded from the network: no ``src``, no ``href`` to anywhere.

Why not plotly or bokeh: their scripts (several megabytes) would be inlined in every page,
and a scenario report writes a page per case; this script is a few kilobytes.
"""

from __future__ import annotations

import html
import json
from importlib import resources
from pathlib import Path
from typing import Any

from tcu.plot.signals import label
from tcu.plot.timeline import Timeline

DATA_ID = "tcu-timeline-data"


def timeline_json(timeline: Timeline, *, clock: bool = True, title: str = "") -> dict[str, Any]:
    data = timeline.as_dict()
    data["clock"] = bool(clock and timeline.origin_epoch > 0)
    data["title"] = title
    for s in data["signals"]:
        s["label"] = label(s["path"])
    return data


def _embed(data: dict[str, Any]) -> str:
    # "</" would end the script element early; JSON allows "<\/"
    return json.dumps(data, separators=(",", ":"), allow_nan=False).replace("</", "<\\/")


def timeline_fragment(timeline: Timeline, *, clock: bool = True, title: str = "") -> str:
    """The timeline as HTML to put in a page: a container, the data and the script."""
    data = _embed(timeline_json(timeline, clock=clock, title=title))
    return (
        '<div id="tcu-timeline" class="tcu-timeline"></div>\n'
        f'<script type="application/json" id="{DATA_ID}">{data}</script>\n'
        f"<script>{SCRIPT}</script>\n"
    )


STYLE = """
body{font-family:system-ui,sans-serif;margin:12px;color:#222}
h1{font-size:18px;margin:4px 0} .hint{color:#666;font-size:12px}
.tcu-timeline{position:relative;width:100%}
.tcu-tip{position:absolute;pointer-events:none;background:#fffde7;border:1px solid #bbb;
 padding:4px 6px;font-size:12px;white-space:pre;display:none;z-index:2}
table{border-collapse:collapse;font-size:13px;margin:8px 0}
td,th{border:1px solid #ddd;padding:3px 8px;text-align:left;vertical-align:top}
.ok{color:#2e7d32}.bad{color:#c62828;font-weight:bold}
"""


def page(title: str, body: str) -> str:
    """A whole HTML document around ``body``."""
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title><style>{STYLE}</style></head>\n"
        f"<body>\n{body}</body></html>\n"
    )


def timeline_page(timeline: Timeline, *, clock: bool = True, title: str = "") -> str:
    head = html.escape(title or "tcu timeline")
    body = (
        f'<h1>{head}</h1>\n<p class="hint">wheel: zoom, drag: pan, double click: '
        "whole run, hover: details</p>\n" + timeline_fragment(timeline, clock=clock, title=title)
    )
    return page(title or "tcu timeline", body)


def write_html(timeline: Timeline, path: Path, *, clock: bool = True, title: str = "") -> None:
    path.write_text(timeline_page(timeline, clock=clock, title=title), encoding="utf-8")


SCRIPT = (resources.files("tcu.plot") / "timeline.js").read_text(encoding="utf-8")
