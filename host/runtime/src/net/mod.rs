//! Network reach of plugins: what a check may contact, decided in one place.
//!
//! A plugin names a host; the host (this module) decides. A destination is
//! reachable when its name is the check's target or matches a grant, and
//! every address it resolves to is public or inside an explicitly granted
//! range. Loopback, private and link-local addresses are never reachable by
//! name alone: a hostname allowlist does not stop SSRF or DNS rebinding,
//! because the name can resolve anywhere. Each refusal is returned to the
//! plugin as `net-error::denied` *and* recorded with the run, so a plugin
//! cannot hide that it tried.
//!
//! The interfaces themselves live in the submodules, one per WIT interface.

pub(crate) mod dns;
pub(crate) mod http;
mod implied;
mod special;
pub(crate) mod tcp;
pub(crate) mod tls;

pub use implied::{implied_grants, schema_defaults};
use special::non_public;
pub use special::{is_public, reaches_non_public};

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hickory_resolver::TokioResolver;
use ipnet::IpNet;
use serde::Deserialize;

use crate::bindings::network::NetError;
use crate::config::NetworkConfig;

/// One entry of an allowlist: a host name, a `*.` domain suffix, or an IP
/// address or CIDR range (the only way to reach non-public addresses).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub enum Grant {
    Name(String),
    Suffix(String),
    Net(IpNet),
}

#[derive(Debug, thiserror::Error)]
#[error("{0:?} is not a host name, `*.domain`, IP address or CIDR range")]
pub struct BadGrant(pub String);

impl std::str::FromStr for Grant {
    type Err = BadGrant;

    fn from_str(s: &str) -> Result<Self, BadGrant> {
        let bad = || BadGrant(s.to_string());
        let t = s.trim();
        if let Ok(net) = t.parse::<IpNet>() {
            return Ok(Grant::Net(net));
        }
        if let Ok(ip) = t.trim_start_matches('[').trim_end_matches(']').parse::<IpAddr>() {
            return Ok(Grant::Net(IpNet::from(ip)));
        }
        let (suffix, name) = match t.strip_prefix("*.") {
            Some(rest) => (true, rest),
            None => (false, t),
        };
        let name = normalize(name);
        let valid = !name.is_empty()
            && name.len() <= 253
            && name.split('.').all(|label| {
                !label.is_empty()
                    && label.len() <= 63
                    && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            });
        if !valid {
            return Err(bad());
        }
        Ok(if suffix { Grant::Suffix(name) } else { Grant::Name(name) })
    }
}

impl TryFrom<String> for Grant {
    type Error = BadGrant;
    fn try_from(s: String) -> Result<Self, BadGrant> {
        s.parse()
    }
}

impl fmt::Display for Grant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Grant::Name(n) => f.write_str(n),
            Grant::Suffix(n) => write!(f, "*.{n}"),
            Grant::Net(net) => write!(f, "{net}"),
        }
    }
}

fn normalize(host: &str) -> String {
    host.trim_start_matches('[').trim_end_matches(']').trim_end_matches('.').to_ascii_lowercase()
}

/// The host part of a check's target: a URL, `host:port`, `[v6]:port` or a
/// bare host name.
pub fn target_host(target: &str) -> Option<String> {
    let target = target.trim();
    if target.contains("://") {
        let url = url::Url::parse(target).ok()?;
        return url.host_str().map(normalize);
    }
    if let Ok(addr) = target.parse::<SocketAddr>() {
        return Some(addr.ip().to_string());
    }
    if let Ok(ip) = normalize(target).parse::<IpAddr>() {
        return Some(ip.to_string());
    }
    let host = match target.rsplit_once(':') {
        Some((host, port)) if port.parse::<u16>().is_ok() => host,
        _ => target,
    };
    Some(normalize(host)).filter(|h| !h.is_empty())
}

/// What one invocation may reach: its target, its allowlist and the
/// node-wide grants.
#[derive(Clone, Debug, Default)]
pub struct Grants {
    target: Option<String>,
    grants: Vec<Grant>,
}

