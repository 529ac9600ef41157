//! The other watchdogs: each round every peer's published [`View`] is
//! fetched. A peer that answers with a view it proves is up and its
//! motions count towards a quorum; one that does not answer, or answers
//! with a view that proves nothing, is down, and counts for nothing.
//!
//! A view counts only when it is signed with the peer secret for the nonce
//! this watchdog just sent ([`crate::peer_secret`]), and names the watchdog
//! this URL named the first time it proved itself: names decide which
//! watchdog sends the alarms and which one acts, so a URL cannot change its
//! name, take another peer's or this watchdog's. A refused view is counted
//! in `tocsin_watchdog_peer_views_refused_total{reason}` and logged when a
//! peer's reason changes.

use std::collections::HashMap;
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use url::Url;

use crate::metrics::ReasonLabels;
use crate::model::{Health, Millis, Observation, View, fresh_nonce};
use crate::peer_secret::{NONCE_HEADER, PeerSecret, SIGNATURE_HEADER};
use crate::platform::{describe, http_client, join};

/// Why a peer URL's answer counts for nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// No signature: whoever answered does not hold the peer secret (or
    /// this watchdog has none and so cannot trust any peer).
    Unsigned,
    /// A signature that is not over this view for this round's nonce: a
    /// forgery, a replay or a different secret.
    BadSignature,
    /// Signed, but not a watchdog view.
    Malformed(String),
    /// Claims this watchdog's own name.
    OwnName(String),
    /// Claims a name other than the one this URL proved before.
    Renamed { was: String, claims: String },
    /// Claims the name another peer URL proved.
    NameTaken { name: String, by: Url },
}

impl Refusal {
    /// The metric label: a fixed set.
    pub fn reason(&self) -> &'static str {
        match self {
            Refusal::Unsigned => "unsigned",
            Refusal::BadSignature => "bad_signature",
            Refusal::Malformed(_) => "malformed",
            Refusal::OwnName(_) => "own_name",
            Refusal::Renamed { .. } => "renamed",
            Refusal::NameTaken { .. } => "name_taken",
        }
    }
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::Unsigned => f.write_str("the view is not signed with the peer secret"),
            Refusal::BadSignature => {
                f.write_str("the view's signature does not match (forged, replayed, or another peer secret)")
            }
            Refusal::Malformed(e) => write!(f, "not a watchdog view: {e}"),
            Refusal::OwnName(name) => write!(f, "the view claims this watchdog's own name {name:?}"),
            Refusal::Renamed { was, claims } => write!(f, "the view claims the name {claims:?}, this peer is {was:?}"),
            Refusal::NameTaken { name, by } => write!(f, "the view claims the name {name:?} of the peer at {by}"),
        }
    }
}

enum Failure {
    /// No answer, or not a 2xx one.
    Unreachable(String),
    Refused(Refusal),
}

pub struct Peers {
    http: reqwest::Client,
    secret: Option<PeerSecret>,
    /// This watchdog's name.
    me: String,
    /// Each peer URL's name, as it first proved it.
    names: HashMap<Url, String>,
    failures: HashMap<Url, u32>,
    /// The last refusal logged per URL, so a persistent one is logged once.
    refused: HashMap<Url, &'static str>,
    refusals: Family<ReasonLabels, Counter>,
}

impl Peers {
    pub fn new(
        timeout: Duration,
        tls: &tocsin_tls::ClientTls,
        secret: Option<PeerSecret>,
        me: &str,
        refusals: Family<ReasonLabels, Counter>,
    ) -> Peers {
        Peers {
            http: http_client(timeout, tls),
            secret,
            me: me.to_string(),
            names: HashMap::new(),
            failures: HashMap::new(),
            refused: HashMap::new(),
            refusals,
        }
    }

