-- The latest status update the status publisher sent for each order, so
-- it can answer an agent's resync (o2c_protocol::resync) after an MQTT
-- broker lost updates it had already acknowledged. Written before the
-- update is published; only a greater seq replaces a row.
CREATE TABLE {schema}.latest (
    order_id    text PRIMARY KEY,
    store_id    text NOT NULL,
    agent_id    text NOT NULL,
    -- The update's per-order sequence (o2c_saga::status::status_seq).
    seq         bigint NOT NULL,
    -- The update exactly as sent (StatusUpdate JSON, without its seq).
    body        text NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now()
);

-- The retention sweep deletes by age.
CREATE INDEX latest_updated_at ON {schema}.latest (updated_at);
