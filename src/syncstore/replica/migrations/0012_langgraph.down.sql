-- The change log keeps its entries (its sequence numbers must never be used again).
DELETE FROM _ss_tombstones
    WHERE tbl IN ('langgraph_checkpoints', 'langgraph_checkpoint_blobs', 'langgraph_checkpoint_writes', 'langgraph_store');
DROP TABLE langgraph_store;
DROP TABLE langgraph_checkpoint_writes;
DROP TABLE langgraph_checkpoint_blobs;
DROP TABLE langgraph_checkpoints;