    /// Every peer's proven view (those that answered) and an observation of each.
    pub async fn round(&mut self, peers: &[Url], down_after: u32, now: Millis) -> (Vec<View>, Vec<Observation>) {
        let answers = futures::future::join_all(peers.iter().map(|p| self.fetch(p))).await;
        let mut views = Vec::new();
        let mut observations = Vec::new();
        for (url, answer) in peers.iter().zip(answers) {
            match answer.and_then(|view| self.name_of(url, view).map_err(Failure::Refused)) {
                Ok(view) => {
                    self.failures.remove(url);
                    if self.refused.remove(url).is_some() {
                        tracing::info!(peer = %url, watchdog = %view.watchdog, "peer view accepted again");
                    }
                    let detail = format!("answers; sees {} components", view.components.len());
                    observations.push(Observation::new("watchdog", &view.watchdog, Health::Up, detail));
                    // A view much older than now is a peer whose loop is stuck.
                    if now - view.at < 10_000 {
                        views.push(view);
                    }
                }
                Err(failure) => {
                    let why = match failure {
                        Failure::Unreachable(e) => e,
                        Failure::Refused(refusal) => {
                            self.refusals.get_or_create(&ReasonLabels { reason: refusal.reason() }).inc();
                            if self.refused.insert(url.clone(), refusal.reason()) != Some(refusal.reason()) {
                                tracing::warn!(peer = %url, reason = refusal.reason(), detail = %refusal,
                                    "peer view refused: it counts for nothing");
                            }
                            format!("view refused: {refusal}")
                        }
                    };
                    let n = self.failures.entry(url.clone()).or_default();
                    *n += 1;
                    let health = if *n >= down_after { Health::Down } else { Health::Up };
                    let name = self.names.get(url).cloned().unwrap_or_else(|| crate::probe::authority(url));
                    observations.push(Observation::new("watchdog", &name, health, format!("{url}: {why}")));
                }
            }
        }
        (views, observations)
    }

    /// The view, if the name it claims is the one `url` may use; the first
    /// name a URL proves is its name from then on.
    fn name_of(&mut self, url: &Url, view: View) -> Result<View, Refusal> {
        let claims = &view.watchdog;
        if *claims == self.me {
            return Err(Refusal::OwnName(claims.clone()));
        }
        if let Some(was) = self.names.get(url) {
            return if was == claims {
                Ok(view)
            } else {
                Err(Refusal::Renamed { was: was.clone(), claims: claims.clone() })
            };
        }
        if let Some((by, _)) = self.names.iter().find(|(_, name)| *name == claims) {
            return Err(Refusal::NameTaken { name: claims.clone(), by: by.clone() });
        }
        self.names.insert(url.clone(), claims.clone());
        Ok(view)
    }

