//! Stored orders as the API shows them.

use o2c_order_http::{customer_body, fulfillment_body, line_view, payment_view};
use o2c_protocol::{CloudStatus, Order, SalesChannel, StockCheck};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::model::{
    ChannelBody, CreatedOrder, HistoryEntry, OrderDetail, OrderSummary, StatusBody, StockCheckBody,
};
use crate::store::{HistoryRow, OrderRow};

fn rfc3339(t: OffsetDateTime) -> String {
    // Every time here is a real clock's or a stored one's, within RFC
    // 3339's years.
    t.format(&Rfc3339)
        .unwrap_or_else(|_| t.unix_timestamp().to_string())
}

fn at_ms(ms: i64) -> String {
    let t = OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH);
    rfc3339(t)
}

fn channel(c: SalesChannel) -> ChannelBody {
    match c {
        SalesChannel::Mobile => ChannelBody::Mobile,
        // The API writes web and mobile orders only.
        SalesChannel::Web | SalesChannel::Pos => ChannelBody::Web,
    }
}

fn total(o: &Order) -> i64 {
    // Validated at creation: the total fits.
    o.total().map(|m| m.minor).unwrap_or(0)
}

/// A status's wire name as the API's enum.
pub fn status(name: Option<&str>) -> StatusBody {
    match name.and_then(|n| n.parse::<CloudStatus>().ok()) {
        Some(CloudStatus::Accepted) => StatusBody::Accepted,
        Some(CloudStatus::Paid) => StatusBody::Paid,
        Some(CloudStatus::InventoryConfirmed) => StatusBody::InventoryConfirmed,
        Some(CloudStatus::ShipmentScheduled) => StatusBody::ShipmentScheduled,
        Some(CloudStatus::Dispatched) => StatusBody::Dispatched,
        Some(CloudStatus::Delivered) => StatusBody::Delivered,
        Some(CloudStatus::Completed) => StatusBody::Completed,
        Some(CloudStatus::Cancelled) => StatusBody::Cancelled,
        Some(CloudStatus::Refunded) => StatusBody::Refunded,
        // Never an order's stored status (a return's status is the
        // return's: o2c_saga::state::record_for leaves them out); were one
        // read, its order had settled, as returns are decided only then.
        Some(
            CloudStatus::ReturnAccepted | CloudStatus::ReturnRefused | CloudStatus::ReturnRefunded,
        ) => StatusBody::Completed,
        None => StatusBody::Received,
    }
}

/// The 201 of a new order.
pub fn created(o: &Order, now: OffsetDateTime) -> CreatedOrder {
    CreatedOrder {
        order_id: o.order_id.to_string(),
        status: StatusBody::Received,
        channel: channel(o.channel.unwrap_or(SalesChannel::Web)),
        currency: o.currency.to_string(),
        total_minor: total(o),
        stock_check: o.stock_check.map(|s| match s {
            StockCheck::Verified => StockCheckBody::Verified,
            StockCheck::Unverified => StockCheckBody::Unverified,
        }),
        created_at: rfc3339(now),
    }
}

fn entry(h: &HistoryRow) -> HistoryEntry {
    HistoryEntry {
        event_id: h.event_id.clone(),
        event_type: h.event_type.clone(),
        status: h.status.as_deref().map(|s| status(Some(s))),
        detail: h.detail.clone(),
        occurred_at: at_ms(h.occurred_ms),
    }
}

/// `GET /v1/orders/{order_id}`.
pub fn detail(row: &OrderRow) -> OrderDetail {
    let o = &row.order;
    let latest = row.latest();
    OrderDetail {
        order_id: o.order_id.to_string(),
        channel: channel(row.channel),
        currency: o.currency.to_string(),
        total_minor: total(o),
        created_at: at_ms(row.created_ms),
        lines: o.lines.iter().map(line_view).collect(),
        payments: o.payments.iter().map(payment_view).collect(),
        fulfillment: fulfillment_body(&o.fulfillment),
        customer: o.customer.as_ref().map(customer_body),
        status: status(latest.and_then(|h| h.status.as_deref())),
        reason: latest.and_then(|h| h.reason.clone()),
        cancel_requested: row.cancel_requested,
        history: row.history.iter().map(entry).collect(),
    }
}

/// A row of `GET /v1/customers/me/orders`.
pub fn summary(row: &OrderRow) -> OrderSummary {
    let o = &row.order;
    OrderSummary {
        order_id: o.order_id.to_string(),
        channel: channel(row.channel),
        currency: o.currency.to_string(),
        total_minor: total(o),
        created_at: at_ms(row.created_ms),
        status: status(row.latest().and_then(|h| h.status.as_deref())),
    }
}
