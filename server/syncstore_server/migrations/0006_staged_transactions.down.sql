-- Undo 0006: parts staged and not merged are dropped (their clients push them again).
DROP TABLE syncstore.staged_changes;
DROP TABLE syncstore.staged_transactions;
