//! Agents: enrollment with one-time tokens, authentication by a per-agent secret (only its
//! hash is stored), and what agents report back.

use super::audit::NewLogEntry;
use super::watch::{DesiredState, VmWatch};
use super::{Result, Store, StoreError, WriteTx, new_id};
use sqlx::Row;
use std::sync::Arc;

/// Contacts written per statement when flushing: well under both backends' limits on
/// bound parameters, and a short hold of the write lock.
const CONTACT_BATCH: usize = 500;

/// What an enrolling agent says of its host.
pub struct AgentHost<'a> {
    pub hostname: &'a str,
    pub os: &'a str,
    /// The address the agent connected from, recorded for a VM it registers.
    pub address: &'a str,
}

/// What the server knows of a VM's agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentRecord {
    pub vm_id: String,
    pub vm_name: String,
    pub secret_hash: String,
    pub applied_generation: i64,
    pub error: String,
    /// The management ports it last reported listening, as stored.
    pub exposed_ports: String,
}

impl AgentRecord {
    /// Whether a report says again what this agent last said, with `exposed_ports` as
    /// stored now.
    fn says_again(&self, generation: i64, error: &str, exposed_ports: &str, stored: &str) -> bool {
        generation == self.applied_generation && error == self.error && exposed_ports == stored
    }
}

/// What became of an agent's report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReportOutcome {
    /// It names a generation the server never issued to this agent.
    Refused,
    /// Recorded. Each request this report put in force gives its open latency: from the
    /// request being stored to this report (by the store's clock, in milliseconds).
    Recorded { open_latencies_ms: Vec<i64> },
}

impl WriteTx {
    /// Marks the VM's active requests not yet in force as enforced now, and answers how
    /// long each took from being stored.
    async fn mark_enforced(&mut self, vm_id: &str) -> Result<Vec<i64>> {
        let rows = sqlx::query(
            "SELECT created_at FROM access_requests WHERE vm_id = $1 AND status = 'active' AND enforced_at IS NULL",
        )
        .bind(vm_id)
        .fetch_all(&mut *self.tx)
        .await?;
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        sqlx::query(
            "UPDATE access_requests SET enforced_at = $1 WHERE vm_id = $2 AND status = 'active' AND enforced_at IS NULL",
        )
        .bind(self.now)
        .bind(vm_id)
        .execute(&mut *self.tx)
        .await?;
        rows.iter()
            .map(|r| Ok((self.now - r.try_get::<i64, _>("created_at")?).max(0)))
            .collect()
    }
}

