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

pub const MIN_APPROVAL_TIMEOUT_SECS: i64 = 5 * 60;
pub const MAX_APPROVAL_TIMEOUT_SECS: i64 = 24 * 3600;
pub const DEFAULT_APPROVAL_TIMEOUT_SECS: i64 = 3600;

/// How long a request that needs approval may wait for it: 5 minutes to 24 hours. A
/// request nobody decided in time is closed, so a stale "yes" cannot open a port hours
/// after the need (and the requester's situation) changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ApprovalTimeout(i64);

impl ApprovalTimeout {
    pub fn parse_minutes(raw: &str) -> Result<Self, &'static str> {
        let minutes: i64 = raw
            .trim()
            .parse()
            .map_err(|_| "Enter the approval time-out in minutes, 5 to 1440.")?;
        Self::from_secs(minutes.saturating_mul(60))
    }

    pub fn from_secs(secs: i64) -> Result<Self, &'static str> {
        if (MIN_APPROVAL_TIMEOUT_SECS..=MAX_APPROVAL_TIMEOUT_SECS).contains(&secs) {
            Ok(ApprovalTimeout(secs))
        } else {
            Err("Approval must come within 5 minutes to 24 hours (5 to 1440 minutes).")
        }
    }

    pub fn secs(self) -> i64 {
        self.0
    }
}

impl Default for ApprovalTimeout {
    fn default() -> Self {
        ApprovalTimeout(DEFAULT_APPROVAL_TIMEOUT_SECS)
    }
}

pub const MAX_APPROVERS: u8 = 5;

/// How many distinct approvers a request on a rule needs before it opens: 1 to 5. Any
/// one of them denying ends the request; nobody counts twice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Approvers(u8);

impl Approvers {
    pub const ONE: Approvers = Approvers(1);

    /// Parses the form's number; empty means one.
    pub fn parse(raw: &str) -> Result<Self, &'static str> {
        let raw = raw.trim();
        if raw.is_empty() {
            return Ok(Self::ONE);
        }
        raw.parse::<i64>()
            .map_err(|_| "The number of approvers is a whole number from 1 to 5.")
            .and_then(Self::from_count)
    }

    pub fn from_count(n: i64) -> Result<Self, &'static str> {
        match u8::try_from(n) {
            Ok(n @ 1..=MAX_APPROVERS) => Ok(Approvers(n)),
            _ => Err("The number of approvers is a whole number from 1 to 5."),
        }
    }

    pub fn get(self) -> u8 {
        self.0
    }

    /// Whether `given` distinct approvals are enough.
    pub fn reached_by(self, given: i64) -> bool {
        given >= i64::from(self.0)
    }
}

pub const MAX_LEAD_DAYS: i64 = 30;
pub const DEFAULT_LEAD_DAYS: i64 = 7;

/// How far ahead a request on a rule may start: 0 days (only now) to 30; 7 unless set. A
/// window booked further ahead would rest on roles and a policy that may well have changed
/// by then (it is re-checked at its start anyway), and keeps a slot in the queue longer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct LeadTime(i64);

impl LeadTime {
    const MESSAGE: &'static str = "Scheduling ahead is a whole number of days from 0 to 30.";

    /// Parses the form's days; empty means the default.
    pub fn parse_days(raw: &str) -> Result<Self, &'static str> {
        let raw = raw.trim();
        if raw.is_empty() {
            return Ok(Self::default());
        }
        let days: i64 = raw.parse().map_err(|_| Self::MESSAGE)?;
        Self::from_secs(days.saturating_mul(86_400))
    }

    /// Whole days only, as the form and the API give it.
    pub fn from_secs(secs: i64) -> Result<Self, &'static str> {
        if secs % 86_400 == 0 && (0..=MAX_LEAD_DAYS * 86_400).contains(&secs) {
            Ok(LeadTime(secs))
        } else {
            Err(Self::MESSAGE)
        }
    }

    pub fn secs(self) -> i64 {
        self.0
    }

    pub fn days(self) -> i64 {
        self.0 / 86_400
    }
}

