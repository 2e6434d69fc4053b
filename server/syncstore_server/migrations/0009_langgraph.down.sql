-- Undo 0009: the LangGraph tables go, with their direct-write rules and queued direct
-- writes. Log entries that name them stay (positions are never reused); a server
-- without these tables must not be started on a log that still serves them.
DELETE FROM syncstore.direct_writes
    WHERE tbl IN ('langgraph_checkpoints', 'langgraph_checkpoint_blobs', 'langgraph_checkpoint_writes', 'langgraph_store');
DELETE FROM syncstore.direct_write_rules
    WHERE tbl IN ('langgraph_checkpoints', 'langgraph_checkpoint_blobs', 'langgraph_checkpoint_writes', 'langgraph_store');
DROP TABLE IF EXISTS syncstore.langgraph_store;
DROP TABLE IF EXISTS syncstore.langgraph_checkpoint_writes;
DROP TABLE IF EXISTS syncstore.langgraph_checkpoint_blobs;
DROP TABLE IF EXISTS syncstore.langgraph_checkpoints;
