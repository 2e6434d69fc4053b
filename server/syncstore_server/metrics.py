"""The server's Prometheus metrics, in a registry of its own (one per server)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

CONTENT_TYPE = CONTENT_TYPE_LATEST


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.connected = Gauge("syncstore_connected_clients", "Open sync connections", registry=r)
        self.changes_merged = Counter("syncstore_changes_merged", "Row changes merged into PostgreSQL", registry=r)
        self.pushes = Counter("syncstore_pushes", "Pushes merged", registry=r)
        self.merge_seconds = Histogram(
            "syncstore_merge_seconds",
            "Time to merge one push, including the commit",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
            registry=r,
        )
        self.conflicts = Counter("syncstore_conflicts", "Conflict records made", registry=r)
        self.rejected = Counter("syncstore_rejected_transactions", "Pushed transactions refused for good", registry=r)
        self.errors = Counter("syncstore_protocol_errors", "Error messages sent to clients", ["code"], registry=r)
        self.log_position = Gauge("syncstore_log_position", "The newest change log position", registry=r)
        self.log_entries = Gauge("syncstore_log_entries", "Change log entries (estimated)", registry=r)
        # Memory search over HTTP: outcome is the strategy that answered, or the error.
        self.memory_searches = Counter(
            "syncstore_memory_searches", "Memory searches answered, by outcome", ["outcome"], registry=r
        )
        self.memory_search_seconds = Histogram(
            "syncstore_memory_search_seconds",
            "Time to answer one memory search",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
            registry=r,
        )
        self.fleet_refresh_failures = Counter(
            "syncstore_fleet_refresh_failures",
            "Fleet figures that could not be read (the last ones are served)",
            registry=r,
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)
