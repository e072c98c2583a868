//! The store remembers: every SQL statement of Portcullis lives below this module.
//!
//! One `sqlx::AnyPool` serves both backends; the backend is chosen at run time by the
//! database URL (`sqlite:` or `postgres:`). Queries are written once in portable SQL
//! (`$n` placeholders, application-generated ids, UTC epoch milliseconds, 0/1 flags) so
//! that adding a backend needs migrations, not new queries.
//!
//! Several server replicas may share one PostgreSQL database. Two things then cross
//! process boundaries: the order of writes (every write transaction takes one
//! transaction-scoped advisory lock, so the activity log stays one chain and
//! check-then-write services see each other's commits) and the news that a VM's desired
//! state changed (`pg_notify` in the writing transaction, delivered at commit to a
//! listener in every replica, which wakes the agents long-polling there).

mod access;
mod agents;
mod audit;
mod identities;
mod jit;
mod metrics;
mod notify;
mod overview;
mod requests;
mod sessions;
#[doc(hidden)]
pub mod test_support;
mod tokens;
mod users;
mod watch;
mod writers;

pub use access::{Ending, GrantFilter, OpenGrant, RoleInputs, WaitingFilter, WaitingRequest};
pub use agents::{AgentHost, AgentRecord, ReportOutcome};
pub use audit::{
    AuditStatus, BATCH, LogEntry, LogName, LogQuery, LogSuggestions, MAX_ACTIONS, NewLogEntry,
    Verification, audit_max_page, prefix_range,
};
pub use identities::{FederatedProfile, StoredGroupRule, StoredIdentity};
pub use jit::{SearchPlan, StoredVm, TabCounts, VmFields, VmListQuery, VmSummary, VmTab};
pub use metrics::{PoolUse, ScrapeCounts};
pub use notify::{
    AgentNews, Attempt, EndingSoon, MailRecipient, MailSettings, OutboxRow, StoredChannel,
    StoredRoute,
};
pub use overview::{Denial, SetupProgress};
pub use requests::{Grant, RequestFilter, StoredRequest, StoredRequestPort};
pub use sessions::SessionStoreAdapter;
pub use tokens::{NewApiToken, StoredApiToken, TokenCreation};
pub use users::{NewUser, RemoveOutcome, StoredAssignment, StoredUser};
pub use watch::{DesiredState, VmWatch};
pub use writers::WriteCounts;

use sqlx::any::{AnyPoolOptions, install_default_drivers};
use sqlx::{AnyPool, Executor};
use std::time::Duration;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("migration failed: {0}")]
    Migration(#[from] sqlx::migrate::MigrateError),
    #[error("unsupported database URL (use sqlite: or postgres:)")]
    UnsupportedUrl,
    #[error("already exists")]
    Duplicate,
    #[error("corrupt row: {0}")]
    Corrupt(String),
    /// The commit shared with other writers failed (see `writers`); the cause was logged
    /// where it happened.
    #[error("the shared commit failed: {0}")]
    SharedCommit(String),
}

impl StoreError {
    /// Unique-constraint violations become `Duplicate` so services can answer "already
    /// exists" instead of a generic failure.
    fn from_write(error: sqlx::Error) -> Self {
        match &error {
            sqlx::Error::Database(db) if db.is_unique_violation() => StoreError::Duplicate,
            _ => StoreError::Database(error),
        }
    }
}

pub type Result<T> = std::result::Result<T, StoreError>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Held by the replica running the periodic cleanup, so that it runs once at a time.
const CLEANUP_LOCK_KEY: i64 = 0x706f_7274_6375_6c02;
/// The notification channel carrying ids of VMs whose desired state changed.
const CHANGES_CHANNEL: &str = "portcullis_vm_changes";
/// Between the VM ids of one change notification (ids never contain it).
const CHANGES_SEPARATOR: char = ' ';
/// The longest change notification: PostgreSQL refuses payloads of 8,000 bytes or more.
const CHANGES_PAYLOAD_MAX: usize = 7_000;

/// The notifications that announce `vms`, each naming as many as fit.
fn change_payloads(vms: &[String]) -> Vec<String> {
    let mut payloads: Vec<String> = Vec::new();
    for vm in vms {
        match payloads.last_mut() {
            Some(last) if last.len() + 1 + vm.len() <= CHANGES_PAYLOAD_MAX => {
                last.push(CHANGES_SEPARATOR);
                last.push_str(vm);
            }
            _ => payloads.push(vm.clone()),
        }
    }
    payloads
}

