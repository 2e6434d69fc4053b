"""Environments: CRUD, filters, validation, and at most one active environment per owner."""

from __future__ import annotations

import pytest

from syncstore import Environment
from syncstore.errors import NotFoundError, ValidationError

MISSING = "01a215e4-e4c7-7804-a2c7-00000000dead"


class Boom(Exception):
    pass


def active_names(store, user_id=None):
    rows = store.query("select name from environments where user_id is ? and is_active = 1", (user_id,))
    return sorted(row["name"] for row in rows)


def test_crud(store):
    env = store.environments.create("dev", github_organization="octo", github_repository="octo/app", config={"node": 22})
    assert isinstance(env, Environment)
    assert (env.name, env.github_repository, env.config, env.is_active, env.schema_version) == (
        "dev", "octo/app", {"node": 22}, False, 1)
    assert store.environments.get(env.id) == env
    changed = store.environments.update(env.id, description="the dev box", config={"node": 24})
    assert changed.description == "the dev box" and changed.config == {"node": 24}
    store.environments.delete(env.id)
    assert store.environments.find(env.id) is None
    with pytest.raises(NotFoundError):
        store.environments.get(env.id)


def test_list_filters_and_pages(store):
    for n in range(7):
        store.environments.create(f"env {n}", user_id="ann" if n % 2 else "bob")
    assert {e.name for e in store.environments.list(user_id="ann")} == {"env 1", "env 3", "env 5"}
    first, second = store.environments.list(limit=4), store.environments.list(limit=4, offset=4)
    assert [e.name for e in first + second] == [f"env {n}" for n in range(7)]


@pytest.mark.parametrize(
    "name, kwargs, field, problem",
    [
        ("", {}, "name", "must not be empty"),
        ("dev", {"config": "not json"}, "config", "not valid JSON"),
        ("dev", {"config": [1]}, "config", "expected a JSON object"),
        ("dev", {"schema_version": 0}, "schema_version", "below the minimum 1"),
        ("dev", {"is_active": "maybe"}, "is_active", "expected a boolean"),
        ("dev", {"github_token": "ghp_secret"}, "github_token", "unknown column"),
    ],
)
def test_validation_errors_name_the_field_and_the_problem(store, name, kwargs, field, problem):
    with pytest.raises(ValidationError, match=problem) as caught:
        store.environments.create(name, **kwargs)
    assert caught.value.field == field
    assert store.environments.count() == 0


def test_activation_keeps_one_active_environment_per_owner(store):
    a = store.environments.create("a", user_id="ann")
    b = store.environments.create("b", user_id="ann")
    c = store.environments.create("c", user_id="bob")
    store.environments.activate(a.id)
    store.environments.activate(c.id)
    assert active_names(store, "ann") == ["a"] and active_names(store, "bob") == ["c"]
    assert store.environments.activate(b.id).is_active
    assert active_names(store, "ann") == ["b"] and active_names(store, "bob") == ["c"]
    assert store.environments.active(user_id="ann").id == b.id
    store.environments.activate(b.id)  # again: no change, still one
    assert active_names(store, "ann") == ["b"]
    store.environments.deactivate(b.id)
    assert store.environments.active(user_id="ann") is None


def test_environments_without_an_owner_are_one_owner(store):
    x = store.environments.create("x")
    y = store.environments.create("y")
    store.environments.activate(x.id)
    store.environments.activate(y.id)
    assert active_names(store) == ["y"]
    assert store.environments.active().id == y.id


def test_every_way_of_making_one_active_keeps_the_rule(store):
    first = store.environments.create("first", user_id="ann", is_active=True)
    second = store.environments.create("second", user_id="ann", is_active=True)  # on create
    assert active_names(store, "ann") == ["second"]
    store.environments.update(first.id, is_active=True)  # through update
    assert active_names(store, "ann") == ["first"]
    moved = store.environments.create("moved", user_id="bob", is_active=True)
    store.environments.update(moved.id, user_id="ann")  # an active one changes owner
    assert active_names(store, "ann") == ["moved"]
    assert not store.environments.get(second.id).is_active


def test_activation_is_one_transaction_and_one_notification(store):
    a = store.environments.create("a", user_id="ann", is_active=True)
    b = store.environments.create("b", user_id="ann")
    heard = []
    store.subscribe("environments", heard.append)
    store.environments.activate(b.id)
    assert len(heard) == 1
    assert {(c.id, c.op) for c in heard[0]} == {(a.id, "update"), (b.id, "update")}
    entries = store.changes()[-2:]
    assert entries[0].tx == entries[1].tx


def test_a_failed_activation_changes_nothing_and_notifies_nobody(store):
    a = store.environments.create("a", user_id="ann", is_active=True)
    heard = []
    store.subscribe("environments", heard.append)
    with pytest.raises(NotFoundError):
        store.environments.activate(MISSING)
    with pytest.raises(Boom):
        with store.transaction():
            b = store.environments.create("b", user_id="ann")
            store.environments.activate(b.id)
            raise Boom
    assert heard == []
    assert active_names(store, "ann") == ["a"] and store.environments.count() == 1
    assert store.environments.get(a.id).is_active