impl Grants {
    pub fn new(target: &str, allow: &[Grant]) -> Self {
        Self { target: target_host(target), grants: allow.to_vec() }
    }

    /// Grants nothing at all (used for `describe`).
    pub fn none() -> Self {
        Self::default()
    }

    fn name_granted(&self, host: &str, node: &[Grant]) -> bool {
        if self.target.as_deref() == Some(host) {
            return true;
        }
        self.grants.iter().chain(node).any(|g| match g {
            Grant::Name(n) => n == host,
            Grant::Suffix(s) => {
                host.len() > s.len() && host.ends_with(s.as_str()) && {
                    host.as_bytes()[host.len() - s.len() - 1] == b'.'
                }
            }
            Grant::Net(net) => host.parse::<IpAddr>().is_ok_and(|ip| net.contains(&ip)),
        })
    }

    fn address_granted(&self, ip: IpAddr, node: &[Grant]) -> bool {
        is_public(ip) || self.grants.iter().chain(node).any(|g| matches!(g, Grant::Net(net) if net.contains(&ip)))
    }
}

/// Why a check's target can never be reached, when that is known without a
/// lookup: the target is a non-public address (or `localhost`) that no grant
/// covers. Names that resolve to such addresses are refused at run time.
pub fn unreachable_target(target: &str, allow: &[Grant], node: &[Grant]) -> Option<String> {
    let host = target_host(target)?;
    let ip: IpAddr = match host.parse() {
        Ok(ip) => ip,
        Err(_) if host == "localhost" || host.ends_with(".localhost") => IpAddr::from([127, 0, 0, 1]),
        Err(_) => return None,
    };
    let grants = Grants::new(target, allow);
    if grants.address_granted(ip, node) {
        return None;
    }
    Some(format!(
        "{host} is a non-public address, which checks reach only through an explicit grant: add {} to `allow`",
        IpNet::from(ip).addr()
    ))
}

/// Network state shared by all invocations: resolver, TLS configurations,
/// node-wide grants.
pub(crate) struct NetShared {
    pub resolver: TokioResolver,
    pub tls: tls::TlsConfigs,
    pub node_grants: Vec<Grant>,
    pub forbidden: Vec<SocketAddr>,
    pub user_agent: String,
    pub max_body_bytes: usize,
}

impl NetShared {
    pub fn new(config: &NetworkConfig, max_body_bytes: usize) -> Result<Self, crate::Error> {
        Ok(Self {
            resolver: dns::system_resolver(),
            tls: tls::TlsConfigs::load(&config.extra_roots)?,
            node_grants: config.allow.clone(),
            forbidden: config.forbidden.clone(),
            user_agent: config.user_agent.clone(),
            max_body_bytes,
        })
    }
}

/// One invocation's view of the network.
pub(crate) struct NetSession {
    pub shared: Arc<NetShared>,
    pub grants: Grants,
    pub deadline: Instant,
    pub refusals: Vec<String>,
}

impl NetSession {
    /// The instant an operation asked to take `timeout_ms` (0: as long as
    /// the run may) must end by.
    pub fn op_deadline(&self, timeout_ms: u32) -> Instant {
        if timeout_ms == 0 {
            return self.deadline;
        }
        self.deadline.min(Instant::now() + Duration::from_millis(timeout_ms.into()))
    }

    pub fn refuse(&mut self, what: String) -> NetError {
        tracing::debug!(refusal = %what, "network access refused");
        self.refusals.push(what.clone());
        NetError::Denied(what)
    }

    /// Checks that a name may be contacted at all, before any lookup.
    pub fn authorize_name(&mut self, host: &str, port: u16) -> Result<String, NetError> {
        let host = normalize(host);
        if !self.grants.name_granted(&host, &self.shared.node_grants) {
            return Err(
                self.refuse(format!("{}: not the check's target and not in its allowlist", display_dest(&host, port)))
            );
        }
        Ok(host)
    }

