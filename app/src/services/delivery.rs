//! Sending what the outbox holds. One background job per server takes due messages for a
//! while (so that of several replicas only one sends each), sends them at the same time
//! with a time limit each, and records the outcome: delivered, retried later with backoff,
//! or given up. Nothing here runs inside a user's request, so a slow or failing receiver
//! never slows or fails one. Errors are recorded without the URL (a Slack or Teams
//! webhook's URL is its secret) and never with a password.

use crate::domain::notify::{
    ChannelKind, EmailSettings, Notice, SmtpSecurity, email_text, is_permanent_http_failure,
    retry_after_ms, signature, slack_body, smtp_host_port, teams_body, webhook_body,
};
use crate::error::AppResult;
use crate::store::{Attempt, OutboxRow, Store, StoredChannel};
use std::time::Duration;

/// How long one attempt may take.
const SEND_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a replica holds the messages it took: longer than an attempt can take.
const LEASE_MS: i64 = 60_000;
/// Messages taken at once.
const BATCH: i64 = 20;
/// How often the job looks for grants about to end and silent agents, and for messages
/// other replicas queued.
const LOOK_EVERY: Duration = Duration::from_secs(5);

/// Why an attempt failed, fit to show administrators.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// Trying again cannot help (the receiver refused the message or the address).
    pub permanent: bool,
    pub message: String,
}

impl Failure {
    fn temporary(message: impl Into<String>) -> Self {
        Failure {
            permanent: false,
            message: message.into(),
        }
    }

    fn permanent(message: impl Into<String>) -> Self {
        Failure {
            permanent: true,
            message: message.into(),
        }
    }
}

/// Sends one message to one channel.
#[derive(Clone)]
pub struct Sender {
    http: reqwest::Client,
    /// The portal's address, which links in messages start with.
    base_url: String,
}

impl Sender {
    pub fn new(base_url: &str) -> Self {
        let http = reqwest::Client::builder()
            .timeout(SEND_TIMEOUT)
            .connect_timeout(SEND_TIMEOUT)
            // A receiver that redirects is misconfigured: following it could post the
            // message (and its signature) somewhere nobody chose.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("Portcullis/", env!("CARGO_PKG_VERSION")))
            .build()
            .expect("an HTTP client with rustls builds");
        Sender {
            http,
            base_url: base_url.trim_end_matches('/').to_owned(),
        }
    }

    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    pub async fn send(
        &self,
        channel: &StoredChannel,
        message: &OutboxRow,
        notice: &Notice,
    ) -> Result<(), Failure> {
        let kind = ChannelKind::parse(&channel.kind).ok_or_else(|| {
            Failure::permanent(format!("unknown channel kind '{}'", channel.kind))
        })?;
        match kind {
            ChannelKind::Webhook => {
                let body = webhook_body(notice, &message.id, message.created_at, &self.base_url);
                let body = serde_json::to_vec(&body).expect("JSON serialises");
                let now = chrono::Utc::now().timestamp();
                let request = self
                    .http
                    .post(&channel.target)
                    .header("content-type", "application/json")
                    .header("portcullis-event", notice.event.as_str())
                    .header("portcullis-delivery", &message.id)
                    .header(
                        "portcullis-signature",
                        signature(&channel.secret, now, &body),
                    )
                    .body(body);
                self.post(request).await
            }
            ChannelKind::Slack => {
                let body = slack_body(notice, &self.base_url);
                self.post(self.http.post(&channel.target).json(&body)).await
            }
            ChannelKind::Teams => {
                let body = teams_body(notice, &self.base_url);
                self.post(self.http.post(&channel.target).json(&body)).await
            }
            ChannelKind::Email => {
                let settings: EmailSettings =
                    serde_json::from_str(&channel.settings).map_err(|_| {
                        Failure::permanent("the channel's e-mail settings are unreadable")
                    })?;
                let to: Vec<String> = if message.recipient.is_empty() {
                    settings.to.clone()
                } else {
                    vec![message.recipient.clone()]
                };
                if to.is_empty() {
                    return Err(Failure::permanent("the channel has no recipients"));
                }
                send_mail(channel, &settings, &to, notice, &self.base_url).await
            }
        }
    }

