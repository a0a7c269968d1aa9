use super::*;
use crate::domain::EventVersion;
use alloy::primitives::B256;

fn outcome(status: MatchStatus, n: u8) -> Outcome {
    Outcome {
        status,
        order_id: None,
        order_ref: B256::repeat_byte(n),
        version: EventVersion::V1,
    }
}

#[test]
fn a_batch_of_matched_payments_needs_no_review_line() {
    assert_eq!(Review::of(&[outcome(MatchStatus::Matched, 1)]), None);
}

#[test]
fn a_review_line_counts_by_reason_and_names_only_the_first_refs() {
    let mut outcomes = vec![outcome(MatchStatus::Matched, 0)];
    outcomes.extend((1..=20).map(|n| outcome(MatchStatus::UnknownOrder, n)));
    outcomes.push(outcome(MatchStatus::Underpaid, 99));
    let review = Review::of(&outcomes).expect("some need review");
    assert_eq!(review.total, 21);
    assert_eq!(review.by_reason(), "underpaid=1 unknown_order=20");
    assert_eq!(review.first_refs.len(), REVIEW_REFS_SHOWN);
    assert_eq!(review.first_refs[0], format!("{:#x}", B256::repeat_byte(1)));
}
