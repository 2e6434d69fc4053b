"""Pictures of an execution: the terminal timeline and the self-contained HTML file."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import xml.etree.ElementTree as ET
from html.parser import HTMLParser

import pytest
from rich.console import Console

from syncstore.workflows import Condition, Parallel, WaitForSignal
from syncstore.workflows import timeline as timelines

CHROMIUM = next((p for p in ("/usr/bin/chromium", shutil.which("chromium"), shutil.which("chromium-browser")) if p and os.path.exists(p)), None)
SVG = "{http://www.w3.org/2000/svg}"


@pytest.fixture
def varied(flows, registry):
    """An execution with completed, retried, skipped, parallel and failed steps."""

    @registry.step
    def fetch(ctx):
        ctx.variables["url"] = "https://example.invalid/<b>&"
        return {"rows": 3, "note": "</script><script>alert(1)</script>"}

    @registry.step(max_attempts=2, backoff_seconds=0.0)
    def flaky(ctx):
        if ctx.attempt == 1:
            raise RuntimeError("first try fails")
        return "ok"

    @registry.step(max_attempts=1)
    def explode(ctx):
        raise ValueError("boom & <bang>")

    @registry.step
    def never(ctx):
        raise AssertionError("the condition skips this step")

    @registry.step
    def after(ctx):
        raise AssertionError("the failure stops the run before this step")

    spec = registry.workflow(
        "varied",
        steps=[
            fetch,
            flaky,
            Condition("small", when="state.fetch.rows < 2", then=["never"], otherwise=[]),
            Parallel("fan", branches=[[fetch.call("left")], [flaky.call("right")]]),
            explode,
            "after",
        ],
    )
    return flows.execute(spec)


class Collector(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.steps: list[dict[str, str | None]] = []
        self.refs: list[str] = []
        self.scripts = 0

    def handle_starttag(self, tag, attrs):
        attributes = dict(attrs)
        if tag == "g" and attributes.get("class") == "step":
            self.steps.append(attributes)
        if tag == "script":
            self.scripts += 1
        for name in ("src", "href"):
            if name in attributes:
                self.refs.append(str(attributes[name]))


def test_the_html_file_is_well_formed_self_contained_and_shows_every_step(flows, varied, tmp_path):
    path = flows.write_html(varied.id, tmp_path / "timeline.html")
    text = open(path, encoding="utf-8").read()
    ids = [r.id for r in flows.timeline(varied.id).rows]
    assert ids == ["fetch", "flaky", "small", "never", "fan", "left", "right", "explode", "after"]

    parsed = Collector()
    parsed.feed(text)
    parsed.close()
    assert [s["data-id"] for s in parsed.steps] == ids
    assert parsed.refs == []  # nothing loaded from anywhere
    assert parsed.scripts == 2
    assert not re.search(r"https?://(?!www\.w3\.org/)", text.replace("https://example.invalid", ""))

    root = ET.fromstring(text)  # also well-formed XML
    groups = [g for g in root.iter(f"{SVG}g") if g.get("class") == "step"]
    statuses = {g.get("data-id"): g.get("data-status") for g in groups}
    assert statuses == {
        "fetch": "completed", "flaky": "completed", "small": "completed", "never": "skipped", "fan": "completed",
        "left": "completed", "right": "completed", "explode": "failed", "after": "skipped",
    }
    bars = {g.get("data-id"): [r for r in g.iter(f"{SVG}rect") if r.get("class") == "bar"] for g in groups}
    assert all(bars[i] for i in ids if statuses[i] != "skipped") and not bars["never"]
    attempts = [r for g in groups if g.get("data-id") == "flaky" for r in g.iter(f"{SVG}rect") if r.get("class") == "attempt"]
    assert len(attempts) == 1  # the failed first try, drawn before the bar

    data = next(e for e in root.iter("{http://www.w3.org/1999/xhtml}script") if e.get("id") == "steps-data").text
    steps = json.loads(data or "")
    assert [s["id"] for s in steps] == ids
    assert steps[0]["state"] == {"fetch": {"rows": 3, "note": "</script><script>alert(1)</script>"}}
    assert steps[0]["variables"] == {"url": "https://example.invalid/<b>&"}
    assert "</script><script>" not in text  # escaped inside the page
    assert steps[7]["error"].startswith("ValueError: boom & <bang>")


@pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed")
def test_the_html_file_renders_in_headless_chromium(flows, varied, tmp_path):
    path = flows.write_html(varied.id, tmp_path / "timeline.html")
    base = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", f"--user-data-dir={tmp_path / 'profile'}"]
    dom = subprocess.run([*base, "--dump-dom", f"file://{path}"], capture_output=True, text=True, timeout=120)
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert 'data-ready="1"' in dom.stdout  # the script ran to its end without an error
    assert "#1 fetch (step, completed)" in dom.stdout  # and filled the panel with the first step
    shot = tmp_path / "shot.png"
    subprocess.run([*base, f"--screenshot={shot}", "--window-size=1100,700", f"file://{path}"], capture_output=True, timeout=120)
    assert shot.exists() and shot.stat().st_size > 1000


def test_the_terminal_timeline_lists_every_step(flows, varied):
    console = Console(record=True, width=120)
    timelines.render(flows.timeline(varied.id), console=console)
    text = console.export_text()
    for name in ("fetch", "flaky", "small (condition)", "never", "fan (parallel)", "left", "right", "explode", "after"):
        assert name in text
    assert "ValueError: boom" in text and "failed" in text


def test_a_waiting_and_a_running_execution_show_where_they_are(flows, registry):
    @registry.step
    def one(ctx):
        return 1

    @registry.step
    def two(ctx):
        return 2

    waiting = flows.execute(registry.workflow("wait", steps=[one, WaitForSignal("ok"), two]))
    rows = {r.id: r.status for r in flows.timeline(waiting.id).rows}
    assert rows == {"one": "completed", "ok": "waiting", "two": "pending"}

    statuses = {}

    @registry.step
    def look(ctx):
        statuses.update({r.id: r.status for r in flows.timeline(ctx.execution_id).rows})
        return 2

    flows.execute(registry.workflow("look", steps=[one, look]))
    assert statuses == {"one": "completed", "look": "running"}


def test_snapshots_alone_make_a_timeline_for_an_agent_execution(flows, store):
    snaps = flows.snapshots
    agent_run = "01a215f0-0000-7000-8000-000000000001"
    with snaps.step(agent_run, 1, "plan", state={"goal": "x"}) as probe:
        probe.output = ["a", "b"]
    with pytest.raises(KeyError):
        with snaps.step(agent_run, 2, "act") as probe:
            raise KeyError("missing tool")
    snaps.take(agent_run, step_number=3, step_name="note", variables={"k": 1})
    rows = flows.timeline(agent_run).rows
    assert [(r.number, r.id, r.status) for r in rows] == [(1, "plan", "completed"), (2, "act", "failed"), (3, "note", "pending")]
    taken = snaps.list(agent_run)
    assert [s.kind for s in taken] == ["step_start", "step_end", "step_start", "error", "manual"]
    end = snaps.at(agent_run, 1)
    assert end is not None and end.output == ["a", "b"] and end.memory_bytes and end.memory_bytes > 0
    assert end.cpu_ms is not None and end.duration_ms is not None
