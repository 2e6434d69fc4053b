"""The console's pages over HTTP: what each shows, what each form writes, and
that bad input gets one clear error and changes nothing."""

from __future__ import annotations

import datetime as dt
import html
import re

import markupsafe
import msgspec
import pytest

from syncstore.console.pages import executions as executions_page

from .world import HOSTILE, pipeline, run_agent, waiting_flow


def rows(page: str, table_id: str) -> list[str]:
    """The data-id of each row of one table of a page."""
    body = page.split(f'id="{table_id}"', 1)[1].split("</table>", 1)[0]
    return re.findall(r'<tr data-id="([^"]+)"', body)


# --- every page, every value escaped -------------------------------------------------


def test_every_page_opens_and_escapes_what_the_replica_holds(store, console, client):
    task = store.tasks.create(HOSTILE, description=HOSTILE, repository=HOSTILE)
    store.messages.add(task.id, "user", HOSTILE)
    store.environments.create(HOSTILE, description=HOSTILE, is_active=True)
    run_id = run_agent(store, HOSTILE, model=HOSTILE, input={"q": HOSTILE})
    store.memory.add(HOSTILE, f"deploy notes {HOSTILE}", tags=[HOSTILE])
    flows, spec = pipeline(store)
    a = flows.execute(spec, input={"n": 2, "note": HOSTILE})
    b = flows.execute(spec, input={"n": 3})
    pages = [
        "/tasks", f"/tasks/{task.id}", "/tasks/new", "/environments", "/executions", f"/executions/{run_id}",
        "/executions/stats", "/workflows", f"/workflows/{a.id}", f"/workflows/{a.id}/replay",
        f"/workflows/{a.id}/replay?step=2", f"/workflows/diff?a={a.id}&b={b.id}", "/memory", "/memory?q=deploy",
        "/conflicts", "/sync", "/_/banner",
    ]  # fmt: skip
    for path in pages:
        answer = client.get(path)
        assert answer.status_code == 200, (path, answer.text[:500])
        assert answer.headers["content-type"].startswith("text/html")
        assert "<script>alert" not in answer.text and "<img src=x" not in answer.text, path
    # The hostile text is there, escaped, where the page shows it.
    escaped = str(markupsafe.escape(HOSTILE))
    for path in ("/tasks", f"/tasks/{task.id}", "/environments", "/executions", "/memory"):
        assert escaped in client.get(path).text, path
    # Inside JSON values too (the run's input, the workflow's input).
    assert "&lt;script&gt;" in client.get(f"/executions/{run_id}").text
    assert "&lt;script&gt;" in client.get(f"/workflows/{a.id}").text


def test_a_missing_row_is_a_404_page_and_an_unknown_path_too(client):
    for path in ("/tasks/01a0c000-0000-7000-8000-000000000000", "/workflows/nope", "/executions/nope", "/nope"):
        answer = client.get(path)
        assert answer.status_code == 404, path
        assert 'id="error-message"' in answer.text or "no such page" in answer.text


# --- tasks -----------------------------------------------------------------------------


def test_the_task_list_pages_and_filters(store, client):
    ids = store.insert_many("tasks", [{"title": f"task {i}", "status": ("pending", "completed")[i % 2]} for i in range(60)])
    first = client.get("/tasks")
    assert len(rows(first.text, "tasks")) == 50
    assert 'rel="next" href="/tasks?page=2"' in first.text
    second = client.get("/tasks", params={"page": 2})
    assert len(rows(second.text, "tasks")) == 10 and 'rel="next"' not in second.text
    assert set(rows(first.text, "tasks")) | set(rows(second.text, "tasks")) == set(ids)
    done = client.get("/tasks", params={"status": "completed"})
    assert sorted(rows(done.text, "tasks")) == sorted(ids[1::2])
    # A filter keeps the others when paging.
    assert 'name="status"' in done.text and '<option value="completed" selected>' in done.text
    store.tasks.archive(ids[0])
    assert ids[0] not in rows(client.get("/tasks", params={"status": "pending"}).text, "tasks")
    assert rows(client.get("/tasks", params={"archived": "1"}).text, "tasks") == [ids[0]]


def test_a_bad_filter_gets_one_clear_error(client):
    answer = client.get("/tasks", params={"status": "bogus"})
    assert answer.status_code == 400
    assert "status: must be one of pending, in_progress" in answer.text
    assert "bogus" not in answer.text  # the refused value is not echoed back


