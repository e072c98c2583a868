//! Who hears what. Each change that others should know of calls one of the functions here
//! inside its own write transaction, which puts the messages in the outbox: they exist
//! exactly when the change committed, and sending them (services::delivery) never holds up
//! or fails the change. Recipients are decided with `permits`, like every other permission:
//! a waiting request goes to the users who may approve it, an agent's trouble to the VM's
//! administrators, a decision or an ending to the requester; and every event also goes to
//! the channels whose routing rules name it for the VM's group.
//!
//! Administrators (of the whole portal) manage channels and routes here too, and each
//! user their own e-mail settings.

use super::access::roles_from;
use super::{Actor, random_hex};
use crate::domain::notify::{
    ChannelInput, ChannelKind, EmailAddress, EmailSettings, Notice, NotifyEvent, parse_channel,
    parse_warn_minutes, redact_target, secret_needed_again,
};
use crate::domain::{Action, FieldErrors, Resource, permits, permits_approval};
use crate::error::{AppError, AppResult};
use crate::store::{MailSettings, OutboxRow, Store, StoredChannel, StoredRoute, WriteTx};

/// How many users a waiting request's e-mail may go to at most.
const MAX_MAIL_RECIPIENTS: i64 = 500;
/// Candidates read at a time while looking for a VM's approvers or administrators.
const MAIL_CANDIDATE_PAGE: i64 = 500;
/// An agent not heard from for this long is reported to its VM's administrators (longer
/// than the portal's "silent" flag, so that a restart of the server does not page anyone).
pub const AGENT_SILENT_NOTIFY_MS: i64 = 180_000;

/// What a request's messages are about.
#[derive(Debug, Clone)]
pub struct About {
    pub request_id: String,
    pub vm_id: String,
    pub vm_name: String,
    pub vm_group: String,
    pub requester_id: String,
    pub requester: String,
    /// "22/tcp, 3389/tcp".
    pub ports: String,
    pub source: String,
    pub justification: String,
    /// The later start it asked for, if any.
    pub starts: Option<i64>,
}

impl About {
    pub fn of_request(r: &crate::store::StoredRequest) -> Self {
        About {
            request_id: r.id.clone(),
            vm_id: r.vm_id.clone(),
            vm_name: r.vm_name.clone(),
            vm_group: r.vm_group.clone(),
            requester_id: r.requester_id.clone(),
            requester: r.requester.clone(),
            ports: r.ports_text(),
            source: r.source.clone(),
            justification: r.justification.clone(),
            starts: r.planned_start_at.filter(|_| r.start_at.is_none()),
        }
    }

    fn vm(&self) -> Resource {
        Resource::Vm {
            id: self.vm_id.clone(),
            group: self.vm_group.clone(),
        }
    }

    fn facts(&self) -> Vec<(String, String)> {
        let mut facts = vec![
            ("VM".to_owned(), self.vm_name.clone()),
            ("Group".to_owned(), self.vm_group.clone()),
            ("Requester".to_owned(), self.requester.clone()),
            ("Ports".to_owned(), self.ports.clone()),
            ("Source".to_owned(), self.source.clone()),
        ];
        if let Some(start) = self.starts {
            facts.push(("Starts".to_owned(), crate::model::format_utc(start)));
        }
        if !self.justification.is_empty() {
            facts.push(("Justification".to_owned(), self.justification.clone()));
        }
        facts
    }

    fn notice(&self, event: NotifyEvent, subject: String, text: String) -> Notice {
        Notice {
            event,
            subject,
            text,
            link: Some(format!("/requests/{}", self.request_id)),
            facts: self.facts(),
            request_id: Some(self.request_id.clone()),
            vm: Some(self.vm_name.clone()),
        }
    }
}

fn payload(notice: &Notice) -> String {
    serde_json::to_string(notice).expect("a notice serialises")
}

/// The channels routed `notice.event` for `group` get it.
async fn to_routes(tx: &mut WriteTx, notice: &Notice, group: &str) -> crate::store::Result<()> {
    let body = payload(notice);
    for channel in tx.routed_channels(notice.event.as_str(), group).await? {
        tx.enqueue(notice.event.as_str(), Some(&channel), "", &body)
            .await?;
    }
    Ok(())
}

