//! The offline cap is in the store's currency: a sale in another currency
//! is refused, and one captured before `store.currency` existed is never
//! summed with the store's.

use o2c_protocol::Currency;

use super::*;

/// An offline card sale of `amount` minor units of `code`.
fn offline_in(code: &str, amount: i64) -> Order {
    let c = Currency::from_code(code).unwrap();
    let mut o = offline_order(amount);
    o.currency = c;
    o.lines[0].unit_price = Money::new(amount, c);
    if let Payment::Card { amount: a, .. } = &mut o.payments[0] {
        *a = Money::new(amount, c);
    }
    o
}

#[tokio::test]
async fn an_offline_sale_in_another_currency_is_refused_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut o = opts(dir.path());
    o.offline_total_cap_minor = 1000;
    let store = Store::open(o, StoreMetrics::default()).unwrap();
    let err = store
        .capture(new_capture(offline_in("JPY", 500), "jpy"))
        .await
        .unwrap_err();
    assert_eq!(
        err,
        StoreError::OfflineCurrency {
            order: Currency::from_code("JPY").unwrap(),
            store: Some(cad()),
        }
    );
    assert_eq!((store.last_seq(), store.offline_exposure_minor()), (0, 0));
    // Cash in another currency is not an offline card sale.
    let mut cash = cash_order(500);
    cash.currency = Currency::from_code("JPY").unwrap();
    cash.lines[0].unit_price = Money::new(500, cash.currency);
    cash.payments = vec![Payment::Cash {
        amount: Money::new(500, cash.currency),
    }];
    store.capture(new_capture(cash, "cash")).await.unwrap();
    store
        .capture(new_capture(offline_in("CAD", 1000), "cad"))
        .await
        .unwrap();
    assert_eq!(store.offline_exposure_minor(), 1000);
    store.close().await.unwrap();

    // Without a store currency no offline card sale is taken at all.
    let dir = tempfile::tempdir().unwrap();
    let mut o = opts(dir.path());
    o.offline_currency = None;
    let store = Store::open(o, StoreMetrics::default()).unwrap();
    let err = store
        .capture(new_capture(offline_in("CAD", 1), "cad"))
        .await
        .unwrap_err();
    assert_eq!(
        err,
        StoreError::OfflineCurrency {
            order: cad(),
            store: None,
        }
    );
    assert_eq!(store.last_seq(), 0);
    store.close().await.unwrap();
}

#[tokio::test]
async fn offline_sales_in_another_currency_from_before_never_count_against_the_cap() {
    let dir = tempfile::tempdir().unwrap();
    // A store that took 900 EUR-cents offline, then was set to CAD.
    let mut o = opts(dir.path());
    o.offline_currency = Some(Currency::from_code("EUR").unwrap());
    let store = Store::open(o.clone(), StoreMetrics::default()).unwrap();
    store
        .capture(new_capture(offline_in("EUR", 900), "eur"))
        .await
        .unwrap();
    assert_eq!(store.offline_exposure_minor(), 900);
    store.close().await.unwrap();
    o.offline_currency = Some(cad());
    o.offline_total_cap_minor = 1000;
    let store = Store::open(o.clone(), StoreMetrics::default()).unwrap();
    assert_eq!(store.offline_exposure_minor(), 0, "EUR is not CAD");
    store
        .capture(new_capture(offline_in("CAD", 600), "cad"))
        .await
        .unwrap();
    assert_eq!(store.offline_exposure_minor(), 600);
    // The ack settles both; only the CAD sale leaves the CAD exposure.
    let out = store.apply_ack(&ack(2, vec![]), 10).await.unwrap();
    assert_eq!(out.released_offline_minor, 600);
    assert_eq!(store.offline_exposure_minor(), 0);
    store.close().await.unwrap();
    let store = Store::open(o, StoreMetrics::default()).unwrap();
    assert_eq!(store.offline_exposure_minor(), 0);
    store.close().await.unwrap();
}
