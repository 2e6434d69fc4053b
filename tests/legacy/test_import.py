"""import_legacy against a real replica: the report, idempotency, dry runs,
strictness, atomicity, and how imported values order against later edits."""

from __future__ import annotations

import json

import msgspec
import pytest

import syncstore
from syncstore.core import hlc
from syncstore.core.merge import Cell
from syncstore.legacy import IntegrityCheckError, StrictImportError, import_legacy
from syncstore.legacy.mapping import message_id
from syncstore.replica.store import RemoteChange

from .exports import VALID_SAMPLE_TASKS, make_environment, make_export, make_task, snapshot


def test_the_sample_imports_with_the_right_report(store, sample_path):
    report = import_legacy(store, sample_path)
    assert report.import_id is not None and not report.dry_run
    assert msgspec.structs.asdict(report.tasks) == dict(source=8, imported=5, updated=0, unchanged=0, kept=0, skipped=3)
    assert msgspec.structs.asdict(report.environments) == dict(source=2, imported=2, updated=0, unchanged=0, kept=0, skipped=0)
    assert msgspec.structs.asdict(report.messages) == dict(source=11, imported=11, present=0, shell_pairs=3, duplicates=0)
    assert (report.secrets.found, report.secrets.stored, report.secrets.dropped) == (2, 2, 0)
    assert [(s.kind, s.index, s.id, s.reason) for s in report.skipped] == [
        ("task", 5, None, "missing id"),
        ("task", 6, "0fd630f1-f29d-4da9-953f-48f1a09f76b5", "unknown status 'SHIPPED' (known: IN_PROGRESS, PAUSED, DONE, MERGED, CANCELLED)"),
        ("task", 7, "0cb1e29c-658c-4a14-95e6-0af593bd04cf", "updatedAt is not an ISO-8601 date with a timezone: 'not a date'"),
    ]
    assert [i.key for i in report.ignored_keys] == ["new-task-form-draft", "migration-status"]
    assert report.kept == [] and report.duplicates == [] and report.warnings == []
    assert report.integrity is not None and report.integrity.ok
    assert report.integrity.checked == [
        "tasks: 5 of 5 present",
        "environments: 2 of 2 present",
        "messages: 11 of 11 present, in order, across 5 tasks",
        "secrets: 2 of 2 in the local secret table",
    ]
    assert store.count("tasks") == 5 and store.count("environments") == 2 and store.count("task_messages") == 11


def test_statuses_map_and_the_legacy_word_is_kept(store, sample_path):
    import_legacy(store, sample_path)
    for task_id, (word, status, messages) in VALID_SAMPLE_TASKS.items():
        task = store.tasks.get(task_id)
        assert task.status == status
        assert task.metadata["legacy"]["status"] == word
        assert len(store.messages.for_task(task_id)) == messages
    merged = store.tasks.get("6b0d549b-6f03-475a-9600-a35a099950d8")
    assert merged.is_archived and merged.branch == "feature/payments"
    assert store.tasks.get("9531985d-5d9d-49f8-9818-e811892f902b").pull_request["number"] == 7


def test_a_second_import_is_a_no_op(store, sample_path):
    import_legacy(store, sample_path)
    before = snapshot(store)
    last_seq = store.last_seq()
    again = import_legacy(store, sample_path)
    assert again.import_id is None
    assert (again.tasks.imported, again.tasks.unchanged, again.environments.unchanged) == (0, 5, 2)
    assert (again.messages.imported, again.messages.present) == (0, 11)
    assert again.secrets.unchanged == 2 and again.secrets.stored == 0
    assert again.integrity.ok
    assert store.last_seq() == last_seq
    assert snapshot(store) == before  # not a single row anywhere, the change log included


def test_a_dry_run_writes_nothing_and_reports_what_an_import_would_do(store, sample_path):
    before = snapshot(store)
    dry = import_legacy(store, sample_path, dry_run=True)
    assert snapshot(store) == before
    assert dry.dry_run and dry.import_id is None and dry.integrity is None
    real = import_legacy(store, sample_path)
    for part in ("tasks", "environments", "messages", "secrets", "skipped", "ignored_keys"):
        assert getattr(dry, part) == getattr(real, part), part


