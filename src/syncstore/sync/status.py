"""Sync status: what a person or a program asks of a replica that syncs."""

from __future__ import annotations

import msgspec

from syncstore import schema
from syncstore.core import hlc, versions
from syncstore.replica.store import Replica
from syncstore.sync import state as st


class SyncStatus(msgspec.Struct, frozen=True, kw_only=True):
    running: bool  # a background sync of this store runs in this process
    connected: bool  # ... and holds an open, welcomed connection now
    tenant: str | None
    last_seq: int  # the last local change written
    acked_seq: int  # the last local change the server has durably merged
    pending_changes: int  # local changes not yet acknowledged (the offline queue)
    cursor: int  # the last server log position applied here
    last_error: str | None
    last_error_at: str | None
    last_connected_at: str | None
    last_synced_at: str | None  # when this replica last caught up with the server
    rejected: int  # local transactions the server refused (see `syncstore sync rejected`)
    open_conflicts: int  # conflict records not yet resolved here
    pending_resolutions: int = 0  # conflicts resolved here the server has not been told of
    # How far this replica's clock runs ahead of the sync server's time, when
    # more than the server accepts (0 otherwise): local writes are refused and
    # pending changes wait (see `syncstore sync restamp`).
    clock_ahead_ms: int = 0
    max_drift_ms: int = 0  # what the server accepts (known while clock_ahead_ms is set)
    stopped: str | None = None  # why the background sync stopped for good, and what to do
    stopped_at: str | None = None
    reverting: int = 0  # refused transactions whose rows are not yet back to the server's state
    synced_schema: int = 0  # the version of the synced tables this library knows
    server_schema: int | None = None  # ... and the last server met (None: never met)
    held_changes: int = 0  # local changes kept back from an older server (see schema_notice)
    schema_notice: str | None = None  # one line on what an older server cannot take
    skipped_rows: int = 0  # server rows a snapshot sent that this replica could not take (_ss_sync_skipped)
    rekeyed: str | None = None  # when and why this file last took a new site id (it was a copy)

    @property
    def pending(self) -> int:
        """Everything the server has still to hear of: changes and resolutions."""
        return self.pending_changes + self.pending_resolutions


def read_status(
    replica: Replica, *, running: bool = False, connected: bool = False, stopped: str | None = None
) -> SyncStatus:
    """The status kept in ``replica``; ``stopped`` is the in-process reason a
    background sync stopped, when the file could not record it."""
    state = st.SyncState(replica)
    conn = replica.connection
    meta = replica.meta_get
    ahead, cap = 0, 0
    server = state.server_time
    if server is not None:
        ahead = (replica.last_stamp() >> hlc.COUNTER_BITS) - server.now(hlc.wall_ms())
        cap = server.max_drift_ms
        if ahead <= cap:
            ahead = 0
    recorded = meta(st.STOPPED)
    held, needs = state.held()
    server_schema = meta(st.SERVER_SCHEMA)
    return SyncStatus(
        running=running,
        connected=connected,
        tenant=state.tenant,
        last_seq=replica.last_seq(),
        acked_seq=state.acked_seq,
        pending_changes=state.pending_changes(),
        cursor=state.cursor,
        last_error=meta(st.LAST_ERROR),
        last_error_at=meta(st.LAST_ERROR_AT),
        last_connected_at=meta(st.LAST_CONNECTED_AT),
        last_synced_at=meta(st.LAST_SYNCED_AT),
        rejected=conn.execute("select count(*) from _ss_sync_rejected").fetchone()[0],
        open_conflicts=conn.execute("select count(*) from _ss_conflicts where resolved_at is null").fetchone()[0],
        pending_resolutions=state.pending_resolutions(),
        clock_ahead_ms=max(0, ahead),
        max_drift_ms=cap if ahead else 0,
        stopped=None if running else (recorded or stopped),
        stopped_at=None if running else meta(st.STOPPED_AT),
        reverting=conn.execute("select count(*) from _ss_sync_rejected where reverted_at is null").fetchone()[0],
        synced_schema=schema.SCHEMA_VERSION,
        server_schema=None if server_schema is None else int(server_schema),
        held_changes=held,
        schema_notice=_notice(held, needs, None if server_schema is None else int(server_schema)),
        skipped_rows=state.skipped_rows(),
        rekeyed=meta(st.REKEYED),
    )


def _notice(held: int, needs: int, server_schema: int | None) -> str | None:
    if not held:
        return None
    behind = server_schema if server_schema is not None else 1
    return (
        f"{held} local change{'s' if held != 1 else ''} kept here: the server knows schema version {behind} "
        f"and they need {needs} ({versions.describe(behind)}); they sync once it is upgraded"
    )
