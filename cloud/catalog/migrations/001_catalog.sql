-- The catalog master data (issue 15). Every import that changes anything
-- takes the next catalog version; each product and price row records the
-- version that last changed it, so a delta "since V" is `version > V`.
CREATE SCHEMA IF NOT EXISTS o2c_catalog;

CREATE TABLE IF NOT EXISTS o2c_catalog.meta (
    one     boolean PRIMARY KEY DEFAULT true CHECK (one),
    version bigint NOT NULL
);
INSERT INTO o2c_catalog.meta (one, version) VALUES (true, 0) ON CONFLICT DO NOTHING;

CREATE TABLE IF NOT EXISTS o2c_catalog.products (
    sku        text PRIMARY KEY,
    name       text NOT NULL,
    category   text,
    active     boolean NOT NULL,
    -- The prices as imported: [{"currency","minor","effective_from"}], in
    -- a canonical order, so an unchanged product compares equal.
    prices     jsonb NOT NULL,
    version    bigint NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS products_version ON o2c_catalog.products (version);

-- The stores that have called the store API: the catalog service sends
-- each its retained change hint, also after a restart.
CREATE TABLE IF NOT EXISTS o2c_catalog.stores (
    store_id   text PRIMARY KEY,
    first_seen timestamptz NOT NULL DEFAULT now()
);
