//! Shared by the store and service suites: a fresh database per test (SQLite, or
//! PostgreSQL when `PORTCULLIS_TEST_POSTGRES` names a server) on a clock the test moves,
//! so that expiry and time-outs are tested without sleeping; users as the services see
//! them (actors with their roles); VMs and policies made the way the portal makes them.
#![allow(dead_code)]

use portcullis_app::domain::jit::PortRuleInput;
use portcullis_app::domain::secret::hash_secret;
use portcullis_app::domain::vm::VmSpec;
use portcullis_app::domain::{Role, RoleAssignment, Scope};
use portcullis_app::services::enrollment::{self, EnrollTarget};
use portcullis_app::services::{Actor, jit, requests};
use portcullis_app::store::test_support::fresh_database_url;
use portcullis_app::store::{Clock, NewLogEntry, NewUser, Store, StoredVm};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

/// A clock that moves only when the test moves it.
#[derive(Debug)]
pub struct ManualClock(AtomicI64);

impl Clock for ManualClock {
    fn now_ms(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}

impl ManualClock {
    pub fn advance_secs(&self, secs: i64) {
        self.0.fetch_add(secs * 1000, Ordering::SeqCst);
    }

    pub fn advance_ms(&self, ms: i64) {
        self.0.fetch_add(ms, Ordering::SeqCst);
    }

    pub fn now(&self) -> i64 {
        self.now_ms()
    }
}

pub struct World {
    pub store: Store,
    pub clock: Arc<ManualClock>,
    pub url: String,
    /// The activity log's key, shared by replicas.
    pub key: portcullis_app::domain::audit::AuditKey,
    _dir: tempfile::TempDir,
}

pub const IP: &str = "198.51.100.9";

/// A fresh database whose clock starts at a fixed whole second (2027-01-15 08:00 UTC).
pub async fn world() -> World {
    let dir = tempfile::tempdir().unwrap();
    let url = fresh_database_url(dir.path(), "world").await.unwrap();
    let clock = Arc::new(ManualClock(AtomicI64::new(1_800_000_000_000)));
    let key = portcullis_app::domain::audit::AuditKey::new(vec![42; 32]).unwrap();
    let store = Store::connect_with(&url, clock.clone(), key.clone())
        .await
        .unwrap();
    World {
        store,
        clock,
        url,
        key,
        _dir: dir,
    }
}

pub fn log(action: &str) -> NewLogEntry {
    NewLogEntry {
        actor: "test".into(),
        action: action.into(),
        result: "success".into(),
        ..Default::default()
    }
}

/// A policy row: one TCP port, "per request" sources, 60 minutes at most.
pub fn rule(port: &str) -> PortRuleInput {
    PortRuleInput {
        enabled: Some("on".into()),
        port: port.into(),
        protocol: "tcp".into(),
        max_minutes: "60".into(),
        ..Default::default()
    }
}

pub fn with_approval(mut r: PortRuleInput) -> PortRuleInput {
    r.approval_required = Some("on".into());
    r
}

impl World {
    /// Another replica on the same database and clock.
    pub async fn replica(&self) -> Store {
        Store::connect_with(&self.url, self.clock.clone(), self.key.clone())
            .await
            .unwrap()
    }

    /// A user with these roles, as the services see them now.
    pub async fn user(&self, name: &str, roles: &[(Role, Scope)]) -> Actor {
        let roles: Vec<RoleAssignment> = roles
            .iter()
            .map(|(role, scope)| RoleAssignment {
                role: *role,
                scope: scope.clone(),
            })
            .collect();
        let user = self
            .store
            .create_user(
                &NewUser {
                    username: name,
                    display_name: name,
                    password_hash: Some("$argon2id$x"),
                    must_change_password: false,
                },
                &roles,
                None,
            )
            .await
            .unwrap();
        self.actor(&user.id).await
    }

    /// The user as the services see them now (their roles read again).
    pub async fn actor(&self, user_id: &str) -> Actor {
        let user = self.store.get_user(user_id).await.unwrap().unwrap();
        Actor {
            roles: portcullis_app::services::sso::effective_roles(&self.store, user_id)
                .await
                .unwrap(),
            user_id: user.id,
            username: user.username,
            ip: IP.parse().unwrap(),
        }
    }

    pub async fn admin(&self) -> Actor {
        self.user("root", &[(Role::Admin, Scope::All)]).await
    }

