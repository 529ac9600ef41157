//! What a controller does for nodes: enrollment, heartbeats, their work
//! (long-polled), their results, plugin bytes. The HTTP handlers in
//! `api::node` and the in-process node of `tocsin serve` ([`LocalLink`])
//! both call these, so every node takes the same path.

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::ClusterConfig;
use super::bulletin::Bulletin;
use crate::ingest;
use crate::metrics::Metrics;
use crate::node::link::{
    Beat, BeatReply, Confirmation, Hello, Link, LinkError, LinkResult, Upload, UploadReply, Welcome, Work,
};
use crate::node::schedule::AssignedCheck;
use crate::store::{self, Db, StoreError};

pub struct Serving {
    pub db: Db,
    pub config: ClusterConfig,
    pub bulletin: Arc<Bulletin>,
    pub metrics: Arc<Metrics>,
    pub rules: crate::alerting::Rules,
    /// Woken when results may have opened incidents.
    pub alerts: Arc<tokio::sync::Notify>,
}

fn denied(node_id: &str) -> LinkError {
    LinkError::Denied(format!(
        "node {node_id} is enrolled with another key: send the key this node was given at its first enrollment \
         (kept in its data directory), or start the node with a new data directory to enroll as a new node"
    ))
}

fn unavailable(e: StoreError) -> LinkError {
    tracing::warn!(error = %e, "serving a node failed");
    LinkError::Unavailable(e.to_string())
}

/// How a node proves who it is.
#[derive(Clone, Copy, Debug)]
pub enum Proof<'a> {
    /// The node inside this process (`tocsin serve`'s own).
    InProcess,
    /// A remote node, with the key it sent, if any.
    Key(Option<&'a str>),
}

/// The key hash of the in-process node: no key hashes to it, so no remote
/// caller can act as that node.
const IN_PROCESS: &str = "in-process";
/// The bounds of a node key's length (nodes make 69-character keys).
const MIN_KEY: usize = 32;
const MAX_KEY: usize = 256;

