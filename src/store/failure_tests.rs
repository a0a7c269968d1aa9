use super::*;

#[test]
fn errors_that_are_not_sqlite_results_are_other_or_pool_timeouts() {
    let e = StoreError::Corrupt("bad hash".into());
    assert_eq!(WriteFailure::of(&e), WriteFailure::Other);
    let e = StoreError::Sql(sqlx::Error::PoolTimedOut);
    assert_eq!(WriteFailure::of(&e), WriteFailure::PoolTimeout);
    assert!(!WriteFailure::PoolTimeout.may_poison());
    assert!(WriteFailure::DiskFull.may_poison());
}

#[test]
fn postgres_sqlstates_name_the_same_causes() {
    for (code, cause) in [
        ("53100", WriteFailure::DiskFull),
        ("57P01", WriteFailure::SessionTerminated),
        ("25P03", WriteFailure::SessionTerminated),
        ("57P03", WriteFailure::Unreachable),
        ("08006", WriteFailure::Unreachable),
        ("25006", WriteFailure::ReadOnly),
        ("55P03", WriteFailure::LockWait),
        ("57014", WriteFailure::StatementTimeout),
        ("40P01", WriteFailure::Conflict),
        ("28P01", WriteFailure::CantOpen),
        ("23505", WriteFailure::Other),
    ] {
        assert_eq!(WriteFailure::of_sqlstate(code), cause, "{code}");
    }
}

#[test]
fn every_cause_has_its_own_label() {
    let labels: std::collections::HashSet<_> =
        WriteFailure::ALL.iter().map(|f| f.label()).collect();
    assert_eq!(labels.len(), WriteFailure::ALL.len());
}
