"""The ``agent_memory`` columns a search reads back: every stored column but the vector."""

from __future__ import annotations

from syncstore import schema

TABLE = "agent_memory"
# In schema order; the vector is large and rarely wanted, so results leave it out.
COLUMNS = tuple(name for name in schema.TABLES[TABLE].column_names if name != "embedding")
