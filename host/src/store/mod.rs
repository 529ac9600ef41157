//! Storage: one set of SQL queries for SQLite (the embedded default) and
//! PostgreSQL (clusters), through sqlx's `Any` driver.
//!
//! The two backends differ only in their migrations (`host/migrations/`)
//! and in the few expressions of [`Dialect`]. Queries use `$1`-style
//! placeholders (SQLite reads them as named parameters in order), integer
//! milliseconds for times and text for JSON, so every query means the same
//! on both.
//!
//! SQLite allows one writer at a time, so writes go through a pool of one
//! connection and reads through a separate pool; on PostgreSQL both are the
//! same pool.
//!
//! Architecture invariant: every change to configuration writes its audit
//! entry in the same transaction as the change.

pub mod audit;
pub mod checks;
pub mod cluster;
pub mod plugins;
pub mod rollup;
pub mod runs;
pub mod sealing;
pub mod tokens;

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{AnyPool, Executor};

use crate::secrets::Keyring;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{0} not found")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    #[error("database migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A change refused because this site follows another.
    #[error("{0}")]
    Passive(String),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    /// A stored secret (of the object named) this controller cannot open.
    #[error("{0}: {1}")]
    Secrets(String, #[source] crate::secrets::SecretsError),
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// The handful of expressions that differ between the backends.
pub struct Dialect {
    /// The database's clock in unix milliseconds. Liveness and leases are
    /// judged by it, never by a node's own clock.
    pub now_ms: &'static str,
    backend: Backend,
}

/// Column types for [`Dialect::json_rows`].
#[derive(Clone, Copy)]
pub enum Col {
    Int,
    Real,
    Text,
}

impl Dialect {
    /// A row source that expands the JSON array bound as parameter 1 into
    /// rows with the named, typed columns: how bulk writes send thousands of
    /// rows as one parameter (binding each value separately is an order of
    /// magnitude slower on both backends). On SQLite `jsonb_each`, so each
    /// field is read from the parsed element rather than its text parsed
    /// again for every column (1.5x the ingest rate).
    pub fn json_rows(&self, columns: &[(&str, Col)]) -> String {
        match self.backend {
            Backend::Postgres => {
                let defs: Vec<String> = columns
                    .iter()
                    .map(|(name, col)| {
                        let ty = match col {
                            Col::Int => "bigint",
                            Col::Real => "double precision",
                            Col::Text => "text",
                        };
                        format!("{name} {ty}")
                    })
                    .collect();
                format!("json_to_recordset($1::json) AS r({})", defs.join(", "))
            }
            Backend::Sqlite => {
                let fields: Vec<String> =
                    columns.iter().map(|(name, _)| format!("value ->> '{name}' AS {name}")).collect();
                format!("(SELECT {} FROM jsonb_each($1)) AS r", fields.join(", "))
            }
        }
    }
}

const SQLITE: Dialect = Dialect { now_ms: "CAST(unixepoch('subsec') * 1000 AS INTEGER)", backend: Backend::Sqlite };
const POSTGRES: Dialect =
    Dialect { now_ms: "CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000 AS BIGINT)", backend: Backend::Postgres };

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("migrations/postgres");

#[derive(Clone)]
pub struct Db {
    write: AnyPool,
    read: AnyPool,
    pub backend: Backend,
    /// Seals the secrets of what is written and opens them when read.
    keys: Keyring,
}

impl Db {
    /// Opens (creating if needed) the database at `url` and applies the
    /// migrations. `sqlite://path` or `postgres://...`. Secrets are sealed
    /// and opened with `keys`.
    pub async fn connect(url: &str, keys: Keyring) -> Result<Db> {
        sqlx::any::install_default_drivers();
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            Backend::Postgres
        } else {
            return Err(StoreError::Db(sqlx::Error::Configuration(
                format!("{url:?}: the database URL must start with sqlite:// or postgres://").into(),
            )));
        };
        let options = AnyConnectOptions::from_str(url)?;
        let db = match backend {
            Backend::Sqlite => {
                let pragmas = sqlite_pragmas;
                let write = AnyPoolOptions::new()
                    .max_connections(1)
                    .after_connect(pragmas)
                    .connect_with(options.clone())
                    .await?;
                let read =
                    AnyPoolOptions::new().max_connections(4).after_connect(pragmas).connect_with(options).await?;
                Db { write, read, backend, keys }
            }
            Backend::Postgres => {
                let pool = AnyPoolOptions::new()
                    .max_connections(16)
                    .acquire_timeout(Duration::from_secs(10))
                    .connect_with(options)
                    .await?;
                Db { write: pool.clone(), read: pool, backend, keys }
            }
        };
        match backend {
            Backend::Sqlite => SQLITE_MIGRATIONS.run(&db.write).await?,
            Backend::Postgres => POSTGRES_MIGRATIONS.run(&db.write).await?,
        }
        Ok(db)
    }

    /// The embedded default: `tocsin.db` in `dir`. The directory and the
    /// database's files are made readable by this user only, also when an
    /// older version left them open to others.
    pub async fn open_dir(dir: &Path, keys: Keyring) -> Result<Db> {
        let private = |path: &Path, mode: u32| -> std::io::Result<()> {
            use std::os::unix::fs::PermissionsExt;
            match std::fs::metadata(path) {
                Ok(meta) if meta.permissions().mode() & 0o077 != 0 => {
                    tracing::info!(path = %path.display(), mode = format!("{:o}", mode), "readable by others: tightened");
                    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
                }
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
                _ => Ok(()),
            }
        };
        let tightened = std::fs::create_dir_all(dir).and_then(|()| {
            private(dir, 0o700)?;
            ["tocsin.db", "tocsin.db-wal", "tocsin.db-shm"].iter().try_for_each(|f| private(&dir.join(f), 0o600))
        });
        tightened.map_err(|e| {
            StoreError::Db(sqlx::Error::Configuration(format!("data directory {}: {e}", dir.display()).into()))
        })?;
        Db::connect(&format!("sqlite://{}?mode=rwc", dir.join("tocsin.db").display()), keys).await
    }

    pub fn dialect(&self) -> &'static Dialect {
        match self.backend {
            Backend::Sqlite => &SQLITE,
            Backend::Postgres => &POSTGRES,
        }
    }

    /// The secrets keys this database's secrets are sealed with.
    pub fn keys(&self) -> &Keyring {
        &self.keys
    }

    pub fn reader(&self) -> &AnyPool {
        &self.read
    }

    pub fn writer(&self) -> &AnyPool {
        &self.write
    }

    /// The database's clock.
    pub async fn now_ms(&self) -> Result<i64> {
        let sql = format!("SELECT {}", self.dialect().now_ms);
        Ok(sqlx::query_scalar(sqlx::AssertSqlSafe(sql)).fetch_one(&self.read).await?)
    }

    /// A write and a read back, for `/readyz` and the watchdog.
    pub async fn ping(&self) -> Result<()> {
        let now = self.now_ms().await?;
        sqlx::query(
            "INSERT INTO meta (key, value) VALUES ('ping', $1) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        )
        .bind(now.to_string())
        .execute(&self.write)
        .await?;
        Ok(())
    }

    pub async fn meta(&self, key: &str) -> Result<Option<String>> {
        Ok(sqlx::query_scalar("SELECT value FROM meta WHERE key = $1").bind(key).fetch_optional(&self.read).await?)
    }

    pub async fn set_meta(&self, key: &str, value: &str) -> Result<()> {
        sqlx::query(
            "INSERT INTO meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        )
        .bind(key)
        .bind(value)
        .execute(&self.write)
        .await?;
        Ok(())
    }
}

/// Durable enough (WAL survives a process crash), and writers wait for
/// each other instead of failing.
fn sqlite_pragmas(
    conn: &mut sqlx::AnyConnection,
    _meta: sqlx::pool::PoolConnectionMetadata,
) -> futures::future::BoxFuture<'_, std::result::Result<(), sqlx::Error>> {
    Box::pin(async move {
        conn.execute(
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA busy_timeout = 5000; PRAGMA foreign_keys = ON;",
        )
        .await?;
        Ok(())
    })
}

/// True when `e` is a unique-constraint violation.
pub fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.is_unique_violation())
}

/// `[a, b]` -> `,a,b,` (and back), for list columns a LIKE can filter.
pub fn join_list(items: &[String]) -> String {
    if items.is_empty() { String::new() } else { format!(",{},", items.join(",")) }
}

pub fn split_list(s: &str) -> Vec<String> {
    s.split(',').filter(|x| !x.is_empty()).map(str::to_string).collect()
}
