-- The orders a status resync asks the cloud about (o2c_protocol::resync):
-- known to the cloud and not yet completed or refunded. A partial index,
-- so the periodic resync reads only those, by id (capture time) order.
CREATE INDEX orders_cloud_open ON orders (order_id)
    WHERE sync_state = 'synced'
      AND (cloud_status IS NULL OR cloud_status NOT IN ('completed', 'refunded'));
