//! The watchdog's settings: one TOML file, nothing shared with the
//! platform it watches. Every key is known (an unknown one is an error that
//! names it), every URL is parsed, and every host must resolve before the
//! watchdog starts: a mistake is caught at start, not at 3 a.m.
//!
//! A target that resolves but does not answer is not a config error: that
//! is what the watchdog is for, and it must start during an outage.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};

use crate::peer_secret::PeerSecret;
use serde::Deserialize;
use url::Url;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("{path}: {field}: {message}")]
    Invalid { path: PathBuf, field: String, message: String },
}

/// The whole file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// This watchdog's name, unique among its peers (it signs its actions).
    pub name: String,
    /// The status page, the peer view, the canary target, `/healthz`, `/metrics`.
    pub listen: SocketAddr,
    /// How probe nodes reach this watchdog's canary target; default
    /// `http://<listen>` (`https://` when `[tls]` has a certificate).
    #[serde(default)]
    pub public_url: Option<Url>,
    /// The watchdog's own state (SQLite); default `watchdog-<name>.db`.
    #[serde(default)]
    pub state: Option<PathBuf>,
    /// How often everything is probed.
    #[serde(default = "defaults::interval", with = "humantime_serde")]
    pub interval: Duration,
    /// Consecutive failed probes before a component counts as down.
    #[serde(default = "defaults::down_after")]
    pub down_after: u32,
    /// An API answer slower than this makes its controller degraded.
    #[serde(default = "defaults::slow", with = "humantime_serde")]
    pub slow: Duration,
    /// The controllers, in order of preference for taking over.
    pub controllers: Vec<Url>,
    /// An API token with the admin role (failover needs it; probing needs viewer).
    pub token: SecretString,
    /// The platform's database, probed directly (connect, write, read back).
    #[serde(default)]
    pub database_url: Option<SecretString>,
    /// The other watchdogs. Acting needs a majority of all of them (peers plus this one).
    #[serde(default)]
    pub peers: Vec<Url>,
    /// The secret every watchdog of the deployment shares; their views are
    /// signed with it (`crate::peer_secret`). Needed when there are peers;
    /// `TOCSIN_WATCHDOG_PEER_SECRET` overrides it.
    #[serde(default)]
    pub peer_secret: Option<SecretString>,
    #[serde(default)]
    pub canary: Option<Canary>,
    #[serde(default)]
    pub failover: Failover,
    /// Where alarms go, in order: the next gateway is tried when one fails.
    #[serde(default)]
    pub notify: Vec<Gateway>,
    /// How long history is kept for the status page.
    #[serde(default = "defaults::keep", with = "humantime_serde")]
    pub keep: Duration,
    /// HTTPS for this watchdog's page, views and canary target (`cert`,
    /// `key`), and the CA it trusts when it calls controllers and peers (`ca`).
    #[serde(default)]
    pub tls: tocsin_tls::Settings,
}

/// The end-to-end canary: one check per location whose target this watchdog serves.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Canary {
    /// Locations that must each run the canary.
    pub locations: Vec<String>,
    /// The canary checks' interval.
    #[serde(default = "defaults::canary_interval", with = "humantime_serde")]
    pub interval: Duration,
    /// How often the canary's definition changes (a new generation in its
    /// URL), proving that a change is scheduled and reaches every location.
    #[serde(default = "defaults::canary_rotate", with = "humantime_serde")]
    pub rotate: Duration,
    /// How long a generation may take to be seen from every location and
    /// through the API.
    #[serde(default = "defaults::canary_deadline", with = "humantime_serde")]
    pub deadline: Duration,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Failover {
    /// Evict nodes that are dead or heartbeat without running their checks.
    pub evict_nodes: bool,
    /// Revoke the scheduling lease of a dead or wedged controller and hand
    /// it to the first healthy one in `controllers` order.
    pub revoke_lease: bool,
    /// A heartbeating node that ran less than this share of its expected
    /// runs over the last minute is wedged.
    pub wedged_below: f64,
}

impl Default for Failover {
    fn default() -> Self {
        Failover { evict_nodes: true, revoke_lease: true, wedged_below: 0.2 }
    }
}

/// A notifier plugin with its config: the watchdog's own alarm path.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Gateway {
    pub name: String,
    /// A built-in notifier (`webhook`, `slack`, `pagerduty`, `twilio`, `vonage`, `email`).
    pub plugin: String,
    /// The plugin's config, checked against its schema at start.
    #[serde(default = "defaults::empty_object")]
    pub config: serde_json::Value,
    /// Whom it notifies: an address the plugin understands (phone, email,
    /// channel); for webhooks it can stay empty.
    #[serde(default)]
    pub to: String,
    /// Extra hosts or ranges the plugin may reach besides those its config names.
    #[serde(default)]
    pub allow: Vec<String>,
    #[serde(default = "defaults::gateway_timeout", with = "humantime_serde")]
    pub timeout: Duration,
}