/// Each address gets it by e-mail, once, if an e-mail channel can send it.
async fn to_people(
    tx: &mut WriteTx,
    notice: &Notice,
    emails: &[String],
) -> crate::store::Result<()> {
    if emails.is_empty() || !tx.has_mail_channel().await? {
        return Ok(());
    }
    let body = payload(notice);
    let mut sent: Vec<&str> = Vec::new();
    for email in emails {
        if !sent.iter().any(|s| s.eq_ignore_ascii_case(email)) {
            tx.enqueue(notice.event.as_str(), None, email, &body)
                .await?;
            sent.push(email);
        }
    }
    Ok(())
}

/// The addresses of users who, by their roles as this transaction sees them, may do
/// `may` (approve the request, or administer the VM) on the VM `vm`. The store narrows
/// the candidates to roles and group rules whose scope covers the VM, a page at a time,
/// and `permits` decides each; at most [`MAX_MAIL_RECIPIENTS`] are told (more is logged).
async fn addresses_of(
    tx: &mut WriteTx,
    roles: &[&str],
    vm: &Resource,
    may: impl Fn(&[crate::domain::RoleAssignment], &str) -> bool,
) -> crate::store::Result<Vec<String>> {
    let Resource::Vm { id, group } = vm else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    let mut after = String::new();
    loop {
        let page = tx
            .mail_candidates(roles, id, group, &after, MAIL_CANDIDATE_PAGE)
            .await?;
        for candidate in &page {
            let roles = roles_from(&tx.role_inputs(&candidate.user_id).await?);
            if may(&roles, &candidate.user_id) {
                if out.len() as i64 == MAX_MAIL_RECIPIENTS {
                    tracing::warn!(
                        vm = %id,
                        limit = MAX_MAIL_RECIPIENTS,
                        "more users may act on this VM than are e-mailed at once; route the event to a channel"
                    );
                    return Ok(out);
                }
                out.push(candidate.email.clone());
            }
        }
        match page.last() {
            Some(last) if page.len() as i64 == MAIL_CANDIDATE_PAGE => after = last.username.clone(),
            _ => return Ok(out),
        }
    }
}

/// A request waits for approval: whoever may approve it, and the routed channels.
pub async fn approval_waiting(tx: &mut WriteTx, about: &About) -> crate::store::Result<()> {
    let notice = about.notice(
        NotifyEvent::ApprovalWaiting,
        format!("{} asks for access to {}", about.requester, about.vm_name),
        format!(
            "{} asks for {} on {} from {}. It waits for your decision.",
            about.requester, about.ports, about.vm_name, about.source
        ),
    );
    let vm = about.vm();
    let requester = about.requester_id.clone();
    let emails = addresses_of(tx, &["approver", "admin"], &vm, |roles, user| {
        permits_approval(roles, &vm, user, &requester)
    })
    .await?;
    to_people(tx, &notice, &emails).await?;
    to_routes(tx, &notice, &about.vm_group).await
}

/// A decision or an ending the requester did not make themself: the requester hears it
/// (by e-mail), and the routed channels.
pub async fn tell_requester(
    tx: &mut WriteTx,
    event: NotifyEvent,
    about: &About,
    by: &str,
    detail: &str,
) -> crate::store::Result<()> {
    let opens = match about.starts {
        Some(start) => format!(
            "was approved and opens at {}",
            crate::model::format_utc(start)
        ),
        None => "was approved and opens now".to_owned(),
    };
    let (subject, what) = match event {
        NotifyEvent::Approved => ("approved", opens.as_str()),
        NotifyEvent::Denied => ("denied", "was denied"),
        NotifyEvent::Revoked => ("revoked", "was revoked"),
        NotifyEvent::Extended => ("extended", "was extended"),
        _ => ("updated", "changed"),
    };
    let mut text = format!(
        "Your access to {} on {} {what} by {by}.",
        about.ports, about.vm_name
    );
    if !detail.trim().is_empty() {
        text.push_str(&format!(" {}", detail.trim()));
    }
    let notice = about.notice(
        event,
        format!("Access to {} {subject}", about.vm_name),
        text,
    );
    if let Some(email) = tx.mail_address(&about.requester_id).await? {
        to_people(tx, &notice, &[email]).await?;
    }
    to_routes(tx, &notice, &about.vm_group).await
}

