//! `o2c-cloud catalog import` against a real PostgreSQL (issue 15, the
//! master data): versions move only when something changes, a file may
//! deactivate SKUs, and a file with a bad line is refused whole.

use std::path::{Path, PathBuf};

use o2c_tests::TestEnv;
use o2c_tests::saga::cloud_command;

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).expect("write");
    p
}

async fn products(pg: &str) -> Vec<(String, bool, i64, String)> {
    let (client, conn) = tokio_postgres::connect(pg, tokio_postgres::NoTls)
        .await
        .expect("connect");
    tokio::spawn(conn);
    client
        .query(
            "SELECT sku, active, version, prices::text FROM o2c_catalog.products ORDER BY sku",
            &[],
        )
        .await
        .expect("products")
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn imports_are_versioned_idempotent_and_all_or_nothing() {
    let env = TestEnv::new();
    env.require_postgres().await;
    let pg = env.create_database("catalog").await.expect("database");
    let config = write(
        env.path(),
        "cloud.toml",
        &format!(
            "[mqtt]\nurl = \"mqtt://127.0.0.1:1\"\n[kafka]\nbrokers = \"127.0.0.1:1\"\n\
             [postgres]\nurl = \"{pg}\"\n"
        ),
    );
    let import = |file: &Path| {
        cloud_command(&config, &["catalog", "import", &file.to_string_lossy()]).expect("run")
    };

    let first = write(
        env.path(),
        "first.jsonl",
        r#"{"sku":"SKU-1","name":"Widget","category":"tools","prices":[{"currency":"CAD","minor":1000},{"currency":"USD","minor":750}]}
{"sku":"SKU-2","name":"Gadget","prices":[{"currency":"CAD","minor":2500,"effective_from":"2026-12-01T00:00:00Z"}]}
"#,
    );
    let (code, out) = import(&first);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("catalog version 1: 2 product(s) changed, 0 unchanged"),
        "{out}"
    );
    // The same file again changes nothing, not even the version.
    let (code, out) = import(&first);
    assert_eq!(code, 0);
    assert!(
        out.contains("catalog version 1: 0 product(s) changed, 2 unchanged"),
        "{out}"
    );

    // A CSV file deactivates SKU-2 and keeps SKU-1 as it is.
    let csv = write(
        env.path(),
        "second.csv",
        "sku,name,category,active,currency,minor,effective_from\n\
         SKU-1,Widget,tools,true,USD,750,\n\
         SKU-1,Widget,tools,true,CAD,1000,\n\
         SKU-2,Gadget,,false,,,\n",
    );
    let (code, out) = import(&csv);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("catalog version 2: 1 product(s) changed, 1 unchanged"),
        "{out}"
    );
    let rows = products(&pg).await;
    assert_eq!(rows.len(), 2);
    assert_eq!(
        (rows[0].1, rows[0].2),
        (true, 1),
        "SKU-1 untouched: {rows:?}"
    );
    assert_eq!(
        (rows[1].1, rows[1].2),
        (false, 2),
        "SKU-2 deactivated: {rows:?}"
    );

    // A bad line anywhere: nothing of the file is applied, each named.
    let bad = write(
        env.path(),
        "bad.jsonl",
        r#"{"sku":"SKU-1","name":"Widget","category":"tools","prices":[{"currency":"CAD","minor":999}]}
{"sku":"SKU-3","name":"Bad","prices":[{"currency":"CAD","minor":-1}]}
"#,
    );
    let (code, _) = import(&bad);
    assert_eq!(code, 2, "a bad file exits 2");
    assert_eq!(products(&pg).await, rows, "nothing applied");
}
