//! A passive site's side of the feed: pulling its source's entries and
//! applying them, and recovering from a source's snapshot.
//!
//! Every controller of a passive site runs [`Follower::run`]; the site row
//! decides which of them applies a page (the first to lock it at the
//! position it read from). Each applied entry is logged at `info` with its
//! seq, kind, name and lag: the verbose sync log.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;
use utoipa::ToSchema;

use super::apply::{self, Snapshot, Wasm};
use super::feed::Entry;
use super::peers::SyncStatus;
use super::site::{Role, Site};
use super::{SiteWatch, SyncConfig, proof};
use crate::config::Secret;
use crate::metrics::Metrics;
use crate::model::now_ms;
use crate::store::{self, Db, StoreError};

/// Entries asked for at once.
const PAGE: i64 = 1000;
/// How long the source may hold a request open when it has nothing new.
const WAIT: Duration = Duration::from_secs(10);

/// One page of a site's feed, with where that site stands.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct FeedPage {
    pub site: Site,
    pub entries: Vec<Entry>,
}

/// How following goes, for `tocsin sync status`.
#[derive(Clone, Debug, Default, Serialize, Deserialize, ToSchema)]
pub struct FollowState {
    /// When the source last answered (unix ms).
    pub last_contact: Option<i64>,
    /// Where the source stood then.
    pub source_head: Option<i64>,
    /// Entries applied by this controller since it started.
    pub applied: u64,
    /// Why following is stuck, if it is.
    pub error: Option<String>,
    /// The source does not hold this site's newest entry: only `tocsin sync
    /// recover` gets it going again.
    pub diverged: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("{0}")]
    Unreachable(String),
    #[error("the feeds diverged: {0}")]
    Diverged(String),
    #[error("the source refused: HTTP {status} {message}")]
    Refused { status: u16, message: String },
    #[error("{0} did not prove it holds this deployment's sync peer secret: it gets no sync token")]
    Unproven(String),
    #[error("{0}")]
    Local(#[from] StoreError),
}

/// Another site's API, as a follower (or a peer) calls it. With a peer
/// secret, the source must prove it holds it (a signed status) before any
/// request carries the token.
pub struct Source {
    pub url: String,
    token: Option<String>,
    secret: Option<Secret>,
    proven: AtomicBool,
    http: reqwest::Client,
}

impl Source {
    pub fn new(url: &str, token: Option<String>, secret: Option<Secret>, tls: &tocsin_tls::ClientTls) -> Source {
        let http = tls
            .reqwest()
            .connect_timeout(Duration::from_secs(3))
            .timeout(WAIT + Duration::from_secs(20))
            .user_agent(concat!("tocsin-sync/", env!("CARGO_PKG_VERSION")))
            .build()
            .expect("an HTTP client with rustls builds");
        Source { url: url.trim_end_matches('/').to_string(), token, secret, proven: AtomicBool::new(false), http }
    }

    /// A request with the token, once the source proved itself.
    async fn get(&self, path: &str, timeout: Duration) -> Result<reqwest::Response, SourceError> {
        if self.token.is_some() && self.secret.is_some() && !self.proven.load(Ordering::Relaxed) {
            self.proven_status().await?;
        }
        self.send(path, timeout, self.token.as_deref()).await
    }

    async fn send(&self, path: &str, timeout: Duration, token: Option<&str>) -> Result<reqwest::Response, SourceError> {
        let mut request = self.http.get(format!("{}{path}", self.url)).timeout(timeout);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request
            .send()
            .await
            .map_err(|e| SourceError::Unreachable(format!("{}: {}", self.url, crate::cli::describe(&e))))?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let text = response.text().await.unwrap_or_default();
        let body: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
        let message = body["error"]["message"].as_str().map(str::to_string).unwrap_or(text);
        if body["error"]["code"] == "diverged" {
            return Err(SourceError::Diverged(message));
        }
        Err(SourceError::Refused { status: status.as_u16(), message })
    }

    async fn json<T: serde::de::DeserializeOwned>(&self, path: &str, timeout: Duration) -> Result<T, SourceError> {
        Self::read(self.get(path, timeout).await?, &self.url).await
    }

