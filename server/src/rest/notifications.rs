//! Notification channels, routing rules and the caller's own e-mail settings, for
//! administrators' scripts: the same services as the portal's Notifications page. A
//! channel's secret (a signing key, a Slack/Teams URL path, an SMTP password) is never in
//! an answer; a generated signing key is, once, when the channel is created.

use super::{ApiError, ApiJson, ApiPath, ApiResult, Caller, utc};
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use portcullis_app::domain::notify::ChannelInput;
use portcullis_app::services::notify::{self, ChannelView, MessageView, RouteView};
use portcullis_app::state::AppState;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A channel as shown: never its secret, its URL without the path.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ChannelDto {
    pub id: String,
    pub name: String,
    /// webhook, slack, teams or email.
    pub kind: String,
    /// The URL's scheme and host, or the SMTP server as host:port.
    pub target: String,
    /// Whether a signing key or SMTP password is stored.
    pub has_secret: bool,
    pub enabled: bool,
    /// E-mail channels: sender, recipients of routed events, security and user name.
    pub email_from: String,
    pub email_to: Vec<String>,
    pub smtp_security: String,
    pub smtp_username: String,
    /// The latest message's status (pending, delivered, failed), if any.
    pub last_status: String,
    pub last_error: String,
    pub last_attempt_utc: Option<String>,
}

fn channel_dto(c: ChannelView) -> ChannelDto {
    ChannelDto {
        id: c.id,
        name: c.name,
        kind: c.kind,
        target: c.target,
        has_secret: c.has_secret,
        enabled: c.enabled,
        email_from: c.email_from,
        email_to: c.email_to,
        smtp_security: c.smtp_security,
        smtp_username: c.smtp_username,
        last_status: c.last_status,
        last_error: c.last_error,
        last_attempt_utc: c.last_attempt_at.map(utc),
    }
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ChannelList {
    pub value: Vec<ChannelDto>,
}

/// A channel to create or replace.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ChannelInputDto {
    /// 1 to 80 characters, unique.
    pub name: String,
    /// webhook, slack, teams or email (cannot change later).
    pub kind: String,
    /// The URL to post to (https:// or http://), or for e-mail the SMTP server as host:port.
    pub target: String,
    /// Webhook signing key (16+ characters; omitted: one is made and returned once), or
    /// the SMTP password. Omitted on replace: the stored one is kept if the URL (e-mail:
    /// the server, security and user name) is unchanged; otherwise it must be given again.
    pub secret: Option<String>,
    /// E-mail: starttls (default), tls or none.
    pub smtp_security: Option<String>,
    pub smtp_username: Option<String>,
    pub email_from: Option<String>,
    /// E-mail: who gets the events routed to the channel.
    pub email_to: Option<Vec<String>>,
    /// Replace only: default true.
    pub enabled: Option<bool>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CreatedChannelDto {
    /// The signing key made for a webhook created without one: shown this once.
    pub signing_key: Option<String>,
    #[serde(flatten)]
    pub channel: ChannelDto,
}

/// One message of the outbox.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MessageDto {
    pub id: String,
    pub event: String,
    pub subject: String,
    /// A user's own e-mail: their address; empty for a channel's message.
    pub recipient: String,
    /// pending, delivered or failed (given up).
    pub status: String,
    pub attempts: i64,
    pub created_utc: String,
    pub last_attempt_utc: Option<String>,
    pub next_attempt_utc: String,
    pub last_error: String,
}

fn message_dto(m: MessageView) -> MessageDto {
    MessageDto {
        id: m.id,
        event: m.event,
        subject: m.subject,
        recipient: m.recipient,
        status: m.status,
        attempts: m.attempts,
        created_utc: utc(m.created_at),
        last_attempt_utc: m.last_attempt_at.map(utc),
        next_attempt_utc: utc(m.next_attempt_at),
        last_error: m.last_error,
    }
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct MessageList {
    pub value: Vec<MessageDto>,
}

/// A routing rule: the channel hears the event for VMs of the group.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RouteDto {
    pub id: String,
    pub channel_id: String,
    pub channel: String,
    /// approval.waiting, request.approved, request.denied, access.revoked,
    /// access.extended, access.ending_soon, agent.silent or agent.error.
    pub event: String,
    /// Empty: every group.
    pub group: String,
}

