//! Issue 15: kill -9 of the agent while it pulls a large catalog delta
//! leaves its catalog at exactly the version before, and a stop part-way
//! through applying it (after the commit point) exactly the version after,
//! both checked by content; restarted, it catches up.

use std::time::Duration;

use o2c_agent::catalog::{Catalog, FAULT_ABORT_MID_APPLY, Kind};
use o2c_protocol::Currency;
use o2c_tests::catalog::{CatalogProc, CatalogWorld, wait_catalog_version};
use o2c_tests::pipeline::AgentProc;
use serde_json::json;

const SKUS: usize = 20_000;

/// Version `version` of the catalog: every product at `minor`.
fn catalog_text(version: u32, minor: i64) -> String {
    let mut text = String::with_capacity(SKUS * 100);
    for i in 0..SKUS {
        text.push_str(&format!(
            "{{\"sku\":\"SKU-{i:06}\",\"name\":\"Item {i} v{version}\",\"prices\":[{{\"currency\":\"CAD\",\"minor\":{minor}}}]}}\n"
        ));
    }
    text
}

fn import(w: &CatalogWorld, version: u32, minor: i64) {
    w.import(&format!("v{version}.jsonl"), &catalog_text(version, minor));
}

async fn served_pages(cat: &CatalogProc) -> u64 {
    let text = cat.metrics().await.unwrap_or_default();
    text.lines()
        .find(|l| l.starts_with(r#"o2c_catalog_requests_total{route="catalog",code="200"}"#))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

async fn wait_version(agent: &AgentProc, version: u64) {
    wait_catalog_version(agent, version, Duration::from_secs(60)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_delta_leaves_the_old_version_or_the_new_one() {
    let mut w = CatalogWorld::start(
        &[("S001", "S001-A1")],
        "catalog_crash",
        "page_size = 500",
        "",
    )
    .await;
    import(&w, 1, 100);
    let mut agent = w.agent("S001", "S001-A1", "").await;
    wait_version(&agent, 1).await;

    // Killed part-way through the delta's pages (a random number of its
    // 40): the old version.
    let pages = 1 + rand::random::<u64>() % 39;
    let before = served_pages(&w.cat).await;
    import(&w, 2, 200);
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while served_pages(&w.cat).await < before + pages && std::time::Instant::now() < deadline {
        tokio::task::yield_now().await;
    }
    agent.kill().expect("kill -9");
    w.cat.kill().expect("stop the catalog service");
    let got = check_after_kill(&agent, 2, 200, &format!("after {pages} page(s)"));
    eprintln!("killed after {pages} page(s) of the delta to 2: the catalog was at {got}");
    w.cat.restart().await.expect("restart catalog");
    agent.restart().await.expect("restart agent");
    wait_version(&agent, 2).await;
    let p = agent.get("/v1/products/SKU-019999").await.expect("product");
    assert_eq!(p["price_minor"], json!(200), "{p}");

    // Stopped dead part-way through applying the committed delta (fault
    // injection: the process aborts after the first of its batches): the
    // restart finishes it, the new version whole.
    agent
        .restart_with_env(&[(FAULT_ABORT_MID_APPLY, "1")])
        .await
        .expect("restart armed");
    import(&w, 3, 300);
    agent
        .wait_exit(Duration::from_secs(60))
        .await
        .expect("the agent aborts mid-apply");
    w.cat.kill().expect("stop the catalog service");
    let got = check_after_kill(&agent, 3, 300, "mid-apply");
    assert_eq!(got, 3, "a committed delta is finished at restart");
    w.cat.restart().await.expect("restart catalog");
    agent.restart().await.expect("restart agent");
    wait_version(&agent, 3).await;
}

/// Opens the killed agent's catalog as the agent would at restart: it is
/// at `version - 1` or `version`, all of it; returns which.
fn check_after_kill(agent: &AgentProc, version: u64, minor: i64, when: &str) -> u64 {
    let catalog_dir = agent.db_path().parent().expect("data dir").join("catalog");
    let opened = Catalog::open(&catalog_dir, 4 << 20).expect("open the catalog");
    let got = opened
        .version(Kind::Catalog)
        .expect("version")
        .expect("a version")
        .0;
    assert!(got == version - 1 || got == version, "version {got}");
    let want = if got == version { minor } else { minor - 100 };
    let cad = Currency::from_code("CAD").expect("CAD");
    let mut n = 0;
    for p in opened.products() {
        let p = p.expect("product");
        assert_eq!(
            (
                p.prices[0].minor,
                p.prices[0].currency,
                p.name.ends_with(&format!("v{got}"))
            ),
            (want, cad, true),
            "{} after a kill {when} of the delta to {version} (found {got})",
            p.sku
        );
        n += 1;
    }
    assert_eq!(n, SKUS, "products at version {got}");
    let at = time::OffsetDateTime::now_utc();
    assert_eq!(
        opened.price("SKU-000000", cad, at).expect("price"),
        Some((want, cad))
    );
    got
}
