"""A timeline as one self-contained HTML file: inline SVG, inline script, no server.

Each step is a bar placed by time and coloured by status (failed attempts
before it in orange); clicking a bar, or its row, shows the step's state,
output and variables in the panel below. The file loads nothing from
anywhere. It is also well-formed XML (every tag closed, the script in a CDATA
section, the data escaped), so XML tools can read it too.
"""

from __future__ import annotations

import datetime as dt
import html
from typing import Any

import msgspec

from syncstore.workflows.timeline import COLOURS, Row, Timeline

ROW_HEIGHT = 24
LABEL_WIDTH = 260
CHART_WIDTH = 720
MIN_BAR = 3

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 24px; color: #222; }
h1 { font-size: 18px; margin: 0 0 4px 0; }
p.summary { margin: 0 0 16px 0; color: #555; }
svg { border: 1px solid #ddd; background: #fafafa; }
g.step { cursor: pointer; }
g.step:hover rect.row, g.step.selected rect.row { fill: #e8f0fe; }
text { font-size: 12px; font-family: ui-monospace, monospace; }
#detail { margin-top: 16px; }
#detail pre { background: #f4f4f4; padding: 8px; overflow: auto; max-height: 400px; }
.legend span { display: inline-block; margin-right: 12px; font-size: 12px; }
.legend i { display: inline-block; width: 10px; height: 10px; margin-right: 4px; }
"""

# No "<" or "&" in here, and it sits in a CDATA section: the file stays valid XML.
_SCRIPT = """
(function () {
  var steps = JSON.parse(document.getElementById("steps-data").textContent);
  var title = document.getElementById("detail-title");
  var body = document.getElementById("detail-body");
  function show(index) {
    var step = steps[index];
    title.textContent = "#" + step.number + " " + step.id + " (" + step.kind + ", " + step.status + ")";
    body.textContent = JSON.stringify({
      started: step.started, ended: step.ended, duration_ms: step.duration_ms,
      cpu_ms: step.cpu_ms, memory_bytes: step.memory_bytes, error: step.error,
      failed_attempts: step.attempts, output: step.output, variables: step.variables,
      state: step.state
    }, null, 2);
    var groups = document.querySelectorAll("g.step");
    groups.forEach(function (g) { g.classList.remove("selected"); });
    groups[index].classList.add("selected");
  }
  document.querySelectorAll("g.step").forEach(function (g) {
    g.addEventListener("click", function () { show(Number(g.getAttribute("data-index"))); });
  });
  if (steps.length) { show(0); }
  document.body.setAttribute("data-ready", "1");
})();
"""


def _iso(unix: float | None) -> str | None:
    return None if unix is None else dt.datetime.fromtimestamp(unix, dt.timezone.utc).isoformat()


def _step_data(r: Row) -> dict[str, Any]:
    return {
        "number": r.number,
        "id": r.id,
        "kind": r.kind,
        "status": r.status,
        "started": _iso(r.start),
        "ended": _iso(r.end),
        "duration_ms": None if r.start is None or r.end is None else round((r.end - r.start) * 1000, 3),
        "cpu_ms": r.cpu_ms,
        "memory_bytes": r.memory_bytes,
        "error": r.error,
        "attempts": [{"started": _iso(a.start), "ended": _iso(a.end), "error": a.error} for a in r.attempts],
        "output": r.output,
        "variables": r.variables,
        "state": r.state,
    }


def _script_json(value: Any) -> str:
    """JSON safe inside a script element and inside XML: no raw < > &."""
    text = msgspec.json.encode(value).decode()
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def render(timeline: Timeline) -> str:
    """The whole HTML document, as text."""
    e = html.escape
    rows = timeline.rows
    height = ROW_HEIGHT * (len(rows) + 1) + 8
    width = LABEL_WIDTH + CHART_WIDTH + 16
    t0 = timeline.start
    span = (timeline.end - t0) if t0 is not None and timeline.end is not None else 0.0

    def x(t: float) -> float:
        if t0 is None or span <= 0:
            return float(LABEL_WIDTH)
        return LABEL_WIDTH + (t - t0) / span * CHART_WIDTH

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="timeline of {e(timeline.execution_id)}">'
    ]
    axis_y = ROW_HEIGHT * len(rows) + 4
    parts.append(f'<line x1="{LABEL_WIDTH}" y1="{axis_y}" x2="{LABEL_WIDTH + CHART_WIDTH}" y2="{axis_y}" stroke="#999"/>')
    if span > 0:
        parts.append(f'<text x="{LABEL_WIDTH}" y="{axis_y + 14}">0 ms</text>')
        parts.append(f'<text x="{LABEL_WIDTH + CHART_WIDTH}" y="{axis_y + 14}" text-anchor="end">{span * 1000:.1f} ms</text>')
    for index, r in enumerate(rows):
        y = index * ROW_HEIGHT
        label = f"{r.number} {'  ' * r.depth}{r.id}"
        parts.append(
            f'<g class="step" data-index="{index}" data-id="{e(r.id)}" data-status="{e(r.status)}" tabindex="0">'
            f"<title>{e(r.id)}: {e(r.status)}</title>"
            f'<rect class="row" x="0" y="{y}" width="{width}" height="{ROW_HEIGHT}" fill="transparent"/>'
            f'<text x="6" y="{y + 16}" xml:space="preserve">{e(label)}</text>'
        )
        for attempt in r.attempts:
            ax = x(attempt.start)
            parts.append(
                f'<rect class="attempt" x="{ax:.2f}" y="{y + 5}" width="{max(MIN_BAR, x(attempt.end) - ax):.2f}" '
                f'height="{ROW_HEIGHT - 10}" fill="{COLOURS["attempt"]}"/>'
            )
        if r.start is not None:
            sx = x(r.start)
            ex = x(r.end if r.end is not None else (timeline.end or r.start))
            parts.append(
                f'<rect class="bar" x="{sx:.2f}" y="{y + 4}" width="{max(MIN_BAR, ex - sx):.2f}" '
                f'height="{ROW_HEIGHT - 8}" fill="{COLOURS.get(r.status, "#888888")}"/>'
            )
        else:
            parts.append(
                f'<text x="{LABEL_WIDTH + 4}" y="{y + 16}" fill="#888">{e(r.status)}</text>'
            )
        parts.append("</g>")
    parts.append("</svg>")
    legend = "".join(
        f'<span><i style="background:{colour}"></i>{e(name)}</span>' for name, colour in COLOURS.items()
    )
    events = "".join(
        f"<li>{e(_iso(when) or '')} {e(label)}</li>" for when, label in timeline.events
    )
    data = _script_json([_step_data(r) for r in rows])
    document = f"""<!DOCTYPE html>
<html xmlns="http://www.w3.org/1999/xhtml" lang="en">
<head>
<meta charset="utf-8"/>
<title>{e(timeline.title)}</title>
<style>{_STYLE}</style>
</head>
<body>
<h1>{e(timeline.title)}</h1>
<p class="summary">status: {e(timeline.status or "-")}, {len(rows)} steps</p>
<div class="legend">{legend}</div>
{"".join(parts)}
<div id="detail"><h2 id="detail-title">click a step</h2><pre id="detail-body"></pre></div>
<h2>events</h2>
<ul id="events">{events}</ul>
<script type="application/json" id="steps-data">{data}</script>
<script>//<![CDATA[{_SCRIPT}//]]></script>
</body>
</html>
"""
    return document
