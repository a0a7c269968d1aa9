//! The webhook dispatcher against a real HTTP receiver on a local port:
//! signatures a receiver can verify (the snippet of docs/outbox-and-webhooks.md, run with python3),
//! outages, a kill -9 mid-delivery, 410, an order the receiver refuses,
//! giving up, and the secret never printed.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use crate::support::chain::{order_ref, Chain};
use crate::support::daemon::{command, env_for, with, Daemon};
use crate::support::db::{Backend, Db};
use crate::support::receiver::{
    free_port, secret_of, url_of, verifies, Delivery, Receiver, Reply, URL_TOKEN,
};
use crate::support::{caught_up, metric, wait_for};

const PREMIUM: i64 = 5_000_000;
const KEY_A: [u8; 32] = [7; 32];
const KEY_B: [u8; 32] = [9; 32];

/// Both keys, as while rotating.
fn secret() -> String {
    format!("{} {}", secret_of(&KEY_A), secret_of(&KEY_B))
}

/// The daemon's environment with webhooks to `url`, retries fast.
fn hooks(
    env: &BTreeMap<String, String>,
    url: &str,
    extra: &[(&str, &str)],
) -> BTreeMap<String, String> {
    let mut pairs = vec![
        ("LIQPASS__WEBHOOKS__URL", url.to_owned()),
        ("LIQPASS__WEBHOOKS__SECRET", secret()),
        ("LIQPASS__WEBHOOKS__RETRY_INITIAL_MS", "100".to_owned()),
        ("LIQPASS__WEBHOOKS__RETRY_MAX_MS", "400".to_owned()),
        ("LIQPASS__WEBHOOKS__REQUEST_TIMEOUT_MS", "10000".to_owned()),
    ];
    for (k, v) in extra {
        pairs.push((k, (*v).to_owned()));
    }
    with(env, &pairs)
}

/// `n` orders `ord_0…`, each paid by its buyer once the daemon runs.
async fn orders(db: &Db, chain: &Chain, n: u64) {
    for i in 0..n {
        db.insert_order(&format!("ord_{i}"), order_ref(i), chain.buyers[0], PREMIUM)
            .await;
    }
}

async fn pay(chain: &Chain, n: u64) {
    for i in 0..n {
        chain
            .pay(chain.buyers[0], order_ref(i), PREMIUM as u64)
            .await;
    }
}

/// Waits until the outbox holds `n` rows, every one delivered.
async fn all_delivered(db: &Db, n: i64) {
    wait_for(
        "every notification delivered",
        Duration::from_secs(90),
        || async {
            let total = db.count("SELECT COUNT(*) FROM payment_notifications").await;
            let open = db
                .count("SELECT COUNT(*) FROM payment_notifications WHERE delivered_at IS NULL")
                .await;
            (total == n && open == 0).then_some(())
        },
    )
    .await;
}

/// The outbox's event ids in cursor order, with their order ids.
async fn cursor_order(db: &Db) -> Vec<(String, Option<String>)> {
    db.notifications()
        .await
        .into_iter()
        .map(|n| (n.event_id, n.order_id))
        .collect()
}

/// Asserts that no request about an order came before every earlier
/// notification of that order (cursor order) had been accepted.
fn in_order_per_order(seen: &[Delivery], outbox: &[(String, Option<String>)]) {
    let position: HashMap<&str, usize> = outbox
        .iter()
        .enumerate()
        .map(|(i, (id, _))| (id.as_str(), i))
        .collect();
    let mut accepted = vec![false; outbox.len()];
    for d in seen {
        let at = *position.get(d.id.as_str()).expect("a known webhook-id");
        let order = &outbox[at].1;
        if order.is_some() {
            for (earlier, (id, o)) in outbox.iter().enumerate().take(at) {
                assert!(
                    o != order || accepted[earlier],
                    "{} was sent before {id} of the same order was delivered",
                    d.id
                );
            }
        }
        if d.accepted() {
            accepted[at] = true;
        }
    }
}

/// Waits until the daemon at `base` reports an empty webhook queue.
async fn queue_empties(base: &str) {
    wait_for(
        "the queue gauge to reach 0",
        Duration::from_secs(30),
        || async {
            let depth = metric(base, "liqpass_indexer_webhook_queue_depth").await;
            (depth == Some(0.0)).then_some(())
        },
    )
    .await;
}

