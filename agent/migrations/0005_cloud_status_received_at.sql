-- When this agent stored the order's current cloud status (its own clock,
-- unix ms): staff see how fresh the status is, and capture-to-status
-- times can be read exactly instead of by polling.
ALTER TABLE orders ADD COLUMN cloud_status_received_at_ms INTEGER;
