"""Memory records: add, upsert by context key, get, update, deactivate, delete, list; access counts."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest

from syncstore.errors import NotFoundError, ValidationError
from syncstore.memory import MemoryRecord


def test_add_fills_defaults_and_embeds_with_the_default_embedder(store):
    memory = store.memory.add("agent-1", "The deploy needs VPN access", memory_type="learned_pattern", tags=["ops", "ops", "deploy"])
    assert isinstance(memory, MemoryRecord)
    assert memory.agent_id == "agent-1" and memory.importance == 5 and memory.is_active
    assert memory.tags == ["deploy", "ops"]
    assert memory.embedding_model == store.memory.embedder.model
    vector = store.memory.embedding(memory.id)
    assert vector.shape == (memory.embedding_dimensions,)
    assert abs(float(np.linalg.norm(vector)) - 1.0) < 1e-5


def test_add_with_a_used_context_key_rewrites_that_memory(store):
    first = store.memory.add("agent-1", "User likes dark mode", memory_type="user_preference", context_key="theme")
    store.memory.deactivate(first.id)
    second = store.memory.add("agent-1", "User likes light mode", memory_type="user_preference", context_key="theme", importance=8)
    other_agent = store.memory.add("agent-2", "User likes blue", memory_type="user_preference", context_key="theme")
    assert second.id == first.id and second.content == "User likes light mode" and second.importance == 8
    assert second.is_active  # re-adding makes it current again
    assert other_agent.id != first.id  # the key is per agent
    assert store.memory.count() == 2


def test_update_reembeds_new_content_and_rejects_unknown_fields(store):
    memory = store.memory.add("a", "alpha beta gamma")
    before = store.memory.embedding(memory.id)
    updated = store.memory.update(memory.id, content="completely different words", importance=9)
    assert updated.importance == 9
    assert not np.allclose(before, store.memory.embedding(memory.id))
    with pytest.raises(ValidationError):
        store.memory.update(memory.id, access_count=100)
    with pytest.raises(ValidationError):
        store.memory.update(memory.id, importance=11)


def test_bad_values_are_refused_before_anything_is_written(store):
    for bad in (dict(memory_type="diary"), dict(importance=0), dict(tags=[1, 2])):
        with pytest.raises(ValidationError):
            store.memory.add("a", "text", **bad)
    with pytest.raises(ValidationError):
        store.memory.add("a", "   ")
    assert store.memory.count() == 0 and store.last_seq() == 0


def test_deactivate_hides_from_list_and_delete_leaves_a_tombstone(store):
    kept = store.memory.add("a", "kept")
    hidden = store.memory.add("a", "hidden")
    gone = store.memory.add("a", "gone")
    store.memory.deactivate(hidden.id)
    store.memory.delete(gone.id)
    assert [m.id for m in store.memory.list(agent_id="a")] == [kept.id]
    assert {m.id for m in store.memory.list(agent_id="a", include_inactive=True)} == {kept.id, hidden.id}
    assert store.tombstone("agent_memory", gone.id) is not None
    with pytest.raises(NotFoundError):
        store.memory.get(gone.id)


def test_list_filters_by_type_tags_importance_and_expiry(store):
    now = dt.datetime.now(dt.timezone.utc)
    a = store.memory.add("a", "one", memory_type="conversation", tags=["x", "y"], importance=2)
    b = store.memory.add("a", "two", memory_type="knowledge_base", tags=["x"], importance=7)
    store.memory.add("a", "three", memory_type="knowledge_base", tags=["x"], importance=9, expires_at=now - dt.timedelta(seconds=1))
    assert [m.id for m in store.memory.list(memory_type="conversation")] == [a.id]
    assert [m.id for m in store.memory.list(tags=["x", "y"])] == [a.id]
    assert [m.id for m in store.memory.list(min_importance=5)] == [b.id]
    assert len(store.memory.list(include_expired=True, min_importance=5)) == 2


def test_reads_are_counted_locally_and_never_logged_for_sync(store):
    memory = store.memory.add("a", "remember the milk")
    logged = store.last_seq()
    store.memory.get(memory.id)
    store.memory.search("milk", k=1)
    store.memory.search("milk", k=1)
    assert store.last_seq() == logged  # no synced write for reads
    record = store.memory.get(memory.id, record_access=False)
    assert record.access_count == 3 and record.last_accessed_at is not None
    assert store.get("agent_memory", memory.id)["access_count"] == 0


def test_flush_folds_local_counts_into_synced_columns_without_touching_updated_at(store):
    memory = store.memory.add("a", "remember the milk")
    store.memory.get(memory.id)
    store.memory.get(memory.id)
    updated_at = store.get("agent_memory", memory.id)["updated_at"]
    logged = store.last_seq()
    assert store.memory.flush_access() == 1
    row = store.get("agent_memory", memory.id)
    assert row["access_count"] == 2 and row["last_accessed_at"] is not None
    assert row["updated_at"] == updated_at
    assert store.last_seq() == logged + 1  # one synced write
    assert store.memory.get(memory.id, record_access=False).access_count == 2  # nothing counted twice
    assert store.memory.flush_access() == 0


def test_flush_skips_memories_deleted_since_they_were_read(store):
    memory = store.memory.add("a", "short lived")
    store.memory.get(memory.id)
    store.memory.delete(memory.id)
    assert store.memory.flush_access() == 0


def test_a_readonly_store_can_search_without_counting(store, replica_path):
    import syncstore

    memory = store.memory.add("a", "read only search works")
    with syncstore.open(replica_path, readonly=True) as reader:
        hits = reader.memory.search("search works", k=1)
        assert [h.memory.id for h in hits] == [memory.id]
        assert reader.memory.get(memory.id).access_count == 0