fn route_dto(r: RouteView) -> RouteDto {
    RouteDto {
        id: r.id,
        channel_id: r.channel_id,
        channel: r.channel,
        event: r.event,
        group: r.group,
    }
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct RouteList {
    pub value: Vec<RouteDto>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RouteInput {
    pub channel_id: String,
    pub event: String,
    /// Omitted, empty or `*`: every group.
    pub group: Option<String>,
}

/// The caller's own e-mail settings.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MailSettingsDto {
    /// Empty: no e-mail.
    pub email: String,
    /// Whether to e-mail about the caller's requests and the approvals they may give.
    pub notify: bool,
    /// Minutes before access ends to warn (0 to 1440; 0: no warning).
    pub warn_minutes: i64,
}

fn rename(field: &str) -> String {
    match field {
        "smtp_security" => "smtpSecurity".into(),
        "smtp_username" => "smtpUsername".into(),
        "email_from" => "emailFrom".into(),
        "email_to" => "emailTo".into(),
        "warn_minutes" => "warnMinutes".into(),
        "channel" => "channelId".into(),
        other => other.into(),
    }
}

fn from_app(e: portcullis_app::error::AppError) -> ApiError {
    ApiError::from_app(e, &rename)
}

/// Owns the strings a [`ChannelInput`] borrows.
struct Owned {
    to: String,
    input: ChannelInputDto,
}

impl Owned {
    fn new(input: ChannelInputDto) -> Self {
        let to = input.email_to.clone().unwrap_or_default().join(",");
        Owned { to, input }
    }

    fn as_input(&self) -> ChannelInput<'_> {
        let i = &self.input;
        ChannelInput {
            name: &i.name,
            kind: &i.kind,
            target: &i.target,
            secret: i.secret.as_deref().unwrap_or(""),
            smtp_security: i.smtp_security.as_deref().unwrap_or("starttls"),
            smtp_username: i.smtp_username.as_deref().unwrap_or(""),
            email_from: i.email_from.as_deref().unwrap_or(""),
            email_to: &self.to,
        }
    }
}

/// Every notification channel (administrators of everything).
#[utoipa::path(get, path = "/api/v1/notificationChannels", tag = "notifications",
    responses(
        (status = 200, body = ChannelList),
        (status = 401, body = super::ErrorBody),
        (status = 403, body = super::ErrorBody),
    ))]
pub async fn list_channels(
    State(state): State<AppState>,
    Caller(actor): Caller,
) -> ApiResult<Json<ChannelList>> {
    let value = notify::list_channels(&state.store, &actor)
        .await?
        .into_iter()
        .map(channel_dto)
        .collect();
    Ok(Json(ChannelList { value }))
}

/// Adds a channel. A webhook created without a signing key gets one, in this answer only.
#[utoipa::path(post, path = "/api/v1/notificationChannels", tag = "notifications",
    request_body = ChannelInputDto,
    responses(
        (status = 201, body = CreatedChannelDto),
        (status = 401, body = super::ErrorBody),
        (status = 403, body = super::ErrorBody),
        (status = 422, body = super::ErrorBody),
    ))]
pub async fn create_channel(
    State(state): State<AppState>,
    Caller(actor): Caller,
    ApiJson(input): ApiJson<ChannelInputDto>,
) -> ApiResult<(StatusCode, Json<CreatedChannelDto>)> {
    let owned = Owned::new(input);
    let (id, signing_key) = notify::create_channel(&state.store, &actor, &owned.as_input())
        .await
        .map_err(from_app)?;
    let channel = channel_dto(notify::get_channel(&state.store, &actor, &id).await?);
    Ok((
        StatusCode::CREATED,
        Json(CreatedChannelDto {
            signing_key,
            channel,
        }),
    ))
}