def test_invalid_items_are_skipped_and_the_rest_imports(store):
    good = make_task()
    export = make_export([good, make_task(status="SHIPPED"), make_task(id=good["id"], title="same id")], [make_environment(name=None)])
    report = import_legacy(store, export)
    assert report.tasks.imported == 1 and report.tasks.skipped == 2
    assert [(s.kind, s.index) for s in report.skipped] == [("environment", 0), ("task", 1), ("task", 2)]
    assert report.skipped[0].reason == "missing name"
    assert report.skipped[2].reason == "the same id as task 0; only the first is imported"
    assert store.tasks.get(good["id"]).title == "Fix the flaky test"


def test_strict_aborts_everything_on_any_invalid_item(store, sample_path):
    before = snapshot(store)
    with pytest.raises(StrictImportError) as caught:
        import_legacy(store, sample_path, strict=True)
    assert snapshot(store) == before
    assert len(caught.value.report.skipped) == 3
    assert "nothing was imported" in str(caught.value)


def test_strict_passes_a_clean_export(store):
    report = import_legacy(store, make_export([make_task()], [make_environment()]), strict=True)
    assert report.tasks.imported == 1 and report.environments.imported == 1


def test_strict_counts_an_unreadable_store_as_invalid(store):
    export = make_export([make_task()])
    export["environments"] = "{broken"
    with pytest.raises(StrictImportError):
        import_legacy(store, export, strict=True)
    assert import_legacy(store, export).skipped[0].kind == "key"


@pytest.mark.parametrize(
    "shape",
    ["strings", "objects", "no-version", "no-state", "bare-arrays"],
)
def test_every_envelope_variant_imports_the_same_rows(replica_path, tmp_path, shape):
    tasks, envs = [make_task(), make_task(status="PAUSED")], [make_environment()]
    wrapped = {
        "strings": (json.dumps({"state": {"tasks": tasks}, "version": 0}), json.dumps({"state": {"environments": envs}, "version": 0})),
        "objects": ({"state": {"tasks": tasks}, "version": 0}, {"state": {"environments": envs}, "version": 0}),
        "no-version": (json.dumps({"state": {"tasks": tasks}}), {"state": {"environments": envs}}),
        "no-state": (json.dumps({"tasks": tasks}), {"environments": envs}),
        "bare-arrays": (json.dumps(tasks), envs),
    }[shape]
    path = tmp_path / "export.json"
    path.write_text(json.dumps({"task-store": wrapped[0], "environments": wrapped[1], "draft": "x"}))
    with syncstore.open(replica_path) as store:
        report = import_legacy(store, str(path))
        assert (report.tasks.imported, report.environments.imported, report.messages.imported) == (2, 1, 4)
        assert [i.key for i in report.ignored_keys] == ["draft"]
        rows = store.query("select id, title, status, metadata from tasks order by id")
    assert rows == sorted(
        [
            {"id": t["id"], "title": t["title"], "status": s, "metadata": json.dumps({"legacy": {"status": w}}, separators=(",", ":"))}
            for t, s, w in ((tasks[0], "completed", "DONE"), (tasks[1], "paused", "PAUSED"))
        ],
        key=lambda r: r["id"],
    )


def _many(count: int) -> list[dict]:
    return [make_task(title=f"task {i}") for i in range(count)]


def test_a_failure_midway_leaves_the_replica_as_it_was(store, sample_path):
    import_legacy(store, sample_path)
    before = snapshot(store)
    calls = []

    def interrupt(done, total):
        calls.append(done)
        if len(calls) == 3:  # after the environments and the first batch of tasks
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        import_legacy(store, make_export(_many(1200), [make_environment()]), progress=interrupt)
    assert calls[-1] > 0
    assert snapshot(store) == before