    async fn post(&self, request: reqwest::RequestBuilder) -> Result<(), Failure> {
        match request.send().await {
            Ok(response) if response.status().is_success() => Ok(()),
            Ok(response) => {
                let status = response.status();
                let message = format!("the receiver answered HTTP {}", status.as_u16());
                if is_permanent_http_failure(status.as_u16()) || status.is_redirection() {
                    Err(Failure::permanent(message))
                } else {
                    Err(Failure::temporary(message))
                }
            }
            Err(e) => {
                let what = if e.is_timeout() {
                    "timed out".to_owned()
                } else if e.is_connect() {
                    "could not connect".to_owned()
                } else {
                    e.without_url().to_string()
                };
                Err(Failure::temporary(what))
            }
        }
    }
}

async fn send_mail(
    channel: &StoredChannel,
    settings: &EmailSettings,
    to: &[String],
    notice: &Notice,
    base_url: &str,
) -> Result<(), Failure> {
    use lettre::message::{Mailbox, header::ContentType};
    use lettre::transport::smtp::authentication::Credentials;
    use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

    let (host, port) = smtp_host_port(&channel.target)
        .ok_or_else(|| Failure::permanent("the SMTP server is not host:port"))?;
    let from: Mailbox = settings
        .from
        .parse()
        .map_err(|_| Failure::permanent("the sender address is not valid"))?;
    let mut builder = Message::builder()
        .from(from)
        .subject(notice.subject.clone())
        .header(ContentType::TEXT_PLAIN);
    for address in to {
        let mailbox: Mailbox = address
            .parse()
            .map_err(|_| Failure::permanent(format!("'{address}' is not a valid recipient")))?;
        builder = builder.to(mailbox);
    }
    let email = builder
        .body(email_text(notice, base_url))
        .map_err(|e| Failure::permanent(format!("the message could not be built: {e}")))?;
    let transport = match settings.security {
        SmtpSecurity::Starttls => AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(&host),
        SmtpSecurity::Tls => AsyncSmtpTransport::<Tokio1Executor>::relay(&host),
        SmtpSecurity::None => Ok(AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(
            &host,
        )),
    }
    .map_err(|e| Failure::permanent(format!("the SMTP server name is not usable: {e}")))?;
    let mut transport = transport.port(port).timeout(Some(SEND_TIMEOUT));
    if !settings.username.is_empty() {
        transport = transport.credentials(Credentials::new(
            settings.username.clone(),
            channel.secret.clone(),
        ));
    }
    match transport.build().send(email).await {
        Ok(_) => Ok(()),
        Err(e) => {
            // lettre's messages name the server's reply, never the password.
            let message = format!("SMTP: {e}");
            if e.is_permanent() {
                Err(Failure::permanent(message))
            } else {
                Err(Failure::temporary(message))
            }
        }
    }
}

/// The outcome to record for an attempt.
fn attempt_outcome(now: i64, attempts_before: i64, result: Result<(), Failure>) -> Attempt {
    match result {
        Ok(()) => Attempt::Delivered,
        Err(f) if f.permanent => Attempt::GiveUp { error: f.message },
        Err(f) => match retry_after_ms(attempts_before + 1) {
            Some(wait) => Attempt::Retry {
                at: now + wait,
                error: f.message,
            },
            None => Attempt::GiveUp {
                error: format!(
                    "{} (gave up after {} attempts)",
                    f.message,
                    attempts_before + 1
                ),
            },
        },
    }
}

