//! The `dns` interface, and the resolver the other interfaces use to find
//! the addresses of the hosts they contact.

use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;
use std::time::Instant;

use hickory_resolver::config::{NameServerConfig, ResolveHosts, ResolverConfig};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::net::{DnsError, NetError as ResolveError};
use hickory_resolver::proto::op::ResponseCode;
use hickory_resolver::proto::rr::RecordType;
use hickory_resolver::{Resolver, TokioResolver};

use crate::bindings::dns::{Answer, Query};
use crate::bindings::network::NetError;
use crate::net::{NetSession, ms};

/// The resolver for host names in `http`, `tcp` and `tls`: the system's
/// configuration, hosts file included, with its cache.
pub(crate) fn system_resolver() -> TokioResolver {
    match TokioResolver::builder_tokio().and_then(|b| b.build()) {
        Ok(resolver) => resolver,
        Err(e) => {
            tracing::warn!(error = %e, "no usable system DNS configuration; only the hosts file will resolve");
            Resolver::builder_with_config(
                ResolverConfig::from_parts(None, vec![], vec![]),
                TokioRuntimeProvider::default(),
            )
            .build()
            .expect("a resolver without name servers builds")
        }
    }
}

pub(crate) fn describe_error(e: &ResolveError) -> String {
    match e {
        ResolveError::Dns(DnsError::NoRecordsFound(n)) if n.response_code == ResponseCode::NXDomain => {
            "no such host".into()
        }
        ResolveError::Dns(DnsError::NoRecordsFound(_)) => "no addresses".into(),
        ResolveError::Timeout => "the name server did not answer".into(),
        other => other.to_string(),
    }
}

/// The `dns.resolve` host function: a fresh, uncached query, so a check
/// sees what clients see now.
pub(crate) async fn resolve(net: &mut NetSession, query: Query) -> Result<Answer, NetError> {
    let record_type = RecordType::from_str(&query.record_type.to_ascii_uppercase())
        .ok()
        .filter(|t| !matches!(t, RecordType::Unknown(_)))
        .ok_or_else(|| NetError::Invalid(format!("{:?} is not a DNS record type", query.record_type)))?;
    let name = net.authorize_name(&query.name, 53)?;
    let deadline = net.op_deadline(query.timeout_ms);

    let (config, use_hosts) = match &query.server {
        Some(server) => {
            let addr = parse_server(server)?;
            net.authorize_address(&addr.ip().to_string(), addr.ip(), addr.port())?;
            let mut ns = NameServerConfig::udp_and_tcp(addr.ip());
            for c in &mut ns.connections {
                c.port = addr.port();
            }
            (ResolverConfig::from_parts(None, vec![], vec![ns]), ResolveHosts::Never)
        }
        None => match hickory_resolver::system_conf::read_system_conf() {
            Ok((config, _)) => (config, ResolveHosts::Never),
            Err(e) => return Err(NetError::Dns(format!("no system resolver: {e}"))),
        },
    };
    let mut builder = Resolver::builder_with_config(config, TokioRuntimeProvider::default());
    let opts = builder.options_mut();
    opts.cache_size = 0;
    opts.use_hosts_file = use_hosts;
    opts.attempts = 1;
    opts.timeout = deadline.saturating_duration_since(Instant::now());
    let resolver = builder.build().map_err(|e| NetError::Dns(e.to_string()))?;

    let started = Instant::now();
    let fqdn = if name.ends_with('.') { name.clone() } else { format!("{name}.") };
    let result = tokio::time::timeout_at(deadline.into(), resolver.lookup(fqdn.as_str(), record_type)).await;
    let elapsed_ms = ms(started.elapsed());
    let answer = |code: &str, records: Vec<String>, min_ttl: u32| Answer {
        response_code: code.to_string(),
        records,
        min_ttl,
        elapsed_ms,
    };
    match result {
        Err(_) => Err(NetError::Timeout(format!("no DNS answer for {name} in time"))),
        Ok(Ok(lookup)) => {
            let matching: Vec<_> = lookup.answers().iter().filter(|r| r.record_type() == record_type).collect();
            let min_ttl = matching.iter().map(|r| r.ttl).min().unwrap_or(0);
            Ok(answer("NOERROR", matching.iter().map(|r| r.data.to_string()).collect(), min_ttl))
        }
        Ok(Err(ResolveError::Dns(DnsError::NoRecordsFound(n)))) => {
            Ok(answer(rcode(n.response_code).as_str(), vec![], 0))
        }
        Ok(Err(ResolveError::Dns(DnsError::ResponseCode(code)))) => Ok(answer(rcode(code).as_str(), vec![], 0)),
        Ok(Err(ResolveError::Timeout)) => Err(NetError::Timeout(format!("no DNS answer for {name} in time"))),
        Ok(Err(e)) => Err(NetError::Dns(format!("{name}: {e}"))),
    }
}

fn parse_server(server: &str) -> Result<SocketAddr, NetError> {
    if let Ok(addr) = server.parse::<SocketAddr>() {
        return Ok(addr);
    }
    server
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<IpAddr>()
        .map(|ip| SocketAddr::new(ip, 53))
        .map_err(|_| NetError::Invalid(format!("DNS server {server:?} is not `ip` or `ip:port`")))
}

fn rcode(code: ResponseCode) -> String {
    match code {
        ResponseCode::NoError => "NOERROR".into(),
        ResponseCode::FormErr => "FORMERR".into(),
        ResponseCode::ServFail => "SERVFAIL".into(),
        ResponseCode::NXDomain => "NXDOMAIN".into(),
        ResponseCode::NotImp => "NOTIMP".into(),
        ResponseCode::Refused => "REFUSED".into(),
        other => u16::from(other).to_string(),
    }
}
