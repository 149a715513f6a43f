-- The cloud order API (issue 19; `o2c-cloud api`): its web and mobile
-- orders, the idempotency record of each creation (written in the same
-- transaction as the order and its outbox row), and each order's history as
-- the saga wrote it (projected from `orders.events` by the `api` service).

CREATE TABLE {schema}.channel_orders (
    order_id            text PRIMARY KEY,
    customer_id         text NOT NULL,
    channel             text NOT NULL,
    store_id            text NOT NULL,
    -- The OrderCreated payload as sent (JSON).
    order_json          text NOT NULL,
    created_at          timestamptz NOT NULL DEFAULT now(),
    -- Set once, by the customer's first cancel request.
    cancel_requested_at timestamptz
);
CREATE INDEX channel_orders_by_customer
    ON {schema}.channel_orders (customer_id, created_at DESC, order_id);

CREATE TABLE {schema}.idempotency (
    customer_id    text NOT NULL,
    key            text NOT NULL,
    -- SHA-256 of the request body as received: a reused key with another
    -- body is a conflict, not a replay.
    request_sha256 text NOT NULL,
    order_id       text NOT NULL,
    -- The 201's body, answered again to a retry.
    response       text NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (customer_id, key)
);

CREATE TABLE {schema}.history (
    event_id    text PRIMARY KEY,
    order_id    text NOT NULL REFERENCES {schema}.channel_orders (order_id),
    event_type  text NOT NULL,
    -- The status the event gives the order, with its sequence (see
    -- saga::status::status_seq); NULL for events that set none.
    status      text,
    status_seq  bigint,
    reason      text,
    detail      text NOT NULL,
    occurred_ms bigint NOT NULL
);
CREATE INDEX history_by_order ON {schema}.history (order_id, occurred_ms, event_id);
