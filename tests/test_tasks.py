"""Tasks and their messages through the typed API; change notifications."""

from __future__ import annotations

import datetime as dt

import pytest

import syncstore
from syncstore import Task, TaskMessage
from syncstore.errors import NotFoundError, ValidationError

MISSING = "01a215e4-e4c7-7804-a2c7-00000000dead"


class Boom(Exception):
    pass


def test_create_returns_a_typed_record_with_defaults(store):
    task = store.tasks.create("Summarise the logs", repository="octo/app", metadata={"source": "ci"})
    assert isinstance(task, Task)
    assert (task.title, task.status, task.priority, task.mode) == ("Summarise the logs", "pending", "medium", "code")
    assert task.repository == "octo/app" and task.metadata == {"source": "ci"}
    assert task.is_archived is False and task.has_changes is False
    assert isinstance(task.created_at, dt.datetime) and task.created_at.tzinfo is not None
    assert task.created_at == task.updated_at
    assert store.tasks.get(task.id) == task


def test_get_and_find(store):
    task = store.tasks.create("a")
    assert store.tasks.find(task.id) == task
    assert store.tasks.find(MISSING) is None
    with pytest.raises(NotFoundError) as caught:
        store.tasks.get(MISSING)
    assert (caught.value.table, caught.value.row_id) == ("tasks", MISSING)


def test_update_changes_fields_and_moves_updated_at(store):
    task = store.tasks.create("a")
    changed = store.tasks.update(task.id, status="in_progress", priority="high", pull_request={"number": 7})
    assert (changed.status, changed.priority, changed.pull_request) == ("in_progress", "high", {"number": 7})
    assert changed.title == "a"
    assert changed.updated_at >= task.updated_at and changed.created_at == task.created_at
    assert store.tasks.get(task.id) == changed
    archived = store.tasks.archive(task.id)
    assert archived.is_archived is True


def test_update_with_nothing_or_of_a_missing_task_is_refused(store):
    task = store.tasks.create("a")
    with pytest.raises(ValidationError, match="nothing to update"):
        store.tasks.update(task.id)
    with pytest.raises(NotFoundError):
        store.tasks.update(MISSING, title="x")


def test_delete(store):
    task = store.tasks.create("a")
    store.tasks.delete(task.id)
    assert store.tasks.find(task.id) is None
    with pytest.raises(NotFoundError):
        store.tasks.delete(task.id)


@pytest.mark.parametrize(
    "kwargs, field, problem",
    [
        ({"title": ""}, "title", "must not be empty"),
        ({"title": "   "}, "title", "must not be empty"),
        ({"title": 42}, "title", "expected text, got int"),
        ({"title": None}, "title", "is required"),
        ({"title": "t", "status": "finished"}, "status", "'finished' is not one of pending"),
        ({"title": "t", "priority": "p0"}, "priority", "'p0' is not one of low"),
        ({"title": "t", "mode": "chat"}, "mode", "'chat' is not one of code, ask"),
        ({"title": "t", "metadata": ["not", "a", "dict"]}, "metadata", "expected a JSON object"),
        ({"title": "t", "is_archived": "yes"}, "is_archived", "expected a boolean"),
        ({"title": "t", "colour": "red"}, "colour", "unknown column"),
        ({"title": "t", "created_at": "last tuesday"}, "created_at", "not an ISO-8601 timestamp"),
        ({"title": "t", "id": "42"}, "id", "UUID"),
    ],
)
def test_validation_errors_name_the_field_and_the_problem(store, kwargs, field, problem):
    title = kwargs.pop("title")
    with pytest.raises(ValidationError, match=problem) as caught:
        store.tasks.create(title, **kwargs)
    assert caught.value.field == field and caught.value.table == "tasks"
    assert str(caught.value).startswith(f"tasks.{field}: ")
    assert store.tasks.count() == 0


def test_update_validation_names_the_field(store):
    task = store.tasks.create("a")
    with pytest.raises(ValidationError, match="tasks.status: 'later' is not one of") as caught:
        store.tasks.update(task.id, status="later")
    assert caught.value.field == "status"
    assert store.tasks.get(task.id) == task


# --- listing -----------------------------------------------------------------------------


@pytest.fixture
def many(store):
    made = []
    for n in range(12):
        made.append(
            store.tasks.create(
                f"task {n:02d}",
                status=("pending", "in_progress", "completed")[n % 3],
                repository="octo/app" if n % 2 else "octo/lib",
                created_at=dt.datetime(2025, 1, 1, 0, 0, n, tzinfo=dt.timezone.utc),
            )
        )
    return made


def test_list_filters_by_equality_and_by_any_of(store, many):
    assert {t.title for t in store.tasks.list(status="completed")} == {f"task {n:02d}" for n in range(2, 12, 3)}
    both = store.tasks.list(status=["pending", "completed"], repository="octo/app")
    assert {t.title for t in both} == {"task 03", "task 05", "task 09", "task 11"}
    assert store.tasks.list(status=[]) == []
    assert len(store.tasks.list(is_archived=False)) == 12
    store.tasks.archive(many[0].id)
    assert [t.id for t in store.tasks.list(is_archived=True)] == [many[0].id]


