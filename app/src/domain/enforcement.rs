//! What the portal says about a VM's enforcement. One reading of what the agent reported,
//! shared by the JIT tabs, the VM page and the REST API, so that none of them claims more
//! than the agent said: "Enforced" only once the agent applied the VM's current state, a
//! missing or silent agent as a warning or an error rather than a quiet line of text, and
//! on the Not configured tab the reason a VM is not recommended.

/// After this long without a poll or report an enrolled agent counts as silent.
pub const SILENT_AFTER_MS: i64 = 90_000;

/// How a status is shown: the badge's colour and icon, and its word for screen readers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// Enforced as configured.
    Ok,
    /// On its way: the agent has not applied the latest change yet.
    Info,
    /// Not protected, and nothing is broken: no agent yet.
    Warning,
    /// Something failed: a silent agent, a rule set the host refused.
    Error,
    /// Nothing to enforce (no JIT policy): a fact, neither good nor bad.
    Neutral,
}

impl Level {
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Ok => "ok",
            Level::Info => "info",
            Level::Warning => "warning",
            Level::Error => "error",
            Level::Neutral => "neutral",
        }
    }
}

/// What is known of a VM and its agent.
#[derive(Debug, Clone, Copy)]
pub struct AgentFacts<'a> {
    pub enrolled: bool,
    pub last_seen: Option<i64>,
    /// The error of the agent's last report; empty when it applied its state.
    pub error: &'a str,
    pub generation: i64,
    pub applied_generation: i64,
    /// Whether the VM has a JIT policy.
    pub configured: bool,
    pub open_grants: usize,
    /// Management ports recorded (by hand) or reported listening (by the agent).
    pub exposed_ports: &'a str,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    pub level: Level,
    pub text: String,
}

fn status(level: Level, text: impl Into<String>) -> Status {
    Status {
        level,
        text: text.into(),
    }
}

/// The VM's enforcement status at `now_ms`; `utc` formats an instant for the text.
pub fn of(f: &AgentFacts<'_>, now_ms: i64, utc: impl Fn(i64) -> String) -> Status {
    if !f.enrolled {
        return match (f.configured, f.exposed_ports.is_empty()) {
            (true, _) => status(Level::Warning, "Not enforced: no agent"),
            (false, false) => status(Level::Neutral, "No agent enrolled"),
            (false, true) => status(
                Level::Neutral,
                "No agent enrolled; no management port recorded",
            ),
        };
    }
    let Some(seen) = f.last_seen else {
        return status(Level::Warning, "Agent enrolled, never connected");
    };
    if now_ms - seen > SILENT_AFTER_MS {
        return status(Level::Error, format!("Agent silent since {}", utc(seen)));
    }
    if !f.error.is_empty() {
        let what = if f.configured {
            "Enforcement error"
        } else {
            "Cannot enforce"
        };
        return status(Level::Error, format!("{what}: {}", f.error));
    }
    if f.applied_generation < f.generation {
        return status(Level::Info, "Initiated: waiting for the agent");
    }
    match (f.configured, f.open_grants, f.exposed_ports.is_empty()) {
        (true, 0, _) => status(Level::Ok, "Enforced: ports closed"),
        (true, 1, _) => status(Level::Ok, "Enforced: 1 grant open"),
        (true, n, _) => status(Level::Ok, format!("Enforced: {n} grants open")),
        (false, _, true) => status(Level::Neutral, "Agent reports no management port listening"),
        (false, _, false) => status(Level::Neutral, "Agent connected; JIT not enabled"),
    }
}

/// What is known of one grant in force on its VM.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grant {
    /// The VM has no agent: nothing enforces it.
    NoAgent,
    /// A report without error covered a generation holding it (`enforced_at` is set).
    Applied,
    /// Not applied yet, and the agent's last attempt failed.
    Failed,
    /// Not applied yet: the agent has not reported the generation that holds it.
    Waiting,
}

