//! Server functions of the notification pages: administrators' channels, routing rules
//! and recent messages; each user's own e-mail settings; the page of one request that
//! messages link to (approve by link); and the count behind the header's "waiting for
//! you" badge. Thin adapters over `services::notify` and `services::requests`, which
//! check every permission.
//!
//! Every action answers a [`Done`]: the hydrated page shows it from the answer. A plain
//! HTML form post (no JavaScript) is answered with a redirect back to the page, so for it
//! alone the `Done` waits in the session until that page's loader takes it (like a new
//! API token); a generated signing key is a secret, so it never sits in a URL either.

// A server function takes one argument per form field, and the macro copies them to the
// generated client function, where an item attribute does not reach.
#![allow(clippy::too_many_arguments)]

use crate::error::AppError;
use crate::model::RequestView;
use leptos::prelude::*;
use serde::{Deserialize, Serialize};

/// Where a plain form post's outcome waits for the administrators' page.
#[cfg(feature = "ssr")]
const ADMIN_DONE_KEY: &str = "notify_admin_done";
/// Where a plain form post's outcome waits for the user's own settings page.
#[cfg(feature = "ssr")]
const SETTINGS_DONE_KEY: &str = "notify_settings_done";
/// How long "Send test" waits for the delivery job's first attempt: longer than one
/// attempt may take (10 s), shorter than a request may take.
#[cfg(feature = "ssr")]
const TEST_WAIT: std::time::Duration = std::time::Duration::from_secs(12);

/// What an action did, in a sentence for the page to show after it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Done {
    pub message: String,
    /// The channel a "Send test" was about: its row shows the outcome.
    pub channel_id: Option<String>,
    /// False when a test message was not delivered.
    pub ok: bool,
    /// A new webhook's generated signing key, shown this once.
    pub signing_key: Option<String>,
}

#[cfg(feature = "ssr")]
impl Done {
    fn said(message: impl Into<String>) -> Self {
        Done {
            message: message.into(),
            channel_id: None,
            ok: true,
            signing_key: None,
        }
    }
}

/// One outbox message as the administrators' page shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageRow {
    pub id: String,
    pub event_label: String,
    pub subject: String,
    /// A user's own e-mail: their address. A channel's message: empty.
    pub recipient: String,
    pub status: String,
    pub attempts: i64,
    pub created_at: i64,
    pub last_attempt_at: Option<i64>,
    pub next_attempt_at: i64,
    pub last_error: String,
}

/// A channel as shown: its target already redacted by the service, never its secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelRow {
    pub id: String,
    pub name: String,
    pub kind_label: String,
    pub target: String,
    pub enabled: bool,
    pub last_status: String,
    pub last_error: String,
    pub last_attempt_at: Option<i64>,
    /// Its latest messages, newest first.
    pub messages: Vec<MessageRow>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouteRow {
    pub id: String,
    pub channel: String,
    pub event_label: String,
    /// Empty: every group.
    pub group: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NotificationsData {
    pub channels: Vec<ChannelRow>,
    pub routes: Vec<RouteRow>,
    /// The latest users' own e-mails.
    pub personal: Vec<MessageRow>,
    /// What a plain form post did just before.
    pub done: Option<Done>,
}

/// A user's own e-mail settings, as their form shows them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MySettings {
    pub email: String,
    pub notify: bool,
    pub warn_minutes: i64,
    /// The address the identity provider gave, used while `email` is empty.
    pub provider_email: String,
    pub done: Option<Done>,
}

/// One request, with what the viewer may do about it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestDetail {
    pub request: RequestView,
    pub vm_group: String,
    /// It waits for a decision and the viewer may approve or deny it.
    pub can_decide: bool,
}

/// Requests waiting for the viewer's decision: up to a page of them, and whether more wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Waiting {
    pub count: usize,
    pub more: bool,
}

#[cfg(feature = "ssr")]
mod views {
    use super::{ChannelRow, MessageRow, RouteRow};
    use crate::domain::notify::NotifyEvent;
    use crate::services::notify::{ChannelView, MessageView, RouteView};

    pub fn message(m: MessageView) -> MessageRow {
        MessageRow {
            event_label: NotifyEvent::parse(&m.event)
                .map(|e| e.label().to_owned())
                .unwrap_or(m.event),
            id: m.id,
            subject: m.subject,
            recipient: m.recipient,
            status: m.status,
            attempts: m.attempts,
            created_at: m.created_at,
            last_attempt_at: m.last_attempt_at,
            next_attempt_at: m.next_attempt_at,
            last_error: m.last_error,
        }
    }

    pub fn channel(c: ChannelView, messages: Vec<MessageView>) -> ChannelRow {
        ChannelRow {
            id: c.id,
            name: c.name,
            kind_label: c.kind_label,
            target: c.target,
            enabled: c.enabled,
            last_status: c.last_status,
            last_error: c.last_error,
            last_attempt_at: c.last_attempt_at,
            messages: messages.into_iter().map(message).collect(),
        }
    }

