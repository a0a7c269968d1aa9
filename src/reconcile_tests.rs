use alloy::primitives::{address, b256, Address, B256, U256};

use super::*;
use crate::domain::{Amount, BlockRef, Destination, EventVersion, LogKey, Treasuries};

const WALLET: Address = address!("00000000000000000000000000000000000000aa");
const TOKEN: Address = address!("00000000000000000000000000000000000000cc");
const TREASURY: Address = address!("00000000000000000000000000000000000000dd");
const REF: B256 = b256!("0000000000000000000000000000000000000000000000000000000000000001");
const CHAIN: u64 = 31337;

fn policy(overpayment: OverpaymentPolicy) -> Policy {
    Policy {
        overpayment,
        chain_id: CHAIN,
        token: TOKEN,
        treasury: Treasuries {
            initial: Some(TREASURY),
            changes: Vec::new(),
        },
    }
}

fn key(n: u8) -> LogKey {
    LogKey {
        tx_hash: B256::repeat_byte(n),
        log_index: 0,
    }
}

fn payment(amount: u64) -> Payment {
    Payment {
        key: key(1),
        contract: Address::repeat_byte(0xee),
        block: BlockRef {
            number: 10,
            hash: B256::repeat_byte(0x10),
        },
        block_timestamp: Some(1_000),
        version: EventVersion::V1,
        order_ref: REF,
        payer: WALLET,
        amount: Amount(U256::from(amount)),
        quote_hash: B256::ZERO,
        destination: None,
    }
}

fn v2_payment(token: Address, treasury: Address, chain_id: u64) -> Payment {
    Payment {
        version: EventVersion::V2,
        destination: Some(Destination {
            token,
            treasury,
            chain_id: U256::from(chain_id),
            timestamp: U256::from(1_000),
        }),
        ..payment(100)
    }
}

fn order() -> Order {
    Order {
        id: "ord_1".into(),
        order_ref: REF,
        wallet: WALLET,
        premium_usdc: 100,
        status: "pending".into(),
        payment_status: "pending".into(),
        expires_at: Some(2_000),
        paid_by: None,
    }
}

fn decide(payment: &Payment, order: Option<&Order>) -> Decision {
    reconcile(payment, order, &policy(OverpaymentPolicy::Accept))
}

#[test]
fn an_exact_payment_from_the_wallet_matches() {
    assert_eq!(
        decide(&payment(100), Some(&order())),
        Decision::Apply(MatchStatus::Matched)
    );
}

#[test]
fn a_payment_for_no_known_order_is_unknown_order() {
    assert_eq!(
        decide(&payment(100), None),
        Decision::Flag(MatchStatus::UnknownOrder)
    );
}

#[test]
fn the_same_log_seen_again_is_a_replay_that_changes_nothing() {
    let order = Order {
        paid_by: Some(key(1)),
        ..order()
    };
    assert_eq!(decide(&payment(100), Some(&order)), Decision::Replay);
    assert_eq!(Decision::Replay.match_status(), None);
}

#[test]
fn a_second_log_for_a_paid_order_is_a_duplicate_payment() {
    let order = Order {
        paid_by: Some(key(9)),
        ..order()
    };
    assert_eq!(
        decide(&payment(100), Some(&order)),
        Decision::Flag(MatchStatus::DuplicatePayment)
    );
}

#[test]
fn a_payment_for_an_order_settled_elsewhere_is_a_duplicate_payment() {
    let order = Order {
        status: "paid".into(),
        payment_status: "paid".into(),
        ..order()
    };
    assert_eq!(
        decide(&payment(100), Some(&order)),
        Decision::Flag(MatchStatus::DuplicatePayment)
    );
}

#[test]
fn a_payment_for_an_expired_order_says_the_order_expired() {
    let order = Order {
        status: "expired".into(),
        ..order()
    };
    assert_eq!(
        decide(&payment(100), Some(&order)),
        Decision::Flag(MatchStatus::OrderExpired)
    );
}

