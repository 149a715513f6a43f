-- Pending outbox rows are exactly those past sync_state.last_acked_seq: an
-- ack is cumulative and settles every row up to its seq, and new rows get
-- the next seq. So queries bound pending rows by that seq (a range of the
-- rowid) and the partial index over them goes: it cost an index insert per
-- capture and an index delete per acked event, inside the group commits.
DROP INDEX outbox_pending;
