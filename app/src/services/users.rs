//! Accounts: bootstrap, sign-in, password changes, user and role administration.

use crate::auth::{LoginLimiter, hash_password, verify_password};
use crate::domain::user::parse_display_name;
use crate::domain::{
    Action, FieldErrors, NewPassword, Resource, Role, RoleAssignment, Scope, Username, permits,
};
use crate::error::{AppError, AppResult};
use crate::model::{RoleView, UserRow, UserView};
use crate::store::{NewUser, RemoveOutcome, Store, StoredAssignment, StoredUser};
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
        )
        .await;
    match created {
        Ok(_) => Ok(Some(password)),
        // Another replica starting at the same moment created it first.
        Err(crate::store::StoreError::Duplicate) => Ok(None),
        Err(e) => Err(e.into()),
    }
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
    let view = UserView::new(user, &assignments);
    if store.identity_of(&user.id).await?.is_none() {
        return Ok(view);
    }
    let group_rules = crate::services::sso::group_roles_of(store, &user.id).await?;
    Ok(view.with_group_roles(&assignments, &group_rules))
}

/// Checks a sign-in. The same message answers an unknown user, a wrong password and a
/// disabled account, so the form does not reveal which accounts exist.
pub async fn sign_in(
    store: &Store,
    limiter: &LoginLimiter,
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
    errors.into_result()?;
    let name = username.trim().to_lowercase();
    let keys = [format!("user:{name}"), format!("ip:{client_ip}")];
    limiter
        .check(&keys)
        .map_err(|retry_after_secs| AppError::RateLimited { retry_after_secs })?;
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
            limiter.record_failure(&keys);
            tracing::warn!(user = %name, %client_ip, "sign-in refused");
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

/// Records an account administration step in the activity log.
pub async fn log_admin(
    store: &Store,
    actor: &str,
    ip: IpAddr,
    action: &str,
    detail: String,
) -> AppResult<()> {
    store
        .log_event(crate::store::NewLogEntry {
            actor: actor.to_owned(),
            client_ip: ip.to_string(),
            action: action.to_owned(),
            result: "success".into(),
            detail,
            ..Default::default()
        })
        .await?;
    Ok(())
}

pub async fn change_password(
    store: &Store,
    user: &StoredUser,
    current: &str,
    new: &str,
    confirm: &str,
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
    store.set_password(&user.id, &hash, false).await?;
    tracing::info!(user = %user.username, "password changed");
    Ok(())
}

pub fn require(
    assignments: &[RoleAssignment],
    action: Action,
    resource: &Resource,
) -> AppResult<()> {
    if permits(assignments, action, resource) {
        Ok(())
    } else {
        Err(AppError::Forbidden)
    }
}

pub async fn list_users(store: &Store) -> AppResult<Vec<UserRow>> {
    let users = store.list_users().await?;
    let assignments = store.all_assignments().await?;
    let identities = store.list_identities().await?;
    let rules = store.list_group_rules().await?;
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
                roles: mine.iter().map(RoleView::from).collect(),
                identity: String::new(),
            }
            .with_identity(identities.iter().find(|i| i.user_id == u.id), &rules)
        })
        .collect())
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

pub async fn create_user(store: &Store, input: CreateUserInput<'_>) -> AppResult<String> {
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
        Scope::parse(input.scope_kind, input.scope_target),
    );
    errors.into_result()?;
    let (Some(username), Some(display), Some(password), Some(role), Some(scope)) =
        (username, display, password, role, scope)
    else {
        return Err(AppError::Internal);
    };
    let hash = hash_password(password.expose().to_owned()).await?;
    let created = store
        .create_user(
            &NewUser {
                username: username.as_str(),
                display_name: &display,
                password_hash: Some(&hash),
                must_change_password: input.must_change_password,
            },
            &[RoleAssignment { role, scope }],
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

pub async fn add_role(
    store: &Store,
    user_id: &str,
    role: &str,
    kind: &str,
    target: &str,
) -> AppResult<()> {
    let mut errors = FieldErrors::new();
    let role = errors.check("role", Role::parse(role));
    let scope = errors.check("scope_target", Scope::parse(kind, target));
    errors.into_result()?;
    let (Some(role), Some(scope)) = (role, scope) else {
        return Err(AppError::Internal);
    };
    if store.get_user(user_id).await?.is_none() {
        return Err(AppError::NotFound("The user".into()));
    }
    match store
        .add_assignment(user_id, &RoleAssignment { role, scope })
        .await
    {
        Ok(_) => Ok(()),
        Err(crate::store::StoreError::Duplicate) => Err(AppError::field(
            "role",
            "The user already has this role in this scope.",
        )),
        Err(e) => Err(e.into()),
    }
}

pub async fn remove_role(store: &Store, assignment_id: &str) -> AppResult<()> {
    match store.remove_assignment(assignment_id).await? {
        RemoveOutcome::Removed(_) => Ok(()),
        RemoveOutcome::NotFound => Err(AppError::NotFound("The role assignment".into())),
        RemoveOutcome::LastAdmin => Err(AppError::Conflict(
            "This is the last administrator over everything; assign another first.".into(),
        )),
    }
}

pub async fn set_disabled(
    store: &Store,
    actor_id: &str,
    user_id: &str,
    disabled: bool,
) -> AppResult<()> {
    if disabled && actor_id == user_id {
        return Err(AppError::Conflict(
            "You cannot disable your own account.".into(),
        ));
    }
    if disabled && store.count_other_global_admins(user_id).await? == 0 {
        return Err(AppError::Conflict(
            "This is the last administrator over everything; assign another first.".into(),
        ));
    }
    if store.set_disabled(user_id, disabled).await? {
        Ok(())
    } else {
        Err(AppError::NotFound("The user".into()))
    }
}
