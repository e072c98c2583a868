//! JIT policies: which ports of a VM are under just-in-time control, from where they may
//! be requested, and for how long.

use super::FieldErrors;
use super::net::Cidr;
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// A TCP/UDP port number, 1–65535.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Port(u16);

#[derive(Debug, Error, PartialEq, Eq)]
pub enum PortError {
    #[error("Enter a port number.")]
    Empty,
    #[error("A port is a whole number from 1 to 65535.")]
    OutOfRange,
}

impl Port {
    pub fn parse(raw: &str) -> Result<Self, PortError> {
        let raw = raw.trim();
        if raw.is_empty() {
            return Err(PortError::Empty);
        }
        if !raw.chars().all(|c| c.is_ascii_digit()) || raw.len() > 5 {
            return Err(PortError::OutOfRange);
        }
        match raw.parse::<u32>() {
            Ok(n @ 1..=65535) => Ok(Port(n as u16)),
            _ => Err(PortError::OutOfRange),
        }
    }

    pub fn new(n: u16) -> Option<Self> {
        (n != 0).then_some(Port(n))
    }

    pub fn get(self) -> u16 {
        self.0
    }
}

impl std::fmt::Display for Port {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Protocol {
    Tcp,
    Udp,
    Any,
}

impl Protocol {
    pub fn parse(raw: &str) -> Result<Self, &'static str> {
        match raw.trim().to_ascii_lowercase().as_str() {
            "tcp" => Ok(Protocol::Tcp),
            "udp" => Ok(Protocol::Udp),
            "any" | "*" => Ok(Protocol::Any),
            _ => Err("Choose TCP, UDP or Any."),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
            Protocol::Any => "any",
        }
    }

    fn overlaps(self, other: Protocol) -> bool {
        self == other || self == Protocol::Any || other == Protocol::Any
    }
}

impl std::fmt::Display for Protocol {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Protocol::Tcp => "TCP",
            Protocol::Udp => "UDP",
            Protocol::Any => "Any",
        })
    }
}

pub const MIN_MAX_DURATION_SECS: i64 = 5 * 60;
pub const MAX_MAX_DURATION_SECS: i64 = 24 * 3600;
pub const DEFAULT_MAX_DURATION_SECS: i64 = 3 * 3600;

/// The longest access a port rule allows: 5 minutes to 24 hours.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct MaxDuration(i64);

impl MaxDuration {
    /// Parses minutes, as the form asks for them.
    pub fn parse_minutes(raw: &str) -> Result<Self, &'static str> {
        let minutes: i64 = raw
            .trim()
            .parse()
            .map_err(|_| "Enter the maximum request time in minutes, 5 to 1440.")?;
        Self::from_secs(minutes.saturating_mul(60))
    }

    pub fn from_secs(secs: i64) -> Result<Self, &'static str> {
        if (MIN_MAX_DURATION_SECS..=MAX_MAX_DURATION_SECS).contains(&secs) {
            Ok(MaxDuration(secs))
        } else {
            Err("The maximum request time is 5 minutes to 24 hours (5 to 1440 minutes).")
        }
    }

    pub fn secs(self) -> i64 {
        self.0
    }
}

impl Default for MaxDuration {
    fn default() -> Self {
        MaxDuration(DEFAULT_MAX_DURATION_SECS)
    }
}

/// Where access to a port may be requested from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum AllowedSources {
    /// Any single source the requester names (by default their own address).
    PerRequest,
    /// Only addresses inside one of these prefixes.
    List(Vec<Cidr>),
}

impl AllowedSources {
    /// `*`, empty or "per request" means per request; otherwise a comma- or
    /// whitespace-separated list of CIDRs.
    pub fn parse(raw: &str) -> Result<Self, String> {
        let raw = raw.trim();
        if raw.is_empty() || raw == "*" || raw.eq_ignore_ascii_case("per request") {
            return Ok(AllowedSources::PerRequest);
        }
        let mut list = Vec::new();
        for item in raw
            .split(|c: char| c == ',' || c.is_whitespace())
            .filter(|s| !s.is_empty())
        {
            let cidr = Cidr::parse(item).map_err(|e| format!("'{item}': {e}"))?;
            if cidr.prefix_len() == 0 {
                return Err(format!(
                    "'{item}' allows every address; use \"per request\" instead."
                ));
            }
            if !list.contains(&cidr) {
                list.push(cidr);
            }
        }
        if list.len() > 50 {
            return Err("At most 50 allowed source prefixes per port.".into());
        }
        Ok(AllowedSources::List(list))
    }

    pub fn permits(&self, source: &Cidr) -> bool {
        match self {
            AllowedSources::PerRequest => true,
            AllowedSources::List(list) => {
                list.iter().any(|allowed| allowed.contains_prefix(source))
            }
        }
    }
}