#[test]
fn a_payment_for_a_cancelled_order_says_the_order_was_cancelled() {
    // As `resolve --as void` leaves it, and as the order API may.
    for payment_status in ["failed", "pending"] {
        let order = Order {
            status: "cancelled".into(),
            payment_status: payment_status.into(),
            ..order()
        };
        assert_eq!(
            decide(&payment(100), Some(&order)),
            Decision::Flag(MatchStatus::OrderCancelled),
            "{payment_status}"
        );
    }
}

#[test]
fn a_payment_from_another_wallet_is_a_payer_mismatch() {
    let p = Payment {
        payer: Address::repeat_byte(0x01),
        ..payment(100)
    };
    assert_eq!(
        decide(&p, Some(&order())),
        Decision::Flag(MatchStatus::PayerMismatch)
    );
}

#[test]
fn an_underpaid_event_leaves_the_order_pending() {
    assert_eq!(
        decide(&payment(99), Some(&order())),
        Decision::Flag(MatchStatus::Underpaid)
    );
}

#[test]
fn a_zero_amount_is_underpaid() {
    assert_eq!(
        decide(&payment(0), Some(&order())),
        Decision::Flag(MatchStatus::Underpaid)
    );
}

#[test]
fn an_accepted_overpayment_pays_the_order_and_says_so() {
    assert_eq!(
        decide(&payment(101), Some(&order())),
        Decision::Apply(MatchStatus::Overpaid)
    );
}

#[test]
fn a_flagged_overpayment_leaves_the_order_pending() {
    let decision = reconcile(
        &payment(101),
        Some(&order()),
        &policy(OverpaymentPolicy::Flag),
    );
    assert_eq!(decision, Decision::Flag(MatchStatus::Overpaid));
}

#[test]
fn an_amount_beyond_i64_is_flagged_even_when_overpayment_is_accepted() {
    let p = Payment {
        amount: Amount(U256::from(u64::MAX) * U256::from(4)),
        ..payment(0)
    };
    assert_eq!(p.amount.micro_usdc(), None);
    assert_eq!(
        decide(&p, Some(&order())),
        Decision::Flag(MatchStatus::Overpaid)
    );
}

#[test]
fn a_payment_in_a_block_after_expiry_is_late() {
    let p = Payment {
        block_timestamp: Some(2_001),
        ..payment(100)
    };
    assert_eq!(
        decide(&p, Some(&order())),
        Decision::Flag(MatchStatus::LatePayment)
    );
}

#[test]
fn a_payment_in_the_expiry_second_is_on_time() {
    let p = Payment {
        block_timestamp: Some(2_000),
        ..payment(100)
    };
    assert_eq!(
        decide(&p, Some(&order())),
        Decision::Apply(MatchStatus::Matched)
    );
}

#[test]
fn an_order_without_expiry_is_never_late() {
    let order = Order {
        expires_at: None,
        ..order()
    };
    let p = Payment {
        block_timestamp: Some(u64::MAX),
        ..payment(100)
    };
    assert_eq!(
        decide(&p, Some(&order)),
        Decision::Apply(MatchStatus::Matched)
    );
}

#[test]
fn a_v2_event_naming_the_configured_destination_matches() {
    let p = v2_payment(TOKEN, TREASURY, CHAIN);
    assert_eq!(
        decide(&p, Some(&order())),
        Decision::Apply(MatchStatus::Matched)
    );
}

#[test]
fn a_v2_event_with_another_chain_id_is_wrong_destination() {
    let p = v2_payment(TOKEN, TREASURY, 1);
    assert_eq!(
        decide(&p, Some(&order())),
        Decision::Flag(MatchStatus::WrongDestination)
    );
}