fn no_secret_in(what: &str, text: &str) {
    for secret in [secret_of(&KEY_A), secret_of(&KEY_B), URL_TOKEN.to_owned()] {
        assert!(!text.contains(&secret), "{what} shows a secret:\n{text}");
    }
}

both_backends!(
    deliveries_are_signed_by_both_keys_and_verify_with_the_readme_snippet,
    deliveries_are_signed_by_both_keys_and_verify_with_the_readme_snippet_on
);
async fn deliveries_are_signed_by_both_keys_and_verify_with_the_readme_snippet_on(
    backend: Backend,
) {
    let chain = Chain::start().await;
    let db = Db::on(backend).await;
    orders(&db, &chain, 2).await;
    let receiver = Receiver::start(&[]).await;
    let env = hooks(&env_for(&chain, &db), &receiver.url(), &[]);
    let daemon = Daemon::spawn(&env);
    pay(&chain, 2).await;
    chain
        .pay(chain.buyers[0], order_ref(1), PREMIUM as u64 - 1)
        .await; // a duplicate, underpaid
    chain
        .pay(chain.buyers[0], order_ref(77), PREMIUM as u64)
        .await; // no such order
    chain.mine(3).await;
    caught_up(&chain, &db).await;
    db.wait_payment_status("ord_1", "paid").await;
    // confirming and paid for each order, the duplicate, the unknown order.
    all_delivered(&db, 6).await;

    let outbox = db.notifications().await;
    let seen = receiver.seen();
    assert_eq!(seen.len(), 6, "one request each, none failed: {seen:#?}");
    for n in &outbox {
        let d = seen.iter().find(|d| d.id == n.event_id).expect("delivered");
        for key in [&KEY_A, &KEY_B] {
            assert!(
                verifies(key, &d.id, &d.timestamp, &d.body, &d.signature),
                "{d:?}"
            );
            let tampered = d.body.replace("\"data\"", "\"data\" ");
            assert!(!verifies(key, &d.id, &d.timestamp, &tampered, &d.signature));
            assert!(!verifies(
                key,
                "other-id",
                &d.timestamp,
                &d.body,
                &d.signature
            ));
        }
        assert!(!verifies(
            &[1; 32],
            &d.id,
            &d.timestamp,
            &d.body,
            &d.signature
        ));
        let body = d.json();
        assert_eq!(body["type"], n.kind.as_str());
        assert_eq!(body["data"], n.payload);
        let age = now_s() - d.timestamp.parse::<i64>().expect("unix seconds");
        assert!((0..300).contains(&age), "webhook-timestamp {age} s old");
    }
    in_order_per_order(&seen, &cursor_order(&db).await);

    // The docs' snippet, pasted into a receiver, accepts what we sent
    // and refuses a tampered body.
    let d = &seen[0];
    assert_eq!(readme_snippet_says(d, &d.body), "valid");
    assert_eq!(
        readme_snippet_says(d, &d.body.replacen('{', "{ ", 1)),
        "invalid"
    );

    // `order` shows each notification's delivery state.
    let out = command(&env, &["order", "ord_0"]);
    let timeline = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        timeline.matches("attempts 1: delivered 20").count(),
        2,
        "{timeline}"
    );

    let base = format!("http://{}", daemon.http_addr().await);
    let delivered = r#"liqpass_indexer_webhook_deliveries_total{result="delivered"}"#;
    assert_eq!(metric(&base, delivered).await, Some(6.0));
    queue_empties(&base).await;
    let metrics = crate::support::http_get(&format!("{base}/metrics")).await.1;
    no_secret_in("/metrics", &metrics);
    no_secret_in("the daemon's log", &daemon.logs());
    let out = command(&env, &["check-config"]);
    assert!(out.status.success(), "{out:?}");
    let shown = String::from_utf8_lossy(&out.stdout);
    no_secret_in("check-config", &shown);
    assert!(shown.contains("secret = \"<redacted: 2 keys>\""), "{shown}");
}