/// Sends one claimed message and records how it went.
async fn deliver(store: &Store, sender: &Sender, message: OutboxRow) -> AppResult<bool> {
    let result = match serde_json::from_str::<Notice>(&message.payload) {
        Err(_) => Err(Failure::permanent("the message is unreadable")),
        Ok(notice) => {
            let channel = match &message.channel_id {
                Some(id) => store.get_channel(id).await?,
                None => store.personal_mail_channel().await?,
            };
            match channel {
                None if message.channel_id.is_some() => {
                    Err(Failure::permanent("the channel was removed"))
                }
                None => Err(Failure::temporary("no e-mail channel is enabled")),
                Some(c) if !c.enabled => Err(Failure::temporary("the channel is disabled")),
                // lettre's own time-out covers only the connect: a server that accepts and
                // never answers must not hold this job (and every other message) for good.
                Some(c) => tokio::time::timeout(
                    SEND_TIMEOUT + Duration::from_secs(5),
                    sender.send(&c, &message, &notice),
                )
                .await
                .unwrap_or_else(|_| Err(Failure::temporary("timed out"))),
            }
        }
    };
    let delivered = result.is_ok();
    if let Err(f) = &result {
        tracing::warn!(message = %message.id, event = %message.event, error = %f.message, "notification not delivered");
    }
    let outcome = attempt_outcome(store.now_ms(), message.attempts, result);
    if !store
        .record_attempt(&message.id, message.claimed_until, &outcome)
        .await?
    {
        // The lease ended before the attempt did and another claim took the message: its
        // result is the one recorded.
        tracing::warn!(message = %message.id, "notification attempt outlived its claim; not recorded");
    }
    Ok(delivered)
}

/// Sends every message due now (a batch at a time). Returns how many were delivered.
pub async fn deliver_due(store: &Store, sender: &Sender) -> AppResult<usize> {
    let mut delivered = 0;
    loop {
        let batch = store.claim_due_messages(BATCH, LEASE_MS).await?;
        let n = batch.len() as i64;
        let results =
            futures::future::join_all(batch.into_iter().map(|m| deliver(store, sender, m))).await;
        for r in results {
            if r? {
                delivered += 1;
            }
        }
        if n < BATCH {
            return Ok(delivered);
        }
    }
}

/// Waits (at most `limit`) until the message was attempted, and returns its state: what
/// "send test" shows.
pub async fn wait_for_attempt(
    store: &Store,
    id: &str,
    limit: Duration,
) -> AppResult<Option<crate::store::OutboxRow>> {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let m = store.outbox_message(id).await?;
        match &m {
            Some(row) if row.attempts > 0 => return Ok(m),
            None => return Ok(None),
            _ => {}
        }
        if tokio::time::Instant::now() >= deadline {
            return Ok(m);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The background job: delivers at once what a commit of this server queued, looks for
/// time-driven events and other replicas' messages every few seconds, and forgets old sent
/// messages daily.
pub async fn run_delivery(store: Store, sender: Sender) {
    let signal = store.outbox_signal();
    let mut last_prune = 0i64;
    loop {
        let scanned = super::notify::scan(&store).await;
        let delivered = deliver_due(&store, &sender).await;
        // The server is stopping: what failed, failed on the closed store.
        if store.is_closed() {
            return;
        }
        if let Err(e) = scanned {
            tracing::warn!(error = %e, "notification scan failed");
        }
        if let Err(e) = delivered {
            tracing::warn!(error = %e, "notification delivery failed");
        }
        let now = store.now_ms();
        if now - last_prune > 86_400_000 {
            last_prune = now;
            if let Err(e) = store.prune_outbox(now - 30 * 86_400_000).await {
                tracing::warn!(error = %e, "outbox pruning failed");
            }
        }
        let _ = tokio::time::timeout(LOOK_EVERY, signal.notified()).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_retry_with_backoff_until_they_give_up() {
        let t = |p| {
            Err(Failure {
                permanent: p,
                message: "x".into(),
            })
        };
        assert_eq!(attempt_outcome(0, 0, Ok(())), Attempt::Delivered);
        assert_eq!(
            attempt_outcome(1000, 0, t(false)),
            Attempt::Retry {
                at: 31_000,
                error: "x".into()
            }
        );
        assert!(matches!(
            attempt_outcome(0, 0, t(true)),
            Attempt::GiveUp { .. }
        ));
        assert!(matches!(
            attempt_outcome(0, crate::domain::notify::MAX_ATTEMPTS - 1, t(false)),
            Attempt::GiveUp { .. }
        ));
    }
}
