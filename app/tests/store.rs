//! Store tests: each runs on a fresh database with the real migrations (SQLite, or
//! PostgreSQL when `PORTCULLIS_TEST_POSTGRES` names a server).
#![cfg(feature = "ssr")]

use portcullis_app::domain::{Role, RoleAssignment, Scope};
use portcullis_app::store::test_support::fresh_database_url;
use portcullis_app::store::{NewUser, RemoveOutcome, SessionStoreAdapter, Store, StoreError};
use tower_sessions::session::{Id, Record};
use tower_sessions::session_store::SessionStore;

async fn fresh() -> (Store, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let url = fresh_database_url(dir.path(), "test").await.unwrap();
    (Store::connect(&url).await.unwrap(), dir)
}

fn user<'a>(name: &'a str) -> NewUser<'a> {
    NewUser {
        username: name,
        display_name: "Test User",
        password_hash: Some("$argon2id$x"),
        must_change_password: false,
    }
}

fn admin_all() -> RoleAssignment {
    RoleAssignment {
        role: Role::Admin,
        scope: Scope::All,
    }
}

async fn remove(store: &Store, id: &str) -> RemoveOutcome {
    let mut tx = store.begin_write().await.unwrap();
    let outcome = tx.remove_assignment(id).await.unwrap();
    tx.commit().await.unwrap();
    outcome
}

async fn other_admins(store: &Store, except: &str) -> i64 {
    let mut tx = store.begin_write().await.unwrap();
    tx.count_other_global_admins(except).await.unwrap()
}

#[tokio::test]
async fn users_round_trip_and_names_are_unique() {
    let (store, _dir) = fresh().await;
    assert_eq!(store.count_users().await.unwrap(), 0);
    let alice = store
        .create_user(
            &user("alice"),
            &[RoleAssignment {
                role: Role::Requester,
                scope: Scope::Group("prod".into()),
            }],
            None,
        )
        .await
        .unwrap();
    let found = store.find_user_by_username("alice").await.unwrap().unwrap();
    assert_eq!(found, alice);
    assert_eq!(
        store.get_user(&alice.id).await.unwrap().unwrap().username,
        "alice"
    );
    assert!(store.find_user_by_username("bob").await.unwrap().is_none());
    assert!(matches!(
        store.create_user(&user("alice"), &[], None).await,
        Err(StoreError::Duplicate)
    ));
    assert_eq!(
        store.count_users().await.unwrap(),
        1,
        "the failed insert left nothing behind"
    );

    let roles = store.assignments_of(&alice.id).await.unwrap();
    assert_eq!(roles.len(), 1);
    assert_eq!(roles[0].assignment.scope, Scope::Group("prod".into()));
}

