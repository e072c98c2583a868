//! Accounts: bootstrap, sign-in, password changes, user and role administration.

use super::Actor;
use super::access::{By, reconcile_users};
use crate::auth::{LoginLimiter, hash_password, verify_password};
use crate::domain::role::ScopeInput;
use crate::domain::user::parse_display_name;
use crate::domain::{
    Action, FieldErrors, NewPassword, Resource, Role, RoleAssignment, Scope, Username, permits,
};
use crate::error::{AppError, AppResult};
use crate::model::{RoleView, UserRow, UserView};
use crate::store::{NewLogEntry, NewUser, RemoveOutcome, Store, StoredAssignment, StoredUser};
use std::net::IpAddr;

pub const BOOTSTRAP_ADMIN: &str = "admin";

/// On first start (no users at all) creates `admin` with a random one-time password that
/// must be changed at first sign-in. Returns the password so the caller can print it once.
pub async fn bootstrap_admin(store: &Store) -> AppResult<Option<String>> {
    if store.count_users().await? > 0 {
        return Ok(None);
    }
    let password = random_password();
    let hash = hash_password(password.clone()).await?;
    let created = store
        .create_user(
            &NewUser {
                username: BOOTSTRAP_ADMIN,
                display_name: "Administrator",
                password_hash: Some(&hash),
                must_change_password: true,
            },
            &[RoleAssignment {
                role: Role::Admin,
                scope: Scope::All,
            }],
            Some(NewLogEntry {
                actor: "system".into(),
                action: "user.create".into(),
                result: "success".into(),
                detail: format!("{BOOTSTRAP_ADMIN} as admin on all (bootstrap administrator)"),
                ..Default::default()
            }),
        )
        .await;
    match created {
        Ok(_) => Ok(Some(password)),
        // Another replica starting at the same moment created it first.
        Err(crate::store::StoreError::Duplicate) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// What `create-admin` did on the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecoveredAdmin {
    pub username: String,
    /// True when the account was made now; false when an existing one was restored.
    pub created: bool,
    /// The one-time password, to be changed at first sign-in; shown once.
    pub password: String,
}

/// Gives the host's operator an administrator back when nobody can sign in as one:
/// creates `name` as administrator over everything, or re-enables the existing account,
/// gives it that role and a new password. Either way the password is a random one-time
/// password that must be changed at first sign-in, every session of the account ends,
/// and the change commits with its log entry. Only the host console may do this.
pub async fn recover_admin(store: &Store, actor: &Actor, name: &str) -> AppResult<RecoveredAdmin> {
    if !actor.is_host_console() {
        return Err(AppError::Forbidden);
    }
    let username = Username::parse(name).map_err(|e| AppError::field("username", e.to_string()))?;
    let global_admin = RoleAssignment {
        role: Role::Admin,
        scope: Scope::All,
    };
    let password = random_password();
    let hash = hash_password(password.clone()).await?;
    let existing = store.find_user_by_username(username.as_str()).await?;
    let Some(user) = existing else {
        let created = store
            .create_user(
                &NewUser {
                    username: username.as_str(),
                    display_name: "Administrator",
                    password_hash: Some(&hash),
                    must_change_password: true,
                },
                std::slice::from_ref(&global_admin),
                Some(admin_entry(
                    actor,
                    "user.create",
                    format!(
                        "{} as admin on all (administrator recovery from the host console)",
                        username.as_str()
                    ),
                )),
            )
            .await;
        return match created {
            Ok(user) => Ok(RecoveredAdmin {
                username: user.username,
                created: true,
                password,
            }),
            Err(crate::store::StoreError::Duplicate) => Err(AppError::Conflict(
                "The account was created at the same moment; run the command again.".into(),
            )),
            Err(e) => Err(e.into()),
        };
    };
    let mut tx = store.begin_write().await?;
    let inputs = tx.role_inputs(&user.id).await?;
    let Some(current) = inputs.user else {
        return Err(AppError::NotFound("The user".into()));
    };
    let mut changes = vec!["one-time password set, to be changed at first sign-in; sessions ended"];
    if current.disabled {
        tx.set_disabled(&user.id, false).await?;
        changes.push("account enabled");
    }
    if !inputs.assignments.contains(&global_admin) {
        tx.add_assignment(&user.id, &global_admin).await?;
        changes.push("admin on all added");
    }
    tx.set_password(&user.id, &hash, true).await?;
    tx.log(admin_entry(
        actor,
        "user.recover",
        format!(
            "{} (administrator recovery from the host console): {}",
            user.username,
            changes.join("; ")
        ),
    ))
    .await?;
    tx.commit().await?;
    Ok(RecoveredAdmin {
        username: user.username,
        created: false,
        password,
    })
}

fn random_password() -> String {
    use rand::Rng;
    const ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789";
    let mut rng = rand::rngs::OsRng;
    (0..20)
        .map(|_| ALPHABET[rng.gen_range(0..ALPHABET.len())] as char)
        .collect()
}

pub async fn load_user_view(store: &Store, user: &StoredUser) -> AppResult<UserView> {
    let assignments = store.assignments_of(&user.id).await?;
    let names = store.vm_names().await?;
    let roles = crate::services::sso::effective_roles(store, &user.id).await?;
    // Shown or hidden navigation only; every administration call decides again.
    let can_manage = permits(&roles, Action::ManageUsers, &Resource::Global);
    let view = UserView::new(user, &assignments, &names, can_manage);
    if store.identity_of(&user.id).await?.is_none() {
        return Ok(view);
    }
    let group_rules = crate::services::sso::group_roles_of(store, &user.id).await?;
    Ok(view.with_group_roles(&group_rules, &names))
}

/// Checks a sign-in. The same message answers an unknown user, a wrong password and a
/// disabled account, so the form does not reveal which accounts exist.
pub async fn sign_in(
    store: &Store,
    limiter: &LoginLimiter,
    metrics: &crate::metrics::Metrics,
    username: &str,
    password: &str,
    client_ip: IpAddr,
) -> AppResult<StoredUser> {
    let mut errors = FieldErrors::new();
    if username.trim().is_empty() {
        errors.add("username", "Enter your user name.");
    }
    if password.is_empty() {
        errors.add("password", "Enter your password.");
    }
    // Bounded before anything is hashed or stored: the hasher's work grows with the input.
    if username.trim().chars().count() > 64 {
        errors.add("username", "A user name has at most 64 characters.");
    }
    if password.chars().count() > crate::domain::user::MAX_PASSWORD_CHARS {
        errors.add(
            "password",
            format!(
                "A password has at most {} characters.",
                crate::domain::user::MAX_PASSWORD_CHARS
            ),
        );
    }
    errors.into_result()?;
    let name = username.trim().to_lowercase();
    let keys = [format!("user:{name}"), crate::auth::client_key(client_ip)];
    limiter.attempt(&keys).map_err(|retry_after_secs| {
        metrics.sign_in_failed(crate::metrics::SignInMethod::Local);
        AppError::RateLimited { retry_after_secs }
    })?;
    let user = store.find_user_by_username(&name).await?;
    let hash = user.as_ref().and_then(|u| u.password_hash.clone());
    let ok = verify_password(password.to_owned(), hash).await?;
    match user {
        Some(user) if ok && !user.disabled => {
            limiter.clear(&keys);
            tracing::info!(user = %user.username, %client_ip, "sign-in");
            store
                .log_event(sign_in_entry(&user.username, client_ip, "success"))
                .await?;
            Ok(user)
        }
        _ => {
            // Already counted by `attempt`.
            tracing::warn!(user = %name, %client_ip, "sign-in refused");
            metrics.sign_in_failed(crate::metrics::SignInMethod::Local);
            store
                .log_event(sign_in_entry(&name, client_ip, "refused"))
                .await?;
            Err(AppError::field(
                "password",
                "The user name or password is not correct.",
            ))
        }
    }
}

fn sign_in_entry(name: &str, ip: IpAddr, result: &str) -> crate::store::NewLogEntry {
    crate::store::NewLogEntry {
        actor: name.chars().take(64).collect(),
        client_ip: ip.to_string(),
        action: "sign-in".into(),
        result: result.into(),
        ..Default::default()
    }
}

fn admin_entry(actor: &Actor, action: &str, detail: String) -> NewLogEntry {
    NewLogEntry {
        actor: actor.username.clone(),
        client_ip: actor.origin(),
        action: action.to_owned(),
        result: "success".into(),
        detail,
        ..Default::default()
    }
}

/// Changes the signed-in user's own password. The change, the end of the user's other
/// sessions (the session epoch moves on) and the log entry commit together.
pub async fn change_password(
    store: &Store,
    user: &StoredUser,
    current: &str,
    new: &str,
    confirm: &str,
    ip: IpAddr,
) -> AppResult<()> {
    let mut errors = FieldErrors::new();
    let username = Username::parse(&user.username).map_err(|_| AppError::Internal)?;
    let parsed = errors.check("new_password", NewPassword::parse(new, confirm, &username));
    if current.is_empty() {
        errors.add("current_password", "Enter your current password.");
    } else if current == new {
        errors.add(
            "new_password",
            "Choose a password different from the current one.",
        );
    }
    errors.into_result()?;
    if !verify_password(current.to_owned(), user.password_hash.clone()).await? {
        return Err(AppError::field(
            "current_password",
            "The current password is not correct.",
        ));
    }
    let parsed = parsed.ok_or(AppError::Internal)?;
    let hash = hash_password(parsed.expose().to_owned()).await?;
    let mut tx = store.begin_write().await?;
    if !tx.set_password(&user.id, &hash, false).await? {
        return Err(AppError::NotFound("The user".into()));
    }
    tx.log(NewLogEntry {
        actor: user.username.clone(),
        client_ip: ip.to_string(),
        action: "password.change".into(),
        result: "success".into(),
        detail: "the user's other sessions ended".into(),
        ..Default::default()
    })
    .await?;
    tx.commit().await?;
    tracing::info!(user = %user.username, "password changed");
    Ok(())
}

/// An administrator sets a temporary password for a user, who must change it at the next
/// sign-in; every session of the user ends.
pub async fn reset_password(
    store: &Store,
    actor: &Actor,
    user_id: &str,
    password: &str,
) -> AppResult<()> {
    require(actor, Action::ManageUsers, &Resource::Global)?;
    let user = store
        .get_user(user_id)
        .await?
        .ok_or_else(|| AppError::NotFound("The user".into()))?;
    if user.password_hash.is_none() {
        return Err(AppError::Conflict(
            "This user signs in through an identity provider and has no password here.".into(),
        ));
    }
    let username = Username::parse(&user.username).map_err(|_| AppError::Internal)?;
    let parsed = NewPassword::parse(password, password, &username)
        .map_err(|e| AppError::field("password", e.to_string()))?;
    let hash = hash_password(parsed.expose().to_owned()).await?;
    let mut tx = store.begin_write().await?;
    if !tx.set_password(user_id, &hash, true).await? {
        return Err(AppError::NotFound("The user".into()));
    }
    tx.log(admin_entry(
        actor,
        "password.reset",
        format!(
            "{}: temporary password set, to be changed at the next sign-in; sessions ended",
            user.username
        ),
    ))
    .await?;
    tx.commit().await?;
    Ok(())
}

/// Refuses unless the actor may do `action` on `resource`, by the one permission rule.
pub fn require(actor: &Actor, action: Action, resource: &Resource) -> AppResult<()> {
    if permits(&actor.roles, action, resource) {
        Ok(())
    } else {
        Err(AppError::Forbidden)
    }
}

pub async fn list_users(store: &Store, actor: &Actor) -> AppResult<Vec<UserRow>> {
    require(actor, Action::ManageUsers, &Resource::Global)?;
    let users = store.list_users().await?;
    let assignments = store.all_assignments().await?;
    let identities = store.list_identities().await?;
    let rules = store.list_group_rules().await?;
    let names = store.vm_names().await?;
    Ok(users
        .iter()
        .map(|u| {
            let mine: Vec<StoredAssignment> = assignments
                .iter()
                .filter(|a| a.user_id == u.id)
                .cloned()
                .collect();
            UserRow {
                id: u.id.clone(),
                username: u.username.clone(),
                display_name: u.display_name.clone(),
                disabled: u.disabled,
                must_change_password: u.must_change_password,
                roles: mine.iter().map(|a| RoleView::of(a, &names)).collect(),
                identity: String::new(),
                local_password: u.password_hash.is_some(),
            }
            .with_identity(
                identities.iter().find(|i| i.user_id == u.id),
                &rules,
                &names,
            )
        })
        .collect())
}

/// Turns a scope as an administrator named it into the scope stored: a VM named in the
/// form must exist (it is stored by id); a group must hold at least one VM. A target that
/// matches nothing would grant nothing while looking like it does.
pub async fn resolve_scope(store: &Store, input: ScopeInput) -> AppResult<Scope> {
    match input {
        ScopeInput::All => Ok(Scope::All),
        ScopeInput::Group(group) => {
            if store.group_exists(&group).await? {
                Ok(Scope::Group(group))
            } else {
                Err(AppError::field(
                    "scope_target",
                    format!(
                        "No VM is in a group named '{group}'. Check the spelling, or add a VM to the group first."
                    ),
                ))
            }
        }
        ScopeInput::VmNamed(name) => match store.get_vm_by_name(&name).await? {
            Some(vm) => Ok(Scope::Vm(vm.id)),
            None => Err(AppError::field(
                "scope_target",
                format!("No VM is named '{name}'. Enter the name of an existing VM."),
            )),
        },
    }
}

/// A role and scope as an administrator entered them, checked and resolved.
pub async fn parse_role_and_scope(
    store: &Store,
    role: &str,
    kind: &str,
    target: &str,
) -> AppResult<RoleAssignment> {
    let mut errors = FieldErrors::new();
    let role = errors.check("role", Role::parse(role));
    let scope = errors.check("scope_target", ScopeInput::parse(kind, target));
    errors.into_result()?;
    let (Some(role), Some(scope)) = (role, scope) else {
        return Err(AppError::Internal);
    };
    Ok(RoleAssignment {
        role,
        scope: resolve_scope(store, scope).await?,
    })
}

pub struct CreateUserInput<'a> {
    pub username: &'a str,
    pub display_name: &'a str,
    pub password: &'a str,
    pub role: &'a str,
    pub scope_kind: &'a str,
    pub scope_target: &'a str,
    pub must_change_password: bool,
}

