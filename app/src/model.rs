//! The shapes that cross the wire between server functions and pages. They are views
//! built from domain values, never store rows.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoleView {
    pub id: String,
    pub role: String,
    pub scope: String,
    /// Set for a role held through an identity-provider group rule rather than assigned
    /// directly; such a role is removed by editing the rule, not the user.
    #[serde(default)]
    pub via_group: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserView {
    pub id: String,
    pub username: String,
    pub display_name: String,
    pub must_change_password: bool,
    pub roles: Vec<RoleView>,
    /// Precomputed so that pages show or hide admin navigation without their own rules.
    /// Hiding is cosmetic: every server function checks again.
    pub can_manage_users: bool,
    /// Signed in through an identity provider: there is no local password to change.
    #[serde(default)]
    pub federated: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserRow {
    pub id: String,
    pub username: String,
    pub display_name: String,
    pub disabled: bool,
    pub must_change_password: bool,
    pub roles: Vec<RoleView>,
    /// How the user signs in, e.g. `corp: alice@example.org (groups: ops, staff)`; empty
    /// for a local account.
    #[serde(default)]
    pub identity: String,
    /// Has a password here (an administrator may reset it).
    #[serde(default)]
    pub local_password: bool,
}

/// How visitors may sign in: the password form (unless switched off) and one button per
/// configured identity provider.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct SignInOptions {
    pub local_accounts: bool,
    pub providers: Vec<ProviderButton>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProviderButton {
    pub id: String,
    pub name: String,
}

/// A rule "members of this IdP group hold this role".
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupRuleView {
    pub id: String,
    pub provider: String,
    pub group: String,
    pub role: String,
    pub scope: String,
}

#[cfg(feature = "ssr")]
pub use ssr::{VmNames, scope_label};

#[cfg(feature = "ssr")]
mod ssr {
    use super::*;
    use crate::domain::Scope;
    use crate::store::{StoredAssignment, StoredUser};
    use std::collections::HashMap;

    /// VM names by id, for showing VM scopes (stored by id) by name.
    pub type VmNames = HashMap<String, String>;

    /// A scope as people read it: a VM by its current name.
    pub fn scope_label(scope: &Scope, names: &VmNames) -> String {
        match scope {
            Scope::Vm(id) => match names.get(id) {
                Some(name) => format!("VM {name}"),
                None => format!("VM {id} (no such VM)"),
            },
            other => other.to_string(),
        }
    }

    impl RoleView {
        pub fn of(a: &StoredAssignment, names: &VmNames) -> Self {
            RoleView {
                id: a.id.clone(),
                role: a.assignment.role.as_str().to_owned(),
                scope: scope_label(&a.assignment.scope, names),
                via_group: None,
            }
        }

        pub fn of_rule(r: &crate::store::StoredGroupRule, names: &VmNames) -> Self {
            RoleView {
                id: r.id.clone(),
                role: r.rule.assignment.role.as_str().to_owned(),
                scope: scope_label(&r.rule.assignment.scope, names),
                via_group: Some(r.rule.group.clone()),
            }
        }
    }

    impl UserRow {
        /// Adds how a federated user signs in and the roles their groups grant.
        pub fn with_identity(
            mut self,
            identity: Option<&crate::store::StoredIdentity>,
            rules: &[crate::store::StoredGroupRule],
            names: &VmNames,
        ) -> Self {
            let Some(identity) = identity else {
                return self;
            };
            let who = if identity.email.is_empty() {
                &identity.subject
            } else {
                &identity.email
            };
            self.identity = format!("{}: {who}", identity.provider);
            if !identity.groups.is_empty() {
                self.identity
                    .push_str(&format!(" (groups: {})", identity.groups.join(", ")));
            }
            let plain: Vec<crate::domain::sso::GroupRule> =
                rules.iter().map(|r| r.rule.clone()).collect();
            let granted =
                crate::domain::sso::roles_from_groups(&plain, &identity.provider, &identity.groups);
            self.roles.extend(
                rules
                    .iter()
                    .filter(|r| granted.contains(&&r.rule))
                    .map(|r| RoleView::of_rule(r, names)),
            );
            self
        }
    }

    impl GroupRuleView {
        pub fn of(r: &crate::store::StoredGroupRule, names: &VmNames) -> Self {
            GroupRuleView {
                id: r.id.clone(),
                provider: r.rule.provider.clone(),
                group: r.rule.group.clone(),
                role: r.rule.assignment.role.as_str().to_owned(),
                scope: scope_label(&r.rule.assignment.scope, names),
            }
        }
    }

    impl UserView {
        /// The view of a user; `can_manage_users` is the services' decision.
        pub fn new(
            user: &StoredUser,
            assignments: &[StoredAssignment],
            names: &VmNames,
            can_manage_users: bool,
        ) -> Self {
            UserView {
                id: user.id.clone(),
                username: user.username.clone(),
                display_name: user.display_name.clone(),
                must_change_password: user.must_change_password,
                roles: assignments.iter().map(|a| RoleView::of(a, names)).collect(),
                can_manage_users,
                federated: false,
            }
        }

        /// Adds the roles a user holds through IdP groups, for a federated user.
        pub fn with_group_roles(
            mut self,
            group_rules: &[crate::store::StoredGroupRule],
            names: &VmNames,
        ) -> Self {
            self.federated = true;
            self.roles
                .extend(group_rules.iter().map(|r| RoleView::of_rule(r, names)));
            self
        }
    }
}

/// A time zone's IANA name as a browser, a URL or a cookie carries it (`Asia/Kolkata`),
/// trimmed: only what such names are made of, at most 64 bytes, so that nothing else
/// reaches a zone database's lookup, a cookie or a page.
pub fn zone_name(s: &str) -> Option<&str> {
    let s = s.trim();
    let ok = !s.is_empty()
        && s.len() <= 64
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '/' | '_' | '-' | '+'));
    ok.then_some(s)
}

