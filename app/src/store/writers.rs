//! Group commit: write transactions queued behind each other share one database
//! transaction, and so one durable commit.
//!
//! Every write is serialised: the activity log is one chain, and a check-then-write
//! service must see every earlier write. A writer's turn therefore lasts its statements
//! and its commit, and a durable commit waits for the disk (on PostgreSQL about 4 ms on
//! the test machines, more than all the statements of an access request together), which
//! held access requests near 150 a second. Here a writer that ends while others wait for
//! their turn leaves its work in the open transaction and hands the turn on; the next
//! writer carries on in the same transaction after a savepoint. Whoever comes last (or
//! the [`MAX_UNITS`]th) commits for all of them.
//!
//! What each writer sees and promises is unchanged: it runs alone, after every earlier
//! write; its `commit` returns only once its work is durable, so nothing is acknowledged,
//! announced to agents or handed to the notification job before it is on disk; a writer
//! that fails or is dropped rolls back to its savepoint without touching the others. What
//! changes: a failed commit fails every writer of the group (each is told, none is
//! acknowledged), and the advisory lock is held across the group.
//!
//! On SQLite each writer still commits alone: in WAL mode with `synchronous = NORMAL` a
//! commit does not wait for the disk, so sharing it gains little, while holding SQLite's
//! one write lock across a group would starve the writes that wait for it outside the
//! turn (sessions, host commands) under their busy timeout.
//!
//! The statements that move the transaction from writer to writer, and every commit, run
//! in tasks of their own: a caller that gives up waiting (a client gone, a time-out) can
//! neither cut them off half done nor drop the shared transaction with others' work in it.

use super::{Backend, Result, StoreError, watch};
use sqlx::{Any, AnyPool, Transaction};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use tokio::sync::{Mutex, Notify, OwnedMutexGuard, oneshot};

/// Writers per shared transaction at most (those given up included). On PostgreSQL each
/// writer that writes is a subtransaction; beyond 64 in one transaction every reader's
/// visibility checks slow down (the subtransaction cache overflows).
pub(super) const MAX_UNITS: usize = 32;

/// The savepoint each writer after the first starts with (nested, so the name repeats:
/// a rollback goes to the newest one, which is the abandoned writer's own).
const SAVEPOINT: &str = "SAVEPOINT unit";
const ROLLBACK: &str = "ROLLBACK TO SAVEPOINT unit";
/// After the rollback, so that abandoned writers do not deepen the nesting.
const RELEASE: &str = "RELEASE SAVEPOINT unit";

/// The PostgreSQL advisory lock every write transaction holds until it ends.
const WRITE_LOCK_KEY: i64 = 0x706f_7274_6375_6c01;

/// The turn to write, and the transaction writers share.
pub(super) struct Writers {
    slot: Arc<Mutex<Slot>>,
    /// Writers waiting for their turn (a metric; tests line writers up with it).
    waiting: AtomicUsize,
    pool: AnyPool,
    backend: Backend,
    watchers: Arc<watch::Watchers>,
    outbox: Arc<Notify>,
    units: AtomicU64,
    commits: AtomicU64,
}

impl std::fmt::Debug for Writers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Writers")
            .field("waiting", &self.waiting)
            .field("counts", &self.counts())
            .finish_non_exhaustive()
    }
}

#[derive(Default)]
pub(super) struct Slot {
    open: Option<Group>,
    next_id: u64,
}

/// A transaction with writers' work in it, not yet committed.
struct Group {
    id: u64,
    /// `None` only while a writer runs in it (that writer holds the turn).
    tx: Option<Transaction<'static, Any>>,
    /// Writers whose work is in it.
    units: usize,
    /// Writers that carried on in it, those given up included (see [`MAX_UNITS`]).
    entered: usize,
    /// Those writers, told how the commit went.
    members: Vec<oneshot::Sender<std::result::Result<(), String>>>,
    changed_vms: Vec<String>,
    messages_queued: bool,
    /// The newest writer was dropped without committing: its savepoint is rolled back
    /// before anything else runs.
    abandoned: bool,
    /// The activity log's last position and hash as the group's kept work left them, once
    /// known: nobody else can append while the group holds the write lock, so the next
    /// writer need not read them again.
    log_tail: Option<(i64, String)>,
}

