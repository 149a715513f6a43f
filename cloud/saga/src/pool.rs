//! [`Pg`]: the saga's PostgreSQL connections, one lane per order.

use tokio::sync::{MappedMutexGuard, Mutex, MutexGuard};

use crate::db;
use crate::db::DbError;

/// A few PostgreSQL connections ("lanes"), picked by order id so one
/// order's steps use one connection; a broken connection is replaced on
/// the next use.
#[derive(Debug)]
pub struct Pg {
    url: String,
    lanes: Vec<Mutex<Option<db::Lane>>>,
}

impl Pg {
    pub fn new(url: &str, lanes: usize) -> Self {
        Self {
            url: url.to_owned(),
            lanes: (0..lanes.max(1)).map(|_| Mutex::new(None)).collect(),
        }
    }

    /// How many lanes.
    pub fn lanes(&self) -> usize {
        self.lanes.len()
    }

    /// The lane index of `key` (an order id).
    pub fn lane_of(&self, key: &str) -> usize {
        let h = key.bytes().fold(0usize, |h, b| {
            h.wrapping_mul(31).wrapping_add(usize::from(b))
        });
        h % self.lanes.len()
    }

    /// The connection of `key`'s lane.
    pub async fn get(&self, key: &str) -> Result<MappedMutexGuard<'_, db::Lane>, DbError> {
        self.lane(self.lane_of(key)).await
    }

    /// Lane `i` (from [`Pg::lane_of`]).
    pub async fn lane(&self, i: usize) -> Result<MappedMutexGuard<'_, db::Lane>, DbError> {
        let lane = &self.lanes[i % self.lanes.len()];
        let mut guard = lane.lock().await;
        if guard.as_ref().is_none_or(db::Lane::is_closed) {
            *guard = Some(db::Lane::connect(&self.url).await?);
        }
        MutexGuard::try_map(guard, Option::as_mut).map_err(|_| DbError::Closed("postgres lane"))
    }
}
