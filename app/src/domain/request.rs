//! Access requests: what a user asks for (checked against the VM's policy) and the life
//! cycle of a request and of each of its ports.

use super::FieldErrors;
use super::jit::{Approvers, JitPolicy, LeadTime, Port, Protocol};
use super::net::Cidr;
use serde::{Deserialize, Serialize};
use std::net::IpAddr;
use thiserror::Error;

pub const MAX_JUSTIFICATION_CHARS: usize = 500;
pub const MIN_REQUEST_SECS: i64 = 60;

/// A port as the request form names it: `22/tcp`.
pub fn port_key(port: Port, protocol: Protocol) -> String {
    format!("{port}/{}", protocol.as_str())
}

pub fn parse_port_key(raw: &str) -> Option<(Port, Protocol)> {
    let (port, protocol) = raw.split_once('/')?;
    Some((Port::parse(port).ok()?, Protocol::parse(protocol).ok()?))
}

/// What the requester filled in, per VM and shared.
#[derive(Debug, Clone, Default)]
pub struct RequestInput<'a> {
    pub ports: Vec<(Port, Protocol)>,
    /// `my_ip` or `custom`.
    pub source_mode: &'a str,
    pub custom_source: &'a str,
    pub duration_minutes: &'a str,
    pub justification: &'a str,
    /// When the window should start: empty for now, else RFC 3339 (`2026-11-28T09:00:00Z`)
    /// or a date and time without a zone, read as UTC (the portal's field says so).
    pub start: &'a str,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestSpec {
    pub ports: Vec<(Port, Protocol)>,
    pub source: Cidr,
    pub duration_secs: i64,
    pub justification: String,
    pub needs_approval: bool,
    /// How long the request may wait for approval (the shortest time-out of the rules
    /// that require approval); `None` when it needs none.
    pub approval_timeout_secs: Option<i64>,
    /// How many distinct approvers must approve (see [`JitPolicy::approvals_required`]);
    /// decided again against the policy in force at each approval.
    #[serde(default)]
    pub approvals_required: Approvers,
    /// A later start (ms, whole seconds) when one was asked for; `None` opens it now (or at
    /// its approval).
    #[serde(default)]
    pub start_at: Option<i64>,
}

/// The reasons recorded when access ends or a request is closed by something other than
/// its own course; the activity log, the portal and the API show them as they are.
pub mod reason {
    pub const EXPIRED: &str = "expired";
    pub const REQUESTER_DISABLED: &str = "requester disabled";
    pub const REQUESTER_REMOVED: &str = "requester no longer exists";
    pub const LOST_PERMISSION: &str = "requester lost permission";
    pub const APPROVAL_TIMED_OUT: &str = "approval timed out";
    pub const POLICY_REMOVED: &str = "policy removed";
    pub const VM_REMOVED: &str = "VM removed";
    pub const PORT_REMOVED: &str = "port removed from policy";
    pub const PROTOCOL_NARROWED: &str = "protocol no longer allowed by the policy";
    pub const SOURCE_OUTSIDE: &str = "source outside the policy's allowed sources";
    pub const TOO_LONG: &str = "longer than the policy's maximum";
    pub const SHORTENED: &str = "shortened to the policy's new maximum";
    pub const SUPERSEDED: &str = "superseded by a newer request";
    pub const WINDOW_PASSED: &str = "scheduled window passed";
    pub const APPROVAL_LAPSED: &str = "its approval no longer stands";
}

/// Where a time window that starts at `start_ms` and lasts `secs` ends, on a whole second:
/// the portal and the API show seconds, so the port closes at the time they show (never
/// later than asked).
pub fn window_end(start_ms: i64, secs: i64) -> i64 {
    let end = start_ms.saturating_add(secs.saturating_mul(1000));
    end - end.rem_euclid(1000)
}

/// When a request that needs approval is closed if nobody decided it: `timeout_secs` after
/// it was made; for a window booked for later, not before its start (approvers have until
/// then, however short the time-out) and never after its end (nothing would be left).
pub fn approval_deadline(
    created_ms: i64,
    timeout_secs: i64,
    planned_start: Option<i64>,
    duration_secs: i64,
) -> i64 {
    let deadline = created_ms + timeout_secs * 1000;
    match planned_start {
        Some(start) => deadline.max(start).min(window_end(start, duration_secs)),
        None => deadline,
    }
}

/// How far in the past a start may lie and still mean "now": a form filled in at 10:00:40
/// with the current minute, 10:00, asks for now, not for an error.
pub const START_SLACK_MS: i64 = 5 * 60 * 1000;

