//! Returns (contract 1.7): what a store sends when goods come back
//! ([`ReturnRequested`]), what the cloud answers ([`ReturnAccepted`],
//! [`ReturnRefused`]), and the one check both sides run ([`assess`]).
//!
//! A return names the order it gives back from, which may be another
//! store's or a web order (buy online, return in store): it is the one
//! store event that may reference an order its store did not create
//! ([`crate::EventType::needs_order_owner`]). Its lines name SKUs and
//! units; the amount is never sent by the store but computed from the
//! order's prices, here, by whoever checks it: the agent for its own
//! orders (an answer at the till), the cloud's order service for every
//! order (the authority, which also sees the other stores' returns).
//!
//! The refund tender is the original card by its token (refunded at the
//! processor against that tender's capture), cash, or a gift card loaded at
//! the till. Like a payment, a tender refuses fields it does not know.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::ids::{OrderId, ReturnId, TerminalId};
use crate::money::{Money, MoneyError};
use crate::order::{Order, Payment};
use crate::validate::{MAX_LINES, MAX_QUANTITY, MAX_REASON_LEN, MAX_SKU_LEN, MAX_TOKEN_LEN};
use crate::validate::{ValidationError, ValidationErrors, check_text};

/// One returned SKU.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ReturnLine {
    /// The SKU, as sold on the order.
    pub sku: String,
    /// Units given back, at least 1.
    pub quantity: i64,
}

/// How the customer gets the money back. Never card data: a token, the
/// brand and the last four digits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(tag = "method", rename_all = "snake_case", deny_unknown_fields)]
pub enum RefundTender {
    /// The card the order was paid with, by its processor token.
    Card {
        /// The token of one of the order's card tenders.
        token: String,
        /// Card brand, e.g. `visa`.
        brand: String,
        /// Last four digits.
        last4: String,
    },
    /// Cash from the till. (A struct variant: a unit variant would let
    /// unknown fields through.)
    Cash {},
    /// Store credit loaded onto a gift card at the till.
    GiftCard {
        /// The gift card's token.
        token: String,
    },
}

impl RefundTender {
    /// The wire name of the method.
    pub fn method(&self) -> &'static str {
        match self {
            RefundTender::Card { .. } => "card",
            RefundTender::Cash {} => "cash",
            RefundTender::GiftCard { .. } => "gift_card",
        }
    }
}

/// `ReturnRequested`: a store takes goods back (a store event).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ReturnRequested {
    /// The order the goods were sold on (the Kafka key).
    pub order_id: OrderId,
    /// The return, minted by the agent (UUIDv7); the cloud decides once
    /// per return.
    pub return_id: ReturnId,
    /// The till that took the goods back.
    pub terminal_id: TerminalId,
    /// What comes back, one line per SKU.
    pub lines: Vec<ReturnLine>,
    /// How the money goes back.
    pub refund: RefundTender,
    /// Why, e.g. `damaged` or `changed_mind`.
    pub reason: String,
}

/// `ReturnAccepted`: the cloud checked the return against the order; the
/// inventory service restocks its units and, for a card, the payment
/// service refunds the amount.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ReturnAccepted {
    /// The order.
    pub order_id: OrderId,
    /// The return.
    pub return_id: ReturnId,
    /// The store that took the goods back (where they are restocked).
    pub store_id: crate::StoreId,
    /// What came back.
    pub lines: Vec<ReturnLine>,
    /// The money given back.
    pub amount: Money,
    /// How.
    pub refund: RefundTender,
    /// For a card: the index of the order's payment refunded at the
    /// processor. Absent when the money went back at the till.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tender: Option<u32>,
}

/// `ReturnRefused`: the return does not fit the order (nothing is
/// restocked or refunded).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ReturnRefused {
    /// The order.
    pub order_id: OrderId,
    /// The return.
    pub return_id: ReturnId,
    /// Why: a [`Refusal`] code, e.g. `over_return`.
    pub reason: String,
    /// The SKU at fault, when one is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sku: Option<String>,
}

