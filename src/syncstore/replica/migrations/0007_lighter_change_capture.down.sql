-- Back to _ss_clock holding the counters on its own: fold the log into it first.
DROP TRIGGER IF EXISTS _ss_changes_keep_counters;
UPDATE _ss_clock SET
    last_hlc = max(last_hlc, (SELECT coalesce(max(hlc), 0) FROM _ss_changes)),
    last_seq = max(last_seq, (SELECT coalesce(max(seq), 0) FROM _ss_changes)),
    last_tx = max(last_tx, (SELECT coalesce(max(tx), 0) FROM _ss_changes))
WHERE id = 1;
CREATE INDEX IF NOT EXISTS _ss_changes_tx_idx ON _ss_changes (tx);
ALTER TABLE _ss_tombstones DROP COLUMN cells;
