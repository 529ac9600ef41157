//! The other watchdogs: each round every peer's published [`View`] is
//! fetched. A peer that answers is up and its motions count towards a
//! quorum; one that does not is down, and counts for nothing.

use std::collections::HashMap;
use std::time::Duration;

use url::Url;

use crate::model::{Health, Millis, Observation, View};
use crate::platform::{describe, http_client, join};

pub struct Peers {
    http: reqwest::Client,
    /// Peer names by URL, remembered from their last answer.
    names: HashMap<Url, String>,
    failures: HashMap<Url, u32>,
}

impl Peers {
    pub fn new(timeout: Duration, tls: &tocsin_tls::ClientTls) -> Peers {
        Peers { http: http_client(timeout, tls), names: HashMap::new(), failures: HashMap::new() }
    }

    /// Every peer's view (those that answered) and an observation of each.
    pub async fn round(&mut self, peers: &[Url], down_after: u32, now: Millis) -> (Vec<View>, Vec<Observation>) {
        let answers = futures::future::join_all(peers.iter().map(|p| self.fetch(p))).await;
        let mut views = Vec::new();
        let mut observations = Vec::new();
        for (url, answer) in peers.iter().zip(answers) {
            match answer {
                Ok(view) => {
                    self.failures.remove(url);
                    self.names.insert(url.clone(), view.watchdog.clone());
                    let detail = format!("answers; sees {} components", view.components.len());
                    observations.push(Observation::new("watchdog", &view.watchdog, Health::Up, detail));
                    // A view much older than now is a peer whose loop is stuck.
                    if now - view.at < 10_000 {
                        views.push(view);
                    }
                }
                Err(e) => {
                    let n = self.failures.entry(url.clone()).or_default();
                    *n += 1;
                    let health = if *n >= down_after { Health::Down } else { Health::Up };
                    let name = self.names.get(url).cloned().unwrap_or_else(|| crate::probe::authority(url));
                    observations.push(Observation::new("watchdog", &name, health, format!("{url}: {e}")));
                }
            }
        }
        (views, observations)
    }

    async fn fetch(&self, peer: &Url) -> Result<View, String> {
        let response = self.http.get(join(peer, "api/v1/view")).send().await.map_err(|e| describe(&e))?;
        if !response.status().is_success() {
            return Err(format!("HTTP {}", response.status()));
        }
        response.json().await.map_err(|e| format!("not a watchdog view: {e}"))
    }
}
