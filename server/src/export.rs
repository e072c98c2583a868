//! Downloads that are plain HTTP responses rather than pages: the activity log as CSV.

use axum::Extension;
use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use portcullis_app::api::jit::parse_log_filter;
use portcullis_app::error::AppError;
use portcullis_app::services::{Actor, activity};
use portcullis_app::state::{AppState, ClientIp};
use serde::Deserialize;
use tower_sessions::Session;

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct Filter {
    vm: String,
    actor: String,
    action: String,
    from: String,
    to: String,
    /// The zone the page read its dates in (an IANA name; empty: UTC).
    zone: String,
}

fn refuse(e: AppError) -> Response {
    let status = StatusCode::from_u16(e.status_code()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (status, e.to_string()).into_response()
}

pub async fn activity_csv(
    State(state): State<AppState>,
    Extension(ClientIp(ip)): Extension<ClientIp>,
    session: Session,
    Query(f): Query<Filter>,
) -> Response {
    let run = async {
        let user = portcullis_app::auth::session_user(&state.store, &session)
            .await?
            .filter(|u| !u.must_change_password)
            .ok_or(AppError::Unauthenticated)?;
        let roles = portcullis_app::services::sso::effective_roles(&state.store, &user.id).await?;
        let actor = Actor {
            user_id: user.id,
            username: user.username,
            roles,
            ip,
        };
        let q = parse_log_filter(&f.vm, &f.actor, &f.action, &f.from, &f.to, &f.zone)?;
        activity::csv_stream(&state.store, &actor, q).await
    };
    match run.await {
        Ok(chunks) => (
            [
                (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
                (
                    header::CONTENT_DISPOSITION,
                    "attachment; filename=\"portcullis-activity.csv\"",
                ),
            ],
            axum::body::Body::from_stream(chunks),
        )
            .into_response(),
        Err(e) => refuse(e),
    }
}
