//! What an agent's poll costs the store (SQLite, or PostgreSQL when
//! `PORTCULLIS_TEST_POSTGRES` names a server): contacts are written in batches, never
//! per poll; an unchanged VM's state is answered from memory; a change makes it stale at
//! once and wakes that VM's polls, also when another replica made it.

mod common;

use common::*;
use portcullis_app::domain::{Role, Scope};
use portcullis_app::services::Actor;
use std::sync::Arc;
use std::time::Duration;

/// When the store says the VM's agent was last heard from.
async fn last_seen(w: &World, vm: &portcullis_app::store::StoredVm) -> Option<i64> {
    w.store
        .get_vm(&vm.id)
        .await
        .unwrap()
        .unwrap()
        .agent_last_seen
}

#[tokio::test]
async fn contacts_are_written_in_batches_and_never_move_last_seen_back() {
    let w = world().await;
    let admin = w.admin().await;
    let mut vms = Vec::new();
    // More than one batch of contacts.
    for i in 0..620 {
        vms.push(w.vm(&admin, &format!("host-{i:03}"), "fleet").await);
    }
    for (i, vm) in vms.iter().enumerate() {
        if i == 1 {
            w.clock.advance_secs(1);
        }
        w.store.note_agent_contact(&vm.id);
    }
    let seen_at = w.clock.now();
    // Nothing written yet: a poll costs no write.
    assert_eq!(last_seen(&w, &vms[5]).await, None);
    assert_eq!(w.store.flush_agent_contacts().await.unwrap(), 620);
    assert_eq!(
        w.store.flush_agent_contacts().await.unwrap(),
        0,
        "each contact once"
    );
    assert_eq!(last_seen(&w, &vms[0]).await, Some(seen_at - 1000));
    for vm in &vms[1..] {
        assert_eq!(last_seen(&w, vm).await, Some(seen_at), "{}", vm.name);
    }
    // Two replicas heard the agent: the earlier contact, written last, does not move
    // "last seen" back.
    let replica = w.replica().await;
    w.store.note_agent_contact(&vms[0].id);
    w.clock.advance_secs(5);
    replica.note_agent_contact(&vms[0].id);
    let newest = w.clock.now();
    replica.flush_agent_contacts().await.unwrap();
    w.store.flush_agent_contacts().await.unwrap();
    assert_eq!(last_seen(&w, &vms[0]).await, Some(newest));
}

#[tokio::test]
async fn an_unchanged_state_is_kept_and_a_change_makes_it_stale_and_wakes_only_its_vm() {
    let w = world().await;
    let admin = w.admin().await;
    let ops = w.user("ops", &[(Role::Requester, Scope::All)]).await;
    let vm = w.vm(&admin, "web-1", "prod").await;
    let other = w.vm(&admin, "web-2", "prod").await;
    w.policy(&admin, &vm, &[rule("22")]).await;
    w.policy(&admin, &other, &[rule("22")]).await;
    // On PostgreSQL, wakes come through the listener, later than the commit: under load
    // the policies' notifications could wake the polls below. Notifications arrive in
    // commit order, so once a later change has woken its own poll, those have been heard.
    let barrier = w.vm(&admin, "web-3", "prod").await;
    let barrier_watch = w.store.watch_vm(&barrier.id);
    assert!(
        watch_until_changed(&barrier_watch, || async {
            w.policy(&admin, &barrier, &[rule("22")]).await;
        })
        .await,
        "the barrier's own change wakes its poll"
    );

    let watch = w.store.watch_vm(&vm.id);
    let other_watch = w.store.watch_vm(&other.id);
    let first = w.store.agent_state(&watch).await.unwrap().unwrap();
    assert_eq!(first.rules, vec![(22, "tcp")]);
    assert!(first.grants.is_empty());
    let again = w.store.agent_state(&watch).await.unwrap().unwrap();
    assert!(
        Arc::ptr_eq(&first, &again),
        "an unchanged state is answered from memory"
    );

    let changed = watch.changed();
    let other_changed = other_watch.changed();
    tokio::pin!(changed, other_changed);
    changed.as_mut().enable();
    other_changed.as_mut().enable();
    w.request(&ops, &vm, "22", "198.51.100.10", "30")
        .await
        .unwrap();
    tokio::time::timeout(Duration::from_secs(5), changed)
        .await
        .expect("the VM's poll is woken by its change");
    assert!(
        futures::poll!(other_changed.as_mut()).is_pending(),
        "another VM's poll sleeps on"
    );
    let now = w.store.agent_state(&watch).await.unwrap().unwrap();
    assert!(now.generation > first.generation);
    assert_eq!(now.grants.len(), 1);
    assert_eq!(now.grants[0].source, "198.51.100.10/32");

    // A removed VM's poll learns it at once.
    let removed = watch_until_changed(&other_watch, || async {
        portcullis_app::services::jit::delete_vm(&w.store, &admin, &other.id)
            .await
            .unwrap()
    })
    .await;
    assert!(removed, "removing a VM wakes its agent's poll");
    assert!(w.store.agent_state(&other_watch).await.unwrap().is_none());
}

