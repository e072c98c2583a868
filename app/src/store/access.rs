//! Ending access: the one path by which a grant in force ends, whatever the cause (its
//! time is up, a revoke, a newer request, a policy edit, the requester disabled or losing
//! a role), and the one path by which a request waiting for approval is closed.
//!
//! Every ending sets the status and the reason, moves the VM's generation forward in the
//! same transaction (so the VM's agent receives its new state at once) and writes one
//! activity log entry per request, all committed with the change that caused it. Which
//! grants end is decided elsewhere (the services ask `permits` and the domain's policy
//! checks); this module selects what is open and records how it ended.

use super::audit::NewLogEntry;
use super::identities::{StoredGroupRule, StoredIdentity, identity_from_row, rule_from_row};
use super::users::{StoredUser, USER_COLUMNS, user_from_row};
use super::{ROWS_PER_STATEMENT, Result, StoreError, WriteTx, placeholders};
use crate::domain::RoleAssignment;
use crate::domain::request::{PortStatus, RequestStatus};
use sqlx::AnyConnection;
use sqlx::Row;
use sqlx::any::AnyRow;

/// A requested port in force: a grant, with what deciding its fate needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenGrant {
    /// The request port's id.
    pub id: String,
    pub request_id: String,
    pub vm_id: String,
    pub vm_name: String,
    pub vm_group: String,
    pub requester_id: String,
    pub requester: String,
    pub port: i64,
    pub protocol: String,
    pub source: String,
    /// The start of the grant's current window: its start, or its last extension.
    pub window_start: i64,
    pub end_at: i64,
}

