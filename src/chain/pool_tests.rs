use super::*;
use alloy::primitives::Address;

fn pool(n: usize) -> RpcPool {
    let urls: Vec<_> = (0..n)
        .map(|i| SecretUrl::parse(&format!("http://127.0.0.1:{}", 10_000 + i)).expect("url"))
        .collect();
    RpcPool::new(
        &urls,
        Scope {
            chain_id: 1,
            contract: Address::ZERO,
        },
        RequestBounds {
            timeout: Duration::from_secs(1),
            max_answer: 1 << 20,
        },
    )
}

#[test]
fn an_endpoint_that_keeps_failing_hands_over_to_the_next() {
    let p = pool(3);
    assert!(!p.failed());
    assert!(!p.failed());
    assert!(p.failed(), "third failure rests it");
    assert_eq!(p.endpoint(), "http://127.0.0.1:10001");
    p.succeeded();
    assert!(!p.failed(), "a success resets the count");
}

#[test]
fn when_every_endpoint_rests_the_first_to_wake_is_used() {
    let p = pool(2);
    for _ in 0..3 {
        p.failed();
    }
    assert_eq!(p.endpoint(), "http://127.0.0.1:10001");
    for _ in 0..3 {
        p.failed();
    }
    assert_eq!(p.endpoint(), "http://127.0.0.1:10000", "rests ends first");
}

#[test]
fn a_learned_range_cap_belongs_to_its_endpoint_and_only_goes_down() {
    let p = pool(2);
    p.learn_range_cap("http://127.0.0.1:10000", 1000);
    p.learn_range_cap("http://127.0.0.1:10000", 5000);
    assert_eq!(p.range_cap(), Some(1000));
    for _ in 0..3 {
        p.failed();
    }
    assert_eq!(p.range_cap(), None, "the next endpoint has learned nothing");
}

#[test]
fn the_audit_asks_the_second_endpoint_first_and_shares_the_budgets() {
    assert!(pool(1).others_first().is_none(), "no other endpoint");
    let counted =
        |endpoint: &str| prometheus::IntCounter::new("rate_limited", endpoint).expect("a counter");
    let p = pool(3).with_rate_budget(Some(10), counted);
    let others = p.others_first().expect("three endpoints");
    assert_eq!(others.endpoint(), "http://127.0.0.1:10001");
    let (mine, theirs) = (p.lock(), others.lock());
    let shared = |a: &Endpoint, b: &Endpoint| {
        a.name == b.name
            && a.budget
                .as_ref()
                .zip(b.budget.as_ref())
                .is_some_and(|(x, y)| x.is_shared_with(y))
    };
    assert!(shared(&mine[1], &theirs[0]) && shared(&mine[0], &theirs[2]));
}

#[test]
fn a_single_endpoint_is_rebuilt_not_abandoned() {
    let p = pool(1);
    for _ in 0..3 {
        assert!(!p.failed(), "no other endpoint to hand over to");
    }
    assert_eq!(p.endpoint(), "http://127.0.0.1:10000");
}
