use std::path::Path;

use super::*;

const CONTRACT: &str = "0xe7f1725e7734ce288f8367e1bb143e90bb3f0512";
const TOKEN: &str = "0x5fbdb2315678afecb367f032d93f642f64180aa3";

fn shipped_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("config")
}

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn required() -> Vec<(String, String)> {
    env(&[
        ("LIQPASS__CHAIN__CONTRACT", CONTRACT),
        ("LIQPASS__CHAIN__TOKEN", TOKEN),
    ])
}

fn sources(env: Vec<(String, String)>) -> Sources {
    Sources {
        config_dir: shipped_dir(),
        environment: None,
        file: None,
        env,
    }
}

fn problems(err: &ConfigError) -> Vec<&str> {
    err.problems.iter().map(|p| p.key.as_str()).collect()
}

#[test]
fn defaults_plus_the_required_keys_give_the_documented_settings() {
    let s = load(&sources(required())).expect("valid");
    assert_eq!(s.database.url, "sqlite:liqpass.db");
    assert_eq!(s.database.busy_timeout, Duration::from_secs(5));
    assert_eq!(s.database.max_write, Duration::from_millis(2));
    assert_eq!(s.database.write_gap, Duration::from_millis(3));
    assert_eq!(s.chain.chain_id, 31337);
    assert_eq!(s.chain.confirmations, 10);
    assert_eq!(s.chain.finality, Finality::Depth);
    assert_eq!(s.chain.max_block_range, 100_000);
    assert_eq!(s.chain.max_concurrent_requests, 8);
    assert_eq!(s.chain.reorg_window, 128);
    assert_eq!(s.chain.rpc_urls.len(), 1);
    assert_eq!(s.reconcile.overpayment, OverpaymentPolicy::Accept);
    assert_eq!(s.http.listen, "127.0.0.1:9464".parse().expect("addr"));
    assert_eq!(s.log.format, LogFormat::Text);
    assert_eq!(s.shutdown.grace, Duration::from_secs(20));
    assert_eq!(format!("{:#x}", s.chain.contract), CONTRACT);
}

#[test]
fn without_the_required_keys_each_is_named() {
    let err = load(&sources(vec![])).expect_err("contract and token are required");
    assert_eq!(problems(&err), ["chain.contract", "chain.token"]);
    assert!(
        err.to_string().contains("LIQPASS__CHAIN__CONTRACT"),
        "{err}"
    );
}

#[test]
fn every_layer_overrides_the_one_before() {
    let dir = tempfile::tempdir().expect("tmp");
    std::fs::write(
        dir.path().join("staging.toml"),
        "[chain]\nconfirmations = 5\nstart_block = 42\n",
    )
    .expect("env file");
    let file = dir.path().join("extra.toml");
    std::fs::write(
        &file,
        "[chain]\nconfirmations = 7\n[log]\nlevel = \"debug\"\n",
    )
    .expect("file");
    let mut src = Sources {
        config_dir: dir.path().to_path_buf(),
        environment: Some("staging".into()),
        file: None,
        env: required(),
    };
    assert_eq!(load(&src).expect("env file").chain.confirmations, 5);
    src.file = Some(file);
    let s = load(&src).expect("file");
    assert_eq!(
        (
            s.chain.confirmations,
            s.chain.start_block,
            s.log.level.as_str()
        ),
        (7, 42, "debug")
    );
    src.env
        .push(("LIQPASS__CHAIN__CONFIRMATIONS".into(), "9".into()));
    let s = load(&src).expect("env var");
    assert_eq!(
        (s.chain.confirmations, s.chain.start_block),
        (9, 42),
        "earlier layers survive"
    );
}

#[test]
fn three_bad_keys_are_reported_together() {
    let mut e = required();
    e.retain(|(k, _)| k != "LIQPASS__CHAIN__CONTRACT");
    e.extend(env(&[
        ("LIQPASS__CHAIN__CONTRACT", "0x1234"),
        ("LIQPASS__CHAIN__CHAIN_ID", "abc"),
        ("LIQPASS__HTTP__LISTEN", "nope"),
    ]));
    let err = load(&sources(e)).expect_err("three problems");
    let keys = problems(&err);
    for k in ["chain.contract", "chain.chain_id", "http.listen"] {
        assert!(keys.contains(&k), "{k} missing from {err}");
    }
    assert_eq!(err.problems.len(), 3, "{err}");
    assert!(err
        .to_string()
        .starts_with("invalid configuration: 3 problem(s)"));
}

