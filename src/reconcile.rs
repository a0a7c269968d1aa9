//! The reconciliation rules of the design, as one pure function:
//! `(Payment, Option<Order>, Policy) -> Decision`. No I/O: the store applies
//! the decision inside the batch transaction.
//!
//! Rules, in order: unknown order, idempotent replay / duplicate, an order
//! cancelled or expired, payer mismatch, under- and overpayment, late
//! payment (block time past `expires_at`), wrong destination (v2), otherwise
//! matched. docs/database-contract.md's rule table lists them in this order.

use alloy::primitives::{Address, U256};

use crate::domain::{MatchStatus, Order, OverpaymentPolicy, Payment, Treasuries};

/// What the configuration says a payment must look like.
#[derive(Debug, Clone)]
pub struct Policy {
    pub overpayment: OverpaymentPolicy,
    pub chain_id: u64,
    pub token: Address,
    /// The treasury v2 events must name where they are (the configured
    /// one, then the contract's `TreasuryUpdated` moves, as stored).
    pub treasury: Treasuries,
}

/// What to do with one payment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// This very log already paid the order: change nothing.
    Replay,
    /// The payment pays the order: store it with this status, link it to the
    /// order, and move the order to `confirming`.
    Apply(MatchStatus),
    /// The payment does not pay the order: store it with this status for a
    /// person to look at; the order is untouched.
    Flag(MatchStatus),
}

impl Decision {
    /// The status stored for a new event, if one is stored.
    pub fn match_status(self) -> Option<MatchStatus> {
        match self {
            Self::Replay => None,
            Self::Apply(status) | Self::Flag(status) => Some(status),
        }
    }
}

/// The order status in which an order can still be paid (with
/// payment_status `pending`, or `reversed` after a deep reorg).
const PAYABLE_STATUS: &str = "pending";

/// Applies the reconciliation rules to one payment.
pub fn reconcile(payment: &Payment, order: Option<&Order>, policy: &Policy) -> Decision {
    let Some(order) = order else {
        return Decision::Flag(MatchStatus::UnknownOrder);
    };
    if let Some(paid_by) = order.paid_by {
        return if paid_by == payment.key {
            Decision::Replay
        } else {
            Decision::Flag(MatchStatus::DuplicatePayment)
        };
    }
    let payable = matches!(order.payment_status.as_str(), "pending" | "reversed");
    if order.status != PAYABLE_STATUS || !payable {
        // Cancelled, expired, or paid or settled outside this log.
        return Decision::Flag(match order.status.as_str() {
            "cancelled" => MatchStatus::OrderCancelled,
            "expired" => MatchStatus::OrderExpired,
            _ => MatchStatus::DuplicatePayment,
        });
    }
    if payment.payer != order.wallet {
        return Decision::Flag(MatchStatus::PayerMismatch);
    }
    let premium = U256::from(order.premium_usdc.unsigned_abs());
    let overpaid = payment.amount.0 > premium;
    if payment.amount.0 < premium {
        return Decision::Flag(MatchStatus::Underpaid);
    }
    if overpaid && policy.overpayment == OverpaymentPolicy::Flag {
        return Decision::Flag(MatchStatus::Overpaid);
    }
    if overpaid && payment.amount.micro_usdc().is_none() {
        // More than any real USDC supply: cannot be recorded as paid_amount_usdc.
        return Decision::Flag(MatchStatus::Overpaid);
    }
    if is_late(payment, order) {
        return Decision::Flag(MatchStatus::LatePayment);
    }
    if !destination_ok(payment, policy) {
        return Decision::Flag(MatchStatus::WrongDestination);
    }
    Decision::Apply(if overpaid {
        MatchStatus::Overpaid
    } else {
        MatchStatus::Matched
    })
}

fn is_late(payment: &Payment, order: &Order) -> bool {
    match (payment.block_timestamp, order.expires_at) {
        (Some(paid_at), Some(expires_at)) => i128::from(paid_at) > i128::from(expires_at),
        _ => false,
    }
}

fn destination_ok(payment: &Payment, policy: &Policy) -> bool {
    let Some(dest) = &payment.destination else {
        return true; // v1 carries no destination
    };
    let in_force = policy
        .treasury
        .at(payment.block.number, payment.key.log_index);
    dest.token == policy.token
        && dest.chain_id == U256::from(policy.chain_id)
        && in_force.is_none_or(|treasury| dest.treasury == treasury)
}

#[cfg(test)]
#[path = "reconcile_tests.rs"]
mod tests;