/// How many writers committed, and in how many database commits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriteCounts {
    pub units: u64,
    pub commits: u64,
}

/// A writer's hold on the turn and the transaction; see [`super::WriteTx`].
pub(super) struct Turn {
    slot: OwnedMutexGuard<Slot>,
    writers: Arc<Writers>,
}

/// A turn and its transaction on their way to the writer: if the writer gave up meanwhile
/// (the value is dropped unreceived), its turn is given up properly, leaving the others'
/// work in the transaction, rather than dropping the shared transaction.
struct Handoff(Option<(Turn, Transaction<'static, Any>)>);

impl Drop for Handoff {
    fn drop(&mut self) {
        if let Some((mut turn, tx)) = self.0.take() {
            turn.abandon(tx);
        }
    }
}

/// Counts a writer as waiting until it has its turn or is dropped.
struct Waiting<'a>(&'a AtomicUsize);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Writers {
    pub(super) fn new(
        pool: AnyPool,
        backend: Backend,
        watchers: Arc<watch::Watchers>,
        outbox: Arc<Notify>,
    ) -> Self {
        Self {
            slot: Default::default(),
            waiting: AtomicUsize::new(0),
            pool,
            backend,
            watchers,
            outbox,
            units: AtomicU64::new(0),
            commits: AtomicU64::new(0),
        }
    }

    pub(super) fn counts(&self) -> WriteCounts {
        WriteCounts {
            units: self.units.load(Ordering::Relaxed),
            commits: self.commits.load(Ordering::Relaxed),
        }
    }

    pub(super) fn waiting(&self) -> usize {
        self.waiting.load(Ordering::SeqCst)
    }

    pub(super) fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// Waits for the turn, and returns it with a transaction to write in: the open one
    /// after a savepoint, or a new one.
    pub(super) async fn begin(self: &Arc<Self>) -> Result<(Turn, Transaction<'static, Any>)> {
        let slot = self.wait_for_turn().await;
        // The statements run in a task of their own: a caller that gives up (a client
        // gone) cannot cut them off half done and leave the shared transaction in doubt.
        let (sent, got) = oneshot::channel();
        let writers = self.clone();
        tokio::spawn(async move {
            // Unsent (the writer gone), the handoff is dropped here; unreceived, where
            // the channel drops it. Either way its Drop gives the turn up properly.
            let _ = sent.send(writers.prepare(slot).await.map(|t| Handoff(Some(t))));
        });
        match got.await {
            Ok(Ok(mut handoff)) => Ok(handoff.0.take().expect("a handoff is taken once")),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(StoreError::SharedCommit("the writer's task ended".into())),
        }
    }

    /// The turn, counted as waiting until it comes.
    async fn wait_for_turn(&self) -> OwnedMutexGuard<Slot> {
        self.waiting.fetch_add(1, Ordering::SeqCst);
        let _waiting = Waiting(&self.waiting);
        self.slot.clone().lock_owned().await
    }

    async fn prepare(
        self: Arc<Self>,
        mut slot: OwnedMutexGuard<Slot>,
    ) -> Result<(Turn, Transaction<'static, Any>)> {
        if let Some(mut group) = slot.open.take() {
            if group.entered + 1 < MAX_UNITS {
                match self.carry_on(&mut group).await {
                    Ok(tx) => {
                        slot.open = Some(group);
                        return Ok((self.turn(slot), tx));
                    }
                    Err(e) => self.fail(group, &e),
                }
            } else {
                // Its members are told how it went; this writer starts afresh either way.
                let _ = self.commit_group(group).await;
            }
        }
        let tx = self.begin_new().await?;
        slot.next_id += 1;
        slot.open = Some(Group {
            id: slot.next_id,
            tx: None,
            units: 0,
            entered: 0,
            members: Vec::new(),
            changed_vms: Vec::new(),
            messages_queued: false,
            abandoned: false,
            log_tail: None,
        });
        Ok((self.turn(slot), tx))
    }

    /// The turn with nobody's work pending: for what must not run inside a shared
    /// transaction (SQLite's ANALYZE, closing).
    pub(super) async fn alone(self: &Arc<Self>) -> OwnedMutexGuard<Slot> {
        let mut slot = self.slot.clone().lock_owned().await;
        if let Some(group) = slot.open.take() {
            // In a task of its own, as in `begin`.
            let (sent, got) = oneshot::channel();
            let writers = self.clone();
            tokio::spawn(async move {
                let _ = writers.commit_group(group).await;
                let _ = sent.send(slot);
            });
            return match got.await {
                Ok(slot) => slot,
                Err(_) => self.slot.clone().lock_owned().await,
            };
        }
        slot
    }

    fn turn(self: &Arc<Self>, slot: OwnedMutexGuard<Slot>) -> Turn {
        Turn {
            slot,
            writers: self.clone(),
        }
    }

    async fn begin_new(&self) -> Result<Transaction<'static, Any>> {
        // SQLite: take the write lock at BEGIN. A deferred transaction that reads first
        // and writes later fails at once ("database is locked") when another connection
        // wrote meanwhile; an immediate one waits its turn under the busy timeout.
        let mut tx = match self.backend {
            Backend::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await?,
            Backend::Postgres => self.pool.begin().await?,
        };
        if self.backend == Backend::Postgres {
            // Taken first, so that every read in the transaction sees all earlier
            // writes of every replica (READ COMMITTED takes a fresh snapshot per
            // statement); released by commit or rollback, also if the replica dies.
            sqlx::query("SELECT pg_advisory_xact_lock($1)")
                .bind(WRITE_LOCK_KEY)
                .execute(&mut *tx)
                .await?;
        }
        Ok(tx)
    }

    async fn carry_on(&self, group: &mut Group) -> Result<Transaction<'static, Any>> {
        let Some(mut tx) = group.tx.take() else {
            return Err(StoreError::Corrupt(
                "a shared transaction was found without its connection".into(),
            ));
        };
        if group.abandoned {
            undo_abandoned(&mut tx).await?;
            group.abandoned = false;
        }
        sqlx::query(SAVEPOINT).execute(&mut *tx).await?;
        group.entered += 1;
        Ok(tx)
    }

    /// Ends a group whose transaction was lost: its writers are told, nothing of theirs
    /// stays (the transaction rolls back as it is dropped, or died with its connection).
    fn fail(&self, group: Group, error: &StoreError) {
        tracing::error!(%error, writers = group.members.len(), "a shared write transaction failed");
        for member in group.members {
            let _ = member.send(Err(error.to_string()));
        }
    }

    /// Commits a group and tells its writers; the caller holds the turn.
    async fn commit_group(&self, mut group: Group) -> Result<()> {
        let Some(mut tx) = group.tx.take() else {
            return Err(StoreError::Corrupt(
                "a group was committed while a writer ran in it".into(),
            ));
        };
        let result = async {
            if group.abandoned {
                undo_abandoned(&mut tx).await?;
            }
            if self.backend == Backend::Postgres {
                // PostgreSQL answers COMMIT of a failed transaction with a rollback, not an
                // error: a statement that failed and was not answered by giving the turn
                // up would silently lose the whole group's work. This fails instead.
                sqlx::query("SELECT 1").execute(&mut *tx).await?;
            }
            tx.commit().await?;
            Ok::<_, StoreError>(())
        }
        .await;
        match result {
            Ok(()) => {
                self.commits.fetch_add(1, Ordering::Relaxed);
                self.units.fetch_add(group.units as u64, Ordering::Relaxed);
                if self.backend == Backend::Sqlite {
                    // PostgreSQL's writers sent theirs with pg_notify, delivered at commit.
                    for vm in &group.changed_vms {
                        self.watchers.wake(vm);
                    }
                }
                if group.messages_queued {
                    self.outbox.notify_one();
                }
                for member in group.members {
                    let _ = member.send(Ok(()));
                }
                Ok(())
            }
            Err(e) => {
                self.fail(group, &e);
                Err(e)
            }
        }
    }

    /// Commits group `id` if it is still open when this gets the turn (an earlier flush
    /// of the same group, or a full group's next writer, may have committed it).
    async fn flush(self: Arc<Self>, id: u64) {
        let mut slot = self.slot.clone().lock_owned().await;
        if slot.open.as_ref().is_some_and(|g| g.id == id) {
            let group = slot.open.take().expect("checked above");
            let _ = self.commit_group(group).await;
        }
    }
}