pub async fn create_user(
    store: &Store,
    actor: &Actor,
    input: CreateUserInput<'_>,
) -> AppResult<String> {
    require(actor, Action::ManageUsers, &Resource::Global)?;
    let mut errors = FieldErrors::new();
    let username = errors.check("username", Username::parse(input.username));
    let display = errors.check("display_name", parse_display_name(input.display_name));
    let password = match &username {
        Some(u) => errors.check(
            "password",
            NewPassword::parse(input.password, input.password, u),
        ),
        None => {
            errors.check("password", NewPassword::check_length(input.password));
            None
        }
    };
    let role = errors.check("role", Role::parse(input.role));
    let scope = errors.check(
        "scope_target",
        ScopeInput::parse(input.scope_kind, input.scope_target),
    );
    errors.into_result()?;
    let (Some(username), Some(display), Some(password), Some(role), Some(scope)) =
        (username, display, password, role, scope)
    else {
        return Err(AppError::Internal);
    };
    let scope = resolve_scope(store, scope).await?;
    let hash = hash_password(password.expose().to_owned()).await?;
    let detail = format!(
        "{} as {role} on {}",
        username.as_str(),
        scope_text(&scope, input.scope_target)
    );
    let created = store
        .create_user(
            &NewUser {
                username: username.as_str(),
                display_name: &display,
                password_hash: Some(&hash),
                must_change_password: input.must_change_password,
            },
            &[RoleAssignment { role, scope }],
            Some(admin_entry(actor, "user.create", detail)),
        )
        .await;
    match created {
        Ok(user) => Ok(user.id),
        Err(crate::store::StoreError::Duplicate) => Err(AppError::field(
            "username",
            "A user with this name already exists.",
        )),
        Err(e) => Err(e.into()),
    }
}

