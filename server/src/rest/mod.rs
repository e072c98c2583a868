//! The REST API, version 1 (`/api/v1/...`), for scripts and the `portcullis` CLI.
//!
//! Handlers are thin: authenticate the bearer token into the same [`Actor`] the server
//! functions build from a session, translate Azure-style JSON into the inputs the
//! services take, call the service, and translate back. Permission checks and activity
//! logging happen in the services, so the browser and the API cannot drift apart.
//!
//! The OpenAPI document is generated from the handlers' annotations and the DTO types
//! (utoipa), and served at `/api/v1/openapi.json`; the routes it lists are the routes
//! registered, because both come from the same `routes!` calls.

mod activity;
mod dto;
mod input;
mod notifications;
mod policies;
mod reference;
mod requests;
mod tokens;
mod vms;

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use portcullis_app::error::AppError;
use portcullis_app::services::Actor;
use portcullis_app::services::tokens::{TokenRefusal, authenticate};
use portcullis_app::state::{AppState, ClientIp};
use serde::de::DeserializeOwned;
use std::collections::BTreeMap;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub use dto::ErrorBody;

/// Request bodies larger than this are refused with 413 before they are parsed.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Portcullis API",
        version = "1",
        description = "Just-in-time network access: VMs, JIT policies, access requests and \
            the activity log. Authenticate with a personal API token created in the portal, \
            with `portcullis-server token create` on the host, or through this API \
            (`Authorization: Bearer pcu_…`). Bodies follow the shapes of Azure's \
            jitNetworkAccessPolicies; see docs/api.md for the differences."
    ),
    modifiers(&BearerAuth),
    security(("bearer" = [])),
    tags(
        (name = "vms", description = "VMs under protection"),
        (name = "jit", description = "JIT policies"),
        (name = "requests", description = "Access requests"),
        (name = "activity", description = "The activity log"),
        (name = "account", description = "The caller, their API tokens and e-mail settings"),
        (name = "notifications", description = "Notification channels and routing rules"),
    )
)]
struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
    }
}

/// The API's routes and the OpenAPI document that describes exactly them.
pub fn router() -> Router<AppState> {
    let (api, mut doc) = OpenApiRouter::<AppState>::with_openapi(ApiDoc::openapi())
        .routes(routes!(tokens::me))
        .routes(routes!(tokens::list_tokens, tokens::create_token))
        .routes(routes!(tokens::revoke_token))
        .routes(routes!(vms::list_vms, vms::create_vm))
        // A file of VMs may be larger than other bodies: up to the server's limit of any
        // request (the inner limit is the one that counts).
        .merge(
            OpenApiRouter::new()
                .routes(routes!(vms::import_vms))
                .layer(DefaultBodyLimit::max(crate::MAX_REQUEST_BYTES)),
        )
        .routes(routes!(vms::get_vm, vms::update_vm, vms::delete_vm))
        .routes(routes!(vms::vm_enrollment_token))
        .routes(routes!(vms::group_enrollment_token))
        .routes(routes!(policies::list_policies))
        .routes(routes!(
            policies::get_policy,
            policies::put_policy,
            policies::delete_policy
        ))
        .routes(routes!(policies::initiate))
        .routes(routes!(requests::list_requests, requests::create_requests))
        .routes(routes!(requests::get_request))
        .routes(routes!(requests::approve))
        .routes(routes!(requests::deny))
        .routes(routes!(requests::revoke))
        .routes(routes!(requests::extend))
        .routes(routes!(activity::query))
        .routes(routes!(activity::export))
        .routes(routes!(
            notifications::list_channels,
            notifications::create_channel
        ))
        .routes(routes!(
            notifications::get_channel,
            notifications::update_channel,
            notifications::delete_channel
        ))
        .routes(routes!(notifications::test_channel))
        .routes(routes!(notifications::channel_messages))
        .routes(routes!(
            notifications::list_routes,
            notifications::add_route
        ))
        .routes(routes!(notifications::delete_route))
        .routes(routes!(
            notifications::get_mail_settings,
            notifications::put_mail_settings
        ))
        .split_for_parts();
    // The document itself and its reference page are public and not API operations.
    doc.paths.paths.remove("/api/v1/openapi.json");
    let doc_json = std::sync::Arc::new(doc.to_pretty_json().unwrap_or_default());
    let page = std::sync::Arc::new(reference::page(&doc));
    api.route(
        "/api/v1/openapi.json",
        axum::routing::get({
            let doc_json = doc_json.clone();
            move || async move {
                (
                    [(header::CONTENT_TYPE, "application/json")],
                    doc_json.as_str().to_owned(),
                )
            }
        }),
    )
    .route(
        "/api/v1/reference",
        axum::routing::get(move || async move {
            (
                [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
                page.as_str().to_owned(),
            )
        }),
    )
    .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
}

/// Any other path below `/api/v1/`: a JSON 404 rather than the portal's HTML page.
pub async fn not_found() -> Response {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        "There is no API endpoint at this path; see /api/v1/openapi.json.",
    )
    .into_response()
}