/// Grants ended by a change of someone else's (a policy edited or removed, a VM removed, a
/// role or the account taken away): each request's requester hears which ports and why.
pub async fn grants_ended(
    tx: &mut WriteTx,
    grants: &[crate::store::OpenGrant],
    by: &str,
    why: &str,
) -> crate::store::Result<()> {
    let mut requests: Vec<&str> = grants.iter().map(|g| g.request_id.as_str()).collect();
    requests.sort_unstable();
    requests.dedup();
    for id in requests {
        let mine: Vec<_> = grants.iter().filter(|g| g.request_id == id).collect();
        let g = mine[0];
        let about = About {
            request_id: g.request_id.clone(),
            vm_id: g.vm_id.clone(),
            vm_name: g.vm_name.clone(),
            vm_group: g.vm_group.clone(),
            requester_id: g.requester_id.clone(),
            requester: g.requester.clone(),
            ports: mine
                .iter()
                .map(|g| format!("{}/{}", g.port, g.protocol))
                .collect::<Vec<_>>()
                .join(", "),
            source: g.source.clone(),
            justification: String::new(),
            starts: None,
        };
        tell_requester(
            tx,
            NotifyEvent::Revoked,
            &about,
            by,
            &format!("Reason: {why}."),
        )
        .await?;
    }
    Ok(())
}

/// Looks for what time alone brings about (grants about to end, agents gone silent,
/// enforcement errors), tells whom it concerns once, and marks it told, in one write
/// transaction. Returns how many events were found.
pub async fn scan(store: &Store) -> AppResult<usize> {
    let mut tx = store.begin_write().await?;
    let now = tx.now;
    let mut found = 0;
    for soon in tx.requests_ending_soon(200).await? {
        found += 1;
        tx.mark_warned(&soon.request_id, soon.end_at).await?;
        let minutes = ((soon.end_at - now) + 59_999) / 60_000;
        let notice = Notice {
            event: NotifyEvent::EndingSoon,
            subject: format!("Access to {} ends in {minutes} min", soon.vm_name),
            text: format!(
                "Your access to {} ends at {} (in {minutes} minutes). Extend it or ask again if you need more time.",
                soon.vm_name,
                crate::model::format_utc(soon.end_at)
            ),
            link: Some(format!("/requests/{}", soon.request_id)),
            facts: vec![
                ("VM".to_owned(), soon.vm_name.clone()),
                ("Ends".to_owned(), crate::model::format_utc(soon.end_at)),
            ],
            request_id: Some(soon.request_id.clone()),
            vm: Some(soon.vm_name.clone()),
        };
        if let Some(email) = tx.mail_address(&soon.requester_id).await? {
            to_people(&mut tx, &notice, &[email]).await?;
        }
        to_routes(&mut tx, &notice, &soon.vm_group).await?;
    }
    for vm in tx
        .newly_silent_agents(now - AGENT_SILENT_NOTIFY_MS, 200)
        .await?
    {
        found += 1;
        tx.mark_silence_notified(&vm.vm_id).await?;
        let since = vm
            .last_seen
            .map(crate::model::format_utc)
            .unwrap_or_else(|| "never".into());
        let notice = agent_notice(
            NotifyEvent::AgentSilent,
            &vm,
            format!("Agent of {} is silent", vm.vm_name),
            format!(
                "The agent of {} has not been heard from since {since}. Grants it holds still end on time in the kernel; new grants and revocations do not reach the VM until it is back.",
                vm.vm_name
            ),
        );
        tell_admins(&mut tx, &notice, &vm).await?;
    }
    for vm in tx.changed_agent_errors(200).await? {
        tx.mark_error_notified(&vm.vm_id, &vm.error).await?;
        if vm.error.is_empty() {
            // Recovered: nothing to page anyone about; the next error is news again.
            continue;
        }
        found += 1;
        let notice = agent_notice(
            NotifyEvent::EnforcementError,
            &vm,
            format!("Enforcement error on {}", vm.vm_name),
            format!(
                "The agent of {} could not apply its access rules: {}",
                vm.vm_name, vm.error
            ),
        );
        tell_admins(&mut tx, &notice, &vm).await?;
    }
    tx.commit().await?;
    Ok(found)
}