#[test]
fn unknown_keys_in_files_and_environment_are_named() {
    let dir = tempfile::tempdir().expect("tmp");
    let file = dir.path().join("typo.toml");
    std::fs::write(&file, "[chain]\nconfirmation = 3\n[metrics]\nx = 1\n").expect("file");
    let mut e = required();
    e.push(("LIQPASS__HTTP__LISTN".into(), "127.0.0.1:1".into()));
    let src = Sources {
        file: Some(file),
        ..sources(e)
    };
    let err = load(&src).expect_err("typos");
    let keys = problems(&err);
    for k in ["chain.confirmation", "metrics", "http.listn"] {
        assert!(keys.contains(&k), "{k} missing from {err}");
    }
}

#[test]
fn ranges_and_cross_key_rules_are_checked() {
    let mut e = required();
    e.extend(env(&[
        ("LIQPASS__CHAIN__CONFIRMATIONS", "200"),
        ("LIQPASS__CHAIN__MAX_BLOCK_RANGE", "0"),
        ("LIQPASS__CHAIN__MAX_CONCURRENT_REQUESTS", "0"),
        ("LIQPASS__CHAIN__FINALITY", "soon"),
        ("LIQPASS__LOG__FORMAT", "xml"),
    ]));
    let err = load(&sources(e)).expect_err("bad values");
    let keys = problems(&err);
    for k in [
        "chain.reorg_window",
        "chain.max_block_range",
        "chain.max_concurrent_requests",
        "chain.finality",
        "log.format",
    ] {
        assert!(keys.contains(&k), "{k} missing from {err}");
    }
}

#[test]
fn rpc_urls_never_show_their_secrets() {
    for (url, secret) in [
        (
            "https://base-mainnet.g.alchemy.com/v2/SECRETKEY123",
            "SECRETKEY123",
        ),
        ("https://rpc.example.com/?apikey=SECRET456", "SECRET456"),
        ("wss://user:PASS789@node.example.com:8546/ws", "PASS789"),
    ] {
        let mut e = required();
        e.push(("LIQPASS__CHAIN__RPC_URL".into(), url.into()));
        let s = load(&sources(e)).expect("valid");
        let shown = [
            format!("{:?}", s.chain.rpc_urls[0]),
            s.chain.rpc_urls[0].to_string(),
            format!("{s:?}"),
            s.to_redacted_toml(),
        ];
        for text in shown {
            assert!(!text.contains(secret), "{secret} leaked in {text}");
            assert!(
                text.contains(s.chain.rpc_urls[0].expose().host_str().expect("host")),
                "{text}"
            );
        }
        assert!(
            s.chain.rpc_urls[0].expose().as_str().contains(secret),
            "expose() keeps it"
        );
        // A bad value next to the secret is reported without it.
        let mut e = required();
        e.push((
            "LIQPASS__CHAIN__RPC_URL".into(),
            url.replace("https", "ftp").replace("wss", "ftp"),
        ));
        e.push((
            "LIQPASS__CHAIN__RPC_URLS".into(),
            format!("not a url {secret}"),
        ));
        let err = load(&sources(e)).expect_err("bad urls").to_string();
        assert!(!err.contains(secret), "{secret} leaked in {err}");
    }
}

#[test]
fn rpc_url_comes_before_rpc_urls_and_ws_is_detected() {
    let mut e = required();
    e.push((
        "LIQPASS__CHAIN__RPC_URLS".into(),
        "wss://b.example.com,https://c.example.com".into(),
    ));
    let s = load(&sources(e)).expect("valid");
    let shown: Vec<_> = s.chain.rpc_urls.iter().map(|u| u.to_string()).collect();
    assert_eq!(
        shown,
        [
            "http://127.0.0.1:8545",
            "wss://b.example.com",
            "https://c.example.com"
        ]
    );
    assert!(s.chain.rpc_urls[1].is_ws() && !s.chain.rpc_urls[2].is_ws());
}

#[test]
fn a_wrong_checksum_is_rejected_and_addresses_are_stored_lower_case() {
    assert!(parse_address("0x5FbDB2315678afecb367f032d93F642f64180aa3").is_ok());
    assert!(parse_address("0x5FBDB2315678AFECB367F032D93F642F64180AA3").is_ok());
    let err =
        parse_address("0x5FbDB2315678afecb367f032d93F642f64180aA3").expect_err("bad checksum");
    assert!(err.contains("checksum"), "{err}");
    let mut e = required();
    e.push((
        "LIQPASS__CHAIN__TREASURY".into(),
        "0x70997970C51812dc3A010C7d01b50e0d17dc79C8".into(),
    ));
    let s = load(&sources(e)).expect("valid checksum");
    assert!(s
        .to_redacted_toml()
        .contains("0x70997970c51812dc3a010c7d01b50e0d17dc79c8"));
}

