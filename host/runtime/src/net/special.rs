//! Which addresses are public: the IANA special-purpose address registries
//! (IPv4 and IPv6), read conservatively. Every range the registries do not
//! mark globally reachable is non-public, and so is all of IPv6 outside
//! `2000::/3` (the only space allocated for global unicast). Addresses that
//! embed an IPv4 address (IPv4-mapped, NAT64 `64:ff9b::/96`, 6to4
//! `2002::/16`) are as public as the address they embed, so no translation
//! reaches loopback or a private network by the back door.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::LazyLock;

use ipnet::{IpNet, Ipv4Net, Ipv6Net};

/// IPv4 ranges that are not globally reachable.
const V4: &[(&str, &str)] = &[
    ("0.0.0.0/8", "this network"),
    ("10.0.0.0/8", "private"),
    ("100.64.0.0/10", "shared address space (carrier-grade NAT)"),
    ("127.0.0.0/8", "loopback"),
    ("169.254.0.0/16", "link-local (cloud metadata services)"),
    ("172.16.0.0/12", "private"),
    ("192.0.0.0/24", "IETF protocol assignments"),
    ("192.0.2.0/24", "documentation"),
    ("192.88.99.0/24", "6to4 relay anycast (deprecated)"),
    ("192.168.0.0/16", "private"),
    ("198.18.0.0/15", "benchmarking"),
    ("198.51.100.0/24", "documentation"),
    ("203.0.113.0/24", "documentation"),
    ("224.0.0.0/4", "multicast"),
    ("240.0.0.0/4", "reserved"),
];

/// IPv6 ranges inside `2000::/3` that are not globally reachable.
const V6_IN_GLOBAL: &[(&str, &str)] = &[
    ("2001::/23", "IETF protocol assignments (Teredo among them)"),
    ("2001:db8::/32", "documentation"),
    ("3fff::/20", "documentation"),
];

