//! What a Prometheus scrape reads from the database: a few counts, in one statement on
//! the reports pool, so that monitoring never takes a connection that sign-ins, requests
//! or agents need, and costs the same however often it is scraped.

use super::{Result, Store};
use sqlx::Row;

/// Counts read at scrape time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScrapeCounts {
    /// Request ports in force now: the grants agents enforce.
    pub active_grants: i64,
    /// Requests waiting for an approver.
    pub pending_approvals: i64,
    /// VMs with an enrolled agent.
    pub agents_enrolled: i64,
    /// Enrolled agents not heard from since `silent_before_ms`.
    pub agents_silent: i64,
    /// Notifications waiting to be sent or retried.
    pub notifications_pending: i64,
    /// Notifications given up in the last 24 hours.
    pub notifications_failed: i64,
    /// The newest position of the activity log (0 when it is empty).
    pub log_newest_seq: i64,
    /// Whether the latest verification of the log found it intact (None: not run yet).
    pub log_intact: Option<bool>,
}

/// One connection pool's use at this moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolUse {
    /// `main` (every request) or `reports` (long reads: log pages, exports, verification).
    pub pool: &'static str,
    pub max: u32,
    pub open: u32,
    pub idle: u32,
}

impl Store {
    /// The counts a scrape shows. An agent is silent by the portal's own rule: enrolled,
    /// and last seen before `silent_before_ms`.
    pub async fn scrape_counts(&self, silent_before_ms: i64) -> Result<ScrapeCounts> {
        let row = sqlx::query(
            "SELECT \
             (SELECT COUNT(*) FROM request_ports WHERE status = 'active' AND end_at > $1) AS active_grants, \
             (SELECT COUNT(*) FROM access_requests WHERE status = 'pending_approval') AS pending_approvals, \
             (SELECT COUNT(*) FROM vms WHERE agent_id IS NOT NULL) AS agents_enrolled, \
             (SELECT COUNT(*) FROM vms WHERE agent_id IS NOT NULL AND agent_last_seen < $2) AS agents_silent, \
             (SELECT COUNT(*) FROM notification_outbox WHERE status = 'pending') AS notifications_pending, \
             (SELECT COUNT(*) FROM notification_outbox WHERE status = 'failed' AND last_attempt_at > $1 - 86400000) AS notifications_failed, \
             (SELECT COALESCE(MAX(seq), 0) FROM activity_log) AS log_newest_seq, \
             (SELECT ok FROM audit_status WHERE id = 1) AS log_ok",
        )
        .bind(self.now_ms())
        .bind(silent_before_ms)
        .fetch_one(&self.reports)
        .await?;
        Ok(ScrapeCounts {
            active_grants: row.try_get("active_grants")?,
            pending_approvals: row.try_get("pending_approvals")?,
            agents_enrolled: row.try_get("agents_enrolled")?,
            agents_silent: row.try_get("agents_silent")?,
            notifications_pending: row.try_get("notifications_pending")?,
            notifications_failed: row.try_get("notifications_failed")?,
            log_newest_seq: row.try_get("log_newest_seq")?,
            log_intact: row.try_get::<Option<i64>, _>("log_ok")?.map(|ok| ok == 1),
        })
    }

    /// Both pools' use, without touching the database.
    pub fn pool_use(&self) -> [PoolUse; 2] {
        let of = |pool: &'static str, p: &sqlx::AnyPool| PoolUse {
            pool,
            max: p.options().get_max_connections(),
            open: p.size(),
            idle: u32::try_from(p.num_idle()).unwrap_or(u32::MAX),
        };
        [of("main", &self.pool), of("reports", &self.reports)]
    }
}
