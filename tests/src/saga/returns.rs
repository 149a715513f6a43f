//! Returns at a store's till, for the tests: `POST
//! /v1/orders/{id}/returns` and waiting on `GET /v1/returns/{id}`.

use std::time::Duration;

use serde_json::{Value, json};

use super::{agent_base, http_err};
use crate::HarnessError;
use crate::pipeline::{AgentProc, TERMINAL_TOKEN};
use crate::wait::wait_for_value;

/// A return body from till `T1`: `(sku, quantity)` lines, `refund` as the
/// API takes it (e.g. `{"method": "cash"}`).
pub fn return_body(lines: &[(&str, i64)], refund: Value) -> Value {
    let lines: Vec<Value> = lines
        .iter()
        .map(|(sku, quantity)| json!({"sku": sku, "quantity": quantity}))
        .collect();
    json!({"terminal_id": "T1", "lines": lines, "refund": refund, "reason": "damaged"})
}

/// A card refund to token `token`.
pub fn card_refund(token: &str) -> Value {
    json!({"method": "card", "token": token, "brand": "visa", "last4": "4242"})
}

/// `POST /v1/orders/{order_id}/returns` with `key`: the status and body.
pub async fn request_return(
    agent: &AgentProc,
    order_id: &str,
    key: &str,
    body: &Value,
) -> Result<(u16, Value), HarnessError> {
    let r = reqwest::Client::new()
        .post(format!(
            "{}/v1/orders/{order_id}/returns",
            agent_base(agent)?
        ))
        .bearer_auth(TERMINAL_TOKEN)
        .header("Idempotency-Key", key)
        .json(body)
        .send()
        .await
        .map_err(http_err)?;
    let status = r.status().as_u16();
    Ok((status, r.json().await.unwrap_or(Value::Null)))
}

/// Waits until the agent shows `cloud_status` for the return; its view.
pub async fn wait_return(
    agent: &AgentProc,
    return_id: &str,
    cloud_status: &str,
    timeout: Duration,
) -> Result<Value, HarnessError> {
    wait_for_value(
        &format!("return {return_id} cloud_status {cloud_status}"),
        || async {
            let v = agent
                .get(&format!("/v1/returns/{return_id}"))
                .await
                .unwrap_or(Value::Null);
            (v["cloud_status"] == cloud_status, v)
        },
        timeout,
    )
    .await
    .map_err(|(e, last)| HarnessError::Pipeline(format!("{e}; last seen {last:?}")))
}