/// Sent on the change channel when notifications may have been missed (the listener
/// reconnected): every waiting agent re-reads its state.
pub const ALL_VMS: &str = "*";
/// The most rows one statement names (an `IN` list, a multi-row insert): well under
/// every backend's limit of bound parameters per statement, even at 14 a row.
pub(crate) const ROWS_PER_STATEMENT: usize = 500;

/// `$first, $first+1, ...`: `n` placeholders for an IN list.
pub(crate) fn placeholders(first: usize, n: usize) -> String {
    (first..first + n)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Whether every one of `names`, triggers on `vms`, is there and enabled for the server's
/// own sessions. PostgreSQL can disable a trigger (`ALTER TABLE … DISABLE TRIGGER`, or
/// enable it for replication sessions only); SQLite cannot, but a rebuild of the table
/// drops them.
async fn vms_triggers_enabled(pool: &AnyPool, backend: Backend, names: &[&str]) -> Result<bool> {
    let list = placeholders(1, names.len());
    let sql = match backend {
        Backend::Sqlite => format!(
            "SELECT COUNT(*) FROM sqlite_master WHERE type = 'trigger' AND tbl_name = 'vms' \
             AND name IN ({list})"
        ),
        Backend::Postgres => format!(
            "SELECT COUNT(*) FROM pg_trigger WHERE tgrelid = 'vms'::regclass \
             AND NOT tgisinternal AND tgenabled IN ('O', 'A') AND tgname IN ({list})"
        ),
    };
    let mut query = sqlx::query_scalar::<_, i64>(&sql);
    for name in names {
        query = query.bind(*name);
    }
    Ok(query.fetch_one(pool).await? == names.len() as i64)
}

/// Where the store, and everything that decides by time, reads the time: the system
/// clock in the product, a clock the test moves in tests, so that expiry and time-outs
/// are tested without sleeping.
pub trait Clock: Send + Sync + std::fmt::Debug {
    /// UTC milliseconds since the epoch.
    fn now_ms(&self) -> i64;
}

#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        chrono::Utc::now().timestamp_millis()
    }
}

#[derive(Clone, Debug)]
pub struct Store {
    pool: AnyPool,
    /// A small pool of its own for reads that may be long (the activity log's pages and
    /// exports, full verification): however many such readers come, they never take the
    /// connections that sign-ins, requests, agent polls and the expiry job need.
    reports: AnyPool,
    backend: Backend,
    clock: std::sync::Arc<dyn Clock>,
    /// The activity log's HMAC key (kept outside the database).
    audit_key: std::sync::Arc<crate::domain::audit::AuditKey>,
    /// Write transactions, one at a time, on connections of their own: a writer never
    /// waits for a connection behind the readers (agent polls, pages), and the readers
    /// never wait behind writers queued for their turn. SQLite allows one writer (a write
    /// transaction that read before another wrote would fail on a stale snapshot);
    /// serialising writers in-process avoids that and keeps the activity log one chain.
    /// On PostgreSQL the advisory lock orders writers across replicas; the turn here keeps
    /// a replica's own writers queued without each holding a connection while it waits.
    /// Writers queued behind each other share a commit (see `writers`).
    writers: std::sync::Arc<writers::Writers>,
    /// Told the id of every VM whose desired state a committed transaction changed;
    /// long-polling agents wait there for their own VM.
    watchers: std::sync::Arc<watch::Watchers>,
    /// When each agent was last heard from, by VM id, not yet written: a poll costs no
    /// write; [`Store::flush_agent_contacts`] writes them in batches.
    contacts: std::sync::Arc<std::sync::Mutex<std::collections::HashMap<String, i64>>>,
    /// Activity-log exports running at once: they read on the reports pool too.
    exports: std::sync::Arc<tokio::sync::Semaphore>,
    /// Told when a committed transaction put messages in the outbox: the delivery job
    /// sends them at once instead of at its next look.
    outbox: std::sync::Arc<tokio::sync::Notify>,
    /// SQLite only: the JIT search's FTS5 index (migration 0022) is there with the
    /// triggers that keep it, so a search may read it (see `Store::narrow_search`).
    search_index: bool,
    /// The tab counts per resource group (migration 0023) are there with the triggers
    /// that keep them, so the JIT tabs' titles may read them (see `Store::list_vms`).
    tab_counts: bool,
    /// How many matches make a JIT search change its plan (fixed in the product; tests
    /// lower them to take every plan with a few VMs).
    search_plan: SearchPlan,
}

