//! The store remembers: every SQL statement of Portcullis lives below this module.
//!
//! One `sqlx::AnyPool` serves both backends; the backend is chosen at run time by the
//! database URL (`sqlite:` or `postgres:`). Queries are written once in portable SQL
//! (`$n` placeholders, application-generated ids, UTC epoch milliseconds, 0/1 flags) so
//! that adding a backend needs migrations, not new queries.

mod agents;
mod audit;
mod identities;
mod jit;
mod requests;
mod sessions;
mod users;

pub use agents::{AgentHost, AgentRecord};
pub use audit::{LogEntry, LogQuery, NewLogEntry};
pub use identities::{FederatedProfile, StoredGroupRule, StoredIdentity};
pub use jit::{StoredVm, VmFields, VmListQuery, VmSummary, VmTab};
pub use requests::{Grant, RequestFilter, StoredRequest, StoredRequestPort};
pub use sessions::SessionStoreAdapter;
pub use users::{NewUser, RemoveOutcome, StoredAssignment, StoredUser};

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

#[derive(Clone, Debug)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
    /// SQLite allows one writer; a write transaction that read before another wrote would
    /// fail with a stale snapshot. Serialising write transactions in-process avoids that
    /// and keeps the activity log chain strictly ordered.
    write_lock: std::sync::Arc<tokio::sync::Mutex<()>>,
    /// Carries the id of every VM whose desired state a committed transaction changed;
    /// long-polling agents wait on it and wake only for their own VM.
    changes: tokio::sync::broadcast::Sender<std::sync::Arc<str>>,
}

/// A write transaction holding the store's write lock (on SQLite) until it ends.
pub struct WriteTx {
    pub(crate) tx: sqlx::Transaction<'static, sqlx::Any>,
    _guard: Option<tokio::sync::OwnedMutexGuard<()>>,
    changes: tokio::sync::broadcast::Sender<std::sync::Arc<str>>,
    pub(crate) changed_vms: Vec<String>,
}

impl WriteTx {
    pub async fn commit(self) -> Result<()> {
        self.tx.commit().await?;
        for vm in self.changed_vms {
            // No receiver (no agent waiting) is not an error.
            let _ = self.changes.send(std::sync::Arc::from(vm));
        }
        Ok(())
    }
}

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("../migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("../migrations/postgres");

impl Store {
    /// Connects, creating an SQLite file if it does not exist, and applies migrations.
    pub async fn connect(url: &str) -> Result<Self> {
        install_default_drivers();
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
        let pool = options.connect(&url).await?;
        match backend {
            Backend::Sqlite => SQLITE_MIGRATIONS.run(&pool).await?,
            Backend::Postgres => POSTGRES_MIGRATIONS.run(&pool).await?,
        }
        Ok(Self {
            pool,
            backend,
            write_lock: Default::default(),
            changes: tokio::sync::broadcast::channel(4096).0,
        })
    }

    pub(crate) async fn begin_write(&self) -> Result<WriteTx> {
        let guard = match self.backend {
            Backend::Sqlite => Some(self.write_lock.clone().lock_owned().await),
            Backend::Postgres => None,
        };
        let tx = self.pool.begin().await?;
        Ok(WriteTx {
            tx,
            _guard: guard,
            changes: self.changes.clone(),
            changed_vms: Vec::new(),
        })
    }

    /// A receiver of the ids of VMs whose desired state changed, from now on.
    pub fn subscribe_changes(&self) -> tokio::sync::broadcast::Receiver<std::sync::Arc<str>> {
        self.changes.subscribe()
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// A cheap round trip, for readiness checks.
    pub async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}

pub(crate) fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

pub(crate) fn new_id() -> String {
    uuid::Uuid::new_v4().to_string()
}