/// Runs `change` and answers whether `watch` was woken by it (within 5 s).
async fn watch_until_changed<F, Fut>(watch: &portcullis_app::store::VmWatch, change: F) -> bool
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let changed = watch.changed();
    tokio::pin!(changed);
    changed.as_mut().enable();
    change().await;
    tokio::time::timeout(Duration::from_secs(5), changed)
        .await
        .is_ok()
}

/// A world for the replica tests, which need PostgreSQL (fail loudly without it): an
/// administrator and a requester.
async fn replicas_world() -> (World, Actor, Actor) {
    assert!(
        portcullis_app::store::test_support::on_postgres(),
        "replicas share PostgreSQL: set PORTCULLIS_TEST_POSTGRES (make unit-postgres)"
    );
    let w = world().await;
    let admin = w.admin().await;
    let ops = w.user("ops", &[(Role::Requester, Scope::All)]).await;
    (w, admin, ops)
}

/// Replicas share a PostgreSQL database: a change made through one makes the state the
/// other kept stale and wakes its polls (through the change notifications). Runs in the
/// PostgreSQL pass only (`make unit-sqlite` skips `replicas_`) and fails without it.
#[tokio::test]
async fn replicas_wake_each_others_polls_and_drop_what_they_kept() {
    let (w, admin, ops) = replicas_world().await;
    let vm = w.vm(&admin, "web-1", "prod").await;
    w.policy(&admin, &vm, &[rule("22")]).await;
    let other_replica = w.replica().await;
    let watch = other_replica.watch_vm(&vm.id);
    let before = other_replica.agent_state(&watch).await.unwrap().unwrap();
    let woken = watch_until_changed(&watch, || async {
        w.request(&ops, &vm, "22", "198.51.100.10", "30")
            .await
            .unwrap();
    })
    .await;
    assert!(woken, "the other replica's poll is woken");
    let after = other_replica.agent_state(&watch).await.unwrap().unwrap();
    assert!(after.generation > before.generation);
    assert_eq!(after.grants.len(), 1);
}

/// One transaction that changes several VMs sends one notification naming them all (the
/// expiry job's batches): the other replica wakes the polls of every VM it names, and of
/// no other. PostgreSQL pass only, as above.
#[tokio::test]
async fn replicas_wake_every_vm_one_notification_names() {
    let (w, admin, ops) = replicas_world().await;
    let mut vms = Vec::new();
    for name in ["web-1", "web-2", "web-3"] {
        let vm = w.vm(&admin, name, "prod").await;
        w.policy(&admin, &vm, &[rule("22")]).await;
        vms.push(vm);
    }
    // web-1 and web-2 have grants that end together; web-3 has none.
    for vm in &vms[..2] {
        w.request(&ops, vm, "22", "198.51.100.10", "30")
            .await
            .unwrap();
    }
    let other_replica = w.replica().await;
    let watches: Vec<_> = vms.iter().map(|v| other_replica.watch_vm(&v.id)).collect();
    for watch in &watches {
        other_replica.agent_state(watch).await.unwrap().unwrap();
    }
    let mut changed: Vec<_> = watches.iter().map(|w| Box::pin(w.changed())).collect();
    for c in &mut changed {
        c.as_mut().enable();
    }
    w.clock.advance_secs(31 * 60);
    assert_eq!(w.store.expire_due(w.clock.now()).await.unwrap(), (2, 0));
    let mut woken = Vec::new();
    for c in changed {
        woken.push(
            tokio::time::timeout(Duration::from_secs(if woken.len() < 2 { 5 } else { 1 }), c)
                .await
                .is_ok(),
        );
    }
    assert_eq!(
        woken,
        [true, true, false],
        "web-1 and web-2 woken, web-3 left waiting"
    );
    for watch in &watches[..2] {
        let state = other_replica.agent_state(watch).await.unwrap().unwrap();
        assert!(
            state.grants.is_empty(),
            "the other replica reads the ended grants"
        );
    }
}