#[utoipa::path(get, path = "/api/v1/notificationChannels/{id}", tag = "notifications",
    params(("id" = String, Path, description = "The channel's id")),
    responses(
        (status = 200, body = ChannelDto),
        (status = 401, body = super::ErrorBody),
        (status = 403, body = super::ErrorBody),
        (status = 404, body = super::ErrorBody),
    ))]
pub async fn get_channel(
    State(state): State<AppState>,
    Caller(actor): Caller,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<ChannelDto>> {
    Ok(Json(channel_dto(
        notify::get_channel(&state.store, &actor, &id).await?,
    )))
}

/// Replaces a channel's settings (its kind stays). An omitted secret keeps the stored one
/// only while the destination is unchanged; a new one answers 422 naming `secret`.
#[utoipa::path(put, path = "/api/v1/notificationChannels/{id}", tag = "notifications",
    params(("id" = String, Path, description = "The channel's id")),
    request_body = ChannelInputDto,
    responses(
        (status = 200, body = ChannelDto),
        (status = 401, body = super::ErrorBody),
        (status = 403, body = super::ErrorBody),
        (status = 404, body = super::ErrorBody),
        (status = 422, body = super::ErrorBody),
    ))]
pub async fn update_channel(
    State(state): State<AppState>,
    Caller(actor): Caller,
    ApiPath(id): ApiPath<String>,
    ApiJson(input): ApiJson<ChannelInputDto>,
) -> ApiResult<Json<ChannelDto>> {
    let enabled = input.enabled.unwrap_or(true);
    let owned = Owned::new(input);
    notify::update_channel(&state.store, &actor, &id, &owned.as_input(), enabled)
        .await
        .map_err(from_app)?;
    Ok(Json(channel_dto(
        notify::get_channel(&state.store, &actor, &id).await?,
    )))
}

/// Removes a channel, its routing rules and its messages still waiting.
#[utoipa::path(delete, path = "/api/v1/notificationChannels/{id}", tag = "notifications",
    params(("id" = String, Path, description = "The channel's id")),
    responses(
        (status = 204, description = "Removed"),
        (status = 401, body = super::ErrorBody),
        (status = 403, body = super::ErrorBody),
        (status = 404, body = super::ErrorBody),
    ))]
pub async fn delete_channel(
    State(state): State<AppState>,
    Caller(actor): Caller,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<StatusCode> {
    notify::delete_channel(&state.store, &actor, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Sends a test message through the channel and answers with its outcome (waiting up to
/// 12 seconds for the attempt; a message still pending then is retried later as any other).
#[utoipa::path(post, path = "/api/v1/notificationChannels/{id}/test", tag = "notifications",
    params(("id" = String, Path, description = "The channel's id")),
    responses(
        (status = 200, body = MessageDto),
        (status = 401, body = super::ErrorBody),
        (status = 403, body = super::ErrorBody),
        (status = 404, body = super::ErrorBody),
    ))]
pub async fn test_channel(
    State(state): State<AppState>,
    Caller(actor): Caller,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<MessageDto>> {
    let message = notify::queue_test(&state.store, &actor, &id).await?;
    portcullis_app::services::delivery::wait_for_attempt(
        &state.store,
        &message,
        std::time::Duration::from_secs(12),
    )
    .await?;
    Ok(Json(message_dto(
        notify::message(&state.store, &actor, &message).await?,
    )))
}

/// The channel's latest 20 messages, newest first.
#[utoipa::path(get, path = "/api/v1/notificationChannels/{id}/messages", tag = "notifications",
    params(("id" = String, Path, description = "The channel's id")),
    responses(
        (status = 200, body = MessageList),
        (status = 401, body = super::ErrorBody),
        (status = 403, body = super::ErrorBody),
        (status = 404, body = super::ErrorBody),
    ))]
pub async fn channel_messages(
    State(state): State<AppState>,
    Caller(actor): Caller,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<MessageList>> {
    let value = notify::channel_messages(&state.store, &actor, &id)
        .await?
        .into_iter()
        .map(message_dto)
        .collect();
    Ok(Json(MessageList { value }))
}

/// Every routing rule.
#[utoipa::path(get, path = "/api/v1/notificationRoutes", tag = "notifications",
    responses(
        (status = 200, body = RouteList),
        (status = 401, body = super::ErrorBody),
        (status = 403, body = super::ErrorBody),
    ))]
