-- order_lines and order_payments copied what orders.order_json already holds
-- (every line and payment, as captured) and nothing ever read them. Writing
-- them was five B-tree inserts per order on the capture path, inside the
-- group commit every till waits for. orders.order_json is the record.
DROP TABLE order_lines;
DROP TABLE order_payments;
