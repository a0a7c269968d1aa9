//! The binary's interface: exit codes, `check-config`, `migrate`, help, and
//! secrets that never reach output or logs.

use std::collections::BTreeMap;

use crate::support::daemon::command;
use crate::support::db::{Backend, Db};

const SECRET: &str = "SUPERSECRETKEY42";

fn base_env(db_url: &str) -> BTreeMap<String, String> {
    [
        ("LIQPASS__DATABASE__URL", db_url.to_owned()),
        (
            "LIQPASS__CHAIN__CONTRACT",
            "0xe7f1725e7734ce288f8367e1bb143e90bb3f0512".to_owned(),
        ),
        (
            "LIQPASS__CHAIN__TOKEN",
            "0x5fbdb2315678afecb367f032d93f642f64180aa3".to_owned(),
        ),
        ("LIQPASS__HTTP__LISTEN", "127.0.0.1:0".to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

#[test]
fn bad_configuration_names_every_bad_key_and_exits_64() {
    let mut env = base_env("sqlite::memory:");
    env.insert("LIQPASS__CHAIN__CONTRACT".into(), "0xnope".into());
    env.insert("LIQPASS__CHAIN__CHAIN_ID".into(), "abc".into());
    env.insert("LIQPASS__HTTP__LISTEN".into(), "nowhere".into());
    let out = command(&env, &["check-config"]);
    assert_eq!(out.status.code(), Some(64));
    let err = String::from_utf8_lossy(&out.stderr);
    for key in ["chain.contract", "chain.chain_id", "http.listen"] {
        assert!(err.contains(key), "{key} not named in: {err}");
    }
}

/// An `http://` webhook receiver on another host is accepted with a
/// warning (deliveries would cross the network in clear text); https and
/// loopback are not warned about.
#[test]
fn an_http_webhook_url_on_another_host_is_warned_about() {
    for (url, warned) in [
        ("http://receiver.example/hooks", true),
        ("https://receiver.example/hooks", false),
        ("http://127.0.0.1:8080/hooks", false),
        ("http://localhost/hooks", false),
    ] {
        let mut env = base_env("sqlite::memory:");
        env.insert("LIQPASS__WEBHOOKS__URL".into(), url.into());
        env.insert(
            "LIQPASS__WEBHOOKS__SECRET".into(),
            "whsec_MDEyMzQ1Njc4OTAxMjM0NTY3ODkwMTIz".into(),
        );
        let out = command(&env, &["check-config"]);
        assert!(out.status.success(), "{url}: {out:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            err.contains("warning: webhooks.url"),
            warned,
            "{url}: {err}"
        );
        assert!(!err.contains("/hooks"), "the URL's path is redacted: {err}");
    }
}

#[test]
fn usage_errors_exit_64_and_help_exits_0() {
    let env = base_env("sqlite::memory:");
    assert_eq!(command(&env, &["frobnicate"]).status.code(), Some(64));
    assert_eq!(
        command(&env, &["backfill", "--from", "x", "--to", "1"])
            .status
            .code(),
        Some(64)
    );
    for args in [
        vec!["--help"],
        vec!["run", "--help"],
        vec!["backfill", "--help"],
        vec!["status", "--help"],
    ] {
        let out = command(&env, &args);
        assert_eq!(out.status.code(), Some(0), "{args:?}");
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("Usage"),
            "{args:?}"
        );
    }
}

#[test]
fn a_bad_audit_rpc_url_is_a_usage_error_that_never_repeats_its_key() {
    let env = base_env("sqlite::memory:");
    for url in [
        format!("ftp://rpc.example/v2/{SECRET}"),
        format!("not a url {SECRET}"),
        format!("https://user:{SECRET}@/v2"),
    ] {
        let out = command(
            &env,
            &["audit", "--from", "0", "--to", "1", "--rpc-url", &url],
        );
        assert_eq!(out.status.code(), Some(64), "{url}");
        let all = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(all.contains("--rpc-url"), "names the option: {all}");
        assert!(!all.contains(SECRET), "the key is not repeated: {all}");
    }
}

#[test]
fn check_config_prints_the_effective_settings_without_the_rpc_secret() {
    let mut env = base_env("sqlite::memory:");
    env.insert(
        "LIQPASS__CHAIN__RPC_URL".into(),
        format!("https://base-mainnet.g.alchemy.com/v2/{SECRET}"),
    );
    env.insert("LIQPASS__CHAIN__CONFIRMATIONS".into(), "7".into());
    let out = command(&env, &["check-config"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("confirmations = 7"), "{text}");
    assert!(
        text.contains("base-mainnet.g.alchemy.com/<redacted>"),
        "{text}"
    );
    assert!(!text.contains(SECRET) && !String::from_utf8_lossy(&out.stderr).contains(SECRET));
}

#[tokio::test]
async fn the_rpc_secret_never_appears_in_logs_even_when_the_endpoint_fails() {
    let db = Db::new().await;
    let mut env = base_env(&db.url());
    // Nothing listens there: connection errors are logged, the URL is not.
    env.insert(
        "LIQPASS__CHAIN__RPC_URL".into(),
        format!("http://127.0.0.1:9/v2/{SECRET}"),
    );
    env.insert("LIQPASS__CHAIN__REQUEST_TIMEOUT_MS".into(), "200".into());
    env.insert("LIQPASS__LOG__LEVEL".into(), "debug".into());
    let out = command(&env, &["status"]);
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(all.contains("127.0.0.1"), "the endpoint is named: {all}");
    assert!(!all.contains(SECRET), "secret leaked: {all}");

    let mut daemon = crate::support::daemon::Daemon::spawn(&env);
    crate::support::wait_for(
        "a logged RPC failure",
        std::time::Duration::from_secs(20),
        || async { daemon.logs().contains("unreachable").then_some(()) },
    )
    .await;
    daemon.signal("TERM");
    let status = daemon.wait_exit(std::time::Duration::from_secs(30)).await;
    assert!(status.success(), "{}", daemon.logs());
    assert!(
        !daemon.logs().contains(SECRET),
        "secret leaked: {}",
        daemon.logs()
    );
}

both_backends!(
    migrate_applies_and_reverts_and_run_refuses_an_unmigrated_database,
    migrate_and_revert
);
async fn migrate_and_revert(backend: Backend) {
    let dir = tempfile::tempdir().expect("tmp");
    let (url, migrator) = match backend {
        Backend::Sqlite => (
            format!("sqlite://{}", dir.path().join("fresh.db").display()),
            &liqpass_indexer::store::sqlite::MIGRATOR,
        ),
        Backend::Postgres => (
            crate::support::pg::cluster().database().await,
            &liqpass_indexer::store::postgres::MIGRATOR,
        ),
    };
    let env = base_env(&url);
    let out = command(&env, &["run"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("run `liqpass-indexer migrate`"));
    if matches!(backend, Backend::Sqlite) {
        // No file there: a mistyped path, refused by every command but
        // `migrate`, which alone creates the file.
        for args in [&["run"][..], &["status"], &["review"]] {
            let out = command(&env, args);
            assert_eq!(out.status.code(), Some(1), "{args:?}");
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(stderr.contains("no database file at sqlite://"), "{stderr}");
        }
        assert!(!dir.path().join("fresh.db").exists(), "no empty file left");
    }
    let out = command(&env, &["migrate"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let last = migrator
        .iter()
        .map(|m| m.version)
        .max()
        .expect("some migrations");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(&format!("database is at migration {last}")),
        "{stdout}"
    );
    let out = command(&env, &["migrate", "--revert-last"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(&format!("reverted migration {last}")),
        "{stdout}"
    );
    let out = command(&env, &["migrate"]);
    assert!(out.status.success());
}

/// The one `liqpass-indexer: …` line a failed command prints (the log lines
/// around it are the logger's), checked to carry no secret.
fn error_line(out: &std::process::Output, secret: &str) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        !stderr.contains(secret) && !stdout.contains(secret),
        "the password was printed: {stderr}{stdout}"
    );
    let lines: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("liqpass-indexer: "))
        .collect();
    assert_eq!(lines.len(), 1, "one error line: {stderr}");
    lines[0].to_owned()
}

#[tokio::test]
async fn bad_postgres_settings_each_get_one_clear_line_and_their_exit_code_never_the_password() {
    use crate::support::pg::{cluster, PASSWORD};
    let cluster = cluster();

    // Nothing listens there.
    let env = base_env(&format!(
        "postgres://liqpass:{PASSWORD}@127.0.0.1:1/liqpass"
    ));
    let out = command(&env, &["migrate"]);
    assert_eq!(out.status.code(), Some(1));
    let line = error_line(&out, PASSWORD);
    assert!(
        line.contains("cannot open database postgres://liqpass:<redacted>@127.0.0.1:1/liqpass"),
        "{line}"
    );

    // The server refuses the credentials.
    let wrong = "WrOnG-pass-77";
    let env = base_env(&cluster.database_with_password(wrong).await);
    let out = command(&env, &["status"]);
    assert_eq!(out.status.code(), Some(1));
    let line = error_line(&out, wrong);
    assert!(line.contains("password authentication failed"), "{line}");

    // The right password, on a database never migrated: `run` refuses it.
    let url = cluster.database_with_password(PASSWORD).await;
    let env = base_env(&url);
    let out = command(&env, &["run"]);
    assert_eq!(out.status.code(), Some(1));
    let line = error_line(&out, PASSWORD);
    assert!(line.contains("run `liqpass-indexer migrate`"), "{line}");
    let out = command(&env, &["check-config"]);
    assert!(out.status.success());
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(
        printed.contains("liqpass_pw:<redacted>@localhost") && !printed.contains(PASSWORD),
        "{printed}"
    );
    let out = command(&env, &["migrate"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!String::from_utf8_lossy(&out.stderr).contains(PASSWORD));

    // A schema that does not exist is a setting to fix: 64.
    let mut env = base_env(&url);
    env.insert("LIQPASS__DATABASE__SCHEMA".into(), "nowhere".into());
    let out = command(&env, &["migrate"]);
    assert_eq!(out.status.code(), Some(64));
    let line = error_line(&out, PASSWORD);
    assert!(line.contains("schema \"nowhere\" does not exist"), "{line}");

    // Neither a sqlite: nor a postgres:// URL, with a password in it.
    let env = base_env(&format!("mysql://root:{PASSWORD}@db/x"));
    let out = command(&env, &["migrate"]);
    assert_eq!(out.status.code(), Some(64));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("database.url") && !stderr.contains(PASSWORD),
        "{stderr}"
    );
}

#[tokio::test]
async fn on_postgres_the_contract_lives_in_the_configured_schema() {
    let url = crate::support::pg::cluster().database().await;
    let mut admin = <sqlx::PgConnection as sqlx::Connection>::connect(&url)
        .await
        .expect("connect");
    sqlx::query("CREATE SCHEMA shop")
        .execute(&mut admin)
        .await
        .expect("schema");
    let mut env = base_env(&url);
    env.insert("LIQPASS__DATABASE__SCHEMA".into(), "shop".into());
    let out = command(&env, &["migrate"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (in_shop, in_public): (bool, bool) = sqlx::query_as(
        "SELECT to_regclass('shop.orders') IS NOT NULL, to_regclass('public.orders') IS NOT NULL",
    )
    .fetch_one(&mut admin)
    .await
    .expect("regclass");
    assert_eq!((in_shop, in_public), (true, false));
    let out = command(&env, &["status"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// What a command should do: succeed, or exit 64 naming these keys.
type Expect = Result<(), Vec<&'static str>>;

/// Each command requires exactly the settings it reads: `migrate` the
/// database, `status` and `ack-reorg` the database and which chain and
/// contract, `run`/`backfill`/`check-config` everything. Unknown keys are an
/// error for all of them.
/// The SQLite file `migrate` creates is its owner's alone (0600), and so
/// are its WAL and shared-memory files, under a umask that would give
/// everyone read access (the tests' 022).
#[tokio::test]
async fn a_new_sqlite_database_is_readable_by_its_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("new.db");
    let out = command(
        &base_env(&format!("sqlite://{}", path.display())),
        &["migrate"],
    );
    assert!(out.status.success(), "{out:?}");
    for name in ["new.db", "new.db-wal", "new.db-shm"] {
        let file = dir.path().join(name);
        if name != "new.db" && !file.exists() {
            continue;
        }
        let mode = std::fs::metadata(&file)
            .expect("metadata")
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600, "{name} has mode {mode:o}");
    }
}

#[tokio::test]
async fn each_command_requires_only_the_settings_it_reads() {
    let db = Db::new().await;
    let fresh = tempfile::tempdir().expect("temp dir");
    let fresh_url = format!("sqlite://{}", fresh.path().join("new.db").display());
    let contract = "0xe7f1725e7734ce288f8367e1bb143e90bb3f0512";
    let env_of = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (format!("LIQPASS__{k}"), (*v).to_owned()))
            .collect()
    };
    // Nothing listens on the discard port: `status` shows the head as unavailable.
    let no_node = ("CHAIN__RPC_URL", "http://127.0.0.1:9");
    let db_url = db.url();
    let cases: Vec<(Vec<&str>, BTreeMap<String, String>, Expect)> = vec![
        (
            vec!["migrate"],
            env_of(&[("DATABASE__URL", &fresh_url)]),
            Ok(()),
        ),
        (
            vec!["migrate"],
            env_of(&[("DATABASE__URL", &fresh_url), ("CHAIN__CONFIRMATIONS", "x")]),
            Ok(()), // a section migrate does not read
        ),
        (
            vec!["migrate"],
            env_of(&[
                ("DATABASE__URL", &fresh_url),
                ("DATABASE__BUSY_TIMEOUT_MS", "0"),
            ]),
            Err(vec!["database.busy_timeout_ms"]),
        ),
        (
            vec!["migrate"],
            env_of(&[("DATABASE__URL", &fresh_url), ("CHAIN__CONFIRMATONS", "3")]),
            Err(vec!["chain.confirmatons"]), // a typo is an error everywhere
        ),
        (
            vec!["status"],
            env_of(&[
                ("DATABASE__URL", &db_url),
                ("CHAIN__CONTRACT", contract),
                no_node,
            ]),
            Ok(()),
        ),
        (
            vec!["status"],
            env_of(&[("DATABASE__URL", &db_url), no_node]),
            Err(vec!["chain.contract"]),
        ),
        (
            vec!["ack-reorg"],
            env_of(&[("DATABASE__URL", &db_url), ("CHAIN__CONTRACT", contract)]),
            Ok(()),
        ),
        (
            vec!["backfill", "--from", "0", "--to", "1"],
            env_of(&[("DATABASE__URL", &db_url), ("CHAIN__CONTRACT", contract)]),
            Err(vec!["chain.token"]),
        ),
        (
            vec!["run"],
            env_of(&[("DATABASE__URL", &db_url)]),
            Err(vec!["chain.contract", "chain.token"]),
        ),
        (
            vec!["check-config"],
            env_of(&[("DATABASE__URL", &db_url), ("CHAIN__CONTRACT", contract)]),
            Err(vec!["chain.token"]),
        ),
    ];
    for (args, env, want) in cases {
        let out = command(&env, &args);
        let err = String::from_utf8_lossy(&out.stderr);
        match want {
            Ok(()) => assert!(out.status.success(), "{args:?} {env:?}: {err}"),
            Err(keys) => {
                assert_eq!(out.status.code(), Some(64), "{args:?} {env:?}: {err}");
                for key in keys {
                    assert!(err.contains(key), "{args:?}: {key} not named in {err}");
                }
                if args == ["backfill", "--from", "0", "--to", "1"] {
                    assert!(!err.contains("chain.contract"), "{err}");
                }
            }
        }
    }
    let status = command(
        &env_of(&[
            ("DATABASE__URL", &db_url),
            ("CHAIN__CONTRACT", contract),
            no_node,
        ]),
        &["status"],
    );
    let text = String::from_utf8_lossy(&status.stdout);
    assert!(
        text.contains("checkpoint") && text.contains("head         unavailable"),
        "{text}"
    );
}
