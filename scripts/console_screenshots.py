"""Screenshots of the console's real pages for docs/console.md.

    .venv/bin/python scripts/console_screenshots.py [--out docs/images/console]

Writes a demo replica (tasks, a chat log, environments, agent runs with their
events, memories, workflow runs: one waiting for a signal, two that differ,
a fork), makes a real conflict through a development sync server with a
second replica (on SYNCSTORE_DATABASE_URL when set, else an embedded
PostgreSQL in a temporary folder), starts ``syncstore ui`` on it with that
server, and has headless Chromium (the system's, through its chromedriver)
take one PNG per page. Needs the dev extra (selenium) and chromium.
"""

from __future__ import annotations

import argparse
import os
import random
import re
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

import syncstore
from syncstore.sync import list_conflicts
from syncstore.workflows import Registry, WaitForSignal, Workflows

ROOT = Path(__file__).resolve().parent.parent
SYNCSTORE = str(Path(sys.executable).with_name("syncstore"))
CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(folder: Path) -> tuple[subprocess.Popen[bytes], str, str]:
    """A development sync server on a free port; returns it, its URL and a token."""
    port = free_port()
    env = {**os.environ, "SYNCSTORE_SECRET": ""}
    args = [SYNCSTORE, "server", "run", "--dev", "--port", str(port), "--log-level", "warning"]
    if not env.get("SYNCSTORE_DATABASE_URL"):
        args += ["--data-dir", str(folder / "pg")]
    server = subprocess.Popen(args, env=env)
    deadline = time.monotonic() + 180  # an embedded PostgreSQL unpacks itself the first time
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit("the sync server did not start")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                break
        except httpx.TransportError:
            pass
        time.sleep(0.3)
    else:
        server.terminate()
        raise SystemExit("the sync server did not become ready")
    token = subprocess.run(
        [SYNCSTORE, "server", "token", "--dev", "--tenant", "screenshots", "--ttl", "1h"],
        env=env, capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    return server, f"ws://127.0.0.1:{port}", token


def demo_data(laptop: syncstore.Store, desktop: syncstore.Store, url: str, token: str) -> dict[str, str]:
    rng = random.Random(3)
    tasks = laptop.tasks
    titles = [
        ("Write the quarterly report", "in_progress", "high", "octo/reports"),
        ("Fix the flaky deploy step", "pending", "urgent", "octo/app"),
        ("Summarise last week's incidents", "completed", "medium", "octo/ops"),
        ("Review the caching pull request", "in_progress", "medium", "octo/app"),
        ("Plan the data migration", "pending", "high", "octo/db"),
        ("Update the onboarding guide", "paused", "low", "octo/docs"),
        ("Triage the new bug reports", "pending", "medium", "octo/app"),
        ("Benchmark the vector search", "completed", "low", "octo/search"),
    ]
    made = [tasks.create(t, status=s, priority=p, repository=r, branch="main") for t, s, p, r in titles]
    report = made[0]
    laptop.messages.add(report.id, "user", "Draft the Q3 report from the metrics dashboard; keep it under two pages.")
    laptop.messages.add(report.id, "assistant", "Reading the dashboard exports now. Revenue and latency sections first.")
    laptop.messages.add(report.id, "tool", "fetched 4 CSV exports (1.2 MB)")
    laptop.messages.add(report.id, "assistant", "A first draft is ready for review: 1.5 pages, three charts.")
    laptop.environments.create("production", github_organization="octo", github_repository="app", is_active=True,
                               description="the live deployment")  # fmt: skip
    laptop.environments.create("staging", github_organization="octo", github_repository="app")
    laptop.environments.create("research", github_organization="octo", github_repository="notebooks")

    # Agent runs with events, spread over the last hours.
    agents = ("planner", "coder", "reviewer", "summariser")
    for i in range(24):
        agent = agents[i % len(agents)]
        with laptop.executions.track(agent, task_id=made[i % len(made)].id, model="gpt-4o", provider="openai") as run:
            run.usage(input_tokens=rng.randint(400, 3000), output_tokens=rng.randint(50, 600), cost=round(rng.random() * 0.02, 4))
            for k in range(rng.randint(4, 9)):
                laptop.events.emit(
                    ("tool_call", "llm_call", "retrieval")[k % 3],
                    component=("shell", "model", "search", "git")[k % 4],
                    operation=("run", "chat", "query", "diff")[k % 4],
                    duration_ms=rng.random() * 60,
                    severity="warn" if k == 5 else "info",
                )
                time.sleep(rng.random() * 0.01)
            if i % 7 == 3:
                laptop.events.emit("tool_error", severity="error", component="shell", error_message="exit status 2")
                run.fail("the shell tool exited with status 2")
    running = laptop.executions.create("planner", status="running", model="gpt-4o", task_id=report.id).id
    for k in range(6):  # still running when the pictures are taken
        laptop.events.emit(("llm_call", "tool_call")[k % 2], execution_id=running, component=("model", "shell")[k % 2],
                           operation=("chat", "run")[k % 2], duration_ms=rng.random() * 40)  # fmt: skip
        time.sleep(0.02)
    laptop.events.flush()

    for content, kind, importance, tags in [
        ("Deploys fail when the build cache is cold: warm it first", "learned_pattern", 8, ["deploy", "ci"]),
        ("The user prefers short status updates with a bullet list", "user_preference", 6, ["style"]),
        ("Rolling back a migration needs the previous schema version", "error_resolution", 7, ["db"]),
        ("Latency regressions usually come from the N+1 query in the feed", "learned_pattern", 9, ["perf"]),
        ("Quarterly reports live in octo/reports under /q{n}", "knowledge_base", 4, ["reports"]),
    ]:
        laptop.memory.add("planner", content, memory_type=kind, importance=importance, tags=tags)

    registry = Registry()

    # Steps that take a moment, as real ones do, so the timeline has something to show.
    @registry.step
    def collect(ctx):
        time.sleep(0.12)
        return {"sources": ctx.input["sources"], "rows": 120 * len(ctx.input["sources"])}

    @registry.step
    def analyse(ctx):
        time.sleep(0.25)
        return {"trend": "up" if ctx.state["collect"]["rows"] > 200 else "flat", "rows": ctx.state["collect"]["rows"]}

    @registry.step
    def draft(ctx):
        time.sleep(0.18)
        return {"title": "Q3 report", "sections": ["revenue", "latency", ctx.state["analyse"]["trend"]]}

    @registry.step
    def publish(ctx):
        time.sleep(0.05)
        return "published"

    flows = Workflows(laptop, registry=registry)
    report_flow = registry.workflow("report", steps=[collect, analyse, draft, WaitForSignal(id="approval"), publish])
    a = flows.execute(report_flow, input={"sources": ["sales", "ops"]})
    time.sleep(0.3)  # someone reads the draft before approving it
    flows.signal(a.id, "approval", decision="approve")
    a = flows.run(a.id)
    b = flows.execute(report_flow, input={"sources": ["sales"]})
    flows.signal(b.id, "approval", decision="approve")
    b = flows.run(b.id)
    waiting = flows.execute(report_flow, input={"sources": ["sales", "ops", "support"]})
    forked = flows.fork(a.id, from_step=3)

    # A real conflict: both replicas retitle the same task without seeing each other.
    laptop.sync(url, token=token)
    desktop.sync(url, token=token)
    target = made[1]
    desktop.tasks.update(target.id, title="Fix the flaky deploy step (desktop)")
    laptop.tasks.update(target.id, title="Fix the flaky deploy step in CI")
    laptop.sync(url, token=token)
    desktop.sync(url, token=token)
    laptop.sync(url, token=token)
    conflict = list_conflicts(laptop)[0].id
    # A few changes left to push, so the banner has something to count.
    tasks.create("Prepare the launch checklist", priority="high", repository="octo/app")
    return {"task": report.id, "run": running, "flow": a.id, "flow_b": b.id, "waiting": waiting.id,
            "forked": forked.id, "conflict": conflict}  # fmt: skip


def shoot(base: str, login: str, ids: dict[str, str], out: Path) -> list[Path]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    profile = tempfile.mkdtemp(prefix="syncstore-shots-")
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--no-first-run", "--hide-scrollbars",
                f"--user-data-dir={profile}", "--window-size=1360,900", "--force-device-scale-factor=1"):  # fmt: skip
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    pages = [
        ("tasks", "/tasks"),
        ("task", f"/tasks/{ids['task']}"),
        ("executions", "/executions"),
        ("execution", f"/executions/{ids['run']}"),
        ("stats", "/executions/stats"),
        ("workflows", "/workflows"),
        ("workflow", f"/workflows/{ids['flow']}"),
        ("replay", f"/workflows/{ids['flow']}/replay?step=3"),
        ("diff", f"/workflows/diff?a={ids['flow']}&b={ids['flow_b']}"),
        ("conflict", f"/conflicts/{ids['conflict']}"),
        ("memory", "/memory?q=why+do+deploys+fail"),
        ("sync", "/sync"),
    ]
    written = []
    try:
        driver.get(login)
        for name, path in pages:
            driver.get(base + path)
            time.sleep(0.6)  # let the event stream open and fonts settle
            height = driver.execute_script("return Math.min(document.body.scrollHeight, 1600)")
            driver.set_window_size(1360, max(700, height))
            target = out / f"{name}.png"
            driver.save_screenshot(str(target))
            written.append(target)
            print(f"wrote {target.relative_to(ROOT) if target.is_relative_to(ROOT) else target}")
    finally:
        driver.quit()
    return written


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(ROOT / "docs" / "images" / "console"))
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        os.chmod(folder, 0o755)  # an embedded PostgreSQL runs as another user when we are root
        server, url, token = start_server(folder)
        try:
            with syncstore.open(str(folder / "laptop.db")) as laptop, syncstore.open(str(folder / "desktop.db")) as desktop:
                ids = demo_data(laptop, desktop, url, token)
            env = {**os.environ, "SYNCSTORE_URL": url, "SYNCSTORE_TOKEN": token}
            ui = subprocess.Popen([SYNCSTORE, "--db", str(folder / "laptop.db"), "ui", "--port", "0"],
                                  env=env, stdout=subprocess.PIPE, text=True)  # fmt: skip
            try:
                assert ui.stdout is not None
                login = ""
                for line in ui.stdout:
                    found = re.search(r"open (http://\S+)", line)
                    if found:
                        login = found.group(1)
                        break
                if not login:
                    raise SystemExit("syncstore ui printed no address")
                base = login.split("/?", 1)[0]
                time.sleep(1.0)  # the background sync connects
                shoot(base, login, ids, out)
            finally:
                ui.terminate()
                ui.wait(30)
        finally:
            server.terminate()
            server.wait(60)
    return 0


if __name__ == "__main__":
    sys.exit(main())
