"""store.tasks.search: tasks found by title and description, kept in step."""

from __future__ import annotations

import syncstore


def titles(hits):
    return [h.task.title for h in hits]


def test_tasks_are_found_by_title_and_description(store):
    store.tasks.create("Fix the login page", description="OAuth redirect loops after password reset")
    store.tasks.create("Write release notes", description="Summarise changes for version 2.0")
    store.tasks.create("Upgrade the database", description="Move from PostgreSQL 14 to 16")
    assert titles(store.tasks.search("oauth redirect", k=1)) == ["Fix the login page"]
    assert titles(store.tasks.search("postgresql upgrade", k=1)) == ["Upgrade the database"]
    assert len(store.tasks.search("anything", k=10)) == 3  # k results whenever k tasks pass


def test_filters_select_before_ranking(store):
    store.tasks.create("Deploy the api", status="completed")
    store.tasks.create("Deploy the web app", status="pending", repository="octo/web")
    archived = store.tasks.create("Deploy the old site")
    store.tasks.archive(archived.id)
    assert titles(store.tasks.search("deploy", k=5, status="completed")) == ["Deploy the api"]
    assert titles(store.tasks.search("deploy", k=5, repository="octo/web")) == ["Deploy the web app"]
    assert "Deploy the old site" not in titles(store.tasks.search("deploy", k=5))
    assert "Deploy the old site" in titles(store.tasks.search("deploy", k=5, include_archived=True))


def test_edits_sync_and_other_connections_are_followed(store, other, ship, replica_path):
    task = store.tasks.create("Investigate flaky test")
    assert titles(store.tasks.search("flaky", k=1)) == ["Investigate flaky test"]
    store.tasks.update(task.id, title="Rewrite the scheduler")
    assert titles(store.tasks.search("scheduler", k=1)) == ["Rewrite the scheduler"]
    remote = other.tasks.create("Translate the docs into German")
    ship(other, store)
    assert titles(store.tasks.search("german translation docs", k=1)) == [remote.title]
    with syncstore.open(replica_path) as second_process:
        second_process.tasks.create("Benchmark the vector index")
    assert titles(store.tasks.search("vector index benchmark", k=1)) == ["Benchmark the vector index"]
    store.tasks.delete(task.id)
    assert "Rewrite the scheduler" not in titles(store.tasks.search("scheduler", k=5))


def test_a_search_inside_a_rolled_back_transaction_leaves_no_trace(store):
    task = store.tasks.create("Investigate flaky test")
    store.tasks.search("flaky", k=1)
    store.tasks.create("Water the plants")  # a commit: the next search reads texts again
    try:
        with store.transaction():
            store.tasks.update(task.id, title="Rewrite the scheduler")
            assert titles(store.tasks.search("rewrite scheduler", k=1)) == ["Rewrite the scheduler"]
            raise RuntimeError("roll back")
    except RuntimeError:
        pass
    (hit,) = store.tasks.search("flaky test", k=1)
    assert hit.task.title == "Investigate flaky test" and hit.score > 0.5
