"""Invariant 1 against the real server: any schedule converges, and equals PostgreSQL.

Two to four replicas make random inserts, updates of random columns and
deletes, and sync on random schedules through a real server into a real
PostgreSQL: clean rounds, rounds whose pushes are sent twice, rounds whose
incoming messages are duplicated or whose transactions arrive shuffled, and
rounds cut off after a few messages (a dropped connection, then a reconnect).
At the end everyone syncs cleanly, and every replica holds exactly the rows
PostgreSQL holds, every local change is acknowledged, and every replica has
every conflict record of its tenant.
"""

from __future__ import annotations

import random
import tempfile
import uuid
from collections import deque
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import syncstore
from syncstore.core import protocol as p
from syncstore.errors import SyncError
from syncstore.sync.transport import Closed, Received, Transport

from .conftest import replica_rows, server_acked, server_rows

pytestmark = pytest.mark.postgres


class ChaosTransport(Transport):
    """A real websocket that misbehaves as told: pushes sent twice, incoming
    Changes and Acks delivered twice, transactions of a Changes shuffled, and
    the connection cut after ``cut`` incoming messages."""

    def __init__(self, url: str, *, duplicate: bool, shuffle: bool, cut: int | None, rng: random.Random, **kw: Any):
        super().__init__(url, **kw)
        self._duplicate = duplicate
        self._shuffle = shuffle
        self._cut = cut
        self._rng = rng
        self._seen = 0
        self._again: deque[Any] = deque()

    def send(self, message: p.Message) -> None:
        super().send(message)
        if self._duplicate and isinstance(message, p.Push):
            super().send(message)

    def get(self, timeout: float | None) -> Any:
        if self._again:
            return self._again.popleft()
        if self._cut is not None and self._seen >= self._cut:
            return Closed(SyncError("cut by the test"))
        item = super().get(timeout)
        if isinstance(item, Received):
            self._seen += 1
            message = item.message
            if self._shuffle and isinstance(message, p.Changes):
                txs = list(message.txs)
                self._rng.shuffle(txs)
                item = Received(p.Changes(txs=txs))
            if self._duplicate and isinstance(message, (p.Changes, p.Ack)):
                self._again.append(item)
        return item


TITLES = st.sampled_from(["plan", "build", "ship", "fix", "write docs"])
FIELDS = {
    "title": TITLES,
    "description": st.sampled_from(["", "short", "a longer description"]),
    "status": st.sampled_from(["pending", "in_progress", "completed"]),
    "priority": st.sampled_from(["low", "medium", "high"]),
    "branch": st.sampled_from(["main", "dev"]),
    "is_archived": st.booleans(),
    "metadata": st.sampled_from([{}, {"k": 1}, {"k": [1, 2]}]),
}
pick = st.integers(0, 1000)
operation = st.one_of(
    st.tuples(st.just("insert"), TITLES, st.integers(1, 2)),
    st.tuples(st.just("update"), pick, st.fixed_dictionaries({}, optional=FIELDS).filter(bool)),
    st.tuples(st.just("delete"), pick),
)
# Each step: one replica makes a few local writes (maybe none), then syncs in some manner.
steps = st.lists(
    st.tuples(
        st.integers(0, 3),
        st.lists(operation, max_size=3),
        st.sampled_from(["clean", "duplicate", "shuffle", "cut", "offline"]),
        st.integers(1, 6),
    ),
    min_size=3,
    max_size=12,
)


def live_ids(store: syncstore.Store) -> list[str]:
    return [row["id"] for row in store.query("select id from tasks order by id")]


@settings(suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(n=st.integers(2, 4), schedule=steps, seed=st.integers(0, 2**32 - 1))
def test_any_schedule_converges_to_postgres(sync_server, n, schedule, seed):
    rng = random.Random(seed)
    tenant = f"conv{uuid.uuid4().hex[:12]}"
    token = sync_server.token(tenant)
    url = sync_server.url
    with tempfile.TemporaryDirectory() as folder:
        stores = [syncstore.open(f"{folder}/r{i}.db") for i in range(n)]
        try:
            for who, operations, mode, cut in schedule:
                store = stores[who % n]
                for op in operations:
                    ids = live_ids(store)
                    if op[0] == "insert":
                        with store.transaction():  # one or two rows in one local transaction
                            for i in range(op[2]):
                                store.tasks.create(f"{op[1]} {i}")
                    elif op[0] == "update" and ids:
                        store.tasks.update(ids[op[1] % len(ids)], **op[2])
                    elif op[0] == "delete" and ids:
                        store.tasks.delete(ids[op[1] % len(ids)])
                if mode == "offline":
                    continue
                factory = lambda url, **kw: ChaosTransport(  # noqa: E731
                    url,
                    duplicate=mode == "duplicate",
                    shuffle=mode == "shuffle",
                    cut=cut if mode == "cut" else None,
                    rng=rng,
                    **kw,
                )
                try:
                    store.sync(url, token=token, timeout=30, max_in_flight=2, max_batch=2, transport_factory=factory)
                except SyncError:
                    assert mode == "cut"  # only a cut connection may fail a round

            for _ in range(2):  # the first pass pushes everything, the second pulls it everywhere
                for store in stores:
                    store.sync(url, token=token, timeout=30)

            expected = server_rows(sync_server.database_url, tenant)
            with psycopg.connect(sync_server.database_url) as conn:
                conflict_ids = {str(r[0]) for r in conn.execute("select id from syncstore.conflicts where tenant = %s", (tenant,))}
            for store in stores:
                assert replica_rows(store) == expected
                status = store.sync_status()
                assert status.pending_changes == 0 and status.acked_seq == status.last_seq
                assert server_acked(sync_server.database_url, tenant, store.site_id) == status.last_seq
                local = {row["id"] for row in store.query("select id from _ss_conflicts")}
                assert local == conflict_ids
        finally:
            for store in stores:
                store.close()
