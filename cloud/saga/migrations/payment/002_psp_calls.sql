-- Every call to the payment processor, for audit (tokens only, never card data).
CREATE TABLE {schema}.psp_calls (
    id              bigserial PRIMARY KEY,
    order_id        text NOT NULL,
    idempotency_key text NOT NULL,
    kind            text NOT NULL,
    outcome         text NOT NULL,
    reference       text,
    at              timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX psp_calls_order ON {schema}.psp_calls (order_id);
