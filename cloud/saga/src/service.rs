//! [`Service`]: the database-backed saga services, their names and
//! schemas.

use std::fmt;

use crate::{channel, inventory, notice, order, payment, shipping, state};

/// One saga service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Service {
    /// Decides completion and cancellation.
    Order,
    /// Captures and refunds.
    Payment,
    /// Holds, confirms and releases stock.
    Inventory,
    /// Books and cancels shipments.
    Shipping,
    /// Projects the order history into each order's latest state.
    State,
    /// The cloud order API's side of the saga (`o2c-cloud api`): relays
    /// its outbox (web and mobile orders, their cancellations) and projects
    /// its orders' history for its reads ([`crate::channel`]). Not in
    /// [`Service::ALL`]: it runs in the API's process.
    Api,
    /// Customer notifications (`o2c-cloud notify`): projects the order
    /// history into the messages to send ([`crate::notice`]); its sender
    /// is crate `o2c-notify`. Not in [`Service::ALL`]: it runs in its own
    /// process.
    Notify,
}

impl Service {
    /// Every database-backed service.
    pub const ALL: [Service; 5] = [
        Service::Order,
        Service::Payment,
        Service::Inventory,
        Service::Shipping,
        Service::State,
    ];

    /// Its name (CLI, consumer group, metrics).
    pub fn name(self) -> &'static str {
        match self {
            Service::Order => "order",
            Service::Payment => "payment",
            Service::Inventory => "inventory",
            Service::Shipping => "shipping",
            Service::State => "state",
            Service::Api => "api",
            Service::Notify => "notify",
        }
    }

    /// Its PostgreSQL schema.
    pub fn schema(self) -> &'static str {
        match self {
            Service::Order => order::SCHEMA,
            Service::Payment => payment::SCHEMA,
            Service::Inventory => inventory::SCHEMA,
            Service::Shipping => shipping::SCHEMA,
            Service::State => state::SCHEMA,
            Service::Api => channel::SCHEMA,
            Service::Notify => notice::SCHEMA,
        }
    }
}

impl fmt::Display for Service {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}