/// A grant's state from its VM's agent and whether it was ever reported applied. The
/// agent reports the generation it attempted even when the attempt failed, so "applied"
/// comes from the grant's own `enforced_at`, never from comparing generations.
pub fn grant(has_agent: bool, enforced: bool, agent_error: &str) -> Grant {
    match (has_agent, enforced, agent_error.is_empty()) {
        (false, ..) => Grant::NoAgent,
        (true, true, _) => Grant::Applied,
        (true, false, false) => Grant::Failed,
        (true, false, true) => Grant::Waiting,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const NOW: i64 = 1_000_000_000;

    fn working() -> AgentFacts<'static> {
        AgentFacts {
            enrolled: true,
            last_seen: Some(NOW - 1_000),
            error: "",
            generation: 4,
            applied_generation: 4,
            configured: true,
            open_grants: 0,
            exposed_ports: "22",
        }
    }

    fn said(f: AgentFacts<'_>) -> (Level, String) {
        let s = of(&f, NOW, |ms| format!("@{ms}"));
        (s.level, s.text)
    }

    #[test]
    fn enforced_only_once_the_agent_applied_the_current_state() {
        assert_eq!(
            said(working()),
            (Level::Ok, "Enforced: ports closed".into())
        );
        let behind = AgentFacts {
            applied_generation: 3,
            open_grants: 1,
            ..working()
        };
        assert_eq!(
            said(behind),
            (Level::Info, "Initiated: waiting for the agent".into())
        );
        let open = AgentFacts {
            open_grants: 2,
            ..working()
        };
        assert_eq!(said(open).1, "Enforced: 2 grants open");
    }

    #[test]
    fn a_missing_agent_is_a_warning_where_a_policy_expects_one() {
        let none = AgentFacts {
            enrolled: false,
            last_seen: None,
            ..working()
        };
        assert_eq!(
            said(none),
            (Level::Warning, "Not enforced: no agent".into())
        );
        let unconfigured = AgentFacts {
            configured: false,
            ..none
        };
        assert_eq!(said(unconfigured).0, Level::Neutral);
        let never = AgentFacts {
            last_seen: None,
            ..working()
        };
        assert_eq!(said(never).0, Level::Warning);
    }

    #[test]
    fn silence_and_errors_are_errors_and_silence_comes_first() {
        let silent = AgentFacts {
            last_seen: Some(NOW - SILENT_AFTER_MS - 1),
            error: "nft: not found",
            ..working()
        };
        assert_eq!(
            said(silent),
            (
                Level::Error,
                format!("Agent silent since @{}", NOW - SILENT_AFTER_MS - 1)
            )
        );
        let failing = AgentFacts {
            error: "nft: syntax error",
            ..working()
        };
        assert_eq!(
            said(failing),
            (Level::Error, "Enforcement error: nft: syntax error".into())
        );
        let unconfigured = AgentFacts {
            configured: false,
            ..failing
        };
        assert_eq!(said(unconfigured).1, "Cannot enforce: nft: syntax error");
    }

    #[test]
    fn a_vm_off_the_recommended_tab_says_why() {
        let quiet = AgentFacts {
            configured: false,
            exposed_ports: "",
            ..working()
        };
        assert_eq!(
            said(quiet),
            (
                Level::Neutral,
                "Agent reports no management port listening".into()
            )
        );
    }

    #[test]
    fn a_grant_is_applied_only_once_reported_so() {
        assert_eq!(grant(false, true, ""), Grant::NoAgent);
        assert_eq!(grant(true, true, "nft: boom"), Grant::Applied);
        assert_eq!(grant(true, false, "nft: boom"), Grant::Failed);
        assert_eq!(grant(true, false, ""), Grant::Waiting);
    }

    proptest! {
        /// Whatever the facts, "Enforced" and the green badge go together, and only when an
        /// agent that is heard from, without error, applied the current generation of a
        /// configured VM.
        #[test]
        fn ok_means_enforced(
            enrolled: bool,
            seen_ago in proptest::option::of(0i64..200_000),
            failing: bool,
            generation in 0i64..5,
            applied in -1i64..5,
            configured: bool,
            open_grants in 0usize..4,
            exposed: bool,
        ) {
            let f = AgentFacts {
                enrolled,
                last_seen: seen_ago.map(|a| NOW - a),
                error: if failing { "boom" } else { "" },
                generation,
                applied_generation: applied,
                configured,
                open_grants,
                exposed_ports: if exposed { "22" } else { "" },
            };
            let (level, text) = said(f);
            let really = enrolled
                && seen_ago.is_some_and(|a| a <= SILENT_AFTER_MS)
                && !failing
                && applied >= generation
                && configured;
            prop_assert_eq!(level == Level::Ok, really);
            prop_assert_eq!(text.starts_with("Enforced"), really);
        }
    }
}