def test_creating_a_task_from_the_form(store, console, client):
    created = console.post(client, "/tasks", {"title": "  Write the notes ", "priority": "high", "repository": "octo/app"})
    assert created.status_code == 303
    (task,) = store.tasks.list()
    assert created.headers["location"] == f"/tasks/{task.id}"
    assert (task.title, task.priority, task.repository, task.status) == ("Write the notes", "high", "octo/app", "pending")


@pytest.mark.parametrize(
    "fields, error",
    [({"title": "  "}, "tasks.title: must not be empty"), ({"title": "x", "priority": "whenever"}, "tasks.priority")],
)
def test_a_refused_task_form_says_why_keeps_the_input_and_writes_nothing(store, console, client, fields, error):
    last = store.last_seq()
    answer = console.post(client, "/tasks", fields)
    assert answer.status_code == 400
    assert error in answer.text and 'id="form-error"' in answer.text
    assert f'value="{fields["title"]}"' in answer.text
    assert store.tasks.count() == 0 and store.last_seq() == last


def test_editing_a_task_writes_only_the_fields_that_changed(store, console, client):
    task = store.tasks.create("Draft", description="long text", priority="low")
    before = store.last_seq()
    form = {"title": "Final", "description": "long text", "status": "pending", "priority": "low", "mode": "code",
            "repository": "", "branch": ""}  # fmt: skip
    assert console.post(client, f"/tasks/{task.id}", form).status_code == 303
    (change,) = store.changes(after=before)
    # The unchanged fields were not written again: a concurrent edit of them elsewhere still wins.
    assert set(change.values) == {"title", "updated_at"}
    assert store.tasks.get(task.id).title == "Final"
    # Nothing changed: nothing written.
    form["title"] = "Final"
    assert console.post(client, f"/tasks/{task.id}", form).status_code == 303
    assert store.last_seq() == change.seq


def test_a_refused_edit_changes_nothing(store, console, client):
    task = store.tasks.create("Draft")
    before = store.last_seq()
    answer = console.post(client, f"/tasks/{task.id}", {"title": "Other", "status": "done"})
    assert answer.status_code == 400 and "tasks.status" in answer.text
    assert store.last_seq() == before and store.tasks.get(task.id).title == "Draft"


def test_archive_and_the_message_log(store, console, client):
    task = store.tasks.create("Chat")
    assert console.post(client, f"/tasks/{task.id}/archive").status_code == 303
    assert store.tasks.get(task.id).is_archived
    assert console.post(client, f"/tasks/{task.id}/archive").status_code == 303
    assert not store.tasks.get(task.id).is_archived
    console.post(client, f"/tasks/{task.id}/messages", {"role": "user", "content": "first"})
    console.post(client, f"/tasks/{task.id}/messages", {"role": "assistant", "content": "second"})
    assert [(m.role, m.content) for m in store.messages.for_task(task.id)] == [("user", "first"), ("assistant", "second")]
    page = client.get(f"/tasks/{task.id}").text
    assert page.index("first") < page.index("second")
    refused = console.post(client, f"/tasks/{task.id}/messages", {"role": "user", "content": " "})
    assert refused.status_code == 400 and len(store.messages.for_task(task.id)) == 2
    refused = console.post(client, f"/tasks/{task.id}/messages", {"role": "robot", "content": "x"})
    assert refused.status_code == 400 and len(store.messages.for_task(task.id)) == 2


def test_a_task_page_lists_its_agent_runs(store, client):
    task = store.tasks.create("With runs")
    other = store.tasks.create("Without")
    first = run_agent(store, "planner", task_id=task.id)
    second = run_agent(store, "coder", task_id=task.id)
    run_agent(store, "coder", task_id=other.id)
    assert rows(client.get(f"/tasks/{task.id}").text, "task-runs") == [second, first]
    assert 'id="task-runs"' not in client.get(f"/tasks/{store.tasks.create('none').id}").text


def test_a_live_region_is_served_alone(store, client):
    store.tasks.create("Only me")
    fragment = client.get("/tasks", params={"fragment": "task_table"})
    assert fragment.status_code == 200
    assert fragment.text.lstrip().startswith('<div id="task_table"') and "<html" not in fragment.text
    assert "Only me" in fragment.text and 'hx-trigger="sse:tasks"' in fragment.text
    assert client.get("/tasks", params={"fragment": "nope"}).status_code == 404


# --- environments -----------------------------------------------------------------------


