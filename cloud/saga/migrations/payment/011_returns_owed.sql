-- Return refunds owed (saga::payment::returns, saga::reconcile): a card
-- return whose refund the processor could not take when it was accepted is
-- kept in the order's state ("returns_owed", with "return_owed": true);
-- `capture_attempt_at` is the time of the last attempt. The reconciler's
-- sweep takes them oldest first; a row leaves the index once every owed
-- return is refunded.
CREATE INDEX orders_return_owed ON {schema}.orders (capture_attempt_at)
    WHERE (state::jsonb ->> 'return_owed') = 'true';
