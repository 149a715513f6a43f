-- In-store returns (contract 1.7): one row per return this store took,
-- committed with its ReturnRequested event (`seq`, its outbox seq) and its
-- idempotency record. The order may be another store's or a web order
-- (`verified_locally` = 0, no local amount): the cloud is the authority.
-- `refund_json` is the RefundTender as sent: a token, brand and last four
-- for a card, never card data.
CREATE TABLE returns (
    return_id           TEXT PRIMARY KEY NOT NULL,   -- UUIDv7, minted here
    order_id            TEXT NOT NULL,               -- the order returned from
    terminal_id         TEXT NOT NULL,
    lines_json          TEXT NOT NULL,               -- [{"sku", "quantity"}]
    refund_method       TEXT NOT NULL
                        CHECK (refund_method IN ('card', 'cash', 'gift_card')),
    refund_json         TEXT NOT NULL,
    reason              TEXT NOT NULL,
    -- The amount this agent computed from its own copy of the order, and
    -- for a card refund the index of the order's payment it goes back to
    -- (what the order's next return is checked against). NULL when the
    -- order is not known here.
    local_amount_minor  INTEGER,
    currency            TEXT,
    tender_index        INTEGER,
    verified_locally    INTEGER NOT NULL CHECK (verified_locally IN (0, 1)),
    seq                 INTEGER NOT NULL UNIQUE,
    -- Sync state of the ReturnRequested event.
    sync_state          TEXT NOT NULL DEFAULT 'pending'
                        CHECK (sync_state IN ('pending', 'synced', 'rejected')),
    reject_code         TEXT,
    reject_reason       TEXT,
    -- The cloud's answer (return_accepted, return_refused,
    -- return_refunded); never written to orders.cloud_status.
    cloud_status        TEXT,
    cloud_reason        TEXT,
    cloud_sku           TEXT,
    cloud_amount_minor  INTEGER,
    cloud_currency      TEXT,
    cloud_status_at_ms  INTEGER,
    cloud_status_received_at_ms INTEGER,
    cloud_status_seq    INTEGER,
    created_at_ms       INTEGER NOT NULL
);

CREATE INDEX returns_order ON returns (order_id);