def test_list_pages_through_in_order_without_overlap(store, many):
    pages = [store.tasks.list(limit=5, offset=offset) for offset in (0, 5, 10)]
    assert [len(p) for p in pages] == [5, 5, 2]
    titles = [t.title for page in pages for t in page]
    assert titles == [f"task {n:02d}" for n in range(12)]  # oldest first
    newest = store.tasks.list(limit=3, descending=True)
    assert [t.title for t in newest] == ["task 11", "task 10", "task 09"]
    assert [t.title for t in store.tasks.list(limit=None, offset=10)] == ["task 10", "task 11"]
    assert [t.title for t in store.tasks.list(order_by="title", descending=True, limit=1)] == ["task 11"]


@pytest.mark.parametrize(
    "kwargs, problem",
    [
        ({"limit": -1}, "limit must be a whole number"),
        ({"offset": -3}, "offset must be a whole number"),
        ({"limit": "10"}, "limit must be a whole number"),
        ({"order_by": "colour"}, "unknown column"),
        ({"colour": "red"}, "unknown column"),
        ({"status": "done"}, "'done' is not one of"),
    ],
)
def test_bad_list_arguments_are_validation_errors(store, kwargs, problem):
    with pytest.raises(ValidationError, match=problem):
        store.tasks.list(**kwargs)


# --- messages -----------------------------------------------------------------------------


def test_messages_append_in_order(store):
    task = store.tasks.create("chat")
    first = store.messages.add(task.id, "user", "hello")
    second = store.messages.add(task.id, "assistant", "hi", type="reply", data={"tokens": 3})
    assert isinstance(first, TaskMessage)
    assert (first.position, second.position) == (0, 1)
    assert second.data == {"tokens": 3} and second.type == "reply"
    assert [m.content for m in store.messages.for_task(task.id)] == ["hello", "hi"]
    other = store.tasks.create("another")
    assert store.messages.add(other.id, "user", "separate").position == 0


def test_a_message_needs_an_existing_task_and_a_known_role(store):
    with pytest.raises(NotFoundError):
        store.messages.add(MISSING, "user", "into the void")
    task = store.tasks.create("chat")
    with pytest.raises(ValidationError, match="role") as caught:
        store.messages.add(task.id, "robot", "beep")
    assert caught.value.field == "role"
    assert store.messages.count() == 0


def test_messages_are_append_only(store):
    task = store.tasks.create("chat")
    message = store.messages.add(task.id, "user", "hello")
    with pytest.raises(ValidationError, match="append-only"):
        store.messages.update(message.id, content="edited")
    with pytest.raises(ValidationError, match="append-only"):
        store.messages.delete(message.id)
    assert store.messages.get(message.id).content == "hello"


# --- notifications ---------------------------------------------------------------------------


def test_subscribers_hear_of_a_commit_after_it_is_durable(store):
    heard = []

    def listener(changes):
        # Called after commit: another connection already sees the rows.
        with syncstore.open(store.path) as other:
            heard.append([(c.table, c.op, other.get(c.table, c.id) is not None) for c in changes])

    store.subscribe("tasks", listener)
    with store.transaction():
        task = store.tasks.create("a")
        store.tasks.update(task.id, status="in_progress")
        store.messages.add(task.id, "user", "not a task change")
        assert heard == []  # nothing before the commit
    assert heard == [[("tasks", "insert", True), ("tasks", "update", True)]]


def test_no_notification_for_a_rolled_back_transaction_or_savepoint(store):
    heard = []
    store.subscribe(None, heard.append)
    with pytest.raises(Boom):
        with store.transaction():
            store.tasks.create("lost")
            raise Boom
    assert heard == []
    with store.transaction():
        kept = store.tasks.create("kept")
        with pytest.raises(Boom):
            with store.transaction():
                store.tasks.create("lost in a savepoint")
                raise Boom
    assert [[(c.id, c.op, c.origin) for c in batch] for batch in heard] == [[(kept.id, "insert", "local")]]


def test_every_table_subscription_and_unsubscribe(store):
    everything, tasks_only = [], []
    store.subscribe(None, everything.append)
    stop = store.subscribe("tasks", tasks_only.append)
    task = store.tasks.create("a")
    store.messages.add(task.id, "user", "m")
    stop()
    store.tasks.update(task.id, title="b")
    assert [c.table for batch in everything for c in batch] == ["tasks", "task_messages", "tasks"]
    assert [c.table for batch in tasks_only for c in batch] == ["tasks"]
    assert everything[-1][0].columns == ("title", "updated_at")


def test_a_failing_subscriber_does_not_break_the_writer(store, caplog):
    seen = []

    def broken(changes):
        raise RuntimeError("listener bug")

    store.subscribe("tasks", broken)
    store.subscribe("tasks", seen.append)
    task = store.tasks.create("still written")
    assert store.tasks.get(task.id).title == "still written"
    assert len(seen) == 1
    assert "listener bug" in caplog.text


def test_subscribing_to_an_unknown_table_is_refused(store):
    with pytest.raises(ValidationError, match="unknown table"):
        store.subscribe("nope", print)


def test_a_subscriber_hears_of_the_writes_made_after_it_subscribed(store):
    heard = []
    with store.transaction():
        before = store.tasks.create("before subscribing")
        store.subscribe("tasks", heard.append)
        after = store.tasks.create("after subscribing")
    assert [[c.id for c in batch] for batch in heard] == [[after.id]]
    assert store.tasks.get(before.id).title == "before subscribing"
