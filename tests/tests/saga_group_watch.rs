//! The consumer-group watchdog (issue 21): a group that stops consuming
//! part of its subscription is reported, not silent.
//!
//! A "ghost" member joins the inventory service's consumer group from this
//! test, takes its share of the partitions and then never fetches (its
//! librdkafka thread keeps heartbeating, so the coordinator keeps it in the
//! group). Card orders whose `payments.captured` lands on a ghost partition
//! stop at `paid`. The inventory service, whose own partitions keep
//! committing, must then say so within `group_orphan_after_ms` (the 10-minute
//! stall threshold never comes into play): `/readyz` 503 naming the group,
//! `o2c_saga_consumer_stalled_partitions` above zero, and rejoin attempts
//! counted. Once the ghost leaves, the group rebalances,
//! every order completes and `/readyz` is 200 again.

use std::time::Duration;

use o2c_tests::saga::{SagaWorld, Tender, capture, cloud_status, order_body, wait_status};
use o2c_tests::wait_until_named;
use rdkafka::consumer::{BaseConsumer, Consumer};

const SAGA: Duration = Duration::from_secs(120);

/// A member of `group` subscribed to `topics` that, once it holds an
/// assignment, never polls again.
fn ghost(brokers: &str, group: &str, topics: &[String]) -> BaseConsumer {
    let c: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", "10000")
        .set("max.poll.interval.ms", "600000")
        .create()
        .expect("ghost consumer");
    let refs: Vec<&str> = topics.iter().map(String::as_str).collect();
    c.subscribe(&refs).expect("subscribe");
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    // Poll only until the first assignment arrives, then stop fetching.
    while c.assignment().map(|a| a.count()).unwrap_or(0) == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the ghost got no assignment in 60 s"
        );
        let _ = c.poll(Duration::from_millis(100));
    }
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_that_stops_fetching_makes_the_service_not_ready_until_it_leaves() {
    let w = SagaWorld::start(
        &["all"],
        // The stall threshold is out of reach: the early stall of another
        // member's partition while this one commits is what must act.
        "group_check_ms = 500\ngroup_stall_after_ms = 600000\ngroup_unowned_after_ms = 3000\ngroup_orphan_after_ms = 3000",
        "",
    )
    .await
    .expect("world");
    let saga = &w.sagas[0];
    assert_eq!(saga.readyz().await.unwrap().0, 200);

    let group = format!("{}-inventory", w.env.prefix());
    let topics: Vec<String> = ["orders.created", "payments.captured", "orders.cancelled"]
        .iter()
        .map(|t| w.env.topic(t))
        .collect();
    let (brokers, g, t) = (w.brokers.clone(), group.clone(), topics.clone());
    let ghost = tokio::task::spawn_blocking(move || ghost(&brokers, &g, &t))
        .await
        .unwrap();

    // Enough orders that every partition of payments.captured gets some.
    let mut ids = Vec::new();
    for i in 0..24 {
        let body = order_body("SKU-G", 1, &Tender::Card(format!("tok_g_{i}")), false);
        ids.push(capture(&w.agent, &format!("g{i}"), &body).await.unwrap());
    }

    if let Err(e) = wait_until_named(
        "inventory /readyz 503 naming its group",
        || async {
            saga.readyz()
                .await
                .is_ok_and(|(code, body)| code == 503 && body.contains("groups=inventory"))
        },
        SAGA,
    )
    .await
    {
        panic!("{e}: {:?}\n{}", saga.readyz().await, w.logs());
    }
    let stalled = w
        .metric("o2c_saga_consumer_stalled_partitions{service=\"inventory\"}")
        .await;
    assert!(stalled >= 1.0, "stalled partitions: {stalled}");
    let text = saga.metrics().await.unwrap();
    assert!(
        text.contains(&format!(
            "o2c_saga_consumer_lag{{service=\"inventory\",topic=\"{}\"}}",
            topics[1]
        )),
        "lag per topic is exported:\n{text}"
    );
    assert!(
        w.metric("o2c_saga_consumer_rejoins_total{service=\"inventory\"}")
            .await
            >= 1.0,
        "a member stalled behind another member rejoins"
    );
    // Some orders wait behind the ghost.
    let mut waiting = 0;
    for id in &ids {
        if cloud_status(&w.agent, id).await.unwrap().0.as_deref() != Some("completed") {
            waiting += 1;
        }
    }
    assert!(waiting > 0, "the ghost held no order back");

    // The ghost leaves: the group rebalances and everything completes.
    tokio::task::spawn_blocking(move || {
        ghost.unsubscribe();
        drop(ghost);
    })
    .await
    .unwrap();
    for id in &ids {
        if let Err(e) = wait_status(&w.agent, id, "completed", SAGA).await {
            panic!(
                "{e}: now {:?}\n{}",
                cloud_status(&w.agent, id).await,
                w.logs()
            );
        }
    }
    if let Err(e) = wait_until_named(
        "inventory /readyz 200 again",
        || async { saga.readyz().await.is_ok_and(|(code, _)| code == 200) },
        SAGA,
    )
    .await
    {
        panic!("{e}: {:?}\n{}", saga.readyz().await, w.logs());
    }
    assert_eq!(
        w.metric("o2c_saga_consumer_stalled_partitions{service=\"inventory\"}")
            .await,
        0.0
    );
}
