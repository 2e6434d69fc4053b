"""The syncstore sync server: websockets in front, PostgreSQL behind.

- :mod:`syncstore_server.app`: :class:`SyncServer`, the daemon, and :func:`run`.
- :mod:`syncstore_server.store`: the PostgreSQL change store (merge, log, acks).
- :mod:`syncstore_server.merge_plan` / :mod:`~syncstore_server.validate`: the
  merge decided in memory, and the schema checks before it (no I/O).
- :mod:`syncstore_server.handler`: one connection, driving
  :class:`syncstore.core.server_session.ServerSession`.
- :mod:`syncstore_server.auth`: signed tokens; :mod:`~syncstore_server.migrate`:
  schema migrations; :mod:`~syncstore_server.conflicts`: conflict records;
  :mod:`~syncstore_server.embedded`: PostgreSQL when no URL is given.
"""

from syncstore_server.app import SyncServer, run
from syncstore_server.auth import Secret, load_secret, mint_token, verify_token

__all__ = ["SyncServer", "Secret", "load_secret", "mint_token", "run", "verify_token"]
