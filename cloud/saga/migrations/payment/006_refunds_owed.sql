-- Refunds owed (saga::payment::refund, saga::reconcile): a cancelled order
-- that was captured, whose refund the processor could not take when the
-- cancellation came, stays `Captured` with "cancel_requested": true in its
-- state; `capture_attempt_at` is the time of the last refund attempt. The
-- reconciler's sweep takes them oldest first; a row leaves the index as soon
-- as it is refunded.
CREATE INDEX orders_refund_owed ON {schema}.orders (capture_attempt_at)
    WHERE (state::jsonb ->> 'phase') = 'captured'
    AND (state::jsonb ->> 'cancel_requested') = 'true';
