"""The syncstore sync server: websockets in front, PostgreSQL behind.

- :mod:`syncstore_server.app`: :class:`SyncServer`, the daemon, and :func:`run`.
- :mod:`syncstore_server.store`: the PostgreSQL change store (merge, log, acks).
- :mod:`syncstore_server.merge_plan` / :mod:`~syncstore_server.validate`: the
  merge decided in memory, and the schema checks before it (no I/O).
- :mod:`syncstore_server.handler`: one connection, driving
  :class:`syncstore.core.server_session.ServerSession`; :mod:`~syncstore_server.log_tail`
  and :mod:`~syncstore_server.router`: the shared log cache, and new entries
  routed to the live streams whose shapes they concern.
- :mod:`syncstore_server.compaction`: superseded cell versions dropped, old
  tombstones collected.
- :mod:`syncstore_server.auth`: signed tokens; :mod:`~syncstore_server.migrate`:
  schema migrations; :mod:`~syncstore_server.conflicts`: conflict records;
  :mod:`~syncstore_server.embedded`: PostgreSQL when no URL is given.
"""

from syncstore_server.app import SyncServer, run
from syncstore_server.auth import Secret, load_secret, mint_token, verify_token

__all__ = ["SyncServer", "Secret", "load_secret", "mint_token", "run", "verify_token"]
