//! The agent protocol, version 1 (documented in docs/agent-protocol.md):
//! `POST /agent/v1/enroll`, `GET /agent/v1/state?after=N`, `POST /agent/v1/report`.
//! Agents authenticate with `Authorization: Bearer AGENT_ID.SECRET`; an agent reads and
//! reports only its own VM.

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use portcullis_app::domain::jit::MANAGEMENT_PORTS;
use portcullis_app::domain::secret::{hash_secret, hashes_match};
use portcullis_app::state::{AppState, ClientIp};
use portcullis_app::store::{AgentHost, AgentRecord, ReportOutcome};
use serde::{Deserialize, Serialize};
use std::time::Duration;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnrollRequest {
    token: String,
    hostname: String,
    /// `linux` (default), `windows` or `other`: recorded when the agent registers its VM.
    #[serde(default)]
    os: Option<String>,
}

#[derive(Serialize)]
pub struct EnrollResponse {
    agent_id: String,
    secret: String,
    vm_id: String,
    vm_name: String,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct RuleDto {
    pub port: u16,
    pub protocol: String,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct GrantDto {
    pub source: String,
    pub port: u16,
    pub protocol: String,
    /// Milliseconds left at `server_time_ms`; agents use this, not their own clock.
    pub expires_in_ms: i64,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct StateDto {
    pub generation: i64,
    pub server_time_ms: i64,
    pub rules: Vec<RuleDto>,
    pub grants: Vec<GrantDto>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReportRequest {
    generation: i64,
    #[serde(default)]
    error: String,
    #[serde(default)]
    listening_ports: Vec<u16>,
}

#[derive(Deserialize)]
pub struct StateQuery {
    #[serde(default = "minus_one")]
    after: i64,
    /// Seconds to hold the request open when nothing changed (0–60, default 25).
    #[serde(default = "default_wait")]
    wait: u64,
}

fn minus_one() -> i64 {
    -1
}

fn default_wait() -> u64 {
    25
}

fn error(status: StatusCode, message: &str) -> Response {
    (status, Json(serde_json::json!({ "error": message }))).into_response()
}

fn internal(e: impl std::fmt::Display) -> Response {
    tracing::error!(error = %e, "agent API failure");
    error(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
}

fn random_secret() -> String {
    use base64::Engine;
    use rand::RngCore;
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

pub fn new_enrollment_token() -> String {
    random_secret()
}

pub async fn enroll(
    State(state): State<AppState>,
    Extension(ClientIp(ip)): Extension<ClientIp>,
    Json(req): Json<EnrollRequest>,
) -> Response {
    let hostname = req.hostname.trim();
    // A registered VM is named after its host, so host names follow the VM name rules.
    if hostname.is_empty()
        || hostname.len() > 64
        || !hostname
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-._".contains(c))
    {
        return error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "hostname: 1 to 64 letters, digits and - . _",
        );
    }
    let os = match portcullis_app::domain::jit::Os::parse(req.os.as_deref().unwrap_or("linux")) {
        Ok(os) => os,
        Err(e) => return error(StatusCode::UNPROCESSABLE_ENTITY, &format!("os: {e}")),
    };
    let secret = random_secret();
    let address = ip.to_string();
    let host = AgentHost {
        hostname,
        os: os.as_str(),
        address: &address,
    };
    match state
        .store
        .enroll_agent(&hash_secret(req.token.trim()), &hash_secret(&secret), &host)
        .await
    {
        Ok(Some((agent_id, vm_id, vm_name))) => {
            tracing::info!(%vm_name, %hostname, "agent enrolled");
            Json(EnrollResponse {
                agent_id,
                secret,
                vm_id,
                vm_name,
            })
            .into_response()
        }
        Ok(None) => error(
            StatusCode::UNAUTHORIZED,
            "the enrollment token is unknown, used or expired",
        ),
        Err(portcullis_app::store::StoreError::Duplicate) => error(
            StatusCode::CONFLICT,
            "a VM with this host name exists already: enroll with a token from that VM's page",
        ),
        Err(e) => internal(e),
    }
}

async fn authenticate(state: &AppState, headers: &HeaderMap) -> Result<AgentRecord, Response> {
    let refused = || {
        error(
            StatusCode::UNAUTHORIZED,
            "agent credentials required: Authorization: Bearer AGENT_ID.SECRET",
        )
    };
    let value = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(refused)?;
    let credentials = value.strip_prefix("Bearer ").ok_or_else(refused)?;
    let (id, secret) = credentials.split_once('.').ok_or_else(refused)?;
    let agent = state
        .store
        .agent(id)
        .await
        .map_err(internal)?
        .ok_or_else(refused)?;
    if agent.secret_hash.is_empty() || !hashes_match(&agent.secret_hash, &hash_secret(secret)) {
        return Err(refused());
    }
    Ok(agent)
}

/// The VM's full desired state, answered at once when its generation differs from
/// `after`, otherwise when it changes or after `wait` seconds.
pub async fn desired_state(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<StateQuery>,
) -> Response {
    // What a waiting poll holds is held ten thousand times over, so it holds little: the
    // request's headers (which keep hyper's whole read buffer alive) are let go before
    // the wait, and the steps that read the database run in boxes of their own, freed
    // once done, instead of sizing this future for the whole wait.
    // Only the VM's id is kept: the agent's record (its last error, up to 2,000
    // characters, among others) is not held through the wait.
    let vm_id = match Box::pin(authenticate(&state, &headers)).await {
        Ok(agent) => agent.vm_id,
        Err(r) => return r,
    };
    drop(headers);
    // One agent gets two polls at a time (its own, and the one it opens while the server
    // has not yet noticed the old connection is gone): an agent whose secret was taken
    // from a compromised host cannot use up the replica's waiting places of the others.
    let Some(_own) = POLLS.enter(&vm_id) else {
        return retry_later(
            StatusCode::TOO_MANY_REQUESTS,
            "this agent already has its polls waiting; retry when one has answered",
            "1",
        );
    };
    // A waiting poll holds a permit: a replica keeps only so many agents waiting, and
    // tells the others when to come back rather than running out of memory or sockets.
    let Ok(_waiting) = state.long_polls.clone().try_acquire_owned() else {
        return retry_later(
            StatusCode::SERVICE_UNAVAILABLE,
            "too many agents are waiting on this server; retry later",
            "5",
        );
    };
    let _counted = state.metrics.poll_waiting(&vm_id);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(q.wait.min(60));
    state.store.note_agent_contact(&vm_id);
    let watch = state.store.watch_vm(&vm_id);
    loop {
        // Listening before reading, so a change between the read and the wait is not lost.
        let changed = watch.changed();
        tokio::pin!(changed);
        changed.as_mut().enable();
        let desired = match Box::pin(state.store.agent_state(&watch)).await {
            Ok(Some(s)) => s,
            Ok(None) => return error(StatusCode::NOT_FOUND, "the VM was removed"),
            Err(e) => return internal(e),
        };
        if desired.generation != q.after
            || tokio::time::Instant::now() >= deadline
            || state.store.polls_released()
        {
            let now = state.store.now_ms();
            return Json(StateDto {
                generation: desired.generation,
                server_time_ms: now,
                rules: desired
                    .rules
                    .iter()
                    .map(|(port, protocol)| RuleDto {
                        port: *port,
                        protocol: (*protocol).to_owned(),
                    })
                    .collect(),
                // A grant whose end passed since the state was read is not sent: the
                // expiry job ends it (and moves the generation) within a second.
                grants: desired
                    .grants
                    .iter()
                    .filter(|g| g.expires_at > now)
                    .filter_map(|g| {
                        Some(GrantDto {
                            source: g.source.clone(),
                            port: u16::try_from(g.port).ok()?,
                            protocol: g.protocol.clone(),
                            expires_in_ms: g.expires_at - now,
                        })
                    })
                    .collect(),
            })
            .into_response();
        }
        tokio::select! {
            _ = changed => state.metrics.poll_woken(),
            _ = tokio::time::sleep_until(deadline) => {}
        }
    }
}

pub async fn report(
    State(state): State<AppState>,
    Extension(ClientIp(ip)): Extension<ClientIp>,
    headers: HeaderMap,
    Json(req): Json<ReportRequest>,
) -> Response {
    let agent = match authenticate(&state, &headers).await {
        Ok(a) => a,
        Err(r) => return r,
    };
    if !REPORTS.admit(&agent.vm_id) {
        return retry_later(
            StatusCode::TOO_MANY_REQUESTS,
            "one report per second per agent; send the latest outcome later",
            "1",
        );
    }
    let mut ports: Vec<u16> = req
        .listening_ports
        .into_iter()
        .filter(|p| MANAGEMENT_PORTS.contains(p))
        .collect();
    ports.sort_unstable();
    ports.dedup();
    let exposed = ports
        .iter()
        .map(u16::to_string)
        .collect::<Vec<_>>()
        .join(", ");
    let error_text: String = req.error.chars().take(2000).collect();
    state.store.note_agent_contact(&agent.vm_id);
    match state
        .store
        .record_agent_report(
            &agent,
            req.generation,
            &error_text,
            &exposed,
            &ip.to_string(),
        )
        .await
    {
        Ok(ReportOutcome::Recorded { open_latencies_ms }) => {
            for ms in open_latencies_ms {
                state.metrics.observe_open_latency_ms(ms);
            }
            StatusCode::NO_CONTENT.into_response()
        }
        Ok(ReportOutcome::Refused) => error(
            StatusCode::UNPROCESSABLE_ENTITY,
            &format!(
                "generation {} was never issued to this agent",
                req.generation
            ),
        ),
        Err(e) => internal(e),
    }
}

/// An answer that says when to come back (`Retry-After`, in seconds).
fn retry_later(status: StatusCode, message: &str, after_secs: &'static str) -> Response {
    let mut res = error(status, message);
    res.headers_mut().insert(
        header::RETRY_AFTER,
        axum::http::HeaderValue::from_static(after_secs),
    );
    res
}

/// Polls in progress per agent. Kept in memory, per replica.
struct PollGate {
    in_progress: std::sync::Mutex<std::collections::HashMap<String, usize>>,
}

/// A poll's place among its agent's: given back when the poll answers or is dropped.
struct PollSlot {
    vm_id: String,
}

static POLLS: std::sync::LazyLock<PollGate> = std::sync::LazyLock::new(|| PollGate {
    in_progress: Default::default(),
});

impl PollGate {
    const PER_AGENT: usize = 2;

    fn lock(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<String, usize>> {
        self.in_progress.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn enter(&self, vm_id: &str) -> Option<PollSlot> {
        let mut in_progress = self.lock();
        let n = in_progress.entry(vm_id.to_owned()).or_insert(0);
        if *n >= Self::PER_AGENT {
            return None;
        }
        *n += 1;
        Some(PollSlot {
            vm_id: vm_id.to_owned(),
        })
    }
}

impl Drop for PollSlot {
    fn drop(&mut self) {
        let mut in_progress = POLLS.lock();
        if let Some(n) = in_progress.get_mut(&self.vm_id) {
            *n -= 1;
            if *n == 0 {
                in_progress.remove(&self.vm_id);
            }
        }
    }
}

/// Something an agent may do at most once per `every`; kept in memory, per replica.
struct OncePer {
    every: Duration,
    last: std::sync::Mutex<std::collections::HashMap<String, std::time::Instant>>,
}

impl OncePer {
    fn new(every: Duration) -> Self {
        Self {
            every,
            last: Default::default(),
        }
    }

    /// Whether this agent may now, and if so noted.
    fn admit(&self, vm_id: &str) -> bool {
        let now = std::time::Instant::now();
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        if last.len() > 100_000 {
            last.retain(|_, at| now.duration_since(*at) < self.every);
        }
        match last.get(vm_id) {
            Some(at) if now.duration_since(*at) < self.every => false,
            _ => {
                last.insert(vm_id.to_owned(), now);
                true
            }
        }
    }
}

/// Reports per agent, at most one a second: a broken or hostile agent cannot make the
/// server write (or log) faster than that.
static REPORTS: std::sync::LazyLock<OncePer> =
    std::sync::LazyLock::new(|| OncePer::new(Duration::from_secs(1)));
