"""The console in a real browser: Debian's Chromium, headless, driving a real
``syncstore ui`` process, with a real sync server process where sync matters.

Every check reads what a person would see on the page; writes "from another
process" are made through another connection to the replica file, from this
test process.
"""

from __future__ import annotations

import re

import pytest

import syncstore

from .running import UiProcess
from .world import pipeline

pytestmark = pytest.mark.slow


def banner(browser) -> tuple[str, int]:
    element = browser.find("#sync-banner")
    return element.get_attribute("data-state"), int(element.get_attribute("data-pending"))


def submit(browser, form_css: str) -> None:
    browser.find(f"{form_css} button[type=submit]").click()


def test_create_and_edit_a_task_then_see_it_in_a_second_replica_after_sync(browser, sync_server, sync_token, tmp_path):
    with UiProcess(str(tmp_path / "laptop.db"), url=sync_server.url, token=sync_token) as ui:
        browser.go(ui.url)
        assert browser.driver.current_url == f"{ui.base}/tasks"  # the token left the address bar
        browser.wait(lambda: banner(browser)[0] == "online", what="the banner to say online")
        browser.find("#new-task").click()
        browser.find("input[name=title]").send_keys("Quarterly report")
        browser.find("select[name=priority] option[value=high]").click()
        browser.find("input[name=repository]").send_keys("octo/app")
        submit(browser, "#task-form")
        browser.wait(lambda: browser.text("#task-title") == "Quarterly report", what="the new task's page")
        task_id = browser.driver.current_url.rsplit("/", 1)[1]

        browser.find("#edit summary").click()
        title = browser.find("#task-form input[name=title]")
        title.clear()
        title.send_keys("Quarterly report, final")
        submit(browser, "#task-form")
        browser.wait(lambda: browser.text("#task-title") == "Quarterly report, final", what="the edited title")
        browser.wait(lambda: banner(browser) == ("online", 0), what="the edits to be pushed")

        with syncstore.open(str(tmp_path / "desktop.db")) as desktop:
            desktop.sync(sync_server.url, token=sync_token)
            task = desktop.tasks.get(task_id)
        assert (task.title, task.priority, task.repository) == ("Quarterly report, final", "high", "octo/app")
        assert browser.errors() == []  # no script or style refused by the CSP, no failed request


def test_resolve_a_conflict(browser, sync_server, sync_token, tmp_path):
    url = sync_server.url
    with syncstore.open(str(tmp_path / "desktop.db")) as desktop:
        task = desktop.tasks.create("Plan the launch")
        desktop.sync(url, token=sync_token)
        with UiProcess(str(tmp_path / "laptop.db"), url=url, token=sync_token) as ui:
            browser.go(ui.url)
            browser.wait(lambda: task.id in browser.find("#tasks").get_attribute("innerHTML"), what="the synced task")
            # The desktop edits offline; the laptop edits the same title in the console.
            desktop.tasks.update(task.id, title="Plan the launch (desktop)")
            browser.go(f"{ui.base}/tasks/{task.id}")
            browser.find("#edit summary").click()
            title = browser.find("#task-form input[name=title]")
            title.clear()
            title.send_keys("Plan the launch (laptop)")
            submit(browser, "#task-form")
            browser.wait(lambda: banner(browser) == ("online", 0), what="the laptop's edit to be pushed")
            desktop.sync(url, token=sync_token)  # the desktop's edit never saw the laptop's: a conflict

            browser.go(f"{ui.base}/conflicts")
            browser.wait(lambda: browser.find_all("#conflicts tr[data-id]"), what="the conflict to arrive live")
            browser.click("#conflicts tr[data-id] a")
            winner, loser = browser.text("#side-winner pre"), browser.text("#side-loser pre")
            assert {winner, loser} == {'"Plan the launch (desktop)"', '"Plan the launch (laptop)"'}
            for side in ("winner", "loser"):  # each side with its clock and its site
                facts = browser.text(f"#side-{side} dl")
                assert re.search(r"written\s+\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} #\d+", facts)
                assert re.search(r"site\s+[0-9a-f]{32}", facts)
            browser.find("#keep-loser").click()
            browser.wait(lambda: browser.text("#conflict-state") == "resolved (loser)", what="the resolution")
            browser.wait(lambda: banner(browser) == ("online", 0), what="the resolution to be pushed")
            desktop.sync(url, token=sync_token)
            assert desktop.tasks.get(task.id).title == loser.strip('"')
            assert browser.errors() == []