/// Undoes the newest writer's work, which it gave up. On PostgreSQL the first attempt may
/// only collect the answer to a statement that writer left running (an error, if it
/// failed): then the rollback is sent again.
async fn undo_abandoned(tx: &mut Transaction<'static, Any>) -> Result<()> {
    if let Err(sqlx::Error::Database(e)) = sqlx::query(ROLLBACK).execute(&mut **tx).await {
        tracing::debug!(error = %e, "a given-up writer's statement failed; rolling back again");
        sqlx::query(ROLLBACK).execute(&mut **tx).await?;
    }
    sqlx::query(RELEASE).execute(&mut **tx).await?;
    Ok(())
}

/// What one writer adds to its group when it ends.
pub(super) struct Ending {
    pub changed_vms: Vec<String>,
    pub messages_queued: bool,
    pub log_tail: Option<(i64, String)>,
}

impl Turn {
    /// The log's tail as the group's kept work left it (see [`Group::log_tail`]).
    pub(super) fn log_tail(&self) -> Option<(i64, String)> {
        self.slot.open.as_ref().and_then(|g| g.log_tail.clone())
    }

    /// Ends this writer's work, and returns once it is durable. The commit is left to a
    /// task that takes its turn after the writers already waiting: they carry on in the
    /// same transaction, and that task commits for all of them (whoever of them comes
    /// first; with nobody waiting it comes at once). Being a task of its own, the commit
    /// is not cut off by a caller that gives up waiting for it.
    pub(super) async fn end(mut self, tx: Transaction<'static, Any>, ending: Ending) -> Result<()> {
        let writers = self.writers.clone();
        let group = self
            .slot
            .open
            .as_mut()
            .expect("a writer runs in an open group");
        group.tx = Some(tx);
        group.units += 1;
        for vm in ending.changed_vms {
            if !group.changed_vms.contains(&vm) {
                group.changed_vms.push(vm);
            }
        }
        group.messages_queued |= ending.messages_queued;
        if ending.log_tail.is_some() {
            group.log_tail = ending.log_tail;
        }
        if writers.backend == Backend::Sqlite || group.entered + 1 >= MAX_UNITS {
            // Committed now, holding the turn, by a task that outlives this caller.
            let group = self.slot.open.take().expect("checked above");
            let (sent, got) = oneshot::channel();
            tokio::spawn(async move {
                let committed = writers.commit_group(group).await;
                drop(self);
                let _ = sent.send(committed);
            });
            return got.await.unwrap_or_else(|_| {
                Err(StoreError::SharedCommit("the committing task ended".into()))
            });
        }
        let (told, outcome) = oneshot::channel();
        group.members.push(told);
        let id = group.id;
        drop(self);
        tokio::spawn(writers.flush(id));
        match outcome.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(message)) => Err(StoreError::SharedCommit(message)),
            Err(_) => Err(StoreError::SharedCommit(
                "the shared transaction was dropped".into(),
            )),
        }
    }

    /// A writer dropped without committing: its work is undone, the others' kept.
    pub(super) fn abandon(&mut self, tx: Transaction<'static, Any>) {
        let Some(group) = self.slot.open.as_mut() else {
            return;
        };
        if group.units == 0 {
            // The first writer of the group has no savepoint: nothing else is in the
            // transaction, which rolls back as it is dropped.
            self.slot.open = None;
            drop(tx);
        } else {
            group.tx = Some(tx);
            group.abandoned = true;
        }
    }
}