/// The tables, parsed once: every address a check contacts is judged.
static V4_RANGES: LazyLock<Vec<(Ipv4Net, &'static str)>> =
    LazyLock::new(|| V4.iter().map(|(net, why)| (net.parse().expect("a valid range"), *why)).collect());
static V6_RANGES: LazyLock<Vec<(Ipv6Net, &'static str)>> =
    LazyLock::new(|| V6_IN_GLOBAL.iter().map(|(net, why)| (net.parse().expect("a valid range"), *why)).collect());

fn v4_ranges() -> impl Iterator<Item = (Ipv4Net, &'static str)> {
    V4_RANGES.iter().copied()
}

fn v6_ranges() -> impl Iterator<Item = (Ipv6Net, &'static str)> {
    V6_RANGES.iter().copied()
}

const GLOBAL_V6: Ipv6Net = match Ipv6Net::new(Ipv6Addr::new(0x2000, 0, 0, 0, 0, 0, 0, 0), 3) {
    Ok(net) => net,
    Err(_) => panic!("a valid prefix"),
};

const NAT64: Ipv6Net = match Ipv6Net::new(Ipv6Addr::new(0x64, 0xff9b, 0, 0, 0, 0, 0, 0), 96) {
    Ok(net) => net,
    Err(_) => panic!("a valid prefix"),
};
const SIX_TO_FOUR: Ipv6Net = match Ipv6Net::new(Ipv6Addr::new(0x2002, 0, 0, 0, 0, 0, 0, 0), 16) {
    Ok(net) => net,
    Err(_) => panic!("a valid prefix"),
};

/// The IPv4 address an IPv6 address stands for, where it embeds one that
/// a translator would reach.
fn embedded_v4(v6: Ipv6Addr) -> Option<Ipv4Addr> {
    if let Some(v4) = v6.to_ipv4_mapped() {
        return Some(v4);
    }
    let o = v6.octets();
    if NAT64.contains(&v6) {
        return Some(Ipv4Addr::new(o[12], o[13], o[14], o[15]));
    }
    if SIX_TO_FOUR.contains(&v6) {
        return Some(Ipv4Addr::new(o[2], o[3], o[4], o[5]));
    }
    None
}

/// Why `ip` is not public, or `None` when it is.
pub fn non_public(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => {
            if v4.is_broadcast() {
                return Some("broadcast");
            }
            v4_ranges().find(|(net, _)| net.contains(&v4)).map(|(_, why)| why)
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = embedded_v4(v6) {
                return non_public(IpAddr::V4(v4));
            }
            if !GLOBAL_V6.contains(&v6) {
                return Some(if v6.is_loopback() {
                    "loopback"
                } else if v6.segments()[0] & 0xffc0 == 0xfe80 {
                    "link-local"
                } else if v6.segments()[0] & 0xfe00 == 0xfc00 {
                    "unique local"
                } else {
                    "outside IPv6 global unicast (2000::/3)"
                });
            }
            v6_ranges().find(|(net, _)| net.contains(&v6)).map(|(_, why)| why)
        }
    }
}

/// Global unicast: none of the special-purpose ranges.
pub fn is_public(ip: IpAddr) -> bool {
    non_public(ip).is_none()
}

/// Whether two ranges share an address (one holds the other's start).
fn overlap(a: impl Into<IpNet>, b: impl Into<IpNet>) -> bool {
    let (a, b) = (a.into(), b.into());
    a.contains(&b.network()) || b.contains(&a.network())
}

/// Why a granted range reaches some non-public address, or `None` when
/// every address in it is public.
pub fn reaches_non_public(net: &IpNet) -> Option<&'static str> {
    match net {
        IpNet::V4(net) => v4_ranges().find(|(range, _)| overlap(*net, *range)).map(|(_, why)| why),
        IpNet::V6(net) => {
            let within = |outer: &Ipv6Net| outer.contains(net);
            // A range inside one that embeds IPv4 reaches what it embeds.
            if within(&NAT64) && net.prefix_len() >= 96 {
                let o = net.network().octets();
                let v4 = Ipv4Net::new(Ipv4Addr::new(o[12], o[13], o[14], o[15]), net.prefix_len() - 96).ok()?;
                return reaches_non_public(&IpNet::V4(v4.trunc()));
            }
            if !within(&GLOBAL_V6) {
                return Some("outside IPv6 global unicast (2000::/3), or embeds non-public IPv4");
            }
            if overlap(*net, SIX_TO_FOUR) {
                return Some("6to4 (2002::/16), which embeds any IPv4 address");
            }
            v6_ranges().find(|(range, _)| overlap(*net, *range)).map(|(_, why)| why)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn public(s: &str) -> bool {
        is_public(s.parse().unwrap())
    }

    #[test]
    fn addresses_are_classified_as_the_registries_say() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.31.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "192.0.0.8",
            "192.0.2.1",
            "198.18.0.1",
            "224.0.0.1",
            "255.255.255.255",
            "240.0.0.1",
            "::1",
            "::",
            "fe80::1",
            "fc00::1",
            "fd12::1",
            "fec0::1",
            "ff02::1",
            "2001:db8::1",
            "2001::1",
            "100::1",
            "3fff::1",
            "5f00::1",
            "::ffff:127.0.0.1",
            "::127.0.0.1",
            "::10.0.0.1",
            "64:ff9b::7f00:1",
            "64:ff9b::a9fe:a9fe",
            "64:ff9b:1::1",
            "2002:7f00:1::1",
            "2002:c0a8:101::1",
        ] {
            assert!(!public(ip), "{ip} must not be public");
        }
        for ip in
            ["93.184.215.14", "1.1.1.1", "2606:4700::1111", "64:ff9b::5db8:d70e", "2002:5db8:d70e::1", "::ffff:1.1.1.1"]
        {
            assert!(public(ip), "{ip} is public");
        }
    }

    #[test]
    fn a_range_reaches_non_public_space_if_any_address_in_it_does() {
        for net in [
            "0.0.0.0/0",
            "127.0.0.1/32",
            "10.0.0.0/8",
            "8.0.0.0/4",
            "169.254.169.254/32",
            "::/0",
            "::1/128",
            "fec0::/10",
            "64:ff9b::/96",
            "64:ff9b::7f00:1/128",
            "2002::/16",
            "2000::/3",
            "2001:db8::/48",
        ] {
            assert!(reaches_non_public(&net.parse().unwrap()).is_some(), "{net} reaches non-public addresses");
        }
        for net in ["93.184.215.0/24", "1.1.1.1/32", "2606:4700::/32", "64:ff9b::5db8:d70e/128"] {
            assert!(reaches_non_public(&net.parse().unwrap()).is_none(), "{net} is all public");
        }
    }
}