impl Default for LeadTime {
    fn default() -> Self {
        LeadTime(DEFAULT_LEAD_DAYS * 86_400)
    }
}

impl Default for Approvers {
    fn default() -> Self {
        Self::ONE
    }
}

impl std::fmt::Display for Approvers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}

pub const DEFAULT_WIDEST_V4: u8 = 24;
pub const DEFAULT_WIDEST_V6: u8 = 64;

/// The widest source a "per request" rule accepts, per address family: a requester names
/// their own network, not half the Internet (`0.0.0.0/1` is one prefix too).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct WidestPrefix {
    pub v4: u8,
    pub v6: u8,
}

impl Default for WidestPrefix {
    fn default() -> Self {
        WidestPrefix {
            v4: DEFAULT_WIDEST_V4,
            v6: DEFAULT_WIDEST_V6,
        }
    }
}

impl WidestPrefix {
    /// Parses the two prefix lengths of the form; empty means the default.
    pub fn parse(v4: &str, v6: &str) -> Result<Self, (&'static str, &'static str)> {
        let parse = |raw: &str, max: u8, default: u8, field, message| {
            let raw = raw.trim().trim_start_matches('/');
            if raw.is_empty() {
                return Ok(default);
            }
            match raw.parse::<u8>() {
                Ok(n) if (1..=max).contains(&n) => Ok(n),
                _ => Err((field, message)),
            }
        };
        Ok(WidestPrefix {
            v4: parse(
                v4,
                32,
                DEFAULT_WIDEST_V4,
                "widest_v4",
                "The widest IPv4 source is a prefix length from 1 to 32.",
            )?,
            v6: parse(
                v6,
                128,
                DEFAULT_WIDEST_V6,
                "widest_v6",
                "The widest IPv6 source is a prefix length from 1 to 128.",
            )?,
        })
    }

    pub fn for_family(self, ipv4: bool) -> u8 {
        if ipv4 { self.v4 } else { self.v6 }
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
    pub approval_timeout: ApprovalTimeout,
    pub widest_source: WidestPrefix,
    /// How many distinct approvers its requests need (1 unless approval is required).
    #[serde(default)]
    pub approvals_required: Approvers,
    /// How far ahead its requests may start.
    #[serde(default)]
    pub max_lead: LeadTime,
}

impl PortRule {
    /// The rule in one line, for logs and warnings:
    /// `22/tcp: sources per request, max 180 min, approval required within 60 min`.
    pub fn summary(&self) -> String {
        let mut out = format!(
            "{}/{}: sources {}",
            self.port,
            self.protocol.as_str(),
            self.allowed_sources
        );
        if self.allowed_sources == AllowedSources::PerRequest {
            out.push_str(&format!(
                " (at most /{} or /{})",
                self.widest_source.v4, self.widest_source.v6
            ));
        }
        out.push_str(&format!(", max {} min", self.max_duration.secs() / 60));
        if self.justification_required {
            out.push_str(", justification required");
        }
        if self.approval_required {
            if self.approvals_required > Approvers::ONE {
                out.push_str(&format!(
                    ", approval by {} approvers",
                    self.approvals_required
                ));
            } else {
                out.push_str(", approval");
            }
            out.push_str(&format!(
                " required within {} min",
                self.approval_timeout.secs() / 60
            ));
        }
        out
    }