    /// Checks that an address may be contacted.
    pub fn authorize_address(&mut self, host: &str, ip: IpAddr, port: u16) -> Result<(), NetError> {
        if forbidden(&self.shared.forbidden, ip, port) {
            return Err(self.refuse(format!(
                "{}: the controller's own listener, which no check may reach whatever it is granted",
                display_dest(&ip.to_string(), port)
            )));
        }
        if self.grants.address_granted(ip, &self.shared.node_grants) {
            return Ok(());
        }
        let via = if host.parse::<IpAddr>().is_ok() { String::new() } else { format!(" ({host})") };
        Err(self.refuse(format!(
            "{}{via}: {ip} is a non-public address ({}); grant it explicitly with an allowlist entry such as {}",
            display_dest(&ip.to_string(), port),
            non_public(ip).unwrap_or("non-public"),
            IpNet::from(ip)
        )))
    }

    /// Resolves a granted destination to the addresses that may be used,
    /// with the time the lookup took.
    pub async fn resolve(
        &mut self,
        host: &str,
        port: u16,
        deadline: Instant,
    ) -> Result<(Vec<SocketAddr>, f64), NetError> {
        let host = self.authorize_name(host, port)?;
        let started = Instant::now();
        let ips: Vec<IpAddr> = match host.parse::<IpAddr>() {
            Ok(ip) => vec![ip],
            Err(_) => {
                let lookup = tokio::time::timeout_at(deadline.into(), self.shared.resolver.lookup_ip(host.as_str()));
                match lookup.await {
                    Err(_) => {
                        return Err(NetError::Timeout(format!("resolving {host} took too long")));
                    }
                    Ok(Err(e)) => {
                        return Err(NetError::Dns(format!("{host}: {}", dns::describe_error(&e))));
                    }
                    Ok(Ok(found)) => found.iter().collect(),
                }
            }
        };
        let dns_ms = ms(started.elapsed());
        let mut allowed = Vec::with_capacity(ips.len());
        let mut first_refusal = None;
        for ip in ips {
            match self.authorize_address(&host, ip, port) {
                Ok(()) => allowed.push(SocketAddr::new(ip, port)),
                Err(e) => {
                    first_refusal.get_or_insert(e);
                }
            }
        }
        match (allowed.is_empty(), first_refusal) {
            (true, Some(refusal)) => Err(refusal),
            (true, None) => Err(NetError::Dns(format!("{host}: no addresses"))),
            _ => Ok((allowed, dns_ms)),
        }
    }
}

/// Whether `ip:port` is one of the `forbidden` listeners (a listener on an
/// unspecified address is reached through loopback or that address too).
fn forbidden(forbidden: &[SocketAddr], ip: IpAddr, port: u16) -> bool {
    let ip = ip.to_canonical();
    forbidden.iter().any(|listener| {
        let on = listener.ip().to_canonical();
        listener.port() == port && (on == ip || (on.is_unspecified() && (ip.is_loopback() || ip.is_unspecified())))
    })
}

fn display_dest(host: &str, port: u16) -> String {
    if host.contains(':') { format!("[{host}]:{port}") } else { format!("{host}:{port}") }
}