#[cfg(test)]
mod tests {
    //! The hand-over between writers, driven step by step on a real database (the
    //! PostgreSQL pass is the one where writers share a transaction).
    use super::*;
    use sqlx::Row;
    use sqlx::any::{AnyPoolOptions, install_default_drivers};

    async fn writers() -> (Arc<Writers>, AnyPool, tempfile::TempDir) {
        install_default_drivers();
        let dir = tempfile::tempdir().unwrap();
        let url = super::super::test_support::fresh_database_url(dir.path(), "writers")
            .await
            .unwrap();
        let (backend, url) = super::super::parse_url(&url).unwrap();
        let pool = AnyPoolOptions::new()
            .max_connections(4)
            .connect(&url)
            .await
            .unwrap();
        sqlx::query("CREATE TABLE probe (x INTEGER PRIMARY KEY)")
            .execute(&pool)
            .await
            .unwrap();
        let writers = Arc::new(Writers::new(
            pool.clone(),
            backend,
            Default::default(),
            Default::default(),
        ));
        (writers, pool, dir)
    }

    async fn insert(tx: &mut Transaction<'static, Any>, x: i64) -> sqlx::Result<()> {
        sqlx::query("INSERT INTO probe (x) VALUES ($1)")
            .bind(x)
            .execute(&mut **tx)
            .await
            .map(drop)
    }

