use super::*;

#[test]
fn open_waits_for_a_lock_that_is_being_let_go() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c");
    let first = Catalog::open(&path, 1 << 20).unwrap();
    // Another handle keeps the lock a while (as sled's flusher does
    // after a drop, or an agent still exiting), well within LOCK_WAIT.
    let holder = std::thread::spawn(move || {
        std::thread::sleep(std::time::Duration::from_millis(200));
        drop(first);
    });
    let second = Catalog::open(&path, 1 << 20);
    holder.join().unwrap();
    assert!(second.is_ok(), "{:?}", second.err());
}

fn cad() -> Currency {
    Currency::from_code("CAD").unwrap()
}

fn now() -> time::OffsetDateTime {
    time::OffsetDateTime::from(o2c_runtime::clock::wall())
}

#[test]
fn import_reports_bad_lines_and_serves_lookups() {
    let dir = tempfile::tempdir().unwrap();
    let cat = Catalog::open(&dir.path().join("c"), 1 << 20).unwrap();
    let input = concat!(
        r#"{"sku":"SKU-1","name":"Mug","price_minor":1499,"currency":"CAD","category":"home","stock_on_hand":7}"#,
        "\n\n",
        "not json\n",
        r#"{"sku":"SKU-2","name":"Pen","price_minor":-1,"currency":"CAD","category":"office","stock_on_hand":1}"#,
        "\n",
        r#"{"sku":"SKU-3","name":"Cup","price_minor":5,"currency":"ZZZ","category":"home","stock_on_hand":1}"#,
        "\n",
        r#"{"sku":"SKU-4","name":"Box","price_minor":5,"currency":"CAD","category":"home","stock_on_hand":1,"x":1}"#,
        "\n",
        r#"{"sku":"SKU-5","name":"Tin","active":false}"#,
        "\n",
    );
    let report = cat.import_jsonl(input.as_bytes()).unwrap();
    assert_eq!(report.imported, 2);
    let lines: Vec<u64> = report.errors.iter().map(|(l, _)| *l).collect();
    assert_eq!(lines, [3, 4, 5, 6]);
    let p = cat.get("SKU-1").unwrap().unwrap();
    assert_eq!(p.price_at(cad(), now()), Some(1499));
    assert_eq!(cat.stock("SKU-1").unwrap().unwrap().on_hand, 7);
    assert_eq!(
        cat.price("SKU-1", cad(), now()).unwrap(),
        Some((1499, cad()))
    );
    // Inactive: known, but no price for capture.
    assert!(!cat.get("SKU-5").unwrap().unwrap().active);
    assert_eq!(cat.price("SKU-5", cad(), now()).unwrap(), None);
    assert!(cat.get("SKU-2").unwrap().is_none());
    assert_eq!(cat.len(), 2);
    assert_eq!(cat.version(Kind::Catalog).unwrap(), None);
    // Re-import upserts.
    let again = r#"{"sku":"SKU-1","name":"Mug","price_minor":1599,"currency":"CAD","category":"home","stock_on_hand":6}"#;
    cat.import_jsonl(again.as_bytes()).unwrap();
    assert_eq!(cat.price("SKU-1", cad(), now()).unwrap().unwrap().0, 1599);
    // Reopened, the price cache starts empty and reads sled; the whole
    // price table older agents stored is removed.
    cat.meta.insert(LEGACY_PRICES_KEY, &b"[]"[..]).unwrap();
    drop(cat);
    let cat = Catalog::open(&dir.path().join("c"), 1 << 20).unwrap();
    assert!(cat.price_cache().is_empty());
    assert_eq!(cat.price("SKU-1", cad(), now()).unwrap().unwrap().0, 1599);
    assert_eq!(cat.price_cache().len(), 1);
    assert!(cat.meta.get(LEGACY_PRICES_KEY).unwrap().is_none());
}

fn product(sku: &str, minor: i64, active: bool) -> Product {
    Product {
        sku: sku.into(),
        name: format!("name of {sku}"),
        category: None,
        active,
        prices: vec![Price {
            currency: cad(),
            minor,
            effective_from: None,
        }],
    }
}

