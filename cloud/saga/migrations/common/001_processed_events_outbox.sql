-- Every saga service's schema: the idempotent-consumer ledger and the
-- transactional outbox. `{schema}` is replaced by the service's schema.

CREATE TABLE {schema}.processed_events (
    event_id     text PRIMARY KEY,
    event_type   text NOT NULL,
    order_id     text NOT NULL,
    processed_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE {schema}.outbox (
    id           bigserial PRIMARY KEY,
    event_id     text NOT NULL UNIQUE,
    topic        text NOT NULL,
    key          text NOT NULL,
    event_type   text NOT NULL,
    store_id     text NOT NULL,
    agent_id     text NOT NULL,
    traceparent  text,
    payload      bytea NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    published_at timestamptz
);

CREATE INDEX outbox_unpublished ON {schema}.outbox (id) WHERE published_at IS NULL;

-- Per-order saga state of this service, as JSON (the pure core's struct).
CREATE TABLE {schema}.orders (
    order_id   text PRIMARY KEY,
    state      text NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);