/// A point in time as people and scripts write it: RFC 3339 with its offset, or a date
/// and time without one, read as UTC (`2026-12-01T09:00`, `2026-12-01 09:00:30`). In ms.
pub fn parse_instant(raw: &str) -> Option<i64> {
    let raw = raw.trim();
    chrono::DateTime::parse_from_rfc3339(raw)
        .map(|t| t.timestamp_millis())
        .ok()
        .or_else(|| {
            [
                "%Y-%m-%dT%H:%M:%S",
                "%Y-%m-%dT%H:%M",
                "%Y-%m-%d %H:%M:%S",
                "%Y-%m-%d %H:%M",
            ]
            .iter()
            .find_map(|f| chrono::NaiveDateTime::parse_from_str(raw, f).ok())
            .map(|t| t.and_utc().timestamp_millis())
        })
}

/// Reads a requested start: `None` for now (empty, or a time that has just passed),
/// else the time in ms on a whole second, no later than `max_lead` after `now_ms`.
pub fn parse_start(
    vm_name: &str,
    raw: &str,
    now_ms: i64,
    max_lead: LeadTime,
) -> Result<Option<i64>, String> {
    let raw = raw.trim();
    if raw.is_empty() {
        return Ok(None);
    }
    let at = parse_instant(raw).ok_or_else(|| {
        "Enter the start as a date and time, e.g. 2026-12-01T09:00 (UTC) or \
         2026-12-01T10:00:00+01:00."
            .to_owned()
    })?;
    let at = at - at.rem_euclid(1000);
    if at <= now_ms {
        return if now_ms - at <= START_SLACK_MS {
            Ok(None)
        } else {
            Err("The start has passed; leave it empty to start now.".into())
        };
    }
    if max_lead.secs() == 0 {
        return Err(format!(
            "Requests on {vm_name} cannot start later; leave the start empty."
        ));
    }
    if at - now_ms > max_lead.secs() * 1000 {
        return Err(format!(
            "Requests on {vm_name} may start at most {} days ahead.",
            max_lead.days()
        ));
    }
    Ok(Some(at))
}

/// Checks a request for one VM against its policy. `client_ip` is what "My IP" means;
/// `now_ms` is when it is made (a later start is measured from it).
pub fn parse_request(
    vm_name: &str,
    policy: &JitPolicy,
    input: &RequestInput<'_>,
    client_ip: IpAddr,
    now_ms: i64,
) -> Result<RequestSpec, FieldErrors> {
    let mut errors = FieldErrors::new();
    let mut rules = Vec::new();
    if input.ports.is_empty() {
        errors.add("ports", format!("Choose at least one port of {vm_name}."));
    }
    for (i, (port, protocol)) in input.ports.iter().enumerate() {
        if input.ports[..i].contains(&(*port, *protocol)) {
            errors.add(
                "ports",
                format!("Port {port}/{protocol} of {vm_name} is chosen twice."),
            );
            continue;
        }
        match policy.rule(*port, *protocol) {
            Some(rule) => rules.push(rule),
            None => errors.add(
                "ports",
                format!("Port {port}/{protocol} is not under JIT control on {vm_name}."),
            ),
        }
    }

    let source = match input.source_mode {
        "my_ip" | "" => Some(Cidr::host(client_ip)),
        "custom" => match Cidr::parse(input.custom_source) {
            Ok(c) if c.prefix_len() == 0 => {
                errors.add("source", "A source must not be every address.");
                None
            }
            Ok(c) => Some(c),
            Err(e) => {
                errors.add("source", e.to_string());
                None
            }
        },
        _ => {
            errors.add("source", "Choose My IP or enter an IP address or CIDR.");
            None
        }
    };
    if let Some(source) = &source {
        for rule in &rules {
            if let Err(why) = rule.admits(source) {
                errors.add("source", format!("{why} on {vm_name}."));
            }
        }
    }

    let max_secs = rules.iter().map(|r| r.max_duration.secs()).min();
    let duration_secs = match input.duration_minutes.trim().parse::<i64>() {
        Ok(m) if m.saturating_mul(60) < MIN_REQUEST_SECS => {
            errors.add("duration", "Request at least 1 minute.");
            None
        }
        Ok(m) => match max_secs {
            Some(max) if m.saturating_mul(60) > max => {
                errors.add(
                    "duration",
                    format!("Requests on {vm_name} are limited to {} minutes.", max / 60),
                );
                None
            }
            _ => Some(m * 60),
        },
        Err(_) => {
            errors.add("duration", "Enter the duration in whole minutes.");
            None
        }
    };

    let justification = input.justification.trim();
    if justification.chars().count() > MAX_JUSTIFICATION_CHARS {
        errors.add(
            "justification",
            format!("A justification has at most {MAX_JUSTIFICATION_CHARS} characters."),
        );
    } else if justification.is_empty() && rules.iter().any(|r| r.justification_required) {
        errors.add(
            "justification",
            format!("{vm_name} requires a justification."),
        );
    }

    let start_at = if rules.is_empty() {
        None
    } else {
        let lead = policy.max_lead(&input.ports);
        errors
            .check("start", parse_start(vm_name, input.start, now_ms, lead))
            .flatten()
    };

    errors.into_result()?;
    let (Some(source), Some(duration_secs)) = (source, duration_secs) else {
        return Err(FieldErrors::single("ports", "The request is incomplete."));
    };
    Ok(RequestSpec {
        ports: input.ports.clone(),
        source,
        duration_secs,
        justification: justification.to_owned(),
        needs_approval: rules.iter().any(|r| r.approval_required),
        approval_timeout_secs: rules
            .iter()
            .filter(|r| r.approval_required)
            .map(|r| r.approval_timeout.secs())
            .min(),
        approvals_required: policy.approvals_required(&input.ports),
        start_at,
    })
}