/// Which grants in force to select.
#[derive(Debug, Clone, Copy)]
pub enum GrantFilter<'a> {
    Request(&'a str),
    Vm(&'a str),
    Requester(&'a str),
    /// Grants whose end has come, the earliest first, at most `limit`.
    Due {
        now: i64,
        limit: i64,
    },
    /// The same requester's grants for the same VM and source and for a port and protocol
    /// of `by_request`, other than that request's own: what it supersedes.
    Superseded {
        vm: &'a str,
        requester: &'a str,
        source: &'a str,
        by_request: &'a str,
    },
}

/// A request not decided yet, or decided and waiting for the start it asked for: what an
/// approval, a denial, a withdrawal or a change that undoes it works on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WaitingRequest {
    pub id: String,
    /// Pending approval, or approved and waiting for its start.
    pub status: RequestStatus,
    /// The later start it asked for, if any.
    pub planned_start_at: Option<i64>,
    pub vm_id: String,
    pub vm_name: String,
    pub vm_group: String,
    pub requester_id: String,
    pub requester: String,
    pub source: String,
    pub duration_secs: i64,
    pub justification: String,
    pub created_at: i64,
    /// When it is closed if nobody decided it.
    pub approval_expires_at: Option<i64>,
    /// (port, protocol) of each requested port.
    pub ports: Vec<(i64, String)>,
    /// Distinct approvals given so far, and how many it needed at the last decision or
    /// policy edit.
    pub approvals: i64,
    pub approvals_required: i64,
}

impl WaitingRequest {
    /// Where its grants end when it opens at `now`: the end of the window it asked for,
    /// or its duration from now.
    pub fn window_end(&self, now: i64) -> i64 {
        crate::domain::request::window_end(self.planned_start_at.unwrap_or(now), self.duration_secs)
    }

    pub fn is_pending(&self) -> bool {
        self.status == RequestStatus::PendingApproval
    }
}

#[derive(Debug, Clone, Copy)]
pub enum WaitingFilter<'a> {
    Request(&'a str),
    Vm(&'a str),
    Requester(&'a str),
    /// Requests whose approval time-out has passed, the oldest first, at most `limit`.
    TimedOut {
        now: i64,
        limit: i64,
    },
    /// Approved requests whose start has come, the earliest first, at most `limit`.
    StartDue {
        now: i64,
        limit: i64,
    },
}

/// How something ended and who or what ended it, as recorded and logged.
#[derive(Debug, Clone, Copy)]
pub struct Ending<'a> {
    /// For grants: expired, revoked or superseded. For waiting requests: cancelled
    /// (closed by the system), revoked (withdrawn by the requester) or denied.
    pub status: PortStatus,
    pub reason: &'a str,
    pub actor: &'a str,
    pub client_ip: &'a str,
    pub action: &'a str,
    pub result: &'a str,
}

impl<'a> Ending<'a> {
    /// An ending the system causes on its own (expiry, time-outs, the consequences of an
    /// administrator's change are logged under that administrator instead).
    pub fn system(status: PortStatus, reason: &'a str, action: &'a str) -> Self {
        Ending {
            status,
            reason,
            actor: "system",
            client_ip: "",
            action,
            result: "success",
        }
    }
}

/// What a user's permissions are computed from: the user (enabled or not), their direct
/// role assignments, their federated identity with the groups of its last sign-in, and the
/// group rules of its provider.
#[derive(Debug, Clone, Default)]
pub struct RoleInputs {
    pub user: Option<StoredUser>,
    pub assignments: Vec<RoleAssignment>,
    pub identity: Option<StoredIdentity>,
    pub group_rules: Vec<StoredGroupRule>,
}

const GRANT_COLUMNS: &str = "p.id, p.request_id, p.vm_id, v.name AS vm_name, \
     v.resource_group AS vm_group, r.requester_id, u.username AS requester, p.port, p.protocol, \
     p.source_prefix, COALESCE(r.window_start_at, r.start_at, r.created_at) AS window_start, p.end_at";

fn grant_from_row(row: &AnyRow) -> Result<OpenGrant> {
    Ok(OpenGrant {
        id: row.try_get("id")?,
        request_id: row.try_get("request_id")?,
        vm_id: row.try_get("vm_id")?,
        vm_name: row.try_get("vm_name")?,
        vm_group: row.try_get("vm_group")?,
        requester_id: row.try_get("requester_id")?,
        requester: row.try_get("requester")?,
        port: row.try_get("port")?,
        protocol: row.try_get("protocol")?,
        source: row.try_get("source_prefix")?,
        window_start: row.try_get("window_start")?,
        end_at: row
            .try_get::<Option<i64>, _>("end_at")?
            .ok_or_else(|| StoreError::Corrupt("active grant without an end".into()))?,
    })
}

const WAITING_COLUMNS: &str = "r.id, r.vm_id, v.name AS vm_name, v.resource_group AS vm_group, \
     r.requester_id, u.username AS requester, r.source_prefix, r.duration_secs, r.justification, \
     r.created_at, r.approval_expires_at, r.approvals_required, r.status, r.planned_start_at, \
     (SELECT COUNT(*) FROM request_approvals a WHERE a.request_id = r.id) AS approvals";

fn request_status_for(status: PortStatus) -> Result<RequestStatus> {
    match status {
        PortStatus::Cancelled => Ok(RequestStatus::Cancelled),
        PortStatus::Revoked => Ok(RequestStatus::Revoked),
        PortStatus::Denied => Ok(RequestStatus::Denied),
        other => Err(StoreError::Corrupt(format!(
            "a waiting request cannot end as {other}"
        ))),
    }
}

/// The roles' inputs of one user, read on `conn` (a pooled connection, or a write
/// transaction so that the answer reflects the transaction's own changes).
pub(super) async fn role_inputs(conn: &mut AnyConnection, user_id: &str) -> Result<RoleInputs> {
    let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE id = $1");
    let user = sqlx::query(&sql)
        .bind(user_id)
        .fetch_optional(&mut *conn)
        .await?
        .as_ref()
        .map(user_from_row)
        .transpose()?;
    let assignments = sqlx::query(
        "SELECT role, scope_kind, scope_target FROM role_assignments WHERE user_id = $1 \
         ORDER BY role, scope_kind, scope_target",
    )
    .bind(user_id)
    .fetch_all(&mut *conn)
    .await?
    .iter()
    .map(super::users::role_from_row)
    .collect::<Result<Vec<_>>>()?;
    let identity = sqlx::query(&format!(
        "SELECT {} FROM user_identities WHERE user_id = $1",
        super::identities::IDENTITY_COLUMNS
    ))
    .bind(user_id)
    .fetch_optional(&mut *conn)
    .await?
    .as_ref()
    .map(identity_from_row)
    .transpose()?;
    let group_rules = match &identity {
        Some(i) if !i.groups.is_empty() => sqlx::query(&format!(
            "SELECT {} FROM group_role_rules WHERE provider = $1 \
             ORDER BY idp_group, role, scope_kind, scope_target",
            super::identities::RULE_COLUMNS
        ))
        .bind(&i.provider)
        .fetch_all(&mut *conn)
        .await?
        .iter()
        .map(rule_from_row)
        .collect::<Result<Vec<_>>>()?,
        _ => Vec::new(),
    };
    Ok(RoleInputs {
        user,
        assignments,
        identity,
        group_rules,
    })
}

impl WriteTx {
    /// The grants in force that match `filter`.
    pub async fn open_grants(&mut self, filter: GrantFilter<'_>) -> Result<Vec<OpenGrant>> {
        let base = format!(
            "SELECT {GRANT_COLUMNS} FROM request_ports p JOIN access_requests r ON r.id = p.request_id \
             JOIN vms v ON v.id = p.vm_id JOIN users u ON u.id = r.requester_id WHERE p.status = 'active'"
        );
        let rows = match filter {
            GrantFilter::Request(id) => {
                sqlx::query(&format!(
                    "{base} AND p.request_id = $1 ORDER BY p.port, p.protocol"
                ))
                .bind(id)
                .fetch_all(&mut *self.tx)
                .await?
            }
            GrantFilter::Vm(id) => {
                sqlx::query(&format!("{base} AND p.vm_id = $1 ORDER BY p.end_at, p.id"))
                    .bind(id)
                    .fetch_all(&mut *self.tx)
                    .await?
            }
            GrantFilter::Requester(id) => {
                sqlx::query(&format!(
                    "{base} AND r.requester_id = $1 ORDER BY p.end_at, p.id"
                ))
                .bind(id)
                .fetch_all(&mut *self.tx)
                .await?
            }
            GrantFilter::Due { now, limit } => {
                sqlx::query(&format!(
                    "{base} AND p.end_at <= $1 ORDER BY p.end_at, p.id LIMIT {}",
                    limit.clamp(1, 10_000)
                ))
                .bind(now)
                .fetch_all(&mut *self.tx)
                .await?
            }
            GrantFilter::Superseded {
                vm,
                requester,
                source,
                by_request,
            } => {
                sqlx::query(&format!(
                    "{base} AND p.vm_id = $1 AND r.requester_id = $2 AND p.source_prefix = $3 \
                 AND p.request_id <> $4 AND EXISTS (SELECT 1 FROM request_ports q \
                 WHERE q.request_id = $4 AND q.port = p.port AND q.protocol = p.protocol) \
                 ORDER BY p.request_id, p.port, p.protocol"
                ))
                .bind(vm)
                .bind(requester)
                .bind(source)
                .bind(by_request)
                .fetch_all(&mut *self.tx)
                .await?
            }
        };
        rows.iter().map(grant_from_row).collect()
    }

    /// Ends grants in force now (an expiry keeps the end it had), bumps the generation of
    /// each VM concerned and logs one entry per request. Grants that ended meanwhile are
    /// skipped. Returns how many ended here.
    pub async fn end_grants(&mut self, grants: &[OpenGrant], ending: &Ending<'_>) -> Result<usize> {
        // A statement per slice rather than per grant: the expiry job ends hundreds at a
        // time under the write lock, where every round trip holds up every other writer.
        // An expiry keeps the end the grant had; any other ending is now.
        let expiry = ending.status == PortStatus::Expired;
        let (set, first_id) = if expiry {
            ("status = $1, status_reason = $2", 3)
        } else {
            (
                "status = $1, status_reason = $2, \
                 end_at = CASE WHEN end_at < $3 THEN end_at ELSE $3 END",
                4,
            )
        };
        let mut ended_here = std::collections::HashSet::new();
        for slice in grants.chunks(ROWS_PER_STATEMENT) {
            let sql = format!(
                "UPDATE request_ports SET {set} WHERE status = 'active' AND id IN ({}) RETURNING id",
                placeholders(first_id, slice.len())
            );
            let mut query = sqlx::query(&sql)
                .bind(ending.status.as_str())
                .bind(ending.reason);
            if !expiry {
                query = query.bind(self.now);
            }
            for g in slice {
                query = query.bind(&g.id);
            }
            for row in query.fetch_all(&mut *self.tx).await? {
                ended_here.insert(row.try_get::<String, _>("id")?);
            }
        }
        // In the order given, each once, whatever order the database returned them in.
        let ended: Vec<&OpenGrant> = grants.iter().filter(|g| ended_here.remove(&g.id)).collect();
        // One entry per request, in the order its first grant came.
        let mut of_request: Vec<Vec<&OpenGrant>> = Vec::new();
        let mut at: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
        for g in &ended {
            let i = *at.entry(g.request_id.as_str()).or_insert_with(|| {
                of_request.push(Vec::new());
                of_request.len() - 1
            });
            of_request[i].push(g);
        }
        let entries = of_request
            .into_iter()
            .map(|of_request| {
                let first = of_request[0];
                NewLogEntry {
                    actor: ending.actor.to_owned(),
                    client_ip: ending.client_ip.to_owned(),
                    action: ending.action.to_owned(),
                    vm: first.vm_name.clone(),
                    ports: of_request
                        .iter()
                        .map(|g| format!("{}/{}", g.port, g.protocol))
                        .collect::<Vec<_>>()
                        .join(", "),
                    source: first.source.clone(),
                    result: ending.result.to_owned(),
                    detail: format!("access of {} ended: {}", first.requester, ending.reason),
                    ..Default::default()
                }
            })
            .collect();
        self.log_all(entries).await?;
        let mut seen = std::collections::HashSet::new();
        let vms: Vec<&str> = ended
            .iter()
            .map(|g| g.vm_id.as_str())
            .filter(|vm| seen.insert(*vm))
            .collect();
        self.close_finished_requests(&vms).await?;
        self.bump_generations(&vms).await?;
        Ok(ended.len())
    }

    /// Moves the end of grants in force earlier (each to its own new end), bumps the
    /// generations and logs each change.
    pub async fn shorten_grants(
        &mut self,
        grants: &[(OpenGrant, i64)],
        ending: &Ending<'_>,
    ) -> Result<usize> {
        let mut shortened = 0;
        let mut vms: Vec<&str> = Vec::new();
        for (g, end) in grants {
            let done = sqlx::query(
                "UPDATE request_ports SET end_at = $1, status_reason = $2 \
                 WHERE id = $3 AND status = 'active' AND end_at > $1",
            )
            .bind(*end)
            .bind(ending.reason)
            .bind(&g.id)
            .execute(&mut *self.tx)
            .await?;
            if done.rows_affected() == 0 {
                continue;
            }
            shortened += 1;
            sqlx::query(
                "UPDATE access_requests SET end_at = (SELECT MAX(p.end_at) FROM request_ports p \
                 WHERE p.request_id = $1 AND p.status = 'active') WHERE id = $1",
            )
            .bind(&g.request_id)
            .execute(&mut *self.tx)
            .await?;
            self.log(NewLogEntry {
                actor: ending.actor.to_owned(),
                client_ip: ending.client_ip.to_owned(),
                action: ending.action.to_owned(),
                vm: g.vm_name.clone(),
                ports: format!("{}/{}", g.port, g.protocol),
                source: g.source.clone(),
                result: ending.result.to_owned(),
                detail: format!(
                    "access of {} now ends at {}: {}",
                    g.requester,
                    crate::model::format_utc(*end),
                    ending.reason
                ),
                ..Default::default()
            })
            .await?;
            if !vms.contains(&g.vm_id.as_str()) {
                vms.push(&g.vm_id);
            }
        }
        self.bump_generations(&vms).await?;
        Ok(shortened)
    }

    /// The requests waiting for approval that match `filter`, with their ports.
    pub async fn waiting_requests(
        &mut self,
        filter: WaitingFilter<'_>,
    ) -> Result<Vec<WaitingRequest>> {
        let base = format!(
            "SELECT {WAITING_COLUMNS} FROM access_requests r JOIN vms v ON v.id = r.vm_id \
             JOIN users u ON u.id = r.requester_id WHERE r.status IN ('pending_approval', 'approved')"
        );
        let rows = match filter {
            WaitingFilter::Request(id) => {
                sqlx::query(&format!("{base} AND r.id = $1"))
                    .bind(id)
                    .fetch_all(&mut *self.tx)
                    .await?
            }
            WaitingFilter::Vm(id) => {
                sqlx::query(&format!(
                    "{base} AND r.vm_id = $1 ORDER BY r.created_at, r.id"
                ))
                .bind(id)
                .fetch_all(&mut *self.tx)
                .await?
            }
            WaitingFilter::Requester(id) => {
                sqlx::query(&format!(
                    "{base} AND r.requester_id = $1 ORDER BY r.created_at, r.id"
                ))
                .bind(id)
                .fetch_all(&mut *self.tx)
                .await?
            }
            WaitingFilter::TimedOut { now, limit } => {
                sqlx::query(&format!(
                    "{base} AND r.status = 'pending_approval' AND r.approval_expires_at <= $1 \
                 ORDER BY r.approval_expires_at, r.id LIMIT {}",
                    limit.clamp(1, 10_000)
                ))
                .bind(now)
                .fetch_all(&mut *self.tx)
                .await?
            }
            WaitingFilter::StartDue { now, limit } => {
                sqlx::query(&format!(
                    "{base} AND r.status = 'approved' AND r.planned_start_at <= $1 \
                 ORDER BY r.planned_start_at, r.id LIMIT {}",
                    limit.clamp(1, 10_000)
                ))
                .bind(now)
                .fetch_all(&mut *self.tx)
                .await?
            }
        };
        let mut out = Vec::with_capacity(rows.len());
        for row in &rows {
            let id: String = row.try_get("id")?;
            let ports = sqlx::query(
                "SELECT port, protocol FROM request_ports WHERE request_id = $1 ORDER BY port, protocol",
            )
            .bind(&id)
            .fetch_all(&mut *self.tx)
            .await?
            .iter()
            .map(|p| Ok((p.try_get("port")?, p.try_get("protocol")?)))
            .collect::<Result<Vec<_>>>()?;
            let status: String = row.try_get("status")?;
            out.push(WaitingRequest {
                id,
                status: RequestStatus::parse(&status)
                    .ok_or_else(|| StoreError::Corrupt(format!("status {status}")))?,
                planned_start_at: row.try_get("planned_start_at")?,
                vm_id: row.try_get("vm_id")?,
                vm_name: row.try_get("vm_name")?,
                vm_group: row.try_get("vm_group")?,
                requester_id: row.try_get("requester_id")?,
                requester: row.try_get("requester")?,
                source: row.try_get("source_prefix")?,
                duration_secs: row.try_get("duration_secs")?,
                justification: row.try_get("justification")?,
                created_at: row.try_get("created_at")?,
                approval_expires_at: row.try_get("approval_expires_at")?,
                ports,
                approvals: row.try_get("approvals")?,
                approvals_required: row.try_get("approvals_required")?,
            });
        }
        Ok(out)
    }

    /// Closes requests waiting for approval or for their start (cancelled, withdrawn or
    /// denied), each with a log entry. `decision`: who decided and their comment, for a denial; otherwise the
    /// reason becomes the request's comment. Returns how many were still waiting.
    pub async fn close_requests(
        &mut self,
        requests: &[WaitingRequest],
        ending: &Ending<'_>,
        decision: Option<(&str, &str)>,
    ) -> Result<usize> {
        let status = request_status_for(ending.status)?;
        let (decided_by, comment) = match decision {
            Some((by, comment)) => (Some(by), comment),
            None => (None, ending.reason),
        };
        // A statement per slice, not per request: the expiry job closes hundreds of timed
        // out requests at a time under the write lock.
        let mut closed_here = std::collections::HashSet::new();
        for slice in requests.chunks(ROWS_PER_STATEMENT) {
            let sql = format!(
                "UPDATE access_requests SET status = $1, decided_by = $2, decided_at = $3, \
                 decision_comment = $4 WHERE status IN ('pending_approval', 'approved') \
                 AND id IN ({}) RETURNING id",
                placeholders(5, slice.len())
            );
            let mut query = sqlx::query(&sql)
                .bind(status.as_str())
                .bind(decided_by)
                .bind(self.now)
                .bind(comment);
            for r in slice {
                query = query.bind(&r.id);
            }
            let closed: Vec<String> = query
                .fetch_all(&mut *self.tx)
                .await?
                .iter()
                .map(|row| row.try_get::<String, _>("id"))
                .collect::<std::result::Result<_, _>>()?;
            if closed.is_empty() {
                continue;
            }
            let sql = format!(
                "UPDATE request_ports SET status = $1, status_reason = $2 \
                 WHERE status = 'pending' AND request_id IN ({})",
                placeholders(3, closed.len())
            );
            let mut query = sqlx::query(&sql)
                .bind(ending.status.as_str())
                .bind(ending.reason);
            for id in &closed {
                query = query.bind(id.as_str());
            }
            query.execute(&mut *self.tx).await?;
            closed_here.extend(closed);
        }
        let entries: Vec<NewLogEntry> = requests
            .iter()
            .filter(|r| closed_here.remove(&r.id))
            .map(|r| {
                let detail = match decision {
                    Some((_, comment)) if !comment.is_empty() => {
                        format!("request of {}; {comment}", r.requester)
                    }
                    Some(_) => format!("request of {}", r.requester),
                    None => format!("request of {} closed: {}", r.requester, ending.reason),
                };
                NewLogEntry {
                    actor: ending.actor.to_owned(),
                    client_ip: ending.client_ip.to_owned(),
                    action: ending.action.to_owned(),
                    vm: r.vm_name.clone(),
                    ports: r
                        .ports
                        .iter()
                        .map(|(p, pr)| format!("{p}/{pr}"))
                        .collect::<Vec<_>>()
                        .join(", "),
                    source: r.source.clone(),
                    justification: r.justification.clone(),
                    result: ending.result.to_owned(),
                    detail,
                }
            })
            .collect();
        let closed = entries.len();
        self.log_all(entries).await?;
        Ok(closed)
    }

    /// Moves the time a waiting request is closed at if nobody decides it.
    pub async fn set_approval_deadline(&mut self, request_id: &str, at: i64) -> Result<()> {
        sqlx::query(
            "UPDATE access_requests SET approval_expires_at = $1 \
             WHERE id = $2 AND status = 'pending_approval'",
        )
        .bind(at)
        .bind(request_id)
        .execute(&mut *self.tx)
        .await?;
        Ok(())
    }

    /// Users who have a grant in force or a request waiting, on `vm` or anywhere.
    pub async fn users_with_open_access(&mut self, vm: Option<&str>) -> Result<Vec<String>> {
        let rows = match vm {
            Some(vm) => {
                sqlx::query(
                    "SELECT DISTINCT requester_id FROM access_requests \
                     WHERE status IN ('pending_approval', 'approved', 'active') AND vm_id = $1",
                )
                .bind(vm)
                .fetch_all(&mut *self.tx)
                .await?
            }
            None => {
                sqlx::query(
                    "SELECT DISTINCT requester_id FROM access_requests \
                     WHERE status IN ('pending_approval', 'approved', 'active')",
                )
                .fetch_all(&mut *self.tx)
                .await?
            }
        };
        rows.iter()
            .map(|r| Ok(r.try_get::<String, _>("requester_id")?))
            .collect()
    }

    /// What a user's roles are computed from, as this transaction sees it.
    pub async fn role_inputs(&mut self, user_id: &str) -> Result<RoleInputs> {
        role_inputs(&mut self.tx, user_id).await
    }
}

impl super::Store {
    /// What a user's roles are computed from, as committed now.
    pub async fn role_inputs(&self, user_id: &str) -> Result<RoleInputs> {
        let mut conn = self.pool.acquire().await?;
        role_inputs(&mut conn, user_id).await
    }
}
