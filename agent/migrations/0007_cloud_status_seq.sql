-- The per-order sequence of the cloud status an order shows (from the
-- cloud's `o2c-status-seq` property): a later update replaces it only
-- with a greater sequence. NULL when the status came without one (a cloud
-- that sends none); the newest `occurred_at` decides then, as before.
ALTER TABLE orders ADD COLUMN cloud_status_seq INTEGER;