impl Store {
    /// A token that binds an agent to `vm_id`, or, with `vm_id` None, lets it register a
    /// new VM in `group` named after its host. Returns when the token expires.
    pub async fn create_enrollment_token(
        &self,
        vm_id: Option<&str>,
        group: &str,
        token_hash: &str,
        created_by: &str,
        ttl_ms: i64,
        log: NewLogEntry,
    ) -> Result<i64> {
        let mut tx = self.begin_write().await?;
        let now = tx.now;
        sqlx::query(
            "INSERT INTO enrollment_tokens (token_hash, vm_id, resource_group, created_by, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(token_hash)
        .bind(vm_id)
        .bind(group)
        .bind(created_by)
        .bind(now)
        .bind(now + ttl_ms)
        .execute(&mut *tx.tx)
        .await
        .map_err(StoreError::from_write)?;
        tx.log(log).await?;
        tx.commit().await?;
        Ok(now + ttl_ms)
    }

    /// Spends a token: binds a new agent identity to the token's VM (replacing any earlier
    /// agent of that VM), or registers the VM first. Returns (agent id, VM id, VM name), or
    /// None for an unknown, used or expired token.
    pub async fn enroll_agent(
        &self,
        token_hash: &str,
        secret_hash: &str,
        host: &AgentHost<'_>,
    ) -> Result<Option<(String, String, String)>> {
        // A made-up token is refused on a plain read: only a token that can succeed waits
        // for the write lock, so a flood of guesses cannot hold up expiry and revocations.
        let usable = sqlx::query(
            "SELECT vm_id FROM enrollment_tokens WHERE token_hash = $1 AND used_at IS NULL AND expires_at > $2",
        )
        .bind(token_hash)
        .bind(self.now_ms())
        .fetch_optional(&self.pool)
        .await?;
        if usable.is_none() {
            return Ok(None);
        }
        let mut tx = self.begin_write().await?;
        let now = tx.now;
        let row = sqlx::query(
            "SELECT vm_id, resource_group FROM enrollment_tokens WHERE token_hash = $1 AND used_at IS NULL AND expires_at > $2",
        )
        .bind(token_hash)
        .bind(now)
        .fetch_optional(&mut *tx.tx)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let actor = format!("agent@{}", host.hostname);
        let (vm_id, vm_name) = match row.try_get::<Option<String>, _>("vm_id")? {
            Some(vm_id) => {
                let name: String = sqlx::query("SELECT name FROM vms WHERE id = $1")
                    .bind(&vm_id)
                    .fetch_one(&mut *tx.tx)
                    .await?
                    .try_get("name")?;
                (vm_id, name)
            }
            None => {
                let group: String = row.try_get("resource_group")?;
                let vm_id = new_id();
                sqlx::query(
                    "INSERT INTO vms (id, name, resource_group, addresses, os, exposed_ports, generation, created_at, updated_at) \
                     VALUES ($1, $2, $3, $4, $5, '', 0, $6, $6)",
                )
                .bind(&vm_id)
                .bind(host.hostname)
                .bind(&group)
                .bind(host.address)
                .bind(host.os)
                .bind(now)
                .execute(&mut *tx.tx)
                .await
                .map_err(StoreError::from_write)?;
                tx.log(NewLogEntry {
                    actor: actor.clone(),
                    client_ip: host.address.to_owned(),
                    action: "vm.create".into(),
                    vm: host.hostname.to_owned(),
                    result: "success".into(),
                    detail: format!("registered by its agent in group {group}"),
                    ..Default::default()
                })
                .await?;
                (vm_id, host.hostname.to_owned())
            }
        };
        let agent_id = new_id();
        sqlx::query("UPDATE enrollment_tokens SET used_at = $1 WHERE token_hash = $2")
            .bind(now)
            .bind(token_hash)
            .execute(&mut *tx.tx)
            .await?;
        sqlx::query(
            "UPDATE vms SET agent_id = $1, agent_secret_hash = $2, agent_hostname = $3, agent_last_seen = $4, \
             agent_applied_generation = -1, agent_error = '' WHERE id = $5",
        )
        .bind(&agent_id)
        .bind(secret_hash)
        .bind(host.hostname)
        .bind(now)
        .bind(&vm_id)
        .execute(&mut *tx.tx)
        .await?;
        tx.bump_generation(&vm_id).await?;
        tx.log(NewLogEntry {
            actor,
            client_ip: host.address.to_owned(),
            action: "agent.enroll".into(),
            vm: vm_name.clone(),
            result: "success".into(),
            ..Default::default()
        })
        .await?;
        tx.commit().await?;
        Ok(Some((agent_id, vm_id, vm_name)))
    }

    pub async fn agent(&self, agent_id: &str) -> Result<Option<AgentRecord>> {
        let row = sqlx::query(
            "SELECT id, name, agent_secret_hash, agent_applied_generation, agent_error, exposed_ports FROM vms WHERE agent_id = $1",
        )
        .bind(agent_id)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| {
            Ok(AgentRecord {
                vm_id: r.try_get("id")?,
                vm_name: r.try_get("name")?,
                secret_hash: r
                    .try_get::<Option<String>, _>("agent_secret_hash")?
                    .unwrap_or_default(),
                applied_generation: r.try_get("agent_applied_generation")?,
                error: r.try_get("agent_error")?,
                exposed_ports: r.try_get("exposed_ports")?,
            })
        })
        .transpose()
    }

    /// Notes that the VM's agent was heard from now. Kept in memory until the next
    /// [`Store::flush_agent_contacts`]: polls cost no write.
    pub fn note_agent_contact(&self, vm_id: &str) {
        let now = self.now_ms();
        let mut contacts = self.contacts.lock().unwrap_or_else(|p| p.into_inner());
        contacts.insert(vm_id.to_owned(), now);
    }

    /// Writes the contacts noted since the last flush, a few hundred per write
    /// transaction (taking their turn with the other writers, so a flood of agents never
    /// makes a revocation fail on a locked database). A contact never moves "last seen"
    /// back. Returns how many were written.
    pub async fn flush_agent_contacts(&self) -> Result<usize> {
        let contacts: Vec<(String, i64)> = {
            let mut map = self.contacts.lock().unwrap_or_else(|p| p.into_inner());
            std::mem::take(&mut *map).into_iter().collect()
        };
        for (n, batch) in contacts.chunks(CONTACT_BATCH).enumerate() {
            if let Err(e) = self.write_contacts(batch).await {
                // Kept for the next flush (a newer contact noted meanwhile wins): a failed
                // write, or a failed commit shared with other writers, loses none.
                let mut map = self.contacts.lock().unwrap_or_else(|p| p.into_inner());
                for (vm_id, at) in &contacts[n * CONTACT_BATCH..] {
                    let kept = map.entry(vm_id.clone()).or_insert(*at);
                    *kept = (*kept).max(*at);
                }
                return Err(e);
            }
        }
        Ok(contacts.len())
    }

    async fn write_contacts(&self, batch: &[(String, i64)]) -> Result<()> {
        let mut cases = String::new();
        let mut ids = Vec::with_capacity(batch.len());
        for i in 0..batch.len() {
            cases.push_str(&format!(" WHEN ${} THEN ${}", 2 * i + 1, 2 * i + 2));
            ids.push(format!("${}", 2 * i + 1));
        }
        let sql = format!(
            "UPDATE vms SET agent_last_seen = CASE id{cases} END, silence_notified_at = NULL \
             WHERE id IN ({}) \
             AND (agent_last_seen IS NULL OR agent_last_seen < CASE id{cases} END)",
            ids.join(", ")
        );
        let mut query = sqlx::query(&sql);
        for (vm_id, at) in batch {
            query = query.bind(vm_id.as_str()).bind(*at);
        }
        let mut tx = self.begin_write().await?;
        query.execute(&mut *tx.tx).await?;
        tx.commit().await
    }

