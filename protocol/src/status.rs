//! An order's status as the cloud saga sees it, and its wire names: the
//! same strings in status messages (JSON), in the agent's database and in
//! its API.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// An order's status as the cloud saga sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum CloudStatus {
    /// In Kafka, saga started.
    Accepted,
    /// Payment captured.
    Paid,
    /// Stock reserved.
    InventoryConfirmed,
    /// Shipment booked.
    ShipmentScheduled,
    /// The carrier has the parcel (contract 1.6).
    Dispatched,
    /// The carrier delivered it (contract 1.6).
    Delivered,
    /// Done.
    Completed,
    /// Cancelled (see the reason).
    Cancelled,
    /// Refunded after a void.
    Refunded,
    /// A return was checked and accepted (an update about a return, with
    /// its `return`; contract 1.7).
    ReturnAccepted,
    /// A return was refused (contract 1.7).
    ReturnRefused,
    /// A return's card refund was made (contract 1.7).
    ReturnRefunded,
}

/// A string that names no [`CloudStatus`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown cloud status {0:?}")]
pub struct UnknownCloudStatus(pub String);

impl CloudStatus {
    /// Every status, in saga order.
    pub const ALL: [CloudStatus; 12] = [
        CloudStatus::Accepted,
        CloudStatus::Paid,
        CloudStatus::InventoryConfirmed,
        CloudStatus::ShipmentScheduled,
        CloudStatus::Dispatched,
        CloudStatus::Delivered,
        CloudStatus::Completed,
        CloudStatus::Cancelled,
        CloudStatus::Refunded,
        CloudStatus::ReturnAccepted,
        CloudStatus::ReturnRefused,
        CloudStatus::ReturnRefunded,
    ];

    /// The wire name (`"inventory_confirmed"`), as serde writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            CloudStatus::Accepted => "accepted",
            CloudStatus::Paid => "paid",
            CloudStatus::InventoryConfirmed => "inventory_confirmed",
            CloudStatus::ShipmentScheduled => "shipment_scheduled",
            CloudStatus::Dispatched => "dispatched",
            CloudStatus::Delivered => "delivered",
            CloudStatus::Completed => "completed",
            CloudStatus::Cancelled => "cancelled",
            CloudStatus::Refunded => "refunded",
            CloudStatus::ReturnAccepted => "return_accepted",
            CloudStatus::ReturnRefused => "return_refused",
            CloudStatus::ReturnRefunded => "return_refunded",
        }
    }

    /// Whether this status is about a return, not its order: an agent
    /// applies it to the return it names, never to the order's status.
    pub fn is_return(self) -> bool {
        matches!(
            self,
            CloudStatus::ReturnAccepted | CloudStatus::ReturnRefused | CloudStatus::ReturnRefunded
        )
    }
}

impl fmt::Display for CloudStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for CloudStatus {
    type Err = UnknownCloudStatus;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        CloudStatus::ALL
            .into_iter()
            .find(|c| c.as_str() == s)
            .ok_or_else(|| UnknownCloudStatus(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_names_match_serde_and_parse_back() {
        for c in CloudStatus::ALL {
            let json = serde_json::to_string(&c).unwrap();
            assert_eq!(json, format!("\"{}\"", c.as_str()));
            assert_eq!(serde_json::from_str::<CloudStatus>(&json).unwrap(), c);
            assert_eq!(c.as_str().parse::<CloudStatus>().unwrap(), c);
            assert_eq!(c.to_string(), c.as_str());
        }
        assert_eq!(
            "teleported".parse::<CloudStatus>(),
            Err(UnknownCloudStatus("teleported".to_owned()))
        );
        assert!("Paid".parse::<CloudStatus>().is_err());
    }
}
