//! TEMPORARY local reproduction of the issue-21 stall (not committed).
use std::time::Duration;

use o2c_tests::saga::{SagaWorld, Tender, capture, cloud_status, order_body, wait_status};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stall_repro() {
    let load = std::env::var("REPRO_LOAD").is_ok();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut burners = Vec::new();
    if load {
        for _ in 0..2 {
            let s = stop.clone();
            burners.push(std::thread::spawn(move || {
                let mut x = 0u64;
                while !s.load(std::sync::atomic::Ordering::Relaxed) {
                    x = x.wrapping_mul(31).wrapping_add(7);
                    std::hint::black_box(x);
                }
            }));
        }
    }
    let mut w = SagaWorld::start(&["all"], "", "").await.expect("world");
    let mut ids = Vec::new();
    for i in 0..300 {
        let body = order_body("SKU-R", 1, &Tender::Card(format!("tok_r_{i}")), i % 4 == 3);
        ids.push(capture(&w.agent, &format!("r{i}"), &body).await.unwrap());
    }
    let mut rng = 12345u64;
    for k in 0..6 {
        rng = rng
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let ms = 1000 + (rng >> 33) % 2000;
        tokio::time::sleep(Duration::from_millis(ms)).await;
        eprintln!("kill {k}");
        w.sagas[0].kill().unwrap();
        w.sagas[0].restart().await.unwrap();
    }
    let mut stuck = Vec::new();
    for id in &ids {
        if wait_status(&w.agent, id, "completed", Duration::from_secs(90))
            .await
            .is_err()
        {
            stuck.push((
                id.clone(),
                cloud_status(&w.agent, id).await.ok().and_then(|s| s.0),
            ));
        }
        if !stuck.is_empty() {
            break;
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    if !stuck.is_empty() {
        let _ = std::process::Command::new("cp")
            .arg("-r")
            .arg(w.env.path())
            .arg("/tmp/stall-fail")
            .status();
        panic!(
            "stuck: {stuck:?} prefix={} brokers={}",
            w.env.prefix(),
            w.brokers
        );
    }
}
