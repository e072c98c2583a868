//! Personal API tokens: created and revoked by their owner in the portal, and turned back
//! into the owner (with their roles as they are now) on every API call.

use super::{Actor, random_hex};
use crate::domain::api_token::{
    display_prefix, format_token, parse_token, parse_token_days, parse_token_name,
};
use crate::domain::secret::{hash_secret, hashes_match};
use crate::domain::{Action, FieldErrors, Resource, permits};
use crate::error::{AppError, AppResult};
pub use crate::model::{CreatedToken, TokenInfo, UserTokenInfo};
use crate::store::{NewApiToken, Store, StoredApiToken, TokenCreation};
use std::net::IpAddr;

/// Last use is recorded at most this often per token, so that API reads stay reads.
const TOUCH_EVERY_MS: i64 = 60_000;
/// Live tokens per user: enough for every script, few enough that the list shows (and
/// lets the user revoke) every one.
pub const MAX_LIVE_TOKENS: i64 = 50;

impl From<StoredApiToken> for TokenInfo {
    fn from(t: StoredApiToken) -> Self {
        TokenInfo {
            id: t.id,
            name: t.name,
            prefix: t.prefix,
            created_at: t.created_at,
            expires_at: t.expires_at,
            last_used_at: t.last_used_at,
            revoked_at: t.revoked_at,
        }
    }
}

fn random_secret() -> String {
    use rand::Rng;
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rngs::OsRng;
    // 43 characters of 62 carry more than 256 bits.
    (0..43)
        .map(|_| ALPHABET[rng.gen_range(0..ALPHABET.len())] as char)
        .collect()
}

/// Creates a token for the actor. Every signed-in user may have tokens: a token can do
/// no more than its owner can.
pub async fn create(
    store: &Store,
    actor: &Actor,
    name: &str,
    days: &str,
) -> AppResult<CreatedToken> {
    create_for(store, actor, None, name, days, None).await
}

/// Creates a token for `owner` (a user name), or for the actor when `owner` is None or
/// the actor's own name. A token for someone else needs the right to manage users over
/// everything: it acts as that user. `not_after` caps the expiry: a token created with a
/// token must not outlive it, or a stolen token could mint a longer-lived one.
pub async fn create_for(
    store: &Store,
    actor: &Actor,
    owner: Option<&str>,
    name: &str,
    days: &str,
    not_after: Option<i64>,
) -> AppResult<CreatedToken> {
    let mut errors = FieldErrors::new();
    let name = errors.check("name", parse_token_name(name));
    let days = errors.check("expires_days", parse_token_days(days));
    let owner = owner
        .map(|o| o.trim().to_lowercase())
        .filter(|o| !o.is_empty());
    if owner.is_none() && actor.is_host_console() {
        errors.add("user", "Name the user the token is for.");
    }
    errors.into_result()?;
    let (Some(name), Some(days)) = (name, days) else {
        return Err(AppError::Internal);
    };
    let (owner_id, for_other) = match owner {
        Some(owner) if owner != actor.username || actor.is_host_console() => {
            // Another user's token acts as that user: only for whoever manages users.
            super::users::require(actor, Action::ManageUsers, &Resource::Global)?;
            let user = store
                .find_user_by_username(&owner)
                .await?
                .ok_or_else(|| AppError::field("user", format!("No user is named '{owner}'.")))?;
            if user.disabled {
                return Err(AppError::field(
                    "user",
                    format!("The account '{owner}' is disabled; enable it first."),
                ));
            }
            (user.id, Some(user.username))
        }
        _ => (actor.user_id.clone(), None),
    };
    let id = random_hex(16);
    let secret = random_secret();
    let now = store.now_ms();
    let expires_at = match not_after {
        Some(cap) => (now + days * 86_400_000).min(cap),
        None => now + days * 86_400_000,
    };
    let prefix = display_prefix(&id);
    let mut log = actor.entry("token.create", "");
    log.detail = format!(
        "API token \"{name}\" ({prefix}), expires {}",
        crate::model::format_utc(expires_at)
    );
    if let Some(owner) = &for_other {
        log.detail.push_str(&format!(" for user {owner}"));
    }
    let created = store
        .create_api_token(
            &NewApiToken {
                id: &id,
                user_id: &owner_id,
                name: &name,
                prefix: &prefix,
                token_hash: &hash_secret(&secret),
                created_at: now,
                expires_at,
            },
            MAX_LIVE_TOKENS,
            log,
        )
        .await?;
    match created {
        TokenCreation::Created => {}
        TokenCreation::TooMany => {
            return Err(AppError::Conflict(match &for_other {
                Some(owner) => format!(
                    "{owner} already has {MAX_LIVE_TOKENS} API tokens in force; revoke one no longer used first."
                ),
                None => format!(
                    "You already have {MAX_LIVE_TOKENS} API tokens in force; revoke one you no longer use first."
                ),
            }));
        }
        // A name tells the owner which token to revoke: two alike would not.
        TokenCreation::NameTaken => {
            return Err(AppError::field(
                "name",
                match &for_other {
                    Some(owner) => format!(
                        "{owner} already has a token named \"{name}\"; choose another name or revoke that one first."
                    ),
                    None => format!(
                        "You already have a token named \"{name}\"; choose another name or revoke that one first."
                    ),
                },
            ));
        }
    }
    Ok(CreatedToken {
        token: format_token(&id, &secret),
        info: TokenInfo {
            id,
            name,
            prefix,
            created_at: now,
            expires_at,
            last_used_at: None,
            revoked_at: None,
        },
    })
}

