//! A node's life: enroll, then heartbeat, follow its work (long-poll, with
//! the heartbeat's work version as the fallback), run it, and upload the
//! results from the buffer. When no controller answers the node keeps
//! running what it was last given and keeps its results until one does.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Notify, mpsc, watch};
use tokio_util::sync::CancellationToken;

use super::agent::{Agent, Identity, PluginSource};
use super::buffer::Buffer;
use super::link::{Beat, Confirmation, Hello, Link, LinkError, Upload, Work};
use super::schedule::Assignment;
use crate::ingest::BATCH;
use crate::metrics::Metrics;

/// How long one long-poll for work waits at the controller.
const WORK_WAIT: Duration = Duration::from_secs(20);
/// How long fresh results wait for others before they are uploaded.
const UPLOAD_LINGER: Duration = Duration::from_millis(200);

pub struct NodeSetup {
    pub identity: Identity,
    pub link: Arc<dyn Link>,
    pub plugins: Arc<dyn PluginSource>,
    pub buffer: Arc<dyn Buffer>,
    pub metrics: Arc<Metrics>,
    pub catch_up_slots: i64,
    /// Where the last work received is kept, to run it after a restart
    /// even when no controller answers.
    pub state_file: Option<PathBuf>,
    /// Runs in flight, for heartbeats.
    pub running: Arc<dyn Fn() -> u64 + Send + Sync>,
}

struct Shared {
    setup: NodeSetup,
    heartbeat: std::sync::Mutex<Duration>,
    /// Ask for work now (the heartbeat saw a new version, or we re-enrolled).
    fetch: Notify,
    /// Results arrived in the buffer.
    uploaded: Notify,
    known_version: std::sync::atomic::AtomicI64,
    assigned: std::sync::atomic::AtomicU64,
}

/// Runs a node until `cancel`; then it finishes the runs in flight and
/// makes one last attempt to upload their results.
pub async fn run(setup: NodeSetup, cancel: CancellationToken) {
    let (assignment_tx, assignment_rx) = watch::channel(Arc::new(Assignment::default()));
    let (confirm_tx, confirm_rx) = mpsc::channel(1024);
    let (results_tx, mut results_rx) = mpsc::channel(10_000);
    let node = Arc::new(Shared {
        setup,
        heartbeat: std::sync::Mutex::new(Duration::from_secs(1)),
        fetch: Notify::new(),
        uploaded: Notify::new(),
        known_version: std::sync::atomic::AtomicI64::new(-1),
        assigned: std::sync::atomic::AtomicU64::new(0),
    });
    if let Some(work) = node.load_saved() {
        tracing::info!(
            checks = work.checks.len(),
            "running the work saved before the restart until a controller answers"
        );
        node.assigned.store(work.checks.len() as u64, std::sync::atomic::Ordering::Relaxed);
        assignment_tx.send_replace(Arc::new(Assignment { version: work.version, checks: work.checks }));
    }

    let stop_agent = CancellationToken::new();
    let agent = Agent {
        identity: node.setup.identity.clone(),
        plugins: node.setup.plugins.clone(),
        results: results_tx,
        metrics: node.setup.metrics.clone(),
        catch_up_slots: node.setup.catch_up_slots,
    };
    let agent = tokio::spawn(agent.run(assignment_rx, confirm_rx, stop_agent.clone()));
    let sink = {
        let node = node.clone();
        tokio::spawn(async move {
            let mut batch = Vec::with_capacity(256);
            while results_rx.recv_many(&mut batch, 256).await > 0 {
                if let Err(e) = node.setup.buffer.push(std::mem::take(&mut batch)).await {
                    tracing::error!(error = %e, "could not buffer results");
                }
                node.uploaded.notify_one();
            }
        })
    };
    let background = CancellationToken::new();
    let mut tasks = tokio::task::JoinSet::new();
    tasks.spawn(node.clone().enroll_and_beat(background.clone()));
    tasks.spawn(node.clone().follow_work(assignment_tx, confirm_tx, background.clone()));
    tasks.spawn(node.clone().upload_loop(background.clone()));

    cancel.cancelled().await;
    tracing::info!(node = %node.setup.identity.name, "stopping: finishing runs in flight");
    stop_agent.cancel();
    let _ = agent.await;
    let _ = sink.await;
    // One last upload, bounded in time; what is left stays buffered.
    let _ = tokio::time::timeout(Duration::from_secs(10), node.upload_all()).await;
    background.cancel();
    while tasks.join_next().await.is_some() {}
    tracing::info!(node = %node.setup.identity.name, buffered = node.setup.buffer.len(), "node stopped");
}

