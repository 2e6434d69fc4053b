"""Sync status: what a person or a program asks of a replica that syncs."""

from __future__ import annotations

import msgspec

from syncstore import schema
from syncstore.core import versions
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
    reverting: int = 0  # refused transactions whose rows are not yet back to the server's state
    synced_schema: int = 0  # the version of the synced tables this library knows
    server_schema: int | None = None  # ... and the last server met (None: never met)
    held_changes: int = 0  # local changes kept back from an older server (see schema_notice)
    schema_notice: str | None = None  # one line on what an older server cannot take


def read_status(replica: Replica, *, running: bool = False, connected: bool = False) -> SyncStatus:
    state = st.SyncState(replica)
    conn = replica.connection
    meta = replica.meta_get
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
        reverting=conn.execute("select count(*) from _ss_sync_rejected where reverted_at is null").fetchone()[0],
        synced_schema=schema.SCHEMA_VERSION,
        server_schema=None if server_schema is None else int(server_schema),
        held_changes=held,
        schema_notice=_notice(held, needs, None if server_schema is None else int(server_schema)),
    )


def _notice(held: int, needs: int, server_schema: int | None) -> str | None:
    if not held:
        return None
    behind = server_schema if server_schema is not None else 1
    return (
        f"{held} local change{'s' if held != 1 else ''} kept here: the server knows schema version {behind} "
        f"and they need {needs} ({versions.describe(behind)}); they sync once it is upgraded"
    )
