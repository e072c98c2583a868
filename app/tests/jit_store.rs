//! Store tests for VMs, policies, requests, grants and the activity log, each on a fresh
//! database (SQLite, or PostgreSQL when `PORTCULLIS_TEST_POSTGRES` names a server).
#![cfg(feature = "ssr")]

use portcullis_app::domain::audit::ChainStatus;
use portcullis_app::domain::jit::{JitPolicy, Port, PortRuleInput, Protocol};
use portcullis_app::domain::request::{PortStatus, RequestSpec, RequestStatus};
use portcullis_app::domain::{Cidr, Visibility};
use portcullis_app::store::test_support::fresh_database_url;
use portcullis_app::store::{
    NewLogEntry, NewUser, Store, StoreError, VmFields, VmListQuery, VmTab,
};

async fn fresh() -> (Store, tempfile::TempDir, String) {
    let (store, dir, user, _) = fresh_with_url().await;
    (store, dir, user)
}

/// Also the database URL, for a second store on the same database (another replica).
async fn fresh_with_url() -> (Store, tempfile::TempDir, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let url = fresh_database_url(dir.path(), "jit").await.unwrap();
    let store = Store::connect(&url).await.unwrap();
    let user = store
        .create_user(
            &NewUser {
                username: "rita",
                display_name: "Rita",
                password_hash: None,
                must_change_password: false,
            },
            &[],
        )
        .await
        .unwrap();
    (store, dir, user.id, url)
}

fn log(action: &str) -> NewLogEntry {
    NewLogEntry {
        actor: "test".into(),
        action: action.into(),
        result: "success".into(),
        ..Default::default()
    }
}

fn vm(name: &str, exposed: &str) -> VmFields {
    VmFields {
        name: name.into(),
        group: "prod".into(),
        addresses: "198.51.100.5".into(),
        os: "linux".into(),
        exposed_ports: exposed.into(),
    }
}

fn policy(ports: &[&str], approval: bool) -> JitPolicy {
    let rows: Vec<PortRuleInput> = ports
        .iter()
        .map(|p| PortRuleInput {
            enabled: Some("on".into()),
            port: p.to_string(),
            protocol: "tcp".into(),
            max_minutes: "60".into(),
            approval_required: approval.then(|| "on".into()),
            ..Default::default()
        })
        .collect();
    JitPolicy::parse(&rows).unwrap()
}

/// A VM with a JIT policy on the given ports.
async fn vm_with_policy(
    store: &Store,
    name: &str,
    ports: &[&str],
    approval: bool,
) -> portcullis_app::store::StoredVm {
    let v = store
        .create_vm(&vm(name, ""), log("vm.create"))
        .await
        .unwrap();
    store
        .set_policies(
            std::slice::from_ref(&v.id),
            &policy(ports, approval),
            "admin",
            vec![log("policy.create")],
        )
        .await
        .unwrap();
    v
}

fn spec(port: &str, source: &str, secs: i64, approval: bool) -> RequestSpec {
    RequestSpec {
        ports: vec![(Port::parse(port).unwrap(), Protocol::Tcp)],
        source: Cidr::parse(source).unwrap(),
        duration_secs: secs,
        justification: "maintenance".into(),
        needs_approval: approval,
    }
}

fn all() -> Visibility {
    Visibility {
        everything: true,
        ..Default::default()
    }
}

fn tab(tab: VmTab, search: &str) -> VmListQuery {
    VmListQuery {
        tab,
        search: search.into(),
        sort: "name".into(),
        desc: false,
        offset: 0,
        limit: 25,
        scope: all(),
        only_id: None,
    }
}

#[tokio::test]
async fn vms_are_unique_and_logged_with_their_change() {
    let (store, _d, _) = fresh().await;
    store
        .create_vm(&vm("web-1", ""), log("vm.create"))
        .await
        .unwrap();
    assert!(matches!(
        store.create_vm(&vm("web-1", ""), log("vm.create")).await,
        Err(StoreError::Duplicate)
    ));
    let (entries, total) = store.query_log(&Default::default()).await.unwrap();
    assert_eq!(total, 1, "the failed insert logged nothing: {entries:?}");
}

