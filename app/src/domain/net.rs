//! Address prefixes and the rule that decides which address a request came from.
//!
//! Behind a reverse proxy the TCP peer is the proxy, and the client's address travels in
//! `X-Forwarded-For`. That header is written by whoever sent the request, so only the
//! entries appended by proxies we trust can be believed: the client is the right-most
//! address that is not a trusted proxy.

use serde::{Deserialize, Serialize};
use std::net::IpAddr;
use std::str::FromStr;
use thiserror::Error;

/// An IPv4 or IPv6 prefix such as `198.51.100.0/24` or `2001:db8::/32`. A bare address is
/// a host prefix (/32 or /128). Host bits below the prefix must be zero, so that what is
/// stored is exactly what was meant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Cidr {
    addr: IpAddr,
    len: u8,
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum CidrError {
    #[error(
        "Enter an IPv4 or IPv6 address, optionally with a prefix length, e.g. 198.51.100.0/24."
    )]
    Malformed,
    #[error("The prefix length must be 0–32 for IPv4 and 0–128 for IPv6.")]
    PrefixLength,
    #[error("The address has bits set below the prefix length; did you mean {0}?")]
    HostBits(String),
    #[error(
        "An IPv4-mapped IPv6 prefix (::ffff:a.b.c.d) must be /96 or longer; write the IPv4 prefix instead."
    )]
    MappedTooWide,
}

impl Cidr {
    pub fn parse(raw: &str) -> Result<Self, CidrError> {
        let raw = raw.trim();
        let (addr_part, len_part) = match raw.split_once('/') {
            Some((a, l)) => (a, Some(l)),
            None => (raw, None),
        };
        let addr = IpAddr::from_str(addr_part).map_err(|_| CidrError::Malformed)?;
        let max = max_len(&addr);
        let len = match len_part {
            None => max,
            Some(l) if !l.is_empty() && l.chars().all(|c| c.is_ascii_digit()) && l.len() <= 3 => {
                l.parse::<u8>().map_err(|_| CidrError::PrefixLength)?
            }
            Some(_) => return Err(CidrError::Malformed),
        };
        if len > max {
            return Err(CidrError::PrefixLength);
        }
        // IPv4-mapped IPv6 (`::ffff:a.b.c.d/N`) is the IPv4 prefix it carries: decided as
        // IPv6, `::ffff:10.0.0.0/103` would pass a 10.0.0.0/24 rule while meaning 10.0.0.0/7.
        let (addr, len) = match addr {
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) if len >= 96 => (IpAddr::V4(v4), len - 96),
                Some(_) => return Err(CidrError::MappedTooWide),
                None => (addr, len),
            },
            v4 => (v4, len),
        };
        let network = mask(addr, len);
        if network != addr {
            return Err(CidrError::HostBits(format!("{network}/{len}")));
        }
        Ok(Self { addr, len })
    }

    /// The single-address prefix of `ip` (/32 or /128).
    pub fn host(ip: IpAddr) -> Self {
        let addr = canonical(ip);
        Self {
            addr,
            len: max_len(&addr),
        }
    }

    pub fn addr(&self) -> IpAddr {
        self.addr
    }

    pub fn prefix_len(&self) -> u8 {
        self.len
    }

    pub fn is_ipv4(&self) -> bool {
        self.addr.is_ipv4()
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.addr.is_ipv4() == ip.is_ipv4() && mask(ip, self.len) == self.addr
    }

    /// True when every address of `other` is inside `self`. Both are canonical (parsed or
    /// built by [`Cidr::host`]), so families compare as they are.
    pub fn contains_prefix(&self, other: &Cidr) -> bool {
        self.addr.is_ipv4() == other.addr.is_ipv4()
            && other.len >= self.len
            && mask(other.addr, self.len) == self.addr
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

fn max_len(addr: &IpAddr) -> u8 {
    if addr.is_ipv4() { 32 } else { 128 }
}

/// IPv4-mapped IPv6 addresses (`::ffff:a.b.c.d`, what a dual-stack socket reports) are
/// treated as the IPv4 address they carry.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    }
}