    async fn kept(pool: &AnyPool) -> Vec<i64> {
        sqlx::query("SELECT x FROM probe ORDER BY x")
            .fetch_all(pool)
            .await
            .unwrap()
            .iter()
            .map(|r| r.try_get::<i64, _>("x").unwrap())
            .collect()
    }

    fn ending() -> Ending {
        Ending {
            changed_vms: Vec::new(),
            messages_queued: false,
            log_tail: None,
        }
    }

    /// The first writer ends and is waiting for the commit of its group; the next one
    /// gets the turn, with `then` doing something to it. Returns the first's outcome.
    async fn after_a_first_writer<F, Fut>(writers: &Arc<Writers>, then: F) -> Result<()>
    where
        F: FnOnce(OwnedMutexGuard<Slot>) -> Fut,
        Fut: std::future::Future<Output = ()>,
    {
        let (turn, mut tx) = writers.begin().await.unwrap();
        insert(&mut tx, 1).await.unwrap();
        // Queued for the turn before the first ends, so ahead of the task that commits.
        let next = tokio::spawn({
            let w = writers.clone();
            async move { w.wait_for_turn().await }
        });
        while writers.waiting() < 1 {
            tokio::task::yield_now().await;
        }
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        let first = tokio::spawn(turn.end(tx, ending()));
        then(next.await.unwrap()).await;
        first.await.unwrap()
    }

    /// A writer whose caller gave up after its turn and transaction were handed to it, but
    /// before it took them: the first writer's work is kept, and it is told so.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_handoff_nobody_takes_leaves_the_group_whole() {
        let (writers, pool, _dir) = writers().await;
        let w = writers.clone();
        let first = after_a_first_writer(&writers, |slot| async move {
            let mut handed = Handoff(Some(w.prepare(slot).await.unwrap()));
            insert(&mut handed.0.as_mut().unwrap().1, 2).await.unwrap();
            drop(handed);
        })
        .await;
        first.unwrap();
        assert_eq!(kept(&pool).await, vec![1]);
        // The next writer goes ahead.
        let (turn, mut tx) = writers.begin().await.unwrap();
        insert(&mut tx, 3).await.unwrap();
        turn.end(tx, ending()).await.unwrap();
        assert_eq!(kept(&pool).await, vec![1, 3]);
    }

    /// A writer gives up while its failing statement is on its way (on PostgreSQL the
    /// error then waits on the connection, and is what the next statement reads first):
    /// the first writer's work is kept all the same.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_writer_that_leaves_during_a_failing_statement_fails_nobody_else() {
        let (writers, pool, _dir) = writers().await;
        let w = writers.clone();
        let first = after_a_first_writer(&writers, |slot| async move {
            let backend = w.backend;
            let (mut turn, mut tx) = w.prepare(slot).await.unwrap();
            // A duplicate of the first writer's row, 50 ms in the making on PostgreSQL
            // (SQLite knows no pg_sleep: there it fails at once): sent, then given up
            // before its answer came.
            let slow = sqlx::query("INSERT INTO probe (x) SELECT 1 FROM pg_sleep(0.05)");
            let given_up =
                tokio::time::timeout(std::time::Duration::from_millis(10), slow.execute(&mut *tx))
                    .await;
            assert!(
                given_up.is_err() || backend == Backend::Sqlite,
                "{given_up:?}"
            );
            turn.abandon(tx);
        })
        .await;
        first.unwrap();
        assert_eq!(kept(&pool).await, vec![1]);
    }
}