/// One VM's chosen ports, in the parts that become requests of their own: the ports that
/// need no approval (they open at once) and those that do (they wait), so that asking for
/// both together neither holds the first back nor lets the second skip its approval.
/// Ports outside the policy go with the first part, where [`parse_request`] names them.
/// Empty parts are left out; the order of the ports is kept within each part.
pub fn split_by_approval(
    policy: &JitPolicy,
    ports: &[(Port, Protocol)],
) -> Vec<Vec<(Port, Protocol)>> {
    let (waiting, at_once): (Vec<_>, Vec<_>) = ports.iter().partition(|(port, protocol)| {
        policy
            .rule_covering(*port, *protocol)
            .is_some_and(|r| r.approval_required)
    });
    [at_once, waiting]
        .into_iter()
        .filter(|part| !part.is_empty())
        .collect()
}

/// Why a request can no longer be granted as asked, or a grant no longer stands, under
/// the VM's policy as it is now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Misfit {
    /// The short reason recorded with the request or grant (see [`reason`]).
    pub reason: &'static str,
    /// What the person deciding is told.
    pub message: String,
}

fn port_misfit(policy: &JitPolicy, port: Port, protocol: Protocol) -> Misfit {
    if policy.rules.iter().any(|r| r.port == port) {
        Misfit {
            reason: reason::PROTOCOL_NARROWED,
            message: format!("Port {port} no longer allows {protocol} under the JIT policy."),
        }
    } else {
        Misfit {
            reason: reason::PORT_REMOVED,
            message: format!("Port {port}/{protocol} is no longer under the JIT policy."),
        }
    }
}

/// Re-checks a request against the policy in force at decision time: every port still
/// has its rule, the source still lies in each rule's sources, and the duration still fits
/// each rule's maximum. The first failure is returned.
pub fn recheck_request(
    policy: Option<&JitPolicy>,
    ports: &[(Port, Protocol)],
    source: &Cidr,
    duration_secs: i64,
) -> Result<(), Misfit> {
    let Some(policy) = policy else {
        return Err(Misfit {
            reason: reason::POLICY_REMOVED,
            message: "The VM no longer has a JIT policy.".into(),
        });
    };
    for (port, protocol) in ports {
        let Some(rule) = policy.rule_covering(*port, *protocol) else {
            return Err(port_misfit(policy, *port, *protocol));
        };
        if let Err(why) = rule.admits(source) {
            return Err(Misfit {
                reason: reason::SOURCE_OUTSIDE,
                message: format!("{why} now."),
            });
        }
        if duration_secs > rule.max_duration.secs() {
            return Err(Misfit {
                reason: reason::TOO_LONG,
                message: format!(
                    "The request's {} minutes exceed the {} minutes port {port} now allows.",
                    duration_secs / 60,
                    rule.max_duration.secs() / 60
                ),
            });
        }
    }
    Ok(())
}

/// What becomes of a grant in force when its VM's policy changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GrantFate {
    Keep,
    /// Ends at this earlier time instead (start of its window + the new maximum).
    Shorten(i64),
    End(&'static str),
}

/// Decides a grant's fate under a new policy: ended when its port, protocol or source no
/// longer fits; shortened when it outlasts the new maximum counted from the start of its
/// window (its start, or its last extension); ended when that is already past.
pub fn grant_fate(
    policy: &JitPolicy,
    port: Port,
    protocol: Protocol,
    source: &Cidr,
    window_start_ms: i64,
    end_ms: i64,
    now_ms: i64,
) -> GrantFate {
    let Some(rule) = policy.rule_covering(port, protocol) else {
        return GrantFate::End(port_misfit(policy, port, protocol).reason);
    };
    if rule.admits(source).is_err() {
        return GrantFate::End(reason::SOURCE_OUTSIDE);
    }
    let latest = window_end(window_start_ms, rule.max_duration.secs());
    if end_ms <= latest {
        GrantFate::Keep
    } else if latest <= now_ms {
        GrantFate::End(reason::TOO_LONG)
    } else {
        GrantFate::Shorten(latest)
    }
}