#[tokio::test]
async fn creating_a_user_with_a_duplicate_role_rolls_back_the_user() {
    let (store, _dir) = fresh().await;
    let role = RoleAssignment {
        role: Role::Reader,
        scope: Scope::All,
    };
    let result = store
        .create_user(&user("carol"), &[role.clone(), role], None)
        .await;
    assert!(matches!(result, Err(StoreError::Duplicate)));
    assert!(
        store
            .find_user_by_username("carol")
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test]
async fn passwords_and_flags_update() {
    let (store, _dir) = fresh().await;
    let mut new = user("dave");
    new.must_change_password = true;
    let dave = store.create_user(&new, &[], None).await.unwrap();
    let mut tx = store.begin_write().await.unwrap();
    assert!(
        tx.set_password(&dave.id, "$argon2id$new", false)
            .await
            .unwrap()
    );
    assert!(tx.set_disabled(&dave.id, true).await.unwrap());
    assert!(!tx.set_password("no-such-id", "x", false).await.unwrap());
    tx.commit().await.unwrap();
    let dave2 = store.get_user(&dave.id).await.unwrap().unwrap();
    assert_eq!(dave2.password_hash.as_deref(), Some("$argon2id$new"));
    assert!(!dave2.must_change_password);
    assert!(dave2.disabled);
    assert_eq!(
        dave2.session_epoch,
        dave.session_epoch + 1,
        "a new password ends the sessions of the old one"
    );
}

#[tokio::test]
async fn the_last_global_admin_cannot_lose_the_role() {
    let (store, _dir) = fresh().await;
    let a = store
        .create_user(&user("admin1"), &[admin_all()], None)
        .await
        .unwrap();
    let a_role = store.assignments_of(&a.id).await.unwrap().remove(0);
    assert_eq!(remove(&store, &a_role.id).await, RemoveOutcome::LastAdmin);
    assert_eq!(store.assignments_of(&a.id).await.unwrap().len(), 1);

    let b = store
        .create_user(&user("admin2"), &[admin_all()], None)
        .await
        .unwrap();
    assert_eq!(other_admins(&store, &b.id).await, 1);
    assert!(matches!(
        remove(&store, &a_role.id).await,
        RemoveOutcome::Removed(_)
    ));
    assert!(store.assignments_of(&a.id).await.unwrap().is_empty());
    assert_eq!(remove(&store, &a_role.id).await, RemoveOutcome::NotFound);
    assert_eq!(other_admins(&store, &b.id).await, 0);
}

#[tokio::test]
async fn duplicate_role_assignment_is_reported() {
    let (store, _dir) = fresh().await;
    let e = store.create_user(&user("erin"), &[], None).await.unwrap();
    let role = RoleAssignment {
        role: Role::Approver,
        scope: Scope::Vm("vm-7".into()),
    };
    let mut tx = store.begin_write().await.unwrap();
    tx.add_assignment(&e.id, &role).await.unwrap();
    assert!(matches!(
        tx.add_assignment(&e.id, &role).await,
        Err(StoreError::Duplicate)
    ));
}

#[tokio::test]
async fn sessions_persist_update_expire_and_delete() {
    let (store, _dir) = fresh().await;
    let sessions = SessionStoreAdapter(store.clone());
    let mut record = Record {
        id: Id::default(),
        data: Default::default(),
        expiry_date: time::OffsetDateTime::now_utc() + time::Duration::hours(1),
    };
    record
        .data
        .insert("user_id".into(), serde_json::json!("u-1"));
    sessions.create(&mut record).await.unwrap();
    let loaded = sessions.load(&record.id).await.unwrap().unwrap();
    assert_eq!(loaded.data["user_id"], "u-1");

    record
        .data
        .insert("user_id".into(), serde_json::json!("u-2"));
    sessions.save(&record).await.unwrap();
    assert_eq!(
        sessions.load(&record.id).await.unwrap().unwrap().data["user_id"],
        "u-2"
    );

    let mut expired = Record {
        id: Id::default(),
        data: Default::default(),
        expiry_date: time::OffsetDateTime::now_utc() - time::Duration::seconds(1),
    };
    sessions.create(&mut expired).await.unwrap();
    assert!(
        sessions.load(&expired.id).await.unwrap().is_none(),
        "expired sessions do not load"
    );
    assert_eq!(store.delete_expired_sessions().await.unwrap(), 1);
    assert_eq!(store.count_sessions().await.unwrap(), 1);

    sessions.delete(&record.id).await.unwrap();
    assert!(sessions.load(&record.id).await.unwrap().is_none());
    assert_eq!(store.count_sessions().await.unwrap(), 0);
}

#[tokio::test]
async fn data_survives_reopening_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let url = fresh_database_url(dir.path(), "keep").await.unwrap();
    {
        let store = Store::connect(&url).await.unwrap();
        store.create_user(&user("frank"), &[], None).await.unwrap();
        store.close().await;
    }
    let store = Store::connect(&url).await.unwrap();
    assert!(
        store
            .find_user_by_username("frank")
            .await
            .unwrap()
            .is_some()
    );
}

#[tokio::test]
async fn unsupported_urls_are_refused() {
    assert!(matches!(
        Store::connect("mysql://localhost/x").await,
        Err(StoreError::UnsupportedUrl)
    ));
}

/// Writers waiting their turn hold no connection: with more of them queued than the pool
/// has connections (one holding the write lock), reads (agent polls, pages) are answered
/// at once. On PostgreSQL each queued writer used to hold a connection while it waited
/// for the advisory lock, and reads waited behind them until the pool's time-out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_writers_leave_the_readers_their_connections() {
    use std::time::Duration;
    let (store, _dir) = fresh().await;
    let first = store.begin_write().await.unwrap();
    let mut queued = tokio::task::JoinSet::new();
    for _ in 0..40 {
        let store = store.clone();
        queued.spawn(async move { store.begin_write().await.map(drop) });
    }
    // Time for every one of them to queue (not the store's clock: none is read here).
    tokio::time::sleep(Duration::from_millis(500)).await;
    let read = tokio::time::timeout(Duration::from_secs(5), store.ping()).await;
    assert!(
        matches!(read, Ok(Ok(()))),
        "a read waited behind queued writers: {read:?}"
    );
    drop(first);
    while let Some(done) = queued.join_next().await {
        done.unwrap().unwrap();
    }
}