#[tokio::test]
async fn tabs_split_vms_by_policy_and_exposure_with_search_and_paging() {
    let (store, _d, _) = fresh().await;
    for i in 0..30 {
        store
            .create_vm(
                &vm(&format!("app-{i:02}"), if i % 3 == 0 { "22" } else { "" }),
                log("vm.create"),
            )
            .await
            .unwrap();
    }
    let configured = store.get_vm_by_name("app-01").await.unwrap().unwrap();
    store
        .set_policies(
            std::slice::from_ref(&configured.id),
            &policy(&["22"], false),
            "admin",
            vec![log("policy.create")],
        )
        .await
        .unwrap();

    let (rows, total) = store.list_vms(&tab(VmTab::Configured, "")).await.unwrap();
    assert_eq!((rows.len(), total), (1, 1));
    let (_, total) = store.list_vms(&tab(VmTab::Recommended, "")).await.unwrap();
    assert_eq!(total, 10);
    let (rows, total) = store
        .list_vms(&tab(VmTab::NotConfigured, ""))
        .await
        .unwrap();
    assert_eq!(total, 19);
    assert_eq!(rows.len(), 19);
    let mut q = tab(VmTab::All, "APP-2");
    q.desc = true;
    let (rows, total) = store.list_vms(&q).await.unwrap();
    assert_eq!(total, 10);
    assert_eq!(rows[0].vm.name, "app-29");
    let mut q = tab(VmTab::All, "");
    q.offset = 25;
    let (rows, total) = store.list_vms(&q).await.unwrap();
    assert_eq!((rows.len(), total), (5, 30));
    let mut q = tab(VmTab::All, "");
    q.scope = Visibility {
        everything: false,
        groups: vec![],
        vm_ids: vec![configured.id.clone()],
    };
    let (rows, _) = store.list_vms(&q).await.unwrap();
    assert_eq!(rows.len(), 1, "scoped users see only their VMs");
    q.scope = Visibility::default();
    assert_eq!(store.list_vms(&q).await.unwrap().1, 0, "no scope, no VMs");
}

#[tokio::test]
async fn requests_become_grants_in_the_desired_state() {
    let (store, _d, rita) = fresh().await;
    let v = store
        .create_vm(&vm("web-1", "22"), log("vm.create"))
        .await
        .unwrap();
    store
        .set_policies(
            std::slice::from_ref(&v.id),
            &policy(&["22", "2222"], false),
            "admin",
            vec![log("policy.create")],
        )
        .await
        .unwrap();
    let (g0, grants) = store.desired_state(&v.id, now()).await.unwrap().unwrap();
    assert!(grants.is_empty());

    let first = store
        .create_request(
            "b1",
            &v.id,
            &rita,
            &spec("22", "203.0.113.7", 600, false),
            log("request"),
        )
        .await
        .unwrap();
    let (g1, grants) = store.desired_state(&v.id, now()).await.unwrap().unwrap();
    assert!(g1 > g0, "generation moves on every change");
    assert_eq!(grants.len(), 1);
    assert_eq!(grants[0].source, "203.0.113.7/32");
    assert_eq!(grants[0].port, 22);
    assert!(grants[0].expires_at > now() + 590_000);

    // A newer request for the same port and source supersedes the old grant.
    let second = store
        .create_request(
            "b2",
            &v.id,
            &rita,
            &spec("22", "203.0.113.7", 1200, false),
            log("request"),
        )
        .await
        .unwrap();
    let (_, grants) = store.desired_state(&v.id, now()).await.unwrap().unwrap();
    assert_eq!(grants.len(), 1);
    assert!(grants[0].expires_at > now() + 1_190_000);
    let old = store.get_request(&first).await.unwrap().unwrap();
    assert_eq!(old.ports[0].status, PortStatus::Superseded);

    // Revoke removes it; extend moves its end.
    let end = now() + 30 * 60_000;
    assert!(
        store
            .extend_request(&second, end, log("extend"))
            .await
            .unwrap()
    );
    assert_eq!(
        store.desired_state(&v.id, now()).await.unwrap().unwrap().1[0].expires_at,
        end
    );
    assert!(
        store
            .revoke_request(&second, "revoked by user", log("revoke"))
            .await
            .unwrap()
    );
    assert!(
        store
            .desired_state(&v.id, now())
            .await
            .unwrap()
            .unwrap()
            .1
            .is_empty()
    );
    let r = store.get_request(&second).await.unwrap().unwrap();
    assert_eq!(r.status, RequestStatus::Revoked);
    assert_eq!(r.ports[0].status_reason, "revoked by user");
    assert!(
        !store
            .revoke_request(&second, "again", log("revoke"))
            .await
            .unwrap(),
        "already ended"
    );
}

