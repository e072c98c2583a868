//! Notifications remembered: channels, routing rules, users' own e-mail settings, and the
//! outbox. An outbox row is written by the write transaction of the change it tells about
//! ([`WriteTx::enqueue`]), so a message exists exactly when its change committed. The
//! delivery job claims due rows for a while under the write lock (so of several replicas
//! one sends each row), sends them without holding anything, and records the outcome only
//! if its claim still holds: an attempt that outlived its lease (the row was claimed again
//! meanwhile) must not overwrite the newer claim's result or count twice.

use super::{Result, Store, WriteTx, new_id};
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredChannel {
    pub id: String,
    pub name: String,
    pub kind: String,
    pub target: String,
    pub secret: String,
    /// JSON of [`crate::domain::notify::EmailSettings`] for e-mail channels.
    pub settings: String,
    pub enabled: bool,
    pub created_at: i64,
    pub updated_at: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredRoute {
    pub id: String,
    pub channel_id: String,
    pub event: String,
    /// Empty: VMs of every group.
    pub resource_group: String,
}

/// One message in the outbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxRow {
    pub id: String,
    pub event: String,
    pub channel_id: Option<String>,
    pub recipient: String,
    pub payload: String,
    pub created_at: i64,
    pub status: String,
    pub attempts: i64,
    pub next_attempt_at: i64,
    pub last_attempt_at: Option<i64>,
    pub last_error: String,
    /// Until when a delivery job holds the row (0: nobody). A claim sets it later than any
    /// earlier claim's (it claims only rows whose lease ended), so the value names the
    /// claim: [`Store::record_attempt`] writes only while it is still the same.
    pub claimed_until: i64,
}

/// How an attempt to send a message went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attempt {
    Delivered,
    /// Failed; try again at this time.
    Retry {
        at: i64,
        error: String,
    },
    /// Failed for good.
    GiveUp {
        error: String,
    },
}

/// A user's own e-mail settings.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MailSettings {
    /// The user's own address; empty: the identity provider's, if any.
    pub email: String,
    pub notify: bool,
    pub warn_minutes: i64,
    /// The address the user's identity provider gave at their last sign-in (read only).
    pub provider_email: String,
}

/// A user who may be told by e-mail (enabled, with an address, wanting messages).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MailRecipient {
    pub user_id: String,
    pub username: String,
    pub email: String,
}

/// An active request whose end is within its requester's warning time, not yet warned of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndingSoon {
    pub request_id: String,
    pub requester_id: String,
    pub vm_id: String,
    pub vm_name: String,
    pub vm_group: String,
    pub end_at: i64,
}

/// A VM whose agent's state changed in a way administrators hear about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentNews {
    pub vm_id: String,
    pub vm_name: String,
    pub vm_group: String,
    pub last_seen: Option<i64>,
    pub error: String,
}

/// A user's address for e-mail: their own setting, else the one their identity provider
/// gave at sign-in (`u` is the user, `i` their identity, joined on the left).
const MAIL_ADDRESS: &str = "CASE WHEN u.email <> '' THEN u.email ELSE COALESCE(i.email, '') END";

const CHANNEL_COLUMNS: &str =
    "id, name, kind, target, secret, settings, enabled, created_at, updated_at";
const OUTBOX_COLUMNS: &str = "id, event, channel_id, recipient, payload, created_at, status, \
     attempts, next_attempt_at, last_attempt_at, last_error, claimed_until";

