//! Results waiting for a controller. A `tocsin node` keeps them in a SQLite
//! file in its data directory, so a crash or a long controller outage
//! loses nothing (up to a bound, past which the oldest go and the loss is
//! counted and logged); the node of `tocsin serve` keeps them in memory, a
//! function call away from the database.

use std::collections::VecDeque;
use std::path::Path;
use std::str::FromStr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use futures::future::BoxFuture;
use sqlx::SqlitePool;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

use crate::store::runs::NewRun;

pub type BufferResult<T> = Result<T, String>;

pub trait Buffer: Send + Sync {
    fn push(&self, runs: Vec<NewRun>) -> BoxFuture<'_, BufferResult<()>>;
    /// The oldest runs, with the ids to acknowledge them by.
    fn peek(&self, max: usize) -> BoxFuture<'_, BufferResult<Vec<(i64, NewRun)>>>;
    fn ack(&self, ids: Vec<i64>) -> BoxFuture<'_, BufferResult<()>>;
    fn len(&self) -> u64;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Runs dropped because the buffer was full.
    fn dropped(&self) -> u64;
}

#[derive(Default)]
pub struct MemoryBuffer {
    runs: Mutex<VecDeque<(i64, NewRun)>>,
    next: AtomicI64,
}

impl Buffer for MemoryBuffer {
    fn push(&self, runs: Vec<NewRun>) -> BoxFuture<'_, BufferResult<()>> {
        let mut queue = self.runs.lock().unwrap_or_else(|p| p.into_inner());
        for run in runs {
            queue.push_back((self.next.fetch_add(1, Ordering::Relaxed), run));
        }
        Box::pin(async { Ok(()) })
    }

    fn peek(&self, max: usize) -> BoxFuture<'_, BufferResult<Vec<(i64, NewRun)>>> {
        let queue = self.runs.lock().unwrap_or_else(|p| p.into_inner());
        let runs = queue.iter().take(max).cloned().collect();
        Box::pin(async { Ok(runs) })
    }

    fn ack(&self, ids: Vec<i64>) -> BoxFuture<'_, BufferResult<()>> {
        let mut queue = self.runs.lock().unwrap_or_else(|p| p.into_inner());
        let done: std::collections::HashSet<i64> = ids.into_iter().collect();
        queue.retain(|(id, _)| !done.contains(id));
        Box::pin(async { Ok(()) })
    }

    fn len(&self) -> u64 {
        self.runs.lock().unwrap_or_else(|p| p.into_inner()).len() as u64
    }

    fn dropped(&self) -> u64 {
        0
    }
}

pub struct DiskBuffer {
    pool: SqlitePool,
    max: u64,
    len: AtomicU64,
    dropped: AtomicU64,
}

impl DiskBuffer {
    /// Opens (or creates) `results.db` in `dir`, keeping at most `max` runs.
    pub async fn open(dir: &Path, max: u64) -> BufferResult<DiskBuffer> {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let path = dir.join("results.db");
        let options = SqliteConnectOptions::from_str(&format!("sqlite://{}", path.display()))
            .map_err(|e| e.to_string())?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // A result is on disk before the node moves on.
            .synchronous(SqliteSynchronous::Full);
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options)
            .await
            .map_err(|e| format!("{}: {e}", path.display()))?;
        sqlx::query("CREATE TABLE IF NOT EXISTS pending (id INTEGER PRIMARY KEY AUTOINCREMENT, run TEXT NOT NULL)")
            .execute(&pool)
            .await
            .map_err(|e| e.to_string())?;
        let len: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM pending").fetch_one(&pool).await.map_err(|e| e.to_string())?;
        if len > 0 {
            tracing::info!(results = len, path = %path.display(), "results from before the restart are waiting to be uploaded");
        }
        Ok(DiskBuffer { pool, max, len: AtomicU64::new(len as u64), dropped: AtomicU64::new(0) })
    }
}

impl Buffer for DiskBuffer {
    fn push(&self, runs: Vec<NewRun>) -> BoxFuture<'_, BufferResult<()>> {
        Box::pin(async move {
            let mut tx = self.pool.begin().await.map_err(|e| e.to_string())?;
            for run in &runs {
                sqlx::query("INSERT INTO pending (run) VALUES (?)")
                    .bind(serde_json::to_string(run).map_err(|e| e.to_string())?)
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| e.to_string())?;
            }
            let len = self.len.load(Ordering::Relaxed) + runs.len() as u64;
            let over = len.saturating_sub(self.max);
            if over > 0 {
                sqlx::query("DELETE FROM pending WHERE id IN (SELECT id FROM pending ORDER BY id LIMIT ?)")
                    .bind(over as i64)
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| e.to_string())?;
                self.dropped.fetch_add(over, Ordering::Relaxed);
                tracing::error!(
                    dropped = over,
                    bound = self.max,
                    "the result buffer is full: the oldest results were dropped"
                );
            }
            tx.commit().await.map_err(|e| e.to_string())?;
            self.len.store(len - over, Ordering::Relaxed);
            Ok(())
        })
    }

    fn peek(&self, max: usize) -> BoxFuture<'_, BufferResult<Vec<(i64, NewRun)>>> {
        Box::pin(async move {
            let rows: Vec<(i64, String)> = sqlx::query_as("SELECT id, run FROM pending ORDER BY id LIMIT ?")
                .bind(max as i64)
                .fetch_all(&self.pool)
                .await
                .map_err(|e| e.to_string())?;
            Ok(rows.into_iter().filter_map(|(id, run)| serde_json::from_str(&run).ok().map(|run| (id, run))).collect())
        })
    }

    fn ack(&self, ids: Vec<i64>) -> BoxFuture<'_, BufferResult<()>> {
        Box::pin(async move {
            let Some(&last) = ids.iter().max() else { return Ok(()) };
            // Runs are taken oldest first, so everything up to the last id
            // acknowledged has been uploaded.
            let done = sqlx::query("DELETE FROM pending WHERE id <= ?")
                .bind(last)
                .execute(&self.pool)
                .await
                .map_err(|e| e.to_string())?;
            self.len.fetch_sub(done.rows_affected().min(self.len.load(Ordering::Relaxed)), Ordering::Relaxed);
            Ok(())
        })
    }

    fn len(&self) -> u64 {
        self.len.load(Ordering::Relaxed)
    }

    fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}