/// The status of a whole request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum RequestStatus {
    PendingApproval,
    Approved,
    Active,
    Expired,
    Denied,
    Revoked,
    Failed,
    /// Closed before a decision by the system: approval timed out, the requester was
    /// disabled or lost permission, the policy changed.
    Cancelled,
}

/// The status of one requested port. `Superseded` means a newer request for the same
/// port and source took over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum PortStatus {
    Pending,
    Active,
    Expired,
    Revoked,
    Denied,
    Superseded,
    Failed,
    Cancelled,
}

macro_rules! string_enum {
    ($t:ty { $($v:ident => $s:literal),* $(,)? }) => {
        impl $t {
            pub fn as_str(self) -> &'static str {
                match self { $(Self::$v => $s),* }
            }
            pub fn parse(raw: &str) -> Option<Self> {
                match raw { $($s => Some(Self::$v),)* _ => None }
            }
        }
        impl std::fmt::Display for $t {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

string_enum!(RequestStatus {
    PendingApproval => "pending_approval",
    Approved => "approved",
    Active => "active",
    Expired => "expired",
    Denied => "denied",
    Revoked => "revoked",
    Failed => "failed",
    Cancelled => "cancelled",
});

string_enum!(PortStatus {
    Pending => "pending",
    Active => "active",
    Expired => "expired",
    Revoked => "revoked",
    Denied => "denied",
    Superseded => "superseded",
    Failed => "failed",
    Cancelled => "cancelled",
});

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    Approve,
    Deny,
    Activate,
    Expire,
    Revoke,
    Extend,
    Fail,
    Cancel,
}

#[derive(Debug, Error, PartialEq, Eq)]
#[error("A request that is {from} cannot be {verb}.")]
pub struct TransitionError {
    pub from: &'static str,
    pub verb: &'static str,
}

impl Event {
    fn verb(self) -> &'static str {
        match self {
            Event::Approve => "approved",
            Event::Deny => "denied",
            Event::Activate => "activated",
            Event::Expire => "expired",
            Event::Revoke => "revoked",
            Event::Extend => "extended",
            Event::Fail => "failed",
            Event::Cancel => "cancelled",
        }
    }
}

impl RequestStatus {
    pub fn is_final(self) -> bool {
        matches!(
            self,
            RequestStatus::Expired
                | RequestStatus::Denied
                | RequestStatus::Revoked
                | RequestStatus::Failed
                | RequestStatus::Cancelled
        )
    }

    /// The one place that says which transitions exist.
    pub fn on(self, event: Event) -> Result<RequestStatus, TransitionError> {
        use Event::*;
        use RequestStatus::*;
        let next = match (self, event) {
            (PendingApproval, Approve) => Approved,
            (PendingApproval, Deny) => Denied,
            (PendingApproval | Approved | Active, Revoke) => Revoked,
            (Approved, Activate) => Active,
            (Active, Expire) => Expired,
            (Active, Extend) => Active,
            (Approved | Active, Fail) => Failed,
            (PendingApproval | Approved, Cancel) => Cancelled,
            _ => {
                return Err(TransitionError {
                    from: self.label(),
                    verb: event.verb(),
                });
            }
        };
        Ok(next)
    }

    pub fn label(self) -> &'static str {
        match self {
            RequestStatus::PendingApproval => "pending approval",
            RequestStatus::Approved => "approved",
            RequestStatus::Active => "active",
            RequestStatus::Expired => "expired",
            RequestStatus::Denied => "denied",
            RequestStatus::Revoked => "revoked",
            RequestStatus::Failed => "failed",
            RequestStatus::Cancelled => "cancelled",
        }
    }

    /// What a port of a request in this status is.
    pub fn port_status(self) -> PortStatus {
        match self {
            RequestStatus::PendingApproval | RequestStatus::Approved => PortStatus::Pending,
            RequestStatus::Active => PortStatus::Active,
            RequestStatus::Expired => PortStatus::Expired,
            RequestStatus::Denied => PortStatus::Denied,
            RequestStatus::Revoked => PortStatus::Revoked,
            RequestStatus::Failed => PortStatus::Failed,
            RequestStatus::Cancelled => PortStatus::Cancelled,
        }
    }
}

