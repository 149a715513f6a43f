-- An offline card sale the cloud rejected no longer counts against the
-- offline cap (it is settled: staff follow it up from its sync state).
-- Before this, rejected sales kept counting until forever.
UPDATE orders SET offline_released = 1
WHERE sync_state = 'rejected' AND offline_card_minor > 0 AND offline_released = 0;
