//! The caller (`/me`) and API tokens. A token created through the API never outlives
//! the token that asked for it, so a stolen token cannot mint a longer-lived one.

use super::dto::{
    CreatedTokenDto, MeDto, RoleDto, TokenDto, TokenInput, TokenList, TokenListQuery,
};
use super::{ApiError, ApiJson, ApiPath, ApiQuery, ApiResult, Caller, utc};
use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use portcullis_app::services::tokens::{self, TokenInfo};
use portcullis_app::state::AppState;

fn token_dto(t: TokenInfo) -> TokenDto {
    TokenDto {
        id: t.id,
        name: t.name,
        prefix: t.prefix,
        created_utc: utc(t.created_at),
        expires_utc: utc(t.expires_at),
        last_used_utc: t.last_used_at.map(utc),
        revoked_utc: t.revoked_at.map(utc),
        owner: None,
    }
}

/// Who the token belongs to, with the roles it acts with now.
#[utoipa::path(get, path = "/api/v1/me", tag = "account",
    responses(
        (status = 200, body = MeDto),
        (status = 401, body = super::ErrorBody),
    ))]
pub async fn me(Caller(actor): Caller) -> Json<MeDto> {
    Json(MeDto {
        user_id: actor.user_id,
        username: actor.username,
        roles: actor
            .roles
            .iter()
            .map(|r| RoleDto {
                role: r.role.as_str().to_owned(),
                scope: r.scope.kind().to_owned(),
                target: r.scope.target().to_owned(),
            })
            .collect(),
        client_ip: actor.ip.to_string(),
    })
}

/// Your API tokens (never their secrets); with `all=true`, every user's tokens in force,
/// with their owner, for an administrator over everything (someone who left, a lost
/// laptop: each can then be revoked).
#[utoipa::path(get, path = "/api/v1/tokens", tag = "account",
    params(TokenListQuery),
    responses(
        (status = 200, body = TokenList),
        (status = 400, body = super::ErrorBody),
        (status = 401, body = super::ErrorBody),
        (status = 403, body = super::ErrorBody),
    ))]
pub async fn list_tokens(
    State(state): State<AppState>,
    Caller(actor): Caller,
    ApiQuery(q): ApiQuery<TokenListQuery>,
) -> ApiResult<Json<TokenList>> {
    let value = if q.all == Some(true) {
        tokens::list_all_live(&state.store, &actor)
            .await?
            .into_iter()
            .map(|t| TokenDto {
                owner: Some(t.username),
                ..token_dto(t.token)
            })
            .collect()
    } else {
        tokens::list(&state.store, &actor)
            .await?
            .into_iter()
            .map(token_dto)
            .collect()
    };
    Ok(Json(TokenList { value }))
}

/// Revokes an API token at once: one of yours (it may be the one making this call), or,
/// for an administrator of users over everything, anyone's.
#[utoipa::path(delete, path = "/api/v1/tokens/{id}", tag = "account",
    params(("id" = String, Path, description = "The token's id")),
    responses(
        (status = 204, description = "Revoked"),
        (status = 401, body = super::ErrorBody),
        (status = 404, body = super::ErrorBody),
        (status = 409, body = super::ErrorBody),
    ))]
pub async fn revoke_token(
    State(state): State<AppState>,
    Caller(actor): Caller,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<StatusCode> {
    tokens::revoke(&state.store, &actor, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Creates an API token: for yourself, or, for an administrator over everything, for
/// another user (a service account, say). The token is in the answer this once. It
/// expires after `expiresInDays`, but never after the token making this call.
#[utoipa::path(post, path = "/api/v1/tokens", tag = "account",
    request_body = TokenInput,
    responses(
        (status = 201, body = CreatedTokenDto),
        (status = 401, body = super::ErrorBody),
        (status = 403, body = super::ErrorBody),
        (status = 409, body = super::ErrorBody),
        (status = 422, body = super::ErrorBody),
    ))]
pub async fn create_token(
    State(state): State<AppState>,
    Caller(actor): Caller,
    headers: HeaderMap,
    ApiJson(input): ApiJson<TokenInput>,
) -> ApiResult<(StatusCode, Json<CreatedTokenDto>)> {
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .map(|(_, token)| token.trim())
        .unwrap_or_default();
    let not_after = tokens::bearer_expiry(&state.store, bearer).await?;
    let days = input
        .expires_in_days
        .map(|d| d.to_string())
        .unwrap_or_default();
    let created = tokens::create_for(
        &state.store,
        &actor,
        input.user.as_deref(),
        &input.name,
        &days,
        not_after,
    )
    .await
    .map_err(|e| {
        ApiError::from_app(e, &|f| match f {
            "expires_days" => "expiresInDays".into(),
            other => other.into(),
        })
    })?;
    let owner = input
        .user
        .map(|u| u.trim().to_lowercase())
        .filter(|u| !u.is_empty())
        .unwrap_or(actor.username);
    Ok((
        StatusCode::CREATED,
        Json(CreatedTokenDto {
            token: created.token,
            owner,
            info: token_dto(created.info),
        }),
    ))
}