/// A write transaction holding the store's write lock until it ends: the in-process
/// turn, and SQLite's lock or PostgreSQL's advisory lock. It may share its database
/// transaction with the writers queued before and after it (see `writers`): it still runs
/// alone and after every earlier write, and `commit` returns once its work is durable.
/// Dropped without `commit`, its work is undone.
pub struct WriteTx {
    pub(crate) tx: UnitTx,
    /// The time of this transaction: every row and log entry it writes carries it.
    pub(crate) now: i64,
    pub(crate) audit_key: std::sync::Arc<crate::domain::audit::AuditKey>,
    turn: Option<writers::Turn>,
    backend: Backend,
    pub(crate) changed_vms: Vec<String>,
    /// The activity log's last position and hash, once read or written here: a writer
    /// appending several entries, or following another in its group, reads them once.
    pub(crate) log_tail: Option<(i64, String)>,
    /// Set by [`WriteTx::enqueue`]: the delivery job is woken at commit.
    messages_queued: bool,
}

/// A writer's transaction: the statements of the store's write methods run on it.
pub(crate) struct UnitTx(Option<sqlx::Transaction<'static, sqlx::Any>>);

impl std::ops::Deref for UnitTx {
    type Target = sqlx::AnyConnection;
    fn deref(&self) -> &Self::Target {
        self.0
            .as_ref()
            .expect("a writer's transaction is there until it ends")
    }
}

impl std::ops::DerefMut for UnitTx {
    fn deref_mut(&mut self) -> &mut Self::Target {
        self.0
            .as_mut()
            .expect("a writer's transaction is there until it ends")
    }
}

impl WriteTx {
    /// The VM's agents are told at commit that its desired state changed (once per
    /// transaction, however many changes it made).
    pub(crate) fn announce(&mut self, vm_id: &str) {
        if !self.changed_vms.iter().any(|v| v == vm_id) {
            self.changed_vms.push(vm_id.to_owned());
        }
    }

    pub async fn commit(mut self) -> Result<()> {
        if self.backend == Backend::Postgres {
            // Delivered at commit, to every replica's listener (this one's included),
            // and never for a transaction that rolls back (a savepoint's included).
            // Several VMs to a notification: the expiry job changes hundreds at a time.
            for payload in change_payloads(&self.changed_vms) {
                sqlx::query("SELECT pg_notify($1, $2)")
                    .bind(CHANGES_CHANNEL)
                    .bind(payload)
                    .execute(&mut *self.tx)
                    .await?;
            }
        }
        let tx = self.tx.0.take().expect("a writer commits once");
        let turn = self.turn.take().expect("a writer commits once");
        turn.end(
            tx,
            writers::Ending {
                changed_vms: std::mem::take(&mut self.changed_vms),
                messages_queued: self.messages_queued,
                log_tail: self.log_tail.take(),
            },
        )
        .await
    }
}

impl Drop for WriteTx {
    fn drop(&mut self) {
        if let (Some(tx), Some(turn)) = (self.tx.0.take(), self.turn.as_mut()) {
            turn.abandon(tx);
        }
    }
}

/// The backend a database URL names, and the URL to connect with: an SQLite file is
/// created if missing (`mode=rwc`) unless the URL says otherwise.
fn parse_url(url: &str) -> Result<(Backend, String)> {
    let backend = if url.starts_with("sqlite:") {
        Backend::Sqlite
    } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
        Backend::Postgres
    } else {
        return Err(StoreError::UnsupportedUrl);
    };
    let url = match backend {
        Backend::Sqlite if !url.contains("mode=") => {
            let sep = if url.contains('?') { '&' } else { '?' };
            format!("{url}{sep}mode=rwc")
        }
        _ => url.to_owned(),
    };
    Ok((backend, url))
}

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("../migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("../migrations/postgres");

impl Store {
    /// Connects, creating an SQLite file if it does not exist, and applies migrations. The
    /// activity log's key is random and lasts as long as this store: for tests and tools;
    /// a server passes its configured key to [`Store::connect_with`].
    pub async fn connect(url: &str) -> Result<Self> {
        Self::connect_with_clock(url, std::sync::Arc::new(SystemClock)).await
    }

    /// As [`Store::connect`], reading the time from `clock`.
    pub async fn connect_with_clock(url: &str, clock: std::sync::Arc<dyn Clock>) -> Result<Self> {
        Self::connect_with(url, clock, random_audit_key()).await
    }

    /// Connects with the time from `clock` and the activity log's key.
    pub async fn connect_with(
        url: &str,
        clock: std::sync::Arc<dyn Clock>,
        audit_key: crate::domain::audit::AuditKey,
    ) -> Result<Self> {
        install_default_drivers();
        let (backend, url) = parse_url(url)?;
        let options = AnyPoolOptions::new()
            .max_connections(if backend == Backend::Sqlite { 8 } else { 16 })
            .acquire_timeout(Duration::from_secs(10));
        let options = if backend == Backend::Sqlite {
            options.after_connect(|conn, _meta| {
                Box::pin(async move {
                    // WAL lets readers proceed during a write; the busy timeout makes
                    // concurrent writers wait instead of failing.
                    conn.execute("PRAGMA journal_mode = WAL").await?;
                    conn.execute("PRAGMA busy_timeout = 5000").await?;
                    conn.execute("PRAGMA synchronous = NORMAL").await?;
                    conn.execute("PRAGMA foreign_keys = ON").await?;
                    Ok(())
                })
            })
        } else {
            options
        };
        let reports = options.clone().max_connections(2).connect_lazy(&url)?;
        // Two, so that the next writer need not wait while the last one's connection is
        // checked on its way back (each is still tested before use: after a lost
        // connection the next write reconnects instead of failing).
        let writer = options.clone().max_connections(2);
        let writer = if backend == Backend::Postgres {
            // A writer waits for the advisory lock at most this long, instead of holding
            // its connection for ever behind a stuck replica.
            writer.after_connect(|conn, _meta| {
                Box::pin(async move {
                    conn.execute("SET lock_timeout = '30s'").await?;
                    Ok(())
                })
            })
        } else {
            writer
        };
        let writer = writer.connect_lazy(&url)?;
        let pool = options.connect(&url).await?;
        match backend {
            Backend::Sqlite => SQLITE_MIGRATIONS.run(&pool).await?,
            Backend::Postgres => POSTGRES_MIGRATIONS.run(&pool).await?,
        }
        if backend == Backend::Postgres {
            let row = sqlx::query(
                "SELECT COUNT(*) AS n FROM pg_indexes WHERE schemaname = ANY(current_schemas(false)) \
                 AND tablename = 'vms' AND indexname IN ('vms_name_trigrams', 'vms_group_trigrams')",
            )
            .fetch_one(&pool)
            .await?;
            let trigrams: i64 = sqlx::Row::try_get(&row, "n")?;
            if trigrams < 2 {
                tracing::warn!(
                    "the JIT search's trigram indexes are missing (migration 0021 could not \
                     create PostgreSQL's pg_trgm extension or its indexes): each search \
                     reads every VM; the README's PostgreSQL section says how to add them"
                );
            }
        }
        // A rebuild of `vms` drops its triggers: the index would then miss every VM
        // written since, and a search would not find them (nor count them: 0024). Without
        // all three, searches read every VM instead.
        let search_index = backend == Backend::Sqlite
            && vms_triggers_enabled(
                &pool,
                backend,
                &["vm_search_insert", "vm_search_delete", "vm_search_update"],
            )
            .await?;
        if backend == Backend::Sqlite && !search_index {
            tracing::warn!(
                "the triggers that keep the JIT search's index (migrations 0022, 0024) are \
                 missing: each search reads every VM"
            );
        }
        // Likewise the tab counts (0023): without their triggers (or with one disabled)
        // they would drift from the VMs, so the titles count the VMs instead.
        let tab_counts = vms_triggers_enabled(
            &pool,
            backend,
            &[
                "vm_tab_counts_insert",
                "vm_tab_counts_delete",
                "vm_tab_counts_update",
            ],
        )
        .await?;
        if !tab_counts {
            tracing::warn!(
                "the triggers that keep the JIT tabs' counts (migration 0023) are missing \
                 or disabled: each tab's title counts the VMs"
            );
        }
        let watchers = std::sync::Arc::new(watch::Watchers::default());
        if backend == Backend::Postgres {
            // Listening before the store is handed out: no commit after `connect`
            // returns can go unheard.
            let listener = listen_for_changes(&url).await?;
            tokio::spawn(forward_changes(listener, watchers.clone()));
            tokio::spawn(regain_trust(pool.clone(), watchers.clone()));
        }
        let outbox: std::sync::Arc<tokio::sync::Notify> = Default::default();
        let store = Self {
            pool,
            reports,
            backend,
            clock,
            audit_key: std::sync::Arc::new(audit_key),
            writers: std::sync::Arc::new(writers::Writers::new(
                writer,
                backend,
                watchers.clone(),
                outbox.clone(),
            )),
            watchers,
            contacts: Default::default(),
            exports: std::sync::Arc::new(tokio::sync::Semaphore::new(1)),
            outbox,
            search_index,
            tab_counts,
            search_plan: SearchPlan::default(),
        };
        store.optimize().await?;
        if tab_counts {
            let wrong = store.repair_tab_counts().await?;
            if wrong > 0 {
                tracing::warn!(
                    groups = wrong,
                    "the JIT tabs' counts per resource group (migration 0023) had drifted \
                     from the VMs (written while their triggers did not run): counted again"
                );
            }
        }
        Ok(store)
    }

    /// Keeps SQLite's query planner statistics current. Without them it picked the index
    /// on grant status for a VM's grants and walked every active grant (the Configured
    /// tab went from 165 ms to 21 ms, an agent poll from 11 ms to 4 ms, with them). Run
    /// at start and periodically; it only analyses tables whose statistics are missing or
    /// out of date, reading a bounded sample of each index. PostgreSQL's autovacuum does
    /// this by itself.
    pub async fn optimize(&self) -> Result<()> {
        if self.backend != Backend::Sqlite {
            return Ok(());
        }
        // ANALYZE writes its statistics: it takes its turn among the writers.
        let _turn = self.writers.alone().await;
        let mut conn = self.writers.pool().acquire().await?;
        conn.execute("PRAGMA analysis_limit = 1000").await?;
        conn.execute("PRAGMA optimize = 0x10002").await?;
        Ok(())
    }

    /// A turn to export the activity log, if none is running on this server.
    pub fn export_turn(&self) -> Option<tokio::sync::OwnedSemaphorePermit> {
        self.exports.clone().try_acquire_owned().ok()
    }

    /// The current time by the store's clock (UTC milliseconds).
    pub fn now_ms(&self) -> i64 {
        self.clock.now_ms()
    }

    pub async fn begin_write(&self) -> Result<WriteTx> {
        let (turn, tx) = self.writers.begin().await?;
        Ok(WriteTx {
            log_tail: turn.log_tail(),
            tx: UnitTx(Some(tx)),
            // Read once the turn is held: a transaction's time never runs behind the
            // transactions committed before it.
            now: self.clock.now_ms(),
            audit_key: self.audit_key.clone(),
            turn: Some(turn),
            backend: self.backend,
            changed_vms: Vec::new(),
            messages_queued: false,
        })
    }

    /// How many write transactions committed, and in how many database commits (fewer
    /// when writers queued behind each other shared one).
    pub fn write_counts(&self) -> WriteCounts {
        self.writers.counts()
    }

    /// Write transactions waiting for their turn right now: a number that stays up means
    /// writes queue behind each other (a metric; tests line writers up with it).
    pub fn writers_waiting(&self) -> usize {
        self.writers.waiting()
    }

    /// Runs a periodic job in at most one replica at a time: `false` when another
    /// replica holds the job's lock right now (it is doing the work). The job's own
    /// statements run in the same transaction and commit with it.
    pub(crate) async fn begin_job(&self) -> Result<Option<sqlx::Transaction<'static, sqlx::Any>>> {
        let mut tx = self.pool.begin().await?;
        if self.backend == Backend::Postgres {
            let row = sqlx::query("SELECT CAST(pg_try_advisory_xact_lock($1) AS INTEGER) AS got")
                .bind(CLEANUP_LOCK_KEY)
                .fetch_one(&mut *tx)
                .await?;
            let got: i32 = sqlx::Row::try_get(&row, "got")?;
            if got == 0 {
                return Ok(None);
            }
        }
        Ok(Some(tx))
    }

    /// A long poll's hold on its VM: woken at the VM's next change, and sharing the
    /// desired state last read for it ([`Store::agent_state`]).
    pub fn watch_vm(&self, vm_id: &str) -> VmWatch {
        self.watchers.watch(vm_id)
    }

    /// Notified when messages were committed to the outbox.
    pub fn outbox_signal(&self) -> std::sync::Arc<tokio::sync::Notify> {
        self.outbox.clone()
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// A cheap round trip, for readiness checks.
    pub async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    /// Writes a consistent copy of an SQLite database to `path` while the server may keep
    /// running: `VACUUM INTO` reads one snapshot, so writes committed meanwhile are either
    /// wholly in the copy or not at all. SQLite itself refuses to write over an existing
    /// file. PostgreSQL has its own tool for this (`pg_dump`); asking here is an error.
    pub async fn backup_sqlite(&self, path: &std::path::Path) -> Result<()> {
        if self.backend != Backend::Sqlite {
            return Err(StoreError::UnsupportedUrl);
        }
        let target = path
            .to_str()
            .ok_or_else(|| StoreError::Corrupt("the backup path is not UTF-8".into()))?;
        sqlx::query("VACUUM INTO $1")
            .bind(target)
            .execute(&self.reports)
            .await?;
        Ok(())
    }

    /// Whether [`Store::close`] was called: the background jobs end then, rather than
    /// report every round's failure on a closed pool while the server stops.
    pub fn is_closed(&self) -> bool {
        self.pool.is_closed()
    }

    pub async fn close(&self) {
        // Writers' work handed on but not yet committed is committed first.
        let _turn = self.writers.alone().await;
        self.pool.close().await;
        self.writers.pool().close().await;
        self.reports.close().await;
    }
}

fn random_audit_key() -> crate::domain::audit::AuditKey {
    use rand::RngCore;
    let mut bytes = vec![0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    crate::domain::audit::AuditKey::new(bytes).expect("32 bytes")
}

async fn listen_for_changes(url: &str) -> Result<sqlx::postgres::PgListener> {
    let mut listener = sqlx::postgres::PgListener::connect(url).await?;
    listener.listen(CHANGES_CHANNEL).await?;
    Ok(listener)
}

/// Hands each notification to the local long-polls. When the connection drops,
/// notifications sent meanwhile are lost, so every agent is told to re-read, and kept
/// states are not trusted until the listener hears again.
async fn forward_changes(
    mut listener: sqlx::postgres::PgListener,
    watchers: std::sync::Arc<watch::Watchers>,
) {
    loop {
        match listener.try_recv().await {
            Ok(Some(notification)) => {
                if watchers.trusted() {
                    for vm in notification.payload().split(CHANGES_SEPARATOR) {
                        watchers.wake(vm);
                    }
                } else {
                    // Listening again: whatever was kept while changes could go unheard
                    // is stale from now on.
                    watchers.wake_all();
                    watchers.set_trusted(true);
                }
            }
            Ok(None) => {
                tracing::warn!("change listener lost its connection; waking every agent");
                watchers.set_trusted(false);
                watchers.wake_all();
            }
            Err(e) => {
                tracing::warn!(error = %e, "change listener failed; retrying");
                watchers.set_trusted(false);
                watchers.wake_all();
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

/// After the listener lost its connection, a notification to ourselves says when it
/// listens again (it reconnects by itself): until then agents' polls read the database.
async fn regain_trust(pool: AnyPool, watchers: std::sync::Arc<watch::Watchers>) {
    loop {
        tokio::time::sleep(Duration::from_secs(5)).await;
        if pool.is_closed() {
            return;
        }
        if !watchers.trusted() {
            let sent = sqlx::query("SELECT pg_notify($1, $2)")
                .bind(CHANGES_CHANNEL)
                .bind(ALL_VMS)
                .execute(&pool)
                .await;
            if let Err(e) = sent {
                tracing::debug!(error = %e, "listener check not sent");
            }
        }
    }
}

pub(crate) fn new_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn change_payloads_name_every_vm_once_and_stay_under_postgres_limit() {
        assert!(change_payloads(&[]).is_empty());
        let vms: Vec<String> = (0..1_000).map(|_| new_id()).collect();
        let payloads = change_payloads(&vms);
        assert!(payloads.len() > 1, "a thousand ids do not fit one payload");
        assert!(payloads.iter().all(|p| p.len() <= CHANGES_PAYLOAD_MAX));
        let named: Vec<&str> = payloads
            .iter()
            .flat_map(|p| p.split(CHANGES_SEPARATOR))
            .collect();
        assert_eq!(named, vms.iter().map(String::as_str).collect::<Vec<_>>());
        assert_eq!(
            change_payloads(&[ALL_VMS.to_owned()]),
            vec![ALL_VMS.to_owned()]
        );
    }
}
