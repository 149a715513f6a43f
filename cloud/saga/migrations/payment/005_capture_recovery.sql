-- Capture recovery (saga::reconcile). For each card order the payment
-- service starts capturing, it keeps what finishing the capture needs
-- without its OrderCreated: that event's envelope (tokens only, never card
-- data), when the first capture call was made (the start of its
-- idempotency key's lifetime) and when the latest one was.
--
-- A cancellation that finds a capture in progress is recorded in the state
-- itself ("cancel_requested": true in `state`), in the same transaction
-- that acks it.
ALTER TABLE {schema}.orders
    ADD COLUMN capture_cause      bytea,
    ADD COLUMN capture_started_at timestamptz,
    ADD COLUMN capture_attempt_at timestamptz;

-- The reconciler's sweep: orders still capturing, oldest attempt first. A
-- row leaves the index as soon as its capture settles.
CREATE INDEX orders_capturing ON {schema}.orders (capture_attempt_at)
    WHERE (state::jsonb ->> 'phase') = 'capturing';
