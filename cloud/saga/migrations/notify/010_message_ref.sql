-- Returns (contract 1.7): an order may have several returns, each refunded
-- and told once. A message is now one per order, kind, channel and
-- reference: the return's id for a return's notice, '' for every other.
ALTER TABLE {schema}.messages ADD COLUMN ref text NOT NULL DEFAULT '';
ALTER TABLE {schema}.messages DROP CONSTRAINT messages_order_id_kind_channel_key;
ALTER TABLE {schema}.messages ADD CONSTRAINT messages_once UNIQUE (order_id, kind, channel, ref);
