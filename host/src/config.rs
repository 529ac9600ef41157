//! The controller's settings, layered: built-in defaults, then a TOML file
//! (`--config`), then environment variables and flags (clap reads both).
//! The database URL can hold a password, so it is wrapped in [`Secret`].

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use tocsin_runtime::RuntimeConfig;

use crate::cluster::ClusterConfig;

/// A value that must not reach logs.
#[derive(Clone, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: String) -> Self {
        Secret(value)
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The URL with its password replaced, for logs and messages.
    pub fn redacted_url(&self) -> String {
        match url_password_span(&self.0) {
            Some((start, end)) => format!("{}***{}", &self.0[..start], &self.0[end..]),
            None => self.0.clone(),
        }
    }
}

fn url_password_span(url: &str) -> Option<(usize, usize)> {
    let scheme_end = url.find("://")? + 3;
    let at = url[scheme_end..].find('@')? + scheme_end;
    let colon = url[scheme_end..at].find(':')? + scheme_end;
    Some((colon + 1, at))
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// Everything `tocsin serve` needs.
#[derive(Clone, Debug)]
pub struct ServeConfig {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    /// `None`: SQLite in `data_dir`.
    pub database_url: Option<Secret>,
    /// The key(s) that seal secrets at rest (`TOCSIN_SECRETS_KEY`); when
    /// none, the key file.
    pub secrets_key: Option<Secret>,
    /// The secrets key file; default `<data_dir>/secrets-key`.
    pub secrets_key_file: Option<PathBuf>,
    /// The local node's location and name.
    pub location: String,
    pub node_name: String,
    /// Checks may not run more often than this.
    pub min_interval: Duration,
    /// Non-public ranges an editor may put in a check's `allow`; any other
    /// grant of a private, loopback, link-local or other special address
    /// takes an admin.
    pub editor_grants: Vec<ipnet::IpNet>,
    /// How long raw runs are kept.
    pub keep_runs: Duration,
    /// How long hourly aggregates are kept.
    pub keep_hours: Duration,
    /// The address links and callbacks should use; default: `http://<listen>`
    /// (`https://` when serving TLS).
    pub public_url: Option<String>,
    pub runtime: RuntimeConfig,
    pub cluster: ClusterConfig,
    /// Incidents, escalation and notifications.
    pub alerting: crate::alerting::Rules,
    /// Run a probe node in this process.
    pub local_node: bool,
    /// Redundant sites: this site's name, whom it follows, who may read its feed.
    pub sync: crate::sync::SyncConfig,
    /// HTTPS on the listener, and whom this controller trusts when it calls
    /// other sites.
    pub tls: tocsin_tls::Settings,
}

/// The `--config` file: every field optional, flags win.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServeFile {
    pub listen: Option<SocketAddr>,
    pub data_dir: Option<PathBuf>,
    pub database_url: Option<Secret>,
    pub secrets_key_file: Option<PathBuf>,
    pub location: Option<String>,
    pub node_name: Option<String>,
    #[serde(default, with = "opt_duration")]
    pub min_interval: Option<Duration>,
    pub editor_grants: Option<Vec<ipnet::IpNet>>,
    #[serde(default, with = "opt_duration")]
    pub keep_runs: Option<Duration>,
    #[serde(default, with = "opt_duration")]
    pub keep_hours: Option<Duration>,
    pub public_url: Option<String>,
    pub runtime: Option<RuntimeConfig>,
    pub cluster: Option<ClusterConfig>,
    pub alerting: Option<crate::alerting::Rules>,
    pub local_node: Option<bool>,
    pub sync: Option<crate::sync::SyncConfig>,
    pub tls: Option<tocsin_tls::Settings>,
}

impl ServeFile {
    pub fn read(path: &Path) -> anyhow::Result<ServeFile> {
        let text = std::fs::read_to_string(path).map_err(|e| anyhow::anyhow!("reading {}: {e}", path.display()))?;
        toml::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
    }
}

pub const DEFAULT_LISTEN: &str = "127.0.0.1:7400";