fn now() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

#[tokio::test]
async fn approval_gates_the_grant_and_denial_ends_the_request() {
    let (store, _d, rita) = fresh().await;
    let v = vm_with_policy(&store, "win-1", &["3389"], true).await;
    let a = store
        .create_request(
            "b",
            &v.id,
            &rita,
            &spec("3389", "198.51.100.0/24", 600, true),
            log("request"),
        )
        .await
        .unwrap();
    let r = store.get_request(&a).await.unwrap().unwrap();
    assert_eq!(r.status, RequestStatus::PendingApproval);
    assert_eq!(r.ports[0].status, PortStatus::Pending);
    assert!(
        store
            .desired_state(&v.id, now())
            .await
            .unwrap()
            .unwrap()
            .1
            .is_empty()
    );
    assert!(
        store
            .approve_request(&a, "alice", "ok", log("approve"))
            .await
            .unwrap()
    );
    assert!(
        !store
            .approve_request(&a, "bob", "ok", log("approve"))
            .await
            .unwrap(),
        "decided once"
    );
    assert_eq!(
        store
            .desired_state(&v.id, now())
            .await
            .unwrap()
            .unwrap()
            .1
            .len(),
        1
    );
    let r = store.get_request(&a).await.unwrap().unwrap();
    assert_eq!(
        (r.status, r.decided_by.as_deref()),
        (RequestStatus::Active, Some("alice"))
    );

    let b = store
        .create_request(
            "b",
            &v.id,
            &rita,
            &spec("3389", "198.51.100.7", 600, true),
            log("request"),
        )
        .await
        .unwrap();
    assert!(
        store
            .deny_request(&b, "alice", "not now", log("deny"))
            .await
            .unwrap()
    );
    let r = store.get_request(&b).await.unwrap().unwrap();
    assert_eq!(
        (r.status, r.ports[0].status),
        (RequestStatus::Denied, PortStatus::Denied)
    );
    assert_eq!(r.decision_comment, "not now");
}

#[tokio::test]
async fn grants_expire_on_time_and_are_logged() {
    let (store, _d, rita) = fresh().await;
    let v = vm_with_policy(&store, "web-2", &["22"], false).await;
    let id = store
        .create_request(
            "b",
            &v.id,
            &rita,
            &spec("22", "203.0.113.7", 1, false),
            log("request"),
        )
        .await
        .unwrap();
    assert_eq!(store.expire_due(now()).await.unwrap(), 0, "not yet");
    let next = store.next_expiry().await.unwrap().unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(
        (next - now()).max(0) as u64 + 20,
    ))
    .await;
    let (g_before, _) = store.desired_state(&v.id, now()).await.unwrap().unwrap();
    assert_eq!(store.expire_due(now()).await.unwrap(), 1);
    let (g_after, grants) = store.desired_state(&v.id, now()).await.unwrap().unwrap();
    assert!(grants.is_empty() && g_after > g_before);
    let r = store.get_request(&id).await.unwrap().unwrap();
    assert_eq!(
        (r.status, r.ports[0].status),
        (RequestStatus::Expired, PortStatus::Expired)
    );
    let (entries, _) = store
        .query_log(&portcullis_app::store::LogQuery {
            action: Some("expire".into()),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].content.vm, "web-2");
    assert!(store.next_expiry().await.unwrap().is_none());
}

