use super::*;

fn page(json: &str) -> Vec<u8> {
    json.as_bytes().to_vec()
}

const MUG: &str = r#"{"sku":"B","name":"Mug","prices":[{"currency":"CAD","minor":1500}]}"#;

#[test]
fn a_snapshot_page_parses_and_orders_prices() {
    let body = page(&format!(
        r#"{{"version":7,"full":true,"products":[{{"sku":"A","name":"Pen","prices":[
            {{"currency":"CAD","minor":300,"effective_from":"2026-12-10T00:00:00Z"}},
            {{"currency":"CAD","minor":250}}]}},{MUG}],"next_after":"B"}}"#
    ));
    let p = CatalogPage::parse(&body, None, None).unwrap();
    assert_eq!(p.version, CatalogVersion(7));
    assert_eq!(p.products[0].prices[0].minor, 250);
    let cad = Currency::from_code("CAD").unwrap();
    let before = time::macros::datetime!(2026-12-09 23:59 UTC);
    let after = time::macros::datetime!(2026-12-10 00:00 UTC);
    assert_eq!(p.products[0].price_at(cad, before), Some(250));
    assert_eq!(p.products[0].price_at(cad, after), Some(300));
    let eur = Currency::from_code("EUR").unwrap();
    assert_eq!(p.products[0].price_at(eur, after), None);
}

#[test]
fn bad_pages_are_refused_whole() {
    let cases = [
        ("not json", "not a catalog page"),
        (
            r#"{"version":7,"full":true,"products":[{"sku":"A","name":"x","prices":[{"currency":"CAD","minor":-1}]}]}"#,
            "must not be negative",
        ),
        (
            r#"{"version":7,"full":true,"products":[{"sku":"A","name":"x","prices":[{"currency":"ZZZ","minor":1}]}]}"#,
            "not a catalog page",
        ),
        (
            &format!(r#"{{"version":7,"full":true,"products":[{MUG},{MUG}]}}"#),
            "out of order",
        ),
        (
            r#"{"version":7,"full":false,"products":[]}"#,
            "without `since`",
        ),
        (
            r#"{"version":7,"full":true,"products":[{"sku":"A","name":"x","active":true}]}"#,
            "needs a price",
        ),
        (
            r#"{"version":7,"full":true,"products":[{"sku":"A","name":"4111111111111111","active":false}]}"#,
            "card number",
        ),
    ];
    for (body, want) in cases {
        let e = CatalogPage::parse(body.as_bytes(), Some(CatalogVersion(3)), None).unwrap_err();
        assert!(e.to_string().contains(want), "{body}: {e}");
    }
    // Backwards, and a delta that starts after what the client has.
    let old = r#"{"version":2,"full":true,"products":[]}"#;
    assert!(matches!(
        CatalogPage::parse(old.as_bytes(), Some(CatalogVersion(3)), None),
        Err(PageError::Backwards { .. })
    ));
    let gap = r#"{"version":9,"since":5,"full":false,"products":[]}"#;
    assert!(matches!(
        CatalogPage::parse(gap.as_bytes(), Some(CatalogVersion(3)), None),
        Err(PageError::Gap { .. })
    ));
    assert!(CatalogPage::parse(gap.as_bytes(), Some(CatalogVersion(5)), None).is_ok());
    // A page must continue after the previous page's last SKU.
    let next = format!(r#"{{"version":7,"full":true,"products":[{MUG}]}}"#);
    assert!(CatalogPage::parse(next.as_bytes(), None, Some("A")).is_ok());
    assert!(matches!(
        CatalogPage::parse(next.as_bytes(), None, Some("B")),
        Err(PageError::Order(_))
    ));
}

#[test]
fn hint_topic_names_the_store() {
    let store = StoreId::new("S001").unwrap();
    assert_eq!(hint_topic(&store), "o2c/v1/stores/S001/catalog");
    let hint: CatalogHint =
        serde_json::from_str(r#"{"catalog_version":4,"stock_version":9}"#).unwrap();
    assert_eq!(hint.stock_version, CatalogVersion(9));
}