    async fn read<T: serde::de::DeserializeOwned>(response: reqwest::Response, url: &str) -> Result<T, SourceError> {
        response.json().await.map_err(|e| SourceError::Unreachable(format!("{url}: unreadable answer: {e}")))
    }

    /// The source's standing, signed for a fresh challenge with the peer
    /// secret (never with the token): what a peer's epoch is taken from.
    pub async fn proven_status(&self) -> Result<SyncStatus, SourceError> {
        let Some(secret) = &self.secret else {
            return Err(SourceError::Unproven(format!("{} (this site has no peer secret to check it with)", self.url)));
        };
        let challenge = proof::challenge();
        let response =
            self.send(&format!("/api/v1/sync/status?challenge={challenge}"), Duration::from_secs(2), None).await?;
        let status: SyncStatus = Self::read(response, &self.url).await?;
        match &status.proof {
            Some(signed) if proof::verify(secret, &challenge, &status.site, signed) => {
                self.proven.store(true, Ordering::Relaxed);
                Ok(status)
            }
            _ => Err(SourceError::Unproven(self.url.clone())),
        }
    }

    pub async fn feed(&self, after: (i64, &str), wait: Duration) -> Result<FeedPage, SourceError> {
        let path = format!(
            "/api/v1/sync/feed?after={}&after_chain={}&limit={PAGE}&wait_ms={}",
            after.0,
            after.1,
            wait.as_millis()
        );
        self.json(&path, wait + Duration::from_secs(10)).await
    }

    pub async fn snapshot(&self) -> Result<Snapshot, SourceError> {
        self.json("/api/v1/sync/snapshot", Duration::from_secs(120)).await
    }

    /// A plugin's bytes, checked against their sha256.
    async fn wasm(&self, sha256: &str) -> Result<Vec<u8>, SourceError> {
        let bytes = self
            .get(&format!("/api/v1/sync/plugins/{sha256}"), Duration::from_secs(60))
            .await?
            .bytes()
            .await
            .map_err(|e| SourceError::Unreachable(format!("{}: {e}", self.url)))?;
        let got = hex::encode(Sha256::digest(&bytes));
        if got != sha256 {
            return Err(SourceError::Unreachable(format!("plugin {sha256} arrived as {got}")));
        }
        Ok(bytes.to_vec())
    }

    /// The bytes of every plugin `shas` names that this site lacks.
    async fn missing_wasm(&self, db: &Db, shas: impl Iterator<Item = String>) -> Result<Wasm, SourceError> {
        let mut wasm = Wasm::new();
        for sha in shas {
            if wasm.contains_key(&sha) {
                continue;
            }
            let bytes = match store::plugins::wasm_by_sha(db, &sha).await {
                Ok(bytes) => bytes,
                Err(StoreError::NotFound(_)) => self.wasm(&sha).await?,
                Err(e) => return Err(e.into()),
            };
            wasm.insert(sha, bytes);
        }
        Ok(wasm)
    }
}

/// Takes `source`'s state and leaves this site following it.
pub async fn recover(db: &Db, source: &Source, actor: &str) -> Result<apply::Report, SourceError> {
    let snapshot = source.snapshot().await?;
    tracing::info!(source = %source.url, objects = snapshot.objects.len(), head = snapshot.site.head, "sync: recovering from a snapshot");
    let shas = snapshot.objects.iter().filter_map(|o| apply::plugin_sha(&o.kind, Some(&o.body)));
    let wasm = source.missing_wasm(db, shas).await?;
    let report = apply::recover(db, &source.url, &snapshot, &wasm, actor).await?;
    for d in &report.discarded {
        tracing::warn!(kind = %d.kind, name = %d.name, why = %d.why, "sync: recovery discarded a local object");
    }
    tracing::info!(source = %source.url, discarded = report.discarded.len(), added = report.added, unchanged = report.unchanged, "sync: recovered");
    Ok(report)
}

pub struct Follower {
    pub db: Db,
    pub site: SiteWatch,
    pub config: SyncConfig,
    pub metrics: Arc<Metrics>,
    pub state: Arc<Mutex<FollowState>>,
}

