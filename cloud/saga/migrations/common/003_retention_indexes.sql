-- Retention sweeps (`saga::retention`) find old rows by time. Both tables
-- are filled in time order, so a BRIN index is enough: a few pages in all,
-- and no work for a row inserted into a range not yet summarised.
CREATE INDEX outbox_created_brin ON {schema}.outbox USING brin (created_at);
CREATE INDEX processed_events_at_brin ON {schema}.processed_events USING brin (processed_at);
