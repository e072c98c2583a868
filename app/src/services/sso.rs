//! Single sign-on accounts: the user behind a verified federated identity (created at the
//! first sign-in, refreshed at each one), the roles IdP groups grant, and the group rules
//! administrators keep.
//!
//! Token verification happens in the server's OpenID Connect routes; what arrives here is
//! an identity the provider has vouched for.

use super::Actor;
use super::access::{By, reconcile_users, roles_from};
use super::users::{require, resolve_scope};
use crate::domain::role::ScopeInput;
use crate::domain::sso::{
    FederatedIdentity, GroupRule, parse_group_name, roles_from_groups, username_candidates,
};
use crate::domain::{Action, FieldErrors, Resource, Role, RoleAssignment, Scope};
use crate::error::{AppError, AppResult};
use crate::model::GroupRuleView;
use crate::store::{FederatedProfile, NewLogEntry, Store, StoreError, StoredGroupRule, StoredUser};
use std::net::IpAddr;

pub enum FederatedSignIn {
    SignedIn {
        user: StoredUser,
        created: bool,
    },
    /// The account exists but an administrator disabled it.
    Disabled,
}

fn sign_in_entry(actor: &str, ip: IpAddr, result: &str, detail: String) -> NewLogEntry {
    NewLogEntry {
        actor: actor.chars().take(64).collect(),
        client_ip: ip.to_string(),
        action: "sign-in".into(),
        result: result.into(),
        detail,
        ..Default::default()
    }
}

fn groups_detail(groups: &[String]) -> String {
    if groups.is_empty() {
        return String::new();
    }
    let mut list = groups.join(", ");
    if list.chars().count() > 300 {
        list = list.chars().take(300).collect::<String>() + "…";
    }
    format!("; groups: {list}")
}

/// Signs in the user of (provider, subject): creates it on the first sign-in, otherwise
/// refreshes its name, email and groups. The activity log entry is written in the same
/// transaction. Never matches an existing account by email or user name.
pub async fn sign_in_federated(
    store: &Store,
    provider: &str,
    identity: &FederatedIdentity,
    client_ip: IpAddr,
) -> AppResult<FederatedSignIn> {
    let profile = FederatedProfile {
        provider,
        subject: &identity.subject,
        email: &identity.email,
        display_name: &identity.display_name,
        groups: &identity.groups,
    };
    let detail = format!("oidc {provider}{}", groups_detail(&identity.groups));
    // Two attempts: a concurrent first sign-in of the same identity may link it between
    // our lookup and our insert; the second pass then finds it.
    for _ in 0..2 {
        if let Some(found) = store.find_identity(provider, &identity.subject).await? {
            let user = store
                .get_user(&found.user_id)
                .await?
                .ok_or(AppError::Internal)?;
            if user.disabled {
                log_refused(
                    store,
                    provider,
                    &user.username,
                    client_ip,
                    "account disabled",
                )
                .await?;
                return Ok(FederatedSignIn::Disabled);
            }
            // The groups the provider sends now decide the user's roles from here on: what
            // the user could only do through a group they left ends in this transaction.
            let mut tx = store.begin_write().await?;
            tx.update_federated_user(&user.id, &profile).await?;
            tx.log(sign_in_entry(
                &user.username,
                client_ip,
                "success",
                detail.clone(),
            ))
            .await?;
            let ip = client_ip.to_string();
            reconcile_users(
                &mut tx,
                std::slice::from_ref(&user.id),
                By {
                    actor: &user.username,
                    ip: &ip,
                },
            )
            .await?;
            tx.commit().await?;
            tracing::info!(user = %user.username, %provider, %client_ip, "sign-in");
            let user = store.get_user(&user.id).await?.ok_or(AppError::Internal)?;
            return Ok(FederatedSignIn::SignedIn {
                user,
                created: false,
            });
        }
        for name in username_candidates(&identity.username_hint, provider) {
            let log = sign_in_entry(
                name.as_str(),
                client_ip,
                "success",
                format!("{detail}; first sign-in, user created"),
            );
            match store
                .create_federated_user(name.as_str(), &profile, log)
                .await
            {
                Ok(user) => {
                    tracing::info!(user = %user.username, %provider, %client_ip, "federated user created");
                    return Ok(FederatedSignIn::SignedIn {
                        user,
                        created: true,
                    });
                }
                Err(StoreError::Duplicate) => {
                    if store
                        .find_identity(provider, &identity.subject)
                        .await?
                        .is_some()
                    {
                        break;
                    }
                }
                Err(e) => return Err(e.into()),
            }
        }
    }
    tracing::error!(%provider, "no free user name for a federated identity");
    Err(AppError::Internal)
}

/// Records a refused single sign-on attempt. `actor` is whatever identifies the attempt
/// (a user name, or the provider when nobody was identified).
pub async fn log_refused(
    store: &Store,
    provider: &str,
    actor: &str,
    client_ip: IpAddr,
    reason: &str,
) -> AppResult<()> {
    tracing::warn!(%provider, %actor, %client_ip, %reason, "single sign-on refused");
    store
        .log_event(sign_in_entry(
            actor,
            client_ip,
            "refused",
            format!("oidc {provider}: {reason}"),
        ))
        .await?;
    Ok(())
}