    pub async fn vm(&self, admin: &Actor, name: &str, group: &str) -> StoredVm {
        let spec = VmSpec::parse(name, group, "198.51.100.5", "linux", "").unwrap();
        let id = jit::create_vm(&self.store, admin, spec).await.unwrap();
        self.store.get_vm(&id).await.unwrap().unwrap()
    }

    /// Puts the VM under this policy, as the configuration form does.
    pub async fn policy(&self, admin: &Actor, vm: &StoredVm, rows: &[PortRuleInput]) {
        jit::enable_jit(
            &self.store,
            admin,
            std::slice::from_ref(&vm.id),
            rows,
            false,
        )
        .await
        .unwrap();
    }

    /// Requests TCP `port` of `vm` from `source` for `minutes`; returns the request id.
    pub async fn request(
        &self,
        who: &Actor,
        vm: &StoredVm,
        port: &str,
        source: &str,
        minutes: &str,
    ) -> Result<String, portcullis_app::error::AppError> {
        self.request_from(who, vm, port, source, minutes, "").await
    }

    /// A request for a window that starts at `start` (as the form or the API gives it;
    /// empty for now).
    pub async fn request_from(
        &self,
        who: &Actor,
        vm: &StoredVm,
        port: &str,
        source: &str,
        minutes: &str,
        start: &str,
    ) -> Result<String, portcullis_app::error::AppError> {
        let key = format!("{}:{port}/tcp", vm.id);
        requests::request_access(
            &self.store,
            who,
            requests::AccessForm {
                ports: &[key],
                vm_ids: std::slice::from_ref(&vm.id),
                source_mode: "custom",
                custom_source: source,
                duration_minutes: minutes,
                justification: "maintenance",
                start,
            },
        )
        .await
        .map(|mut ids| ids.remove(0))
    }

    /// The grants in force on a VM now: (source, port, expires_at).
    pub async fn grants(&self, vm: &StoredVm) -> Vec<(String, i64, i64)> {
        self.store
            .desired_state(&vm.id, self.clock.now())
            .await
            .unwrap()
            .unwrap()
            .1
            .into_iter()
            .map(|g| (g.source, g.port, g.expires_at))
            .collect()
    }

    pub async fn generation(&self, vm: &StoredVm) -> i64 {
        self.store
            .desired_state(&vm.id, self.clock.now())
            .await
            .unwrap()
            .unwrap()
            .0
    }

    /// The id of an agent enrolled with a token for `target`, from a host named `hostname`,
    /// as an agent's first contact enrols it.
    pub async fn enrolled(
        &self,
        admin: &Actor,
        target: EnrollTarget<'_>,
        hostname: &str,
    ) -> String {
        let e = enrollment::create(&self.store, admin, target, "https://jit.example.com")
            .await
            .unwrap();
        let (agent_id, _, _) = self
            .store
            .enroll_agent(
                &hash_secret(&e.token),
                &hash_secret("agent-secret"),
                &portcullis_app::store::AgentHost {
                    hostname,
                    os: "linux",
                    address: "198.51.100.5",
                },
            )
            .await
            .unwrap()
            .expect("the token enrolls");
        agent_id
    }

    /// Agent `agent_id`'s report on `vm` at its current generation: its error (empty when
    /// none) and the management ports it sees listening.
    pub async fn report(
        &self,
        agent_id: &str,
        vm: &StoredVm,
        error: &str,
        exposed: &str,
    ) -> portcullis_app::store::ReportOutcome {
        let generation = self.generation(vm).await;
        let agent = self.store.agent(agent_id).await.unwrap().unwrap();
        self.store
            .record_agent_report(&agent, generation, error, exposed, "198.51.100.5")
            .await
            .unwrap()
    }

    pub async fn request_row(&self, id: &str) -> portcullis_app::store::StoredRequest {
        self.store.get_request(id).await.unwrap().unwrap()
    }

    /// Entries of the activity log with this action, oldest first.
    pub async fn logged(&self, action: &str) -> Vec<portcullis_app::store::LogEntry> {
        let (mut entries, _) = self
            .store
            .query_log(&portcullis_app::store::LogQuery {
                action: Some(action.into()),
                limit: 1000,
                ..Default::default()
            })
            .await
            .unwrap();
        entries.reverse();
        entries
    }
}