/// How a scope reads in the log: a VM by the name the administrator used.
fn scope_text(scope: &Scope, vm_name: &str) -> String {
    match scope {
        Scope::Vm(id) => format!("VM {} ({id})", vm_name.trim()),
        other => other.to_string(),
    }
}

pub async fn add_role(
    store: &Store,
    actor: &Actor,
    user_id: &str,
    role: &str,
    kind: &str,
    target: &str,
) -> AppResult<()> {
    require(actor, Action::ManageUsers, &Resource::Global)?;
    let assignment = parse_role_and_scope(store, role, kind, target).await?;
    let mut tx = store.begin_write().await?;
    let user = tx
        .user(user_id)
        .await?
        .ok_or_else(|| AppError::NotFound("The user".into()))?;
    match tx.add_assignment(user_id, &assignment).await {
        Ok(_) => {}
        Err(crate::store::StoreError::Duplicate) => {
            return Err(AppError::field(
                "role",
                "The user already has this role in this scope.",
            ));
        }
        Err(e) => return Err(e.into()),
    }
    tx.log(admin_entry(
        actor,
        "role.add",
        format!(
            "{}: {} on {}",
            user.username,
            assignment.role,
            scope_text(&assignment.scope, target)
        ),
    ))
    .await?;
    tx.commit().await?;
    Ok(())
}

