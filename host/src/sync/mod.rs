//! Redundant sites: a backup site holds the same configuration as the
//! primary at every moment, and takes over when it is promoted.
//!
//! Every configuration change is an entry of the change feed
//! ([`feed`]), numbered in commit order and carrying the object as it is
//! after the change ([`entities`]). A passive site's controllers pull their
//! source's feed ([`follower`]) and apply each page in one transaction,
//! keeping the source's numbering, so "where a site stands" is one pair:
//! the seq of its newest entry and that entry's link in the feed's hash
//! chain.
//!
//! Site epochs decide who is active ([`site`]). A promotion takes an epoch
//! above any the site has seen; an active site that hears a peer active
//! with a newer epoch steps down and follows it ([`peers`]). A follower
//! whose newest entry the source does not hold (same seq, same link) has
//! diverged (it took changes the source never saw): it stops, and `tocsin
//! sync recover` resets it to the source's state with a report of what it
//! discarded ([`apply::recover`]).
//!
//! Sites prove to each other who they are ([`proof`]): a site steps down
//! only for a peer that proved it holds the deployment's peer secret, and
//! sends its sync token only to a source that did.
//!
//! A passive site refuses changes twice: the API answers 503 before a
//! handler runs (so clients and nodes try the next server), and the feed's
//! capture refuses inside the change's transaction (so a change racing a
//! demotion cannot commit).

pub mod apply;
pub mod entities;
pub mod feed;
pub mod follower;
pub mod peers;
pub mod proof;
pub mod site;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use ipnet::IpNet;
use serde::Deserialize;
use tokio::sync::watch;

use crate::config::Secret;
use crate::store::{Db, Result};
pub use site::{Role, Site};

/// The `[sync]` settings of a controller.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyncConfig {
    /// This site's name (default `main`).
    pub site: Option<String>,
    /// A new site starts passive, following this site's URL.
    pub follow: Option<String>,
    /// An admin token valid at the other sites, to read their feed.
    pub token: Option<Secret>,
    /// Other sites, asked for their epoch so a returning old primary stays
    /// passive.
    #[serde(default)]
    pub peers: Vec<String>,
    /// A secret the sites of this deployment share: a peer's epoch counts,
    /// and a source gets this site's sync token, only once it proved it
    /// holds the same ([`proof`]).
    pub peer_secret: Option<Secret>,
    /// Addresses that may read this site's feed (none by default).
    #[serde(default, deserialize_with = "nets")]
    pub allow: Vec<IpNet>,
    /// Whom this controller trusts over https when it calls other sites
    /// (from `[tls]`, not from `[sync]`).
    #[serde(skip)]
    pub tls: tocsin_tls::ClientTls,
}

/// `10.0.0.0/8`, or one address (`10.0.0.7`).
pub fn parse_net(text: &str) -> std::result::Result<IpNet, String> {
    text.parse::<IpNet>()
        .or_else(|_| text.parse::<std::net::IpAddr>().map(IpNet::from))
        .map_err(|_| format!("{text:?} is neither an address nor a CIDR range"))
}

fn nets<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Vec<IpNet>, D::Error> {
    Vec::<String>::deserialize(d)?.iter().map(|s| parse_net(s).map_err(serde::de::Error::custom)).collect()
}

impl SyncConfig {
    pub fn site_name(&self) -> &str {
        self.site.as_deref().unwrap_or("main")
    }
}

/// The site row as this process last read it, and whether the peers have
/// been asked since start (a controller is not ready before: it might be an
/// old primary that lost its place).
#[derive(Clone)]
pub struct SiteWatch {
    tx: Arc<watch::Sender<Site>>,
    peers_heard: Arc<AtomicBool>,
}

impl SiteWatch {
    pub fn new(site: Site, peers_to_ask: bool) -> SiteWatch {
        SiteWatch { tx: Arc::new(watch::channel(site).0), peers_heard: Arc::new(AtomicBool::new(!peers_to_ask)) }
    }

    /// A lone active site that asks no one (benches, tools).
    pub fn lone() -> SiteWatch {
        let site = Site {
            name: "main".into(),
            role: Role::Active,
            epoch: 1,
            head: 0,
            head_epoch: 0,
            head_chain: String::new(),
            source: None,
            changed_at: 0,
        };
        SiteWatch::new(site, false)
    }

    pub fn current(&self) -> Site {
        self.tx.borrow().clone()
    }

    pub fn is_active(&self) -> bool {
        self.tx.borrow().role == Role::Active
    }

    /// Active and sure of it: what `/readyz` reports.
    pub fn is_serving(&self) -> bool {
        self.is_active() && self.peers_heard.load(Ordering::Relaxed)
    }

    pub fn set_peers_heard(&self) {
        self.peers_heard.store(true, Ordering::Relaxed);
    }

    pub fn subscribe(&self) -> watch::Receiver<Site> {
        self.tx.subscribe()
    }

    /// Reads the row again; logs a change of role.
    pub async fn refresh(&self, db: &Db) -> Result<Site> {
        let site = site::load(db).await?;
        self.publish(site.clone());
        Ok(site)
    }

    pub fn publish(&self, site: Site) {
        self.tx.send_if_modified(|old| {
            if old.role != site.role {
                tracing::warn!(site = %site.name, role = ?site.role, epoch = site.epoch, source = ?site.source, "site role changed");
            }
            let changed = *old != site;
            *old = site;
            changed
        });
    }
}