/// SQLite's planner needs statistics to pick the VM index for a VM's grants (without them
/// it walked every active grant of every VM, on each poll and each Configured row): a
/// database that has none, as every database written before, gets them at start.
#[tokio::test]
async fn sqlite_gathers_planner_statistics_at_start() {
    use sqlx::Row;
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("stats.db").display());
    portcullis_app::store::Store::connect(&url)
        .await
        .unwrap()
        .close()
        .await;
    // Grants of many VMs, written without statistics (as an older version left them).
    let db = sqlx::AnyPool::connect(&url).await.unwrap();
    sqlx::query("DROP TABLE IF EXISTS sqlite_stat1")
        .execute(&db)
        .await
        .unwrap();
    sqlx::query(
        "INSERT INTO users (id, username, display_name, password_hash, created_at, updated_at) \
         VALUES ('u', 'u', 'u', NULL, 0, 0)",
    )
    .execute(&db)
    .await
    .unwrap();
    for v in 0..50 {
        sqlx::query(
            "INSERT INTO vms (id, name, resource_group, addresses, os, created_at, updated_at) \
             VALUES ($1, $1, 'g', '', 'linux', 0, 0)",
        )
        .bind(format!("vm-{v}"))
        .execute(&db)
        .await
        .unwrap();
        sqlx::query(
            "INSERT INTO access_requests (id, batch_id, vm_id, requester_id, source_prefix, \
             duration_secs, justification, status, created_at) \
             VALUES ($1, $1, $1, 'u', '198.51.100.1/32', 60, '', 'active', 0)",
        )
        .bind(format!("vm-{v}"))
        .execute(&db)
        .await
        .unwrap();
    }
    for p in 0..2000 {
        sqlx::query(
            "INSERT INTO request_ports (id, request_id, vm_id, port, protocol, source_prefix, \
             status, end_at) VALUES ($1, $2, $2, 22, 'tcp', '198.51.100.1/32', 'active', $3)",
        )
        .bind(format!("p-{p}"))
        .bind(format!("vm-{}", p % 50))
        .bind(1_000 + i64::from(p))
        .execute(&db)
        .await
        .unwrap();
    }
    let analysed = |db: sqlx::AnyPool| async move {
        sqlx::query("SELECT COUNT(*) AS n FROM sqlite_master WHERE name = 'sqlite_stat1'")
            .fetch_one(&db)
            .await
            .unwrap()
            .try_get::<i64, _>("n")
            .unwrap()
    };
    assert_eq!(analysed(db.clone()).await, 0);
    db.close().await;

    let store = portcullis_app::store::Store::connect(&url).await.unwrap();
    store.close().await;
    let db = sqlx::AnyPool::connect(&url).await.unwrap();
    assert_eq!(
        analysed(db.clone()).await,
        1,
        "statistics gathered at start"
    );
    let rows: i64 =
        sqlx::query("SELECT COUNT(*) AS n FROM sqlite_stat1 WHERE idx = 'request_ports_vm_end'")
            .fetch_one(&db)
            .await
            .unwrap()
            .try_get("n")
            .unwrap();
    assert_eq!(rows, 1, "the VM index of grants has its statistics");
}

/// A stopping server answers its waiting agents at once instead of holding the stop for
/// the request time-out.
#[tokio::test]
async fn stopping_releases_every_waiting_poll() {
    let w = world().await;
    let admin = w.admin().await;
    let vm = w.vm(&admin, "web-1", "prod").await;
    let watch = w.store.watch_vm(&vm.id);
    assert!(!w.store.polls_released());
    let released = watch_until_changed(&watch, || async { w.store.release_polls() }).await;
    assert!(released, "the waiting poll is woken");
    assert!(w.store.polls_released(), "and later polls do not wait");
}