#[test]
fn the_shipped_environment_files_load() {
    let local = Sources {
        environment: Some("local".into()),
        ..sources(vec![])
    };
    let s = load(&local).expect("local.toml is complete");
    assert_eq!(s.chain.chain_id, 31337);
    let mainnet = Sources {
        environment: Some("base-mainnet".into()),
        ..sources(env(&[(
            "LIQPASS__CHAIN__RPC_URL",
            "https://base.example.com/v2/KEY",
        )]))
    };
    let s = load(&mainnet).expect("base-mainnet.toml with an rpc url");
    assert_eq!((s.chain.chain_id, s.chain.start_block), (8453, 37_907_114));
    assert_eq!(
        format!("{:#x}", s.chain.contract),
        "0xc423c34b57730ba87fb74b99180663913a345d68"
    );
    let sepolia = Sources {
        environment: Some("base-sepolia".into()),
        ..sources(env(&[
            ("LIQPASS__CHAIN__RPC_URL", "https://sepolia.example.com"),
            ("LIQPASS__CHAIN__CONTRACT", CONTRACT),
        ]))
    };
    assert_eq!(
        load(&sepolia).expect("base-sepolia.toml").chain.chain_id,
        84532
    );
}

#[test]
fn a_missing_environment_file_or_config_file_is_a_problem() {
    let src = Sources {
        environment: Some("nowhere".into()),
        file: Some("/no/such/file.toml".into()),
        ..sources(required())
    };
    let err = load(&src).expect_err("missing files");
    assert_eq!(problems(&err), ["LIQPASS_ENV", "--config"]);
}

#[test]
fn verification_is_off_by_default_and_verifier_urls_never_show_their_secrets() {
    let s = load(&sources(required())).expect("defaults");
    assert!(s.chain.verify_rpc_urls.is_empty());
    assert_eq!(s.chain.verify_quorum, 1);
    let mut e = required();
    e.push((
        "LIQPASS__CHAIN__VERIFY_RPC_URLS".into(),
        "https://base.other.example/v3/VERIFYKEY1,wss://u:VERIFYPW2@third.example:8546".into(),
    ));
    e.push(("LIQPASS__CHAIN__VERIFY_QUORUM".into(), "2".into()));
    let s = load(&sources(e)).expect("two verifiers, quorum 2");
    assert_eq!(s.chain.verify_rpc_urls.len(), 2);
    assert_eq!(s.chain.verify_quorum, 2);
    let toml = s.to_redacted_toml();
    assert!(toml.contains("verify_quorum = 2"), "{toml}");
    assert!(
        toml.contains("https://base.other.example/<redacted>"),
        "{toml}"
    );
    for text in [toml, format!("{s:?}")] {
        for secret in ["VERIFYKEY1", "VERIFYPW2"] {
            assert!(!text.contains(secret), "{secret} leaked in {text}");
        }
    }
}

#[test]
fn a_verify_quorum_beyond_the_verifiers_or_a_verifier_that_is_the_primary_is_refused() {
    let mut e = required();
    e.push((
        "LIQPASS__CHAIN__VERIFY_RPC_URLS".into(),
        "https://a.example/KEY".into(),
    ));
    e.push(("LIQPASS__CHAIN__VERIFY_QUORUM".into(), "2".into()));
    let err = load(&sources(e)).expect_err("quorum 2 of 1");
    assert_eq!(problems(&err), ["chain.verify_quorum"]);
    assert!(err.to_string().contains("1..=1"), "{err}");
    assert!(!err.to_string().contains("KEY"), "{err}");

    let mut e = required();
    e.push(("LIQPASS__CHAIN__VERIFY_QUORUM".into(), "0".into()));
    let err = load(&sources(e)).expect_err("quorum 0");
    assert_eq!(problems(&err), ["chain.verify_quorum"]);

    let mut e = required();
    e.push(("LIQPASS__CHAIN__VERIFY_QUORUM".into(), "3".into()));
    let err = load(&sources(e)).expect_err("a quorum without verifiers");
    assert!(
        err.to_string().contains("needs chain.verify_rpc_urls"),
        "{err}"
    );

    let mut e = required();
    e.push((
        "LIQPASS__CHAIN__VERIFY_RPC_URLS".into(),
        "http://127.0.0.1:8545".into(),
    ));
    let err = load(&sources(e)).expect_err("the primary as its own verifier");
    assert_eq!(problems(&err), ["chain.verify_rpc_urls"]);
    assert!(err.to_string().contains("independent"), "{err}");
}

#[test]
fn the_request_budget_is_unlimited_unless_set_and_then_checked_and_shown() {
    let s = load(&sources(required())).expect("valid");
    assert_eq!(s.chain.max_requests_per_second, None);
    assert!(!s.to_redacted_toml().contains("max_requests_per_second"));
    let mut e = required();
    e.extend(env(&[("LIQPASS__CHAIN__MAX_REQUESTS_PER_SECOND", "25")]));
    let s = load(&sources(e)).expect("valid");
    assert_eq!(s.chain.max_requests_per_second, Some(25));
    assert!(s
        .to_redacted_toml()
        .contains("max_requests_per_second = 25"));
    let mut e = required();
    e.extend(env(&[("LIQPASS__CHAIN__MAX_REQUESTS_PER_SECOND", "0")]));
    let err = load(&sources(e)).expect_err("zero is no budget");
    assert_eq!(problems(&err), ["chain.max_requests_per_second"]);
}

