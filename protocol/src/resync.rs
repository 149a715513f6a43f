//! Status resync: an agent asks the cloud again for the current status of
//! its orders, and returns (contract 1.7), that are not final yet.
//!
//! Status updates travel at QoS 1 and wait at the MQTT broker while a
//! store is away, but a broker that crashes (kill -9, power loss) loses
//! what it held in memory since its last save, after it had already
//! answered PUBACK to the cloud. No PUBACK or session flag can tell the
//! agent what was lost, so the agent asks: after every (re)connect and
//! every `sync.status_resync_secs`, it publishes a [`StatusResync`] naming
//! its open orders on its `.../resync` topic, and the cloud's status
//! publisher answers on the agent's status topic with the latest update it
//! sent for each, marked with the [`RESYNC_PROPERTY`] user property. The
//! agent applies them like any other (a repeat is ignored by its event id,
//! an older one by its sequence).
//!
//! After a broker crash, agents and the status publisher reconnect in any
//! order, and a request sent before the publisher has subscribed reaches
//! no one. So the publisher announces each subscription on
//! [`FLEET_RESYNC_TOPIC`](crate::topic::FLEET_RESYNC_TOPIC), and an agent
//! that hears it asks again (after a random delay, so a fleet does not ask
//! at once).

use serde::{Deserialize, Serialize};

use crate::frame::FrameError;
use crate::ids::{OrderId, ReturnId};

/// Most orders one request names (about 40 bytes each).
pub const MAX_RESYNC_ORDERS: usize = 256;

/// The MQTT v5 user property (value `"1"`) on a status message that
/// answers a [`StatusResync`], so the agent can count the updates it had
/// missed.
pub const RESYNC_PROPERTY: &str = "o2c-status-resync";

/// An agent's request for the current status of some of its orders and
/// returns.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, schemars::JsonSchema)]
pub struct StatusResync {
    /// The orders.
    pub orders: Vec<OrderId>,
    /// Returns it took whose status is not final yet (contract 1.7): the
    /// cloud answers with each one's latest return status. Orders and
    /// returns together are 1 to [`MAX_RESYNC_ORDERS`].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub returns: Vec<ReturnId>,
}

impl StatusResync {
    /// Encodes to JSON bytes; refuses an empty or oversized request.
    pub fn encode(&self) -> Result<Vec<u8>, FrameError> {
        self.check()?;
        serde_json::to_vec(self).map_err(|e| FrameError::Malformed(e.to_string()))
    }

    /// Decodes JSON bytes and checks the order count.
    pub fn decode(bytes: &[u8]) -> Result<StatusResync, FrameError> {
        // Far above 256 ids: refuse before parsing anything bigger.
        if bytes.len() > 64 * 1024 {
            return Err(FrameError::TooLarge(bytes.len()));
        }
        let r: StatusResync =
            serde_json::from_slice(bytes).map_err(|e| FrameError::Malformed(e.to_string()))?;
        r.check()?;
        Ok(r)
    }

    fn check(&self) -> Result<(), FrameError> {
        match self.orders.len() + self.returns.len() {
            0 => Err(FrameError::Malformed(
                "a resync names no order or return".into(),
            )),
            n if n > MAX_RESYNC_ORDERS => Err(FrameError::Malformed(format!(
                "a resync names {n} orders and returns, more than {MAX_RESYNC_ORDERS}"
            ))),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u8) -> OrderId {
        OrderId::from_parts(1_764_000_000_000, [n; 10])
    }

    #[test]
    fn round_trips_and_refuses_empty_oversized_or_foreign_requests() {
        let r = StatusResync {
            orders: vec![id(1), id(2)],
            returns: vec![],
        };
        assert_eq!(StatusResync::decode(&r.encode().unwrap()).unwrap(), r);
        // Returns only (contract 1.7); a 1.6 reader's body still decodes.
        let r = StatusResync {
            orders: vec![],
            returns: vec![ReturnId::from_parts(1_764_000_000_000, [3; 10])],
        };
        assert_eq!(StatusResync::decode(&r.encode().unwrap()).unwrap(), r);

        let empty = StatusResync::default();
        assert!(empty.encode().is_err());
        assert!(StatusResync::decode(br#"{"orders":[]}"#).is_err());

        let big = StatusResync {
            orders: (0..=MAX_RESYNC_ORDERS).map(|n| id(n as u8)).collect(),
            returns: vec![],
        };
        assert!(big.encode().is_err());
        let bytes = serde_json::to_vec(&big).unwrap();
        let e = StatusResync::decode(&bytes).unwrap_err();
        assert!(e.to_string().contains("257 orders and returns"), "{e}");

        for bad in [
            &br#"{"orders":["not-an-id"]}"#[..],
            br#"{"orders":[],"store":"S1"}"#,
            b"[1,2]",
            b"",
        ] {
            assert!(StatusResync::decode(bad).is_err(), "{bad:?}");
        }
        assert!(matches!(
            StatusResync::decode(&vec![b' '; 70_000]),
            Err(FrameError::TooLarge(70_000))
        ));
    }
}
