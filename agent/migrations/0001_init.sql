-- o2c-agent schema v1: orders, their lines and payments, the outbox, the
-- idempotency records and the sync bookkeeping.

-- One row per captured order. `order_json` is the o2c_protocol::Order as
-- captured (what GET /v1/orders/{id} serves); lines and payments are also
-- kept relationally for end-of-day reports.
CREATE TABLE orders (
    order_id            TEXT PRIMARY KEY NOT NULL,   -- UUIDv7, time ordered
    terminal_id         TEXT NOT NULL,
    currency            TEXT NOT NULL,
    total_minor         INTEGER NOT NULL,
    captured_at         TEXT NOT NULL,               -- RFC 3339
    captured_at_ms      INTEGER NOT NULL,
    status              TEXT NOT NULL DEFAULT 'captured'
                        CHECK (status IN ('captured', 'cancelled')),
    cancelled_at_ms     INTEGER,
    cancel_reason       TEXT,
    -- Sync state of the order's OrderCreated event.
    sync_state          TEXT NOT NULL DEFAULT 'pending'
                        CHECK (sync_state IN ('pending', 'synced', 'rejected')),
    reject_code         TEXT,
    reject_reason       TEXT,
    -- Offline-authorised card money, counted against the store cap until
    -- the cloud acks the OrderCreated event.
    offline_card_minor  INTEGER NOT NULL DEFAULT 0,
    offline_released    INTEGER NOT NULL DEFAULT 0,
    -- Latest saga status pushed down by the cloud.
    cloud_status        TEXT,
    cloud_reason        TEXT,
    cloud_status_at_ms  INTEGER,
    order_json          TEXT NOT NULL
);

CREATE INDEX orders_offline_open ON orders (order_id)
    WHERE offline_card_minor > 0 AND offline_released = 0;

CREATE TABLE order_lines (
    order_id            TEXT NOT NULL,
    line_no             INTEGER NOT NULL,
    sku                 TEXT NOT NULL,
    quantity            INTEGER NOT NULL,
    unit_price_minor    INTEGER NOT NULL,
    PRIMARY KEY (order_id, line_no)
) WITHOUT ROWID;

CREATE TABLE order_payments (
    order_id            TEXT NOT NULL,
    payment_no          INTEGER NOT NULL,
    method              TEXT NOT NULL,               -- card | cash | gift_card
    amount_minor        INTEGER NOT NULL,
    card_authorization  TEXT,                        -- online | offline (cards)
    brand               TEXT,
    last4               TEXT,
    PRIMARY KEY (order_id, payment_no)
) WITHOUT ROWID;

-- Events waiting for (or done with) the cloud. `seq` is gap-free and is
-- assigned by the single writer inside the capture transaction; `envelope`
-- holds the exact bytes of Envelope::encode() that will be shipped.
CREATE TABLE outbox (
    seq                 INTEGER PRIMARY KEY NOT NULL,
    event_id            TEXT NOT NULL UNIQUE,
    event_type          TEXT NOT NULL,
    order_id            TEXT NOT NULL,
    envelope            BLOB NOT NULL,
    created_at_ms       INTEGER NOT NULL,
    state               TEXT NOT NULL DEFAULT 'pending'
                        CHECK (state IN ('pending', 'acked', 'rejected')),
    acked_at_ms         INTEGER,
    reject_code         TEXT,
    reject_reason       TEXT
);

CREATE INDEX outbox_pending ON outbox (seq) WHERE state = 'pending';
CREATE INDEX outbox_rejected ON outbox (seq) WHERE state = 'rejected';

-- One row per (terminal, Idempotency-Key): the request's SHA-256 and the
-- exact 201 body, replayed with 200.
CREATE TABLE idempotency (
    terminal_id         TEXT NOT NULL,
    idem_key            TEXT NOT NULL,
    request_sha256      BLOB NOT NULL,
    order_id            TEXT NOT NULL,
    response            TEXT NOT NULL,
    created_at_ms       INTEGER NOT NULL,
    PRIMARY KEY (terminal_id, idem_key)
) WITHOUT ROWID;

CREATE TABLE sync_state (
    id                  INTEGER PRIMARY KEY CHECK (id = 1),
    last_acked_seq      INTEGER NOT NULL DEFAULT 0,
    last_ack_at_ms      INTEGER
);
INSERT INTO sync_state (id, last_acked_seq, last_ack_at_ms) VALUES (1, 0, NULL);

-- Status updates already applied, by the saga event that caused them.
CREATE TABLE applied_status_events (
    event_id            TEXT PRIMARY KEY NOT NULL,
    order_id            TEXT NOT NULL,
    applied_at_ms       INTEGER NOT NULL
) WITHOUT ROWID;