def test_a_database_error_midway_leaves_the_replica_as_it_was(store):
    tasks = _many(1100)
    tasks[-1]["messages"].append({"role": "assistant", "type": "message", "data": {"text": "boom"}})
    store.connection.execute(
        "create trigger refuse_boom before insert on task_messages when new.content = 'boom' "
        "begin select raise(abort, 'refused by a test trigger'); end"
    )
    before = snapshot(store)
    with pytest.raises(syncstore.SyncstoreError, match="refused by a test trigger"):
        import_legacy(store, make_export(tasks, [make_environment()]))
    assert snapshot(store) == before
    assert store.count("tasks") == 0


def test_a_failed_integrity_check_aborts_the_import(store):
    # A trigger that loses some messages on the way in: the check must see it.
    store.connection.execute(
        "create trigger lose_messages after insert on task_messages when new.position = 1 "
        "begin delete from task_messages where id = new.id; end"
    )
    before = snapshot(store)
    tasks = [make_task(), make_task()]
    with pytest.raises(IntegrityCheckError) as caught:
        import_legacy(store, make_export(tasks))
    assert snapshot(store) == before
    problems = caught.value.report.integrity.problems
    assert problems == [f"task {tasks[0]['id']}: 1 of 2 messages present", f"task {tasks[1]['id']}: 1 of 2 messages present"]


def test_progress_goes_up_to_the_total(store):
    seen = []
    import_legacy(store, make_export(_many(1100), [make_environment()]), progress=lambda d, t: seen.append((d, t)))
    assert seen[0] == (0, 1101) and seen[-1] == (1101, 1101)
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)


def test_imported_values_carry_the_clock_of_their_updated_at(store, sample_path):
    import_legacy(store, sample_path)
    task_id = "9531985d-5d9d-49f8-9818-e811892f902b"
    stamp = hlc.from_ms(1_752_746_712_345)  # 2025-07-17T10:05:12.345Z
    cells = store.cells("tasks", task_id)
    assert {(c.hlc, c.site) for c in cells.values()} == {(stamp, store.site_id)}
    logged = [c for c in store.changes() if c.id == task_id]
    assert [c.hlc for c in logged] == [stamp]
    env = store.cells("environments", "6b4cb242-4a23-4596-a217-beaddbc496cb")
    assert {c.hlc for c in env.values()} == {hlc.from_ms(1_752_823_800_000)}  # 2025-07-18T07:30:00Z
    messages = store.query("select _hlc from task_messages where task_id = ?", (task_id,))
    assert {m["_hlc"] for m in messages} == {stamp}


def test_a_later_local_edit_wins_over_imported_values(store, sample_path):
    import_legacy(store, sample_path)
    task_id = "36f675cc-81e7-4ef5-a8e2-5d940ed90475"
    imported = store.cells("tasks", task_id)["status"]
    store.tasks.update(task_id, status="in_progress")
    edited = store.cells("tasks", task_id)["status"]
    assert (edited.hlc, edited.site) > (imported.hlc, imported.site)
    # Importing the export again does not put the old value back.
    again = import_legacy(store, sample_path)
    assert store.tasks.get(task_id).status == "in_progress"
    assert [k.id for k in again.kept] == [task_id]
    assert "status" in again.kept[0].reason


def test_an_edit_made_elsewhere_wins_if_later_and_loses_if_earlier(store, sample_path):
    import_legacy(store, sample_path)
    task_id = "36f675cc-81e7-4ef5-a8e2-5d940ed90475"
    updated_ms = 1_752_751_200_000  # its updatedAt, 2025-07-17T11:20:00Z
    other_site = b"\xff" * 16  # the largest site: wins every tie, so only the clock decides
    earlier = RemoteChange("tasks", task_id, {"title": Cell("older title", hlc.from_ms(updated_ms - 1), other_site)})
    store.apply_remote([earlier])
    assert store.tasks.get(task_id).title == "Why does the CI job time out on the integration tests?"
    later = RemoteChange("tasks", task_id, {"title": Cell("newer title", hlc.from_ms(updated_ms + 1), other_site)})
    store.apply_remote([later])
    assert store.tasks.get(task_id).title == "newer title"


