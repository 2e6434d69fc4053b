"""Memory search over HTTP on the sync server, on the machine's PostgreSQL
(no pgvector: embeddings are bytea and every search is the exact scan).

Memories are written in real replicas, synced through a real server, and
searched over HTTP; answers are checked against the replica's own search.
"""

from __future__ import annotations

import datetime as dt
import time
import uuid

import httpx
import jwt
import msgspec
import numpy as np
import psycopg
import pytest

import syncstore
from syncstore.errors import AuthError, ValidationError
from syncstore.memory import Filters, Ranking, remote
from syncstore.shared.embedders import HashingEmbedder
from syncstore.memory.remote import encode_vector, search_server

from syncstore_server.http import SEARCH_PATH, HttpSettings
from syncstore_server.memory_query import parse_search

from .conftest import ServerThread
from .helpers import SECRET, token

pytestmark = pytest.mark.postgres

TOPICS = ("deploy", "database", "billing", "login", "search", "backup")
WORDS = ("staging", "vpn", "timeout", "retry", "replica", "invoice", "password", "index", "snapshot", "cache")


@pytest.fixture(scope="module")
def server(shared_database):
    running = ServerThread(shared_database, http=HttpSettings(search_max_k=100)).start()
    try:
        yield running
    finally:
        running.stop()


def tenant_name() -> str:
    return f"t{uuid.uuid4().hex[:10]}"


def fill(store: syncstore.Store) -> dict[str, list[str]]:
    """Memories with every kind of filter value; returns ids by kind."""
    ids: dict[str, list[str]] = {"rare": [], "expired": []}
    now = dt.datetime.now(dt.timezone.utc)
    with store.transaction():
        for i in range(90):
            text = f"{TOPICS[i % 6]} {WORDS[i % 10]} {WORDS[(i * 7) % 10]} note {i}"
            memory = store.memory.add(
                f"agent-{i % 3}",
                text,
                memory_type=("conversation", "knowledge_base", "learned_pattern")[i % 3],
                tags=[f"t{i % 4}", "all"],
                importance=1 + i % 10,
                expires_at=now - dt.timedelta(days=1) if i % 11 == 0 else None,
            )
            if i % 11 == 0:
                ids["expired"].append(memory.id)
        for i in range(5):
            ids["rare"].append(store.memory.add("rare", f"rare {WORDS[i]} memory {i}").id)
        # Another model's rows: never compared with the default model's.
        vectors = np.random.default_rng(7).standard_normal((4, 16)).astype(np.float32)
        for vector in vectors:
            store.memory.add("agent-0", "deploy staging other model", embedding=vector, embedding_model="test-16")
    return ids


def local_ids(store, query: str, **options) -> list[str]:
    return [h.memory.id for h in store.memory.search(query, engine="numpy", record_access=False, **options)]


def assert_same_ranking(store, server, tok: str, query: str, **options) -> None:
    """The server ranks as the replica does: the same score at every position
    and the same memories, up to ties within float32 rounding (two texts of
    the same shape can score equal to the last bit in one engine and not in
    the other)."""
    local = store.memory.search(query, engine="numpy", record_access=False, **options)
    if "ranking" in options:
        options["ranking"] = "similarity" if options["ranking"] == Ranking.SIMILARITY else "default"
    remote = search_server(server.ws_url, token=tok, query=query, **options).hits
    assert [h.score for h in remote] == pytest.approx([h.score for h in local], abs=1e-5), (query, options)
    if remote:
        last = remote[-1].score
        clear = lambda ids_scores: {i for i, score in ids_scores if score > last + 1e-5}  # noqa: E731
        assert clear((h.id, h.score) for h in remote) == clear((h.memory.id, h.score) for h in local)
        assert {h.id for h in remote} - {h.memory.id for h in local} <= {
            h.id for h in remote if abs(h.score - last) <= 1e-5
        }


