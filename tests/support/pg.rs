//! A throwaway PostgreSQL cluster: `initdb` into a temporary directory and
//! `pg_ctl start` on a Unix socket there (no TCP port, so nothing can clash
//! with a server this suite did not start), once per test binary, one
//! database per test. Run as the `postgres` user when the tests run as root
//! (`initdb` refuses root). A watchdog stops the cluster and removes its
//! directory when the test binary exits. The binaries come from
//! `tests/pg/install.sh` (Debian's `postgresql` package). A TLS cluster
//! ([`tls_cluster`]) also listens on TCP, on 127.0.0.1 at a port the kernel
//! handed out, with certificates `openssl` makes for it.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

use sqlx::{Connection, PgConnection};

/// The socket port (part of the socket's file name only).
const PORT: u16 = 5432;
/// The one role that authenticates with a password ([`PASSWORD`]).
pub const PASSWORD_USER: &str = "liqpass_pw";
pub const PASSWORD: &str = "Pg-SeCrEt-91";

pub struct Cluster {
    dir: PathBuf,
    bin: PathBuf,
    options: String,
    /// Its socket's port (and TCP port, for a [`tls_cluster`]).
    port: u16,
}

static CLUSTER: OnceLock<Cluster> = OnceLock::new();
static DATABASES: AtomicUsize = AtomicUsize::new(0);

/// The test binary's cluster, started on first use.
pub fn cluster() -> &'static Cluster {
    CLUSTER.get_or_init(|| Cluster::start(Durability::Fast, false))
}

/// A cluster of the caller's own, for a test that restarts or crashes its
/// server (every connection cut) while the other tests of the binary use
/// theirs. Durable, as a production server is (`fsync` and
/// `synchronous_commit` on, where the shared cluster trades them for
/// speed): a crash loses no commit it acknowledged. Stopped, like the
/// shared one, when the process ends (as every cluster here).
pub fn private_cluster() -> &'static Cluster {
    Box::leak(Box::new(Cluster::start(Durability::Durable, false)))
}

/// A private cluster whose crash loses the commits of up to its last ten
/// seconds, acknowledged as they were (`synchronous_commit = off`, the WAL
/// written every 10 s): as a failover to a replica that was behind loses
/// them. Everything before a `CHECKPOINT` is kept.
pub fn private_cluster_losing_commits() -> &'static Cluster {
    Box::leak(Box::new(Cluster::start(
        Durability::LosesRecentCommits,
        false,
    )))
}

/// A private cluster that also listens on TCP at 127.0.0.1 ([`Cluster::tcp_url`]),
/// with TLS only there: a certificate for `localhost` signed by a CA of its
/// own (`ca.pem` in [`Cluster::dir`]; `other-ca.pem` beside it signed
/// nothing), [`PASSWORD_USER`] by password over TLS, and every connection
/// without TLS over TCP refused.
pub fn tls_cluster() -> &'static Cluster {
    Box::leak(Box::new(Cluster::start(Durability::Fast, true)))
}

/// A CA, another CA, and a server certificate for `localhost` signed by the
/// first, in `dir` (openssl).
fn make_certificates(dir: &Path) {
    assert!(
        Command::new("openssl")
            .arg("version")
            .output()
            .is_ok_and(|o| o.status.success()),
        "openssl is needed for the TLS tests: `apt-get install -y openssl` \
         (Debian's postgresql package brings it)"
    );
    let script = "set -e
        openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 2 \
            -subj /CN=liqpass-test-ca
        openssl req -x509 -newkey rsa:2048 -nodes -keyout other-ca.key -out other-ca.pem \
            -days 2 -subj /CN=liqpass-other-ca
        openssl req -newkey rsa:2048 -nodes -keyout server.key -out server.csr -subj /CN=localhost
        printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\n' > san.ext
        openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial \
            -out server.crt -days 2 -extfile san.ext
        chmod 600 server.key";
    run("openssl (the test certificates)", {
        let mut c = Command::new("sh");
        c.args(["-c", script]).current_dir(dir);
        c
    });
    if as_root() {
        run("chown the certificates", {
            let mut c = Command::new("chown");
            c.args(["-R", "postgres:postgres"]).arg(dir);
            c
        });
    }
}

/// A free TCP port on 127.0.0.1, as the kernel hands one out.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// What a crash of the server keeps.
#[derive(Clone, Copy)]
enum Durability {
    /// Nothing: the shared cluster, fast (`fsync` and `synchronous_commit`
    /// off; nobody crashes it).
    Fast,
    /// Every commit it acknowledged, as a production server.
    Durable,
    /// Commits up to ten seconds old may be lost.
    LosesRecentCommits,
}

