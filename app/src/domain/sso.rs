//! Single sign-on rules: how the claims of a verified ID token become a federated
//! identity, which local user name such an identity gets, and which roles the groups an
//! identity provider vouches for grant here.
//!
//! Pure: the server verifies tokens and the store remembers; what a claim means is decided
//! here once, so the mapping is the same for every provider and testable without one.

use crate::domain::{RoleAssignment, Username};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use thiserror::Error;

/// The claim names a provider uses; configurable because Entra ID, Okta, Google, Keycloak
/// and Dex each spell some of them differently.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimNames {
    pub username: String,
    pub email: String,
    pub name: String,
    pub groups: String,
}

impl Default for ClaimNames {
    fn default() -> Self {
        Self {
            username: "preferred_username".into(),
            email: "email".into(),
            name: "name".into(),
            groups: "groups".into(),
        }
    }
}

/// Who the provider says signed in. `subject` (with the provider) is the identity;
/// everything else is profile data refreshed at every sign-in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FederatedIdentity {
    pub subject: String,
    /// What the user should be called here, before making it a valid, unique user name.
    pub username_hint: String,
    pub email: String,
    pub display_name: String,
    pub groups: Vec<String>,
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum ClaimError {
    #[error("the ID token has no subject ('sub' claim)")]
    MissingSubject,
    #[error("the subject is longer than 255 characters")]
    SubjectTooLong,
    #[error("the '{0}' claim is neither a list of group names nor a group name")]
    BadGroups(String),
}

/// A subject is at most 255 ASCII characters (OpenID Connect Core 2).
const MAX_SUBJECT: usize = 255;
/// Bounds what one sign-in can make us store; an IdP sending more groups than this is
/// misconfigured (Entra ID, for one, switches to an overage claim at 200).
pub const MAX_GROUPS: usize = 500;
pub const MAX_GROUP_CHARS: usize = 256;

fn text(claims: &Map<String, Value>, name: &str) -> Option<String> {
    match claims.get(name)? {
        Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_owned()),
        _ => None,
    }
}

/// Reads the identity from verified claims (ID token, completed by userinfo). The user
/// name falls back to the email address and then to the subject; the display name to the
/// user name. Group names are trimmed, de-duplicated, and overlong ones dropped.
pub fn identity_from_claims(
    claims: &Map<String, Value>,
    names: &ClaimNames,
) -> Result<FederatedIdentity, ClaimError> {
    let subject = text(claims, "sub").ok_or(ClaimError::MissingSubject)?;
    if subject.chars().count() > MAX_SUBJECT {
        return Err(ClaimError::SubjectTooLong);
    }
    let email = text(claims, &names.email).unwrap_or_default();
    let username_hint = text(claims, &names.username)
        .or_else(|| (!email.is_empty()).then(|| email.clone()))
        .unwrap_or_else(|| subject.clone());
    let display_name = text(claims, &names.name)
        .unwrap_or_else(|| username_hint.clone())
        .chars()
        .take(100)
        .collect();
    let raw_groups: Vec<String> = match claims.get(&names.groups) {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| match v {
                Value::String(s) => Ok(s.clone()),
                _ => Err(ClaimError::BadGroups(names.groups.clone())),
            })
            .collect::<Result<_, _>>()?,
        Some(_) => return Err(ClaimError::BadGroups(names.groups.clone())),
    };
    let mut groups: Vec<String> = Vec::new();
    for g in raw_groups {
        let g = g.trim();
        if g.is_empty() || g.chars().count() > MAX_GROUP_CHARS || groups.iter().any(|x| x == g) {
            continue;
        }
        groups.push(g.to_owned());
        if groups.len() == MAX_GROUPS {
            break;
        }
    }
    Ok(FederatedIdentity {
        subject,
        username_hint,
        email: email.chars().take(320).collect(),
        display_name,
        groups,
    })
}

/// User names to try, in order, for a new federated user: the hint made valid, then the
/// same with the provider id, then numbered. A name already taken by someone else (a
/// local account, another provider's user) is never reused: identities are matched by
/// provider and subject only, so a colliding name must not hand over an account.
pub fn username_candidates(hint: &str, provider_id: &str) -> Vec<Username> {
    let mut base: String = hint
        .trim()
        .to_lowercase()
        .chars()
        .map(|c| {
            if c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-' | '@') {
                c
            } else {
                '-'
            }
        })
        .collect();
    base = base.trim_matches('-').to_owned();
    if base.chars().count() < 3 {
        base = format!("{provider_id}-{base}").trim_matches('-').to_owned();
    }
    while base.chars().count() < 3 {
        base.push('_');
    }
    let fit = |s: String, suffix: &str| -> String {
        let keep = 64 - suffix.len();
        let mut s: String = s.chars().take(keep).collect();
        s.push_str(suffix);
        s
    };
    let mut out: Vec<Username> = Vec::new();
    let mut push = |s: String| {
        if let Ok(u) = Username::parse(&s)
            && !out.contains(&u)
        {
            out.push(u);
        }
    };
    push(fit(base.clone(), ""));
    push(fit(base.clone(), &format!(".{provider_id}")));
    for n in 2..=20 {
        push(fit(base.clone(), &format!(".{provider_id}{n}")));
    }
    out
}

/// An administrator's rule: members of `group` at provider `provider` hold `assignment`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupRule {
    pub provider: String,
    pub group: String,
    pub assignment: RoleAssignment,
}

/// The roles the groups of a user grant: every rule of the user's provider whose group the
/// provider listed at the last sign-in. Group names match exactly (Entra ID sends object
/// ids, others names; neither should match loosely).
pub fn roles_from_groups<'a>(
    rules: &'a [GroupRule],
    provider: &str,
    groups: &[String],
) -> Vec<&'a GroupRule> {
    rules
        .iter()
        .filter(|r| r.provider == provider && groups.contains(&r.group))
        .collect()
}