    pub fn route(r: RouteView) -> RouteRow {
        RouteRow {
            id: r.id,
            channel: r.channel,
            event_label: r.event_label,
            group: r.group,
        }
    }
}

#[server(endpoint = "notifications_page")]
pub async fn notifications_page() -> Result<NotificationsData, AppError> {
    use crate::services::notify;
    let run = async {
        let c = super::ctx::ctx().await?;
        let actor = c.actor().await?;
        let store = &c.state.store;
        let mut channels = Vec::new();
        for channel in notify::list_channels(store, &actor).await? {
            let messages = notify::channel_messages(store, &actor, &channel.id).await?;
            channels.push(views::channel(channel, messages));
        }
        let routes = notify::list_routes(store, &actor).await?;
        let personal = notify::personal_messages(store, &actor).await?;
        let done = c.take_kept::<Done>(ADMIN_DONE_KEY, |_| true).await?;
        Ok(NotificationsData {
            channels,
            routes: routes.into_iter().map(views::route).collect(),
            personal: personal.into_iter().map(views::message).collect(),
            done,
        })
    };
    super::ctx::finish(run.await)
}

/// Adds a channel. A webhook given no signing key gets one, answered once.
#[server(endpoint = "create_notify_channel")]
pub async fn create_notify_channel(
    #[server(default)] name: String,
    #[server(default)] kind: String,
    #[server(default)] target: String,
    #[server(default)] secret: String,
    #[server(default)] smtp_security: String,
    #[server(default)] smtp_username: String,
    #[server(default)] email_from: String,
    #[server(default)] email_to: String,
) -> Result<Done, AppError> {
    use crate::domain::notify::ChannelInput;
    let run = async {
        let c = super::ctx::ctx().await?;
        let actor = c.actor().await?;
        let input = ChannelInput {
            name: &name,
            kind: &kind,
            target: &target,
            secret: &secret,
            smtp_security: &smtp_security,
            smtp_username: &smtp_username,
            email_from: &email_from,
            email_to: &email_to,
        };
        let (_, key) =
            crate::services::notify::create_channel(&c.state.store, &actor, &input).await?;
        let done = Done {
            signing_key: key,
            ..Done::said(format!("Channel {} added.", name.trim()))
        };
        c.keep_for_next_page(ADMIN_DONE_KEY, &done).await?;
        Ok(done)
    };
    super::ctx::finish(run.await)
}

/// Queues a test message for the channel and waits for the delivery job's attempt, so the
/// administrator sees at once whether the receiver took it.
#[server(endpoint = "test_notify_channel")]
pub async fn test_notify_channel(id: String) -> Result<Done, AppError> {
    let run = async {
        let c = super::ctx::ctx().await?;
        let actor = c.actor().await?;
        let store = &c.state.store;
        let message = crate::services::notify::queue_test(store, &actor, &id).await?;
        let row = crate::services::delivery::wait_for_attempt(store, &message, TEST_WAIT).await?;
        let (ok, message) = match row {
            Some(m) if m.status == "delivered" => (true, "Delivered.".to_owned()),
            Some(m) if m.status == "failed" => (false, format!("Not delivered: {}.", m.last_error)),
            Some(m) if m.attempts > 0 => (
                false,
                format!(
                    "Not delivered: {}. It will be tried again.",
                    m.last_error
                ),
            ),
            Some(_) => (
                false,
                "Not sent yet: the message waits in the outbox. Look at the channel's messages in a moment."
                    .to_owned(),
            ),
            None => (false, "The channel was removed meanwhile.".to_owned()),
        };
        let done = Done {
            channel_id: Some(id),
            ok,
            ..Done::said(message)
        };
        c.keep_for_next_page(ADMIN_DONE_KEY, &done).await?;
        Ok(done)
    };
    super::ctx::finish(run.await)
}

/// Switches a channel on or off and keeps everything else as stored.
#[server(endpoint = "set_notify_channel_enabled")]
pub async fn set_notify_channel_enabled(id: String, enabled: String) -> Result<Done, AppError> {
    let run = async {
        let c = super::ctx::ctx().await?;
        let actor = c.actor().await?;
        let store = &c.state.store;
        let enabled = match enabled.as_str() {
            "true" => true,
            "false" => false,
            _ => return Err(AppError::field("enabled", "Choose true or false.")),
        };
        let name =
            crate::services::notify::set_channel_enabled(store, &actor, &id, enabled).await?;
        let done = Done::said(format!(
            "Channel {} {}.",
            name,
            if enabled { "enabled" } else { "disabled" }
        ));
        c.keep_for_next_page(ADMIN_DONE_KEY, &done).await?;
        Ok(done)
    };
    super::ctx::finish(run.await)
}