impl std::fmt::Display for AllowedSources {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AllowedSources::PerRequest => f.write_str("per request"),
            AllowedSources::List(list) => {
                let items: Vec<String> = list.iter().map(ToString::to_string).collect();
                f.write_str(&items.join(", "))
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortRule {
    pub port: Port,
    pub protocol: Protocol,
    pub allowed_sources: AllowedSources,
    pub max_duration: MaxDuration,
    pub justification_required: bool,
    pub approval_required: bool,
}

/// The raw fields of one row of the port-configuration form.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortRuleInput {
    #[serde(default)]
    pub enabled: Option<String>,
    #[serde(default)]
    pub port: String,
    #[serde(default)]
    pub protocol: String,
    #[serde(default)]
    pub allowed_sources: String,
    #[serde(default)]
    pub max_minutes: String,
    #[serde(default)]
    pub justification_required: Option<String>,
    #[serde(default)]
    pub approval_required: Option<String>,
}

/// A VM's JIT policy: at least one port rule, no two rules for the same port and
/// overlapping protocol.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JitPolicy {
    pub rules: Vec<PortRule>,
}

impl JitPolicy {
    /// Parses the enabled rows; errors are keyed `rules[i].field` so the form can show
    /// each next to its input.
    pub fn parse(rows: &[PortRuleInput]) -> Result<Self, FieldErrors> {
        let mut errors = FieldErrors::new();
        let mut rules: Vec<PortRule> = Vec::new();
        for (i, row) in rows.iter().enumerate() {
            if row.enabled.is_none() {
                continue;
            }
            let key = |f: &str| format!("rules[{i}].{f}");
            let port = errors.check(&key("port"), Port::parse(&row.port));
            let protocol = errors.check(&key("protocol"), Protocol::parse(&row.protocol));
            let sources = errors.check(
                &key("allowed_sources"),
                AllowedSources::parse(&row.allowed_sources),
            );
            let max_duration = if row.max_minutes.trim().is_empty() {
                Some(MaxDuration::default())
            } else {
                errors.check(
                    &key("max_minutes"),
                    MaxDuration::parse_minutes(&row.max_minutes),
                )
            };
            if let (Some(port), Some(protocol), Some(allowed_sources), Some(max_duration)) =
                (port, protocol, sources, max_duration)
            {
                if rules
                    .iter()
                    .any(|r| r.port == port && r.protocol.overlaps(protocol))
                {
                    errors.add(&key("port"), format!("Port {port} is configured twice."));
                    continue;
                }
                rules.push(PortRule {
                    port,
                    protocol,
                    allowed_sources,
                    max_duration,
                    justification_required: row.justification_required.is_some(),
                    approval_required: row.approval_required.is_some(),
                });
            }
        }
        if rules.is_empty() && errors.is_empty() {
            errors.add("rules", "Enable at least one port.");
        }
        errors.into_result()?;
        Ok(JitPolicy { rules })
    }

    pub fn rule(&self, port: Port, protocol: Protocol) -> Option<&PortRule> {
        self.rules
            .iter()
            .find(|r| r.port == port && r.protocol == protocol)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Os {
    Linux,
    Windows,
    Other,
}

impl Os {
    pub fn parse(raw: &str) -> Result<Self, &'static str> {
        match raw.trim().to_ascii_lowercase().as_str() {
            "linux" => Ok(Os::Linux),
            "windows" => Ok(Os::Windows),
            "other" | "" => Ok(Os::Other),
            _ => Err("Choose Linux, Windows or Other."),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Os::Linux => "linux",
            Os::Windows => "windows",
            Os::Other => "other",
        }
    }

    /// The management ports the configuration form offers by default.
    pub fn default_ports(self) -> &'static [u16] {
        match self {
            Os::Linux => &[22],
            Os::Windows | Os::Other => &[22, 3389, 5985, 5986],
        }
    }
}