def test_activating_an_environment_deactivates_the_owners_other(store, console, client):
    first = store.environments.create("first", is_active=True)
    second = store.environments.create("second")
    assert console.post(client, f"/environments/{second.id}/activate").status_code == 303
    assert not store.environments.get(first.id).is_active and store.environments.get(second.id).is_active
    assert console.post(client, "/environments", {"name": "third", "github_organization": "octo"}).status_code == 303
    assert [e.name for e in store.environments.list(order_by="name")] == ["first", "second", "third"]
    refused = console.post(client, "/environments", {"name": " "})
    assert refused.status_code == 400 and store.environments.count() == 3


# --- executions -------------------------------------------------------------------------


def test_a_run_page_shows_its_events_on_a_time_axis(store, client):
    run_id = run_agent(store, "planner", events=5)
    page = client.get(f"/executions/{run_id}").text
    assert page.count('<circle class="mark') == 5
    assert len(re.findall(r'<tr data-index="\d+"', page)) == 5
    marks = [float(x) for x in re.findall(r'<circle class="mark[^"]*" data-index="\d+" cx="([\d.]+)"', page)]
    assert marks == sorted(marks) and marks[0] < marks[-1]  # later events further right


def test_the_stats_page_shows_the_library_figures(store, client):
    for i in range(4):
        run_agent(store, "planner", fail=i == 0)
    run_agent(store, "coder")
    page = client.get("/executions/stats", params={"since": "all"}).text
    data = executions_page.execution_stats(store, {"since": "all"})
    assert data["groups"] == store.executions.stats()  # the library's figures, exactly
    assert executions_page.execution_stats(store, {"since": "1h"})["groups"] == store.executions.stats(
        since=dt.datetime.now(dt.timezone.utc) - dt.timedelta(hours=1)
    )
    planner = next(g for g in data["groups"] if g.group["agent_type"] == "planner")
    assert (planner.count, planner.failed, planner.total_tokens) == (4, 1, 4 * 3 * 14)
    row = page.split('data-agent-type="planner"', 1)[1].split("</tr>", 1)[0]
    cells = re.findall(r'<td class="num">([^<]*)</td>', row)
    assert cells[:3] == ["4", "3", "1"] and cells[4] == "25.0%" and cells[-2] == "168"
    for chart in ("chart-runs", "chart-latency", "chart-errors", "chart-tokens", "chart-cost"):
        assert f'id="{chart}"' in page
    assert client.get("/executions/stats", params={"since": "yesterday"}).status_code == 400


def test_the_executions_list_filters(store, client):
    a = run_agent(store, "planner")
    b = run_agent(store, "coder", fail=True)
    assert rows(client.get("/executions").text, "executions") == [b, a]
    assert rows(client.get("/executions", params={"agent_type": "coder"}).text, "executions") == [b]
    assert rows(client.get("/executions", params={"status": "failed"}).text, "executions") == [b]


# --- workflows --------------------------------------------------------------------------


def test_the_replay_page_shows_the_state_after_each_step(store, client):
    flows, spec = pipeline(store)
    run = flows.execute(spec, input={"n": 2})
    for number in range(0, 5):
        page = client.get(f"/workflows/{run.id}/replay", params={"step": number}).text
        assert f'data-step="{number}"' in page
        state = store.workflows.state_at(run.id, number)
        tree = page.split('id="state-tree"', 1)[1].split("</section>", 1)[0]
        keys = re.findall(r'<li data-key="([^"]+)"', tree)
        assert [k for k in keys if "." not in k and "[" not in k] == sorted(state)
    step3 = client.get(f"/workflows/{run.id}/replay", params={"step": 3}).text
    assert 'id="changed-keys">summarise<' in step3
    assert 'href="/workflows/' in step3 and "step=2" in step3 and "step=4" in step3  # back and forward
    missing = client.get(f"/workflows/{run.id}/replay", params={"step": 9})
    assert missing.status_code == 400 and "was not replayed" in missing.text


def test_the_diff_page_marks_the_first_divergence(store, client):
    flows, spec = pipeline(store)
    a = flows.execute(spec, input={"n": 2})
    b = flows.execute(spec, input={"n": 2})
    c = flows.execute(spec, input={"n": 3})
    same = client.get("/workflows/diff", params={"a": a.id, "b": b.id}).text
    assert "the executions agree step by step" in same and 'class="divergence"' not in same
    differ = client.get("/workflows/diff", params={"a": a.id, "b": c.id}).text
    assert re.findall(r'<tr data-step="([^"]+)" class="divergence">', differ) == ["fetch"]
    assert re.findall(r'<tr data-step="([^"]+)" class="differs">', differ) == ["double", "summarise", "report"]


