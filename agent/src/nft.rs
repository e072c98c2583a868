//! The nftables ruleset for a desired state, as one `nft -f` transaction that replaces the
//! agent's own table (`inet portcullis`) atomically and touches nothing else.
//!
//! For every port under JIT control: accept when (source, protocol, port) is in a grant
//! set, otherwise drop. Each grant is a set element whose timeout is the time left as the
//! server computed it, so the kernel closes the port on time even if the agent or the
//! server is gone. Established connections are left alone.

use serde::Deserialize;
use std::net::IpAddr;

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct Rule {
    pub port: u16,
    pub protocol: String,
}

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct Grant {
    pub source: String,
    pub port: u16,
    pub protocol: String,
    pub expires_in_ms: i64,
}

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct DesiredState {
    pub generation: i64,
    pub server_time_ms: i64,
    pub rules: Vec<Rule>,
    pub grants: Vec<Grant>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Prefix {
    addr: IpAddr,
    len: u8,
}

impl Prefix {
    fn parse(s: &str) -> Option<Self> {
        let (a, l) = s.split_once('/').unwrap_or((s, ""));
        let addr: IpAddr = a.parse().ok()?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let len = if l.is_empty() { max } else { l.parse().ok()? };
        (len <= max).then_some(Prefix { addr, len })
    }

    fn is_host(&self) -> bool {
        self.len == if self.addr.is_ipv4() { 32 } else { 128 }
    }

    fn bits(&self) -> u128 {
        match self.addr {
            IpAddr::V4(a) => u128::from(u32::from(a)) << 96,
            IpAddr::V6(a) => u128::from(a),
        }
    }

    fn width(&self) -> u32 {
        // IPv4 addresses sit in the top 32 bits of `bits`, so the prefix length works as is.
        u32::from(self.len)
    }

    fn contains(&self, other: &Prefix) -> bool {
        if self.addr.is_ipv4() != other.addr.is_ipv4() || other.len < self.len {
            return false;
        }
        let w = self.width();
        w == 0 || (self.bits() >> (128 - w)) == (other.bits() >> (128 - w))
    }

    fn render(&self) -> String {
        if self.is_host() {
            self.addr.to_string()
        } else {
            format!("{}/{}", self.addr, self.len)
        }
    }
}

fn protocols(p: &str) -> &'static [&'static str] {
    match p {
        "tcp" => &["tcp"],
        "udp" => &["udp"],
        _ => &["tcp", "udp"],
    }
}

struct Element {
    prefix: Prefix,
    proto: &'static str,
    port: u16,
    ms: i64,
}

