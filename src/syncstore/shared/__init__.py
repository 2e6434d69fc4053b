"""What the client library and the sync server both use, beside ``core`` and ``schema``.

The sync server (``syncstore_server``) takes its memory search from here, never
from the client's replica, domain APIs or CLI: modules in this package import
only ``syncstore.core``, ``syncstore.schema``, ``syncstore.errors`` and each
other (a test holds them to it).

- :mod:`syncstore.shared.embedders`: the embedder interface and the hashing
  embedder (the one model the server can run: it needs no weights);
- :mod:`syncstore.shared.memory`: memory search's filters, ranking, result
  columns, and the search over the server's PostgreSQL.
"""