/// Removes a role assignment. What the user could only do through it ends in the same
/// transaction: grants in force end and waiting requests are closed, with the reason
/// "requester lost permission".
pub async fn remove_role(store: &Store, actor: &Actor, assignment_id: &str) -> AppResult<()> {
    require(actor, Action::ManageUsers, &Resource::Global)?;
    let mut tx = store.begin_write().await?;
    let removed = match tx.remove_assignment(assignment_id).await? {
        RemoveOutcome::Removed(a) => a,
        RemoveOutcome::NotFound => return Err(AppError::NotFound("The role assignment".into())),
        RemoveOutcome::LastAdmin => return Err(last_admin()),
    };
    let username = tx
        .user(&removed.user_id)
        .await?
        .map(|u| u.username)
        .unwrap_or_default();
    tx.log(admin_entry(
        actor,
        "role.remove",
        format!(
            "{username}: {} on {}",
            removed.assignment.role, removed.assignment.scope
        ),
    ))
    .await?;
    let ip = actor.ip.to_string();
    reconcile_users(
        &mut tx,
        std::slice::from_ref(&removed.user_id),
        By {
            actor: &actor.username,
            ip: &ip,
        },
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

fn last_admin() -> AppError {
    AppError::Conflict(
        "This is the last administrator over everything; assign another first.".into(),
    )
}

/// Disables or enables an account. Disabling ends the user's grants in force and closes
/// their waiting requests ("requester disabled") in the same transaction, and never
/// leaves the portal without an enabled administrator over everything.
pub async fn set_disabled(
    store: &Store,
    actor: &Actor,
    user_id: &str,
    disabled: bool,
) -> AppResult<()> {
    require(actor, Action::ManageUsers, &Resource::Global)?;
    if disabled && actor.user_id == user_id {
        return Err(AppError::Conflict(
            "You cannot disable your own account.".into(),
        ));
    }
    let mut tx = store.begin_write().await?;
    let user = tx
        .user(user_id)
        .await?
        .ok_or_else(|| AppError::NotFound("The user".into()))?;
    let holds_global_admin = tx
        .role_inputs(user_id)
        .await?
        .assignments
        .contains(&RoleAssignment {
            role: Role::Admin,
            scope: Scope::All,
        });
    if disabled
        && !user.disabled
        && holds_global_admin
        && tx.count_other_global_admins(user_id).await? == 0
    {
        return Err(last_admin());
    }
    tx.set_disabled(user_id, disabled).await?;
    tx.log(admin_entry(
        actor,
        if disabled {
            "user.disable"
        } else {
            "user.enable"
        },
        user.username.clone(),
    ))
    .await?;
    if disabled {
        let ip = actor.ip.to_string();
        reconcile_users(
            &mut tx,
            std::slice::from_ref(&user.id),
            By {
                actor: &actor.username,
                ip: &ip,
            },
        )
        .await?;
    }
    tx.commit().await?;
    Ok(())
}
