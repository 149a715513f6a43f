-- The order service keeps only the common tables (state as JSON in `orders`).
SELECT 1;
