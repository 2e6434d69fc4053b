-- Large client transactions pushed in parts.
--
-- A local transaction too large for one push arrives as parts (LocalTx.end_seq),
-- in sequence order. Each part is checked and its changes kept in staged_changes,
-- keyed by (tenant, site, seq), so a part sent again after a reconnect replaces
-- itself and nothing waits in the server's memory; staged_transactions says, per
-- site, which transaction is being staged, how far and how many changes (one at
-- a time per site: a site pushes in sequence order). The part holding the
-- transaction's last change merges every staged change in one PostgreSQL
-- transaction, which also deletes them. A transaction whose last part never
-- comes (its replica was lost) leaves rows behind until the site stages another
-- one, or until compaction deletes what is older than the retention window.
CREATE TABLE syncstore.staged_transactions (
    tenant text NOT NULL,
    site bytea NOT NULL,
    tx bigint NOT NULL,
    end_seq bigint NOT NULL,  -- the sequence of the transaction's last change
    total bigint NOT NULL,  -- the changes the client said the transaction holds
    staged_seq bigint NOT NULL,  -- staged up to here (the client goes on after it)
    changes bigint NOT NULL,  -- changes staged so far
    started_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant, site)
);
-- change: the checked change (seq, table, id, hlc, values, seen), MessagePack.
CREATE TABLE syncstore.staged_changes (
    tenant text NOT NULL,
    site bytea NOT NULL,
    seq bigint NOT NULL,
    tbl text NOT NULL,
    row_id text NOT NULL,
    change bytea NOT NULL,
    PRIMARY KEY (tenant, site, seq)
);
