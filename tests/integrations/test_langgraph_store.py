"""SyncstoreStore beyond LangGraph's own store tests: syncing, TTL, embedders, bad input."""

from __future__ import annotations

import datetime as dt
import time

import numpy as np
import pytest
from langgraph.store.base import GetOp, PutOp, SearchOp

from syncstore import schema
from syncstore.errors import ValidationError
from syncstore.integrations.langgraph import SyncstoreStore, keys
from syncstore.integrations.langgraph import namespaces as stored_namespaces
from syncstore.memory import Embedder, HashingEmbedder

TABLE = "langgraph_store"


class CountingEmbedder(Embedder):
    """A syncstore embedder that counts the texts it embeds."""

    def __init__(self) -> None:
        self.inner = HashingEmbedder(dimensions=64)
        self.model, self.dimensions = self.inner.model, 64
        self.texts: list[str] = []

    def embed(self, texts):
        self.texts.extend(texts)
        return self.inner.embed(texts)


def row_id(namespace, key):
    return keys.item_id(stored_namespaces.encode(namespace), key)


def test_without_an_embedder_search_is_semantic_offline_with_the_hashing_embedder(replicas):
    memory = SyncstoreStore(replicas(), index={"fields": ["text"]})
    memory.put(("docs",), "deploy", {"text": "deployments fail when the cache is cold"})
    memory.put(("docs",), "lunch", {"text": "the canteen serves soup on fridays"})
    memory.put(("docs",), "plain", {"text": "not indexed"}, index=False)
    hits = memory.search(("docs",), query="why did the deployment fail?")
    assert [h.key for h in hits] == ["deploy", "lunch", "plain"]
    assert hits[0].score > hits[1].score and hits[2].score is None


@pytest.mark.postgres
def test_items_vectors_and_deletes_sync_and_the_other_replica_does_not_embed_again(
    replicas, sync_server, tenant
):
    url, token = sync_server.url, sync_server.token(tenant)
    on_a, on_b = CountingEmbedder(), CountingEmbedder()
    a = SyncstoreStore(replicas("a"), index={"embed": on_a, "fields": ["text"]})
    b = SyncstoreStore(replicas("b"), index={"embed": on_b, "fields": ["text"]})
    a.put(("users", "alice"), "prefs", {"text": "likes short answers", "lang": "en"})
    a.put(("users", "alice"), "old", {"text": "to be forgotten"})
    a.store.sync(url, token=token)
    b.store.sync(url, token=token)
    hits = b.search(("users",), query="short answers please", filter={"lang": "en"})
    assert [(h.namespace, h.key) for h in hits] == [(("users", "alice"), "prefs")] and hits[0].score > 0
    assert on_b.texts == ["short answers please"]  # only the query: the item's vector came with it
    b.delete(("users", "alice"), "old")
    b.store.sync(url, token=token)
    a.store.sync(url, token=token)
    assert a.get(("users", "alice"), "old") is None
    assert a.list_namespaces() == b.list_namespaces() == [("users", "alice")]


@pytest.mark.postgres
def test_a_key_written_on_two_replicas_is_one_item_and_the_last_write_wins(replicas, sync_server, tenant):
    url, token = sync_server.url, sync_server.token(tenant)
    a, b = SyncstoreStore(replicas("a")), SyncstoreStore(replicas("b"))
    a.put(("prefs",), "theme", {"value": "dark"})
    time.sleep(0.005)  # a later millisecond: two writes in one tie on the clock, and the site decides
    b.put(("prefs",), "theme", {"value": "light"})  # later, offline
    for store in (a, b, a):
        store.store.sync(url, token=token)
    assert a.get(("prefs",), "theme").value == b.get(("prefs",), "theme").value == {"value": "light"}
    assert a.store.count(TABLE) == b.store.count(TABLE) == 1


def test_ttl_sets_expiry_reads_refresh_it_and_the_sweep_deletes_expired_items(replicas):
    memory = SyncstoreStore(replicas(), ttl={"default_ttl": 10, "refresh_on_read": True})
    memory.put(("s",), "short", {"v": 1}, ttl=1)
    memory.put(("s",), "default", {"v": 2})
    memory.put(("s",), "forever", {"v": 3}, ttl=None)
    rows = {r["key"]: r for r in memory.store.rows(TABLE)}
    now = dt.datetime.now(dt.timezone.utc)
    assert rows["forever"]["expires_at"] is None
    assert now < schema.parse_timestamp(rows["short"]["expires_at"]) <= now + dt.timedelta(minutes=1)
    assert now + dt.timedelta(minutes=9) < schema.parse_timestamp(rows["default"]["expires_at"])

    past = now - dt.timedelta(seconds=1)
    memory.store.update(TABLE, row_id(("s",), "short"), {"expires_at": past}, touch=False)
    memory.store.update(TABLE, row_id(("s",), "default"), {"expires_at": past}, touch=False)
    assert memory.get(("s",), "default") is not None  # read, and so refreshed
    assert memory.get(("s",), "short", refresh_ttl=False) is not None  # expired, unswept, not omitted
    assert memory.sweep_ttl() == 1
    assert [i.key for i in memory.search(("s",))] == ["forever", "default"]


def test_bad_operations_are_refused_before_anything_is_written(replicas):
    memory = SyncstoreStore(replicas())
    with pytest.raises(ValidationError):
        memory.batch([PutOp(("a",), "ok", {"v": 1}), PutOp(("a",), "bad", ["not", "a", "dict"])])
    with pytest.raises(ValidationError, match="operator"):
        memory.batch([PutOp(("a",), "ok", {"v": 1}), SearchOp(("a",), filter={"v": {"$like": 1}})])
    with pytest.raises(ValidationError):
        memory.batch([PutOp(("a",), "ok", {"v": 1}), PutOp(("a",), "nul", {"v": "\x00"})])
    with pytest.raises(ValidationError, match="ttl"):
        memory.batch([PutOp(("a",), "ok", {"v": 1}, ttl=-5)])
    assert memory.store.count(TABLE) == 0 and memory.store.last_seq() == 0


def test_a_batch_reads_before_it_writes_and_writes_in_one_transaction(replicas):
    memory = SyncstoreStore(replicas())
    memory.put(("a",), "k", {"v": 1})
    before = memory.store.last_seq()
    got, _, _ = memory.batch([GetOp(("a",), "k"), PutOp(("a",), "k", {"v": 2}), PutOp(("a",), "j", {"v": 3})])
    assert got.value == {"v": 1}
    logged = memory.store.changes(after=before)
    assert len(logged) == 2 and len({c.tx for c in logged}) == 1


def test_items_embedded_in_another_vector_space_have_no_score(replicas):
    store = replicas()
    wide = SyncstoreStore(store, index={"embed": HashingEmbedder(dimensions=128), "fields": ["text"]})
    wide.put(("d",), "wide", {"text": "cold cache deploys"})
    narrow = SyncstoreStore(store, index={"embed": HashingEmbedder(dimensions=32), "fields": ["text"]})
    narrow.put(("d",), "narrow", {"text": "cold cache deploys"})
    hits = {h.key: h.score for h in narrow.search(("d",), query="cold cache")}
    assert hits["wide"] is None and hits["narrow"] > 0.5
    stored = np.frombuffer(store.get(TABLE, row_id(("d",), "narrow"))["embeddings"], dtype=np.float32)
    assert stored.size == 32 and abs(float(np.linalg.norm(stored)) - 1) < 1e-5