#[test]
fn a_v2_event_with_another_treasury_is_wrong_destination() {
    let p = v2_payment(TOKEN, Address::repeat_byte(0x02), CHAIN);
    assert_eq!(
        decide(&p, Some(&order())),
        Decision::Flag(MatchStatus::WrongDestination)
    );
}

#[test]
fn a_v2_event_with_another_token_is_wrong_destination() {
    let p = v2_payment(Address::repeat_byte(0x03), TREASURY, CHAIN);
    assert_eq!(
        decide(&p, Some(&order())),
        Decision::Flag(MatchStatus::WrongDestination)
    );
}

#[test]
fn without_a_configured_treasury_any_v2_treasury_is_accepted() {
    let p = v2_payment(TOKEN, Address::repeat_byte(0x02), CHAIN);
    let policy = Policy {
        treasury: Treasuries::default(),
        ..policy(OverpaymentPolicy::Accept)
    };
    assert_eq!(
        reconcile(&p, Some(&order()), &policy),
        Decision::Apply(MatchStatus::Matched)
    );
}

#[test]
fn a_moved_treasury_is_in_force_from_its_own_log_on() {
    let moved = Address::repeat_byte(0x0e);
    let policy = Policy {
        treasury: Treasuries {
            initial: Some(TREASURY),
            changes: vec![(10, 4, moved)],
        },
        ..policy(OverpaymentPolicy::Accept)
    };
    let at = |treasury: Address, block: u64, log_index: u64| {
        let mut p = v2_payment(TOKEN, treasury, CHAIN);
        p.block.number = block;
        p.key.log_index = log_index;
        reconcile(&p, Some(&order()), &policy)
    };
    let matched = Decision::Apply(MatchStatus::Matched);
    let wrong = Decision::Flag(MatchStatus::WrongDestination);
    assert_eq!(at(TREASURY, 9, 0), matched, "before the move");
    assert_eq!(at(TREASURY, 10, 3), matched, "earlier in the same block");
    assert_eq!(at(moved, 10, 3), wrong);
    assert_eq!(at(moved, 10, 5), matched, "later in the same block");
    assert_eq!(
        at(TREASURY, 10, 5),
        wrong,
        "the old treasury, after the move"
    );
    assert_eq!(at(moved, 11, 0), matched);
}

#[test]
fn without_a_configured_treasury_the_first_move_sets_one() {
    let moved = Address::repeat_byte(0x0e);
    let t = Treasuries {
        initial: None,
        changes: vec![(10, 4, moved)],
    };
    assert_eq!(t.at(10, 4), None, "any, before the move");
    assert_eq!(t.at(10, 5), Some(moved));
}

#[test]
fn rules_apply_in_the_documented_order() {
    // Wrong payer and underpaid at once: the payer rule comes first.
    let p = Payment {
        payer: Address::repeat_byte(0x01),
        ..payment(1)
    };
    assert_eq!(
        decide(&p, Some(&order())),
        Decision::Flag(MatchStatus::PayerMismatch)
    );
    // A cancelled order paid from another wallet: the order's state comes
    // first.
    let p = Payment {
        payer: Address::repeat_byte(0x01),
        ..payment(1)
    };
    let cancelled = Order {
        status: "cancelled".into(),
        ..order()
    };
    assert_eq!(
        decide(&p, Some(&cancelled)),
        Decision::Flag(MatchStatus::OrderCancelled)
    );
    // Underpaid and late at once: the amount rule comes first.
    let p = Payment {
        block_timestamp: Some(9_999),
        ..payment(1)
    };
    assert_eq!(
        decide(&p, Some(&order())),
        Decision::Flag(MatchStatus::Underpaid)
    );
}

#[test]
fn an_order_reversed_by_a_deep_reorg_can_be_paid_again() {
    let order = Order {
        payment_status: "reversed".into(),
        ..order()
    };
    assert_eq!(
        decide(&payment(100), Some(&order)),
        Decision::Apply(MatchStatus::Matched)
    );
}
