-- Shipments at the carrier (issue 20). The shipping step inserts a row
-- when it schedules a ship-to-home order (in the transaction that emits
-- ShipmentScheduled) and flags it when the order is cancelled; the
-- tracker books it at the carrier, follows it to delivery and emits
-- ShipmentDispatched, ShipmentDelivered or ShipmentCancelled, each in the
-- transaction that records the new state (only the holder of the row's
-- current lease may).
CREATE TABLE {schema}.shipments (
    order_id         text PRIMARY KEY,
    shipment_id      text NOT NULL UNIQUE,
    -- to_book | booked | dispatched | delivered | cancelled | failed
    state            text NOT NULL DEFAULT 'to_book',
    -- The order was cancelled: cancel at the carrier if not yet dispatched.
    cancel_requested boolean NOT NULL DEFAULT false,
    -- The carrier's booking request (address and units).
    request          jsonb NOT NULL,
    -- The envelope that scheduled it: the events the tracker emits are
    -- caused by it (same store, agent and trace).
    cause            bytea NOT NULL,
    carrier          text,
    tracking_number  text,
    -- Carrier calls that failed in a row, and the last failure.
    attempts         integer NOT NULL DEFAULT 0,
    -- Booking calls made (a crash may leave one made but not recorded).
    book_calls       integer NOT NULL DEFAULT 0,
    last_error       text,
    next_at          timestamptz NOT NULL DEFAULT now(),
    lease_until      timestamptz,
    lease_token      bigint,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now()
);

-- The tracker's claim: open shipments due now.
CREATE INDEX shipments_due ON {schema}.shipments (next_at)
    WHERE state IN ('to_book', 'booked', 'dispatched');
