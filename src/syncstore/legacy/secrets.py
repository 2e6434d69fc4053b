"""The local-only secret table: values that must never leave this machine.

``local_secrets`` is not a synced table: writes to it are not captured in the
change log, so nothing in it is ever pushed. One value per (owner table, owner
row, name), e.g. (``environments``, the environment's id, ``github_token``).
Writes join the caller's transaction when there is one.
"""

from __future__ import annotations

from syncstore import schema
from syncstore.replica.store import Replica

GITHUB_TOKEN = "github_token"


def get(store: Replica, owner_table: str, owner_id: str, name: str) -> str | None:
    found = store.connection.execute(
        "select value from local_secrets where owner_table = ? and owner_id = ? and name = ?",
        (owner_table, owner_id, name),
    ).fetchone()
    return None if found is None else found[0]


def put(store: Replica, owner_table: str, owner_id: str, name: str, value: str) -> str:
    """Store a secret; returns "stored", "unchanged" or "replaced"."""
    with store.transaction():
        current = get(store, owner_table, owner_id, name)
        if current == value:
            return "unchanged"
        store.connection.execute(
            "insert or replace into local_secrets (owner_table, owner_id, name, value, created_at) "
            "values (?, ?, ?, ?, ?)",
            (owner_table, owner_id, name, value, schema.now_iso()),
        )
        return "stored" if current is None else "replaced"


def delete(store: Replica, owner_table: str, owner_id: str, name: str) -> bool:
    with store.transaction():
        found = get(store, owner_table, owner_id, name) is not None
        store.connection.execute(
            "delete from local_secrets where owner_table = ? and owner_id = ? and name = ?",
            (owner_table, owner_id, name),
        )
        return found


def names(store: Replica, owner_table: str, owner_id: str) -> list[str]:
    """The names of the secrets a row has (never their values)."""
    return [
        row[0]
        for row in store.connection.execute(
            "select name from local_secrets where owner_table = ? and owner_id = ? order by name",
            (owner_table, owner_id),
        )
    ]
