"""rollback_import: removes what one import wrote, keeps what was edited since."""

from __future__ import annotations

import pytest

from syncstore.core import hlc
from syncstore.errors import NotFoundError, ValidationError
from syncstore.legacy import import_legacy, list_imports, rollback_import
from syncstore.legacy import secrets

from .exports import VALID_SAMPLE_TASKS, make_environment, make_export, make_task, snapshot


def test_rollback_removes_what_the_import_added(store, sample_path):
    report = import_legacy(store, sample_path)
    undo = rollback_import(store, report.import_id)
    assert sorted(r.id for r in undo.removed if r.table == "tasks") == sorted(VALID_SAMPLE_TASKS)
    assert len([r for r in undo.removed if r.table == "environments"]) == 2
    assert undo.kept == [] and undo.restored == []
    assert undo.secrets_removed == 2 and undo.messages_kept == 11
    assert store.count("tasks") == 0 and store.count("environments") == 0
    assert store.query("select count(*) as n from local_secrets") == [{"n": 0}]
    # Deletes are tombstones that sync like any write.
    assert all(store.tombstone("tasks", task_id) is not None for task_id in VALID_SAMPLE_TASKS)
    assert list_imports(store)[0].rolled_back_at is not None


def test_rows_edited_since_are_kept_and_named(store, sample_path):
    report = import_legacy(store, sample_path)
    edited = "36f675cc-81e7-4ef5-a8e2-5d940ed90475"
    store.tasks.update(edited, title="my own title")
    env_id = "8e81973e-0bec-47b0-b898-d190f9ebdacc"
    store.environments.activate(env_id)
    undo = rollback_import(store, report.import_id)
    kept = {(k.table, k.id): k.reason for k in undo.kept}
    assert kept[("tasks", edited)] == "edited since the import (title, updated_at)"
    assert kept[("environments", env_id)].startswith("edited since the import (is_active")
    assert kept[("local_secrets", env_id)] == "its environment was kept"
    assert store.tasks.get(edited).title == "my own title"
    assert store.count("tasks") == 1 and store.count("environments") == 1
    assert secrets.get(store, "environments", env_id, secrets.GITHUB_TOKEN) is not None
    assert undo.secrets_removed == 1


def test_a_row_changed_elsewhere_counts_as_edited(store):
    from syncstore.core.merge import Cell
    from syncstore.replica.store import RemoteChange

    task = make_task()
    report = import_legacy(store, make_export([task]))
    store.apply_remote([RemoteChange("tasks", task["id"], {"branch": Cell("dev", hlc.from_ms(hlc.wall_ms()), b"\x01" * 16)})])
    undo = rollback_import(store, report.import_id)
    assert [(k.id, k.reason) for k in undo.kept] == [(task["id"], "edited since the import (branch)")]


def test_rollback_of_an_update_restores_the_earlier_values(store):
    task = make_task()
    import_legacy(store, make_export([task]))
    newer = dict(task, title="Renamed", updatedAt="2025-07-18T10:00:00.000Z")
    second = import_legacy(store, make_export([newer]))
    assert second.tasks.updated == 1
    undo = rollback_import(store, second.import_id)
    assert [(r.table, r.id) for r in undo.restored] == [("tasks", task["id"])]
    row = store.tasks.get(task["id"])
    assert (row.title, row.updated_at.isoformat()) == ("Fix the flaky test", "2025-07-17T10:05:00+00:00")


def test_a_rollback_happens_once(store, sample_path):
    report = import_legacy(store, sample_path)
    rollback_import(store, report.import_id)
    before = snapshot(store)
    with pytest.raises(ValidationError, match="already rolled back"):
        rollback_import(store, report.import_id)
    with pytest.raises(NotFoundError):
        rollback_import(store, "01a2b3c4-0000-7000-8000-000000000000")
    assert snapshot(store) == before


def test_importing_again_after_a_rollback_brings_everything_back(store, sample_path):
    first = import_legacy(store, sample_path)
    rollback_import(store, first.import_id)
    again = import_legacy(store, sample_path)
    assert again.tasks.imported == 5 and again.environments.imported == 2
    assert again.messages.present == 11 and again.messages.imported == 0
    assert again.integrity.ok
    for task_id, (_, status, count) in VALID_SAMPLE_TASKS.items():
        assert store.tasks.get(task_id).status == status
        assert len(store.messages.for_task(task_id)) == count
    # Brought back with a fresh clock, so the insert wins over the rollback's tombstone.
    task_id = next(iter(VALID_SAMPLE_TASKS))
    assert store.cells("tasks", task_id)["title"].hlc > hlc.from_ms(1_800_000_000_000 // 2)
    assert store.tombstone("tasks", task_id) is None
    # And that import can be rolled back in turn.
    assert len(rollback_import(store, again.import_id).removed) == 7


def test_a_rollback_never_brings_back_what_a_person_deleted(store):
    task = make_task()
    first = import_legacy(store, make_export([task], [make_environment()]))
    store.tasks.delete(task["id"])
    undo = rollback_import(store, first.import_id)
    assert [(k.id, k.reason) for k in undo.kept] == [(task["id"], "already deleted here")]
    report = import_legacy(store, make_export([task]))
    assert report.kept[0].reason == "deleted here; left deleted"
    assert store.tasks.find(task["id"]) is None


def test_the_same_import_made_on_another_replica_does_not_count_as_an_edit(store, tmp_path):
    import syncstore
    from syncstore.replica.store import RemoteChange

    task = make_task()
    export = make_export([task])
    with syncstore.open(str(tmp_path / "other.db")) as other:
        # The replica with the smaller site id rolls back: the other's equal
        # cells win every tie there, so its row ends up carrying a foreign site.
        low, high = sorted((store, other), key=lambda r: r.site_id)
        report = import_legacy(low, export)
        import_legacy(high, export)
        low.apply_remote([RemoteChange("tasks", task["id"], high.cells("tasks", task["id"]))])
        assert {c.site for c in low.cells("tasks", task["id"]).values()} == {high.site_id}
        undo = rollback_import(low, report.import_id)
        assert [(r.table, r.id) for r in undo.removed] == [("tasks", task["id"])]