impl Follower {
    pub async fn run(self, cancel: CancellationToken) {
        let mut changes = self.site.subscribe();
        let mut failures = 0u32;
        let mut client: Option<Source> = None;
        loop {
            let site = self.site.current();
            let source = match (&site.role, &site.source) {
                (Role::Passive, Some(url)) => url.clone(),
                _ => {
                    tokio::select! {
                        _ = changes.changed() => continue,
                        _ = cancel.cancelled() => return,
                    }
                }
            };
            // One client (and its connections) per source, not per poll.
            if client.as_ref().is_none_or(|c: &Source| c.url != source.trim_end_matches('/')) {
                let token = self.config.token.as_ref().map(|t| t.expose().to_string());
                client = Some(Source::new(&source, token, self.config.peer_secret.clone(), &self.config.tls));
            }
            let Some(source) = client.as_ref() else { continue };
            let outcome = tokio::select! {
                outcome = self.step(source, &site) => outcome,
                _ = cancel.cancelled() => return,
            };
            let pause = match outcome {
                Ok(()) => {
                    failures = 0;
                    Duration::ZERO
                }
                Err(e) => {
                    failures += 1;
                    self.record_failure(source, &e, failures);
                    match e {
                        SourceError::Unreachable(_) => Duration::from_millis(250 * u64::from(failures.min(8))),
                        _ => Duration::from_secs(5),
                    }
                }
            };
            tokio::select! {
                _ = tokio::time::sleep(pause) => {}
                // Recovered, promoted or pointed elsewhere: try at once.
                _ = changes.changed() => {}
                _ = cancel.cancelled() => return,
            }
        }
    }

    /// One long-poll of the source and, if it sent entries, one apply.
    async fn step(&self, source: &Source, site: &Site) -> Result<(), SourceError> {
        if self.config.token.is_none() {
            return Err(SourceError::Refused {
                status: 401,
                message: "this site has no sync token: set TOCSIN_SYNC_TOKEN (or [sync] token) to an admin token of the source".into(),
            });
        }
        let after = (site.head, site.head_chain.as_str());
        let page = source.feed(after, WAIT).await?;
        {
            let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
            state.last_contact = Some(now_ms());
            state.source_head = Some(page.site.head);
            state.error = None;
            state.diverged = false;
        }
        self.metrics.sync_lag_entries.set(page.site.head - site.head);
        if page.entries.is_empty() {
            return Ok(());
        }
        let shas = page.entries.iter().filter_map(|e| apply::plugin_sha(&e.kind, e.body.as_ref()));
        let wasm = source.missing_wasm(&self.db, shas).await?;
        let applied = apply::page(&self.db, &page.site.name, page.site.epoch, after, &page.entries, &wasm).await?;
        let Some(now) = applied else {
            // Another controller of this site applied them first.
            self.site.refresh(&self.db).await?;
            return Ok(());
        };
        let at = now_ms();
        for entry in &page.entries {
            let lag_ms = at - entry.at;
            self.metrics.sync_lag_seconds.observe(lag_ms.max(0) as f64 / 1000.0);
            tracing::info!(seq = entry.seq, epoch = entry.epoch, kind = %entry.kind, name = %entry.name, action = %entry.action, actor = %entry.actor, lag_ms, "sync: applied");
        }
        self.metrics.sync_applied.inc_by(page.entries.len() as u64);
        self.metrics.sync_lag_entries.set(page.site.head - now.head);
        self.state.lock().unwrap_or_else(|p| p.into_inner()).applied += page.entries.len() as u64;
        self.site.publish(now);
        Ok(())
    }

    /// Logged at the first failure of a kind and every minute after, not at
    /// every retry.
    fn record_failure(&self, source: &Source, e: &SourceError, failures: u32) {
        let message = e.to_string();
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let new = state.error.as_deref() != Some(message.as_str());
        state.diverged = matches!(e, SourceError::Diverged(_));
        state.error = Some(message.clone());
        drop(state);
        if !(new || failures.is_multiple_of(60)) {
            return;
        }
        match e {
            SourceError::Diverged(_) => tracing::error!(source = %source.url, error = %message,
                "sync: stopped; this site holds changes its source does not: run `tocsin sync recover --from {}`", source.url),
            SourceError::Unreachable(_) => {
                tracing::warn!(source = %source.url, error = %message, "sync: the source does not answer")
            }
            _ => tracing::error!(source = %source.url, error = %message, "sync: following failed"),
        }
    }
}