def test_later_local_writes_sort_after_imported_stamps_even_from_the_future(store):
    future = make_task(updatedAt="2999-01-01T00:00:00.000Z")
    report = import_legacy(store, make_export([future]))
    assert any("later than now" in w for w in report.warnings)
    imported = store.cells("tasks", future["id"])["title"].hlc
    assert hlc.unpack(imported)[0] <= hlc.wall_ms()
    store.tasks.update(future["id"], title="edited")
    assert store.cells("tasks", future["id"])["title"].hlc > imported


def test_a_newer_export_updates_what_was_not_edited_here(store):
    task = make_task()
    import_legacy(store, make_export([task]))
    newer = dict(task, title="A better title", status="MERGED", updatedAt="2025-07-18T10:00:00.000Z")
    newer["messages"] = task["messages"] + [{"role": "user", "type": "message", "data": {"text": "one more"}}]
    report = import_legacy(store, make_export([newer]))
    assert (report.tasks.updated, report.messages.imported, report.messages.present) == (1, 1, 2)
    row = store.tasks.get(task["id"])
    assert (row.title, row.status, row.metadata["legacy"]["status"]) == ("A better title", "merged", "MERGED")
    assert [m.content for m in store.messages.for_task(task["id"])] == ["and add a test", "Done.", "one more"]
    assert store.cells("tasks", task["id"])["title"].hlc == hlc.from_ms(1_752_832_800_000)


def test_local_additions_to_metadata_and_other_columns_survive_a_newer_import(store):
    task = make_task()  # updatedAt 2025-07-17T10:05:00Z
    import_legacy(store, make_export([task]))
    # An edit made here on 2025-07-17 at 12:00, before the old app's last change.
    edit = {"priority": "high", "metadata": {"legacy": {"status": "DONE"}, "note": "mine"}, "updated_at": "2025-07-17T12:00:00Z"}
    store.update("tasks", task["id"], edit, hlc=hlc.from_ms(1_752_753_600_000))
    newer = dict(task, title="Renamed", status="MERGED", updatedAt="2025-07-18T10:00:00.000Z")
    report = import_legacy(store, make_export([newer]))
    assert report.tasks.updated == 1
    row = store.tasks.get(task["id"])
    assert (row.title, row.status, row.priority) == ("Renamed", "merged", "high")
    assert row.metadata == {"legacy": {"status": "MERGED"}, "note": "mine"}


def test_a_row_deleted_here_stays_deleted(store):
    task = make_task()
    import_legacy(store, make_export([task]))
    store.tasks.delete(task["id"])
    before = snapshot(store)
    report = import_legacy(store, make_export([task]))
    assert report.kept[0].reason == "deleted here; left deleted"
    assert report.import_id is None and report.integrity.ok
    assert snapshot(store) == before


def test_subscribers_hear_of_the_import_after_it_commits(store, sample_path):
    heard = []
    store.subscribe("tasks", lambda changes: heard.extend(c.id for c in changes))
    import_legacy(store, sample_path)
    assert sorted(heard) == sorted(VALID_SAMPLE_TASKS)


def test_the_history_records_every_row_the_import_wrote(store, sample_path):
    report = import_legacy(store, sample_path)
    rows = store.query("select tbl, pk, op, detail from legacy_import_rows where import_id = ?", (report.import_id,))
    by_table = {}
    for row in rows:
        by_table.setdefault(row["tbl"], []).append(row)
    assert len(by_table["tasks"]) == 5 and len(by_table["environments"]) == 2
    assert len(by_table["local_secrets"]) == 2
    messages = {r["pk"]: json.loads(r["detail"]) for r in by_table["task_messages"]}
    assert messages["9531985d-5d9d-49f8-9818-e811892f902b"] == [[0, 5]]
    assert message_id("9531985d-5d9d-49f8-9818-e811892f902b", 4) in {m["id"] for m in store.query("select id from task_messages")}
    summary = json.loads(store.query("select summary from legacy_imports")[0]["summary"])
    assert summary["tasks"]["imported"] == 5