fn channel_from_row(row: &AnyRow) -> Result<StoredChannel> {
    Ok(StoredChannel {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        kind: row.try_get("kind")?,
        target: row.try_get("target")?,
        secret: row.try_get("secret")?,
        settings: row.try_get("settings")?,
        enabled: row.try_get::<i64, _>("enabled")? != 0,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

/// One channel, read on `conn`: a pooled connection for [`Store::get_channel`], the write
/// transaction for [`WriteTx::channel`].
async fn channel(conn: &mut AnyConnection, id: &str) -> Result<Option<StoredChannel>> {
    let sql = format!("SELECT {CHANNEL_COLUMNS} FROM notification_channels WHERE id = $1");
    let row = sqlx::query(&sql).bind(id).fetch_optional(conn).await?;
    row.as_ref().map(channel_from_row).transpose()
}

fn outbox_from_row(row: &AnyRow) -> Result<OutboxRow> {
    Ok(OutboxRow {
        id: row.try_get("id")?,
        event: row.try_get("event")?,
        channel_id: row.try_get("channel_id")?,
        recipient: row.try_get("recipient")?,
        payload: row.try_get("payload")?,
        created_at: row.try_get("created_at")?,
        status: row.try_get("status")?,
        attempts: row.try_get("attempts")?,
        next_attempt_at: row.try_get("next_attempt_at")?,
        last_attempt_at: row.try_get("last_attempt_at")?,
        last_error: row.try_get("last_error")?,
        claimed_until: row.try_get("claimed_until")?,
    })
}

impl Store {
    /// Every channel, by name.
    pub async fn list_channels(&self) -> Result<Vec<StoredChannel>> {
        let sql =
            format!("SELECT {CHANNEL_COLUMNS} FROM notification_channels ORDER BY name LIMIT 500");
        let rows = sqlx::query(&sql).fetch_all(&self.pool).await?;
        rows.iter().map(channel_from_row).collect()
    }

    pub async fn get_channel(&self, id: &str) -> Result<Option<StoredChannel>> {
        let mut conn = self.pool.acquire().await?;
        channel(&mut conn, id).await
    }

    /// The channel users' own e-mails go through: the oldest enabled e-mail channel.
    pub async fn personal_mail_channel(&self) -> Result<Option<StoredChannel>> {
        let sql = format!(
            "SELECT {CHANNEL_COLUMNS} FROM notification_channels WHERE kind = 'email' AND enabled = 1 \
             ORDER BY created_at, id LIMIT 1"
        );
        let row = sqlx::query(&sql).fetch_optional(&self.pool).await?;
        row.as_ref().map(channel_from_row).transpose()
    }

    /// Every routing rule, by channel, event and group.
    pub async fn list_routes(&self) -> Result<Vec<StoredRoute>> {
        let rows = sqlx::query(
            "SELECT id, channel_id, event, resource_group FROM notification_routes \
             ORDER BY channel_id, event, resource_group LIMIT 5000",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(StoredRoute {
                    id: r.try_get("id")?,
                    channel_id: r.try_get("channel_id")?,
                    event: r.try_get("event")?,
                    resource_group: r.try_get("resource_group")?,
                })
            })
            .collect()
    }

    /// The latest messages of a channel (or, with `None`, users' own e-mails), newest first.
    pub async fn channel_messages(
        &self,
        channel_id: Option<&str>,
        limit: i64,
    ) -> Result<Vec<OutboxRow>> {
        let sql = match channel_id {
            Some(_) => format!(
                "SELECT {OUTBOX_COLUMNS} FROM notification_outbox WHERE channel_id = $1 \
                 ORDER BY created_at DESC, id LIMIT $2"
            ),
            None => format!(
                "SELECT {OUTBOX_COLUMNS} FROM notification_outbox WHERE channel_id IS NULL \
                 AND $1 = '' ORDER BY created_at DESC, id LIMIT $2"
            ),
        };
        let rows = sqlx::query(&sql)
            .bind(channel_id.unwrap_or(""))
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(outbox_from_row).collect()
    }

    /// Each channel's latest message (the first of [`Store::channel_messages`]), in one
    /// query however many channels there are.
    pub async fn latest_channel_messages(&self) -> Result<Vec<OutboxRow>> {
        // Each channel's newest creation time, then its rows of that time; of several made
        // in the same millisecond the smallest id, as `channel_messages` orders them.
        let columns = OUTBOX_COLUMNS
            .split(", ")
            .map(|c| format!("o.{c}"))
            .collect::<Vec<_>>()
            .join(", ");
        let sql = format!(
            "SELECT {columns} FROM notification_outbox o \
             JOIN (SELECT channel_id, MAX(created_at) AS latest FROM notification_outbox \
             WHERE channel_id IS NOT NULL GROUP BY channel_id) m \
             ON m.channel_id = o.channel_id AND o.created_at = m.latest \
             ORDER BY o.channel_id, o.id"
        );
        let rows = sqlx::query(&sql).fetch_all(&self.pool).await?;
        let mut latest: Vec<OutboxRow> = Vec::with_capacity(rows.len());
        for row in &rows {
            let row = outbox_from_row(row)?;
            if latest.last().map(|l| &l.channel_id) != Some(&row.channel_id) {
                latest.push(row);
            }
        }
        Ok(latest)
    }

    pub async fn outbox_message(&self, id: &str) -> Result<Option<OutboxRow>> {
        let sql = format!("SELECT {OUTBOX_COLUMNS} FROM notification_outbox WHERE id = $1");
        let row = sqlx::query(&sql)
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(outbox_from_row).transpose()
    }

    /// Takes up to `limit` due messages for `lease_ms`: no other replica sends them meanwhile.
    /// A replica that dies while sending leaves them to be taken again when the lease ends.
    pub async fn claim_due_messages(&self, limit: i64, lease_ms: i64) -> Result<Vec<OutboxRow>> {
        let mut tx = self.begin_write().await?;
        let now = tx.now;
        let sql = format!(
            "SELECT {OUTBOX_COLUMNS} FROM notification_outbox \
             WHERE status = 'pending' AND next_attempt_at <= $1 AND claimed_until <= $1 \
             ORDER BY next_attempt_at, id LIMIT $2"
        );
        let rows = sqlx::query(&sql)
            .bind(now)
            .bind(limit)
            .fetch_all(&mut *tx.tx)
            .await?;
        let mut claimed: Vec<OutboxRow> =
            rows.iter().map(outbox_from_row).collect::<Result<_>>()?;
        for row in &mut claimed {
            row.claimed_until = now + lease_ms;
            sqlx::query("UPDATE notification_outbox SET claimed_until = $1 WHERE id = $2")
                .bind(row.claimed_until)
                .bind(&row.id)
                .execute(&mut *tx.tx)
                .await?;
        }
        tx.commit().await?;
        Ok(claimed)
    }

    /// When the next message falls due, if one is waiting.
    pub async fn next_message_due(&self) -> Result<Option<i64>> {
        let row = sqlx::query(
            "SELECT MIN(CASE WHEN claimed_until > next_attempt_at THEN claimed_until \
             ELSE next_attempt_at END) AS due FROM notification_outbox WHERE status = 'pending'",
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(row.try_get("due")?)
    }

    /// Records how an attempt under the claim `claimed_until` went, if that claim still
    /// holds the row; `false` (nothing written) if the lease ended and the row was claimed
    /// again or already recorded by the newer claim. Only a newer claim decides, not the
    /// clock: a late result whose row nobody took meanwhile is still the latest news.
    pub async fn record_attempt(
        &self,
        id: &str,
        claimed_until: i64,
        attempt: &Attempt,
    ) -> Result<bool> {
        let mut tx = self.begin_write().await?;
        let now = tx.now;
        let (status, next, error) = match attempt {
            Attempt::Delivered => ("delivered", now, ""),
            Attempt::Retry { at, error } => ("pending", *at, error.as_str()),
            Attempt::GiveUp { error } => ("failed", now, error.as_str()),
        };
        let done = sqlx::query(
            "UPDATE notification_outbox SET status = $1, next_attempt_at = $2, last_error = $3, \
             attempts = attempts + 1, last_attempt_at = $4, claimed_until = 0 \
             WHERE id = $5 AND status = 'pending' AND claimed_until = $6",
        )
        .bind(status)
        .bind(next)
        .bind(error)
        .bind(now)
        .bind(id)
        .bind(claimed_until)
        .execute(&mut *tx.tx)
        .await?
        .rows_affected();
        tx.commit().await?;
        Ok(done == 1)
    }

    /// Forgets sent and given-up messages older than `before`.
    pub async fn prune_outbox(&self, before: i64) -> Result<u64> {
        let mut tx = self.begin_write().await?;
        let done = sqlx::query(
            "DELETE FROM notification_outbox WHERE status <> 'pending' AND created_at < $1",
        )
        .bind(before)
        .execute(&mut *tx.tx)
        .await?
        .rows_affected();
        tx.commit().await?;
        Ok(done)
    }

    pub async fn mail_settings(&self, user_id: &str) -> Result<Option<MailSettings>> {
        let row = sqlx::query(
            "SELECT u.email, u.notify_email, u.warn_minutes, COALESCE(i.email, '') AS provider_email \
             FROM users u LEFT JOIN user_identities i ON i.user_id = u.id WHERE u.id = $1",
        )
        .bind(user_id)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| {
            Ok(MailSettings {
                email: r.try_get("email")?,
                notify: r.try_get::<i64, _>("notify_email")? != 0,
                warn_minutes: r.try_get("warn_minutes")?,
                provider_email: r.try_get("provider_email")?,
            })
        })
        .transpose()
    }
}

impl WriteTx {
    pub async fn insert_channel(&mut self, c: &StoredChannel, created_by: &str) -> Result<()> {
        sqlx::query(
            "INSERT INTO notification_channels (id, name, kind, target, secret, settings, enabled, \
             created_by, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9)",
        )
        .bind(&c.id)
        .bind(&c.name)
        .bind(&c.kind)
        .bind(&c.target)
        .bind(&c.secret)
        .bind(&c.settings)
        .bind(i64::from(c.enabled))
        .bind(created_by)
        .bind(self.now)
        .execute(&mut *self.tx)
        .await
        .map_err(super::StoreError::from_write)?;
        Ok(())
    }

    /// Writes every field of the channel but its id and creation; `false` if it is gone.
    pub async fn update_channel(&mut self, c: &StoredChannel) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE notification_channels SET name = $1, kind = $2, target = $3, secret = $4, \
             settings = $5, enabled = $6, updated_at = $7 WHERE id = $8",
        )
        .bind(&c.name)
        .bind(&c.kind)
        .bind(&c.target)
        .bind(&c.secret)
        .bind(&c.settings)
        .bind(i64::from(c.enabled))
        .bind(self.now)
        .bind(&c.id)
        .execute(&mut *self.tx)
        .await
        .map_err(super::StoreError::from_write)?;
        Ok(done.rows_affected() == 1)
    }

    pub async fn channel(&mut self, id: &str) -> Result<Option<StoredChannel>> {
        channel(&mut self.tx, id).await
    }

    /// Removes a channel with its routes and its messages still waiting.
    pub async fn delete_channel(&mut self, id: &str) -> Result<bool> {
        for sql in [
            "DELETE FROM notification_routes WHERE channel_id = $1",
            "DELETE FROM notification_outbox WHERE channel_id = $1",
        ] {
            sqlx::query(sql).bind(id).execute(&mut *self.tx).await?;
        }
        let done = sqlx::query("DELETE FROM notification_channels WHERE id = $1")
            .bind(id)
            .execute(&mut *self.tx)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    pub async fn add_route(
        &mut self,
        channel_id: &str,
        event: &str,
        group: &str,
    ) -> Result<String> {
        let id = new_id();
        sqlx::query(
            "INSERT INTO notification_routes (id, channel_id, event, resource_group, created_at) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&id)
        .bind(channel_id)
        .bind(event)
        .bind(group)
        .bind(self.now)
        .execute(&mut *self.tx)
        .await
        .map_err(super::StoreError::from_write)?;
        Ok(id)
    }

    /// Removes a routing rule; returns it if it existed.
    pub async fn delete_route(&mut self, id: &str) -> Result<Option<StoredRoute>> {
        let row = sqlx::query(
            "SELECT id, channel_id, event, resource_group FROM notification_routes WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(&mut *self.tx)
        .await?;
        let Some(r) = row else { return Ok(None) };
        let route = StoredRoute {
            id: r.try_get("id")?,
            channel_id: r.try_get("channel_id")?,
            event: r.try_get("event")?,
            resource_group: r.try_get("resource_group")?,
        };
        sqlx::query("DELETE FROM notification_routes WHERE id = $1")
            .bind(id)
            .execute(&mut *self.tx)
            .await?;
        Ok(Some(route))
    }

    /// The enabled channels routed `event` for VMs of `group`.
    pub async fn routed_channels(&mut self, event: &str, group: &str) -> Result<Vec<String>> {
        let rows = sqlx::query(
            "SELECT DISTINCT c.id FROM notification_channels c \
             JOIN notification_routes r ON r.channel_id = c.id \
             WHERE c.enabled = 1 AND r.event = $1 AND (r.resource_group = '' OR r.resource_group = $2) \
             ORDER BY c.id",
        )
        .bind(event)
        .bind(group)
        .fetch_all(&mut *self.tx)
        .await?;
        rows.iter().map(|r| Ok(r.try_get("id")?)).collect()
    }

    /// Whether users' own e-mails can be sent: an enabled e-mail channel exists.
    pub async fn has_mail_channel(&mut self) -> Result<bool> {
        Ok(sqlx::query(
            "SELECT id FROM notification_channels WHERE kind = 'email' AND enabled = 1 LIMIT 1",
        )
        .fetch_optional(&mut *self.tx)
        .await?
        .is_some())
    }

    /// Users who may be e-mailed and may hold one of `roles` over the VM `vm_id` in group
    /// `vm_group`: assigned in a scope that covers it, or through a group rule that covers
    /// it and names an IdP group their last sign-in listed. A page of at most `limit`, by
    /// user name after `after`: the caller pages through all of them and decides with
    /// `permits` who qualifies, so that nobody is missed however many users may act
    /// elsewhere. A user's address is their own setting, else their identity provider's.
    pub async fn mail_candidates(
        &mut self,
        roles: &[&str],
        vm_id: &str,
        vm_group: &str,
        after: &str,
        limit: i64,
    ) -> Result<Vec<MailRecipient>> {
        let list = super::placeholders(5, roles.len());
        let covers = |t: &str| {
            format!(
                "({t}.scope_kind = 'all' OR ({t}.scope_kind = 'group' AND {t}.scope_target = $3) \
                 OR ({t}.scope_kind = 'vm' AND {t}.scope_target = $4))"
            )
        };
        // The IdP group is looked for in the stored JSON list as "name"; a name JSON would
        // escape (a quote or a backslash) is not narrowed here, and `permits` decides.
        let sql = format!(
            "SELECT u.id, u.username, {MAIL_ADDRESS} AS email FROM users u \
             LEFT JOIN user_identities i ON i.user_id = u.id \
             WHERE u.disabled = 0 AND u.notify_email = 1 AND {MAIL_ADDRESS} <> '' AND u.username > $1 \
             AND (EXISTS (SELECT 1 FROM role_assignments ra WHERE ra.user_id = u.id AND ra.role IN ({list}) \
             AND {ra}) \
             OR EXISTS (SELECT 1 FROM group_role_rules g WHERE g.provider = i.provider AND g.role IN ({list}) \
             AND {g} AND (i.idp_groups LIKE '%\"' || g.idp_group || '\"%' \
             OR REPLACE(REPLACE(g.idp_group, '\"', ''), '\\', '') <> g.idp_group))) \
             ORDER BY u.username LIMIT $2",
            ra = covers("ra"),
            g = covers("g"),
        );
        let mut query = sqlx::query(&sql)
            .bind(after)
            .bind(limit)
            .bind(vm_group)
            .bind(vm_id);
        for role in roles {
            query = query.bind(*role);
        }
        let rows = query.fetch_all(&mut *self.tx).await?;
        rows.iter()
            .map(|r| {
                Ok(MailRecipient {
                    user_id: r.try_get("id")?,
                    username: r.try_get("username")?,
                    email: r.try_get("email")?,
                })
            })
            .collect()
    }

    /// The user's address if they may be e-mailed.
    pub async fn mail_address(&mut self, user_id: &str) -> Result<Option<String>> {
        let sql = format!(
            "SELECT {MAIL_ADDRESS} AS email FROM users u LEFT JOIN user_identities i ON i.user_id = u.id \
             WHERE u.id = $1 AND u.disabled = 0 AND u.notify_email = 1 AND {MAIL_ADDRESS} <> ''"
        );
        let row = sqlx::query(&sql)
            .bind(user_id)
            .fetch_optional(&mut *self.tx)
            .await?;
        row.map(|r| Ok(r.try_get("email")?)).transpose()
    }

    pub async fn set_mail_settings(&mut self, user_id: &str, s: &MailSettings) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE users SET email = $1, notify_email = $2, warn_minutes = $3, updated_at = $4 \
             WHERE id = $5",
        )
        .bind(&s.email)
        .bind(i64::from(s.notify))
        .bind(s.warn_minutes)
        .bind(self.now)
        .bind(user_id)
        .execute(&mut *self.tx)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Puts a message in the outbox, due now; it is sent only if this transaction commits.
    pub async fn enqueue(
        &mut self,
        event: &str,
        channel_id: Option<&str>,
        recipient: &str,
        payload: &str,
    ) -> Result<String> {
        let id = new_id();
        sqlx::query(
            "INSERT INTO notification_outbox (id, event, channel_id, recipient, payload, created_at, \
             next_attempt_at) VALUES ($1, $2, $3, $4, $5, $6, $6)",
        )
        .bind(&id)
        .bind(event)
        .bind(channel_id)
        .bind(recipient)
        .bind(payload)
        .bind(self.now)
        .execute(&mut *self.tx)
        .await?;
        self.messages_queued = true;
        Ok(id)
    }

    /// Active requests ending within their requesters' warning time and not yet warned of
    /// for their current end.
    pub async fn requests_ending_soon(&mut self, limit: i64) -> Result<Vec<EndingSoon>> {
        let rows = sqlx::query(
            "SELECT r.id, r.requester_id, r.vm_id, v.name AS vm_name, v.resource_group AS vm_group, \
             r.end_at FROM access_requests r \
             JOIN users u ON u.id = r.requester_id JOIN vms v ON v.id = r.vm_id \
             WHERE r.status = 'active' AND r.end_at > $1 AND u.warn_minutes > 0 \
             AND r.end_at <= $1 + u.warn_minutes * 60000 \
             AND (r.warned_end_at IS NULL OR r.warned_end_at <> r.end_at) \
             ORDER BY r.end_at LIMIT $2",
        )
        .bind(self.now)
        .bind(limit)
        .fetch_all(&mut *self.tx)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(EndingSoon {
                    request_id: r.try_get("id")?,
                    requester_id: r.try_get("requester_id")?,
                    vm_id: r.try_get("vm_id")?,
                    vm_name: r.try_get("vm_name")?,
                    vm_group: r.try_get("vm_group")?,
                    end_at: r.try_get("end_at")?,
                })
            })
            .collect()
    }

    pub async fn mark_warned(&mut self, request_id: &str, end_at: i64) -> Result<()> {
        sqlx::query("UPDATE access_requests SET warned_end_at = $1 WHERE id = $2")
            .bind(end_at)
            .bind(request_id)
            .execute(&mut *self.tx)
            .await?;
        Ok(())
    }

    /// Enrolled agents not heard from since `before` whose silence nobody was told of.
    pub async fn newly_silent_agents(&mut self, before: i64, limit: i64) -> Result<Vec<AgentNews>> {
        let rows = sqlx::query(
            "SELECT id, name, resource_group, agent_last_seen, agent_error FROM vms \
             WHERE agent_id IS NOT NULL AND agent_last_seen < $1 AND silence_notified_at IS NULL \
             ORDER BY agent_last_seen LIMIT $2",
        )
        .bind(before)
        .bind(limit)
        .fetch_all(&mut *self.tx)
        .await?;
        rows.iter().map(news_from_row).collect()
    }

    pub async fn mark_silence_notified(&mut self, vm_id: &str) -> Result<()> {
        sqlx::query("UPDATE vms SET silence_notified_at = $1 WHERE id = $2")
            .bind(self.now)
            .bind(vm_id)
            .execute(&mut *self.tx)
            .await?;
        Ok(())
    }

    /// VMs whose agent's error differs from the one administrators were last told of (a
    /// new error, or the error cleared).
    pub async fn changed_agent_errors(&mut self, limit: i64) -> Result<Vec<AgentNews>> {
        let rows = sqlx::query(
            "SELECT id, name, resource_group, agent_last_seen, agent_error FROM vms \
             WHERE agent_error <> error_notified ORDER BY id LIMIT $1",
        )
        .bind(limit)
        .fetch_all(&mut *self.tx)
        .await?;
        rows.iter().map(news_from_row).collect()
    }

    pub async fn mark_error_notified(&mut self, vm_id: &str, error: &str) -> Result<()> {
        sqlx::query("UPDATE vms SET error_notified = $1 WHERE id = $2")
            .bind(error)
            .bind(vm_id)
            .execute(&mut *self.tx)
            .await?;
        Ok(())
    }
}

fn news_from_row(r: &AnyRow) -> Result<AgentNews> {
    Ok(AgentNews {
        vm_id: r.try_get("id")?,
        vm_name: r.try_get("name")?,
        vm_group: r.try_get("resource_group")?,
        last_seen: r.try_get("agent_last_seen")?,
        error: r.try_get("agent_error")?,
    })
}