pub async fn list_routes(
    State(state): State<AppState>,
    Caller(actor): Caller,
) -> ApiResult<Json<RouteList>> {
    let value = notify::list_routes(&state.store, &actor)
        .await?
        .into_iter()
        .map(route_dto)
        .collect();
    Ok(Json(RouteList { value }))
}

/// Sends an event to a channel for VMs of a group (or of every group).
#[utoipa::path(post, path = "/api/v1/notificationRoutes", tag = "notifications",
    request_body = RouteInput,
    responses(
        (status = 201, body = RouteDto),
        (status = 401, body = super::ErrorBody),
        (status = 403, body = super::ErrorBody),
        (status = 422, body = super::ErrorBody),
    ))]
pub async fn add_route(
    State(state): State<AppState>,
    Caller(actor): Caller,
    ApiJson(input): ApiJson<RouteInput>,
) -> ApiResult<(StatusCode, Json<RouteDto>)> {
    let group = input.group.unwrap_or_default();
    let id = notify::add_route(
        &state.store,
        &actor,
        &input.channel_id,
        &input.event,
        &group,
    )
    .await
    .map_err(from_app)?;
    let route = notify::list_routes(&state.store, &actor)
        .await?
        .into_iter()
        .find(|r| r.id == id)
        .ok_or_else(|| {
            ApiError::from(portcullis_app::error::AppError::NotFound(
                "The routing rule".into(),
            ))
        })?;
    Ok((StatusCode::CREATED, Json(route_dto(route))))
}

#[utoipa::path(delete, path = "/api/v1/notificationRoutes/{id}", tag = "notifications",
    params(("id" = String, Path, description = "The routing rule's id")),
    responses(
        (status = 204, description = "Removed"),
        (status = 401, body = super::ErrorBody),
        (status = 403, body = super::ErrorBody),
        (status = 404, body = super::ErrorBody),
    ))]
pub async fn delete_route(
    State(state): State<AppState>,
    Caller(actor): Caller,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<StatusCode> {
    notify::delete_route(&state.store, &actor, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The caller's own e-mail settings.
#[utoipa::path(get, path = "/api/v1/me/notifications", tag = "account",
    responses(
        (status = 200, body = MailSettingsDto),
        (status = 401, body = super::ErrorBody),
    ))]
pub async fn get_mail_settings(
    State(state): State<AppState>,
    Caller(actor): Caller,
) -> ApiResult<Json<MailSettingsDto>> {
    let s = notify::mail_settings(&state.store, &actor).await?;
    Ok(Json(MailSettingsDto {
        email: s.email,
        notify: s.notify,
        warn_minutes: s.warn_minutes,
    }))
}

/// Sets the caller's own e-mail settings.
#[utoipa::path(put, path = "/api/v1/me/notifications", tag = "account",
    request_body = MailSettingsDto,
    responses(
        (status = 200, body = MailSettingsDto),
        (status = 401, body = super::ErrorBody),
        (status = 422, body = super::ErrorBody),
    ))]
pub async fn put_mail_settings(
    State(state): State<AppState>,
    Caller(actor): Caller,
    ApiJson(input): ApiJson<MailSettingsDto>,
) -> ApiResult<Json<MailSettingsDto>> {
    notify::set_mail_settings(
        &state.store,
        &actor,
        &input.email,
        input.notify,
        &input.warn_minutes.to_string(),
    )
    .await
    .map_err(from_app)?;
    get_mail_settings(State(state), Caller(actor)).await
}