fn dump(cat: &Catalog) -> Vec<(String, i64, bool)> {
    cat.live_products()
        .iter()
        .map(|i| {
            let (k, v) = i.unwrap();
            let p = decode_product(&k, &v).unwrap();
            (p.sku, p.prices[0].minor, p.active)
        })
        .collect()
}

#[test]
fn a_snapshot_replaces_and_a_delta_updates() {
    let dir = tempfile::tempdir().unwrap();
    let cat = Catalog::open(&dir.path().join("c"), 1 << 20).unwrap();
    cat.import_jsonl(&br#"{"sku":"OLD","name":"Old","prices":[{"currency":"CAD","minor":1}]}"#[..])
        .unwrap();
    cat.begin(Kind::Catalog, true).unwrap();
    cat.stage_products(&[product("A", 100, true), product("B", 200, true)])
        .unwrap();
    cat.stage_products(&[product("C", 300, true)]).unwrap();
    cat.commit(Kind::Catalog, CatalogVersion(5), true).unwrap();
    assert_eq!(
        dump(&cat),
        [
            ("A".into(), 100, true),
            ("B".into(), 200, true),
            ("C".into(), 300, true)
        ]
    );
    assert_eq!(cat.version(Kind::Catalog).unwrap(), Some(CatalogVersion(5)));
    assert_eq!(cat.catalog_version(), Some(5));
    cat.begin(Kind::Catalog, false).unwrap();
    cat.stage_products(&[product("B", 250, true), product("C", 300, false)])
        .unwrap();
    cat.commit(Kind::Catalog, CatalogVersion(6), false).unwrap();
    assert_eq!(cat.price("B", cad(), now()).unwrap(), Some((250, cad())));
    assert_eq!(cat.price("C", cad(), now()).unwrap(), None);
    assert_eq!(cat.len(), 3);
    // Stock levels walk the same way.
    cat.begin(Kind::Stock, true).unwrap();
    cat.stage_stock(&[StockLevel {
        sku: "A".into(),
        on_hand: 4,
        reserved: 1,
    }])
    .unwrap();
    cat.commit(Kind::Stock, CatalogVersion(9), true).unwrap();
    assert_eq!(cat.stock("A").unwrap().unwrap().reserved, 1);
    assert_eq!(cat.version(Kind::Stock).unwrap(), Some(CatalogVersion(9)));
}

#[test]
fn a_crash_leaves_the_old_version_or_finishes_the_new_one() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c");
    let cat = Catalog::open(&path, 1 << 20).unwrap();
    cat.begin(Kind::Catalog, true).unwrap();
    cat.stage_products(&[product("A", 100, true)]).unwrap();
    cat.commit(Kind::Catalog, CatalogVersion(1), true).unwrap();
    // A snapshot staged but not committed: dropped at the next open.
    cat.begin(Kind::Catalog, true).unwrap();
    cat.stage_products(&[product("A", 999, true), product("Z", 1, true)])
        .unwrap();
    cat.flush().unwrap();
    drop(cat);
    let cat = Catalog::open(&path, 1 << 20).unwrap();
    assert_eq!(dump(&cat), [("A".into(), 100, true)]);
    assert_eq!(cat.version(Kind::Catalog).unwrap(), Some(CatalogVersion(1)));
    let trees = |cat: &Catalog| -> Vec<String> {
        let mut t: Vec<String> = cat
            .db
            .tree_names()
            .iter()
            .map(|n| String::from_utf8_lossy(n).into_owned())
            .filter(|n| n.starts_with("products"))
            .collect();
        t.sort();
        t
    };
    assert_eq!(
        trees(&cat),
        ["products", "products.g1"],
        "the dropped walk's tree is gone"
    );
    // Committed (the marker written) but not applied: finished at open.
    cat.begin(Kind::Catalog, false).unwrap();
    cat.stage_products(&[product("A", 150, true), product("B", 2, true)])
        .unwrap();
    let c = serde_json::to_vec(&serde_json::json!({"version": 2, "full": false})).unwrap();
    cat.meta.insert(&b"commit:catalog"[..], c).unwrap();
    cat.flush().unwrap();
    drop(cat);
    let cat = Catalog::open(&path, 1 << 20).unwrap();
    assert_eq!(dump(&cat), [("A".into(), 150, true), ("B".into(), 2, true)]);
    assert_eq!(cat.version(Kind::Catalog).unwrap(), Some(CatalogVersion(2)));
    assert_eq!(cat.price("A", cad(), now()).unwrap(), Some((150, cad())));
    // A snapshot committed but not swapped in: swapped in at open, and the
    // tree it replaces dropped.
    cat.begin(Kind::Catalog, true).unwrap();
    cat.stage_products(&[product("Q", 7, true)]).unwrap();
    let staging = cat.walk(Kind::Catalog).unwrap().unwrap().staging;
    let c =
        serde_json::to_vec(&serde_json::json!({"version": 3, "full": true, "staging": staging}))
            .unwrap();
    cat.meta.insert(&b"commit:catalog"[..], c).unwrap();
    cat.flush().unwrap();
    drop(cat);
    let cat = Catalog::open(&path, 1 << 20).unwrap();
    assert_eq!(dump(&cat), [("Q".into(), 7, true)]);
    assert_eq!(
        cat.catalog_version(),
        Some(3),
        "held at open after recovery"
    );
    assert_eq!(cat.version(Kind::Catalog).unwrap(), Some(CatalogVersion(3)));
    assert_eq!(cat.price("Q", cad(), now()).unwrap(), Some((7, cad())));
    assert_eq!(cat.price("A", cad(), now()).unwrap(), None);
    assert_eq!(trees(&cat), ["products", staging.as_str()]);
}