/// Management ports whose exposure puts a VM on the Recommended tab.
pub const MANAGEMENT_PORTS: [u16; 4] = [22, 3389, 5985, 5986];

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn row(port: &str) -> PortRuleInput {
        PortRuleInput {
            enabled: Some("on".into()),
            port: port.into(),
            protocol: "tcp".into(),
            allowed_sources: "".into(),
            max_minutes: "180".into(),
            ..Default::default()
        }
    }

    #[test]
    fn ports_parse_within_range() {
        assert_eq!(Port::parse("22").unwrap().get(), 22);
        assert_eq!(Port::parse(" 65535 ").unwrap().get(), 65535);
        assert_eq!(Port::parse("0"), Err(PortError::OutOfRange));
        assert_eq!(Port::parse("65536"), Err(PortError::OutOfRange));
        assert_eq!(Port::parse("-1"), Err(PortError::OutOfRange));
        assert_eq!(Port::parse("22a"), Err(PortError::OutOfRange));
        assert_eq!(Port::parse("0000022"), Err(PortError::OutOfRange));
        assert_eq!(Port::parse(""), Err(PortError::Empty));
    }

    #[test]
    fn max_duration_is_bounded() {
        assert!(MaxDuration::parse_minutes("4").is_err());
        assert_eq!(MaxDuration::parse_minutes("5").unwrap().secs(), 300);
        assert_eq!(MaxDuration::parse_minutes("1440").unwrap().secs(), 86400);
        assert!(MaxDuration::parse_minutes("1441").is_err());
        assert!(MaxDuration::parse_minutes("three").is_err());
        assert_eq!(MaxDuration::default().secs(), 3 * 3600);
    }

    #[test]
    fn allowed_sources_parse_and_contain() {
        assert_eq!(AllowedSources::parse(" "), Ok(AllowedSources::PerRequest));
        let list = AllowedSources::parse("198.51.100.0/24, 2001:db8::/32").unwrap();
        assert!(list.permits(&Cidr::parse("198.51.100.10").unwrap()));
        assert!(list.permits(&Cidr::parse("198.51.100.128/25").unwrap()));
        assert!(!list.permits(&Cidr::parse("198.51.0.0/16").unwrap()));
        assert!(!list.permits(&Cidr::parse("203.0.113.7").unwrap()));
        assert!(list.permits(&Cidr::parse("2001:db8::7").unwrap()));
        assert!(
            AllowedSources::parse("198.51.100.0/33")
                .unwrap_err()
                .contains("198.51.100.0/33")
        );
        assert!(AllowedSources::parse("0.0.0.0/0").is_err());
    }

    #[test]
    fn policy_errors_are_keyed_by_row_and_field() {
        let mut bad = row("70000");
        bad.max_minutes = "2000".into();
        let mut bad_source = row("3389");
        bad_source.allowed_sources = "not-a-cidr".into();
        let errors = JitPolicy::parse(&[row("22"), bad, bad_source]).unwrap_err();
        assert!(errors.get("rules[1].port").is_some());
        assert!(errors.get("rules[1].max_minutes").is_some());
        assert!(errors.get("rules[2].allowed_sources").is_some());
        assert!(errors.get("rules[0].port").is_none());
    }

    #[test]
    fn policy_needs_a_port_and_no_duplicates() {
        let mut off = row("22");
        off.enabled = None;
        assert!(JitPolicy::parse(&[off]).unwrap_err().get("rules").is_some());
        let mut any = row("22");
        any.protocol = "any".into();
        assert!(
            JitPolicy::parse(&[row("22"), any])
                .unwrap_err()
                .get("rules[1].port")
                .is_some()
        );
        let mut udp = row("22");
        udp.protocol = "udp".into();
        let policy = JitPolicy::parse(&[row("22"), udp, row("")]).err().unwrap();
        assert!(policy.get("rules[2].port").is_some());
        let ok = JitPolicy::parse(&[row("22"), {
            let mut u = row("22");
            u.protocol = "udp".into();
            u
        }])
        .unwrap();
        assert_eq!(ok.rules.len(), 2);
        assert_eq!(ok.rules[0].max_duration.secs(), 180 * 60);
    }

    proptest! {
        #[test]
        fn max_duration_accepts_exactly_the_bounds(minutes in -10_000i64..10_000) {
            let parsed = MaxDuration::parse_minutes(&minutes.to_string());
            prop_assert_eq!(parsed.is_ok(), (5..=1440).contains(&minutes));
        }

        #[test]
        fn port_parse_accepts_exactly_1_to_65535(n in 0u32..100_000) {
            prop_assert_eq!(Port::parse(&n.to_string()).is_ok(), (1..=65535).contains(&n));
        }

        #[test]
        fn a_host_inside_an_allowed_prefix_is_permitted(a in any::<u32>(), len in 1u8..=32, host in any::<u32>()) {
            let net = if len == 32 { a } else { a & (u32::MAX << (32 - len)) };
            let prefix = Cidr::parse(&format!("{}/{len}", std::net::Ipv4Addr::from(net))).unwrap();
            let sources = AllowedSources::List(vec![prefix]);
            let inside = if len == 32 { net } else { net | (host & !(u32::MAX << (32 - len))) };
            let inside_cidr = Cidr::parse(&std::net::Ipv4Addr::from(inside).to_string()).unwrap();
            prop_assert!(sources.permits(&inside_cidr));
            let outside = net ^ (1u32 << (32 - len));
            let outside_cidr = Cidr::parse(&std::net::Ipv4Addr::from(outside).to_string()).unwrap();
            prop_assert!(!sources.permits(&outside_cidr));
        }
    }
}
