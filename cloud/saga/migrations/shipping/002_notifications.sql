-- Customer notifications sent by shipping. A cancellation after a
-- scheduling notice is a new notice, never a deletion.
CREATE TABLE {schema}.notifications (
    id       bigserial PRIMARY KEY,
    order_id text NOT NULL,
    kind     text NOT NULL,
    at       timestamptz NOT NULL DEFAULT now(),
    UNIQUE (order_id, kind)
);