#[test]
fn a_commit_whose_apply_failed_is_finished_by_the_next_pull_not_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let cat = Catalog::open(&dir.path().join("c"), 1 << 20).unwrap();
    cat.begin(Kind::Catalog, true).unwrap();
    cat.stage_products(&[product("A", 100, true)]).unwrap();
    cat.commit(Kind::Catalog, CatalogVersion(1), true).unwrap();
    assert_eq!(cat.price("A", cad(), now()).unwrap(), Some((100, cad())));
    // A snapshot committed (the marker written) whose swap did not happen,
    // as when step 4 fails on an I/O error, in the running agent.
    cat.begin(Kind::Catalog, true).unwrap();
    cat.stage_products(&[product("A", 200, true), product("B", 5, true)])
        .unwrap();
    let staging = cat.walk(Kind::Catalog).unwrap().unwrap().staging;
    let c =
        serde_json::to_vec(&serde_json::json!({"version": 2, "full": true, "staging": staging}))
            .unwrap();
    cat.meta.insert(&b"commit:catalog"[..], c).unwrap();
    // The next pull starts: the committed change is applied, not dropped
    // as a leftover walk, and prices and the held version follow it.
    cat.begin(Kind::Catalog, false).unwrap();
    assert_eq!(cat.version(Kind::Catalog).unwrap(), Some(CatalogVersion(2)));
    assert_eq!(cat.catalog_version(), Some(2));
    assert_eq!(dump(&cat), [("A".into(), 200, true), ("B".into(), 5, true)]);
    assert_eq!(cat.price("A", cad(), now()).unwrap(), Some((200, cad())));
    cat.stage_products(&[product("C", 7, true)]).unwrap();
    cat.commit(Kind::Catalog, CatalogVersion(3), false).unwrap();
    assert_eq!(
        dump(&cat),
        [
            ("A".into(), 200, true),
            ("B".into(), 5, true),
            ("C".into(), 7, true)
        ]
    );
}

#[test]
fn reclaim_frees_what_this_thread_deferred() {
    // What sled defers when a write replaces a node: freed once no thread
    // can reach it, which a bag of fewer than 64 deferrals never is until
    // it is handed to the collector.
    let garbage = std::sync::Arc::new([0u8; 64]);
    let held = std::sync::Arc::clone(&garbage);
    crossbeam_epoch::pin().defer(move || drop(held));
    assert_eq!(std::sync::Arc::strong_count(&garbage), 2, "freed too early");
    // Another test's thread may be pinned for a while (sled pins for each
    // operation, some of which wait on the disk), which holds the epoch
    // back: more rounds until it moves on.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while std::time::Instant::now() < deadline {
        reclaim();
        if std::sync::Arc::strong_count(&garbage) == 1 {
            return;
        }
        std::thread::yield_now();
    }
    panic!("reclaim never freed what this thread deferred");
}
