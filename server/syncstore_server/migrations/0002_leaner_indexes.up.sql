-- Fewer indexes to keep up on the write path, the same queries served.
--
-- change_log: readers only ever ask for one tenant's entries after a position,
-- so the primary key becomes (tenant, seq) and the separate index goes.
ALTER TABLE syncstore.change_log DROP CONSTRAINT change_log_pkey;
ALTER TABLE syncstore.change_log ADD PRIMARY KEY (tenant, seq);
DROP INDEX syncstore.change_log_tenant_seq_idx;

-- conflicts: ids are UUIDv7, so they sort by time: the list of a tenant's
-- unresolved records, newest first, needs no index on created_at.
DROP INDEX syncstore.conflicts_tenant_created_idx;
DROP INDEX syncstore.conflicts_unresolved_idx;
CREATE INDEX conflicts_unresolved_idx ON syncstore.conflicts (tenant, id) WHERE resolved_at IS NULL;
