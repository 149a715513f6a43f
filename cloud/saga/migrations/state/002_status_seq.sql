-- The state projector: `orders.state` holds each order's latest
-- `OrderStateRecord` (JSON); `status_seq` is its place in the order's
-- history, and only a greater one replaces it.
ALTER TABLE {schema}.orders ADD COLUMN status_seq bigint NOT NULL DEFAULT 0;