/// Writers queued behind each other share one database commit on PostgreSQL (a durable
/// commit costs more than all of an access request's statements), and each keeps its own
/// outcome: one dropped without committing and one whose statement failed (which on
/// PostgreSQL aborts the transaction it ran in) leave nothing, the others are kept, in one
/// commit, and the activity log stays one valid chain.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_writers_share_a_commit_and_keep_their_own_outcomes() {
    use portcullis_app::store::{NewLogEntry, Verification};
    let (store, _dir) = fresh().await;
    let logged = |name: &str| {
        Some(NewLogEntry {
            actor: "admin".into(),
            action: "create user".into(),
            detail: name.into(),
            ..Default::default()
        })
    };
    store.create_user(&user("first"), &[], None).await.unwrap();
    let before = store.write_counts();
    let mut first = store.begin_write().await.unwrap();
    first.log(logged("first").unwrap()).await.unwrap();
    let mut queued = tokio::task::JoinSet::new();
    for (i, name) in ["a", "dropped", "c", "taken", "e"].into_iter().enumerate() {
        let writer = store.clone();
        let logged = logged(name);
        queued.spawn(async move {
            let store = writer;
            match name {
                // Written, then given up (an error in the service, a client gone).
                "dropped" => {
                    let mut tx = store.begin_write().await.unwrap();
                    tx.log(logged.unwrap()).await.unwrap();
                    drop(tx);
                    (name, Ok(()))
                }
                // The name "first" is taken by then, whatever the order: the insert fails.
                "taken" => (
                    name,
                    store
                        .create_user(&user("first"), &[], logged)
                        .await
                        .map(drop),
                ),
                _ => (
                    name,
                    store.create_user(&user(name), &[], logged).await.map(drop),
                ),
            }
        });
        // Each is queued before the next starts (no clock is read: none moves here).
        while store.writers_waiting() < i + 1 {
            tokio::task::yield_now().await;
        }
    }
    first.commit().await.unwrap();
    let mut outcomes = std::collections::BTreeMap::new();
    while let Some(done) = queued.join_next().await {
        let (name, outcome) = done.unwrap();
        outcomes.insert(name, outcome);
    }
    assert!(
        matches!(outcomes["taken"], Err(StoreError::Duplicate)),
        "{outcomes:?}"
    );
    for name in ["a", "c", "e", "dropped"] {
        assert!(outcomes[name].is_ok(), "{name}: {outcomes:?}");
    }
    for name in ["a", "c", "e"] {
        assert!(
            store.find_user_by_username(name).await.unwrap().is_some(),
            "{name}"
        );
    }
    let after = store.write_counts();
    // The holder and a, c, e: one commit for all of them on PostgreSQL, whose commits
    // wait for the disk; SQLite's do not, and there each writer commits alone.
    let commits = if portcullis_app::store::test_support::on_postgres() {
        1
    } else {
        4
    };
    assert_eq!(after.units - before.units, 4, "{before:?} {after:?}");
    assert_eq!(
        after.commits - before.commits,
        commits,
        "{before:?} {after:?}"
    );
    match store.verify_log_full(None).await.unwrap() {
        Verification::Verified(at) => assert_eq!(at.seq, 4),
        Verification::Broken(b) => panic!("{b:?}"),
    }
}