/// Why a return does not fit its order.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// More units of a SKU than were sold and not yet returned.
    #[error("over_return: {sku}: {requested} asked, {left} left to return")]
    OverReturn {
        /// Index of the return line.
        line: usize,
        /// The SKU.
        sku: String,
        /// Units asked.
        requested: i64,
        /// Units sold and not returned yet.
        left: i64,
    },
    /// A SKU the order did not sell.
    #[error("not_on_order: {sku} was not sold on this order")]
    NotOnOrder {
        /// Index of the return line.
        line: usize,
        /// The SKU.
        sku: String,
    },
    /// A card refund to a card the order was not paid with.
    #[error("refund_tender_mismatch: the order was not paid with this card")]
    TenderMismatch,
    /// A card refund larger than what is left of that card's payment.
    #[error("refund_exceeds_tender: {amount} to refund, {left} left on that card")]
    ExceedsTender {
        /// Minor units to refund.
        amount: i64,
        /// Minor units of the card payment not refunded yet.
        left: i64,
    },
    /// The order was cancelled: there is nothing to return.
    #[error("order_cancelled: the order was cancelled")]
    OrderCancelled,
    /// The amounts overflow.
    #[error("overflow: {0}")]
    Overflow(#[from] MoneyError),
}

impl Refusal {
    /// The machine code (the `reason` of [`ReturnRefused`]).
    pub fn code(&self) -> &'static str {
        match self {
            Refusal::OverReturn { .. } => "over_return",
            Refusal::NotOnOrder { .. } => "not_on_order",
            Refusal::TenderMismatch => "refund_tender_mismatch",
            Refusal::ExceedsTender { .. } => "refund_exceeds_tender",
            Refusal::OrderCancelled => "order_cancelled",
            Refusal::Overflow(_) => "overflow",
        }
    }

    /// The SKU at fault, if one is.
    pub fn sku(&self) -> Option<&str> {
        match self {
            Refusal::OverReturn { sku, .. } | Refusal::NotOnOrder { sku, .. } => Some(sku),
            _ => None,
        }
    }

    /// The request field at fault, e.g. `lines[1].quantity`.
    pub fn field(&self) -> String {
        match self {
            Refusal::OverReturn { line, .. } => format!("lines[{line}].quantity"),
            Refusal::NotOnOrder { line, .. } => format!("lines[{line}].sku"),
            Refusal::TenderMismatch | Refusal::ExceedsTender { .. } => "refund".to_owned(),
            Refusal::OrderCancelled => "order_id".to_owned(),
            Refusal::Overflow(_) => "lines".to_owned(),
        }
    }
}

/// What has been returned from one order so far: units per SKU, and
/// minor units refunded per card payment (by its index in the order).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ReturnLedger {
    /// Units returned per SKU.
    pub units: BTreeMap<String, i64>,
    /// Minor units refunded per payment index.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub refunded: BTreeMap<u32, i64>,
}

/// A return that fits its order: the amount to give back and, for a card,
/// the payment it goes back to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Assessed {
    /// The money to give back.
    pub amount: Money,
    /// The order's payment refunded at the processor (a card refund).
    pub tender: Option<u32>,
}

impl ReturnLedger {
    /// Nothing returned yet.
    pub fn is_empty(&self) -> bool {
        self.units.is_empty() && self.refunded.is_empty()
    }

    /// Records an accepted return.
    pub fn record(&mut self, lines: &[ReturnLine], assessed: &Assessed) {
        for l in lines {
            *self.units.entry(l.sku.clone()).or_default() += l.quantity;
        }
        if let Some(t) = assessed.tender {
            *self.refunded.entry(t).or_default() += assessed.amount.minor;
        }
    }
}

/// What a return is checked against: the order's currency, lines and
/// tenders (what the cloud's order service keeps of each order).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sale {
    /// The order's currency.
    pub currency: crate::money::Currency,
    /// What was sold.
    pub lines: Vec<crate::order::OrderLine>,
    /// How it was paid.
    pub payments: Vec<Payment>,
}

impl Sale {
    /// The sale of `order`.
    pub fn of(order: &Order) -> Sale {
        Sale {
            currency: order.currency,
            lines: order.lines.clone(),
            payments: order.payments.clone(),
        }
    }
}

/// [`assess_sale`] of `order`'s sale.
pub fn assess(
    order: &Order,
    ledger: &ReturnLedger,
    lines: &[ReturnLine],
    refund: &RefundTender,
) -> Result<Assessed, Refusal> {
    assess_sale(&Sale::of(order), ledger, lines, refund)
}