both_backends!(
    an_outage_of_the_receiver_loses_nothing_and_keeps_each_orders_order,
    an_outage_of_the_receiver_loses_nothing_and_keeps_each_orders_order_on
);
async fn an_outage_of_the_receiver_loses_nothing_and_keeps_each_orders_order_on(backend: Backend) {
    let chain = Chain::start().await;
    let db = Db::on(backend).await;
    orders(&db, &chain, 3).await;
    let addr = free_port().await;
    let extra = [("LIQPASS__WEBHOOKS__REQUEST_TIMEOUT_MS", "500")];
    let env = hooks(&env_for(&chain, &db), &url_of(addr), &extra);
    let daemon = Daemon::spawn(&env);
    pay(&chain, 3).await;
    // Connection refused: each order's first notification is retried.
    wait_for(
        "refused deliveries retried",
        Duration::from_secs(60),
        || async {
            let retried = db
                .count(
                    "SELECT COUNT(*) FROM payment_notifications
                 WHERE attempts >= 2 AND last_status IS NULL AND last_error IS NOT NULL",
                )
                .await;
            (retried >= 3).then_some(())
        },
    )
    .await;
    let delivered = db
        .count("SELECT COUNT(*) FROM payment_notifications WHERE delivered_at IS NOT NULL")
        .await;
    assert_eq!(delivered, 0);
    // Then 500s, then a hang longer than the request timeout, then 200s.
    let mut first = vec![Reply::Status(500); 4];
    first.push(Reply::Hang(Duration::from_secs(3)));
    let receiver = Receiver::start_on(addr, &first).await;
    chain.mine(3).await;
    caught_up(&chain, &db).await;
    all_delivered(&db, 6).await;

    let outbox = cursor_order(&db).await;
    let seen = receiver.seen();
    assert!(
        seen.len() > 6,
        "the failed ones were sent again: {}",
        seen.len()
    );
    let mut bodies: HashMap<&str, &str> = HashMap::new();
    for d in &seen {
        // A duplicate carries the same webhook-id and the same body.
        let body = bodies.entry(&d.id).or_insert(&d.body);
        assert_eq!(*body, d.body, "{}", d.id);
    }
    let ids: std::collections::BTreeSet<_> = seen.iter().map(|d| d.id.clone()).collect();
    let want: std::collections::BTreeSet<_> = outbox.iter().map(|(id, _)| id.clone()).collect();
    assert_eq!(ids, want, "every notification, nothing else");
    in_order_per_order(&seen, &outbox);
    assert!(seen
        .iter()
        .any(|d| d.reply == Reply::Hang(Duration::from_secs(3))));
    assert_eq!(
        db.count("SELECT COUNT(*) FROM payment_notifications WHERE last_status = 200")
            .await,
        6
    );
    // The errors stored and logged (at debug too) never show the URL's query.
    let leaked =
        format!("SELECT COUNT(*) FROM payment_notifications WHERE last_error LIKE '%{URL_TOKEN}%'");
    assert_eq!(db.count(&leaked).await, 0);
    assert!(
        daemon.logs().contains("webhook delivery failed"),
        "debug lines logged"
    );
    no_secret_in("the daemon's log", &daemon.logs());
    let base = format!("http://{}", daemon.http_addr().await);
    let failed = metric(
        &base,
        r#"liqpass_indexer_webhook_deliveries_total{result="failed"}"#,
    )
    .await;
    assert!(failed >= Some(3.0 + 5.0), "{failed:?}");
}

both_backends!(
    a_kill_9_mid_delivery_is_delivered_after_the_restart,
    a_kill_9_mid_delivery_is_delivered_after_the_restart_on
);
async fn a_kill_9_mid_delivery_is_delivered_after_the_restart_on(backend: Backend) {
    let chain = Chain::start().await;
    let db = Db::on(backend).await;
    orders(&db, &chain, 1).await;
    // The first request is never answered while the daemon lives.
    let receiver = Receiver::start(&[Reply::Hang(Duration::from_secs(600))]).await;
    let extra = [("LIQPASS__WEBHOOKS__REQUEST_TIMEOUT_MS", "300000")];
    let env = hooks(&env_for(&chain, &db), &receiver.url(), &extra);
    let daemon = Daemon::spawn(&env);
    pay(&chain, 1).await;
    wait_for("a request in flight", Duration::from_secs(60), || async {
        (!receiver.seen().is_empty()).then_some(())
    })
    .await;
    let hung = receiver.seen()[0].id.clone();
    daemon.kill9();
    let _daemon = Daemon::spawn(&env);
    chain.mine(3).await;
    caught_up(&chain, &db).await;
    all_delivered(&db, 2).await;
    let seen = receiver.seen();
    let again: Vec<_> = seen.iter().filter(|d| d.id == hung).collect();
    assert_eq!(again.len(), 2, "sent, killed, sent again: {seen:#?}");
    assert!(again[1].accepted());
    in_order_per_order(&seen, &cursor_order(&db).await);
}