    /// Whether `source` may be granted on this port: inside the allowed prefixes, and for
    /// "per request" rules no wider than the rule's widest prefix. The error says why not.
    pub fn admits(&self, source: &Cidr) -> Result<(), String> {
        match &self.allowed_sources {
            AllowedSources::List(_) if !self.allowed_sources.permits(source) => Err(format!(
                "{source} is outside the sources allowed for port {} ({})",
                self.port, self.allowed_sources
            )),
            AllowedSources::List(_) => Ok(()),
            AllowedSources::PerRequest => {
                let widest = self.widest_source.for_family(source.is_ipv4());
                if source.prefix_len() < widest {
                    Err(format!(
                        "{source} is wider than the /{widest} a request for port {} may name",
                        self.port
                    ))
                } else {
                    Ok(())
                }
            }
        }
    }
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
    /// Minutes within which approval must come; empty means the default (60).
    #[serde(default)]
    pub approval_minutes: String,
    /// How many distinct approvers must approve (1–5); empty means one.
    #[serde(default)]
    pub approvals_required: String,
    /// Days ahead a request may start (0–30); empty means 7.
    #[serde(default)]
    pub lead_days: String,
    /// The widest IPv4 / IPv6 prefix a "per request" source may be; empty means /24, /64.
    #[serde(default)]
    pub widest_v4: String,
    #[serde(default)]
    pub widest_v6: String,
}

impl PortRuleInput {
    /// Characters a row of the form may hold in all: a source list of a few dozen
    /// prefixes fits; a row beyond it is not kept as a draft in the session.
    pub const MAX_TEXT: usize = 4096;