    /// The desired state a VM's agent is to enforce: the one kept since the VM last
    /// changed, or read now (and kept). None when the VM is gone.
    pub async fn agent_state(&self, watch: &VmWatch) -> Result<Option<Arc<DesiredState>>> {
        if self.watchers.trusted()
            && let Some(state) = watch.kept()
        {
            return Ok(Some(state));
        }
        // Taken before reading: a change committed during the read makes what is read
        // stale, and it is then not kept.
        let epoch = watch.epoch();
        let vm_id = watch.vm_id();
        let Some((generation, grants)) = self.desired_state(vm_id, self.now_ms()).await? else {
            return Ok(None);
        };
        let rules = self
            .get_policy(vm_id)
            .await?
            .map(|p| {
                p.rules
                    .iter()
                    .map(|r| (r.port.get(), r.protocol.as_str()))
                    .collect()
            })
            .unwrap_or_default();
        let state = Arc::new(DesiredState {
            generation,
            rules,
            grants,
        });
        watch.keep(epoch, state.clone());
        Ok(Some(state))
    }

    /// The server is stopping: every waiting poll is answered now, and new ones at once.
    pub fn release_polls(&self) {
        self.watchers.close();
    }

    /// Whether polls are answered at once because the server is stopping.
    pub fn polls_released(&self) -> bool {
        self.watchers.closed()
    }

    /// Forgets what is kept for VMs no agent polled in the last `idle_secs`.
    pub fn prune_watches(&self, idle_secs: u64) {
        self.watchers.prune(idle_secs);
    }

    /// Records an agent's report. A newly applied generation or a change of error is
    /// written to the activity log; a report that changes nothing writes nothing; a
    /// generation the server never issued is refused.
    ///
    /// A report without error of the VM's current generation puts every active request of
    /// the VM in force: each is marked enforced, once, and its open latency (from being
    /// stored to now) is answered for the metrics.
    pub async fn record_agent_report(
        &self,
        agent: &AgentRecord,
        generation: i64,
        error: &str,
        exposed_ports: &str,
        client_ip: &str,
    ) -> Result<ReportOutcome> {
        let unchanged = ReportOutcome::Recorded {
            open_latencies_ms: Vec::new(),
        };
        // Most reports repeat the last one: found out from what authentication read,
        // without waiting for the write lock.
        if agent.says_again(generation, error, exposed_ports, &agent.exposed_ports) {
            return Ok(unchanged);
        }
        let mut tx = self.begin_write().await?;
        let row = sqlx::query("SELECT generation, exposed_ports FROM vms WHERE id = $1")
            .bind(&agent.vm_id)
            .fetch_optional(&mut *tx.tx)
            .await?;
        let Some(row) = row else {
            return Ok(ReportOutcome::Refused);
        };
        let issued: i64 = row.try_get("generation")?;
        if generation > issued {
            return Ok(ReportOutcome::Refused);
        }
        let exposed_now: String = row.try_get("exposed_ports")?;
        if agent.says_again(generation, error, exposed_ports, &exposed_now) {
            return Ok(unchanged);
        }
        sqlx::query(
            "UPDATE vms SET agent_last_seen = $1, agent_applied_generation = $2, agent_error = $3, exposed_ports = $4 WHERE id = $5",
        )
        .bind(tx.now)
        .bind(generation)
        .bind(error)
        .bind(exposed_ports)
        .bind(&agent.vm_id)
        .execute(&mut *tx.tx)
        .await?;
        if generation != agent.applied_generation || error != agent.error {
            tx.log(NewLogEntry {
                actor: "agent".into(),
                client_ip: client_ip.to_owned(),
                action: "enforce".into(),
                vm: agent.vm_name.clone(),
                result: if error.is_empty() {
                    "success".into()
                } else {
                    "failed".into()
                },
                detail: if error.is_empty() {
                    format!("generation {generation} applied")
                } else {
                    error.chars().take(500).collect()
                },
                ..Default::default()
            })
            .await?;
        }
        // Only the current generation is known to hold every active grant: a grant made
        // after an older generation was issued is not in it.
        let open_latencies_ms = if error.is_empty() && generation == issued {
            tx.mark_enforced(&agent.vm_id).await?
        } else {
            Vec::new()
        };
        tx.commit().await?;
        Ok(ReportOutcome::Recorded { open_latencies_ms })
    }

    /// The generation an agent last applied, the current one, and its last error, for the UI.
    pub async fn agent_progress(&self, vm_id: &str) -> Result<Option<(i64, i64, String)>> {
        let row = sqlx::query(
            "SELECT agent_applied_generation, generation, agent_error FROM vms WHERE id = $1",
        )
        .bind(vm_id)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| {
            Ok((
                r.try_get("agent_applied_generation")?,
                r.try_get("generation")?,
                r.try_get("agent_error")?,
            ))
        })
        .transpose()
    }
}
