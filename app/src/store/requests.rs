//! Access requests, their ports, and the grants (active request ports) that make up each
//! VM's desired state.

use super::access::{Ending, GrantFilter, WaitingFilter, WaitingRequest};
use super::audit::{Bind, NewLogEntry, bind_all};
use super::{ROWS_PER_STATEMENT, Result, Store, StoreError, WriteTx, new_id, placeholders};
use crate::domain::request::{
    PortStatus, RequestSpec, RequestStatus, approval_deadline, reason, window_end,
};
use sqlx::Row;
use sqlx::any::AnyRow;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredRequestPort {
    pub port: i64,
    pub protocol: String,
    pub status: PortStatus,
    pub status_reason: String,
    pub end_at: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredRequest {
    pub id: String,
    pub batch_id: String,
    pub vm_id: String,
    pub vm_name: String,
    pub vm_group: String,
    pub requester_id: String,
    pub requester: String,
    pub source: String,
    pub duration_secs: i64,
    pub justification: String,
    pub status: RequestStatus,
    pub created_at: i64,
    pub start_at: Option<i64>,
    pub end_at: Option<i64>,
    /// The later start it asked for, if any (its window until it opens).
    pub planned_start_at: Option<i64>,
    pub decided_by: Option<String>,
    pub decision_comment: String,
    pub ports: Vec<StoredRequestPort>,
    /// The VM's enforcement progress: whether it has an agent, its current generation and
    /// the generation its agent last applied.
    pub vm_has_agent: bool,
    pub vm_generation: i64,
    pub vm_applied_generation: i64,
    /// The error of the VM agent's last report: a change it has not applied never will be
    /// until the host is fixed.
    pub vm_agent_error: String,
    /// When a report without error first covered this request's grants: they are
    /// enforced from then on.
    pub enforced_at: Option<i64>,
    /// Distinct approvals given so far, and how many the request needs (as of the last
    /// decision or policy edit; decided again at each approval).
    pub approvals: i64,
    pub approvals_required: i64,
}

impl StoredRequest {
    /// Its ports as people read them, in the log, notices and messages: `22/tcp, 3389/tcp`.
    pub fn ports_text(&self) -> String {
        self.ports
            .iter()
            .map(|p| format!("{}/{}", p.port, p.protocol))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// One grant in force: the unit the agent enforces.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Grant {
    pub source: String,
    pub port: i64,
    pub protocol: String,
    pub expires_at: i64,
}

#[derive(Debug, Clone, Default)]
pub struct RequestFilter {
    pub requester_id: Option<String>,
    /// Everyone's requests but this user's (nobody decides their own).
    pub not_requester: Option<String>,
    /// Only requests this user has not approved yet (nobody approves twice).
    pub not_approved_by: Option<String>,
    pub vm_id: Option<String>,
    pub status: Option<RequestStatus>,
    pub since_ms: Option<i64>,
    /// Only requests on these VMs (a caller's scope), unless `everything`.
    pub scope: Option<crate::domain::Visibility>,
    pub offset: i64,
    pub limit: i64,
}

pub(super) const REQUEST_COLUMNS: &str = "r.id, r.batch_id, r.vm_id, v.name AS vm_name, v.resource_group AS vm_group, \
     r.requester_id, u.username AS requester, r.source_prefix, r.duration_secs, r.justification, r.status, \
     r.created_at, r.start_at, r.end_at, r.planned_start_at, r.decided_by, r.decision_comment, \
     CASE WHEN v.agent_id IS NULL THEN 0 ELSE 1 END AS vm_has_agent, v.generation AS vm_generation, \
     v.agent_applied_generation AS vm_applied_generation, v.agent_error AS vm_agent_error, r.enforced_at, r.approvals_required, \
     (SELECT COUNT(*) FROM request_approvals a WHERE a.request_id = r.id) AS approvals";

pub(super) fn request_from_row(row: &AnyRow) -> Result<StoredRequest> {
    let status: String = row.try_get("status")?;
    Ok(StoredRequest {
        id: row.try_get("id")?,
        batch_id: row.try_get("batch_id")?,
        vm_id: row.try_get("vm_id")?,
        vm_name: row.try_get("vm_name")?,
        vm_group: row.try_get("vm_group")?,
        requester_id: row.try_get("requester_id")?,
        requester: row.try_get("requester")?,
        source: row.try_get("source_prefix")?,
        duration_secs: row.try_get("duration_secs")?,
        justification: row.try_get("justification")?,
        status: RequestStatus::parse(&status)
            .ok_or_else(|| StoreError::Corrupt(format!("status {status}")))?,
        created_at: row.try_get("created_at")?,
        start_at: row.try_get("start_at")?,
        end_at: row.try_get("end_at")?,
        planned_start_at: row.try_get("planned_start_at")?,
        decided_by: row.try_get("decided_by")?,
        decision_comment: row.try_get("decision_comment")?,
        ports: Vec::new(),
        vm_has_agent: row.try_get::<i64, _>("vm_has_agent")? == 1,
        vm_generation: row.try_get("vm_generation")?,
        vm_applied_generation: row.try_get("vm_applied_generation")?,
        vm_agent_error: row.try_get("vm_agent_error")?,
        enforced_at: row.try_get("enforced_at")?,
        approvals: row.try_get("approvals")?,
        approvals_required: row.try_get("approvals_required")?,
    })
}

impl WriteTx {
    /// Activates the ports of a request from the transaction's time: each becomes a grant
    /// (see [`WriteTx::supersede_older`]).
    async fn activate_ports(
        &mut self,
        request_id: &str,
        vm_id: &str,
        requester_id: &str,
        source: &str,
        end_at: i64,
        by: (&str, &str),
    ) -> Result<()> {
        // Active first: superseding closes requests left without an active port, and this
        // one must not look like one of them.
        sqlx::query(
            "UPDATE request_ports SET status = 'active', status_reason = '', end_at = $1 \
             WHERE request_id = $2",
        )
        .bind(end_at)
        .bind(request_id)
        .execute(&mut *self.tx)
        .await?;
        self.supersede_older(request_id, vm_id, requester_id, source, by)
            .await
    }

    /// Ends the same requester's older grants for the ports of a request just made active,
    /// on the same VM and for the same source (another user's grant for a shared address
    /// stays theirs): one statement to find them, whatever the number of ports.
    async fn supersede_older(
        &mut self,
        request_id: &str,
        vm_id: &str,
        requester_id: &str,
        source: &str,
        by: (&str, &str),
    ) -> Result<()> {
        let older = self
            .open_grants(GrantFilter::Superseded {
                vm: vm_id,
                requester: requester_id,
                source,
                by_request: request_id,
            })
            .await?;
        if older.is_empty() {
            return Ok(());
        }
        self.end_grants(
            &older,
            &Ending {
                status: PortStatus::Superseded,
                reason: reason::SUPERSEDED,
                actor: by.0,
                client_ip: by.1,
                action: "supersede",
                result: "success",
            },
        )
        .await?;
        Ok(())
    }

    /// Active requests of these VMs none of whose ports is active any more are finished;
    /// they take the status of their ports (expired unless something else ended them).
    pub(crate) async fn close_finished_requests(&mut self, vm_ids: &[&str]) -> Result<()> {
        // A statement per slice of VMs: the expiry job ends hundreds of grants a second at
        // peaks, and each round trip here is taken under the write lock.
        for slice in vm_ids.chunks(ROWS_PER_STATEMENT) {
            let sql = format!(
                "UPDATE access_requests SET \
                 status = CASE WHEN EXISTS (SELECT 1 FROM request_ports p \
                   WHERE p.request_id = access_requests.id AND p.status = 'revoked') THEN $1 ELSE $2 END, \
                 end_at = CASE WHEN end_at > $3 THEN $3 ELSE end_at END \
                 WHERE vm_id IN ({}) AND status = 'active' AND NOT EXISTS \
                 (SELECT 1 FROM request_ports p WHERE p.request_id = access_requests.id AND p.status = 'active')",
                placeholders(4, slice.len())
            );
            let mut query = sqlx::query(&sql)
                .bind(RequestStatus::Revoked.as_str())
                .bind(RequestStatus::Expired.as_str())
                .bind(self.now);
            for vm in slice {
                query = query.bind(*vm);
            }
            query.execute(&mut *self.tx).await?;
        }
        Ok(())
    }

    /// Approves a waiting request: it is active from now for its duration (or, when it
    /// asked for a start that has come, until the end of the window it asked for), its
    /// ports become grants, and the approval is logged. The caller has re-checked it.
    pub async fn activate_request(
        &mut self,
        request: &WaitingRequest,
        approver: &str,
        approver_ip: &str,
        comment: &str,
        log: NewLogEntry,
    ) -> Result<bool> {
        let now = self.now;
        let end = request.window_end(now);
        // Approved, then active at once: requests start when they are approved.
        let done = sqlx::query(
            "UPDATE access_requests SET status = $1, decided_by = $2, decided_at = $3, decision_comment = $4, \
             start_at = $3, window_start_at = $3, end_at = $5 WHERE id = $6 AND status = 'pending_approval'",
        )
        .bind(RequestStatus::Active.as_str())
        .bind(approver)
        .bind(now)
        .bind(comment)
        .bind(end)
        .bind(&request.id)
        .execute(&mut *self.tx)
        .await?;
        if done.rows_affected() == 0 {
            return Ok(false);
        }
        self.activate_ports(
            &request.id,
            &request.vm_id,
            &request.requester_id,
            &request.source,
            end,
            (approver, approver_ip),
        )
        .await?;
        self.bump_generation(&request.vm_id).await?;
        self.log(log).await?;
        Ok(true)
    }

    /// Approves a waiting request whose window starts later: it waits, approved, for its
    /// start (no grant yet, no approval time-out any more), when the job opens it after a
    /// last re-check. The caller has re-checked it.
    pub async fn schedule_request(
        &mut self,
        request_id: &str,
        approver: &str,
        comment: &str,
        log: NewLogEntry,
    ) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE access_requests SET status = $1, decided_by = $2, decided_at = $3, decision_comment = $4, \
             approval_expires_at = NULL WHERE id = $5 AND status = 'pending_approval' AND planned_start_at > $3",
        )
        .bind(RequestStatus::Approved.as_str())
        .bind(approver)
        .bind(self.now)
        .bind(comment)
        .bind(request_id)
        .execute(&mut *self.tx)
        .await?;
        if done.rows_affected() == 0 {
            return Ok(false);
        }
        self.log(log).await?;
        Ok(true)
    }

    /// Opens an approved request whose start has come: active until the end of the window
    /// it asked for, its ports grants. The caller has re-checked it at this moment.
    pub async fn open_scheduled(
        &mut self,
        request: &WaitingRequest,
        log: NewLogEntry,
    ) -> Result<bool> {
        let now = self.now;
        let end = request.window_end(now);
        let done = sqlx::query(
            "UPDATE access_requests SET status = $1, start_at = $2, window_start_at = $2, end_at = $3 \
             WHERE id = $4 AND status = 'approved'",
        )
        .bind(RequestStatus::Active.as_str())
        .bind(now)
        .bind(end)
        .bind(&request.id)
        .execute(&mut *self.tx)
        .await?;
        if done.rows_affected() == 0 {
            return Ok(false);
        }
        self.activate_ports(
            &request.id,
            &request.vm_id,
            &request.requester_id,
            &request.source,
            end,
            ("system", ""),
        )
        .await?;
        self.bump_generation(&request.vm_id).await?;
        self.log(log).await?;
        Ok(true)
    }

    /// Records `approver`'s approval of a waiting request (the caller has read it waiting
    /// in this transaction). Returns `false` when this approver had approved it already
    /// (then nothing is written). Whether the approvals are enough is the caller's
    /// decision: only those whose approvers still may approve count.
    pub async fn record_approval(
        &mut self,
        request_id: &str,
        approver_id: &str,
        approver_name: &str,
        comment: &str,
    ) -> Result<bool> {
        let done = sqlx::query(
            "INSERT INTO request_approvals (request_id, approver_id, approver_name, comment, approved_at) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (request_id, approver_id) DO NOTHING",
        )
        .bind(request_id)
        .bind(approver_id)
        .bind(approver_name)
        .bind(comment)
        .bind(self.now)
        .execute(&mut *self.tx)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    /// The users who have approved a request, earliest first.
    pub async fn approvers_of(&mut self, request_id: &str) -> Result<Vec<String>> {
        let rows = sqlx::query(
            "SELECT approver_id FROM request_approvals WHERE request_id = $1 ORDER BY approved_at, approver_id",
        )
        .bind(request_id)
        .fetch_all(&mut *self.tx)
        .await?;
        rows.iter()
            .map(|r| r.try_get("approver_id").map_err(Into::into))
            .collect()
    }

    /// Takes back the approval `approver_id` gave a request (they may no longer approve
    /// it), so that it neither counts nor shows.
    pub async fn withdraw_approval(&mut self, request_id: &str, approver_id: &str) -> Result<()> {
        sqlx::query("DELETE FROM request_approvals WHERE request_id = $1 AND approver_id = $2")
            .bind(request_id)
            .bind(approver_id)
            .execute(&mut *self.tx)
            .await?;
        Ok(())
    }

    /// Sets how many approvals a waiting request needs, as the policy in force decides.
    pub async fn set_approvals_required(&mut self, request_id: &str, n: i64) -> Result<()> {
        sqlx::query(
            "UPDATE access_requests SET approvals_required = $1 \
             WHERE id = $2 AND status = 'pending_approval'",
        )
        .bind(n)
        .bind(request_id)
        .execute(&mut *self.tx)
        .await?;
        Ok(())
    }

    /// Records a request for one VM. Without approval it is active at once; with approval
    /// it waits at most `spec.approval_timeout_secs`.
    pub async fn create_request(
        &mut self,
        batch_id: &str,
        vm_id: &str,
        requester_id: &str,
        spec: &RequestSpec,
        log: NewLogEntry,
    ) -> Result<String> {
        let id = new_id();
        let source = spec.source.to_string();
        let tx = self;
        let now = tx.now;
        let (status, start, end, deadline) = if spec.needs_approval {
            let timeout = spec
                .approval_timeout_secs
                .unwrap_or(crate::domain::jit::DEFAULT_APPROVAL_TIMEOUT_SECS);
            // An approval after a booked window's start opens what is left of it, never more.
            let deadline = approval_deadline(now, timeout, spec.start_at, spec.duration_secs);
            (RequestStatus::PendingApproval, None, None, Some(deadline))
        } else if spec.start_at.is_some() {
            // Needs nobody's approval: approved now, opened at its start by the job.
            (RequestStatus::Approved, None, None, None)
        } else {
            (
                RequestStatus::Active,
                Some(now),
                Some(window_end(now, spec.duration_secs)),
                None,
            )
        };
        sqlx::query(
            "INSERT INTO access_requests (id, batch_id, vm_id, requester_id, source_prefix, duration_secs, \
             justification, status, created_at, start_at, window_start_at, end_at, decision_comment, approval_expires_at, \
             approvals_required, planned_start_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $10, $11, '', $12, $13, $14)",
        )
        .bind(&id)
        .bind(batch_id)
        .bind(vm_id)
        .bind(requester_id)
        .bind(&source)
        .bind(spec.duration_secs)
        .bind(&spec.justification)
        .bind(status.as_str())
        .bind(now)
        .bind(start)
        .bind(end)
        .bind(deadline)
        .bind(i64::from(spec.approvals_required.get()))
        .bind(spec.start_at)
        .execute(&mut *tx.tx)
        .await?;
        // Ports open now are written as the grants they are at once.
        let port_status = if end.is_some() { "active" } else { "pending" };
        for (port, protocol) in &spec.ports {
            sqlx::query(
                "INSERT INTO request_ports (id, request_id, vm_id, port, protocol, source_prefix, status, status_reason, end_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, '', $8)",
            )
            .bind(new_id())
            .bind(&id)
            .bind(vm_id)
            .bind(i64::from(port.get()))
            .bind(protocol.as_str())
            .bind(&source)
            .bind(port_status)
            .bind(end)
            .execute(&mut *tx.tx)
            .await?;
        }
        if end.is_some() {
            let by = (log.actor.clone(), log.client_ip.clone());
            tx.supersede_older(&id, vm_id, requester_id, &source, (&by.0, &by.1))
                .await?;
            tx.bump_generation(vm_id).await?;
        }
        tx.log(log).await?;
        Ok(id)
    }

    /// Moves the end of an active request (and its active ports) to `end_at`; its window
    /// now starts at the extension.
    pub async fn extend_request(
        &mut self,
        id: &str,
        end_at: i64,
        log: NewLogEntry,
    ) -> Result<bool> {
        let row =
            sqlx::query("SELECT vm_id FROM access_requests WHERE id = $1 AND status = 'active'")
                .bind(id)
                .fetch_optional(&mut *self.tx)
                .await?;
        let Some(row) = row else { return Ok(false) };
        let vm_id: String = row.try_get("vm_id")?;
        sqlx::query("UPDATE access_requests SET end_at = $1, window_start_at = $2 WHERE id = $3")
            .bind(end_at)
            .bind(self.now)
            .bind(id)
            .execute(&mut *self.tx)
            .await?;
        sqlx::query(
            "UPDATE request_ports SET end_at = $1 WHERE request_id = $2 AND status = 'active'",
        )
        .bind(end_at)
        .bind(id)
        .execute(&mut *self.tx)
        .await?;
        self.bump_generation(&vm_id).await?;
        self.log(log).await?;
        Ok(true)
    }
}

/// How many grants (or timed-out requests) one expiry transaction ends at most: a
/// thousand grants ending together must not hold the write lock for seconds.
const EXPIRY_BATCH: i64 = 200;

impl Store {
    /// Records a request for one VM in its own transaction (see
    /// [`WriteTx::create_request`]).
    pub async fn create_request(
        &self,
        batch_id: &str,
        vm_id: &str,
        requester_id: &str,
        spec: &RequestSpec,
        log: NewLogEntry,
    ) -> Result<String> {
        let mut tx = self.begin_write().await?;
        let id = tx
            .create_request(batch_id, vm_id, requester_id, spec, log)
            .await?;
        tx.commit().await?;
        Ok(id)
    }

    /// Whether `user_id` has approved the request (and the approval stands).
    pub async fn has_approved(&self, request_id: &str, user_id: &str) -> Result<bool> {
        Ok(sqlx::query(
            "SELECT approver_id FROM request_approvals WHERE request_id = $1 AND approver_id = $2",
        )
        .bind(request_id)
        .bind(user_id)
        .fetch_optional(&self.pool)
        .await?
        .is_some())
    }

    pub async fn get_request(&self, id: &str) -> Result<Option<StoredRequest>> {
        let sql = format!(
            "SELECT {REQUEST_COLUMNS} FROM access_requests r JOIN vms v ON v.id = r.vm_id \
             JOIN users u ON u.id = r.requester_id WHERE r.id = $1"
        );
        let Some(row) = sqlx::query(&sql)
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
        else {
            return Ok(None);
        };
        let mut request = request_from_row(&row)?;
        request.ports = self.request_ports(id).await?;
        Ok(Some(request))
    }

    async fn request_ports(&self, request_id: &str) -> Result<Vec<StoredRequestPort>> {
        let rows = sqlx::query(
            "SELECT port, protocol, status, status_reason, end_at FROM request_ports WHERE request_id = $1 ORDER BY port",
        )
        .bind(request_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let status: String = r.try_get("status")?;
                Ok(StoredRequestPort {
                    port: r.try_get("port")?,
                    protocol: r.try_get("protocol")?,
                    status: PortStatus::parse(&status)
                        .ok_or_else(|| StoreError::Corrupt(format!("port status {status}")))?,
                    status_reason: r.try_get("status_reason")?,
                    end_at: r.try_get("end_at")?,
                })
            })
            .collect()
    }

    /// Requests matching the filter, newest first, with their ports: the filtering, the
    /// scope and the paging happen in the database, and the ports of the whole page come
    /// in one query.
    pub async fn list_requests(&self, f: &RequestFilter) -> Result<Vec<StoredRequest>> {
        let mut sql = format!(
            "SELECT {REQUEST_COLUMNS} FROM access_requests r JOIN vms v ON v.id = r.vm_id \
             JOIN users u ON u.id = r.requester_id WHERE 1 = 1"
        );
        let mut binds = Vec::new();
        if let Some(id) = &f.requester_id {
            binds.push(Bind::Text(id.clone()));
            sql.push_str(&format!(" AND r.requester_id = ${}", binds.len()));
        }
        if let Some(id) = &f.not_requester {
            binds.push(Bind::Text(id.clone()));
            sql.push_str(&format!(" AND r.requester_id <> ${}", binds.len()));
        }
        if let Some(id) = &f.not_approved_by {
            binds.push(Bind::Text(id.clone()));
            sql.push_str(&format!(
                " AND NOT EXISTS (SELECT 1 FROM request_approvals a \
                 WHERE a.request_id = r.id AND a.approver_id = ${})",
                binds.len()
            ));
        }
        if let Some(id) = &f.vm_id {
            binds.push(Bind::Text(id.clone()));
            sql.push_str(&format!(" AND r.vm_id = ${}", binds.len()));
        }
        if let Some(status) = f.status {
            binds.push(Bind::Text(status.as_str().to_owned()));
            sql.push_str(&format!(" AND r.status = ${}", binds.len()));
        }
        if let Some(since) = f.since_ms {
            binds.push(Bind::Int(since));
            sql.push_str(&format!(
                " AND (r.end_at IS NULL OR r.end_at >= ${n} OR r.created_at >= ${n})",
                n = binds.len()
            ));
        }
        if let Some(scope) = f.scope.as_ref().filter(|s| !s.everything) {
            let mut parts = vec!["1 = 0".to_owned()];
            for g in &scope.groups {
                binds.push(Bind::Text(g.clone()));
                parts.push(format!("v.resource_group = ${}", binds.len()));
            }
            for id in &scope.vm_ids {
                binds.push(Bind::Text(id.clone()));
                parts.push(format!("r.vm_id = ${}", binds.len()));
            }
            sql.push_str(&format!(" AND ({})", parts.join(" OR ")));
        }
        sql.push_str(&format!(
            " ORDER BY r.created_at DESC, r.id DESC LIMIT {} OFFSET {}",
            f.limit.clamp(1, 1000),
            f.offset.clamp(0, 10_000_000)
        ));
        let rows = bind_all(sqlx::query(&sql), &binds)
            .fetch_all(&self.pool)
            .await?;
        let mut out = rows
            .iter()
            .map(request_from_row)
            .collect::<Result<Vec<_>>>()?;
        self.attach_ports(&mut out).await?;
        Ok(out)
    }

    /// Fills in the ports of the requests in `out`, all in one query.
    pub(super) async fn attach_ports(&self, out: &mut [StoredRequest]) -> Result<()> {
        if out.is_empty() {
            return Ok(());
        }
        let sql = format!(
            "SELECT request_id, port, protocol, status, status_reason, end_at FROM request_ports \
             WHERE request_id IN ({}) ORDER BY port",
            placeholders(1, out.len())
        );
        let mut query = sqlx::query(&sql);
        for r in out.iter() {
            query = query.bind(r.id.as_str());
        }
        let ports = query.fetch_all(&self.pool).await?;
        for p in &ports {
            let request_id: String = p.try_get("request_id")?;
            let status: String = p.try_get("status")?;
            if let Some(r) = out.iter_mut().find(|r| r.id == request_id) {
                r.ports.push(StoredRequestPort {
                    port: p.try_get("port")?,
                    protocol: p.try_get("protocol")?,
                    status: PortStatus::parse(&status)
                        .ok_or_else(|| StoreError::Corrupt(format!("port status {status}")))?,
                    status_reason: p.try_get("status_reason")?,
                    end_at: p.try_get("end_at")?,
                });
            }
        }
        Ok(())
    }

    /// Ends every grant whose time has come and closes every request whose approval
    /// timed out, in batches (each its own transaction, so that other writes interleave).
    /// Returns the number of grants expired and of requests timed out.
    pub async fn expire_due(&self, now: i64) -> Result<(usize, usize)> {
        let mut expired = 0;
        let mut timed_out = 0;
        loop {
            let mut tx = self.begin_write().await?;
            let due = tx
                .open_grants(GrantFilter::Due {
                    now,
                    limit: EXPIRY_BATCH,
                })
                .await?;
            let waiting = tx
                .waiting_requests(WaitingFilter::TimedOut {
                    now,
                    limit: EXPIRY_BATCH,
                })
                .await?;
            if due.is_empty() && waiting.is_empty() {
                return Ok((expired, timed_out));
            }
            expired += tx
                .end_grants(
                    &due,
                    &Ending::system(PortStatus::Expired, reason::EXPIRED, "expire"),
                )
                .await?;
            timed_out += tx
                .close_requests(
                    &waiting,
                    &Ending {
                        result: "cancelled",
                        ..Ending::system(
                            PortStatus::Cancelled,
                            reason::APPROVAL_TIMED_OUT,
                            "request.timeout",
                        )
                    },
                    None,
                )
                .await?;
            tx.commit().await?;
            if (due.len() as i64) < EXPIRY_BATCH && (waiting.len() as i64) < EXPIRY_BATCH {
                return Ok((expired, timed_out));
            }
        }
    }

    /// The earliest end of any grant in force, approval time-out of a waiting request or
    /// start of an approved window, so the expiry job can sleep until then.
    pub async fn next_expiry(&self) -> Result<Option<i64>> {
        let grants =
            sqlx::query("SELECT MIN(end_at) AS m FROM request_ports WHERE status = 'active'")
                .fetch_one(&self.pool)
                .await?
                .try_get::<Option<i64>, _>("m")?;
        let waiting = sqlx::query(
            "SELECT MIN(approval_expires_at) AS m FROM access_requests WHERE status = 'pending_approval'",
        )
        .fetch_one(&self.pool)
        .await?
        .try_get::<Option<i64>, _>("m")?;
        let starts = sqlx::query(
            "SELECT MIN(planned_start_at) AS m FROM access_requests WHERE status = 'approved'",
        )
        .fetch_one(&self.pool)
        .await?
        .try_get::<Option<i64>, _>("m")?;
        Ok([grants, waiting, starts].into_iter().flatten().min())
    }

    /// A VM's desired state: its generation and the grants in force at `now`.
    pub async fn desired_state(&self, vm_id: &str, now: i64) -> Result<Option<(i64, Vec<Grant>)>> {
        let Some(gen_row) = sqlx::query("SELECT generation FROM vms WHERE id = $1")
            .bind(vm_id)
            .fetch_optional(&self.pool)
            .await?
        else {
            return Ok(None);
        };
        let rows = sqlx::query(
            "SELECT source_prefix, port, protocol, end_at FROM request_ports \
             WHERE vm_id = $1 AND status = 'active' AND end_at > $2 ORDER BY port, protocol, source_prefix",
        )
        .bind(vm_id)
        .bind(now)
        .fetch_all(&self.pool)
        .await?;
        let grants = rows
            .iter()
            .map(|r| {
                Ok(Grant {
                    source: r.try_get("source_prefix")?,
                    port: r.try_get("port")?,
                    protocol: r.try_get("protocol")?,
                    expires_at: r.try_get::<Option<i64>, _>("end_at")?.unwrap_or(now),
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Some((gen_row.try_get("generation")?, grants)))
    }

    /// Access windows of a VM that overlap `[from, to)`, for the timeline: those that
    /// opened, and those booked for later (waiting for approval or for their start).
    pub async fn access_windows(
        &self,
        vm_id: &str,
        from: i64,
        to: i64,
    ) -> Result<Vec<(i64, i64, String, String)>> {
        let rows = sqlx::query(
            "SELECT w.start_at, w.end_at, w.username, w.status FROM (\
             SELECT r.start_at, r.end_at, u.username, r.status FROM access_requests r JOIN users u ON u.id = r.requester_id \
             WHERE r.vm_id = $1 AND r.start_at IS NOT NULL AND r.start_at < $2 AND r.end_at > $3 \
             UNION ALL \
             SELECT r.planned_start_at AS start_at, r.planned_start_at + r.duration_secs * 1000 AS end_at, u.username, r.status \
             FROM access_requests r JOIN users u ON u.id = r.requester_id \
             WHERE r.vm_id = $1 AND r.status IN ('pending_approval', 'approved') AND r.planned_start_at IS NOT NULL \
             AND r.planned_start_at < $2 AND r.planned_start_at + r.duration_secs * 1000 > $3) w ORDER BY w.start_at",
        )
        .bind(vm_id)
        .bind(to)
        .bind(from)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok((
                    r.try_get::<Option<i64>, _>("start_at")?.unwrap_or(from),
                    r.try_get::<Option<i64>, _>("end_at")?.unwrap_or(to),
                    r.try_get("username")?,
                    r.try_get("status")?,
                ))
            })
            .collect()
    }
}
