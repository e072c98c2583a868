//! Prometheus metrics: what operators watch to know the portal is healthy and access opens
//! quickly. Counters and the latency histogram are bumped where things happen (the HTTP
//! layer, sign-in, the agent API); grants, approvals, agents, the activity log and the
//! connection pools are read when Prometheus scrapes, so they are right on every replica
//! without any bookkeeping.
//!
//! One [`Metrics`] belongs to one portal (its `AppState`), not to the process: several
//! portals in one process (the tests) keep numbers of their own. The text is the classic
//! Prometheus format (0.0.4), which Prometheus reads and `promtool check metrics` lints.
//!
//! A scrape never fails and never holds up users: the counts come in one statement on the
//! store's reports pool, bounded in time; when they cannot be read the previous values are
//! shown and `portcullis_metrics_scrape_errors_total` counts the miss.

use crate::services::activity::Anchor;
use crate::store::Store;
use prometheus::{
    Gauge, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The media type of [`Metrics::render`]'s text.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The longest a scrape waits for the database; Prometheus' own default timeout is 10 s.
const SCRAPE_DB_TIMEOUT: Duration = Duration::from_secs(3);

/// How a refused sign-in was attempted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignInMethod {
    /// User name and password.
    Local,
    /// Single sign-on through an OpenID Connect provider that did not end signed in.
    Oidc,
}

impl SignInMethod {
    fn label(self) -> &'static str {
        match self {
            SignInMethod::Local => "local",
            SignInMethod::Oidc => "oidc",
        }
    }
}

pub struct Metrics {
    registry: Registry,
    http_requests: IntCounterVec,
    sign_in_failures: IntCounterVec,
    open_latency: Histogram,
    long_polls: IntGauge,
    poll_wakeups: IntCounter,
    agents_connected: IntGauge,
    /// Long polls waiting per VM, for the number of distinct agents connected.
    waiting: Mutex<HashMap<String, usize>>,
    active_grants: IntGauge,
    pending_approvals: IntGauge,
    agents_enrolled: IntGauge,
    agents_silent: IntGauge,
    notifications_pending: IntGauge,
    notifications_failed: IntGauge,
    log_newest: IntGauge,
    log_verified: IntGauge,
    log_intact: IntGauge,
    pool_max: IntGaugeVec,
    pool_connections: IntGaugeVec,
    write_units: IntCounter,
    write_commits: IntCounter,
    writes_waiting: IntGauge,
    scrape_errors: IntCounter,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// Registers one collector; the names are fixed here, so a failure is a programming error
/// that every test would show.
fn registered<C: prometheus::core::Collector + Clone + 'static>(r: &Registry, c: C) -> C {
    r.register(Box::new(c.clone()))
        .expect("metric names are unique and valid");
    c
}

fn int_gauge(r: &Registry, name: &str, help: &str) -> IntGauge {
    registered(r, IntGauge::new(name, help).expect("valid metric"))
}

fn int_gauge_vec(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    registered(
        r,
        IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric"),
    )
}