/// When the presented bearer token expires, to cap the tokens it creates. A bearer this
/// store does not know is refused: a token made through the API must never outlive the
/// token that made it, so there is no uncapped fallback.
pub async fn bearer_expiry(store: &Store, bearer: &str) -> AppResult<Option<i64>> {
    let Some(parts) = parse_token(bearer) else {
        return Err(AppError::Unauthenticated);
    };
    match store.get_api_token(parts.id).await? {
        Some(t) => Ok(Some(t.expires_at)),
        None => Err(AppError::Unauthenticated),
    }
}

pub async fn list(store: &Store, actor: &Actor) -> AppResult<Vec<TokenInfo>> {
    Ok(store
        .list_api_tokens(&actor.user_id)
        .await?
        .into_iter()
        .map(TokenInfo::from)
        .collect())
}

/// Every user's tokens in force, for administrators of everything: when someone leaves
/// or loses a laptop, their tokens can be revoked without disabling the account.
pub async fn list_all_live(store: &Store, actor: &Actor) -> AppResult<Vec<UserTokenInfo>> {
    super::users::require(actor, Action::ManageUsers, &Resource::Global)?;
    let now = chrono::Utc::now().timestamp_millis();
    Ok(store
        .list_live_api_tokens(now)
        .await?
        .into_iter()
        .map(|(t, username)| UserTokenInfo {
            username,
            token: t.into(),
        })
        .collect())
}

/// Revokes a token: one of the actor's own, or anyone's for an administrator of
/// everything. For anyone else another user's token is "not found", so that ids cannot
/// be probed.
pub async fn revoke(store: &Store, actor: &Actor, id: &str) -> AppResult<()> {
    let own = |t: &StoredApiToken| t.user_id == actor.user_id;
    let admin = permits(&actor.roles, Action::ManageUsers, &Resource::Global);
    let token = store
        .get_api_token(id)
        .await?
        .filter(|t| own(t) || admin)
        .ok_or_else(|| AppError::NotFound("The API token".into()))?;
    if token.revoked_at.is_some() {
        return Err(AppError::Conflict(
            "The API token is already revoked.".into(),
        ));
    }
    let mut log = actor.entry("token.revoke", "");
    log.detail = format!("API token \"{}\" ({})", token.name, token.prefix);
    if !own(&token) {
        let owner = store
            .get_user(&token.user_id)
            .await?
            .map(|u| u.username)
            .unwrap_or_else(|| token.user_id.clone());
        log.detail.push_str(&format!(" of user {owner}"));
    }
    let now = chrono::Utc::now().timestamp_millis();
    if store.revoke_api_token(id, &token.user_id, now, log).await? {
        Ok(())
    } else {
        Err(AppError::Conflict(
            "The API token is already revoked.".into(),
        ))
    }
}

/// Why a presented token does not authenticate. Each has its own message so a script's
/// author knows what to fix; none says whether another user's token exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenRefusal {
    #[error("Send an API token: Authorization: Bearer pcu_…")]
    Missing,
    #[error("The Authorization header does not carry a Portcullis API token (pcu_…).")]
    Malformed,
    #[error("The API token is not valid.")]
    Unknown,
    #[error("The API token has been revoked.")]
    Revoked,
    #[error("The API token has expired; create a new one in the portal.")]
    Expired,
    #[error("The account that owns this API token is disabled.")]
    Disabled,
    #[error("The account that owns this API token must change its password in the portal first.")]
    PasswordChangeRequired,
    #[error("Something went wrong on our side. It has been logged; please try again.")]
    Internal,
}

impl From<crate::store::StoreError> for TokenRefusal {
    fn from(error: crate::store::StoreError) -> Self {
        tracing::error!(%error, "store error while checking an API token");
        TokenRefusal::Internal
    }
}

/// The caller a bearer token stands for, with the owner's roles as they are now.
pub async fn authenticate(
    store: &Store,
    bearer: Option<&str>,
    ip: IpAddr,
) -> Result<Actor, TokenRefusal> {
    let raw = bearer.ok_or(TokenRefusal::Missing)?;
    let parts = parse_token(raw).ok_or(TokenRefusal::Malformed)?;
    let token = store
        .get_api_token(parts.id)
        .await?
        .filter(|t| hashes_match(&t.token_hash, &hash_secret(parts.secret)))
        .ok_or(TokenRefusal::Unknown)?;
    if token.revoked_at.is_some() {
        return Err(TokenRefusal::Revoked);
    }
    let now = chrono::Utc::now().timestamp_millis();
    if token.expires_at <= now {
        return Err(TokenRefusal::Expired);
    }
    let user = store
        .get_user(&token.user_id)
        .await?
        .ok_or(TokenRefusal::Unknown)?;
    if user.disabled {
        return Err(TokenRefusal::Disabled);
    }
    if user.must_change_password {
        return Err(TokenRefusal::PasswordChangeRequired);
    }
    // Direct roles and those of the owner's identity-provider groups, as for a browser
    // (the groups only while the last sign-in at the provider is recent).
    let roles = crate::services::sso::token_roles(store, &user.id, now)
        .await
        .map_err(|_| TokenRefusal::Internal)?;
    if token
        .last_used_at
        .is_none_or(|last| now - last >= TOUCH_EVERY_MS)
        && let Err(e) = store.touch_api_token(&token.id, now).await
    {
        // Losing a last-used time is no reason to refuse the call.
        tracing::warn!(error = %e, "recording API token use failed");
    }
    Ok(Actor {
        user_id: user.id,
        username: user.username,
        roles,
        ip,
    })
}
