//! The real binary, configured through `LIQPASS__*` environment variables.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::chain::Chain;
use super::db::Db;

/// The binary under test: `$LIQPASS_BIN` when set (a bench against another
/// build), else Cargo's for tests and benches, else target/debug's (the demo
/// example; `make demo` builds it first).
pub fn bin() -> std::path::PathBuf {
    if let Some(path) = std::env::var_os("LIQPASS_BIN") {
        return path.into();
    }
    match option_env!("CARGO_BIN_EXE_liqpass-indexer") {
        Some(path) => path.into(),
        None => concat!(env!("CARGO_MANIFEST_DIR"), "/target/debug/liqpass-indexer").into(),
    }
}

/// Environment for the binary: the test chain, the test database, fast
/// polling, a short write lease.
pub fn env_for(chain: &Chain, db: &Db) -> BTreeMap<String, String> {
    let mut env = BTreeMap::new();
    let mut set = |k: &str, v: String| {
        env.insert(format!("LIQPASS__{k}"), v);
    };
    set("DATABASE__URL", db.url());
    set("CHAIN__RPC_URL", chain.rpc_url());
    set("CHAIN__CHAIN_ID", "31337".into());
    set("CHAIN__CONTRACT", format!("{:#x}", chain.checkout));
    set("CHAIN__TOKEN", format!("{:#x}", chain.usdc));
    set("CHAIN__TREASURY", format!("{:#x}", chain.treasury));
    set("CHAIN__CONFIRMATIONS", "2".into());
    set("CHAIN__REORG_WINDOW", "64".into());
    set("CHAIN__POLL_INTERVAL_MS", "20".into());
    set("HTTP__LISTEN", "127.0.0.1:0".into());
    set("LOG__LEVEL", "info,liqpass_indexer=debug".into());
    // A daemon killed by a test leaves its lease behind: the next one
    // waits for it to expire, so tests keep it short.
    set("HA__LEASE_TTL_MS", "2000".into());
    set("HA__RENEW_INTERVAL_MS", "400".into());
    env
}

/// `env` with `pairs` set over it.
pub fn with(env: &BTreeMap<String, String>, pairs: &[(&str, String)]) -> BTreeMap<String, String> {
    let mut env = env.clone();
    for (k, v) in pairs {
        env.insert((*k).to_owned(), v.clone());
    }
    env
}

/// Runs a one-shot command of the binary to completion.
pub fn command(env: &BTreeMap<String, String>, args: &[&str]) -> Output {
    base(env).args(args).output().expect("run liqpass-indexer")
}

fn base(env: &BTreeMap<String, String>) -> Command {
    let mut cmd = Command::new(bin());
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env(
            "LIQPASS_CONFIG_DIR",
            concat!(env!("CARGO_MANIFEST_DIR"), "/config"),
        )
        .envs(env);
    cmd
}

/// A running `liqpass-indexer run`.
pub struct Daemon {
    pub child: Child,
    pub log: Arc<Mutex<Vec<String>>>,
}

impl Daemon {
    pub fn spawn(env: &BTreeMap<String, String>) -> Daemon {
        let mut child = base(env)
            .arg("run")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn liqpass-indexer run");
        let log = Arc::new(Mutex::new(Vec::new()));
        let stderr = child.stderr.take().expect("piped stderr");
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if std::env::var_os("LIQPASS_TEST_ECHO").is_some() {
                    eprintln!("[daemon] {line}");
                }
                sink.lock().expect("log lock").push(line);
            }
        });
        Daemon { child, log }
    }

    /// The HTTP address the daemon logged.
    pub async fn http_addr(&self) -> std::net::SocketAddr {
        super::wait_for(
            "the daemon to log its address",
            Duration::from_secs(30),
            || async {
                let log = self.log.lock().expect("log lock");
                log.iter().find_map(|l| {
                    let at = l.find("addr=")?;
                    l[at + 5..].split_whitespace().next()?.parse().ok()
                })
            },
        )
        .await
    }

    /// Waits until the daemon has logged `text` at least `times` times.
    /// Two replicas on one database, started in turn: the first once it
    /// leads (it took the write lease), the second once it stands by.
    pub async fn leader_and_standby(env: &BTreeMap<String, String>) -> (Daemon, Daemon) {
        let leader = Daemon::spawn(env);
        leader.logged("took the write lease", 1).await;
        let standby = Daemon::spawn(env);
        standby
            .logged("standby: another replica holds the write lease", 1)
            .await;
        (leader, standby)
    }

    /// On a timeout the panic shows the daemon's last log lines.
    pub async fn logged(&self, text: &str, times: usize) {
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while self.logs().matches(text).count() < times {
            if std::time::Instant::now() > deadline {
                let logs = self.logs();
                let tail: Vec<&str> = logs.lines().rev().take(40).collect();
                let tail: Vec<&str> = tail.into_iter().rev().collect();
                panic!(
                    "timed out after 60s waiting for the daemon to log {text:?} {times} time(s); \
                     its last lines:\n{}",
                    tail.join("\n")
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn logs(&self) -> String {
        self.log.lock().expect("log lock").join("\n")
    }

    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([&format!("-{signal}"), &self.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill -{signal} failed");
    }

    /// SIGKILL, then reap.
    pub fn kill9(mut self) {
        self.child.kill().expect("kill -9");
        self.child.wait().expect("reap");
    }

    /// Waits (bounded) for the process to exit.
    pub async fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        super::wait_for("the daemon to exit", timeout, || {
            let status = self.child.try_wait().expect("try_wait");
            async move { status }
        })
        .await
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