/// An API failure: an HTTP status and `{"error":{"code","message","fields"}}`.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    fields: BTreeMap<String, String>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            fields: BTreeMap::new(),
        }
    }

    /// A validation failure of one JSON field.
    pub fn field(field: impl Into<String>, message: impl Into<String>) -> Self {
        let message = message.into();
        let field = field.into();
        let mut e = ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation",
            format!("{field}: {message}"),
        );
        e.fields.insert(field, message);
        e
    }

    /// A validation error whose field names are the service's form names, renamed to the
    /// JSON names the caller sent.
    pub fn from_app(error: AppError, rename: &dyn Fn(&str) -> String) -> Self {
        match error {
            AppError::Validation(errors) => {
                let mut fields: BTreeMap<String, String> = BTreeMap::new();
                for e in errors.0 {
                    let name = rename(&e.field);
                    fields
                        .entry(name)
                        .and_modify(|m| {
                            m.push(' ');
                            m.push_str(&e.message);
                        })
                        .or_insert(e.message);
                }
                let message = fields
                    .iter()
                    .map(|(f, m)| format!("{f}: {m}"))
                    .collect::<Vec<_>>()
                    .join("; ");
                ApiError {
                    status: StatusCode::UNPROCESSABLE_ENTITY,
                    code: "validation",
                    message,
                    fields,
                }
            }
            other => other.into(),
        }
    }
}

impl From<AppError> for ApiError {
    fn from(error: AppError) -> Self {
        let code = match &error {
            AppError::Validation(_) => return ApiError::from_app(error, &|f| f.to_owned()),
            AppError::Unauthenticated => "unauthenticated",
            AppError::PasswordChangeRequired => "password_change_required",
            AppError::Forbidden => "forbidden",
            AppError::NotFound(_) => "not_found",
            AppError::Conflict(_) => "conflict",
            AppError::RateLimited { .. } => "rate_limited",
            AppError::Busy { .. } => "busy",
            AppError::Internal => "internal",
            AppError::Transport(_) => "bad_request",
        };
        let status =
            StatusCode::from_u16(error.status_code()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        ApiError::new(status, code, error.to_string())
    }
}

impl From<TokenRefusal> for ApiError {
    fn from(refusal: TokenRefusal) -> Self {
        let (status, code) = match refusal {
            TokenRefusal::Internal => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
            TokenRefusal::Disabled | TokenRefusal::PasswordChangeRequired => {
                (StatusCode::FORBIDDEN, "forbidden")
            }
            _ => (StatusCode::UNAUTHORIZED, "unauthenticated"),
        };
        ApiError::new(status, code, refusal.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: dto::ErrorDetail {
                code: self.code.to_owned(),
                message: self.message,
                fields: self.fields,
            },
        };
        let mut res = (self.status, Json(body)).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            res.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"portcullis\""),
            );
        }
        res
    }
}

pub type ApiResult<T> = Result<T, ApiError>;