fn agent_notice(
    event: NotifyEvent,
    vm: &crate::store::AgentNews,
    subject: String,
    text: String,
) -> Notice {
    Notice {
        event,
        subject,
        text,
        link: Some(format!("/vms/{}", vm.vm_id)),
        facts: vec![
            ("VM".to_owned(), vm.vm_name.clone()),
            ("Group".to_owned(), vm.vm_group.clone()),
        ],
        request_id: None,
        vm: Some(vm.vm_name.clone()),
    }
}

async fn tell_admins(
    tx: &mut WriteTx,
    notice: &Notice,
    vm: &crate::store::AgentNews,
) -> crate::store::Result<()> {
    let resource = Resource::Vm {
        id: vm.vm_id.clone(),
        group: vm.vm_group.clone(),
    };
    let emails = addresses_of(tx, &["admin"], &resource, |roles, _| {
        permits(roles, Action::ManageVm, &resource)
    })
    .await?;
    to_people(tx, notice, &emails).await?;
    to_routes(tx, notice, &vm.vm_group).await
}

// ---- Administration -------------------------------------------------------------------

/// A channel as it may be shown: its secret never, its URL without the path.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ChannelView {
    pub id: String,
    pub name: String,
    pub kind: String,
    pub kind_label: String,
    pub target: String,
    pub has_secret: bool,
    pub enabled: bool,
    pub email_from: String,
    pub email_to: Vec<String>,
    pub smtp_security: String,
    pub smtp_username: String,
    /// Messages waiting, and the latest attempts' outcome.
    pub last_status: String,
    pub last_error: String,
    pub last_attempt_at: Option<i64>,
}

fn view(c: &StoredChannel, latest: Option<&OutboxRow>) -> ChannelView {
    let kind = ChannelKind::parse(&c.kind).unwrap_or(ChannelKind::Webhook);
    let email: EmailSettings = serde_json::from_str(&c.settings).unwrap_or_default();
    ChannelView {
        id: c.id.clone(),
        name: c.name.clone(),
        kind: c.kind.clone(),
        kind_label: kind.label().to_owned(),
        target: redact_target(kind, &c.target),
        has_secret: !c.secret.is_empty(),
        enabled: c.enabled,
        email_from: email.from,
        email_to: email.to,
        smtp_security: email.security.as_str().to_owned(),
        smtp_username: email.username,
        last_status: latest.map(|m| m.status.clone()).unwrap_or_default(),
        last_error: latest.map(|m| m.last_error.clone()).unwrap_or_default(),
        last_attempt_at: latest.and_then(|m| m.last_attempt_at),
    }
}

/// One message as administrators see it (no body beyond its subject).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct MessageView {
    pub id: String,
    pub event: String,
    pub subject: String,
    /// The e-mail address of a user's own message; empty for a channel's.
    pub recipient: String,
    pub status: String,
    pub attempts: i64,
    pub created_at: i64,
    pub last_attempt_at: Option<i64>,
    pub next_attempt_at: i64,
    pub last_error: String,
}

pub fn message_view(m: &OutboxRow) -> MessageView {
    let subject = serde_json::from_str::<Notice>(&m.payload)
        .map(|n| n.subject)
        .unwrap_or_default();
    MessageView {
        id: m.id.clone(),
        event: m.event.clone(),
        subject,
        recipient: m.recipient.clone(),
        status: m.status.clone(),
        attempts: m.attempts,
        created_at: m.created_at,
        last_attempt_at: m.last_attempt_at,
        next_attempt_at: m.next_attempt_at,
        last_error: m.last_error.clone(),
    }
}

fn require_admin(actor: &Actor) -> AppResult<()> {
    if permits(&actor.roles, Action::ManageUsers, &Resource::Global) {
        Ok(())
    } else {
        Err(AppError::Forbidden)
    }
}