/// Every replica runs the expiry job; each grant still ends once, with one log entry.
#[tokio::test]
async fn expiry_racing_in_two_replicas_ends_each_grant_once() {
    let (store, _d, rita, url) = fresh_with_url().await;
    let other = Store::connect(&url).await.unwrap();
    let v = vm_with_policy(&store, "web-3", &["22"], false).await;
    for i in 1..=10 {
        store
            .create_request(
                &format!("b{i}"),
                &v.id,
                &rita,
                &spec("22", &format!("203.0.113.{i}"), 1, false),
                log("request"),
            )
            .await
            .unwrap();
    }
    let next = store.next_expiry().await.unwrap().unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(
        (next - now()).max(0) as u64 + 1100,
    ))
    .await;
    let (a, b) = tokio::join!(store.expire_due(now()), other.expire_due(now()));
    assert_eq!(a.unwrap() + b.unwrap(), 10);
    let (entries, _) = store
        .query_log(&portcullis_app::store::LogQuery {
            action: Some("expire".into()),
            limit: 100,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(entries.len(), 10);
    assert!(matches!(
        store.verify_log().await.unwrap(),
        ChainStatus::Verified { .. }
    ));
}

#[tokio::test]
async fn removing_a_policy_ends_its_grants() {
    let (store, _d, rita) = fresh().await;
    let v = vm_with_policy(&store, "db-1", &["22", "5432"], false).await;
    store
        .create_request(
            "b",
            &v.id,
            &rita,
            &spec("5432", "203.0.113.7", 600, false),
            log("request"),
        )
        .await
        .unwrap();
    store
        .create_request(
            "b",
            &v.id,
            &rita,
            &spec("22", "203.0.113.7", 600, false),
            log("request"),
        )
        .await
        .unwrap();
    // Editing the policy to drop 5432 revokes that grant only.
    store
        .set_policies(
            std::slice::from_ref(&v.id),
            &policy(&["22"], false),
            "admin",
            vec![log("policy.update")],
        )
        .await
        .unwrap();
    let grants = store.desired_state(&v.id, now()).await.unwrap().unwrap().1;
    assert_eq!(grants.iter().map(|g| g.port).collect::<Vec<_>>(), vec![22]);
    assert!(
        store
            .delete_policy(&v.id, log("policy.delete"))
            .await
            .unwrap()
    );
    assert!(store.get_policy(&v.id).await.unwrap().is_none());
    assert!(
        store
            .desired_state(&v.id, now())
            .await
            .unwrap()
            .unwrap()
            .1
            .is_empty()
    );
}

#[tokio::test]
async fn the_log_chain_verifies_under_concurrency_and_detects_tampering() {
    let (store, _d, rita) = fresh().await;
    let v = vm_with_policy(&store, "web-3", &["22"], false).await;
    let mut tasks = Vec::new();
    for i in 0..25 {
        let (store, vm, rita) = (store.clone(), v.id.clone(), rita.clone());
        tasks.push(tokio::spawn(async move {
            store
                .create_request(
                    "b",
                    &vm,
                    &rita,
                    &spec("22", &format!("203.0.113.{i}"), 600, false),
                    log("request"),
                )
                .await
        }));
    }
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    assert_eq!(
        store
            .desired_state(&v.id, now())
            .await
            .unwrap()
            .unwrap()
            .1
            .len(),
        25
    );
    assert_eq!(
        store.verify_log().await.unwrap(),
        ChainStatus::Verified { entries: 27 }
    );
    store.tamper_with_log_entry(5, "mallory").await.unwrap();
    assert!(matches!(
        store.verify_log().await.unwrap(),
        ChainStatus::Broken { at_seq: 5, .. }
    ));
}