    /// Whether the row, as typed, is small enough to keep.
    pub fn fits(&self) -> bool {
        let texts = [
            &self.port,
            &self.protocol,
            &self.allowed_sources,
            &self.max_minutes,
            &self.approval_minutes,
            &self.approvals_required,
            &self.lead_days,
            &self.widest_v4,
            &self.widest_v6,
        ];
        let flags = [
            &self.enabled,
            &self.justification_required,
            &self.approval_required,
        ];
        let len: usize = texts.iter().map(|t| t.len()).sum::<usize>()
            + flags
                .iter()
                .flat_map(|f| f.as_ref())
                .map(String::len)
                .sum::<usize>();
        len <= Self::MAX_TEXT
    }
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
            let approval_timeout = if row.approval_minutes.trim().is_empty() {
                Some(ApprovalTimeout::default())
            } else {
                errors.check(
                    &key("approval_minutes"),
                    ApprovalTimeout::parse_minutes(&row.approval_minutes),
                )
            };
            let approvers = match Approvers::parse(&row.approvals_required) {
                Ok(n) if n > Approvers::ONE && row.approval_required.is_none() => {
                    errors.add(
                        &key("approvals_required"),
                        "More than one approver needs “Approval required” on.",
                    );
                    None
                }
                Ok(n) => Some(n),
                Err(message) => {
                    errors.add(&key("approvals_required"), message);
                    None
                }
            };
            let widest = match WidestPrefix::parse(&row.widest_v4, &row.widest_v6) {
                Ok(w) => Some(w),
                Err((field, message)) => {
                    errors.add(&key(field), message);
                    None
                }
            };
            let max_lead = errors.check(&key("lead_days"), LeadTime::parse_days(&row.lead_days));
            if let (
                Some(port),
                Some(protocol),
                Some(allowed_sources),
                Some(max_duration),
                Some(approval_timeout),
                Some(widest_source),
                Some(approvals_required),
                Some(max_lead),
            ) = (
                port,
                protocol,
                sources,
                max_duration,
                approval_timeout,
                widest,
                approvers,
                max_lead,
            ) {
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
                    approval_timeout,
                    widest_source,
                    approvals_required,
                    max_lead,
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

    /// The rule that covers a grant of `port`/`protocol`: its own rule, or an "any" rule for
    /// the port (a grant for TCP stands when its rule is widened to any protocol).
    pub fn rule_covering(&self, port: Port, protocol: Protocol) -> Option<&PortRule> {
        self.rule(port, protocol).or_else(|| {
            self.rules
                .iter()
                .find(|r| r.port == port && r.protocol == Protocol::Any)
        })
    }

    /// How far ahead a request for `ports` may start under this policy: the shortest lead
    /// time among the rules covering them.
    pub fn max_lead(&self, ports: &[(Port, Protocol)]) -> LeadTime {
        ports
            .iter()
            .filter_map(|(port, protocol)| self.rule_covering(*port, *protocol))
            .map(|r| r.max_lead)
            .min()
            .unwrap_or_default()
    }

    /// How many distinct approvals a request for `ports` needs under this policy: the
    /// largest number among the rules (covering those ports) that require approval; one
    /// when none does.
    pub fn approvals_required(&self, ports: &[(Port, Protocol)]) -> Approvers {
        ports
            .iter()
            .filter_map(|(port, protocol)| self.rule_covering(*port, *protocol))
            .filter(|r| r.approval_required)
            .map(|r| r.approvals_required)
            .max()
            .unwrap_or(Approvers::ONE)
    }

    /// Two policies are the same configuration when they have the same rules, in any order.
    pub fn same_rules(&self, other: &JitPolicy) -> bool {
        self.rules.len() == other.rules.len()
            && self
                .rules
                .iter()
                .all(|r| other.rule(r.port, r.protocol) == Some(r))
    }

    /// What a VM with this policy loses or sees changed when `new` replaces it, one line
    /// per rule, for the warning shown before a bulk edit overwrites differing policies.
    pub fn changes_to(&self, new: &JitPolicy) -> Vec<String> {
        let mut out = Vec::new();
        for old in &self.rules {
            let key = format!("{}/{}", old.port, old.protocol.as_str());
            let Some(n) = new.rule(old.port, old.protocol) else {
                out.push(format!("{key} is removed"));
                continue;
            };
            let mut what = Vec::new();
            if n.allowed_sources != old.allowed_sources {
                what.push(format!(
                    "sources {} → {}",
                    old.allowed_sources, n.allowed_sources
                ));
            }
            if n.max_duration != old.max_duration {
                what.push(format!(
                    "max {} → {} min",
                    old.max_duration.secs() / 60,
                    n.max_duration.secs() / 60
                ));
            }
            if old.approval_required && !n.approval_required {
                what.push("approval no longer required".into());
            } else if !old.approval_required && n.approval_required {
                what.push("approval now required".into());
            }
            if n.approvals_required != old.approvals_required {
                what.push(format!(
                    "approvers {} → {}",
                    old.approvals_required, n.approvals_required
                ));
            }
            if old.justification_required && !n.justification_required {
                what.push("justification no longer required".into());
            } else if !old.justification_required && n.justification_required {
                what.push("justification now required".into());
            }
            if n.approval_timeout != old.approval_timeout {
                what.push(format!(
                    "approval within {} → {} min",
                    old.approval_timeout.secs() / 60,
                    n.approval_timeout.secs() / 60
                ));
            }
            if n.max_lead != old.max_lead {
                what.push(format!(
                    "scheduling ahead {} → {} days",
                    old.max_lead.days(),
                    n.max_lead.days()
                ));
            }
            if n.widest_source != old.widest_source {
                what.push(format!(
                    "widest source /{}, /{} → /{}, /{}",
                    old.widest_source.v4,
                    old.widest_source.v6,
                    n.widest_source.v4,
                    n.widest_source.v6
                ));
            }
            if !what.is_empty() {
                out.push(format!("{key}: {}", what.join("; ")));
            }
        }
        for n in &new.rules {
            if self.rule(n.port, n.protocol).is_none() {
                out.push(format!("{}/{} is added", n.port, n.protocol.as_str()));
            }
        }
        out
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

    #[test]
    fn per_request_rules_bound_the_width_of_a_source() {
        let rule = JitPolicy::parse(&[row("22")]).unwrap().rules[0].clone();
        assert_eq!(rule.widest_source, WidestPrefix { v4: 24, v6: 64 });
        assert_eq!(rule.approval_timeout.secs(), 3600);
        assert!(
            rule.admits(&Cidr::parse("198.51.100.0/24").unwrap())
                .is_ok()
        );
        assert!(rule.admits(&Cidr::parse("198.51.100.7").unwrap()).is_ok());
        assert!(rule.admits(&Cidr::parse("2001:db8::/64").unwrap()).is_ok());
        let e = rule.admits(&Cidr::parse("0.0.0.0/1").unwrap()).unwrap_err();
        assert!(e.contains("wider than the /24"), "{e}");
        assert!(rule.admits(&Cidr::parse("2001:db8::/48").unwrap()).is_err());
        let mut wide = row("22");
        wide.widest_v4 = "/8".into();
        wide.widest_v6 = "32".into();
        let rule = JitPolicy::parse(&[wide]).unwrap().rules[0].clone();
        assert!(rule.admits(&Cidr::parse("10.0.0.0/8").unwrap()).is_ok());
        assert!(rule.admits(&Cidr::parse("2001:db8::/32").unwrap()).is_ok());
        let mut bad = row("22");
        bad.widest_v4 = "0".into();
        bad.widest_v6 = "129".into();
        bad.approval_minutes = "2".into();
        let e = JitPolicy::parse(&[bad]).unwrap_err();
        assert!(e.get("rules[0].widest_v4").is_some());
        assert!(e.get("rules[0].approval_minutes").is_some());
    }

    #[test]
    fn listed_sources_are_the_bound_for_listed_rules() {
        let mut listed = row("22");
        listed.allowed_sources = "10.0.0.0/8".into();
        let rule = JitPolicy::parse(&[listed]).unwrap().rules[0].clone();
        assert!(rule.admits(&Cidr::parse("10.0.0.0/8").unwrap()).is_ok());
        assert!(rule.admits(&Cidr::parse("11.0.0.0/8").unwrap()).is_err());
        assert!(
            rule.admits(&Cidr::parse("::ffff:10.0.0.0/103").unwrap())
                .is_err()
        );
    }

    #[test]
    fn changes_name_what_each_rule_loses() {
        let mut approval = row("22");
        approval.approval_required = Some("on".into());
        let old = JitPolicy::parse(&[approval, row("8080")]).unwrap();
        let new = JitPolicy::parse(&[row("22"), row("3389")]).unwrap();
        let changes = old.changes_to(&new);
        assert_eq!(
            changes,
            vec![
                "22/tcp: approval no longer required".to_owned(),
                "8080/tcp is removed".to_owned(),
                "3389/tcp is added".to_owned(),
            ]
        );
        assert!(old.same_rules(&old.clone()));
        assert!(!old.same_rules(&new));
        let reordered = JitPolicy {
            rules: old.rules.iter().rev().cloned().collect(),
        };
        assert!(old.same_rules(&reordered));
        assert!(old.changes_to(&reordered).is_empty());
    }

    #[test]
    fn approvers_are_one_to_five_and_default_to_one() {
        assert_eq!(Approvers::parse(" ").unwrap(), Approvers::ONE);
        assert_eq!(Approvers::parse("3").unwrap().get(), 3);
        assert_eq!(Approvers::parse(" 5 ").unwrap().get(), 5);
        for bad in ["0", "6", "-1", "two", "2.5", "256"] {
            let e = Approvers::parse(bad).unwrap_err();
            assert!(e.contains("number of approvers"), "{bad}: {e}");
        }
        assert!(Approvers::from_count(2).unwrap().reached_by(2));
        assert!(!Approvers::from_count(2).unwrap().reached_by(1));
        assert_eq!(Approvers::default(), Approvers::ONE);

        let mut three = row("22");
        three.approval_required = Some("on".into());
        three.approvals_required = "3".into();
        let rule = JitPolicy::parse(&[three]).unwrap().rules[0].clone();
        assert_eq!(rule.approvals_required.get(), 3);
        assert!(
            rule.summary()
                .ends_with(", approval by 3 approvers required within 60 min"),
            "{}",
            rule.summary()
        );
        let plain = JitPolicy::parse(&[row("22")]).unwrap().rules[0].clone();
        assert_eq!(plain.approvals_required, Approvers::ONE);
    }

    #[test]
    fn lead_time_is_whole_days_up_to_thirty_and_the_shortest_rule_wins() {
        assert_eq!(LeadTime::parse_days("").unwrap().days(), 7);
        assert_eq!(LeadTime::parse_days(" 0 ").unwrap().secs(), 0);
        assert_eq!(LeadTime::parse_days("30").unwrap().days(), 30);
        for bad in ["31", "-1", "two", "1.5", "99999999999999999"] {
            assert!(LeadTime::parse_days(bad).is_err(), "{bad}");
        }
        assert!(LeadTime::from_secs(3600).is_err(), "part of a day");
        let mut short = row("22");
        short.lead_days = "1".into();
        let mut bad = row("80");
        bad.lead_days = "45".into();
        let e = JitPolicy::parse(&[short.clone(), bad]).unwrap_err();
        assert!(e.get("rules[1].lead_days").is_some());
        let policy = JitPolicy::parse(&[short, row("3389")]).unwrap();
        let p = |n| (Port::new(n).unwrap(), Protocol::Tcp);
        assert_eq!(policy.max_lead(&[p(3389)]).days(), 7);
        assert_eq!(policy.max_lead(&[p(22), p(3389)]).days(), 1);
        let mut changed = policy.clone();
        changed.rules[1].max_lead = LeadTime::parse_days("2").unwrap();
        assert_eq!(
            policy.changes_to(&changed),
            vec!["3389/tcp: scheduling ahead 7 → 2 days".to_string()]
        );
    }

    #[test]
    fn a_bad_number_of_approvers_is_named_on_its_row() {
        let mut six = row("22");
        six.approval_required = Some("on".into());
        six.approvals_required = "6".into();
        let mut without_approval = row("3389");
        without_approval.approvals_required = "2".into();
        let mut one_without = row("5985");
        one_without.approvals_required = "1".into();
        let e = JitPolicy::parse(&[six, without_approval, one_without]).unwrap_err();
        assert_eq!(
            e.get("rules[0].approvals_required"),
            Some("The number of approvers is a whole number from 1 to 5.")
        );
        assert!(
            e.get("rules[1].approvals_required")
                .unwrap()
                .contains("Approval required")
        );
        assert!(e.get("rules[2].approvals_required").is_none());
    }

    #[test]
    fn a_requests_approvers_are_the_most_any_of_its_gated_rules_needs() {
        let gated = |port: &str, n: &str| {
            let mut r = row(port);
            r.approval_required = Some("on".into());
            r.approvals_required = n.into();
            r
        };
        let mut any = gated("3389", "3");
        any.protocol = "any".into();
        let policy = JitPolicy::parse(&[gated("22", "2"), any, row("80")]).unwrap();
        let p = |n: u16, pr: Protocol| (Port::new(n).unwrap(), pr);
        assert_eq!(policy.approvals_required(&[p(22, Protocol::Tcp)]).get(), 2);
        assert_eq!(
            policy
                .approvals_required(&[p(22, Protocol::Tcp), p(3389, Protocol::Tcp)])
                .get(),
            3,
            "an any-protocol rule covers a TCP port"
        );
        assert_eq!(
            policy.approvals_required(&[p(80, Protocol::Tcp)]),
            Approvers::ONE
        );
        assert_eq!(
            policy.approvals_required(&[p(443, Protocol::Tcp)]),
            Approvers::ONE,
            "a port without a rule needs no more than one"
        );
    }

    #[test]
    fn changes_name_a_new_number_of_approvers() {
        let gated = |n: &str| {
            let mut r = row("22");
            r.approval_required = Some("on".into());
            r.approvals_required = n.into();
            r
        };
        let old = JitPolicy::parse(&[gated("1")]).unwrap();
        let new = JitPolicy::parse(&[gated("3")]).unwrap();
        assert_eq!(
            old.changes_to(&new),
            vec!["22/tcp: approvers 1 → 3".to_owned()]
        );
        assert!(!old.same_rules(&new));
        let off = JitPolicy::parse(&[row("22")]).unwrap();
        assert_eq!(
            new.changes_to(&off),
            vec!["22/tcp: approval no longer required; approvers 3 → 1".to_owned()]
        );
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