pub async fn list_channels(store: &Store, actor: &Actor) -> AppResult<Vec<ChannelView>> {
    require_admin(actor)?;
    let latest: std::collections::HashMap<String, OutboxRow> = store
        .latest_channel_messages()
        .await?
        .into_iter()
        .filter_map(|m| Some((m.channel_id.clone()?, m)))
        .collect();
    Ok(store
        .list_channels()
        .await?
        .iter()
        .map(|c| view(c, latest.get(&c.id)))
        .collect())
}

pub async fn get_channel(store: &Store, actor: &Actor, id: &str) -> AppResult<ChannelView> {
    require_admin(actor)?;
    let c = store
        .get_channel(id)
        .await?
        .ok_or_else(|| AppError::NotFound("The channel".into()))?;
    let latest = store.channel_messages(Some(&c.id), 1).await?;
    Ok(view(&c, latest.first()))
}

/// The latest messages of a channel, newest first.
pub async fn channel_messages(
    store: &Store,
    actor: &Actor,
    id: &str,
) -> AppResult<Vec<MessageView>> {
    require_admin(actor)?;
    if store.get_channel(id).await?.is_none() {
        return Err(AppError::NotFound("The channel".into()));
    }
    Ok(store
        .channel_messages(Some(id), 20)
        .await?
        .iter()
        .map(message_view)
        .collect())
}

/// The latest users' own e-mails, newest first.
pub async fn personal_messages(store: &Store, actor: &Actor) -> AppResult<Vec<MessageView>> {
    require_admin(actor)?;
    Ok(store
        .channel_messages(None, 20)
        .await?
        .iter()
        .map(message_view)
        .collect())
}

fn duplicate_name(e: crate::store::StoreError) -> AppError {
    match e {
        crate::store::StoreError::Duplicate => {
            AppError::field("name", "A channel with this name exists already.")
        }
        e => e.into(),
    }
}

/// Adds a channel. A webhook given no signing key gets a random one, shown once in the
/// answer (`Some`) so that the receiver can be set up with it.
pub async fn create_channel(
    store: &Store,
    actor: &Actor,
    input: &ChannelInput<'_>,
) -> AppResult<(String, Option<String>)> {
    require_admin(actor)?;
    let spec = parse_channel(input)?;
    let made_key =
        (spec.kind == ChannelKind::Webhook && spec.secret.is_none()).then(|| random_hex(32));
    let channel = StoredChannel {
        id: crate::store::new_id(),
        name: spec.name.clone(),
        kind: spec.kind.as_str().to_owned(),
        target: spec.target.clone(),
        secret: spec
            .secret
            .clone()
            .or_else(|| made_key.clone())
            .unwrap_or_default(),
        settings: serde_json::to_string(&spec.email).expect("settings serialise"),
        enabled: true,
        created_at: 0,
        updated_at: 0,
    };
    let mut tx = store.begin_write().await?;
    tx.insert_channel(&channel, &actor.username)
        .await
        .map_err(duplicate_name)?;
    let mut log = actor.entry("notify.channel.create", "");
    log.detail = format!(
        "{} ({}) to {}",
        channel.name,
        channel.kind,
        redact_target(spec.kind, &channel.target)
    );
    tx.log(log).await?;
    tx.commit().await?;
    Ok((channel.id, made_key))
}

/// Changes a channel. An empty secret keeps the stored one only if the channel still sends
/// to where it did; a new destination needs the secret again (a field error on `secret`).
pub async fn update_channel(
    store: &Store,
    actor: &Actor,
    id: &str,
    input: &ChannelInput<'_>,
    enabled: bool,
) -> AppResult<()> {
    require_admin(actor)?;
    let spec = parse_channel(input)?;
    let mut tx = store.begin_write().await?;
    let Some(mut channel) = tx.channel(id).await? else {
        return Err(AppError::NotFound("The channel".into()));
    };
    if channel.kind != spec.kind.as_str() {
        return Err(AppError::field(
            "kind",
            "A channel keeps its kind; add a new channel instead.",
        ));
    }
    if !channel.secret.is_empty() {
        let stored: EmailSettings = serde_json::from_str(&channel.settings).unwrap_or_default();
        if let Some(message) = secret_needed_again(&spec, &channel.target, &stored) {
            return Err(AppError::field("secret", message));
        }
    }
    channel.name = spec.name.clone();
    channel.target = spec.target.clone();
    if let Some(secret) = spec.secret {
        channel.secret = secret;
    }
    channel.settings = serde_json::to_string(&spec.email).expect("settings serialise");
    channel.enabled = enabled;
    tx.update_channel(&channel).await.map_err(duplicate_name)?;
    let mut log = actor.entry("notify.channel.update", "");
    log.detail = format!(
        "{} ({}){}",
        channel.name,
        channel.kind,
        if enabled { "" } else { ", disabled" }
    );
    tx.log(log).await?;
    tx.commit().await?;
    Ok(())
}

