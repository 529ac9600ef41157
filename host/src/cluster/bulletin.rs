//! Work versions of every node, read from the database a few times a
//! second and shared by all the long-polls of this controller, so a node
//! waiting for work costs one query per round for all nodes together.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;

use crate::store::{self, Db};

const POLL: Duration = Duration::from_millis(200);

pub struct Bulletin {
    versions: watch::Sender<Arc<HashMap<String, i64>>>,
    poke: Notify,
}

impl Bulletin {
    pub fn new() -> Arc<Bulletin> {
        Arc::new(Bulletin { versions: watch::channel(Arc::default()).0, poke: Notify::new() })
    }

    /// Reads the versions now rather than at the next round.
    pub fn poke(&self) {
        self.poke.notify_one();
    }

    pub async fn run(self: Arc<Self>, db: Db, cancel: CancellationToken) {
        loop {
            match store::cluster::work_versions(&db).await {
                Ok(rows) => {
                    let versions: HashMap<String, i64> = rows.into_iter().collect();
                    self.versions.send_if_modified(|current| {
                        if **current == versions {
                            return false;
                        }
                        *current = Arc::new(versions);
                        true
                    });
                }
                Err(e) => tracing::debug!(error = %e, "reading work versions failed"),
            }
            tokio::select! {
                _ = tokio::time::sleep(POLL) => {}
                _ = self.poke.notified() => {}
                _ = cancel.cancelled() => return,
            }
        }
    }

    /// Waits up to `timeout` for node `id`'s work version to differ from
    /// `known`; returns the version then current.
    pub async fn wait(&self, id: &str, known: i64, timeout: Duration) -> Option<i64> {
        let mut versions = self.versions.subscribe();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let current = versions.borrow_and_update().get(id).copied();
            if current.is_some_and(|v| v != known) {
                return current;
            }
            match tokio::time::timeout_at(deadline, versions.changed()).await {
                Ok(Ok(())) => continue,
                _ => return current,
            }
        }
    }
}