def remote_ids(server, tok: str, query: str, **options) -> list[str]:
    return [h.id for h in search_server(server.ws_url, token=tok, query=query, **options).hits]


FILTERS = (
    dict(k=10),
    dict(k=7, agent_id="agent-1", min_importance=6),
    dict(k=5, tags=["t2", "all"], memory_type=["conversation", "learned_pattern"]),
    dict(k=20, include_expired=True),
    dict(k=50, include_expired=True, include_inactive=True),
)


def test_search_answers_as_the_replica_does_for_synced_memories(server, tmp_path):
    tenant = tenant_name()
    tok = token(tenant)
    with syncstore.open(str(tmp_path / "a.db")) as store:
        ids = fill(store)
        store.sync(server.ws_url, token=tok)
        for query in ("deploy to staging over the vpn", "invoice retry", "rare memory", "password cache timeout"):
            for options in FILTERS:
                assert_same_ranking(store, server, tok, query, **options)
                assert_same_ranking(store, server, tok, query, ranking=Ranking.SIMILARITY, **options)
        # No shortfall: the rare agent's five rows, whatever the query.
        assert sorted(remote_ids(server, tok, "deploy", k=10, agent_id="rare")) == sorted(ids["rare"])
        # Expired rows only when asked for.
        assert not set(remote_ids(server, tok, "note", k=50)) & set(ids["expired"])
        assert set(ids["expired"]) <= set(remote_ids(server, tok, "note", k=100, include_expired=True))

        # A vector made by the caller, with its model: the same answer as the text.
        vector = store.memory.embedder.embed_one("deploy to staging")
        by_vector = search_server(server.http_url, token=tok, vector=vector, model=store.memory.embedder.model, k=8)
        assert [h.id for h in by_vector.hits] == remote_ids(server, tok, "deploy to staging", k=8)
        assert by_vector.strategy == "scan" and by_vector.dimensions == vector.size
        hit = by_vector.hits[0]
        assert set(hit.memory) >= {"agent_id", "memory_type", "content", "tags", "importance", "created_at"}
        assert "embedding" not in hit.memory and hit.memory["created_at"].endswith("Z")
        assert isinstance(hit.memory["tags"], list)

        # The other model's rows are searched by their own model only.
        other = search_server(server.http_url, token=tok, vector=np.ones(16), model="test-16", k=10)
        assert len(other.hits) == 4 and {h.memory["content"] for h in other.hits} == {"deploy staging other model"}


def test_deleted_and_deactivated_memories_leave_the_results(server, tmp_path):
    tenant = tenant_name()
    tok = token(tenant)
    with syncstore.open(str(tmp_path / "a.db")) as store:
        fill(store)
        target = store.memory.add("agent-0", "kubernetes ingress certificate renewal", importance=9)
        gone = store.memory.add("agent-0", "kubernetes ingress certificate rotation", importance=9)
        store.sync(server.ws_url, token=tok)
        assert {target.id, gone.id} <= set(remote_ids(server, tok, "kubernetes ingress certificate", k=3))
        store.memory.delete(gone.id)
        store.memory.deactivate(target.id)
        store.sync(server.ws_url, token=tok)
        found = remote_ids(server, tok, "kubernetes ingress certificate", k=50)
        assert gone.id not in found and target.id not in found
        assert len(found) == 50  # still k results: filtering never makes a shortfall
        # A deleted row stays a tombstone on the server, and is never a result.
        assert target.id in remote_ids(server, tok, "kubernetes ingress certificate", k=3, include_inactive=True)
        assert gone.id not in remote_ids(server, tok, "kubernetes ingress certificate", k=50, include_inactive=True)
        with psycopg.connect(server.server.database_url) as conn:
            deleted = conn.execute(
                "select _deleted from syncstore.agent_memory where tenant = %s and id = %s", (tenant, gone.id)
            ).fetchone()
        assert deleted == (True,)