    async fn fetch(&self, peer: &Url) -> Result<View, Failure> {
        let nonce = fresh_nonce();
        let response = self
            .http
            .get(join(peer, "api/v1/view"))
            .header(NONCE_HEADER, &nonce)
            .send()
            .await
            .map_err(|e| Failure::Unreachable(describe(&e)))?;
        if !response.status().is_success() {
            return Err(Failure::Unreachable(format!("HTTP {}", response.status())));
        }
        let signature = response.headers().get(SIGNATURE_HEADER).and_then(|v| v.to_str().ok()).map(str::to_string);
        let body = response.bytes().await.map_err(|e| Failure::Unreachable(describe(&e)))?;
        let (Some(secret), Some(signature)) = (&self.secret, signature) else {
            return Err(Failure::Refused(Refusal::Unsigned));
        };
        if !secret.verify(&nonce, &body, &signature) {
            return Err(Failure::Refused(Refusal::BadSignature));
        }
        let view: View =
            serde_json::from_slice(&body).map_err(|e| Failure::Refused(Refusal::Malformed(e.to_string())))?;
        if !crate::config::is_name(&view.watchdog) {
            return Err(Failure::Refused(Refusal::Malformed(format!(
                "{:?} is not a watchdog name (letters, digits, '-' or '_')",
                view.watchdog
            ))));
        }
        Ok(view)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use axum::http::{HeaderMap, HeaderValue};
    use secrecy::SecretString;

    use super::*;

    const SECRET: &str = "peer-secret-for-the-unit-tests-0123456789";

    fn secret() -> PeerSecret {
        PeerSecret::new(SecretString::from(SECRET.to_string())).unwrap()
    }

    /// What a fake peer answers: given the nonce, the body and signature.
    type Answer = Arc<dyn Fn(&str) -> (Vec<u8>, Option<String>) + Send + Sync>;

    /// A peer at a local URL answering with `answer`, which can be changed.
    async fn peer(answer: Answer) -> (Url, Arc<Mutex<Answer>>) {
        let answer = Arc::new(Mutex::new(answer));
        let current = answer.clone();
        let app = axum::Router::new().route(
            "/api/v1/view",
            axum::routing::get(move |headers: HeaderMap| {
                let current = current.lock().unwrap().clone();
                async move {
                    let nonce = headers.get(NONCE_HEADER).and_then(|v| v.to_str().ok()).unwrap_or_default();
                    let (body, signature) = current(nonce);
                    let mut out = HeaderMap::new();
                    if let Some(s) = signature {
                        out.insert(SIGNATURE_HEADER, HeaderValue::from_str(&s).unwrap());
                    }
                    (out, body)
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = Url::parse(&format!("http://{}", listener.local_addr().unwrap())).unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        (url, answer)
    }

    fn view_of(name: &str, at: Millis) -> Vec<u8> {
        serde_json::to_vec(&View { watchdog: name.into(), at, components: vec![], motions: vec![] }).unwrap()
    }

    /// A real peer named `name`: signs with the secret for the asker's nonce.
    fn signed(name: &'static str) -> Answer {
        Arc::new(move |nonce: &str| {
            let body = view_of(name, crate::model::now_ms());
            let signature = secret().sign(nonce, &body);
            (body, Some(signature))
        })
    }

    fn peers(refusals: &Family<ReasonLabels, Counter>) -> Peers {
        Peers::new(Duration::from_secs(2), &Default::default(), Some(secret()), "w1", refusals.clone())
    }

    fn refused(refusals: &Family<ReasonLabels, Counter>, reason: &'static str) -> u64 {
        refusals.get_or_create(&ReasonLabels { reason }).get()
    }

    #[tokio::test]
    async fn a_signed_view_counts_and_forged_or_replayed_ones_do_not() {
        let refusals = Family::default();
        let mut p = peers(&refusals);
        let (url, answer) = peer(signed("w2")).await;
        let now = crate::model::now_ms();
        let (views, _) = p.round(std::slice::from_ref(&url), 1, now).await;
        assert_eq!(views.iter().map(|v| v.watchdog.as_str()).collect::<Vec<_>>(), ["w2"]);

        // Unsigned, as anyone answering at the URL could.
        *answer.lock().unwrap() = Arc::new(|_: &str| (view_of("0", crate::model::now_ms()), None));
        let (views, observations) = p.round(std::slice::from_ref(&url), 1, now).await;
        assert!(views.is_empty());
        assert_eq!(observations[0].id, "watchdog:w2", "still known by its proven name");
        assert_eq!(observations[0].health, Health::Down);
        assert!(observations[0].detail.contains("not signed"), "{}", observations[0].detail);
        assert_eq!(refused(&refusals, "unsigned"), 1);

        // A recorded answer of the real peer, replayed for a later nonce.
        let recorded_nonce = fresh_nonce();
        let (body, signature) = signed("w2")(&recorded_nonce);
        *answer.lock().unwrap() = Arc::new(move |_: &str| (body.clone(), signature.clone()));
        let (views, _) = p.round(std::slice::from_ref(&url), 1, now).await;
        assert!(views.is_empty(), "a replayed view counts for nothing");
        assert_eq!(refused(&refusals, "bad_signature"), 1);

        // Signed with another secret.
        *answer.lock().unwrap() = Arc::new(|nonce: &str| {
            let body = view_of("w2", crate::model::now_ms());
            let other = PeerSecret::new(SecretString::from("another-secret-of-at-least-32-chars!".to_string()));
            let signature = other.unwrap().sign(nonce, &body);
            (body, Some(signature))
        });
        assert!(p.round(std::slice::from_ref(&url), 1, now).await.0.is_empty());
        assert_eq!(refused(&refusals, "bad_signature"), 2);

        // The real peer again.
        *answer.lock().unwrap() = signed("w2");
        assert_eq!(p.round(std::slice::from_ref(&url), 1, now).await.0.len(), 1);
    }

    #[tokio::test]
    async fn a_url_keeps_the_name_it_proved_and_cannot_take_another() {
        let refusals = Family::default();
        let mut p = peers(&refusals);
        let (first, answer) = peer(signed("w2")).await;
        let (second, _) = peer(signed("w2")).await;
        let (third, _) = peer(signed("w1")).await;
        let now = crate::model::now_ms();
        let (views, _) = p.round(&[first.clone(), second.clone(), third.clone()], 1, now).await;
        assert_eq!(views.len(), 1, "w2 counts once; the second URL claiming it and one claiming w1 count for nothing");
        assert_eq!(refused(&refusals, "name_taken"), 1);
        assert_eq!(refused(&refusals, "own_name"), 1);
        // Even with the secret, the first URL cannot become "0".
        *answer.lock().unwrap() = signed("0");
        let (views, observations) = p.round(std::slice::from_ref(&first), 1, now).await;
        assert!(views.is_empty());
        assert!(observations[0].detail.contains("claims the name \"0\""), "{}", observations[0].detail);
        assert_eq!(refused(&refusals, "renamed"), 1);
    }

    #[tokio::test]
    async fn without_a_secret_no_view_counts() {
        let refusals = Family::default();
        let mut p = Peers::new(Duration::from_secs(2), &Default::default(), None, "w1", refusals.clone());
        let (url, _) = peer(signed("w2")).await;
        assert!(p.round(&[url], 1, crate::model::now_ms()).await.0.is_empty());
        assert_eq!(refused(&refusals, "unsigned"), 1);
    }
}