/// Builds the transaction. Grants that have already ended, or whose source does not
/// parse, are left out (closed). Nested network grants on the same port cannot coexist in
/// one interval set; the enclosing one is kept, so the narrower one may close early —
/// never the other way round.
pub fn ruleset(state: &DesiredState) -> String {
    let mut out = String::from("table inet portcullis\ndelete table inet portcullis\n");
    if state.rules.is_empty() {
        return out;
    }
    let mut elements: Vec<Element> = Vec::new();
    for g in state.grants.iter().filter(|g| g.expires_in_ms > 0) {
        let Some(prefix) = Prefix::parse(&g.source) else {
            continue;
        };
        for proto in protocols(&g.protocol) {
            match elements
                .iter_mut()
                .find(|e| e.prefix == prefix && e.proto == *proto && e.port == g.port)
            {
                Some(e) => e.ms = e.ms.max(g.expires_in_ms),
                None => elements.push(Element {
                    prefix,
                    proto,
                    port: g.port,
                    ms: g.expires_in_ms,
                }),
            }
        }
    }
    let nested = |i: usize| {
        let e = &elements[i];
        !e.prefix.is_host()
            && elements.iter().enumerate().any(|(j, o)| {
                j != i
                    && !o.prefix.is_host()
                    && o.proto == e.proto
                    && o.port == e.port
                    && o.prefix.contains(&e.prefix)
                    && (o.prefix != e.prefix)
            })
    };
    let keep: Vec<bool> = (0..elements.len()).map(|i| !nested(i)).collect();
    let set = |v4: bool, hosts: bool| {
        let items: Vec<String> = elements
            .iter()
            .zip(&keep)
            .filter(|(e, k)| **k && e.prefix.addr.is_ipv4() == v4 && e.prefix.is_host() == hosts)
            .map(|(e, _)| {
                format!(
                    "{} . {} . {} timeout {}ms",
                    e.prefix.render(),
                    e.proto,
                    e.port,
                    e.ms
                )
            })
            .collect();
        let kind = if v4 { "ipv4_addr" } else { "ipv6_addr" };
        let flags = if hosts { "timeout" } else { "interval,timeout" };
        let name = format!(
            "{}{}",
            if hosts { "hosts" } else { "nets" },
            if v4 { 4 } else { 6 }
        );
        let elems = if items.is_empty() {
            String::new()
        } else {
            format!(" elements = {{ {} }};", items.join(", "))
        };
        format!(
            "  set {name} {{ type {kind} . inet_proto . inet_service; flags {flags};{elems} }}\n"
        )
    };
    out.push_str("table inet portcullis {\n");
    for (v4, hosts) in [(true, true), (true, false), (false, true), (false, false)] {
        out.push_str(&set(v4, hosts));
    }
    out.push_str(
        "  chain input {\n    type filter hook input priority filter - 10; policy accept;\n",
    );
    out.push_str("    ct state established,related accept\n");
    for (family, sets) in [("ip", ["hosts4", "nets4"]), ("ip6", ["hosts6", "nets6"])] {
        for s in sets {
            out.push_str(&format!(
                "    {family} saddr . meta l4proto . th dport @{s} accept\n"
            ));
        }
    }
    for proto in ["tcp", "udp"] {
        let mut ports: Vec<u16> = state
            .rules
            .iter()
            .filter(|r| protocols(&r.protocol).contains(&proto))
            .map(|r| r.port)
            .collect();
        ports.sort_unstable();
        ports.dedup();
        if !ports.is_empty() {
            let list: Vec<String> = ports.iter().map(u16::to_string).collect();
            out.push_str(&format!(
                "    meta l4proto {proto} th dport {{ {} }} drop\n",
                list.join(", ")
            ));
        }
    }
    out.push_str("  }\n}\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(rules: &[(u16, &str)], grants: &[(&str, u16, &str, i64)]) -> DesiredState {
        DesiredState {
            generation: 7,
            server_time_ms: 0,
            rules: rules
                .iter()
                .map(|(p, pr)| Rule {
                    port: *p,
                    protocol: pr.to_string(),
                })
                .collect(),
            grants: grants
                .iter()
                .map(|(s, p, pr, ms)| Grant {
                    source: s.to_string(),
                    port: *p,
                    protocol: pr.to_string(),
                    expires_in_ms: *ms,
                })
                .collect(),
        }
    }

    #[test]
    fn no_policy_removes_the_table() {
        assert_eq!(
            ruleset(&state(&[], &[])),
            "table inet portcullis\ndelete table inet portcullis\n"
        );
    }

    #[test]
    fn ports_are_dropped_unless_granted() {
        let s = ruleset(&state(
            &[(22, "tcp"), (3389, "any")],
            &[("198.51.100.10/32", 22, "tcp", 599_500)],
        ));
        assert!(s.starts_with(
            "table inet portcullis\ndelete table inet portcullis\ntable inet portcullis {"
        ));
        assert!(s.contains("set hosts4 { type ipv4_addr . inet_proto . inet_service; flags timeout; elements = { 198.51.100.10 . tcp . 22 timeout 599500ms }; }"));
        assert!(s.contains("meta l4proto tcp th dport { 22, 3389 } drop"));
        assert!(s.contains("meta l4proto udp th dport { 3389 } drop"));
        assert!(s.contains("ct state established,related accept"));
        let accept = s.find("@hosts4 accept").unwrap();
        assert!(
            accept < s.find("drop").unwrap(),
            "grants are accepted before the drop"
        );
    }

    #[test]
    fn ipv6_networks_and_any_protocol() {
        let s = ruleset(&state(
            &[(22, "any")],
            &[("2001:db8::/64", 22, "any", 1000)],
        ));
        assert!(s.contains(
            "2001:db8::/64 . tcp . 22 timeout 1000ms, 2001:db8::/64 . udp . 22 timeout 1000ms"
        ));
        assert!(s.contains(
            "set nets6 { type ipv6_addr . inet_proto . inet_service; flags interval,timeout;"
        ));
    }

    #[test]
    fn ended_malformed_duplicate_and_nested_grants() {
        let s = ruleset(&state(
            &[(22, "tcp")],
            &[
                ("203.0.113.7/32", 22, "tcp", 0),
                ("not-an-address", 22, "tcp", 5000),
                ("198.51.100.10/32", 22, "tcp", 1000),
                ("198.51.100.10/32", 22, "tcp", 3000),
                ("198.51.100.0/24", 22, "tcp", 9000),
                ("198.51.100.128/25", 22, "tcp", 20000),
            ],
        ));
        assert!(!s.contains("203.0.113.7"), "ended grants are closed");
        assert!(!s.contains("not-an-address"));
        assert!(
            s.contains("198.51.100.10 . tcp . 22 timeout 3000ms"),
            "duplicates keep the later end"
        );
        assert!(s.contains("198.51.100.0/24 . tcp . 22 timeout 9000ms"));
        assert!(
            !s.contains("198.51.100.128/25"),
            "nested networks would conflict in the interval set"
        );
    }
}