/// Turns a channel on or off, keeping everything else; returns its name.
pub async fn set_channel_enabled(
    store: &Store,
    actor: &Actor,
    id: &str,
    enabled: bool,
) -> AppResult<String> {
    require_admin(actor)?;
    let mut tx = store.begin_write().await?;
    let Some(mut channel) = tx.channel(id).await? else {
        return Err(AppError::NotFound("The channel".into()));
    };
    channel.enabled = enabled;
    tx.update_channel(&channel).await?;
    let mut log = actor.entry(
        if enabled {
            "notify.channel.enable"
        } else {
            "notify.channel.disable"
        },
        "",
    );
    log.detail = format!("{} ({})", channel.name, channel.kind);
    tx.log(log).await?;
    tx.commit().await?;
    Ok(channel.name)
}

pub async fn delete_channel(store: &Store, actor: &Actor, id: &str) -> AppResult<()> {
    require_admin(actor)?;
    let mut tx = store.begin_write().await?;
    let Some(channel) = tx.channel(id).await? else {
        return Err(AppError::NotFound("The channel".into()));
    };
    tx.delete_channel(id).await?;
    let mut log = actor.entry("notify.channel.remove", "");
    log.detail = format!("{} ({})", channel.name, channel.kind);
    tx.log(log).await?;
    tx.commit().await?;
    Ok(())
}

/// A routing rule as shown: with its channel's name.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RouteView {
    pub id: String,
    pub channel_id: String,
    pub channel: String,
    pub event: String,
    pub event_label: String,
    /// Empty: every group.
    pub group: String,
}

pub async fn list_routes(store: &Store, actor: &Actor) -> AppResult<Vec<RouteView>> {
    require_admin(actor)?;
    let channels = store.list_channels().await?;
    Ok(store
        .list_routes()
        .await?
        .into_iter()
        .map(|r: StoredRoute| RouteView {
            channel: channels
                .iter()
                .find(|c| c.id == r.channel_id)
                .map(|c| c.name.clone())
                .unwrap_or_default(),
            event_label: NotifyEvent::parse(&r.event)
                .map(|e| e.label().to_owned())
                .unwrap_or_default(),
            id: r.id,
            channel_id: r.channel_id,
            event: r.event,
            group: r.resource_group,
        })
        .collect())
}

/// Sends `event` to a channel for VMs of `group` (empty or `*`: every group).
pub async fn add_route(
    store: &Store,
    actor: &Actor,
    channel_id: &str,
    event: &str,
    group: &str,
) -> AppResult<String> {
    require_admin(actor)?;
    let mut errors = FieldErrors::new();
    let event = NotifyEvent::parse(event).filter(|e| NotifyEvent::ROUTABLE.contains(e));
    if event.is_none() {
        errors.add("event", "Choose an event.");
    }
    let group = group.trim();
    let group = if group == "*" { "" } else { group };
    if group.chars().count() > 100 || group.chars().any(char::is_control) {
        errors.add("group", "A group name has at most 100 characters.");
    }
    errors.into_result()?;
    let event = event.expect("checked");
    let mut tx = store.begin_write().await?;
    let Some(channel) = tx.channel(channel_id).await? else {
        return Err(AppError::field("channel", "Choose a channel."));
    };
    let id = match tx.add_route(channel_id, event.as_str(), group).await {
        Ok(id) => id,
        Err(crate::store::StoreError::Duplicate) => {
            return Err(AppError::field(
                "event",
                "This channel hears this event for this group already.",
            ));
        }
        Err(e) => return Err(e.into()),
    };
    let mut log = actor.entry("notify.route.add", "");
    log.detail = format!(
        "{} to {} for {}",
        event.as_str(),
        channel.name,
        if group.is_empty() {
            "every group"
        } else {
            group
        }
    );
    tx.log(log).await?;
    tx.commit().await?;
    Ok(id)
}