/// `2026-11-24 13:05:09 UTC` — how times are shown before the browser localises them.
pub fn format_utc(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
        .unwrap_or_default()
}

/// `1h 05m 09s` / `4m 09s` / `9s`.
pub fn format_remaining(ms: i64) -> String {
    let s = (ms.max(0) + 999) / 1000;
    let (h, m, sec) = (s / 3600, (s % 3600) / 60, s % 60);
    if h > 0 {
        format!("{h}h {m:02}m {sec:02}s")
    } else if m > 0 {
        format!("{m}m {sec:02}s")
    } else {
        format!("{sec}s")
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GrantView {
    pub port: i64,
    pub protocol: String,
    pub source: String,
    pub end_at: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VmRow {
    pub id: String,
    pub name: String,
    pub group: String,
    pub os: String,
    pub addresses: String,
    pub exposed_ports: String,
    pub has_policy: bool,
    pub approved_last_7d: i64,
    pub last_access_at: Option<i64>,
    pub last_user: Option<String>,
    pub grants: Vec<GrantView>,
    /// Enforcement status or, on the Not configured tab, why the VM is there.
    pub agent_status: String,
    /// `ok`, `info`, `warning`, `error` or `neutral`: how the status is shown.
    #[serde(default)]
    pub status_level: String,
    #[serde(default)]
    pub agent_enrolled: bool,
    #[serde(default)]
    pub agent_last_seen: Option<i64>,
    /// What the viewer may do with this VM (the services' `permits`): the row menu offers
    /// only that.
    #[serde(default)]
    pub may: RowPermissions,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RowPermissions {
    pub manage: bool,
    pub configure: bool,
    pub request: bool,
    pub view_log: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VmPage {
    pub rows: Vec<VmRow>,
    pub total: i64,
    pub page: i64,
    pub page_size: i64,
    pub can_add_vm: bool,
    /// Whether the viewer may configure JIT on, or request access to, some VM: the bulk
    /// buttons show only then.
    #[serde(default)]
    pub can_configure: bool,
    #[serde(default)]
    pub can_request: bool,
    /// How many VMs each tab holds under the same search, for the tab titles.
    #[serde(default)]
    pub counts: TabCountsView,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TabCountsView {
    pub configured: i64,
    pub recommended: i64,
    pub not_configured: i64,
    pub unsupported: i64,
}

impl TabCountsView {
    /// The count of the tab with this id (`configured`, `recommended`, …).
    pub fn of(&self, tab: &str) -> Option<i64> {
        match tab {
            "configured" => Some(self.configured),
            "recommended" => Some(self.recommended),
            "not_configured" => Some(self.not_configured),
            "unsupported" => Some(self.unsupported),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleView {
    pub port: String,
    pub protocol: String,
    pub allowed_sources: String,
    pub max_minutes: String,
    pub justification_required: bool,
    pub approval_required: bool,
    /// Minutes within which approval must come.
    #[serde(default)]
    pub approval_minutes: String,
    /// How many distinct approvers must approve (1–5).
    #[serde(default)]
    pub approvals_required: String,
    /// Days ahead a request may start.
    #[serde(default)]
    pub lead_days: String,
    /// The widest IPv4 / IPv6 prefix a "per request" source may be.
    #[serde(default)]
    pub widest_v4: String,
    #[serde(default)]
    pub widest_v6: String,
    pub enabled: bool,
}

impl RuleView {
    /// An empty row with the defaults, switched off.
    pub fn blank() -> Self {
        RuleView {
            port: String::new(),
            protocol: "tcp".into(),
            allowed_sources: String::new(),
            max_minutes: "180".into(),
            justification_required: false,
            approval_required: false,
            approval_minutes: "60".into(),
            approvals_required: "1".into(),
            lead_days: crate::domain::jit::DEFAULT_LEAD_DAYS.to_string(),
            widest_v4: "24".into(),
            widest_v6: "64".into(),
            enabled: false,
        }
    }

    /// The row "Add port" adds: blank, and on, since it was asked for.
    pub fn added() -> Self {
        RuleView {
            enabled: true,
            ..RuleView::blank()
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyForm {
    pub vms: Vec<(String, String)>,
    pub rows: Vec<RuleView>,
    /// Set when the form edits the existing policy of a single VM.
    pub existing: bool,
    /// When the selected VMs have different policies: what each has now, one line per VM.
    /// Saving then needs an explicit confirmation, since it replaces them all.
    #[serde(default)]
    pub differing: Vec<String>,
    /// "Replace the differing policies" as a plain form last posted it.
    #[serde(default)]
    pub replace_differing: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortView {
    pub port: i64,
    pub protocol: String,
    pub status: String,
    pub reason: String,
    pub end_at: Option<i64>,
    /// For a port in force: `Initiated` until the VM's agent has applied the latest
    /// change, `Active` after; `Not enforced` without an agent. Empty otherwise.
    pub enforcement: String,
    /// How [`Self::enforcement`] is shown (see `StatusBadge`).
    #[serde(default)]
    pub enforcement_level: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestView {
    pub id: String,
    pub vm_id: String,
    pub vm_name: String,
    pub requester: String,
    pub source: String,
    pub justification: String,
    pub status: String,
    pub status_label: String,
    pub duration_minutes: i64,
    pub created_at: i64,
    pub start_at: Option<i64>,
    pub end_at: Option<i64>,
    /// The later start it asked for; shown while it waits for it.
    #[serde(default)]
    pub planned_start_at: Option<i64>,
    pub decided_by: Option<String>,
    pub comment: String,
    pub ports: Vec<PortView>,
    pub can_end: bool,
    /// Distinct approvals given so far, and how many the request needs.
    #[serde(default)]
    pub approvals: i64,
    #[serde(default)]
    pub approvals_required: i64,
}

impl RequestView {
    /// Whether nothing more happens to it (the browser has the status only as text).
    pub fn status_is_final(&self) -> bool {
        crate::domain::request::RequestStatus::parse(&self.status).is_none_or(|s| s.is_final())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BladeVm {
    pub id: String,
    pub name: String,
    pub rules: Vec<RuleView>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestBlade {
    pub vms: Vec<BladeVm>,
    pub my_ip: String,
    pub max_minutes: i64,
    pub justification_required: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VmDetail {
    /// `vm.may` says what the viewer may do with it.
    pub vm: VmRow,
    pub policy: Vec<RuleView>,
    pub requests: Vec<RequestView>,
    pub timeline_svg: String,
    pub can_manage: bool,
    pub can_configure: bool,
    pub can_request: bool,
}

/// An activity log entry as the page shows it: the entry's content itself.
pub type LogRow = crate::domain::audit::EntryContent;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogPage {
    pub rows: Vec<LogRow>,
    pub total: i64,
    pub page: i64,
    pub page_size: i64,
    pub chain_ok: bool,
    pub chain_message: String,
    /// Each row's time in the zone shown, saying its zone (`… +05:30`, `… UTC`).
    pub shown_at: Vec<String>,
    /// The zone times are shown and dates read in: an IANA name, or `UTC`.
    pub zone: String,
    /// Its offset from UTC now: `UTC+05:30`, or `UTC`.
    pub zone_offset: String,
    /// The message of each bad filter (left out of the page's query).
    pub errors: crate::domain::FieldErrors,
    /// VM names and users of the log starting with the filters' values, for suggestions.
    pub vms: Vec<String>,
    pub actors: Vec<String>,
    /// The actions the log holds.
    pub actions: Vec<String>,
}

#[cfg(test)]
mod tests {
    #[test]
    fn remaining_time_reads_naturally() {
        assert_eq!(super::format_remaining(9_000), "9s");
        assert_eq!(super::format_remaining(249_500), "4m 10s");
        assert_eq!(super::format_remaining(3_909_000), "1h 05m 09s");
        assert_eq!(super::format_remaining(-5), "0s");
        assert_eq!(super::format_utc(0), "1970-01-01 00:00:00 UTC");
    }
}

/// A personal API token as its owner sees it in lists: never the secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenInfo {
    pub id: String,
    pub name: String,
    pub prefix: String,
    pub created_at: i64,
    pub expires_at: i64,
    pub last_used_at: Option<i64>,
    pub revoked_at: Option<i64>,
}

/// A token in force with its owner, for the administrators' list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserTokenInfo {
    pub username: String,
    pub token: TokenInfo,
}

/// A new one-time enrollment token and the line that installs and enrolls the agent with
/// it, shown once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewEnrollment {
    /// The VM the agent will enforce for, or empty for a token that registers a new VM.
    pub vm_id: String,
    pub token: String,
    pub command: String,
    /// Why the command says `--insecure-http`, or empty.
    pub warning: String,
    /// The token is refused after this (UTC milliseconds), and after its first use.
    pub expires_at: i64,
    /// The server has no agent binary to offer: the command would fail at its download.
    pub download_missing: bool,
}

/// A freshly created API token: `token` is shown once and never stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreatedToken {
    pub token: String,
    pub info: TokenInfo,
}

/// What the confirmation page (the one that works without JavaScript) needs to ask before
/// an action that cannot be undone, loaded on the server so that it names the real object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfirmInfo {
    pub question: String,
    pub detail: String,
    /// Why the caller may not do it, if the services would refuse (they decide again).
    pub refusal: Option<String>,
}

/// The words that ask before an action that cannot be undone, and the page each question
/// returns to. The dialog of a hydrated page and the confirmation page without JavaScript
/// take them from here, so both say the same.
pub mod ask {
    pub const VM: &str = "vm";
    pub const POLICY: &str = "policy";
    pub const REVOKE: &str = "revoke";
    pub const DENY: &str = "deny";
    pub const ROLE: &str = "role";
    pub const TOKEN: &str = "token";
    pub const CHANNEL: &str = "channel";

    /// An id as it may stand in a path or query (ids are plain, but they came from a URL).
    fn encode(s: &str) -> String {
        s.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                    (b as char).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect()
    }

    /// The confirmation page of `what` on `id`, asked from the page `from` names.
    pub fn href(what: &str, id: &str, from: &str) -> String {
        format!("/confirm?what={what}&id={}&from={from}", encode(id))
    }

    /// Where a confirmation returns, on Cancel or after the action: a page of this site
    /// chosen from a short list, never a path taken from the URL.
    pub fn back(what: &str, id: &str, from: &str) -> String {
        let id = encode(id);
        match (what, from) {
            (VM, _) => format!("/vms/{id}"),
            (POLICY, _) => format!("/jit/configure?vm={id}"),
            (REVOKE | DENY, "detail") => format!("/requests/{id}"),
            (REVOKE | DENY, _) => "/requests".to_owned(),
            (TOKEN, "admin") | (ROLE, _) => "/admin/users".to_owned(),
            (TOKEN, _) => "/tokens".to_owned(),
            (CHANNEL, _) => "/admin/notifications".to_owned(),
            _ => "/".to_owned(),
        }
    }

    /// [`back`] for the query of a confirmation page's address, as its `Referer` has it.
    pub fn back_from_query(query: &str) -> String {
        let get = |key: &str| {
            query
                .split('&')
                .filter_map(|kv| kv.split_once('='))
                .find(|(k, _)| *k == key)
                .map(|(_, v)| v.to_owned())
                .unwrap_or_default()
        };
        // Values are as sent (percent-encoded); an id is plain, so decoding is not needed.
        back(&get("what"), &get("id").replace('%', ""), &get("from"))
    }

    /// "22/tcp, 3389/tcp".
    pub fn ports<'a>(ports: impl IntoIterator<Item = (String, &'a str)>) -> String {
        ports
            .into_iter()
            .map(|(port, protocol)| format!("{port}/{protocol}"))
            .collect::<Vec<_>>()
            .join(", ")
    }

    pub fn remove_vm(name: &str) -> (String, String) {
        (
            format!("Remove VM {name}?"),
            "Its JIT policy goes with it, the access in force on it ends and its waiting requests are closed."
                .to_owned(),
        )
    }

    pub fn remove_policy(vm: &str, ports: &str) -> (String, String) {
        (
            format!("Remove the JIT policy of {vm}?"),
            format!(
                "Its ports {ports} become open to every source within seconds, and the access in force on it ends."
            ),
        )
    }

    pub fn revoke(requester: &str, ports: &str, vm: &str) -> (String, String) {
        (
            format!("Revoke {requester}'s access to {ports} on {vm}?"),
            "Its ports close now; a request still waiting is withdrawn.".to_owned(),
        )
    }

    pub fn deny(requester: &str, ports: &str, vm: &str) -> (String, String) {
        (
            format!("Deny {requester}'s request for {ports} on {vm}?"),
            "The requester is told, and a denied request cannot be approved later.".to_owned(),
        )
    }

    pub fn remove_role(username: &str, role: &str, scope: &str) -> (String, String) {
        (
            format!("Remove the role {role} on {scope} from {username}?"),
            "Access that only this role allowed ends now.".to_owned(),
        )
    }

    pub fn revoke_token(name: &str, prefix: &str, owner: Option<&str>) -> (String, String) {
        let of = owner.map(|o| format!(" of {o}")).unwrap_or_default();
        (
            format!("Revoke the API token {name} ({prefix}…){of}?"),
            "Whatever uses it is refused from now on.".to_owned(),
        )
    }

    pub fn remove_channel(name: &str) -> (String, String) {
        (
            format!("Remove the notification channel {name}?"),
            "Its routing rules and its messages go with it.".to_owned(),
        )
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn a_confirmation_returns_to_a_page_of_this_site() {
            assert_eq!(
                back_from_query("what=revoke&id=r1&from=detail"),
                "/requests/r1"
            );
            assert_eq!(back_from_query("what=revoke&id=r1&from=list"), "/requests");
            assert_eq!(back_from_query("what=policy&id=v1"), "/jit/configure?vm=v1");
            assert_eq!(
                back_from_query("what=vm&id=%2F%2Fevil.example"),
                "/vms/2F2Fevil.example"
            );
            assert_eq!(back("vm", "//evil", ""), "/vms/%2F%2Fevil");
            assert_eq!(
                href(TOKEN, "t1", "admin"),
                "/confirm?what=token&id=t1&from=admin"
            );
        }
    }
}

/// A problem of an import file, by line (the header is line 1) and column (empty for the
/// whole line).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImportProblem {
    pub line: usize,
    pub column: String,
    pub message: String,
}

/// One VM of an import file: its values as parsed (as written, when it has errors).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImportRowView {
    pub line: usize,
    pub name: String,
    pub group: String,
    pub addresses: String,
    pub os: String,
    pub exposed_ports: String,
    pub problems: Vec<ImportProblem>,
}

/// The preview of an import: every row with its values or its problems, and the
/// problems of the file itself. Only a file with no problem may be imported.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImportPreview {
    /// The text previewed, for the page to show again after a plain form post.
    pub csv: String,
    pub rows: Vec<ImportRowView>,
    pub file_problems: Vec<ImportProblem>,
}

impl ImportPreview {
    pub fn problem_count(&self) -> usize {
        self.file_problems.len() + self.rows.iter().map(|r| r.problems.len()).sum::<usize>()
    }
}
