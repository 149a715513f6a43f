-- Stock per SKU and warehouse. `reserved` is held for orders not yet paid;
-- neither it nor what is left may ever go negative.
CREATE TABLE {schema}.stock (
    sku       text NOT NULL,
    warehouse text NOT NULL,
    on_hand   bigint NOT NULL CHECK (on_hand >= 0),
    reserved  bigint NOT NULL DEFAULT 0 CHECK (reserved >= 0),
    PRIMARY KEY (sku, warehouse),
    CHECK (reserved <= on_hand)
);

-- Every stock change, with the order and step that caused it.
CREATE TABLE {schema}.movements (
    id             bigserial PRIMARY KEY,
    order_id       text NOT NULL,
    sku            text NOT NULL,
    warehouse      text NOT NULL,
    kind           text NOT NULL,
    delta_on_hand  bigint NOT NULL,
    delta_reserved bigint NOT NULL,
    at             timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX movements_order ON {schema}.movements (order_id);
