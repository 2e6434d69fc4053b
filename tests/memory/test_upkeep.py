"""Expiry sweep and consolidation: ordinary writes that sync."""

from __future__ import annotations

import datetime as dt

import pytest

from syncstore.memory import extractive_summary
from syncstore.memory.summarize import sentences

NOW = dt.datetime.now(dt.timezone.utc)
LATER = NOW + dt.timedelta(days=30)


def test_sweep_deactivates_expired_memories_and_syncs(store, other, ship):
    expired = store.memory.add("a", "old news", expires_at=NOW - dt.timedelta(minutes=1))
    fresh = store.memory.add("a", "still good", expires_at=NOW + dt.timedelta(days=1))
    forever = store.memory.add("a", "no expiry")
    shipped = ship(store, other)
    assert store.memory.sweep(now=NOW) == 1
    assert store.memory.sweep(now=NOW) == 0  # already inactive: nothing more to write
    assert not store.memory.get(expired.id).is_active
    assert store.memory.get(fresh.id).is_active and store.memory.get(forever.id).is_active
    ship(store, other, after=shipped)
    assert other.get("agent_memory", expired.id)["is_active"] == 0


def test_sweep_can_delete_and_limit_to_one_agent(store):
    past = NOW - dt.timedelta(minutes=1)
    mine = store.memory.add("a", "mine", expires_at=past)
    theirs = store.memory.add("b", "theirs", expires_at=past)
    assert store.memory.sweep(now=NOW, delete=True, agent_id="a") == 1
    assert store.tombstone("agent_memory", mine.id) is not None
    assert store.memory.get(theirs.id).is_active


def test_search_skips_expired_memories_before_any_sweep(store):
    store.memory.add("a", "the launch code is blue", expires_at=NOW - dt.timedelta(seconds=1))
    assert store.memory.search("launch code", k=5) == []
    assert len(store.memory.search("launch code", k=5, include_expired=True)) == 1


def _old(store, memory, days=30):
    store.update("agent_memory", memory.id, {"updated_at": NOW - dt.timedelta(days=days)})


def test_consolidate_folds_old_unimportant_memories_into_one_summary(store, other, ship):
    folded = [
        store.memory.add("a", f"Build {n} failed because the cache was stale.", importance=2, tags=["ci", f"b{n}"])
        for n in range(4)
    ]
    important = store.memory.add("a", "Production database password rotates monthly.", importance=9)
    recent = store.memory.add("a", "Today the build passed.", importance=2)
    someone_else = store.memory.add("b", "Unrelated old note.", importance=1)
    for memory in (*folded, important, someone_else):
        _old(store, memory)
    shipped = ship(store, other)

    summary = store.memory.consolidate("a", now=NOW)
    assert summary is not None and summary.memory_type == "context_summary"
    assert summary.agent_id == "a" and summary.importance == 2
    assert set(summary.tags) == {"ci", "b0", "b1", "b2", "b3"}
    assert set(summary.context["consolidated_from"]) == {m.id for m in folded}
    assert "cache was stale" in summary.content
    for memory in folded:
        assert not store.memory.get(memory.id).is_active
    for memory in (important, recent, someone_else):
        assert store.memory.get(memory.id).is_active
    # The summary is searchable, and the whole fold reaches another replica.
    assert store.memory.search("stale cache", k=1)[0].memory.id == summary.id
    ship(store, other, after=shipped)
    assert other.memory.get(summary.id).content == summary.content
    assert all(not other.memory.get(m.id).is_active for m in folded)


def test_consolidate_needs_enough_candidates_and_spares_recently_read_ones(store):
    memories = [store.memory.add("a", f"note {n}", importance=1) for n in range(3)]
    for memory in memories:
        _old(store, memory)
    store.memory.get(memories[0].id)  # read just now: no longer a candidate
    assert store.memory.consolidate("a", now=NOW) is None
    assert store.memory.consolidate("a", now=NOW, min_memories=2) is not None
    assert store.memory.get(memories[0].id).is_active


def test_consolidate_takes_any_summarizer_and_can_delete(store):
    memories = [store.memory.add("a", f"fact number {n}", importance=3) for n in range(3)]
    for memory in memories:
        _old(store, memory)
    seen = []

    def summarizer(records):
        seen.extend(records)
        return "three facts, summarised"

    summary = store.memory.consolidate("a", summarizer=summarizer, delete=True, now=NOW)
    assert summary.content == "three facts, summarised" and summary.metadata == {"summarizer": "summarizer"}
    assert {r.id for r in seen} == {m.id for m in memories}
    assert all(store.tombstone("agent_memory", m.id) for m in memories)
    assert store.memory.consolidate("a", summarizer=lambda records: "   ", now=LATER) is None


def test_summaries_are_not_summarised_again(store):
    for n in range(3):
        _old(store, store.memory.add("a", f"old thing {n}", importance=1))
    summary = store.memory.consolidate("a", now=NOW)
    _old(store, summary, days=60)
    assert store.memory.consolidate("a", now=LATER, min_memories=1) is None


def test_extractive_summary_keeps_central_sentences_oldest_first_without_repeats(store):
    texts = [
        "The deploy failed. The VPN was down.",
        "The deploy failed.",  # a repeat
        "Lunch was pizza.",
        "The deploy failed again because the VPN certificate expired.",
        "The VPN certificate was renewed and the deploy passed.",
    ]
    records = [store.memory.add("a", text, importance=1) for text in texts]
    summary = extractive_summary(records, max_sentences=3)
    lines = summary.splitlines()
    assert len(lines) == 3 and all(line.startswith("- ") for line in lines)
    assert summary.count("The deploy failed.") == 1
    assert "pizza" not in summary  # off-topic: far from the centroid
    assert len(extractive_summary(records).splitlines()) == 5  # all five distinct sentences when they fit
    assert len(extractive_summary(records, max_chars=40)) <= 40
    assert sentences("One. Two!\nThree? four") == ["One.", "Two!", "Three?", "four"]