#[server(endpoint = "delete_notify_channel")]
pub async fn delete_notify_channel(id: String) -> Result<Done, AppError> {
    let run = async {
        let c = super::ctx::ctx().await?;
        let actor = c.actor().await?;
        let store = &c.state.store;
        let name = crate::services::notify::get_channel(store, &actor, &id)
            .await?
            .name;
        crate::services::notify::delete_channel(store, &actor, &id).await?;
        let done = Done::said(format!("Channel {name} removed."));
        c.keep_for_next_page(ADMIN_DONE_KEY, &done).await?;
        // Asked on the confirmation page: the message waits on the notifications page.
        c.back_from_confirmation();
        Ok(done)
    };
    super::ctx::finish(run.await)
}

#[server(endpoint = "add_notify_route")]
pub async fn add_notify_route(
    #[server(default)] channel: String,
    #[server(default)] event: String,
    #[server(default)] group: String,
) -> Result<Done, AppError> {
    let run = async {
        let c = super::ctx::ctx().await?;
        let actor = c.actor().await?;
        crate::services::notify::add_route(&c.state.store, &actor, &channel, &event, &group)
            .await?;
        let done = Done::said("Routing rule added.");
        c.keep_for_next_page(ADMIN_DONE_KEY, &done).await?;
        Ok(done)
    };
    super::ctx::finish(run.await)
}

#[server(endpoint = "delete_notify_route")]
pub async fn delete_notify_route(id: String) -> Result<Done, AppError> {
    let run = async {
        let c = super::ctx::ctx().await?;
        let actor = c.actor().await?;
        crate::services::notify::delete_route(&c.state.store, &actor, &id).await?;
        let done = Done::said("Routing rule removed.");
        c.keep_for_next_page(ADMIN_DONE_KEY, &done).await?;
        Ok(done)
    };
    super::ctx::finish(run.await)
}

#[server(endpoint = "my_notification_settings")]
pub async fn my_notification_settings() -> Result<MySettings, AppError> {
    let run = async {
        let c = super::ctx::ctx().await?;
        let actor = c.actor().await?;
        let s = crate::services::notify::mail_settings(&c.state.store, &actor).await?;
        let done = c.take_kept::<Done>(SETTINGS_DONE_KEY, |_| true).await?;
        Ok(MySettings {
            email: s.email,
            notify: s.notify,
            warn_minutes: s.warn_minutes,
            provider_email: s.provider_email,
            done,
        })
    };
    super::ctx::finish(run.await)
}

#[server(endpoint = "save_my_notification_settings")]
pub async fn save_my_notification_settings(
    #[server(default)] email: String,
    #[server(default)] notify: Option<String>,
    #[server(default)] warn_minutes: String,
) -> Result<Done, AppError> {
    let run = async {
        let c = super::ctx::ctx().await?;
        let actor = c.actor().await?;
        crate::services::notify::set_mail_settings(
            &c.state.store,
            &actor,
            &email,
            notify.is_some(),
            &warn_minutes,
        )
        .await?;
        let done = Done::said("Your notification settings are saved.");
        c.keep_for_next_page(SETTINGS_DONE_KEY, &done).await?;
        Ok(done)
    };
    super::ctx::finish(run.await)
}

/// One request, for its requester or whoever may see its VM (the service decides).
#[server(endpoint = "get_request_detail")]
pub async fn get_request_detail(id: String) -> Result<RequestDetail, AppError> {
    let run = async {
        let c = super::ctx::ctx().await?;
        let actor = c.actor().await?;
        let r = crate::services::requests::get(&c.state.store, &actor, &id).await?;
        // Only whether to offer the buttons: approve and deny decide again.
        let can_decide = crate::services::requests::may_decide(&c.state.store, &actor, &r).await?;
        let vm_group = r.vm_group.clone();
        Ok(RequestDetail {
            request: super::jit::views::request_view(&actor, r),
            vm_group,
            can_decide,
        })
    };
    super::ctx::finish(run.await)
}

/// How many requests wait for the caller's decision (the first page's worth). A visitor
/// who is not signed in, or must change their password first, has none.
#[server(endpoint = "approvals_waiting")]
pub async fn approvals_waiting() -> Result<Waiting, AppError> {
    let run = async {
        let c = super::ctx::ctx().await?;
        let actor = match c.actor().await {
            Ok(actor) => actor,
            Err(AppError::Unauthenticated | AppError::PasswordChangeRequired) => {
                return Ok(Waiting::default());
            }
            Err(e) => return Err(e),
        };
        let page = crate::services::requests::approval_queue(&c.state.store, &actor, 1).await?;
        Ok(Waiting {
            count: page.items.len(),
            more: page.more,
        })
    };
    super::ctx::finish(run.await)
}