fn mask(addr: IpAddr, len: u8) -> IpAddr {
    match addr {
        IpAddr::V4(v4) => {
            let bits = u32::from(v4);
            let m = if len == 0 {
                0
            } else {
                u32::MAX << (32 - u32::from(len))
            };
            IpAddr::V4((bits & m).into())
        }
        IpAddr::V6(v6) => {
            let bits = u128::from(v6);
            let m = if len == 0 {
                0
            } else {
                u128::MAX << (128 - u32::from(len))
            };
            IpAddr::V6((bits & m).into())
        }
    }
}

/// Whether `url` is plain `http://` to somewhere other than this host. An agent's secret
/// (and a user's session) would then cross the network in clear text.
pub fn plain_http_off_loopback(url: &str) -> bool {
    let Some(rest) = url.strip_prefix("http://") else {
        return false;
    };
    let authority = rest.split('/').next().unwrap_or("");
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => authority.rsplit_once(':').map_or(authority, |(h, _)| h),
    };
    let loopback = host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<IpAddr>()
            .is_ok_and(|ip| canonical(ip).is_loopback());
    !loopback
}

/// The client's address: walk `X-Forwarded-For` from the right while the hop that added an
/// entry is a trusted proxy. With no trusted proxies the header is ignored entirely.
pub fn client_ip(peer: IpAddr, forwarded_for: &[&str], trusted: &[Cidr]) -> IpAddr {
    let mut current = canonical(peer);
    if !trusted.iter().any(|t| t.contains(current)) {
        return current;
    }
    let hops = forwarded_for
        .iter()
        .flat_map(|h| h.split(','))
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>();
    for hop in hops.into_iter().rev() {
        match IpAddr::from_str(hop) {
            Ok(ip) => {
                current = canonical(ip);
                if !trusted.iter().any(|t| t.contains(current)) {
                    return current;
                }
            }
            // A garbled entry cannot be attributed; the last trusted hop is the best we know.
            Err(_) => return current,
        }
    }
    current
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn parses_prefixes_and_hosts() {
        assert_eq!(
            Cidr::parse("198.51.100.0/24").unwrap().to_string(),
            "198.51.100.0/24"
        );
        assert_eq!(
            Cidr::parse("198.51.100.7").unwrap().to_string(),
            "198.51.100.7/32"
        );
        assert_eq!(
            Cidr::parse("2001:db8::/32").unwrap().to_string(),
            "2001:db8::/32"
        );
        assert_eq!(Cidr::parse("2001:db8::1").unwrap().prefix_len(), 128);
        assert_eq!(Cidr::parse("198.51.100.0/33"), Err(CidrError::PrefixLength));
        assert_eq!(Cidr::parse("2001:db8::/129"), Err(CidrError::PrefixLength));
        assert_eq!(Cidr::parse("198.51.100.300/24"), Err(CidrError::Malformed));
        assert_eq!(Cidr::parse("198.51.100.0/"), Err(CidrError::Malformed));
        assert_eq!(Cidr::parse("198.51.100.0/+8"), Err(CidrError::Malformed));
        assert_eq!(Cidr::parse("any"), Err(CidrError::Malformed));
        assert_eq!(
            Cidr::parse("198.51.100.7/24"),
            Err(CidrError::HostBits("198.51.100.0/24".into()))
        );
    }

    #[test]
    fn ipv4_mapped_prefixes_are_their_ipv4_prefix() {
        assert_eq!(
            Cidr::parse("::ffff:10.0.0.0/103").unwrap().to_string(),
            "10.0.0.0/7"
        );
        assert_eq!(
            Cidr::parse("::ffff:198.51.100.7").unwrap().to_string(),
            "198.51.100.7/32"
        );
        assert_eq!(
            Cidr::parse("::ffff:0:0/96").unwrap().to_string(),
            "0.0.0.0/0"
        );
        assert_eq!(
            Cidr::parse("::ffff:0.0.0.0/95"),
            Err(CidrError::MappedTooWide)
        );
        assert_eq!(
            Cidr::parse("::ffff:198.51.100.7/120"),
            Err(CidrError::HostBits("198.51.100.0/24".into()))
        );
        let policy = Cidr::parse("10.0.0.0/24").unwrap();
        let sneaky = Cidr::parse("::ffff:10.0.0.0/103").unwrap();
        assert!(!policy.contains_prefix(&sneaky));
        assert!(policy.contains_prefix(&Cidr::parse("::ffff:10.0.0.0/120").unwrap()));
        // Plain IPv6 prefixes that merely contain the mapped range stay IPv6.
        assert_eq!(Cidr::parse("::/64").unwrap().to_string(), "::/64");
    }

    #[test]
    fn containment_respects_family_and_mapped_addresses() {
        let net = Cidr::parse("198.51.100.0/24").unwrap();
        assert!(net.contains(ip("198.51.100.10")));
        assert!(net.contains(ip("::ffff:198.51.100.10")));
        assert!(!net.contains(ip("203.0.113.7")));
        assert!(!net.contains(ip("2001:db8::1")));
        let all4 = Cidr::parse("0.0.0.0/0").unwrap();
        assert!(all4.contains(ip("203.0.113.7")));
        assert!(!all4.contains(ip("2001:db8::1")));
        assert!(net.contains_prefix(&Cidr::parse("198.51.100.128/25").unwrap()));
        assert!(!net.contains_prefix(&Cidr::parse("198.51.0.0/16").unwrap()));
    }

    #[test]
    fn client_ip_trusts_only_configured_proxies() {
        let proxies = [
            Cidr::parse("127.0.0.1").unwrap(),
            Cidr::parse("10.0.0.0/8").unwrap(),
        ];
        // No trusted proxy: the header is the client's own claim and is ignored.
        assert_eq!(
            client_ip(ip("203.0.113.7"), &["198.51.100.1"], &proxies),
            ip("203.0.113.7")
        );
        assert_eq!(
            client_ip(ip("127.0.0.1"), &["198.51.100.1"], &[]),
            ip("127.0.0.1")
        );
        // Through two trusted proxies; a spoofed left-most entry is not believed.
        assert_eq!(
            client_ip(
                ip("127.0.0.1"),
                &["6.6.6.6, 198.51.100.1", "10.1.2.3"],
                &proxies
            ),
            ip("198.51.100.1")
        );
        // Every hop trusted: the left-most is the best we know.
        assert_eq!(
            client_ip(ip("127.0.0.1"), &["10.0.0.5"], &proxies),
            ip("10.0.0.5")
        );
        assert_eq!(
            client_ip(ip("127.0.0.1"), &["garbage"], &proxies),
            ip("127.0.0.1")
        );
        assert_eq!(
            client_ip(ip("::ffff:127.0.0.1"), &["2001:db8::9"], &proxies),
            ip("2001:db8::9")
        );
    }

    #[test]
    fn plain_http_is_flagged_unless_it_stays_on_this_host() {
        assert!(plain_http_off_loopback("http://jit.example.org"));
        assert!(plain_http_off_loopback("http://198.51.100.1:3000/"));
        assert!(plain_http_off_loopback("http://[2001:db8::1]:3000"));
        assert!(!plain_http_off_loopback("http://127.0.0.1:3000"));
        assert!(!plain_http_off_loopback("http://[::1]:3000"));
        assert!(!plain_http_off_loopback("http://localhost:3000"));
        assert!(!plain_http_off_loopback("https://jit.example.org"));
    }

    proptest! {
        #[test]
        fn every_address_is_inside_its_own_masked_prefix(a in any::<u32>(), len in 0u8..=32) {
            let addr = IpAddr::V4(a.into());
            let net = mask(addr, len);
            let cidr = Cidr::parse(&format!("{net}/{len}")).unwrap();
            prop_assert!(cidr.contains(addr));
            let everything = Cidr::parse("0.0.0.0/0").unwrap();
            prop_assert!(everything.contains(addr));
        }

        #[test]
        fn v6_containment_matches_bit_arithmetic(a in any::<u128>(), b in any::<u128>(), len in 0u8..=128) {
            let net = mask(IpAddr::V6(a.into()), len);
            let cidr = Cidr::parse(&format!("{net}/{len}")).unwrap();
            let shift = 128 - u32::from(len);
            let same = len == 0 || (a >> shift) == (b >> shift);
            prop_assert_eq!(cidr.contains(IpAddr::V6(b.into())), same);
        }
    }
}