def test_a_tenant_sees_only_its_own_memories(server, tmp_path):
    first, second = tenant_name(), tenant_name()
    with syncstore.open(str(tmp_path / "a.db")) as a, syncstore.open(str(tmp_path / "b.db")) as b:
        mine = [a.memory.add("agent", f"alpha secret plan {i}").id for i in range(3)]
        theirs = [b.memory.add("agent", f"beta unrelated note {i}").id for i in range(3)]
        a.sync(server.ws_url, token=token(first))
        b.sync(server.ws_url, token=token(second))
    assert sorted(remote_ids(server, token(first), "alpha secret plan", k=10)) == sorted(mine)
    assert sorted(remote_ids(server, token(second), "alpha secret plan", k=10)) == sorted(theirs)
    # A read-only token searches too; the tenant comes from the token, never the URL.
    assert sorted(remote_ids(server, token(first, scopes=["read"]), "plan", k=10)) == sorted(mine)
    response = httpx.get(
        server.http_url + SEARCH_PATH,
        params={"query": "plan", "tenant": second},
        headers={"Authorization": f"Bearer {token(first)}"},
    )
    assert response.status_code == 400 and response.json()["field"] == "tenant"


def get(server, params, tok: str | None = None, **kw):
    headers = {} if tok is None else {"Authorization": f"Bearer {tok}"}
    return httpx.request(kw.pop("method", "GET"), server.http_url + SEARCH_PATH, params=params, headers=headers, **kw)


def database_state(url: str) -> tuple:
    with psycopg.connect(url) as conn:
        return conn.execute(
            "select (select count(*) from syncstore.agent_memory), (select count(*) from syncstore.change_log), "
            "(select count(*) from pg_indexes where schemaname = 'syncstore'), "
            "(select count(*) from syncstore.rejections), (select count(*) from syncstore.site_acks)"
        ).fetchone()


def test_the_server_reads_the_filters_the_client_sends():
    """The client encodes checked Filters; the server's parsing checks them with
    the same Filters.make and gets them back whole (but for ``now``, its own)."""
    sent = Filters.make(
        agent_id="planner",
        memory_type=["conversation", "learned_pattern", "conversation"],
        tags=["b", "a", "b"],
        min_importance=-3,
        include_expired=True,
    )
    request = parse_search(str(httpx.QueryParams([("query", "deploy"), *remote._filter_params(sent)])))
    without_now = dict(now=0.0, now_iso="")
    assert msgspec.structs.replace(request.filters, **without_now) == msgspec.structs.replace(sent, **without_now)
    assert request.filters.memory_types == ("conversation", "learned_pattern") and request.filters.tags == ("b", "a")
    assert request.ranking == Ranking() and parse_search("query=x&ranking=similarity").ranking == Ranking.SIMILARITY


