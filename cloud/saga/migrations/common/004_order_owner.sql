-- The store whose OrderCreated made each order. A store event (one with a
-- seq: an order or a void from an agent) about an order another store
-- created is refused as identity_mismatch (saga::batch::States::lock).
ALTER TABLE {schema}.orders ADD COLUMN store_id text;
