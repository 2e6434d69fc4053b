"""Sync status: what a person or a program asks of a replica that syncs."""

from __future__ import annotations

import msgspec

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
    skipped_rows: int = 0  # server rows a snapshot sent that this replica could not take (_ss_sync_skipped)
    rekeyed: str | None = None  # when and why this file last took a new site id (it was a copy)


def read_status(replica: Replica, *, running: bool = False, connected: bool = False) -> SyncStatus:
    state = st.SyncState(replica)
    conn = replica.connection
    meta = replica.meta_get
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
        skipped_rows=state.skipped_rows(),
        rekeyed=meta(st.REKEYED),
    )
