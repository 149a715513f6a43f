//! Which partitions this instance reads, and where it resumes.
//!
//! The service commits its offsets to Kafka under its group id (manual
//! commits), but takes its partitions by explicit assignment instead of
//! the group coordinator: instance `i` of `n` reads every partition `p`
//! with `p % n == i` of every topic, from the group's committed offset.
//! Tansu 0.6's coordinator cannot read a group's stored state back after
//! one of its members is killed (`expected struct GroupDetail`), and then
//! resets every JoinGroup of that group: a kill -9 would stop analytics
//! for good. Assignment by instance number needs no coordinator; scale out
//! by running `n` instances (a StatefulSet's ordinals). Partitions added
//! later are picked up by [`refresh`].

use std::collections::HashSet;
use std::time::Duration;

use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::{Offset, TopicPartitionList};

use o2c_runtime::kafka::TracingContext;

/// Longest wait of one metadata or offset request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// A topic partition.
pub type Tp = (String, i32);

/// Whether instance `instance` of `instances` reads `partition`.
pub fn owns(partition: i32, instance: u32, instances: u32) -> bool {
    let n = i64::from(instances.max(1));
    i64::from(partition).rem_euclid(n) == i64::from(instance)
}

/// Adds to `c`'s assignment the partitions of `topics` this instance owns
/// and does not read yet (`assigned`), each from the group's committed
/// offset (the beginning when it has none). Blocking (network round
/// trips). Returns the partitions added.
pub fn refresh(
    c: &StreamConsumer<TracingContext>,
    topics: &[String],
    instance: u32,
    instances: u32,
    assigned: &HashSet<Tp>,
) -> Result<Vec<Tp>, KafkaError> {
    let mut wanted = TopicPartitionList::new();
    let mut added = Vec::new();
    for topic in topics {
        let md = c.fetch_metadata(Some(topic), REQUEST_TIMEOUT)?;
        for p in md.topics().iter().flat_map(|t| t.partitions()) {
            let tp = (topic.clone(), p.id());
            if owns(p.id(), instance, instances) && !assigned.contains(&tp) {
                wanted.add_partition(topic, p.id());
                added.push(tp);
            }
        }
    }
    if added.is_empty() {
        return Ok(added);
    }
    let committed = c.committed_offsets(wanted, REQUEST_TIMEOUT)?;
    let mut from = TopicPartitionList::new();
    for e in committed.elements() {
        let offset = match e.offset() {
            Offset::Offset(o) => Offset::Offset(o),
            _ => Offset::Beginning,
        };
        from.add_partition_offset(e.topic(), e.partition(), offset)?;
    }
    c.incremental_assign(&from)?;
    Ok(added)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_partition_has_exactly_one_owner() {
        for instances in 1..5 {
            for p in 0..24 {
                let owners = (0..instances).filter(|i| owns(p, *i, instances)).count();
                assert_eq!(owners, 1, "partition {p} of {instances} instances");
            }
        }
        assert!(owns(5, 0, 0), "0 instances reads as 1");
    }
}
