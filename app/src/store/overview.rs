//! What the Overview page reads beside what other pages already read: the agents in
//! trouble and the latest denials within an administrator's scope, a requester's open
//! requests, and how far a new install has come.
//!
//! Every read is bounded (LIMIT) and reaches its rows through an index that holds only
//! rows of its kind (migration 0015 and `vms_silence_news`), so that a look at the page
//! costs the same with 100 VMs or 100,000. Scopes are read one kind at a time (every VM,
//! some groups, some VM ids) rather than with an `OR`, which would let the planner fall
//! back to reading every VM of a group.

use super::audit::{Bind, bind_all};
use super::notify::AgentNews;
use super::requests::{REQUEST_COLUMNS, request_from_row};
use super::{Result, Store, StoredRequest};
use crate::domain::Visibility;
use sqlx::Row;
use sqlx::any::AnyRow;

/// A request an approver denied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denial {
    pub request_id: String,
    pub vm_id: String,
    pub vm_name: String,
    pub vm_group: String,
    pub requester: String,
    pub decided_by: String,
    pub decided_at: i64,
    pub comment: String,
}

/// Which of a new install's first steps are done (single sign-on is configuration, not
/// data: the caller knows it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SetupProgress {
    /// A VM exists (added by hand, or registered by an agent).
    pub has_vm: bool,
    /// A VM is under a JIT policy.
    pub has_policy: bool,
    /// More than one user exists (someone besides the first administrator).
    pub several_users: bool,
}

const AGENT_COLUMNS: &str = "id, name, resource_group, agent_last_seen, agent_error";

/// One kind of scope: the queries below run once per kind.
enum Part<'a> {
    All,
    Groups(&'a [String]),
    Vms(&'a [String]),
}

fn parts(scope: &Visibility) -> Vec<Part<'_>> {
    if scope.everything {
        return vec![Part::All];
    }
    let mut parts = Vec::new();
    if !scope.groups.is_empty() {
        parts.push(Part::Groups(&scope.groups));
    }
    if !scope.vm_ids.is_empty() {
        parts.push(Part::Vms(&scope.vm_ids));
    }
    parts
}

/// ` AND column IN ($n, …)` restricting a query to `part`, its values added to `binds`.
fn restrict(part: &Part<'_>, group_column: &str, id_column: &str, binds: &mut Vec<Bind>) -> String {
    let (column, values) = match part {
        Part::All => return String::new(),
        Part::Groups(groups) => (group_column, *groups),
        Part::Vms(ids) => (id_column, *ids),
    };
    let mut placeholders = Vec::with_capacity(values.len());
    for v in values {
        binds.push(Bind::Text(v.clone()));
        placeholders.push(format!("${}", binds.len()));
    }
    format!(" AND {column} IN ({})", placeholders.join(", "))
}

fn agent_from_row(r: &AnyRow) -> Result<AgentNews> {
    Ok(AgentNews {
        vm_id: r.try_get("id")?,
        vm_name: r.try_get("name")?,
        vm_group: r.try_get("resource_group")?,
        last_seen: r.try_get("agent_last_seen")?,
        error: r.try_get("agent_error")?,
    })
}

/// Keeps the first of each VM (a VM may be in a scoped group and scoped by id too).
fn dedup_vms(rows: &mut Vec<AgentNews>) {
    let mut seen = std::collections::HashSet::new();
    rows.retain(|r| seen.insert(r.vm_id.clone()));
}

impl Store {
    /// Up to `limit` VMs within `scope` whose enrolled agent was last heard from before
    /// `before` (the portal's "silent"), longest silent first.
    ///
    /// Two sets make up the silent agents, and each has its index: those whose
    /// administrators were not told yet (`vms_silence_news`, by time) and those they were
    /// told about (`vms_silenced`, by group). Together they are exactly the silent ones,
    /// whether or not the notification job has looked.
    pub async fn silent_agents(
        &self,
        scope: &Visibility,
        before: i64,
        limit: i64,
    ) -> Result<Vec<AgentNews>> {
        let limit = limit.clamp(1, 100);
        let mut found = Vec::new();
        for part in parts(scope) {
            // `resource_group || ''` keeps the planner on the index by time, which holds
            // only the few agents gone silent lately, rather than on the index of every VM
            // of the group.
            let mut binds = vec![Bind::Int(before)];
            let only = restrict(&part, "resource_group || ''", "id", &mut binds);
            let sql = format!(
                "SELECT {AGENT_COLUMNS} FROM vms WHERE agent_id IS NOT NULL \
                 AND silence_notified_at IS NULL AND agent_last_seen < $1{only} \
                 ORDER BY agent_last_seen LIMIT {limit}"
            );
            for row in bind_all(sqlx::query(&sql), &binds)
                .fetch_all(&self.pool)
                .await?
            {
                found.push(agent_from_row(&row)?);
            }
            let mut binds = vec![Bind::Int(before)];
            let only = restrict(&part, "resource_group", "id", &mut binds);
            let sql = format!(
                "SELECT {AGENT_COLUMNS} FROM vms WHERE silence_notified_at IS NOT NULL \
                 AND agent_id IS NOT NULL AND agent_last_seen < $1{only} \
                 ORDER BY resource_group, agent_last_seen LIMIT {limit}"
            );
            for row in bind_all(sqlx::query(&sql), &binds)
                .fetch_all(&self.pool)
                .await?
            {
                found.push(agent_from_row(&row)?);
            }
        }
        found.sort_by(|a, b| (a.last_seen, &a.vm_name).cmp(&(b.last_seen, &b.vm_name)));
        dedup_vms(&mut found);
        found.truncate(limit as usize);
        Ok(found)
    }