#[test]
fn a_postgres_password_never_shows_in_the_settings_or_their_toml() {
    let mut e = required();
    e.push((
        "LIQPASS__DATABASE__URL".into(),
        "postgres://liqpass:DBPASS42@db.internal:5432/liqpass?sslpassword=KEYPASS7".into(),
    ));
    e.push(("LIQPASS__DATABASE__SCHEMA".into(), "shop".into()));
    let s = load(&sources(e)).expect("a postgres URL");
    assert_eq!(s.database.schema, "shop");
    let toml = s.to_redacted_toml();
    assert!(
        toml.contains("postgres://liqpass:<redacted>@db.internal:5432/liqpass"),
        "{toml}"
    );
    for text in [toml, format!("{s:?}")] {
        for secret in ["DBPASS42", "KEYPASS7"] {
            assert!(!text.contains(secret), "{secret} leaked in {text}");
        }
    }
}

#[test]
fn a_database_url_of_another_kind_or_a_bad_schema_is_refused_without_its_password() {
    for (key, value, named) in [
        (
            "LIQPASS__DATABASE__URL",
            "mysql://root:ROOTPW9@db/x",
            "database.url",
        ),
        ("LIQPASS__DATABASE__SCHEMA", "Shop-1", "database.schema"),
    ] {
        let mut e = required();
        e.push((key.into(), value.into()));
        let err = load(&sources(e)).expect_err(value).to_string();
        assert!(err.contains(named) && !err.contains("PW9"), "{err}");
    }
}

#[test]
fn default_toml_and_the_readme_document_exactly_the_keys_of_the_table() {
    use std::collections::BTreeSet;
    let table: BTreeSet<String> = KEYS.iter().map(|(k, _)| (*k).to_owned()).collect();
    // default.toml: `key = …`, or `# key = …` for a key with no default.
    let mut in_toml = BTreeSet::new();
    let mut section = String::new();
    for line in DEFAULTS.lines() {
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = name.to_owned();
            continue;
        }
        let line = line.strip_prefix("# ").unwrap_or(line);
        if let Some((key, _)) = line.split_once(" = ") {
            if !key.is_empty() && key.chars().all(|c| c.is_ascii_lowercase() || c == '_') {
                in_toml.insert(format!("{section}.{key}"));
            }
        }
    }
    assert_eq!(in_toml, table, "config/default.toml against config::KEYS");
    // docs/configuration.md: one table row per key.
    let doc = include_str!("../docs/configuration.md");
    let in_readme: BTreeSet<String> = doc
        .lines()
        .filter_map(|l| l.strip_prefix("| `")?.split_once('`'))
        .map(|(key, _)| key.to_owned())
        .filter(|key| key.contains('.'))
        .collect();
    assert_eq!(
        in_readme, table,
        "docs/configuration.md's table against config::KEYS"
    );
}

#[test]
fn an_old_notify_section_is_refused_naming_its_new_key() {
    let mut e = required();
    e.extend(env(&[("LIQPASS__NOTIFY__RETENTION_DAYS", "7")]));
    let err = load(&sources(e)).expect_err("renamed");
    assert_eq!(problems(&err), ["notify"]);
    assert!(err.to_string().contains("outbox.retention_days"), "{err}");
}

#[test]
fn check_config_prints_every_key_with_a_value_and_no_other() {
    let mut e = required();
    e.extend(env(&[(
        "LIQPASS__WEBHOOKS__URL",
        "https://hooks.example/in?token=HOOKTOKEN1",
    )]));
    e.extend(env(&[(
        "LIQPASS__WEBHOOKS__SECRET",
        "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
    )]));
    let s = load(&sources(e)).expect("valid");
    let toml = s.to_redacted_toml();
    let parsed: toml::Table = toml.parse().expect("check-config prints TOML");
    for (key, kind) in KEYS {
        let (section, name) = key.split_once('.').expect("section.key");
        let shown = parsed.get(section).and_then(|t| t.get(name)).is_some();
        let optional = ["chain.treasury", "chain.max_requests_per_second"].contains(key);
        assert!(shown || optional, "{key} ({kind:?}) not printed:\n{toml}");
    }
    assert!(
        !toml.contains("HOOKTOKEN1") && !toml.contains("MfKQ9r8"),
        "{toml}"
    );
    assert!(toml.contains("<redacted: 2 keys>"), "{toml}");
}