/// An IdP group name as an administrator types it into a rule.
pub fn parse_group_name(raw: &str) -> Result<String, &'static str> {
    let g = raw.trim();
    match g.chars().count() {
        0 => Err("Enter the group name (or id) as the identity provider sends it."),
        n if n > MAX_GROUP_CHARS => Err("A group name has at most 256 characters."),
        _ => Ok(g.to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Role, Scope};
    use serde_json::json;

    fn claims(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn claims_become_an_identity_with_fallbacks() {
        let names = ClaimNames::default();
        let id = identity_from_claims(
            &claims(json!({
                "sub": "248289761001", "preferred_username": "Alice", "email": "alice@example.org",
                "name": "Alice A.", "groups": ["ops", " ops ", "", "dev"]
            })),
            &names,
        )
        .unwrap();
        assert_eq!(id.subject, "248289761001");
        assert_eq!(id.username_hint, "Alice");
        assert_eq!(id.display_name, "Alice A.");
        assert_eq!(id.groups, ["ops", "dev"]);

        let id = identity_from_claims(&claims(json!({"sub": "x1", "email": "b@e.org"})), &names)
            .unwrap();
        assert_eq!(id.username_hint, "b@e.org");
        assert_eq!(id.display_name, "b@e.org");
        assert!(id.groups.is_empty());

        let id =
            identity_from_claims(&claims(json!({"sub": "x1", "groups": "solo"})), &names).unwrap();
        assert_eq!(id.username_hint, "x1");
        assert_eq!(id.groups, ["solo"]);
    }

    #[test]
    fn claim_names_are_configurable() {
        let names = ClaimNames {
            username: "upn".into(),
            email: "mail".into(),
            name: "displayName".into(),
            groups: "roles".into(),
        };
        let id = identity_from_claims(
            &claims(
                json!({"sub": "s", "upn": "carol@corp", "mail": "c@corp", "displayName": "Carol",
                "roles": ["admins"], "groups": ["ignored"], "preferred_username": "ignored"}),
            ),
            &names,
        )
        .unwrap();
        assert_eq!(
            (
                id.username_hint.as_str(),
                id.email.as_str(),
                id.display_name.as_str()
            ),
            ("carol@corp", "c@corp", "Carol")
        );
        assert_eq!(id.groups, ["admins"]);
    }

    #[test]
    fn bad_claims_are_refused() {
        let names = ClaimNames::default();
        assert_eq!(
            identity_from_claims(&claims(json!({"email": "a@b.c"})), &names),
            Err(ClaimError::MissingSubject)
        );
        assert_eq!(
            identity_from_claims(&claims(json!({"sub": "x".repeat(256)})), &names),
            Err(ClaimError::SubjectTooLong)
        );
        assert_eq!(
            identity_from_claims(&claims(json!({"sub": "s", "groups": [1, 2]})), &names),
            Err(ClaimError::BadGroups("groups".into()))
        );
        assert_eq!(
            identity_from_claims(&claims(json!({"sub": "s", "groups": {"a": 1}})), &names),
            Err(ClaimError::BadGroups("groups".into()))
        );
    }

    #[test]
    fn group_lists_are_bounded() {
        let many: Vec<String> = (0..2 * MAX_GROUPS).map(|i| format!("g{i}")).collect();
        let id = identity_from_claims(
            &claims(json!({"sub": "s", "groups": many, })),
            &ClaimNames::default(),
        )
        .unwrap();
        assert_eq!(id.groups.len(), MAX_GROUPS);
    }

    #[test]
    fn usernames_are_made_valid_and_never_reuse_a_taken_name() {
        let c = username_candidates("Alice Smith", "corp");
        let names: Vec<&str> = c.iter().map(|u| u.as_str()).collect();
        assert_eq!(
            &names[..3],
            ["alice-smith", "alice-smith.corp", "alice-smith.corp2"]
        );
        assert_eq!(names.len(), 21);
        assert_eq!(username_candidates("jo", "corp")[0].as_str(), "corp-jo");
        assert_eq!(username_candidates("Ω", "x")[0].as_str(), "x__");
        let long = username_candidates(&"a".repeat(100), "corp");
        assert!(long.iter().all(|u| u.as_str().len() <= 64));
        assert!(long[1].as_str().ends_with(".corp"));
    }

    #[test]
    fn groups_grant_the_roles_of_matching_rules_of_the_same_provider() {
        let rule = |provider: &str, group: &str, role| GroupRule {
            provider: provider.into(),
            group: group.into(),
            assignment: RoleAssignment {
                role,
                scope: Scope::All,
            },
        };
        let rules = vec![
            rule("corp", "ops", Role::Approver),
            rule("corp", "dev", Role::Requester),
            rule("other", "ops", Role::Admin),
            rule("corp", "Ops", Role::Admin),
        ];
        let granted = roles_from_groups(&rules, "corp", &["ops".into(), "staff".into()]);
        assert_eq!(granted.len(), 1);
        assert_eq!(granted[0].assignment.role, Role::Approver);
        assert!(roles_from_groups(&rules, "corp", &[]).is_empty());
        assert!(roles_from_groups(&rules, "nope", &["ops".into()]).is_empty());
    }

    #[test]
    fn group_names_are_checked() {
        assert_eq!(parse_group_name("  ops "), Ok("ops".into()));
        assert!(parse_group_name("  ").is_err());
        assert!(parse_group_name(&"g".repeat(257)).is_err());
    }
}
