//! Keeping this process's view of the site current, and hearing the other
//! sites: an active site that hears a peer active with a newer epoch steps
//! down and follows it. That is how an old primary coming back after a
//! promotion stays passive: it is not ready (`/readyz`) until it has asked
//! its peers once. Only a peer that proved it holds the deployment's peer
//! secret is heard ([`super::proof`]).

use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;
use utoipa::ToSchema;

use super::follower::{FollowState, Source, SourceError};
use super::site::{self, Role, Site};
use super::{SiteWatch, SyncConfig};
use crate::metrics::{Metrics, ReasonLabels};
use crate::store::Db;

const REFRESH: Duration = Duration::from_secs(1);
const ASK_PEERS: Duration = Duration::from_secs(2);

/// `GET /api/v1/sync/status`: where a site stands. Readable without a
/// token: peers, watchdogs and proxies ask it.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct SyncStatus {
    pub site: Site,
    /// Active and sure of it (what `/readyz` says).
    pub ready: bool,
    /// How following goes, on a passive site.
    pub following: Option<FollowState>,
    /// With `?challenge=`: the proof that this site holds the deployment's
    /// peer secret (absent when it has none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proof: Option<String>,
}

pub async fn run(
    db: Db,
    site: SiteWatch,
    config: SyncConfig,
    metrics: std::sync::Arc<Metrics>,
    cancel: CancellationToken,
) {
    let peers: Vec<Source> =
        config.peers.iter().map(|url| Source::new(url, None, config.peer_secret.clone(), &config.tls)).collect();
    if !peers.is_empty() && config.peer_secret.is_none() {
        tracing::error!(peers = ?config.peers,
            "sync peers are configured without a peer secret (TOCSIN_SYNC_PEER_SECRET): their epochs cannot be \
             trusted, so this site will not step down for any of them");
    }
    let mut asked = tokio::time::Instant::now() - ASK_PEERS;
    loop {
        match site.refresh(&db).await {
            Ok(now) => {
                metrics.site_active.set(i64::from(now.role == Role::Active));
            }
            Err(e) => tracing::warn!(error = %e, "reading the site row failed"),
        }
        if !peers.is_empty() && asked.elapsed() >= ASK_PEERS {
            if config.peer_secret.is_some() {
                ask_peers(&db, &site, &peers, &metrics).await;
            }
            site.set_peers_heard();
            asked = tokio::time::Instant::now();
        }
        tokio::select! {
            _ = tokio::time::sleep(REFRESH) => {}
            _ = cancel.cancelled() => return,
        }
    }
}

async fn ask_peers(db: &Db, site: &SiteWatch, peers: &[Source], metrics: &Metrics) {
    let answers = futures::future::join_all(peers.iter().map(|p| p.proven_status())).await;
    for (peer, answer) in peers.iter().zip(answers) {
        let theirs = match answer {
            Ok(status) => status.site,
            Err(e @ SourceError::Unproven(_)) => {
                tracing::warn!(peer = %peer.url, error = %e, "a peer site's answer is not proven: its epoch is ignored");
                metrics.auth_failures.get_or_create(&ReasonLabels { reason: "sync_peer".into() }).inc();
                continue;
            }
            Err(e) => {
                tracing::debug!(peer = %peer.url, error = %e, "a peer site does not answer");
                continue;
            }
        };
        let mine = site.current();
        if theirs.role != Role::Active || mine.role != Role::Active {
            continue;
        }
        if theirs.epoch > mine.epoch {
            match site::step_down(db, &peer.url, theirs.epoch).await {
                Ok(true) => {
                    tracing::warn!(peer = %peer.url, their_site = %theirs.name, their_epoch = theirs.epoch, my_epoch = mine.epoch,
                        "another site was promoted above this one: stepping down to follow it");
                    let _ = site.refresh(db).await;
                }
                Ok(false) => {}
                Err(e) => tracing::warn!(error = %e, "stepping down failed"),
            }
        } else if theirs.epoch == mine.epoch && theirs.name != mine.name {
            tracing::error!(peer = %peer.url, their_site = %theirs.name, epoch = mine.epoch,
                "two sites are active with the same epoch: promote one of them (`tocsin sync promote`) to settle it");
        }
    }
}
