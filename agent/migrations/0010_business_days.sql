-- The store's closed business days (issue 18). When a day closes, the
-- writer appends its manifest (a DayClosed event) to the outbox and records
-- it here in the same transaction. `first_seq`/`last_seq` are the day's
-- events (NULL when it had none); `manifest_seq` is the manifest's own seq.
-- A manifest's outbox row has `order_id = ''`: it is about no order.
-- Acked outbox rows are pruned only up to the last manifest's seq, so a
-- day not yet closed keeps every event its manifest will count.
CREATE TABLE business_days (
    business_date       TEXT PRIMARY KEY NOT NULL,   -- YYYY-MM-DD
    first_seq           INTEGER,
    last_seq            INTEGER,
    manifest_seq        INTEGER NOT NULL UNIQUE,
    event_id            TEXT NOT NULL,
    closed_at_ms        INTEGER NOT NULL
) WITHOUT ROWID;
