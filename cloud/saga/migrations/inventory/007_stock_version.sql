-- Issue 15: the stock a store's agent pulls (`GET /v1/stores/{store}/stock
-- ?since=V`, served by the catalog service). Every insert or update of a
-- stock row takes the next value of one sequence, so "since V" is
-- `version > V` and a store's stock version is its rows' greatest.
CREATE SEQUENCE {schema}.stock_version_seq;
ALTER TABLE {schema}.stock ADD COLUMN version bigint NOT NULL DEFAULT 0;
UPDATE {schema}.stock SET version = nextval('{schema}.stock_version_seq');
CREATE INDEX stock_warehouse_version ON {schema}.stock (warehouse, version);
CREATE INDEX stock_version ON {schema}.stock (version);
CREATE FUNCTION {schema}.stock_take_version() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    NEW.version := nextval(TG_TABLE_SCHEMA || '.stock_version_seq');
    RETURN NEW;
END
$$;
CREATE TRIGGER stock_take_version BEFORE INSERT OR UPDATE ON {schema}.stock
    FOR EACH ROW EXECUTE FUNCTION {schema}.stock_take_version();
