-- The W3C trace context of each order's capture (issue 17): its trace id
-- is shown by GET /v1/orders/{id}, to open the order's trace in a trace UI,
-- and a void of the order continues that trace. Orders captured before
-- this migration have none.
ALTER TABLE orders ADD COLUMN traceparent TEXT;
