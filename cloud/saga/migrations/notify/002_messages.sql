-- Customer notifications (issue 20; `o2c-cloud notify`). The `notify`
-- service projects the order history (`orders.events`) into one message per
-- order, kind and channel (the UNIQUE key is the idempotency record: a
-- replayed event adds nothing), and its sender delivers them.

-- Who to tell, from each order's OrderCreated.
CREATE TABLE {schema}.contacts (
    order_id    text PRIMARY KEY,
    store_id    text NOT NULL,
    -- NULL: the order names no e-mail address.
    email       text,
    customer_id text,
    channel     text NOT NULL,
    currency    text NOT NULL,
    total_minor bigint NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE {schema}.messages (
    id           bigserial PRIMARY KEY,
    order_id     text NOT NULL,
    -- order_confirmed | order_cancelled | shipment_dispatched | ...
    kind         text NOT NULL,
    -- email | webhook
    channel      text NOT NULL,
    -- The event that called for it.
    event_id     text NOT NULL,
    -- What its template shows (amount, reason, tracking number).
    facts        jsonb NOT NULL,
    -- pending | sent | dead (gave up: last_error says why) | skipped (no
    -- address for this channel) | stale (its event was older than
    -- [notify] max_event_age_secs when read: never sent).
    state        text NOT NULL DEFAULT 'pending',
    attempts     integer NOT NULL DEFAULT 0,
    due_at       timestamptz NOT NULL DEFAULT now(),
    -- A sender holds the message until then while it sends it; a sender
    -- that died mid-send leaves it to be taken over after.
    leased_until timestamptz,
    last_error   text,
    created_at   timestamptz NOT NULL DEFAULT now(),
    sent_at      timestamptz,
    UNIQUE (order_id, kind, channel)
);
CREATE INDEX messages_due ON {schema}.messages (due_at) WHERE state = 'pending';
CREATE INDEX messages_dead ON {schema}.messages (created_at) WHERE state = 'dead';
