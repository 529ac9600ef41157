//! Test helpers: a fresh database on either backend for every test, and the
//! PostgreSQL server to put it on.
//!
//! PostgreSQL comes from `TOCSIN_TEST_POSTGRES` (default
//! `postgres://postgres@127.0.0.1:5432/test`). When nothing answers there, a
//! throwaway cluster is started from the installed PostgreSQL binaries, and
//! stops by itself when the test process ends. When there are no binaries
//! either, the test fails and says what to install: storage tests never
//! skip silently.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use rand::Rng;
use sqlx::Connection;

pub mod process;
pub mod twilio;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    pub const ALL: [Backend; 2] = [Backend::Sqlite, Backend::Postgres];
}

/// A database of its own for one test, dropped with it.
pub struct TestDb {
    pub backend: Backend,
    /// What `tocsin serve --database-url` takes.
    pub url: String,
    _dir: Option<tempfile::TempDir>,
    schema: Option<String>,
}

impl TestDb {
    pub async fn new(backend: Backend) -> TestDb {
        match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().expect("a temporary directory");
                let url = format!("sqlite://{}?mode=rwc", dir.path().join("tocsin.db").display());
                TestDb { backend, url, _dir: Some(dir), schema: None }
            }
            Backend::Postgres => {
                let server = postgres_server();
                let schema = format!("t_{:016x}", rand::rng().random::<u64>());
                let mut conn = sqlx::PgConnection::connect(server).await.expect("connecting to PostgreSQL");
                sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
                    .execute(&mut conn)
                    .await
                    .expect("creating a schema");
                let sep = if server.contains('?') { '&' } else { '?' };
                let url = format!("{server}{sep}options=-c%20search_path%3D{schema}");
                TestDb { backend, url, _dir: None, schema: Some(schema) }
            }
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let Some(schema) = self.schema.take() else { return };
        let server = postgres_server().to_string();
        // Drop cannot await; a short-lived thread cleans up.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().ok()?;
            rt.block_on(async {
                let mut conn = sqlx::PgConnection::connect(&server).await.ok()?;
                sqlx::query(sqlx::AssertSqlSafe(format!("DROP SCHEMA {schema} CASCADE"))).execute(&mut conn).await.ok()
            })
        })
        .join();
    }
}

/// The base URL of a PostgreSQL server tests may create schemas on.
pub fn postgres_server() -> &'static str {
    static SERVER: OnceLock<String> = OnceLock::new();
    SERVER.get_or_init(|| {
        let url =
            std::env::var("TOCSIN_TEST_POSTGRES").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
        if answers(&url) {
            return url;
        }
        eprintln!("no PostgreSQL answers at {url}; starting a throwaway cluster");
        throwaway_cluster()
    })
}

fn answers(url: &str) -> bool {
    let url = url.to_string();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().ok()?;
        rt.block_on(async {
            tokio::time::timeout(Duration::from_secs(3), sqlx::PgConnection::connect(&url)).await.ok()?.ok()
        })
        .map(|_| ())
    })
    .join()
    .ok()
    .flatten()
    .is_some()
}

/// The directory holding `initdb` and `postgres`.
pub fn postgres_bin_dir() -> PathBuf {
    let from_path = Command::new("sh")
        .args(["-c", "command -v initdb"])
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| PathBuf::from(s.trim()))
        .filter(|p| p.is_file());
    if let Some(initdb) = from_path {
        return initdb.parent().unwrap().to_path_buf();
    }
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|dir| {
            dir.filter_map(|e| e.ok()).map(|e| e.path().join("bin")).filter(|p| p.join("initdb").is_file()).collect()
        })
        .unwrap_or_default();
    versions.sort();
    versions.pop().unwrap_or_else(|| {
        panic!(
            "PostgreSQL is needed for these tests and none answers at TOCSIN_TEST_POSTGRES; \
             install its server binaries (`apt-get install postgresql`) or point TOCSIN_TEST_POSTGRES at a server"
        )
    })
}

/// A PostgreSQL cluster in a temporary directory, on a free port, that a
/// watcher stops once this process has gone (even if it is killed).
pub struct PgCluster {
    pub dir: PathBuf,
    pub port: u16,
    /// `postgres://postgres@127.0.0.1:<port>/postgres`
    pub url: String,
    bin: PathBuf,
    owner: Owner,
}