both_backends!(
    a_refused_order_holds_up_no_other_and_410_disables_the_endpoint,
    a_refused_order_holds_up_no_other_and_410_disables_the_endpoint_on
);
async fn a_refused_order_holds_up_no_other_and_410_disables_the_endpoint_on(backend: Backend) {
    let chain = Chain::start().await;
    let db = Db::on(backend).await;
    orders(&db, &chain, 4).await;
    let receiver = Receiver::start(&[]).await;
    receiver.for_order("ord_0", Some(Reply::Status(400)));
    let env = hooks(&env_for(&chain, &db), &receiver.url(), &[]);
    let daemon = Daemon::spawn(&env);
    pay(&chain, 3).await;
    chain.mine(3).await;
    caught_up(&chain, &db).await;
    // ord_1 and ord_2 are delivered while ord_0's first is refused again
    // and again, and its second waits behind it.
    wait_for(
        "the other orders delivered",
        Duration::from_secs(60),
        || async {
            let others = db
                .count(
                    "SELECT COUNT(*) FROM payment_notifications
                 WHERE order_id <> 'ord_0' AND delivered_at IS NOT NULL",
                )
                .await;
            let refused = db
                .count("SELECT MAX(attempts) FROM payment_notifications WHERE order_id = 'ord_0'")
                .await;
            (others == 4 && refused >= 3).then_some(())
        },
    )
    .await;
    let waiting = db
        .count(
            "SELECT COUNT(*) FROM payment_notifications
             WHERE order_id = 'ord_0' AND attempts = 0",
        )
        .await;
    assert_eq!(
        waiting, 1,
        "ord_0's second notification waits behind its first"
    );
    receiver.for_order("ord_0", None);
    all_delivered(&db, 6).await;
    in_order_per_order(&receiver.seen(), &cursor_order(&db).await);

    // 410 Gone: the endpoint is disabled, logged, and nothing more is sent.
    receiver.always(Reply::Status(410));
    chain
        .pay(chain.buyers[0], order_ref(3), PREMIUM as u64)
        .await;
    daemon
        .logged("answered 410 Gone: endpoint disabled", 1)
        .await;
    let base = format!("http://{}", daemon.http_addr().await);
    assert_eq!(
        metric(&base, "liqpass_indexer_webhook_endpoint_disabled").await,
        Some(1.0)
    );
    let sent = receiver.seen().len();
    chain.mine(3).await;
    caught_up(&chain, &db).await;
    db.wait_payment_status("ord_3", "paid").await;
    assert_eq!(
        db.count("SELECT COUNT(*) FROM payment_notifications WHERE delivered_at IS NULL")
            .await,
        2,
        "ord_3's notifications stay queued"
    );
    // The queue gauge still follows the queue (a refresh every 2 s, while a
    // working dispatcher would have retried every 100 to 400 ms): by the
    // time it shows ord_3's second row, nothing more was sent.
    wait_for(
        "the gauge to show the queue",
        Duration::from_secs(30),
        || async {
            let depth = metric(&base, "liqpass_indexer_webhook_queue_depth").await;
            (depth == Some(2.0)).then_some(())
        },
    )
    .await;
    assert_eq!(receiver.seen().len(), sent, "nothing sent after the 410");
}

