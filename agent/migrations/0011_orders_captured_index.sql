-- Orders by capture time (issue 18): the Z-report of a business day and
-- `GET /v1/orders?captured_from=&captured_to=` read one day's orders as a
-- range of this index instead of scanning every order (a day of a busy
-- store in a database of 1,000,000 orders is a few thousand index rows).
-- One index insert per capture; nothing else changes.
CREATE INDEX orders_captured_at ON orders (captured_at_ms);
