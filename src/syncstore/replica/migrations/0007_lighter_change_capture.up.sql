-- Lighter change capture (each local commit writes fewer pages), and tombstones
-- that keep what the merge needs.
--
-- 1. The change log loses its index on tx. Every local write added an entry to
--    it. Entries of one transaction are consecutive in seq order (tx grows with
--    seq), so readers walk the log by seq; a lookup by tx alone (e.g. when a
--    pushed transaction is refused) scans the log, which is rare.
-- 2. _ss_clock becomes a floor: the replica's counters are the greater of this
--    row and the newest log entry (seq, tx, hlc). A commit whose newest entry
--    already carries the clock's last stamp no longer rewrites this row. So that
--    deleting log entries (compaction after a push) can never lower the counters
--    and let a sequence number or stamp be used twice, deleted entries raise the
--    floor first.
DROP INDEX IF EXISTS _ss_changes_tx_idx;

CREATE TRIGGER _ss_changes_keep_counters AFTER DELETE ON _ss_changes BEGIN
    UPDATE _ss_clock
    SET last_hlc = max(last_hlc, old.hlc), last_seq = max(last_seq, old.seq), last_tx = max(last_tx, old.tx)
    WHERE id = 1;
END;

-- 3. A tombstone keeps the deleted row's other cells (MessagePack
--    {column: [value, hlc, site]}), as the server keeps a deleted row. A write
--    to a column of a deleted row that arrives later merges with them, and a
--    row brought back by a newer write that does not carry every column shows
--    the same values on every replica, whatever order the changes came in.
--    NULL: nothing known (tombstones written before this migration).
ALTER TABLE _ss_tombstones ADD COLUMN cells BLOB;