mod defaults {
    use std::time::Duration;
    pub fn interval() -> Duration {
        Duration::from_secs(1)
    }
    pub fn down_after() -> u32 {
        2
    }
    pub fn slow() -> Duration {
        Duration::from_millis(500)
    }
    pub fn keep() -> Duration {
        Duration::from_secs(90 * 86_400)
    }
    pub fn canary_interval() -> Duration {
        Duration::from_secs(10)
    }
    pub fn canary_rotate() -> Duration {
        Duration::from_secs(60)
    }
    pub fn canary_deadline() -> Duration {
        Duration::from_secs(30)
    }
    pub fn gateway_timeout() -> Duration {
        Duration::from_secs(10)
    }
    pub fn empty_object() -> serde_json::Value {
        serde_json::json!({})
    }
}

impl Config {
    /// Reads, parses and validates `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.into(), source })?;
        let config: Config =
            toml::from_str(&text).map_err(|e| ConfigError::Parse { path: path.into(), message: e.to_string() })?;
        config.validate(path)?;
        Ok(config)
    }

    fn validate(&self, path: &Path) -> Result<(), ConfigError> {
        let invalid = |field: &str, message: String| ConfigError::Invalid {
            path: path.into(),
            field: field.to_string(),
            message,
        };
        if !is_name(&self.name) {
            return Err(invalid("name", format!("{:?} must be letters, digits, '-' or '_'", self.name)));
        }
        if self.controllers.is_empty() {
            return Err(invalid("controllers", "name at least one controller URL".into()));
        }
        let urls = self.controllers.iter().map(|u| ("controllers", u)).chain(self.peers.iter().map(|u| ("peers", u)));
        for (field, url) in urls.chain(self.public_url.iter().map(|u| ("public_url", u))) {
            if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
                return Err(invalid(field, format!("{url} is not an http(s) URL with a host")));
            }
        }
        if self.token.expose_secret().trim().is_empty() {
            return Err(invalid("token", "is empty: create one with `tocsin token create --role admin`".into()));
        }
        if self.down_after == 0 {
            return Err(invalid("down_after", "must be at least 1".into()));
        }
        if self.interval < Duration::from_millis(100) {
            return Err(invalid("interval", "must be at least 100ms".into()));
        }
        if let Some(canary) = &self.canary {
            if canary.locations.is_empty() {
                return Err(invalid("canary.locations", "name at least one location".into()));
            }
            if canary.deadline < canary.interval * 2 {
                return Err(invalid("canary.deadline", "must be at least twice canary.interval".into()));
            }
        }
        if !(0.0..=1.0).contains(&self.failover.wedged_below) {
            return Err(invalid("failover.wedged_below", "must be between 0 and 1".into()));
        }
        if let Some(secret) = &self.peer_secret {
            PeerSecret::new(secret.clone()).map_err(|message| invalid("peer_secret", message))?;
        }
        Ok(())
    }

    /// The peer secret, from `from_env` (`TOCSIN_WATCHDOG_PEER_SECRET`) or
    /// the file. Watchdogs with peers must have one: without it any answer
    /// at a peer's URL would count as that peer's view, so it refuses to
    /// start. A lone watchdog needs none.
    pub fn peer_secret(&self, from_env: Option<SecretString>) -> Result<Option<PeerSecret>, ConfigError> {
        let invalid = |message: String| ConfigError::Invalid {
            path: PathBuf::from("config"),
            field: "peer_secret".into(),
            message,
        };
        match from_env.or_else(|| self.peer_secret.clone()) {
            Some(secret) => PeerSecret::new(secret).map(Some).map_err(invalid),
            None if self.peers.is_empty() => Ok(None),
            None => Err(invalid(format!(
                "{} peers are configured, and their views can only be trusted when signed: set peer_secret (or \
                 TOCSIN_WATCHDOG_PEER_SECRET) to the same random value on every watchdog (e.g. `openssl rand -hex 32`)",
                self.peers.len()
            ))),
        }
    }

    /// How many watchdogs must agree before one acts.
    pub fn quorum(&self) -> usize {
        // A majority of all watchdogs: 1 of 1, 2 of 2, 2 of 3.
        let all = self.peers.len() + 1;
        all / 2 + 1
    }

    pub fn public_url(&self) -> String {
        match &self.public_url {
            Some(u) => u.as_str().trim_end_matches('/').to_string(),
            None => {
                let scheme = if self.tls.cert.is_some() { "https" } else { "http" };
                format!("{scheme}://{}", self.listen)
            }
        }
    }

    pub fn state_path(&self) -> PathBuf {
        self.state.clone().unwrap_or_else(|| PathBuf::from(format!("watchdog-{}.db", self.name)))
    }

    /// Every host this config names must resolve, or no probe of it can
    /// ever succeed: refuse to start, naming it.
    pub async fn check_hosts(&self) -> Result<(), ConfigError> {
        let mut targets: Vec<(&str, String)> = Vec::new();
        for url in &self.controllers {
            targets.push(("controllers", host_port(url)));
        }
        for url in &self.peers {
            targets.push(("peers", host_port(url)));
        }
        if let Some(db) = &self.database_url
            && let Ok(url) = Url::parse(db.expose_secret())
            && url.scheme() != "sqlite"
        {
            targets.push(("database_url", host_port(&url)));
        }
        for (field, target) in targets {
            match tokio::time::timeout(Duration::from_secs(5), tokio::net::lookup_host(target.as_str())).await {
                Ok(Ok(addrs)) => {
                    if addrs.count() == 0 {
                        return Err(self.unreachable(field, &target, "it resolves to no address"));
                    }
                }
                Ok(Err(e)) => return Err(self.unreachable(field, &target, &format!("it does not resolve ({e})"))),
                Err(_) => return Err(self.unreachable(field, &target, "resolving it took over 5s")),
            }
        }
        Ok(())
    }

    fn unreachable(&self, field: &str, target: &str, why: &str) -> ConfigError {
        ConfigError::Invalid {
            path: PathBuf::from("config"),
            field: field.to_string(),
            message: format!("{target} is unreachable: {why}"),
        }
    }
}

