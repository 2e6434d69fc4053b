-- Undo 0002: the indexes of 0001 again.
DROP INDEX syncstore.conflicts_unresolved_idx;
CREATE INDEX conflicts_unresolved_idx ON syncstore.conflicts (tenant) WHERE resolved_at IS NULL;
CREATE INDEX conflicts_tenant_created_idx ON syncstore.conflicts (tenant, created_at);
CREATE INDEX change_log_tenant_seq_idx ON syncstore.change_log (tenant, seq);
ALTER TABLE syncstore.change_log DROP CONSTRAINT change_log_pkey;
ALTER TABLE syncstore.change_log ADD PRIMARY KEY (seq);