    /// Up to `limit` VMs within `scope` whose agent reported an enforcement error and is
    /// not silent (heard from at `silent_before` or later; a silent agent's last error is
    /// old news), by group and name.
    pub async fn agent_errors(
        &self,
        scope: &Visibility,
        silent_before: i64,
        limit: i64,
    ) -> Result<Vec<AgentNews>> {
        let limit = limit.clamp(1, 100);
        let mut found = Vec::new();
        for part in parts(scope) {
            let mut binds = vec![Bind::Int(silent_before)];
            let only = restrict(&part, "resource_group", "id", &mut binds);
            let sql = format!(
                "SELECT {AGENT_COLUMNS} FROM vms WHERE agent_error <> '' \
                 AND agent_id IS NOT NULL AND agent_last_seen >= $1{only} \
                 ORDER BY resource_group, name LIMIT {limit}"
            );
            for row in bind_all(sqlx::query(&sql), &binds)
                .fetch_all(&self.pool)
                .await?
            {
                found.push(agent_from_row(&row)?);
            }
        }
        found.sort_by(|a, b| (&a.vm_group, &a.vm_name).cmp(&(&b.vm_group, &b.vm_name)));
        dedup_vms(&mut found);
        found.truncate(limit as usize);
        Ok(found)
    }

    /// Up to `limit` requests on VMs within `scope` denied at `since` or later, newest
    /// first. The index holds denials only, by time: the scope filters the few of them
    /// since `since`.
    pub async fn recent_denials(
        &self,
        scope: &Visibility,
        since: i64,
        limit: i64,
    ) -> Result<Vec<Denial>> {
        let limit = limit.clamp(1, 100);
        let mut binds = vec![Bind::Int(since)];
        let only = if scope.everything {
            String::new()
        } else {
            let mut terms = Vec::new();
            for part in parts(scope) {
                let term = restrict(&part, "v.resource_group", "r.vm_id", &mut binds);
                terms.push(term.trim_start_matches(" AND ").to_owned());
            }
            if terms.is_empty() {
                return Ok(Vec::new());
            }
            format!(" AND ({})", terms.join(" OR "))
        };
        let sql = format!(
            "SELECT r.id, r.vm_id, v.name AS vm_name, v.resource_group AS vm_group, \
             u.username AS requester, COALESCE(r.decided_by, '') AS decided_by, r.decided_at, \
             r.decision_comment FROM access_requests r JOIN vms v ON v.id = r.vm_id \
             JOIN users u ON u.id = r.requester_id \
             WHERE r.status = 'denied' AND r.decided_at >= $1{only} \
             ORDER BY r.decided_at DESC, r.id DESC LIMIT {limit}"
        );
        let rows = bind_all(sqlx::query(&sql), &binds)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                Ok(Denial {
                    request_id: r.try_get("id")?,
                    vm_id: r.try_get("vm_id")?,
                    vm_name: r.try_get("vm_name")?,
                    vm_group: r.try_get("vm_group")?,
                    requester: r.try_get("requester")?,
                    decided_by: r.try_get("decided_by")?,
                    decided_at: r.try_get("decided_at")?,
                    comment: r.try_get("decision_comment")?,
                })
            })
            .collect()
    }

    /// Up to `limit` of a requester's open requests (waiting for approval, approved for a
    /// later start, in force), newest first, with their ports; never their history.
    pub async fn open_requests_of(
        &self,
        requester_id: &str,
        limit: i64,
    ) -> Result<Vec<StoredRequest>> {
        let sql = format!(
            "SELECT {REQUEST_COLUMNS} FROM access_requests r JOIN vms v ON v.id = r.vm_id \
             JOIN users u ON u.id = r.requester_id WHERE r.requester_id = $1 \
             AND r.status IN ('pending_approval', 'approved', 'active') \
             ORDER BY r.created_at DESC, r.id DESC LIMIT {}",
            limit.clamp(1, 200)
        );
        let rows = sqlx::query(&sql)
            .bind(requester_id)
            .fetch_all(&self.pool)
            .await?;
        let mut out = rows
            .iter()
            .map(request_from_row)
            .collect::<Result<Vec<_>>>()?;
        self.attach_ports(&mut out).await?;
        Ok(out)
    }

    /// Whether there is a VM, a JIT policy, and more than one user: each counted only up
    /// to what the answer needs.
    pub async fn setup_progress(&self) -> Result<SetupProgress> {
        let row = sqlx::query(
            "SELECT \
             (SELECT COUNT(*) FROM (SELECT id FROM vms LIMIT 1) a) AS vms, \
             (SELECT COUNT(*) FROM (SELECT vm_id FROM jit_policies LIMIT 1) p) AS policies, \
             (SELECT COUNT(*) FROM (SELECT id FROM users LIMIT 2) u) AS users",
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(SetupProgress {
            has_vm: row.try_get::<i64, _>("vms")? > 0,
            has_policy: row.try_get::<i64, _>("policies")? > 0,
            several_users: row.try_get::<i64, _>("users")? > 1,
        })
    }
}
