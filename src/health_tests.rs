use super::*;

#[test]
fn a_fresh_handle_is_not_ready_until_it_has_synced() {
    let h = Health::default();
    h.set_rpc_ok(true);
    assert_eq!(h.readiness(5, None), Err(NotReady::Starting));
    h.set_head(100);
    h.set_indexed(97);
    assert_eq!(h.readiness(5, None), Ok(()));
    h.set_head(110);
    assert_eq!(
        h.readiness(5, None),
        Err(NotReady::Lagging { lag: 13, max: 5 })
    );
}

#[test]
fn a_head_that_does_not_advance_is_a_stall() {
    let h = Health::default();
    h.set_rpc_ok(true);
    h.set_indexed(1);
    h.set_stall_after(Duration::from_millis(1));
    h.set_head(1);
    std::thread::sleep(Duration::from_millis(5));
    assert!(h.stalled());
    assert_eq!(h.readiness(5, None), Err(NotReady::Stalled));
    h.set_head(2);
    h.set_indexed(2);
    assert!(!h.stalled(), "a new head ends the stall");
}

#[test]
fn failing_writes_are_named_instead_of_the_lag_they_cause() {
    let h = Health::default();
    h.set_rpc_ok(true);
    h.set_indexed(1);
    h.set_head(500);
    h.write_failed("database or disk is full".into());
    let reason = h.readiness(5, None).expect_err("not ready").to_string();
    assert_eq!(reason, "database writes failing: database or disk is full");
    h.write_committed();
    assert!(matches!(
        h.readiness(5, None),
        Err(NotReady::Lagging { .. })
    ));
}

#[test]
fn a_lock_wait_is_named_with_its_holder_before_the_failures_it_causes() {
    let h = Health::default();
    h.set_rpc_ok(true);
    h.set_indexed(1);
    h.set_head(1);
    h.write_failed("waiting on a lock held by another session, past the wait's bound".into());
    let wait = |blockers: Vec<i32>| LockWait {
        since: std::time::Instant::now() - std::time::Duration::from_secs(12),
        blockers,
    };
    let reason = h
        .readiness(5, Some(wait(vec![4242])))
        .expect_err("not ready");
    assert_eq!(
        reason.to_string(),
        "waiting on a lock held by another session (server pid 4242) for 12 s"
    );
    let reason = h
        .readiness(5, Some(wait(Vec::new())))
        .expect_err("not ready");
    assert_eq!(
        reason.to_string(),
        "waiting on a lock held by another session (SQLite's write lock) for 12 s"
    );
    h.set_standby(true);
    assert_eq!(
        h.readiness(5, Some(wait(vec![4242]))),
        Ok(()),
        "a standby writes nothing"
    );
}

#[test]
fn readiness_follows_the_last_write_and_the_term_not_a_flag_left_set() {
    let ready = |h: &Health| h.readiness(5, None).is_ok();
    let h = Health::default();
    h.set_rpc_ok(true);
    h.set_indexed(1);
    h.set_head(1);
    assert!(ready(&h));
    // Any commit after a failure ends it (another writer's, or the same
    // batch committed by a later call after a step-down).
    h.write_failed("statement timeout".into());
    assert!(!ready(&h));
    h.write_committed();
    assert!(ready(&h));
    // A failure of a term that ended says nothing of the next one.
    h.write_failed("statement timeout".into());
    h.set_standby(true);
    assert!(ready(&h), "a standby writes nothing");
    h.set_standby(false);
    assert!(ready(&h), "a new term starts with no failure");
}

#[test]
fn a_standby_is_ready_without_having_synced_until_it_stops() {
    let h = Health::default();
    h.set_standby(true);
    assert_eq!(h.role(), "standby");
    assert_eq!(h.readiness(5, None), Ok(()));
    h.set_standby(false);
    assert_eq!(h.readiness(5, None), Err(NotReady::RpcUnreachable));
    h.set_standby(true);
    h.set_stopping();
    assert_eq!(h.readiness(5, None), Err(NotReady::Stopping));
}

#[test]
fn a_deep_reorg_or_shutdown_makes_it_unready() {
    let h = Health::default();
    h.set_rpc_ok(true);
    h.set_indexed(1);
    h.set_deep_reorgs(1);
    assert!(matches!(
        h.readiness(5, None),
        Err(NotReady::DeepReorg { count: 1 })
    ));
    h.set_deep_reorgs(0);
    h.set_stopping();
    assert_eq!(h.readiness(5, None), Err(NotReady::Stopping));
}