/// The caller of an API endpoint, authenticated by their bearer token. Extracted first,
/// so that nothing about a request is looked at before its caller is known.
pub struct Caller(pub Actor);

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> ApiResult<Self> {
        let ip = parts
            .extensions
            .get::<ClientIp>()
            .map(|c| c.0)
            .ok_or_else(|| {
                tracing::error!("client address missing from request");
                ApiError::from(AppError::Internal)
            })?;
        let header = parts.headers.get(header::AUTHORIZATION);
        let bearer = match header {
            None => None,
            Some(v) => {
                let v = v
                    .to_str()
                    .map_err(|_| ApiError::from(TokenRefusal::Malformed))?;
                let (scheme, token) = v
                    .split_once(' ')
                    .ok_or(ApiError::from(TokenRefusal::Malformed))?;
                if !scheme.eq_ignore_ascii_case("bearer") {
                    return Err(TokenRefusal::Malformed.into());
                }
                Some(token.trim())
            }
        };
        match authenticate(&state.store, bearer, ip).await {
            Ok(actor) => {
                // Who called what; what it changed is in the activity log.
                tracing::info!(user = %actor.username, %ip, method = %parts.method, path = %parts.uri.path(), "API call");
                Ok(Caller(actor))
            }
            Err(refusal) => {
                if refusal != TokenRefusal::Missing {
                    tracing::warn!(%ip, path = %parts.uri.path(), reason = %refusal, "API token refused");
                }
                Err(refusal.into())
            }
        }
    }
}

/// A JSON body whose every failure (syntax, wrong type, unknown field, missing or wrong
/// content type, too large) is a 4xx JSON error naming what was wrong.
pub struct ApiJson<T>(pub T);

fn json_rejection(r: JsonRejection) -> ApiError {
    let status = r.status();
    let code = match status {
        StatusCode::PAYLOAD_TOO_LARGE => "payload_too_large",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
        StatusCode::UNPROCESSABLE_ENTITY => "validation",
        _ => "bad_request",
    };
    let message = if status == StatusCode::PAYLOAD_TOO_LARGE {
        format!("The request body is larger than {MAX_BODY_BYTES} bytes.")
    } else {
        r.body_text()
    };
    // A body the server cannot buffer is never the server's fault here.
    let status = if status.is_server_error() {
        StatusCode::BAD_REQUEST
    } else {
        status
    };
    ApiError::new(status, code, message)
}

impl<T: DeserializeOwned> FromRequest<AppState> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> ApiResult<Self> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(v)) => Ok(ApiJson(v)),
            Err(r) => Err(json_rejection(r)),
        }
    }
}

/// A JSON body that may be left out entirely (then `T::default()`), as scripts often
/// send a bare POST to approve or deny.
pub struct OptionalJson<T>(pub T);

impl<T: DeserializeOwned + Default> FromRequest<AppState> for OptionalJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> ApiResult<Self> {
        let bytes = axum::body::Bytes::from_request(req, state)
            .await
            .map_err(|r| {
                let status = r.status();
                if status == StatusCode::PAYLOAD_TOO_LARGE {
                    ApiError::new(
                        status,
                        "payload_too_large",
                        format!("The request body is larger than {MAX_BODY_BYTES} bytes."),
                    )
                } else {
                    ApiError::new(StatusCode::BAD_REQUEST, "bad_request", r.body_text())
                }
            })?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(OptionalJson(T::default()));
        }
        Json::<T>::from_bytes(&bytes)
            .map(|Json(v)| OptionalJson(v))
            .map_err(json_rejection)
    }
}

/// Path parameters with a JSON error when they cannot be decoded.
pub struct ApiPath<T>(pub T);

impl<T: DeserializeOwned + Send> FromRequestParts<AppState> for ApiPath<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> ApiResult<Self> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|p| ApiPath(p.0))
            .map_err(|r: PathRejection| {
                ApiError::new(StatusCode::BAD_REQUEST, "bad_request", r.body_text())
            })
    }
}

/// Query parameters with a JSON error naming the parameter that did not parse.
pub struct ApiQuery<T>(pub T);

impl<T: DeserializeOwned> FromRequestParts<AppState> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> ApiResult<Self> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|q| ApiQuery(q.0))
            .map_err(|r: QueryRejection| {
                ApiError::new(StatusCode::BAD_REQUEST, "bad_request", r.body_text())
            })
    }
}

/// Milliseconds since the epoch as RFC 3339 UTC, e.g. `2026-01-31T12:00:00Z`.
pub fn utc(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_default()
}