/// Callers give up (a client gone, a time-out) at any moment of their write, while other
/// writers share their transaction: every writer that was answered "done" is kept, every
/// kept write is whole (its user with its log entry), nobody else is failed by those who
/// left, and the log stays one valid chain.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writers_given_up_at_any_moment_leave_the_others_whole() {
    use portcullis_app::store::{LogQuery, NewLogEntry, Verification};
    let (store, _dir) = fresh().await;
    let mut tasks = Vec::new();
    for i in 0..150 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let name = format!("user-{i}");
            let log = NewLogEntry {
                actor: "admin".into(),
                action: "create user".into(),
                detail: name.clone(),
                ..Default::default()
            };
            store.create_user(&user(&name), &[], Some(log)).await
        }));
    }
    for (i, task) in tasks.iter().enumerate() {
        if i % 3 == 0 {
            for _ in 0..(i % 11) {
                tokio::task::yield_now().await;
            }
            task.abort();
        }
    }
    let mut answered = Vec::new();
    for (i, task) in tasks.into_iter().enumerate() {
        match task.await {
            Ok(outcome) => {
                outcome.unwrap_or_else(|e| panic!("writer {i} failed: {e}"));
                answered.push(i);
            }
            Err(e) => assert!(e.is_cancelled(), "{e}"),
        }
    }
    assert!(answered.len() >= 100, "{}", answered.len());
    for i in &answered {
        let name = format!("user-{i}");
        assert!(
            store.find_user_by_username(&name).await.unwrap().is_some(),
            "{name}"
        );
    }
    // Whole: each user kept has its entry, and no entry is without its user.
    let users = store.count_users().await.unwrap();
    let entries = store
        .log_batch(&LogQuery {
            action: Some("create user".into()),
            limit: 1000,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(entries.len() as i64, users);
    match store.verify_log_full(None).await.unwrap() {
        Verification::Verified(at) => assert_eq!(at.seq, users),
        Verification::Broken(b) => panic!("{b:?}"),
    }
    // And the next writer goes ahead.
    store.create_user(&user("after"), &[], None).await.unwrap();
}

/// A write transaction dropped without a commit leaves nothing held, and a writer
/// connection lost (a database restart, a killed backend) is replaced: the next writes go
/// ahead.
#[tokio::test]
async fn writes_go_on_after_an_abandoned_transaction_and_a_lost_connection() {
    use std::time::Duration;
    let dir = tempfile::tempdir().unwrap();
    let url = fresh_database_url(dir.path(), "test").await.unwrap();
    let store = Store::connect(&url).await.unwrap();
    let abandoned = store.begin_write().await.unwrap();
    drop(abandoned);
    let next = tokio::time::timeout(Duration::from_secs(10), store.begin_write()).await;
    next.expect("the next writer waited")
        .unwrap()
        .commit()
        .await
        .unwrap();
    if portcullis_app::store::test_support::on_postgres() {
        let server = std::env::var(portcullis_app::store::test_support::POSTGRES_ENV).unwrap();
        // Every connection of the store's database is killed, the writers' included.
        let db = url.rsplit('/').next().unwrap().split('?').next().unwrap();
        let mut admin = <sqlx::PgConnection as sqlx::Connection>::connect(&server)
            .await
            .unwrap();
        let killed: Vec<(bool,)> = sqlx::query_as(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1",
        )
        .bind(db)
        .fetch_all(&mut admin)
        .await
        .unwrap();
        assert!(!killed.is_empty(), "no connection of {db} was found");
    }
    for _ in 0..3 {
        let tx = tokio::time::timeout(Duration::from_secs(10), store.begin_write())
            .await
            .expect("a writer waited")
            .expect("a write failed after the connections were lost");
        tx.commit().await.unwrap();
    }
}

/// A stopping server closes its store: the background jobs end then, instead of failing
/// (and logging it) every round until the process exits.
#[tokio::test]
async fn background_jobs_end_once_the_store_is_closed() {
    use portcullis_app::services::{activity, delivery, requests};
    use std::time::Duration;
    let (store, _dir) = fresh().await;
    store.close().await;
    async fn ended(job: impl std::future::Future<Output = ()>) -> bool {
        tokio::time::timeout(Duration::from_secs(10), job)
            .await
            .is_ok()
    }
    assert!(
        ended(requests::run_expiry(store.clone(), Default::default())).await,
        "expiry"
    );
    assert!(
        ended(activity::run_verifier(
            store.clone(),
            std::sync::Arc::new(activity::Anchor::open(None)),
            Duration::from_millis(10),
        ))
        .await,
        "verifier"
    );
    assert!(
        ended(delivery::run_delivery(
            store.clone(),
            delivery::Sender::new("http://portal.example"),
        ))
        .await,
        "delivery"
    );
}