impl Metrics {
    pub fn new() -> Self {
        let r = Registry::new();
        let http_requests = registered(
            &r,
            IntCounterVec::new(
                Opts::new(
                    "portcullis_http_requests_total",
                    "HTTP requests answered, by route group (page, server_fn, rest, agent, \
                     auth, static, health, metrics) and status code.",
                ),
                &["group", "code"],
            )
            .expect("valid metric"),
        );
        let sign_in_failures = registered(
            &r,
            IntCounterVec::new(
                Opts::new(
                    "portcullis_sign_in_failures_total",
                    "Refused sign-ins, by method: local (wrong or unknown credentials, \
                     disabled, locked out) and oidc (a single sign-on that did not end signed in).",
                ),
                &["method"],
            )
            .expect("valid metric"),
        );
        for method in [SignInMethod::Local, SignInMethod::Oidc] {
            // Present from the start at 0, so that rate() sees the first failure.
            sign_in_failures.with_label_values(&[method.label()]);
        }
        let open_latency = registered(
            &r,
            Histogram::with_opts(
                HistogramOpts::new(
                    "portcullis_open_latency_seconds",
                    "Time from an access request being stored to the VM's agent reporting a \
                     generation that holds its grants (includes any wait for approval).",
                )
                .buckets(vec![
                    0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0,
                ]),
            )
            .expect("valid metric"),
        );
        let long_polls = int_gauge(
            &r,
            "portcullis_long_polls_in_flight",
            "Agents' long polls waiting on this replica now.",
        );
        let poll_wakeups = registered(
            &r,
            IntCounter::new(
                "portcullis_long_poll_wakeups_total",
                "Waiting long polls woken by a change of their VM's desired state.",
            )
            .expect("valid metric"),
        );
        let agents_connected = int_gauge(
            &r,
            "portcullis_agents_connected",
            "Agents with a long poll waiting on this replica now.",
        );
        let active_grants = int_gauge(
            &r,
            "portcullis_active_grants",
            "Grants in force now (request ports active and not yet ended), all VMs.",
        );
        let pending_approvals = int_gauge(
            &r,
            "portcullis_pending_approvals",
            "Access requests waiting for an approver.",
        );
        let agents_enrolled = int_gauge(
            &r,
            "portcullis_agents_enrolled",
            "VMs with an enrolled agent.",
        );
        let agents_silent = int_gauge(
            &r,
            "portcullis_agents_silent",
            "Enrolled agents not heard from for over 90 seconds (shown as silent in the portal).",
        );
        let notifications_pending = int_gauge(
            &r,
            "portcullis_notifications_pending",
            "Notifications waiting in the outbox to be sent (or retried).",
        );
        let notifications_failed = int_gauge(
            &r,
            "portcullis_notifications_failed",
            "Notifications given up in the last 24 hours (see the Notifications page).",
        );
        let log_newest = int_gauge(
            &r,
            "portcullis_activity_log_newest_position",
            "Sequence number of the newest activity log entry.",
        );
        let log_verified = int_gauge(
            &r,
            "portcullis_activity_log_verified_position",
            "Newest activity log position verified by this replica (its anchor, kept outside \
             the database).",
        );
        let log_intact = int_gauge(
            &r,
            "portcullis_activity_log_intact",
            "1 if the latest verification found the activity log intact, 0 if it found \
             tampering, -1 before the first verification.",
        );
        let pool_max = int_gauge_vec(
            &r,
            "portcullis_db_pool_max_connections",
            "Most database connections a pool opens (main: every request; reports: log \
             pages, exports, verification, scrapes).",
            &["pool"],
        );
        let pool_connections = int_gauge_vec(
            &r,
            "portcullis_db_pool_connections",
            "Open database connections of a pool, by state (idle, in_use).",
            &["pool", "state"],
        );
        let write_units = registered(
            &r,
            IntCounter::new(
                "portcullis_write_transactions_total",
                "Write transactions committed by this server.",
            )
            .expect("valid metric"),
        );
        let write_commits = registered(
            &r,
            IntCounter::new(
                "portcullis_write_commits_total",
                "Database commits of this server's write transactions (fewer when writers \
                 queued behind each other shared one).",
            )
            .expect("valid metric"),
        );
        let writes_waiting = int_gauge(
            &r,
            "portcullis_write_transactions_waiting",
            "Write transactions waiting for their turn at scrape time.",
        );
        let scrape_errors = registered(
            &r,
            IntCounter::new(
                "portcullis_metrics_scrape_errors_total",
                "Scrapes that could not read the database counts (previous values were shown).",
            )
            .expect("valid metric"),
        );
        let start = registered(
            &r,
            Gauge::new(
                "portcullis_start_time_seconds",
                "When this server process started, in seconds since the Unix epoch.",
            )
            .expect("valid metric"),
        );
        start.set(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0.0, |d| d.as_secs_f64()),
        );
        int_gauge_vec(
            &r,
            "portcullis_build_info",
            "Always 1; the labels tell the version of this server.",
            &["version"],
        )
        .with_label_values(&[env!("CARGO_PKG_VERSION")])
        .set(1);
        log_intact.set(-1);
        Metrics {
            registry: r,
            http_requests,
            sign_in_failures,
            open_latency,
            long_polls,
            poll_wakeups,
            agents_connected,
            waiting: Mutex::new(HashMap::new()),
            active_grants,
            pending_approvals,
            agents_enrolled,
            agents_silent,
            notifications_pending,
            notifications_failed,
            log_newest,
            log_verified,
            log_intact,
            pool_max,
            pool_connections,
            write_units,
            write_commits,
            writes_waiting,
            scrape_errors,
        }
    }

    /// Counts one answered request. `group` is one of a fixed set of route groups, never a
    /// path: paths would give Prometheus a series per VM id and per mistyped URL.
    pub fn count_request(&self, group: &'static str, status: u16) {
        self.http_requests
            .with_label_values(&[group, &status.to_string()])
            .inc();
    }

    pub fn sign_in_failed(&self, method: SignInMethod) {
        self.sign_in_failures
            .with_label_values(&[method.label()])
            .inc();
    }

    /// One request put in force `ms` milliseconds after it was stored.
    pub fn observe_open_latency_ms(&self, ms: i64) {
        self.open_latency.observe(ms.max(0) as f64 / 1000.0);
    }

    /// Counts a long poll of `vm_id`'s agent as waiting until the guard is dropped.
    pub fn poll_waiting(self: &Arc<Self>, vm_id: &str) -> WaitingPoll {
        let mut waiting = self.waiting.lock().unwrap_or_else(|p| p.into_inner());
        *waiting.entry(vm_id.to_owned()).or_insert(0) += 1;
        self.long_polls.inc();
        self.agents_connected.set(waiting.len() as i64);
        WaitingPoll {
            metrics: self.clone(),
            vm_id: vm_id.to_owned(),
        }
    }

    /// A waiting long poll was woken by a change of its VM.
    pub fn poll_woken(&self) {
        self.poll_wakeups.inc();
    }

    /// The metrics as Prometheus text: the counters as they are, the rest read now.
    pub async fn render(&self, store: &Store, anchor: &Anchor) -> String {
        let silent_before = store.now_ms() - crate::api::jit::views::SILENT_AFTER_MS;
        match tokio::time::timeout(SCRAPE_DB_TIMEOUT, store.scrape_counts(silent_before)).await {
            Ok(Ok(c)) => {
                self.active_grants.set(c.active_grants);
                self.pending_approvals.set(c.pending_approvals);
                self.agents_enrolled.set(c.agents_enrolled);
                self.agents_silent.set(c.agents_silent);
                self.notifications_pending.set(c.notifications_pending);
                self.notifications_failed.set(c.notifications_failed);
                self.log_newest.set(c.log_newest_seq);
                self.log_intact.set(match c.log_intact {
                    Some(true) => 1,
                    Some(false) => 0,
                    None => -1,
                });
            }
            Ok(Err(e)) => {
                self.scrape_errors.inc();
                tracing::warn!(error = %e, "metrics: reading the counts failed; previous values shown");
            }
            Err(_) => {
                self.scrape_errors.inc();
                tracing::warn!("metrics: reading the counts timed out; previous values shown");
            }
        }
        self.log_verified
            .set(anchor.known().map_or(0, |checkpoint| checkpoint.seq));
        for p in store.pool_use() {
            self.pool_max
                .with_label_values(&[p.pool])
                .set(i64::from(p.max));
            let idle = p.idle.min(p.open);
            self.pool_connections
                .with_label_values(&[p.pool, "idle"])
                .set(i64::from(idle));
            self.pool_connections
                .with_label_values(&[p.pool, "in_use"])
                .set(i64::from(p.open - idle));
        }
        let writes = store.write_counts();
        self.write_units
            .inc_by(writes.units.saturating_sub(self.write_units.get()));
        self.write_commits
            .inc_by(writes.commits.saturating_sub(self.write_commits.get()));
        self.writes_waiting
            .set(i64::try_from(store.writers_waiting()).unwrap_or(i64::MAX));
        let mut text = String::new();
        if let Err(e) = TextEncoder::new().encode_utf8(&self.registry.gather(), &mut text) {
            // Only a metric the code above built wrongly can fail to encode.
            tracing::error!(error = %e, "metrics: encoding failed");
        }
        text
    }
}

/// A long poll counted as waiting; uncounted when dropped (answered or abandoned).
pub struct WaitingPoll {
    metrics: Arc<Metrics>,
    vm_id: String,
}

impl Drop for WaitingPoll {
    fn drop(&mut self) {
        let mut waiting = self
            .metrics
            .waiting
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(n) = waiting.get_mut(&self.vm_id) {
            *n -= 1;
            if *n == 0 {
                waiting.remove(&self.vm_id);
            }
        }
        self.metrics.long_polls.dec();
        self.metrics.agents_connected.set(waiting.len() as i64);
    }
}