/// The group rules that apply to a user now: those of the user's provider whose group the
/// provider listed at the user's last sign-in. Empty for local accounts.
pub async fn group_roles_of(store: &Store, user_id: &str) -> AppResult<Vec<StoredGroupRule>> {
    let Some(identity) = store.identity_of(user_id).await? else {
        return Ok(Vec::new());
    };
    if identity.groups.is_empty() {
        return Ok(Vec::new());
    }
    let stored = store.group_rules_for(&identity.provider).await?;
    let rules: Vec<GroupRule> = stored.iter().map(|s| s.rule.clone()).collect();
    let granted = roles_from_groups(&rules, &identity.provider, &identity.groups);
    Ok(stored
        .into_iter()
        .filter(|s| granted.contains(&&s.rule))
        .collect())
}

/// How long the groups seen at a sign-in count for API tokens. A token never makes the
/// user sign in again, so without a limit a user removed from a group at the provider
/// (or removed altogether) would keep the group's roles through a long-lived token.
pub const TOKEN_GROUPS_FRESH_FOR_MS: i64 = 7 * 24 * 3_600_000;

/// The roles an API token acts with at `now`: the owner's direct roles, plus the roles of
/// their IdP groups if they signed in through the provider within
/// [`TOKEN_GROUPS_FRESH_FOR_MS`].
pub async fn token_roles(store: &Store, user_id: &str, now: i64) -> AppResult<Vec<RoleAssignment>> {
    let fresh = store
        .identity_of(user_id)
        .await?
        .is_none_or(|i| now - i.last_sign_in_at <= TOKEN_GROUPS_FRESH_FOR_MS);
    if fresh {
        return effective_roles(store, user_id).await;
    }
    Ok(store
        .assignments_of(user_id)
        .await?
        .into_iter()
        .map(|a| a.assignment)
        .collect())
}

/// Everything a user may do: direct role assignments and the roles of their IdP groups.
/// A disabled account may do nothing.
pub async fn effective_roles(store: &Store, user_id: &str) -> AppResult<Vec<RoleAssignment>> {
    Ok(roles_from(&store.role_inputs(user_id).await?))
}

pub async fn list_group_rules(store: &Store, actor: &Actor) -> AppResult<Vec<GroupRuleView>> {
    require(actor, Action::ManageUsers, &Resource::Global)?;
    let names = store.vm_names().await?;
    Ok(store
        .list_group_rules()
        .await?
        .iter()
        .map(|r| GroupRuleView::of(r, &names))
        .collect())
}

fn admin_entry(actor: &Actor, action: &str, detail: String) -> NewLogEntry {
    NewLogEntry {
        actor: actor.username.clone(),
        client_ip: actor.ip.to_string(),
        action: action.to_owned(),
        result: "success".into(),
        detail,
        ..Default::default()
    }
}

pub struct GroupRuleInput<'a> {
    pub provider: &'a str,
    pub group: &'a str,
    pub role: &'a str,
    pub scope_kind: &'a str,
    pub scope_target: &'a str,
}

/// Adds a group rule for one of the configured providers (`providers`: their ids).
pub async fn add_group_rule(
    store: &Store,
    actor: &Actor,
    providers: &[String],
    input: GroupRuleInput<'_>,
) -> AppResult<String> {
    require(actor, Action::ManageUsers, &Resource::Global)?;
    let mut errors = FieldErrors::new();
    let provider = providers.iter().find(|p| *p == input.provider).cloned();
    if provider.is_none() {
        errors.add(
            "provider",
            "Choose one of the configured identity providers.",
        );
    }
    let group = errors.check("group", parse_group_name(input.group));
    let role = errors.check("role", Role::parse(input.role));
    let scope = errors.check(
        "scope_target",
        ScopeInput::parse(input.scope_kind, input.scope_target),
    );
    errors.into_result()?;
    let (Some(provider), Some(group), Some(role), Some(scope)) = (provider, group, role, scope)
    else {
        return Err(AppError::Internal);
    };
    let scope = resolve_scope(store, scope).await?;
    let rule = GroupRule {
        provider,
        group,
        assignment: RoleAssignment { role, scope },
    };
    let detail = format!(
        "group {} at {}: {} on {}",
        rule.group,
        rule.provider,
        rule.assignment.role,
        match &rule.assignment.scope {
            Scope::Vm(id) => format!("VM {} ({id})", input.scope_target.trim()),
            other => other.to_string(),
        }
    );
    match store
        .add_group_rule(&rule, admin_entry(actor, "group-rule.add", detail))
        .await
    {
        Ok(id) => Ok(id),
        Err(StoreError::Duplicate) => Err(AppError::field(
            "group",
            "This group already has this role in this scope.",
        )),
        Err(e) => Err(e.into()),
    }
}

/// Removes a group rule. Members of the group lose its role at once: their grants in
/// force and waiting requests that only the rule allowed end in the same transaction.
pub async fn remove_group_rule(store: &Store, actor: &Actor, id: &str) -> AppResult<()> {
    require(actor, Action::ManageUsers, &Resource::Global)?;
    let mut tx = store.begin_write().await?;
    let Some(r) = tx.remove_group_rule(id).await? else {
        return Err(AppError::NotFound("The group rule".into()));
    };
    tx.log(admin_entry(
        actor,
        "group-rule.remove",
        format!(
            "group {} at {}: {} on {}",
            r.rule.group, r.rule.provider, r.rule.assignment.role, r.rule.assignment.scope
        ),
    ))
    .await?;
    let users = tx.users_with_open_access(None).await?;
    let ip = actor.ip.to_string();
    reconcile_users(
        &mut tx,
        &users,
        By {
            actor: &actor.username,
            ip: &ip,
        },
    )
    .await?;
    tx.commit().await?;
    Ok(())
}