both_backends!(
    a_notification_undelivered_past_give_up_after_is_given_up_and_kept,
    a_notification_undelivered_past_give_up_after_is_given_up_and_kept_on
);
async fn a_notification_undelivered_past_give_up_after_is_given_up_and_kept_on(backend: Backend) {
    let chain = Chain::start().await;
    let db = Db::on(backend).await;
    orders(&db, &chain, 1).await;
    let receiver = Receiver::start(&[]).await;
    receiver.always(Reply::Status(503));
    let extra = [("LIQPASS__WEBHOOKS__GIVE_UP_AFTER_S", "1")];
    let env = hooks(&env_for(&chain, &db), &receiver.url(), &extra);
    let daemon = Daemon::spawn(&env);
    pay(&chain, 1).await;
    chain.mine(3).await;
    caught_up(&chain, &db).await;
    wait_for("both given up", Duration::from_secs(60), || async {
        let given_up = db
            .count("SELECT COUNT(*) FROM payment_notifications WHERE gave_up_at IS NOT NULL")
            .await;
        (given_up == 2).then_some(())
    })
    .await;
    assert_eq!(
        db.count("SELECT COUNT(*) FROM payment_notifications WHERE last_status = 503 AND delivered_at IS NULL")
            .await,
        2
    );
    daemon.logged("webhook given up", 2).await;
    let out = command(&env, &["order", "ord_0"]);
    let timeline = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        timeline
            .matches("(last: HTTP 503 Service Unavailable)")
            .count(),
        2,
        "{timeline}"
    );
    assert_eq!(timeline.matches(": given up 20").count(), 2, "{timeline}");
    let base = format!("http://{}", daemon.http_addr().await);
    let gave_up = r#"liqpass_indexer_webhook_deliveries_total{result="gave_up"}"#;
    assert_eq!(metric(&base, gave_up).await, Some(2.0));
    queue_empties(&base).await;
}

#[tokio::test]
async fn bad_webhook_settings_are_refused_without_showing_the_secret() {
    let chain = Chain::start().await;
    let db = Db::new().await;
    let env = env_for(&chain, &db);
    let short = secret_of(b"too short");
    let url = "http://127.0.0.1:1/hooks";
    for (pairs, says, hidden) in [
        (
            vec![
                ("LIQPASS__WEBHOOKS__URL", url),
                ("LIQPASS__WEBHOOKS__SECRET", ""),
            ],
            "webhooks.secret: missing",
            "",
        ),
        (
            vec![
                ("LIQPASS__WEBHOOKS__URL", url),
                ("LIQPASS__WEBHOOKS__SECRET", &short),
            ],
            "holds 9 bytes",
            &short[6..],
        ),
        (
            vec![
                ("LIQPASS__WEBHOOKS__URL", url),
                ("LIQPASS__WEBHOOKS__SECRET", "hunter2-not-whsec"),
            ],
            "does not start with whsec_",
            "hunter2",
        ),
        (
            vec![("LIQPASS__WEBHOOKS__SECRET", &short)],
            "webhooks.url is empty",
            &short[6..],
        ),
        (
            vec![
                ("LIQPASS__WEBHOOKS__URL", "ws://127.0.0.1:1/x?token=s3cr3t"),
                ("LIQPASS__WEBHOOKS__SECRET", &secret()),
            ],
            "is not http or https",
            "s3cr3t",
        ),
    ] {
        let pairs: Vec<(&str, String)> =
            pairs.into_iter().map(|(k, v)| (k, v.to_owned())).collect();
        let out = command(&with(&env, &pairs), &["check-config"]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(64), "{pairs:?}: {err}");
        assert!(err.contains(says), "{pairs:?}: {err}");
        if !hidden.is_empty() {
            assert!(!err.contains(hidden), "{err}");
        }
    }
}

fn now_s() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs() as i64
}

/// Runs docs/outbox-and-webhooks.md's Python verification snippet on `d`'s headers and `body`:
/// what it prints, `valid` or `invalid`.
fn readme_snippet_says(d: &Delivery, body: &str) -> String {
    let readme = include_str!("../../docs/outbox-and-webhooks.md");
    let start = readme
        .find("```python\n# verify_webhook.py")
        .expect("docs/outbox-and-webhooks.md holds the verification snippet");
    let code = &readme[start + "```python\n".len()..];
    let code = &code[..code.find("```").expect("the snippet ends")];
    let driver = r#"
import json, sys
case = json.load(sys.stdin)
ok = verify(case["secret"], case["headers"], case["body"].encode())
print("valid" if ok else "invalid")
"#;
    let input = serde_json::json!({
        "secret": secret_of(&KEY_B),
        "headers": {
            "webhook-id": d.id,
            "webhook-timestamp": d.timestamp,
            "webhook-signature": d.signature,
        },
        "body": body,
    });
    let mut child = std::process::Command::new("python3")
        .arg("-c")
        .arg(format!("{code}\n{driver}"))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("python3 runs the docs' snippet: `make test` installs it (apt-get install python3-minimal)");
    use std::io::Write as _;
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.to_string().as_bytes())
        .expect("write the case");
    let out = child.wait_with_output().expect("python3 ends");
    assert!(out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}