pub(crate) fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Connects to the first address that answers, within `deadline`; returns
/// the stream, the address it reached and how long connecting took.
pub(crate) async fn connect_any(
    addrs: &[SocketAddr],
    deadline: Instant,
) -> Result<(tokio::net::TcpStream, SocketAddr, f64), NetError> {
    let started = Instant::now();
    let mut last = None;
    for addr in addrs {
        match tokio::time::timeout_at(deadline.into(), tokio::net::TcpStream::connect(addr)).await {
            Err(_) => {
                return Err(NetError::Timeout(format!("connecting to {addr} took too long")));
            }
            Ok(Ok(stream)) => {
                let _ = stream.set_nodelay(true);
                return Ok((stream, *addr, ms(started.elapsed())));
            }
            Ok(Err(e)) => last = Some(format!("{addr}: {e}")),
        }
    }
    Err(NetError::Connect(last.unwrap_or_else(|| "no address to connect to".into())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grants_parse() {
        assert_eq!("Example.COM.".parse::<Grant>().unwrap(), Grant::Name("example.com".into()));
        assert_eq!("*.example.com".parse::<Grant>().unwrap(), Grant::Suffix("example.com".into()));
        assert_eq!("127.0.0.1".parse::<Grant>().unwrap(), Grant::Net("127.0.0.1/32".parse().unwrap()));
        assert_eq!("[::1]".parse::<Grant>().unwrap(), Grant::Net("::1/128".parse().unwrap()));
        assert_eq!("10.0.0.0/8".parse::<Grant>().unwrap(), Grant::Net("10.0.0.0/8".parse().unwrap()));
        assert!("http://x".parse::<Grant>().is_err());
        assert!("".parse::<Grant>().is_err());
        assert!("a..b".parse::<Grant>().is_err());
    }

    #[test]
    fn target_hosts() {
        assert_eq!(target_host("https://Example.com:8443/x?y").as_deref(), Some("example.com"));
        assert_eq!(target_host("db.internal:5432").as_deref(), Some("db.internal"));
        assert_eq!(target_host("[::1]:80").as_deref(), Some("::1"));
        assert_eq!(target_host("127.0.0.1:80").as_deref(), Some("127.0.0.1"));
        assert_eq!(target_host("example.com").as_deref(), Some("example.com"));
        assert_eq!(target_host("::1").as_deref(), Some("::1"));
    }

    #[test]
    fn the_controllers_own_listeners_are_forbidden() {
        let on = |addr: &str| vec![addr.parse::<SocketAddr>().unwrap()];
        let ip = |text: &str| text.parse::<IpAddr>().unwrap();
        assert!(forbidden(&on("127.0.0.1:7400"), ip("127.0.0.1"), 7400));
        assert!(forbidden(&on("127.0.0.1:7400"), ip("::ffff:127.0.0.1"), 7400), "the same address, mapped");
        assert!(!forbidden(&on("127.0.0.1:7400"), ip("127.0.0.1"), 7401), "another port");
        assert!(forbidden(&on("0.0.0.0:7400"), ip("127.0.0.2"), 7400), "any loopback, for a wildcard listener");
        assert!(forbidden(&on("[::]:7400"), ip("::1"), 7400));
        assert!(forbidden(&on("10.1.2.3:7400"), ip("10.1.2.3"), 7400));
        assert!(!forbidden(&on("10.1.2.3:7400"), ip("10.1.2.4"), 7400));
    }

    #[test]
    fn suffix_grants_match_subdomains_only() {
        let g = Grants::new("https://a.test", &["*.example.com".parse().unwrap()]);
        assert!(g.name_granted("a.test", &[]));
        assert!(g.name_granted("www.example.com", &[]));
        assert!(!g.name_granted("example.com", &[]));
        assert!(!g.name_granted("badexample.com", &[]));
        assert!(!g.name_granted("other.test", &[]));
    }

    #[test]
    fn literal_private_targets_are_known_unreachable_without_a_grant() {
        assert!(unreachable_target("http://127.0.0.1:8080/", &[], &[]).unwrap().contains("add 127.0.0.1 to `allow`"));
        assert!(unreachable_target("http://localhost/", &[], &[]).is_some());
        assert!(unreachable_target("10.1.2.3:5432", &["10.0.0.0/8".parse().unwrap()], &[]).is_none());
        assert!(unreachable_target("https://example.com", &[], &[]).is_none());
        assert!(unreachable_target("http://[::1]:80/", &[], &["::1".parse().unwrap()]).is_none());
    }

    #[test]
    fn non_public_addresses_need_a_range_grant() {
        let g = Grants::new("http://localhost", &[]);
        assert!(!g.address_granted("127.0.0.1".parse().unwrap(), &[]));
        assert!(!g.address_granted("169.254.169.254".parse().unwrap(), &[]));
        assert!(!g.address_granted("::ffff:10.1.2.3".parse().unwrap(), &[]));
        assert!(!g.address_granted("fd00::1".parse().unwrap(), &[]));
        assert!(g.address_granted("93.184.216.34".parse().unwrap(), &[]));
        let node = ["127.0.0.0/8".parse().unwrap()];
        assert!(g.address_granted("127.0.0.1".parse().unwrap(), &node));
    }
}