def test_pause_resume_cancel_and_signal_from_the_console(store, console, client):
    flows, spec = waiting_flow(store)
    run = flows.execute(spec)
    assert run.status == "waiting"
    page = client.get(f"/workflows/{run.id}").text
    assert "approval awaited" in page and 'name="name" required value="approval"' in page
    assert console.post(client, f"/workflows/{run.id}/pause", {"back": "/workflows"}).headers["location"] == "/workflows"
    assert store.workflows.get(run.id).requested_status == "paused"
    console.post(client, f"/workflows/{run.id}/resume")
    assert store.workflows.get(run.id).requested_status == "running"
    signalled = console.post(client, f"/workflows/{run.id}/signal", {"name": "approval", "decision": "approve", "data": '{"by": "me"}'})
    assert signalled.status_code == 303
    assert flows.run(run.id).status == "completed"  # the signal the console wrote let it finish
    other = flows.execute(spec)
    assert console.post(client, f"/workflows/{other.id}/cancel", {"back": "https://evil.example/"}).headers["location"] == f"/workflows/{other.id}"
    assert store.workflows.get(other.id).status == "cancelled"
    refused = console.post(client, f"/workflows/{other.id}/pause")
    assert refused.status_code == 400 and "it is cancelled" in refused.text
    assert console.post(client, f"/workflows/{other.id}/explode").status_code == 400


def test_fork_from_a_step_makes_a_new_pending_execution(store, console, client):
    flows, spec = pipeline(store)
    run = flows.execute(spec, input={"n": 2})
    forked = console.post(client, f"/workflows/{run.id}/fork", {"from_step": "3"})
    assert forked.status_code == 303
    new_id = forked.headers["location"].rsplit("/", 1)[1]
    record = store.workflows.get(new_id)
    assert record.status == "pending" and record.parent_execution_id == run.id
    assert flows.run(new_id).output == run.output  # the kept steps and the rerun agree
    assert console.post(client, f"/workflows/{run.id}/fork", {"from_step": "nine"}).status_code == 400


# --- memory and sync --------------------------------------------------------------------


def test_memory_search_ranks_with_scores_and_filters(store, client):
    store.memory.add("planner", "deploys fail when the cache is cold", importance=8, tags=["deploy"])
    store.memory.add("planner", "lunch is at noon", importance=2)
    store.memory.add("coder", "deploys need a green build", importance=5, tags=["deploy"])
    expected = [hit.memory.id for hit in store.memory.search("why do deploys fail", k=3, record_access=False)]
    page = client.get("/memory", params={"q": "why do deploys fail", "k": "3"}).text
    assert rows(page, "memory-hits") == expected
    assert len(re.findall(r'<td class="num score">\d\.\d{3}</td>', page)) == 3
    only = client.get("/memory", params={"q": "deploys", "agent_id": "coder"}).text
    assert [store.memory.get(i, record_access=False).agent_id for i in rows(only, "memory-hits")] == ["coder"]
    tagged = client.get("/memory", params={"q": "deploys", "tags": "deploy", "min_importance": "6"}).text
    assert len(rows(tagged, "memory-hits")) == 1
    # A person looking is not an agent remembering: no access is counted.
    assert all(m.access_count == 0 for m in store.memory.list())
    assert client.get("/memory", params={"q": "x", "memory_type": "gossip"}).status_code == 400


def test_the_sync_page_without_a_server(store, console, client):
    store.tasks.create("queued")
    page = client.get("/sync").text
    assert 'id="pending">1<' in page and 'id="sync-now"' not in page
    banner = client.get("/_/banner").text
    assert 'data-state="local"' in banner and 'data-pending="1"' in banner
    refused = console.post(client, "/sync/now")
    assert refused.status_code == 400 and "no sync server is configured" in refused.text


def test_json_values_are_shown_as_json(store, client):
    run_id = run_agent(store, "planner", input={"a": [1, 2], "b": None})
    page = client.get(f"/executions/{run_id}").text
    shown = page.split("<h3>Input</h3>", 1)[1].split("</pre>", 1)[0].split(">", 2)[-1]
    assert msgspec.json.decode(html.unescape(shown)) == {"a": [1, 2], "b": None}