def test_watch_an_execution_appear_and_finish_live(browser, tmp_path):
    path = str(tmp_path / "agent.db")
    with syncstore.open(path) as agent, UiProcess(path) as ui:
        browser.go(ui.url)
        browser.go(f"{ui.base}/executions")
        browser.ready()
        browser.driver.execute_script("window.notReloaded = true")
        assert browser.find_all("#executions tr[data-id]") == []
        run = agent.executions.create("planner", status="running")  # another process's write
        row = f'#executions tr[data-id="{run.id}"]'
        browser.wait(lambda: browser.find(row).get_attribute("data-status") == "running", what="the new run")
        agent.executions.complete(run.id, output={"ok": True})
        browser.wait(lambda: browser.find(row).get_attribute("data-status") == "completed", what="the run to finish")
        assert browser.driver.execute_script("return window.notReloaded") is True
        assert browser.errors() == []


def test_step_through_a_workflow_replay_and_read_the_state_at_step_3(browser, tmp_path):
    path = str(tmp_path / "flows.db")
    with syncstore.open(path) as store:
        flows, spec = pipeline(store)
        run = flows.execute(spec, input={"n": 2})
        expected = store.workflows.state_at(run.id, 3)
    with UiProcess(path) as ui:
        browser.go(ui.url)
        browser.go(f"{ui.base}/workflows/{run.id}")
        browser.find("#replay-link").click()
        browser.wait(lambda: browser.find("#replay-position").get_attribute("data-step") == "1", what="step 1")
        for number in (2, 3):
            browser.find("#replay-forward").click()
            browser.wait(lambda: browser.find("#replay-position").get_attribute("data-step") == str(number), what=f"step {number}")
        browser.find("#replay-back").click()
        browser.wait(lambda: browser.find("#replay-position").get_attribute("data-step") == "2", what="back to step 2")
        assert browser.find_all('#state-tree li[data-key="summarise"]') == []
        browser.find("#replay-forward").click()
        browser.wait(lambda: browser.find("#replay-position").get_attribute("data-step") == "3", what="step 3 again")
        assert "summarise" in browser.text("#replay-position")
        shown = {
            li.get_attribute("data-key"): li.find_element("css selector", ".value").text
            for li in browser.find_all("#state-tree li[data-key]")
            if not li.find_elements("css selector", "details")
        }
        assert shown == {
            "double": "4",
            "fetch.items[0]": "0",
            "fetch.items[1]": "1",
            "fetch.n": "2",
            "summarise.ok": "true",
            "summarise.text": '"4 items"',
        }
        assert expected == {"fetch": {"n": 2, "items": [0, 1]}, "double": 4, "summarise": {"text": "4 items", "ok": True}}
        changed = browser.find('#state-tree li[data-key="summarise"]')
        assert "changed" in changed.get_attribute("class")
        assert browser.errors() == []


def test_open_a_diff_and_see_the_divergence_highlighted(browser, tmp_path):
    path = str(tmp_path / "flows.db")
    with syncstore.open(path) as store:
        flows, spec = pipeline(store)
        a = flows.execute(spec, input={"n": 2})
        b = flows.execute(spec, input={"n": 3})
    with UiProcess(path) as ui:
        browser.go(ui.url)
        browser.go(f"{ui.base}/workflows/{a.id}")
        browser.find(f'#compare-form select[name=b] option[value="{b.id}"]').click()
        submit(browser, "#compare-form")
        browser.wait(lambda: browser.find_all("#diff tr.divergence"), what="the diff")
        (first,) = browser.find_all("#diff tr.divergence")
        assert first.get_attribute("data-step") == "fetch"
        assert "first divergence" in first.text
        assert browser.text("#diff-summary").startswith("first divergence at step 'fetch'")
        # Highlighted: the row is drawn apart from the rows that agree or differ later.
        cell = first.find_element("css selector", "td")
        later = browser.find('#diff tr[data-step="double"] td')
        assert cell.value_of_css_property("background-color") == "rgba(253, 236, 236, 1)"
        assert later.value_of_css_property("background-color") != cell.value_of_css_property("background-color")
        assert browser.errors() == []


def test_the_banner_goes_offline_counts_pending_changes_and_recovers(browser, sync_server, sync_token, tmp_path):
    with UiProcess(str(tmp_path / "laptop.db"), url=sync_server.url, token=sync_token) as ui:
        browser.go(ui.url)
        browser.wait(lambda: banner(browser) == ("online", 0), what="online")
        sync_server.terminate()
        browser.wait(lambda: banner(browser)[0] == "offline", what="the banner to say offline")
        assert "Offline" in browser.text("#sync-banner")
        for title in ("Written offline", "Also offline"):
            browser.go(f"{ui.base}/tasks/new")
            browser.find("input[name=title]").send_keys(title)
            submit(browser, "#task-form")
            browser.wait(lambda: browser.text("#task-title") == title, what="the task page")
        browser.go(f"{ui.base}/tasks")
        browser.ready()
        assert browser.wait(lambda: banner(browser)) == ("offline", 2)
        sync_server.start()
        browser.wait(lambda: banner(browser) == ("online", 0), timeout=40, what="the banner to come back online with nothing pending")
        assert browser.text("#pending-count") == "0"