/// A watchdog's name: letters, digits, '-' or '_'.
pub fn is_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= 64 && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

fn host_port(url: &Url) -> String {
    let host = url.host_str().unwrap_or_default().trim_start_matches('[').trim_end_matches(']');
    let port = url.port_or_known_default().unwrap_or(80);
    if host.contains(':') { format!("[{host}]:{port}") } else { format!("{host}:{port}") }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.toml");
        std::fs::write(&path, text).unwrap();
        Config::load(&path)
    }

    const GOOD: &str =
        "name = \"w1\"\nlisten = \"127.0.0.1:0\"\ncontrollers = [\"http://127.0.0.1:8080\"]\ntoken = \"t\"\n";

    #[test]
    fn a_minimal_config_loads_with_defaults() {
        let c = parse(GOOD).unwrap();
        assert_eq!(c.interval, Duration::from_secs(1));
        assert_eq!(c.quorum(), 1);
        assert!(c.failover.evict_nodes);
    }

    #[test]
    fn the_example_config_loads() {
        let c = parse(include_str!("../watchdog.example.toml")).unwrap();
        assert_eq!(c.notify.len(), 1);
        assert_eq!(c.canary.unwrap().locations, vec!["local".to_string()]);
    }

    #[test]
    fn an_unknown_key_is_named() {
        let e = parse(&format!("{GOOD}colour = \"red\"\n")).unwrap_err().to_string();
        assert!(e.contains("unknown field `colour`"), "{e}");
    }

    #[test]
    fn a_malformed_url_is_named() {
        let e = parse(&GOOD.replace("http://127.0.0.1:8080", "http//nowhere")).unwrap_err().to_string();
        assert!(e.contains("controllers") || e.contains("relative URL"), "{e}");
        let e = parse(&GOOD.replace("http://127.0.0.1:8080", "ftp://x")).unwrap_err().to_string();
        assert!(e.contains("controllers: ftp://x/ is not an http(s) URL"), "{e}");
    }

    #[test]
    fn quorum_is_a_majority_of_all_watchdogs() {
        let c = parse(&format!("{GOOD}peers = [\"http://127.0.0.1:1\", \"http://127.0.0.1:2\"]\n")).unwrap();
        assert_eq!(c.quorum(), 2);
        let c = parse(&format!("{GOOD}peers = [\"http://127.0.0.1:1\"]\n")).unwrap();
        assert_eq!(c.quorum(), 2);
    }

    #[test]
    fn peers_need_a_secret_and_a_lone_watchdog_does_not() {
        let lone = parse(GOOD).unwrap();
        assert!(lone.peer_secret(None).unwrap().is_none());
        let with_peers = parse(&format!("{GOOD}peers = [\"http://127.0.0.1:1\"]\n")).unwrap();
        let e = with_peers.peer_secret(None).unwrap_err().to_string();
        assert!(e.contains("peer_secret: 1 peers are configured") && e.contains("TOCSIN_WATCHDOG_PEER_SECRET"), "{e}");
        let secret = "s".repeat(32);
        assert!(with_peers.peer_secret(Some(SecretString::from(secret.clone()))).unwrap().is_some());
        let in_file = parse(&format!("{GOOD}peers = [\"http://127.0.0.1:1\"]\npeer_secret = \"{secret}\"\n")).unwrap();
        assert!(in_file.peer_secret(None).unwrap().is_some());
        assert!(!format!("{in_file:?}").contains(&secret), "the secret is not shown");
        let e = parse(&format!("{GOOD}peer_secret = \"short\"\n")).unwrap_err().to_string();
        assert!(e.contains("peer_secret: is 5 characters long"), "{e}");
        let e = with_peers.peer_secret(Some(SecretString::from("short".to_string()))).unwrap_err().to_string();
        assert!(e.contains("peer_secret: is 5 characters long"), "{e}");
    }

    #[tokio::test]
    async fn an_unresolvable_host_is_refused() {
        let c = parse(&GOOD.replace("127.0.0.1:8080", "no-such-host.invalid:8080")).unwrap();
        let e = c.check_hosts().await.unwrap_err().to_string();
        assert!(e.contains("no-such-host.invalid:8080 is unreachable"), "{e}");
    }
}