impl Shared {
    fn hello(&self) -> Hello {
        let id = &self.setup.identity;
        Hello {
            node_id: id.id.clone(),
            name: id.name.clone(),
            location: id.location.clone(),
            version: env!("CARGO_PKG_VERSION").into(),
        }
    }

    async fn enroll(&self, cancel: &CancellationToken) {
        let mut wait = Duration::from_millis(200);
        loop {
            match self.setup.link.enroll(self.hello()).await {
                Ok(welcome) => {
                    *self.heartbeat.lock().unwrap_or_else(|p| p.into_inner()) =
                        Duration::from_millis(welcome.heartbeat_ms.max(100));
                    self.fetch.notify_one();
                    return;
                }
                Err(e) => {
                    tracing::warn!(error = %e, retry_in = ?wait, "could not enroll; running the last work meanwhile")
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = cancel.cancelled() => return,
            }
            wait = (wait * 2).min(Duration::from_secs(5));
        }
    }

    async fn enroll_and_beat(self: Arc<Self>, cancel: CancellationToken) {
        self.enroll(&cancel).await;
        let mut unreachable = false;
        loop {
            let period = *self.heartbeat.lock().unwrap_or_else(|p| p.into_inner());
            tokio::select! {
                _ = tokio::time::sleep(period) => {}
                _ = cancel.cancelled() => return,
            }
            let beat = Beat {
                node_id: self.setup.identity.id.clone(),
                running: (self.setup.running)(),
                buffered: self.setup.buffer.len(),
                assigned: self.assigned.load(std::sync::atomic::Ordering::Relaxed),
            };
            match self.setup.link.heartbeat(beat).await {
                Ok(reply) => {
                    if unreachable {
                        tracing::info!("a controller answers again");
                        unreachable = false;
                        self.uploaded.notify_one();
                    }
                    if reply.work_version != self.known_version.load(std::sync::atomic::Ordering::Relaxed) {
                        self.fetch.notify_one();
                    }
                }
                Err(LinkError::Unknown) => {
                    tracing::warn!("the controller does not know this node; enrolling again");
                    self.enroll(&cancel).await;
                }
                Err(e) => {
                    if !unreachable {
                        tracing::warn!(error = %e, "heartbeat failed; running the last work and buffering results");
                        unreachable = true;
                    }
                }
            }
        }
    }

    async fn follow_work(
        self: Arc<Self>,
        assignment: watch::Sender<Arc<Assignment>>,
        confirmations: mpsc::Sender<Confirmation>,
        cancel: CancellationToken,
    ) {
        let mut started: HashSet<(i64, i64, i64)> = HashSet::new();
        loop {
            let known = self.known_version.load(std::sync::atomic::Ordering::Relaxed);
            let work = tokio::select! {
                work = self.setup.link.work(self.setup.identity.id.clone(), known, WORK_WAIT) => work,
                _ = cancel.cancelled() => return,
            };
            match work {
                Ok(Some(work)) => {
                    self.known_version.store(work.version, std::sync::atomic::Ordering::Relaxed);
                    self.assigned.store(work.checks.len() as u64, std::sync::atomic::Ordering::Relaxed);
                    let fresh: Vec<Confirmation> = work
                        .confirmations
                        .iter()
                        .filter(|c| started.insert((c.check.id, c.slot, c.seq)))
                        .cloned()
                        .collect();
                    for confirmation in fresh {
                        let _ = confirmations.send(confirmation).await;
                    }
                    // Forget retests the controller no longer asks for.
                    let asked: HashSet<(i64, i64, i64)> =
                        work.confirmations.iter().map(|c| (c.check.id, c.slot, c.seq)).collect();
                    started.retain(|k| asked.contains(k));
                    self.save(&work);
                    let next = Assignment { version: work.version, checks: work.checks };
                    assignment.send_if_modified(|current| {
                        if current.checks == next.checks {
                            return false;
                        }
                        *current = Arc::new(next);
                        true
                    });
                }
                Ok(None) => {}
                Err(LinkError::Unknown) => {
                    self.fetch.notified().await;
                }
                Err(e) => {
                    tracing::debug!(error = %e, "fetching work failed");
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                        _ = self.fetch.notified() => {}
                        _ = cancel.cancelled() => return,
                    }
                }
            }
        }
    }