/// Checks a return against its sale and what was returned before: every
/// SKU sold on the order, no more units than sold and not yet returned, a
/// card refund only to a card the order was paid with and within what is
/// left of it. A SKU sold on several lines at several prices is refunded
/// at the lowest.
pub fn assess_sale(
    order: &Sale,
    ledger: &ReturnLedger,
    lines: &[ReturnLine],
    refund: &RefundTender,
) -> Result<Assessed, Refusal> {
    let mut amount = Money::zero(order.currency);
    for (i, l) in lines.iter().enumerate() {
        let sold: Vec<_> = order.lines.iter().filter(|o| o.sku == l.sku).collect();
        let Some(price) = sold.iter().map(|o| o.unit_price).min_by_key(|m| m.minor) else {
            return Err(Refusal::NotOnOrder {
                line: i,
                sku: l.sku.clone(),
            });
        };
        let units: i64 = sold.iter().map(|o| o.quantity).sum();
        let left = units - ledger.units.get(&l.sku).copied().unwrap_or(0);
        if l.quantity > left {
            return Err(Refusal::OverReturn {
                line: i,
                sku: l.sku.clone(),
                requested: l.quantity,
                left: left.max(0),
            });
        }
        amount = amount.checked_add(price.checked_mul(l.quantity)?)?;
    }
    let tender = match refund {
        RefundTender::Card { token, .. } => {
            let (i, paid) = order
                .payments
                .iter()
                .enumerate()
                .find_map(|(i, p)| match p {
                    Payment::Card {
                        token: t, amount, ..
                    } if t == token => Some((i, amount.minor)),
                    _ => None,
                })
                .ok_or(Refusal::TenderMismatch)?;
            let i = u32::try_from(i).map_err(|_| Refusal::TenderMismatch)?;
            let left = paid - ledger.refunded.get(&i).copied().unwrap_or(0);
            if amount.minor > left {
                return Err(Refusal::ExceedsTender {
                    amount: amount.minor,
                    left,
                });
            }
            Some(i)
        }
        RefundTender::Cash {} | RefundTender::GiftCard { .. } => None,
    };
    Ok(Assessed { amount, tender })
}

impl ReturnRequested {
    /// The payload's own rules, each naming its field under `payload.`:
    /// 1 to 500 lines, one per SKU, 1 to 1,000,000 units each, a reason of
    /// 1 to 128 characters, a well-formed tender, and no card number
    /// anywhere.
    pub fn problems(&self) -> Vec<ValidationError> {
        let mut errs = Vec::new();
        let mut push = |field: String, code: &str, message: String| {
            errs.push(ValidationError {
                field,
                code: code.to_owned(),
                message,
            })
        };
        if self.lines.is_empty() {
            push(
                "payload.lines".into(),
                "required",
                "a return needs at least one line".into(),
            );
        } else if self.lines.len() > MAX_LINES {
            push(
                "payload.lines".into(),
                "too_many",
                format!("at most {MAX_LINES} lines"),
            );
        }
        let mut seen = std::collections::HashSet::new();
        for (i, l) in self.lines.iter().enumerate() {
            if l.quantity <= 0 || l.quantity > MAX_QUANTITY {
                push(
                    format!("payload.lines[{i}].quantity"),
                    "out_of_range",
                    format!("quantity must be between 1 and {MAX_QUANTITY}"),
                );
            }
            if !seen.insert(l.sku.as_str()) {
                push(
                    format!("payload.lines[{i}].sku"),
                    "duplicate",
                    format!("{} is on an earlier line; one line per SKU", l.sku),
                );
            }
        }
        for (i, l) in self.lines.iter().enumerate() {
            errs.extend(check_text(
                &format!("payload.lines[{i}].sku"),
                &l.sku,
                1,
                MAX_SKU_LEN,
            ));
        }
        errs.extend(check_text(
            "payload.reason",
            &self.reason,
            1,
            MAX_REASON_LEN,
        ));
        match &self.refund {
            RefundTender::Card {
                token,
                brand,
                last4,
            } => {
                errs.extend(check_text("payload.refund.token", token, 1, MAX_TOKEN_LEN));
                errs.extend(check_text("payload.refund.brand", brand, 1, 32));
                if last4.len() != 4 || !last4.bytes().all(|b| b.is_ascii_digit()) {
                    errs.push(ValidationError {
                        field: "payload.refund.last4".into(),
                        code: "invalid_format".into(),
                        message: "last4 must be exactly 4 digits".into(),
                    });
                }
            }
            RefundTender::GiftCard { token } => {
                errs.extend(check_text("payload.refund.token", token, 1, MAX_TOKEN_LEN));
            }
            RefundTender::Cash {} => {}
        }
        errs
    }

    /// [`ReturnRequested::problems`] as a result.
    pub fn validate(&self) -> Result<(), ValidationErrors> {
        let errs = self.problems();
        if errs.is_empty() {
            Ok(())
        } else {
            Err(ValidationErrors(errs))
        }
    }
}

#[cfg(test)]
#[path = "returns_tests.rs"]
mod tests;
