//! The alone row (`--only alone`): a backfill of the bench chain with a
//! matched order for every payment and no other writer on the database, at
//! the shipped settings (SQLite's writes alone from the start:
//! `store::pace`), always paced (`database.alone_after_s = 0`, the write
//! budget of 2 ms and gap of 3 ms all along) and unbounded (`60000/0`).

use std::time::Instant;

use super::support::chain::Chain;
use super::support::daemon::command;
use super::support::db::{Db, Sqlite};
use super::{env_with, orders_for};

pub async fn rows(
    chain: &Chain,
    head: u64,
    first_ref: u64,
    payments: u64,
    table: &mut Vec<(String, String)>,
) {
    let paced = [("LIQPASS__DATABASE__ALONE_AFTER_S", "0")];
    let unbounded = [
        ("LIQPASS__DATABASE__ALONE_AFTER_S", "0"),
        ("LIQPASS__DATABASE__MAX_WRITE_MS", "60000"),
        ("LIQPASS__DATABASE__WRITE_GAP_MS", "0"),
    ];
    let runs: [(&str, &[(&str, &str)]); 3] = [
        ("backfill, nobody else writing: shipped (alone)", &[]),
        ("the same, always paced (alone_after_s = 0)", &paced),
        (
            "the same, unbounded (60000/0, alone_after_s = 0)",
            &unbounded,
        ),
    ];
    for (label, extra) in runs {
        eprintln!("bench: {label}");
        let db = Db::on(Sqlite).await;
        orders_for(&db, chain, payments, first_ref).await;
        let env = env_with(chain, &db, extra);
        let started = Instant::now();
        let output = tokio::task::spawn_blocking(move || {
            command(
                &env,
                &["backfill", "--from", "0", "--to", &head.to_string()],
            )
        })
        .await
        .expect("backfill task");
        let seconds = started.elapsed().as_secs_f64();
        assert!(
            output.status.success(),
            "backfill failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let stored = db.count("SELECT COUNT(*) FROM contract_events").await;
        table.push((
            label.to_owned(),
            format!(
                "{:.0} events/s ({stored} events in {seconds:.2} s, from launch)",
                stored as f64 / seconds
            ),
        ));
    }
}