/// Extending sets the end to `now + minutes`, bounded by the smallest maximum of the
/// request's port rules, and never shortens a grant.
pub fn extended_end(
    now_ms: i64,
    current_end_ms: i64,
    minutes: &str,
    max_secs: i64,
) -> Result<i64, FieldErrors> {
    let m: i64 = minutes
        .trim()
        .parse()
        .map_err(|_| FieldErrors::single("duration", "Enter the duration in whole minutes."))?;
    if m < 1 {
        return Err(FieldErrors::single(
            "duration",
            "Request at least 1 minute.",
        ));
    }
    if m.saturating_mul(60) > max_secs {
        return Err(FieldErrors::single(
            "duration",
            format!("The policy allows at most {} minutes.", max_secs / 60),
        ));
    }
    let end = window_end(now_ms, m * 60);
    if end <= current_end_ms {
        return Err(FieldErrors::single(
            "duration",
            "The access already lasts longer than that.",
        ));
    }
    Ok(end)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::jit::{
        AllowedSources, ApprovalTimeout, MaxDuration, PortRule, WidestPrefix,
    };

    fn policy() -> JitPolicy {
        JitPolicy {
            rules: vec![
                PortRule {
                    port: Port::parse("22").unwrap(),
                    protocol: Protocol::Tcp,
                    allowed_sources: AllowedSources::PerRequest,
                    max_duration: MaxDuration::parse_minutes("60").unwrap(),
                    justification_required: false,
                    approval_required: false,
                    approval_timeout: ApprovalTimeout::default(),
                    widest_source: WidestPrefix::default(),
                    approvals_required: Default::default(),
                    max_lead: Default::default(),
                },
                PortRule {
                    port: Port::parse("3389").unwrap(),
                    protocol: Protocol::Tcp,
                    allowed_sources: AllowedSources::parse("198.51.100.0/24, 2001:db8::/32")
                        .unwrap(),
                    max_duration: MaxDuration::parse_minutes("180").unwrap(),
                    justification_required: true,
                    approval_required: true,
                    approval_timeout: ApprovalTimeout::default(),
                    widest_source: WidestPrefix::default(),
                    approvals_required: Default::default(),
                    max_lead: Default::default(),
                },
            ],
        }
    }

    fn p(port: &str) -> (Port, Protocol) {
        (Port::parse(port).unwrap(), Protocol::Tcp)
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn ports_that_need_approval_are_asked_apart_from_those_that_open_at_once() {
        let policy = policy();
        assert_eq!(
            split_by_approval(&policy, &[p("3389"), p("22")]),
            vec![vec![p("22")], vec![p("3389")]]
        );
        assert_eq!(split_by_approval(&policy, &[p("22")]), vec![vec![p("22")]]);
        assert_eq!(
            split_by_approval(&policy, &[p("3389")]),
            vec![vec![p("3389")]]
        );
        assert!(split_by_approval(&policy, &[]).is_empty());
        // A port outside the policy stays with the first part, where parse_request names it.
        assert_eq!(
            split_by_approval(&policy, &[p("3389"), p("8080")]),
            vec![vec![p("8080")], vec![p("3389")]]
        );
        // Each part parses on its own: the one without approval opens at once.
        let parts = split_by_approval(&policy, &[p("22"), p("3389")]);
        let specs: Vec<RequestSpec> = parts
            .into_iter()
            .map(|ports| {
                let input = RequestInput {
                    ports,
                    source_mode: "custom",
                    custom_source: "198.51.100.7",
                    duration_minutes: "30",
                    justification: "patching",
                    start: "",
                };
                parse_request("web-1", &policy, &input, ip("203.0.113.9"), NOW).unwrap()
            })
            .collect();
        assert_eq!(
            specs.iter().map(|s| s.needs_approval).collect::<Vec<_>>(),
            vec![false, true]
        );
    }

    proptest::proptest! {
        /// Every chosen port lands in exactly one part, in its order, and each part is all
        /// "opens at once" or all "waits", the first never waiting when both exist.
        #[test]
        fn splitting_keeps_every_port_once_and_each_part_uniform(
            picks in proptest::collection::vec(0usize..3, 0..6)
        ) {
            let policy = policy();
            let choices = [p("22"), p("3389"), p("8080")];
            let ports: Vec<_> = picks.iter().map(|i| choices[*i]).collect();
            let parts = split_by_approval(&policy, &ports);
            let waits = |port: &(Port, Protocol)| {
                policy.rule_covering(port.0, port.1).is_some_and(|r| r.approval_required)
            };
            proptest::prop_assert!(parts.len() <= 2);
            let mut joined: Vec<_> = parts.concat();
            let mut expected = ports.clone();
            joined.sort_by_key(|(port, _)| port.get());
            expected.sort_by_key(|(port, _)| port.get());
            proptest::prop_assert_eq!(joined, expected);
            for part in &parts {
                proptest::prop_assert!(!part.is_empty());
                proptest::prop_assert!(part.iter().all(waits) || !part.iter().any(waits));
                // In the order chosen: the part is the chosen ports of its kind.
                let of_kind: Vec<_> = ports
                    .iter()
                    .filter(|x| waits(x) == waits(&part[0]))
                    .copied()
                    .collect();
                proptest::prop_assert_eq!(part, &of_kind);
            }
            if parts.len() == 2 {
                proptest::prop_assert!(!parts[0].iter().any(waits));
            }
        }
    }

    /// 2027-01-15 08:00:00 UTC.
    const NOW: i64 = 1_800_000_000_000;

    fn at(ms: i64, format: &str) -> String {
        chrono::DateTime::from_timestamp_millis(ms)
            .unwrap()
            .format(format)
            .to_string()
    }

    #[test]
    fn a_later_start_is_read_in_utc_or_with_its_offset_within_the_lead_time() {
        let week = LeadTime::default();
        assert_eq!(parse_start("vm", "", NOW, week), Ok(None));
        let in_an_hour = NOW + 3_600_000;
        assert_eq!(
            parse_start("vm", &at(in_an_hour, "%Y-%m-%dT%H:%M"), NOW, week),
            Ok(Some(in_an_hour))
        );
        assert_eq!(
            parse_start("vm", &at(in_an_hour, "%Y-%m-%d %H:%M:%S"), NOW, week),
            Ok(Some(in_an_hour))
        );
        assert_eq!(
            parse_start("vm", "2027-01-15T10:30:00+01:00", NOW, week),
            Ok(Some(NOW + 5_400_000)),
            "an offset counts"
        );
        assert_eq!(
            parse_start("vm", "2027-01-15T08:00:00.750Z", NOW, week),
            Ok(None),
            "now, to the second, is now"
        );
        assert_eq!(
            parse_start("vm", "2027-01-15T07:58:00Z", NOW, week),
            Ok(None),
            "the current minute of a form filled in a moment ago"
        );
        let past = parse_start("vm", "2027-01-15T07:00:00Z", NOW, week).unwrap_err();
        assert!(past.contains("has passed"), "{past}");
        let eight_days = at(NOW + 8 * 86_400_000, "%Y-%m-%dT%H:%M");
        let far = parse_start("win-1", &eight_days, NOW, week).unwrap_err();
        assert_eq!(far, "Requests on win-1 may start at most 7 days ahead.");
        let none = parse_start(
            "win-1",
            &at(in_an_hour, "%Y-%m-%dT%H:%M"),
            NOW,
            LeadTime::parse_days("0").unwrap(),
        )
        .unwrap_err();
        assert!(none.contains("cannot start later"), "{none}");
        for bad in [
            "tomorrow",
            "2027-13-01T00:00",
            "15/01/2027 09:00",
            "2027-01-15",
        ] {
            assert!(parse_start("vm", bad, NOW, week).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_request_carries_its_start_and_a_bad_one_is_an_error_on_the_start_field() {
        let start = at(NOW + 2 * 86_400_000, "%Y-%m-%dT%H:%M");
        let input = RequestInput {
            ports: vec![p("22")],
            duration_minutes: "10",
            start: &start,
            ..Default::default()
        };
        let spec = parse_request("web-1", &policy(), &input, ip("203.0.113.7"), NOW).unwrap();
        assert_eq!(spec.start_at, Some(NOW + 2 * 86_400_000));
        let late = at(NOW + 9 * 86_400_000, "%Y-%m-%dT%H:%M");
        let input = RequestInput {
            start: &late,
            ..input
        };
        let e = parse_request("web-1", &policy(), &input, ip("203.0.113.7"), NOW).unwrap_err();
        assert!(e.get("start").unwrap().contains("7 days ahead"));
    }

    #[test]
    fn my_ip_becomes_a_host_prefix() {
        let input = RequestInput {
            ports: vec![p("22")],
            source_mode: "my_ip",
            duration_minutes: "10",
            ..Default::default()
        };
        let spec = parse_request("web-1", &policy(), &input, ip("203.0.113.7"), NOW).unwrap();
        assert_eq!(spec.source.to_string(), "203.0.113.7/32");
        assert_eq!(spec.duration_secs, 600);
        assert!(!spec.needs_approval);
        let spec = parse_request("web-1", &policy(), &input, ip("2001:db8::5"), NOW).unwrap();
        assert_eq!(spec.source.to_string(), "2001:db8::5/128");
    }

    #[test]
    fn sources_must_lie_inside_allowed_prefixes() {
        let mut input = RequestInput {
            ports: vec![p("3389")],
            source_mode: "custom",
            custom_source: "198.51.100.10",
            duration_minutes: "30",
            justification: "patching",
            start: "",
        };
        let spec = parse_request("win-1", &policy(), &input, ip("127.0.0.1"), NOW).unwrap();
        assert!(spec.needs_approval);
        input.custom_source = "203.0.113.7";
        let e = parse_request("win-1", &policy(), &input, ip("127.0.0.1"), NOW).unwrap_err();
        assert!(e.get("source").unwrap().contains("outside"));
        input.custom_source = "198.51.0.0/16";
        assert!(parse_request("win-1", &policy(), &input, ip("127.0.0.1"), NOW).is_err());
        input.custom_source = "198.51.100.300";
        assert!(
            parse_request("win-1", &policy(), &input, ip("127.0.0.1"), NOW)
                .unwrap_err()
                .get("source")
                .is_some()
        );
    }

    #[test]
    fn duration_and_justification_follow_the_policy() {
        let input = RequestInput {
            ports: vec![p("22"), p("3389")],
            source_mode: "custom",
            custom_source: "198.51.100.0/24",
            duration_minutes: "90",
            justification: "",
            start: "",
        };
        let e = parse_request("vm", &policy(), &input, ip("127.0.0.1"), NOW).unwrap_err();
        assert_eq!(
            e.get("duration"),
            Some("Requests on vm are limited to 60 minutes.")
        );
        assert_eq!(e.get("justification"), Some("vm requires a justification."));
        let long = "x".repeat(501);
        let input = RequestInput {
            ports: vec![p("22")],
            duration_minutes: "0",
            justification: &long,
            ..Default::default()
        };
        let e = parse_request("vm", &policy(), &input, ip("127.0.0.1"), NOW).unwrap_err();
        assert!(e.get("duration").is_some());
        assert!(e.get("justification").is_some());
        let input = RequestInput {
            ports: vec![p("8080")],
            duration_minutes: "5",
            ..Default::default()
        };
        assert!(
            parse_request("vm", &policy(), &input, ip("127.0.0.1"), NOW)
                .unwrap_err()
                .get("ports")
                .is_some()
        );
        let input = RequestInput {
            ports: vec![],
            duration_minutes: "5",
            ..Default::default()
        };
        assert!(
            parse_request("vm", &policy(), &input, ip("127.0.0.1"), NOW)
                .unwrap_err()
                .get("ports")
                .is_some()
        );
    }

    #[test]
    fn state_machine_allows_only_the_documented_transitions() {
        use Event::*;
        use RequestStatus::*;
        let all = [
            PendingApproval,
            Approved,
            Active,
            Expired,
            Denied,
            Revoked,
            Failed,
            Cancelled,
        ];
        let events = [
            Approve, Deny, Activate, Expire, Revoke, Extend, Fail, Cancel,
        ];
        let allowed = [
            (PendingApproval, Approve, Approved),
            (PendingApproval, Deny, Denied),
            (PendingApproval, Revoke, Revoked),
            (Approved, Activate, Active),
            (Approved, Revoke, Revoked),
            (Approved, Fail, Failed),
            (Active, Expire, Expired),
            (Active, Revoke, Revoked),
            (Active, Extend, Active),
            (Active, Fail, Failed),
            (PendingApproval, Cancel, Cancelled),
            (Approved, Cancel, Cancelled),
        ];
        for from in all {
            for event in events {
                let expected = allowed
                    .iter()
                    .find(|(f, e, _)| *f == from && *e == event)
                    .map(|(_, _, to)| *to);
                assert_eq!(from.on(event).ok(), expected, "{from:?} + {event:?}");
            }
            if from.is_final() {
                assert!(
                    events.iter().all(|e| from.on(*e).is_err()),
                    "{from:?} is final"
                );
            }
        }
        assert_eq!(
            Expired.on(Revoke).unwrap_err().to_string(),
            "A request that is expired cannot be revoked."
        );
    }

    #[test]
    fn statuses_round_trip_as_text() {
        for s in [
            RequestStatus::PendingApproval,
            RequestStatus::Active,
            RequestStatus::Failed,
        ] {
            assert_eq!(RequestStatus::parse(s.as_str()), Some(s));
        }
        assert_eq!(
            PortStatus::parse("superseded"),
            Some(PortStatus::Superseded)
        );
        assert_eq!(
            parse_port_key("22/tcp"),
            Some((Port::parse("22").unwrap(), Protocol::Tcp))
        );
        assert_eq!(parse_port_key("22"), None);
    }

    #[test]
    fn duplicate_ports_and_wide_or_mapped_sources_are_refused() {
        let input = RequestInput {
            ports: vec![p("22"), p("22")],
            source_mode: "my_ip",
            duration_minutes: "10",
            ..Default::default()
        };
        let e = parse_request("web-1", &policy(), &input, ip("203.0.113.7"), NOW).unwrap_err();
        assert_eq!(
            e.get("ports"),
            Some("Port 22/TCP of web-1 is chosen twice.")
        );
        let wide = RequestInput {
            ports: vec![p("22")],
            source_mode: "custom",
            custom_source: "0.0.0.0/1",
            duration_minutes: "10",
            ..Default::default()
        };
        let e = parse_request("web-1", &policy(), &wide, ip("203.0.113.7"), NOW).unwrap_err();
        assert!(e.get("source").unwrap().contains("wider than the /24"));
        let mapped = RequestInput {
            ports: vec![p("3389")],
            source_mode: "custom",
            custom_source: "::ffff:198.51.100.0/103",
            duration_minutes: "10",
            justification: "x",
            start: "",
        };
        let e = parse_request("win-1", &policy(), &mapped, ip("203.0.113.7"), NOW).unwrap_err();
        assert!(e.get("source").unwrap().contains("198.0.0.0/7"), "{e:?}");
        let mapped_host = RequestInput {
            custom_source: "::ffff:198.51.100.9",
            ..mapped
        };
        let spec = parse_request("win-1", &policy(), &mapped_host, ip("203.0.113.7"), NOW).unwrap();
        assert_eq!(spec.source.to_string(), "198.51.100.9/32");
        assert_eq!(spec.approval_timeout_secs, Some(3600));
        assert_eq!(spec.approvals_required, Approvers::ONE);
    }

    #[test]
    fn a_request_is_rechecked_against_the_policy_in_force() {
        let src = Cidr::parse("198.51.100.10").unwrap();
        let pol = policy();
        assert_eq!(
            recheck_request(Some(&pol), &[p("3389")], &src, 1800),
            Ok(())
        );
        assert_eq!(
            recheck_request(None, &[p("3389")], &src, 1800)
                .unwrap_err()
                .reason,
            reason::POLICY_REMOVED
        );
        assert_eq!(
            recheck_request(Some(&pol), &[p("8080")], &src, 60)
                .unwrap_err()
                .reason,
            reason::PORT_REMOVED
        );
        let udp = (Port::parse("22").unwrap(), Protocol::Udp);
        assert_eq!(
            recheck_request(Some(&pol), &[udp], &src, 60)
                .unwrap_err()
                .reason,
            reason::PROTOCOL_NARROWED
        );
        let outside = Cidr::parse("203.0.113.7").unwrap();
        let m = recheck_request(Some(&pol), &[p("3389")], &outside, 60).unwrap_err();
        assert_eq!(m.reason, reason::SOURCE_OUTSIDE);
        assert!(
            m.message.contains("203.0.113.7/32 is outside"),
            "{}",
            m.message
        );
        let m = recheck_request(Some(&pol), &[p("22")], &src, 7200).unwrap_err();
        assert_eq!(m.reason, reason::TOO_LONG);
        assert_eq!(
            m.message,
            "The request's 120 minutes exceed the 60 minutes port 22 now allows."
        );
    }

    #[test]
    fn grants_are_kept_shortened_or_ended_by_a_new_policy() {
        let pol = policy();
        let src = Cidr::parse("198.51.100.10").unwrap();
        let start = 1_000_000;
        let now = start + 10 * 60_000;
        let fate = |port: &str, end: i64| {
            grant_fate(&pol, p(port).0, Protocol::Tcp, &src, start, end, now)
        };
        assert_eq!(fate("22", start + 60 * 60_000), GrantFate::Keep);
        assert_eq!(
            fate("22", start + 90 * 60_000),
            GrantFate::Shorten(start + 60 * 60_000)
        );
        assert_eq!(
            fate("8080", start + 60_000),
            GrantFate::End(reason::PORT_REMOVED)
        );
        let late_start = start - 3 * 3_600_000;
        assert_eq!(
            grant_fate(
                &pol,
                p("22").0,
                Protocol::Tcp,
                &src,
                late_start,
                now + 60_000,
                now
            ),
            GrantFate::End(reason::TOO_LONG)
        );
        let outside = Cidr::parse("203.0.113.7").unwrap();
        assert_eq!(
            grant_fate(
                &pol,
                p("3389").0,
                Protocol::Tcp,
                &outside,
                start,
                now + 60_000,
                now
            ),
            GrantFate::End(reason::SOURCE_OUTSIDE)
        );
        assert_eq!(
            grant_fate(
                &pol,
                p("22").0,
                Protocol::Any,
                &src,
                start,
                now + 60_000,
                now
            ),
            GrantFate::End(reason::PROTOCOL_NARROWED)
        );
    }

    #[test]
    fn windows_end_on_whole_seconds() {
        assert_eq!(window_end(1_000_999, 60), 1_060_000);
        assert_eq!(window_end(1_000_000, 60), 1_060_000);
        assert_eq!(window_end(999, 0), 0);
    }

    #[test]
    fn extension_is_bounded_and_never_shortens() {
        let now = 1_000_000;
        assert_eq!(
            extended_end(now, now + 60_000, "30", 3600).unwrap(),
            now + 30 * 60_000
        );
        assert!(extended_end(now, now + 60_000, "61", 3600).is_err());
        assert!(extended_end(now, now + 3_600_000, "30", 3600).is_err());
        assert!(extended_end(now, now, "abc", 3600).is_err());
    }
}