pub async fn delete_route(store: &Store, actor: &Actor, id: &str) -> AppResult<()> {
    require_admin(actor)?;
    let mut tx = store.begin_write().await?;
    let Some(route) = tx.delete_route(id).await? else {
        return Err(AppError::NotFound("The routing rule".into()));
    };
    let mut log = actor.entry("notify.route.remove", "");
    log.detail = format!(
        "{} for {}",
        route.event,
        if route.resource_group.is_empty() {
            "every group"
        } else {
            &route.resource_group
        }
    );
    tx.log(log).await?;
    tx.commit().await?;
    Ok(())
}

/// Puts a test message for the channel in the outbox and returns its id: the delivery
/// job sends it at once, and [`crate::services::delivery::wait_for_attempt`] lets the portal wait
/// for the outcome.
pub async fn queue_test(store: &Store, actor: &Actor, id: &str) -> AppResult<String> {
    require_admin(actor)?;
    let mut tx = store.begin_write().await?;
    let Some(channel) = tx.channel(id).await? else {
        return Err(AppError::NotFound("The channel".into()));
    };
    let notice = Notice {
        event: NotifyEvent::Test,
        subject: format!("Portcullis test message for {}", channel.name),
        text: format!(
            "{} sent this test from the Portcullis portal. If you can read it, the channel works.",
            actor.username
        ),
        link: Some("/admin/notifications".into()),
        facts: vec![("Channel".into(), channel.name.clone())],
        request_id: None,
        vm: None,
    };
    let message = tx
        .enqueue(NotifyEvent::Test.as_str(), Some(id), "", &payload(&notice))
        .await?;
    let mut log = actor.entry("notify.channel.test", "");
    log.detail = channel.name.clone();
    tx.log(log).await?;
    tx.commit().await?;
    Ok(message)
}

/// A message's state, for the administrator who queued it.
pub async fn message(store: &Store, actor: &Actor, id: &str) -> AppResult<MessageView> {
    require_admin(actor)?;
    store
        .outbox_message(id)
        .await?
        .map(|m| message_view(&m))
        .ok_or_else(|| AppError::NotFound("The message".into()))
}

// ---- A user's own settings --------------------------------------------------------------

pub async fn mail_settings(store: &Store, actor: &Actor) -> AppResult<MailSettings> {
    store
        .mail_settings(&actor.user_id)
        .await?
        .ok_or_else(|| AppError::NotFound("The user".into()))
}

pub async fn set_mail_settings(
    store: &Store,
    actor: &Actor,
    email: &str,
    notify: bool,
    warn_minutes: &str,
) -> AppResult<()> {
    let mut errors = FieldErrors::new();
    let email = email.trim();
    let email = if email.is_empty() {
        String::new()
    } else {
        errors
            .check("email", EmailAddress::parse(email))
            .map(|a| a.as_str().to_owned())
            .unwrap_or_default()
    };
    let warn = errors.check("warn_minutes", parse_warn_minutes(warn_minutes));
    errors.into_result()?;
    let settings = MailSettings {
        email,
        notify,
        warn_minutes: warn.expect("checked"),
        provider_email: String::new(),
    };
    let mut tx = store.begin_write().await?;
    if !tx.set_mail_settings(&actor.user_id, &settings).await? {
        return Err(AppError::NotFound("The user".into()));
    }
    let mut log = actor.entry("account.notifications", "");
    log.detail = format!(
        "e-mail {}; warn {} min before access ends",
        if settings.notify && !settings.email.is_empty() {
            "on"
        } else {
            "off"
        },
        settings.warn_minutes
    );
    tx.log(log).await?;
    tx.commit().await?;
    Ok(())
}