/// Whether this process runs as root (`/proc/self` belongs to its user).
fn as_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

/// `program args…`, as the `postgres` user when we are root.
fn server_command(program: &Path, args: &[&str]) -> Command {
    if as_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(program).args(args);
        c
    } else {
        let mut c = Command::new(program);
        c.args(args);
        c
    }
}

fn run(what: &str, mut cmd: Command) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot run: {e}"));
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Cluster {
    fn start(durability: Durability, tls: bool) -> Cluster {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/pg/install.sh");
        let out = Command::new("bash")
            .arg(script)
            .stderr(Stdio::inherit())
            .output()
            .expect("run tests/pg/install.sh");
        assert!(
            out.status.success(),
            "PostgreSQL is needed for these tests and could not be installed: \
             run `sudo apt-get install -y postgresql` (or `bash tests/pg/install.sh`)"
        );
        let bin = PathBuf::from(
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .last()
                .expect("install.sh prints the bin directory")
                .trim(),
        );
        // /tmp, not a tempdir under the build tree: the postgres user must
        // be able to enter it.
        let dir = PathBuf::from(format!(
            "/tmp/liqpass-pg-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos())
        ));
        std::fs::create_dir_all(&dir).expect("create the cluster directory");
        if as_root() {
            run("chown", {
                let mut c = Command::new("chown");
                c.args(["postgres:postgres"]).arg(&dir);
                c
            });
        }
        let data = dir.join("data");
        let (data_s, dir_s) = (data.to_str().expect("utf-8"), dir.to_str().expect("utf-8"));
        run(
            "initdb",
            server_command(
                &bin.join("initdb"),
                &[
                    "-D",
                    data_s,
                    "-U",
                    "postgres",
                    "--auth=trust",
                    "--no-sync",
                    "-E",
                    "UTF8",
                ],
            ),
        );
        // One role that must give its password (every other connection on
        // the socket is trusted): for the tests of credentials.
        let hba = data.join("pg_hba.conf");
        let trusted = std::fs::read_to_string(&hba).expect("read pg_hba.conf");
        let tcp_rules = if tls {
            format!(
                "hostnossl all all 127.0.0.1/32 reject\n\
                 hostssl all {PASSWORD_USER} 127.0.0.1/32 scram-sha-256\n"
            )
        } else {
            String::new()
        };
        std::fs::write(
            &hba,
            format!("local all {PASSWORD_USER} scram-sha-256\n{tcp_rules}{trusted}"),
        )
        .expect("write pg_hba.conf");
        let (port, listen, ssl) = if tls {
            make_certificates(&dir);
            (
                free_port(),
                "127.0.0.1",
                format!(
                    " -c ssl=on -c ssl_cert_file={dir_s}/server.crt -c ssl_key_file={dir_s}/server.key"
                ),
            )
        } else {
            (PORT, "", String::new())
        };
        let durability = match durability {
            Durability::Fast => " -c fsync=off -c synchronous_commit=off",
            Durability::Durable => "",
            Durability::LosesRecentCommits => " -c synchronous_commit=off -c wal_writer_delay=10s",
        };
        let options = format!(
            "-c listen_addresses='{listen}' -k {dir_s} -p {port} -c max_connections=300{durability}{ssl}"
        );
        let cluster = Cluster {
            dir: dir.clone(),
            bin: bin.clone(),
            options,
            port,
        };
        run("pg_ctl start", cluster.pg_ctl(&["start"]));
        // Stops the cluster once this test binary is gone, however it ends.
        let stop = format!(
            "while kill -0 {pid} 2>/dev/null; do sleep 0.5; done; \
             {runas} {pg_ctl} -D {data_s} stop -m immediate >/dev/null 2>&1; rm -rf {dir_s}",
            pid = std::process::id(),
            runas = if as_root() {
                "runuser -u postgres --"
            } else {
                ""
            },
            pg_ctl = bin.join("pg_ctl").display(),
        );
        use std::os::unix::process::CommandExt;
        // Never waited for: it outlives this process by design (init reaps it).
        #[allow(clippy::zombie_processes)]
        Command::new("sh")
            .args(["-c", &stop])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .expect("start the cluster's watchdog");
        cluster
    }

    /// `pg_ctl -D <data> -l <log> -w -o <options> <args…>` on this
    /// cluster, waiting (`-w`) until the server accepts connections.
    fn pg_ctl(&self, args: &[&str]) -> Command {
        let data = self.dir.join("data");
        let log = self.log_path();
        let mut all = vec![
            "-D",
            data.to_str().expect("utf-8"),
            "-l",
            log.to_str().expect("utf-8"),
            "-w",
            "-o",
            &self.options,
        ];
        all.extend_from_slice(args);
        server_command(&self.bin.join("pg_ctl"), &all)
    }

    /// Restarts the server (`pg_ctl restart -m fast`: every connection is
    /// closed), returning once it accepts connections again. Only on a
    /// [`private_cluster`].
    pub fn restart(&self) {
        run("pg_ctl restart", self.pg_ctl(&["-m", "fast", "restart"]));
    }

    /// Crashes the server as a power cut would take it (`kill -9` of the
    /// postmaster; its backends exit on their own once they see it gone),
    /// then starts it again, through crash recovery, returning once it
    /// accepts connections. Only on a [`private_cluster`].
    pub fn crash_and_recover(&self) {
        let pid_file = std::fs::read_to_string(self.dir.join("data").join("postmaster.pid"))
            .expect("read postmaster.pid");
        let pid = pid_file
            .lines()
            .next()
            .expect("the postmaster's pid")
            .trim();
        run("kill -9 the postmaster", {
            let mut c = Command::new("kill");
            c.args(["-9", pid]);
            c
        });
        let start = || self.pg_ctl(&["start"]).output().expect("run pg_ctl start");
        // Until the orphaned backends have let go of the shared memory,
        // the new postmaster refuses to start: tried again, for 30 s.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            let out = start();
            if out.status.success() {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the crashed server did not start again within 30 s:\n{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
    }

    /// Its directory (a [`tls_cluster`]'s CA certificates are there).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// `url` (one of [`Cluster::database_with_password`]'s) over TCP to
    /// 127.0.0.1 instead of the socket, with `query` (e.g.
    /// `sslmode=require`). Only on a [`tls_cluster`].
    pub fn tcp_url(&self, url: &str, query: &str) -> String {
        let socket = format!("?host={}", self.dir.display());
        assert!(url.ends_with(&socket), "a socket URL of this cluster");
        let tcp = url
            .trim_end_matches(&socket)
            .replace("@localhost:", "@127.0.0.1:");
        format!("{tcp}?{query}")
    }

    /// The server's log file (`pg_ctl -l`).
    pub fn log_path(&self) -> PathBuf {
        self.dir.join("server.log")
    }

    /// The URL of database `name` on this cluster.
    pub fn url(&self, name: &str) -> String {
        format!(
            "postgres://postgres@localhost:{}/{name}?host={}",
            self.port,
            self.dir.display()
        )
    }

    /// A new, empty database owned by [`PASSWORD_USER`]; its URL with
    /// `password` (right or wrong) in it.
    pub async fn database_with_password(&self, password: &str) -> String {
        let url = self.database().await;
        let name = url
            .split('?')
            .next()
            .and_then(|path| path.rsplit_once('/'))
            .map(|(_, name)| name.to_owned())
            .expect("a database name");
        let mut admin = PgConnection::connect(&url)
            .await
            .expect("connect as postgres");
        for sql in [
            format!(
                "DO $$ BEGIN CREATE ROLE {PASSWORD_USER} LOGIN PASSWORD '{PASSWORD}';
                 EXCEPTION WHEN duplicate_object THEN NULL; END $$"
            ),
            format!("ALTER DATABASE {name} OWNER TO {PASSWORD_USER}"),
            format!("ALTER SCHEMA public OWNER TO {PASSWORD_USER}"),
        ] {
            sqlx::query(&sql).execute(&mut admin).await.expect(&sql);
        }
        admin.close().await.expect("close");
        format!(
            "postgres://{PASSWORD_USER}:{password}@localhost:{}/{name}?host={}",
            self.port,
            self.dir.display()
        )
    }

    /// A new, empty database for one test; its URL.
    pub async fn database(&self) -> String {
        let name = format!("t{}", DATABASES.fetch_add(1, Ordering::Relaxed));
        let mut admin = PgConnection::connect(&self.url("postgres"))
            .await
            .expect("connect to the test cluster");
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut admin)
            .await
            .expect("create a test database");
        admin.close().await.expect("close");
        self.url(&name)
    }
}
