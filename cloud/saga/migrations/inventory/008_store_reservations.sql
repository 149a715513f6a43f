-- Issue 15: stock a store reserved at capture for a ship-to-home order
-- (POST /v1/stores/{store}/reservations, served by the catalog service).
-- `held` units are in `stock.reserved` (with a `store_reserve` movement);
-- the inventory service takes them over when the order's OrderCreated
-- arrives (`consumed`), a void or the TTL gives them back (`released`).
CREATE TABLE {schema}.store_reservations (
    order_id   text PRIMARY KEY,
    store_id   text NOT NULL,
    -- What was asked: [[sku, quantity]] merged and in SKU order.
    wanted     jsonb NOT NULL,
    -- What is held: [Reservation].
    lines      jsonb NOT NULL,
    state      text NOT NULL CHECK (state IN ('held', 'consumed', 'released')),
    expires_at timestamptz NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    ended_at   timestamptz
);
CREATE INDEX store_reservations_expiry ON {schema}.store_reservations (expires_at)
    WHERE state = 'held';