/// Writes `text` (and a final newline if it has none) to a file only its
/// owner may read: whole or not at all (a temporary file, synced, renamed
/// over it), so a crash never leaves half a key.
pub fn save_secret(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    let mut file = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&tmp)?;
    // A file left over from an earlier try keeps its mode through open: set it.
    file.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
    file.write_all(text.as_bytes())?;
    if !text.ends_with('\n') {
        file.write_all(b"\n")?;
    }
    file.sync_all()?;
    std::fs::rename(&tmp, path)
}

/// Whether `url` is plain `http://` to a host that is not loopback (what
/// crosses it can be read on the way).
pub fn clear_and_remote(url: &str) -> bool {
    let Ok(url) = url::Url::parse(url) else { return false };
    let loopback = match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(name)) => name == "localhost" || name.ends_with(".localhost"),
        None => true,
    };
    url.scheme() == "http" && !loopback
}

impl Default for ServeConfig {
    fn default() -> Self {
        ServeConfig {
            listen: DEFAULT_LISTEN.parse().expect("a valid address"),
            data_dir: PathBuf::from("tocsin-data"),
            database_url: None,
            secrets_key: None,
            secrets_key_file: None,
            location: "local".into(),
            node_name: hostname(),
            min_interval: Duration::from_secs(5),
            editor_grants: Vec::new(),
            keep_runs: Duration::from_secs(7 * 86_400),
            keep_hours: Duration::from_secs(400 * 86_400),
            public_url: None,
            runtime: RuntimeConfig::default(),
            cluster: ClusterConfig::default(),
            alerting: crate::alerting::Rules::default(),
            local_node: true,
            sync: crate::sync::SyncConfig::default(),
            tls: tocsin_tls::Settings::default(),
        }
    }
}

impl ServeConfig {
    /// Defaults, overlaid with the file's settings.
    pub fn from_file(file: ServeFile) -> ServeConfig {
        let d = ServeConfig::default();
        ServeConfig {
            listen: file.listen.unwrap_or(d.listen),
            data_dir: file.data_dir.unwrap_or(d.data_dir),
            database_url: file.database_url.or(d.database_url),
            secrets_key: d.secrets_key,
            secrets_key_file: file.secrets_key_file.or(d.secrets_key_file),
            location: file.location.unwrap_or(d.location),
            node_name: file.node_name.unwrap_or(d.node_name),
            min_interval: file.min_interval.unwrap_or(d.min_interval),
            editor_grants: file.editor_grants.unwrap_or(d.editor_grants),
            keep_runs: file.keep_runs.unwrap_or(d.keep_runs),
            keep_hours: file.keep_hours.unwrap_or(d.keep_hours),
            public_url: file.public_url.or(d.public_url),
            runtime: file.runtime.unwrap_or(d.runtime),
            cluster: file.cluster.unwrap_or(d.cluster),
            alerting: file.alerting.unwrap_or(d.alerting),
            local_node: file.local_node.unwrap_or(d.local_node),
            sync: file.sync.unwrap_or(d.sync),
            tls: file.tls.unwrap_or(d.tls),
        }
    }
}

pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "local".into())
}

mod opt_duration {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer};

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        Option::<String>::deserialize(d)?
            .map(|s| crate::model::wire::parse_duration(&s).map_err(serde::de::Error::custom))
            .transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clear_text_to_another_machine_is_recognised() {
        for url in ["http://tocsin-1:7400", "http://10.0.0.5:7400/", "http://[2001:db8::1]:7400"] {
            assert!(clear_and_remote(url), "{url}");
        }
        for url in ["https://tocsin-1:7400", "http://127.0.0.1:7400", "http://[::1]:7400", "http://localhost:7400"] {
            assert!(!clear_and_remote(url), "{url}");
        }
    }

    #[test]
    fn passwords_stay_out_of_logs() {
        let s = Secret::new("postgres://tocsin:hunter2@db:5432/tocsin".into());
        assert_eq!(s.redacted_url(), "postgres://tocsin:***@db:5432/tocsin");
        assert_eq!(format!("{s:?}"), "Secret(***)");
        assert_eq!(Secret::new("postgres://db/x".into()).redacted_url(), "postgres://db/x");
    }

    #[test]
    fn files_refuse_unknown_keys() {
        let err = toml::from_str::<ServeFile>("listen = \"127.0.0.1:1\"\nlisen = 1").unwrap_err();
        assert!(err.to_string().contains("unknown field `lisen`"), "{err}");
    }
}