def test_bad_requests_get_clear_errors_and_change_nothing(server, tmp_path):
    tenant = tenant_name()
    tok = token(tenant)
    with syncstore.open(str(tmp_path / "a.db")) as store:
        store.memory.add("agent", "deploy notes for staging")
        model = store.memory.embedder.model
        store.sync(server.ws_url, token=tok)
    before = database_state(server.server.database_url)
    metrics_before = httpx.get(server.http_url + "/metrics").text

    # Tokens: none, forged, expired, without a scope that reads.
    assert get(server, {"query": "deploy"}).status_code == 401
    assert get(server, {"query": "deploy"}, tok="not-a-jwt").status_code == 401
    forged = jwt.encode({"iss": "syncstore", "tenant": tenant, "scopes": ["sync"], "iat": int(time.time())}, "x" * 40)
    response = get(server, {"query": "deploy"}, tok=forged)
    assert response.status_code == 401 and "signature" in response.json()["message"]
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    expired = token(tenant, ttl_s=1, now=time.time() - 60)
    assert "expired" in get(server, {"query": "deploy"}, tok=expired).json()["message"]
    no_scope = jwt.encode(
        {"iss": "syncstore", "tenant": tenant, "scopes": ["billing"], "iat": int(time.time())}, SECRET.reveal()
    )
    assert get(server, {"query": "deploy"}, tok=no_scope).status_code == 403
    assert tok not in get(server, {"query": "deploy"}, tok=tok + "x").text

    # Bodies: each names the field at fault.
    dims = HashingEmbedder().dimensions
    cases = {
        "query": {},
        "k": {"query": "deploy", "k": "ten"},
        "memory_type": {"query": "deploy", "memory_type": "diary"},
        "min_importance": {"query": "deploy", "min_importance": "high"},
        "include_expired": {"query": "deploy", "include_expired": "maybe"},
        "ranking": {"query": "deploy", "ranking": "loudest"},
        "token": {"query": "deploy", "token": tok},
        "vector": {"vector": "%%%", "model": model},
    }
    for field, params in cases.items():
        response = get(server, params, tok=tok)
        assert response.status_code == 400, (field, response.text)
        assert response.json()["field"] == field, response.json()
        assert tok not in response.text
    assert get(server, {"query": "deploy", "k": "101"}, tok=tok).json()["field"] == "k"  # over search_max_k
    both = get(server, {"query": "deploy", "vector": encode_vector(np.ones(dims)), "model": model}, tok=tok)
    assert both.status_code == 400 and both.json()["field"] == "query"

    # Models: unknown to the tenant, not embeddable as text, or of other dimensions.
    with pytest.raises(ValidationError) as unknown:
        search_server(server.http_url, token=tok, vector=np.ones(8), model="no-such-model")
    assert unknown.value.field == "model" and "no-such-model" in str(unknown.value)
    with pytest.raises(ValidationError) as not_text:
        search_server(server.http_url, token=tok, query="deploy", model="text-embedding-3-small")
    assert not_text.value.field == "model"
    with pytest.raises(ValidationError) as wrong_size:
        search_server(server.http_url, token=tok, vector=np.ones(dims + 1), model=model)
    assert wrong_size.value.field == "vector" and str(dims) in str(wrong_size.value)
    with pytest.raises(ValidationError) as zero:
        search_server(server.http_url, token=tok, vector=np.zeros(dims), model=model)
    assert zero.value.field == "vector"
    with pytest.raises(AuthError):
        search_server(server.http_url, token="forged")
    assert get(server, {"query": "deploy"}, tok=tok, method="DELETE").status_code == 405

    assert database_state(server.server.database_url) == before
    metrics_after = httpx.get(server.http_url + "/metrics").text
    assert 'syncstore_memory_searches_total{outcome="bad_request"}' in metrics_after
    assert 'syncstore_memory_searches_total{outcome="unauthorized"}' in metrics_after
    assert metrics_before != metrics_after
    # And a good request still works after all that.
    assert len(search_server(server.http_url, token=tok, query="deploy").hits) == 1


def test_the_cli_searches_the_server_without_a_replica(server, tmp_path):
    import json

    from click.testing import CliRunner

    from syncstore.cli.main import cli

    tenant = tenant_name()
    tok = token(tenant)
    with syncstore.open(str(tmp_path / "a.db")) as store:
        ids = fill(store)
        store.sync(server.ws_url, token=tok)
    elsewhere = tmp_path / "never-made.db"
    args = ["--db", str(elsewhere), "memory", "search", "deploy", "--agent", "rare", "-k", "10", "--server", server.ws_url, "--json"]
    result = CliRunner().invoke(cli, args, env={"SYNCSTORE_TOKEN": tok})
    assert result.exit_code == 0, result.output
    found = json.loads(result.output)
    assert sorted(hit["id"] for hit in found["hits"]) == sorted(ids["rare"])
    assert not elsewhere.exists()  # a server search opens no replica
    refused = CliRunner().invoke(cli, args[:-1], env={"SYNCSTORE_TOKEN": "forged"})
    assert refused.exit_code == 1 and refused.output.count("\n") == 1
    assert "forged" not in refused.output