    async fn upload_loop(self: Arc<Self>, cancel: CancellationToken) {
        let mut wait = Duration::from_millis(200);
        loop {
            match self.upload_all().await {
                Ok(()) => {
                    wait = Duration::from_millis(200);
                    tokio::select! {
                        _ = self.uploaded.notified() => {
                            // Let the results of the same moment gather: one
                            // request and one transaction for many runs, not
                            // one each (a node with 10 000 checks a minute
                            // otherwise uploads 1.3 runs per request).
                            tokio::select! {
                                _ = tokio::time::sleep(UPLOAD_LINGER) => {}
                                _ = cancel.cancelled() => {}
                            }
                        }
                        _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                        _ = cancel.cancelled() => return,
                    }
                }
                Err(e) => {
                    tracing::debug!(error = %e, buffered = self.setup.buffer.len(), retry_in = ?wait, "uploading results failed");
                    tokio::select! {
                        _ = tokio::time::sleep(wait) => {}
                        _ = cancel.cancelled() => return,
                    }
                    wait = (wait * 2).min(Duration::from_secs(5));
                }
            }
        }
    }

    /// Uploads everything buffered, oldest first.
    async fn upload_all(&self) -> Result<(), String> {
        loop {
            let batch = self.setup.buffer.peek(BATCH).await?;
            if batch.is_empty() {
                return Ok(());
            }
            let (ids, runs): (Vec<i64>, Vec<_>) = batch.into_iter().unzip();
            let upload = Upload { node_id: self.setup.identity.id.clone(), runs };
            match self.setup.link.upload(upload).await {
                Ok(_) => self.setup.buffer.ack(ids).await?,
                Err(LinkError::Refused(why)) => {
                    // Retrying what a controller refuses outright would block
                    // every later result behind it.
                    tracing::error!(error = %why, runs = ids.len(), "a controller refused results; dropping them");
                    self.setup.buffer.ack(ids).await?;
                }
                Err(e) => return Err(e.to_string()),
            }
        }
    }

    fn save(&self, work: &Work) {
        let Some(path) = &self.setup.state_file else { return };
        let written = serde_json::to_vec(work).map_err(|e| e.to_string()).and_then(|bytes| {
            let tmp = path.with_extension("tmp");
            std::fs::write(&tmp, bytes).and_then(|()| std::fs::rename(&tmp, path)).map_err(|e| e.to_string())
        });
        if let Err(e) = written {
            tracing::warn!(path = %path.display(), error = %e, "could not save the current work");
        }
    }

    fn load_saved(&self) -> Option<Work> {
        let path = self.setup.state_file.as_ref()?;
        let bytes = std::fs::read(path).ok()?;
        serde_json::from_slice(&bytes).ok()
    }
}