fn key_hash(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

/// Whether `key` is the one whose hash is `stored`, in constant time.
fn key_matches(stored: &str, key: &str) -> bool {
    stored.len() == 64 && bool::from(key_hash(key).as_bytes().ct_eq(stored.as_bytes()))
}

impl Serving {
    /// Enrolls a node. A remote node sends its key (made by the node,
    /// kept in its data directory): the first enrollment of a node id binds
    /// that id to the key, and from then on only that key enrolls or speaks
    /// for it, so one node token cannot act as another node. A node
    /// enrolled before nodes had keys is bound at its next enrollment.
    pub async fn enroll(&self, hello: Hello, proof: Proof<'_>) -> LinkResult<Welcome> {
        for (field, value) in [("node_id", &hello.node_id), ("name", &hello.name), ("location", &hello.location)] {
            if !crate::api::is_name(value) {
                return Err(LinkError::Refused(format!(
                    "{field} {value:?}: use 1 to 63 lowercase letters, digits, `.`, `_` and `-`"
                )));
            }
        }
        let stored = store::cluster::key_hash(&self.db, &hello.node_id).await.map_err(unavailable)?.flatten();
        let hash = match (proof, stored) {
            (Proof::InProcess, _) => IN_PROCESS.to_string(),
            (Proof::Key(Some(key)), Some(stored)) if key_matches(&stored, key) => stored,
            (Proof::Key(_), Some(_)) => return Err(denied(&hello.node_id)),
            (Proof::Key(Some(key)), None) if (MIN_KEY..=MAX_KEY).contains(&key.len()) => key_hash(key),
            (Proof::Key(_), None) => {
                return Err(LinkError::Refused(format!(
                    "send the node's key ({MIN_KEY} to {MAX_KEY} characters) in `Tocsin-Node-Key`: \
                     the first enrollment binds node {} to it",
                    hello.node_id
                )));
            }
        };
        let enrollment = store::cluster::Enrollment {
            id: &hello.node_id,
            name: &hello.name,
            location: &hello.location,
            version: &hello.version,
            key_hash: &hash,
        };
        let held =
            store::cluster::enroll(&self.db, &enrollment, self.config.dead_after_ms()).await.map_err(unavailable)?;
        // Two first enrollments of one id may race: the key stored first wins.
        if !matches!(proof, Proof::InProcess) && held != hash {
            return Err(denied(&hello.node_id));
        }
        self.bulletin.poke();
        tracing::info!(node = %hello.name, id = %hello.node_id, location = %hello.location, version = %hello.version, "node enrolled");
        Ok(Welcome {
            heartbeat_ms: self.config.heartbeat.as_millis() as u64,
            dead_after_ms: self.config.dead_after.as_millis() as u64,
        })
    }

    /// Refuses a remote caller that does not hold node `node_id`'s key.
    pub async fn prove(&self, node_id: &str, key: Option<&str>) -> LinkResult<()> {
        match store::cluster::key_hash(&self.db, node_id).await.map_err(unavailable)? {
            None => Err(LinkError::Unknown),
            Some(Some(stored)) if key.is_some_and(|key| key_matches(&stored, key)) => Ok(()),
            Some(_) => Err(denied(node_id)),
        }
    }

    pub async fn heartbeat(&self, beat: Beat) -> LinkResult<BeatReply> {
        let stats = serde_json::json!({"running": beat.running, "buffered": beat.buffered, "assigned": beat.assigned})
            .to_string();
        match store::cluster::heartbeat(&self.db, &beat.node_id, &stats, self.config.dead_after_ms())
            .await
            .map_err(unavailable)?
        {
            Some(work_version) => Ok(BeatReply { work_version }),
            None => Err(LinkError::Unknown),
        }
    }

    /// The node's work when its version is not `known`, waiting up to `wait`
    /// for a change.
    pub async fn work(&self, node_id: &str, known: i64, wait: Duration) -> LinkResult<Option<Work>> {
        let node = store::cluster::node(&self.db, node_id).await.map_err(unavailable)?.ok_or(LinkError::Unknown)?;
        let version = if node.work_version != known {
            node.work_version
        } else {
            match self.bulletin.wait(node_id, known, wait).await {
                Some(v) if v != known => v,
                _ => return Ok(None),
            }
        };
        self.build_work(node_id, version).await.map(Some).map_err(unavailable)
    }

    async fn build_work(&self, node_id: &str, version: i64) -> store::Result<Work> {
        let now = self.db.now_ms().await?;
        let rows = store::cluster::work(&self.db, node_id, now).await?;
        let checks = rows
            .into_iter()
            .map(|r| {
                let owner = r.node_id == node_id;
                AssignedCheck {
                    id: r.id,
                    name: r.name,
                    plugin: plugin_ref(&r.plugin, r.plugin_version.as_deref()),
                    sha256: r.sha256,
                    target: r.target,
                    config: r.config,
                    interval_ms: r.interval_ms,
                    timeout_ms: r.timeout_ms,
                    allow: store::split_list(&r.allow),
                    epoch: if owner { r.epoch } else { r.prev_epoch.unwrap_or(0) },
                    from_slot: if owner { r.from_slot } else { i64::MIN },
                    until_slot: (!owner).then_some(r.from_slot),
                    last_slot: r.last_slot,
                }
            })
            .collect();
        let pending = store::cluster::pending_confirmations(&self.db, node_id).await?;
        let ids: Vec<i64> = pending.iter().map(|p| p.check_id).collect();
        let defs = store::cluster::check_defs(&self.db, &ids).await?;
        let confirmations = pending
            .into_iter()
            .filter_map(|p| {
                let d = defs.iter().find(|d| d.id == p.check_id)?;
                Some(Confirmation {
                    check: AssignedCheck {
                        id: d.id,
                        name: d.name.clone(),
                        plugin: plugin_ref(&d.plugin, d.plugin_version.as_deref()),
                        sha256: d.sha256.clone(),
                        target: d.target.clone(),
                        config: d.config.clone(),
                        interval_ms: d.interval_ms,
                        timeout_ms: d.timeout_ms,
                        allow: store::split_list(&d.allow),
                        epoch: 0,
                        from_slot: p.slot,
                        until_slot: None,
                        last_slot: None,
                    },
                    slot: p.slot,
                    seq: p.seq,
                })
            })
            .collect();
        Ok(Work { version, checks, confirmations })
    }

    pub async fn upload(&self, upload: Upload) -> LinkResult<UploadReply> {
        let node =
            store::cluster::node(&self.db, &upload.node_id).await.map_err(unavailable)?.ok_or(LinkError::Unknown)?;
        let mut runs = upload.runs;
        // A node reports as itself: its runs carry its enrolled name and
        // location, whatever it wrote (a location decides who confirms).
        for run in &mut runs {
            run.node.clone_from(&node.name);
            run.location.clone_from(&node.location);
        }
        let mut reply = UploadReply::default();
        for batch in runs.chunks(ingest::BATCH) {
            let started = std::time::Instant::now();
            let written =
                ingest::write(&self.db, &self.config, &self.rules, &node.id, batch).await.map_err(unavailable)?;
            self.metrics.ingest_batch_seconds.observe(started.elapsed().as_secs_f64());
            self.metrics.runs_stored.inc_by(written.accepted);
            self.metrics.runs_refused.inc_by(written.refused);
            reply.accepted += written.accepted;
            reply.refused += written.refused;
        }
        if reply.accepted > 0 {
            self.alerts.notify_one();
        }
        if reply.refused > 0 {
            tracing::info!(node = %upload.node_id, refused = reply.refused, "results refused: duplicates, or from a stale owner");
        }
        Ok(reply)
    }

    pub async fn plugin(&self, sha256: &str) -> LinkResult<Vec<u8>> {
        match store::plugins::wasm_by_sha(&self.db, sha256).await {
            Ok(bytes) => Ok(bytes),
            Err(StoreError::NotFound(what)) => Err(LinkError::Refused(format!("{what} not found"))),
            Err(e) => Err(unavailable(e)),
        }
    }
}

/// `custom@1.2.0`, or the built-in's bare name.
fn plugin_ref(plugin: &str, version: Option<&str>) -> String {
    match version {
        Some(v) => format!("{plugin}@{v}"),
        None => plugin.to_string(),
    }
}

/// The node of `tocsin serve` talks to its own controller in process.
pub struct LocalLink(pub Arc<Serving>);

impl Link for LocalLink {
    fn enroll(&self, hello: Hello) -> BoxFuture<'_, LinkResult<Welcome>> {
        Box::pin(self.0.enroll(hello, Proof::InProcess))
    }

    fn heartbeat(&self, beat: Beat) -> BoxFuture<'_, LinkResult<BeatReply>> {
        Box::pin(self.0.heartbeat(beat))
    }

    fn work(&self, node_id: String, known: i64, wait: Duration) -> BoxFuture<'_, LinkResult<Option<Work>>> {
        Box::pin(async move { self.0.work(&node_id, known, wait).await })
    }

    fn upload(&self, upload: Upload) -> BoxFuture<'_, LinkResult<UploadReply>> {
        Box::pin(self.0.upload(upload))
    }

    fn plugin(&self, sha256: String) -> BoxFuture<'_, LinkResult<Vec<u8>>> {
        Box::pin(async move { self.0.plugin(&sha256).await })
    }
}