impl PgCluster {
    pub fn start() -> PgCluster {
        let bin = postgres_bin_dir();
        let dir =
            std::env::temp_dir().join(format!("tocsin-pg-{}-{:08x}", std::process::id(), rand::rng().random::<u32>()));
        std::fs::create_dir_all(&dir).expect("a directory for a throwaway cluster");
        let owner = as_postgres_owner(&dir);
        let port = free_port();
        run(owner.command(&bin.join("initdb")).args(["-U", "postgres", "--auth=trust", "-D"]).arg(dir.join("data")));
        let cluster =
            PgCluster { url: format!("postgres://postgres@127.0.0.1:{port}/postgres"), dir, port, bin, owner };
        cluster.pg_ctl(&["start", "-w", "-t", "60"]);
        cluster.watch();
        cluster
    }

    fn pg_ctl(&self, args: &[&str]) {
        let options = format!("-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off", self.port, self.dir.display());
        let mut cmd = self.owner.command(&self.bin.join("pg_ctl"));
        cmd.arg("-D").arg(self.dir.join("data")).args(args).arg("-l").arg(self.dir.join("postgres.log"));
        run(cmd.arg("-o").arg(options).stdin(Stdio::null()).stdout(Stdio::null()));
    }

    /// Stops the server at once (no clean shutdown, as in a crash) and
    /// starts it again; returns when it accepts connections.
    pub fn restart_immediate(&self) {
        self.pg_ctl(&["restart", "-m", "immediate", "-w", "-t", "60"]);
    }

    /// Stops the server at once.
    pub fn stop_immediate(&self) {
        let mut cmd = self.owner.command(&self.bin.join("pg_ctl"));
        let _ = cmd
            .arg("-D")
            .arg(self.dir.join("data"))
            .args(["stop", "-m", "immediate", "-w"])
            .stdout(Stdio::null())
            .status();
    }

    /// Starts a stopped server again.
    pub fn start_again(&self) {
        self.pg_ctl(&["start", "-w", "-t", "60"]);
    }

    /// Stops the cluster and removes it once this process has ended. The
    /// watcher is deliberately not waited for: it must outlive us.
    #[allow(clippy::zombie_processes)]
    fn watch(&self) {
        let script = format!(
            "while [ -d /proc/{owner} ]; do sleep 1; done; {pg_ctl} -D {data} stop -m immediate >/dev/null 2>&1; rm -rf {dir}",
            owner = std::process::id(),
            pg_ctl = self.bin.join("pg_ctl").display(),
            data = self.dir.join("data").display(),
            dir = self.dir.display(),
        );
        self.owner
            .command(Path::new("sh"))
            .args(["-c", &script])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting the cluster's watcher");
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        self.stop_immediate();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn throwaway_cluster() -> String {
    // The default server lives as long as the process; its watcher stops it.
    let cluster = Box::leak(Box::new(PgCluster::start()));
    let deadline = Instant::now() + Duration::from_secs(30);
    while !answers(&cluster.url) {
        assert!(Instant::now() < deadline, "the throwaway PostgreSQL in {} did not start", cluster.dir.display());
        std::thread::sleep(Duration::from_millis(100));
    }
    cluster.url.clone()
}

/// PostgreSQL refuses to run as root; as root, its commands run as the
/// `postgres` user, which then owns `dir`.
struct Owner {
    runuser: bool,
}

fn as_postgres_owner(dir: &Path) -> Owner {
    let root = Command::new("id").arg("-u").output().is_ok_and(|o| o.stdout.starts_with(b"0"));
    if root {
        let _ = Command::new("chown").args(["-R", "postgres"]).arg(dir).status();
    }
    Owner { runuser: root }
}

impl Owner {
    fn command(&self, program: &Path) -> Command {
        if self.runuser {
            let mut cmd = Command::new("runuser");
            cmd.args(["-u", "postgres", "--"]).arg(program);
            cmd
        } else {
            Command::new(program)
        }
    }
}

fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(out.status.success(), "{cmd:?} failed:\n{}", String::from_utf8_lossy(&out.stderr));
}

/// A TCP port nothing listens on right now.
/// The compiled-plugin cache every test process shares (entries are keyed
/// by content and engine, written by rename). Without it each `tocsin`
/// started by a test compiles every built-in plugin again: seconds of CPU
/// in a debug build, which processes started side by side pay at once.
pub fn plugin_cache() -> PathBuf {
    std::env::temp_dir().join("tocsin-test-plugin-cache")
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}
