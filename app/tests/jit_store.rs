//! Store tests for VMs, policies, requests, grants and the activity log, each on a fresh
//! database (SQLite, or PostgreSQL when `PORTCULLIS_TEST_POSTGRES` names a server) and a
//! clock the test moves.
#![cfg(feature = "ssr")]

mod common;

use common::*;
use portcullis_app::domain::jit::{Port, Protocol};
use portcullis_app::domain::request::{PortStatus, RequestSpec, RequestStatus};
use portcullis_app::domain::vm::VmSpec;
use portcullis_app::domain::{Cidr, Role, Scope, Visibility};
use portcullis_app::services::enrollment::EnrollTarget;
use portcullis_app::services::{Actor, jit, requests};
use portcullis_app::store::{
    SearchPlan, StoreError, StoredVm, Verification, VmFields, VmListQuery, VmTab,
};

/// A world with an administrator and rita, a requester over everything.
async fn fresh() -> (World, Actor, Actor) {
    let w = world().await;
    let admin = w.admin().await;
    let rita = w.user("rita", &[(Role::Requester, Scope::All)]).await;
    (w, admin, rita)
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

/// A VM with a JIT policy on the given ports.
async fn vm_with_policy(
    w: &World,
    admin: &Actor,
    name: &str,
    ports: &[&str],
    approval: bool,
) -> StoredVm {
    let v = w.vm(admin, name, "prod").await;
    let rows: Vec<_> = ports
        .iter()
        .map(|p| {
            if approval {
                with_approval(rule(p))
            } else {
                rule(p)
            }
        })
        .collect();
    w.policy(admin, &v, &rows).await;
    v
}

fn spec(port: &str, source: &str, secs: i64, approval: bool) -> RequestSpec {
    RequestSpec {
        ports: vec![(Port::parse(port).unwrap(), Protocol::Tcp)],
        source: Cidr::parse(source).unwrap(),
        duration_secs: secs,
        justification: "maintenance".into(),
        needs_approval: approval,
        approval_timeout_secs: approval.then_some(3600),
        approvals_required: Default::default(),
        start_at: None,
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
    let (w, _, _) = fresh().await;
    let store = &w.store;
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

/// The names of the VMs a search of the All tab finds, sorted; the tab's count agrees.
async fn names_found(store: &portcullis_app::store::Store, search: &str) -> Vec<String> {
    let (rows, total) = store.list_vms(&tab(VmTab::All, search)).await.unwrap();
    assert_eq!(total.of(VmTab::All), rows.len() as i64, "{search}");
    let mut names: Vec<String> = rows.into_iter().map(|r| r.vm.name).collect();
    names.sort();
    names
}

/// A search ignores the case of ASCII letters and matches every other character as typed,
/// on both backends: before, the search was lower-cased whole and SQLite's lower() folds
/// ASCII alone, so on SQLite typing a non-ASCII name exactly as it is found nothing.
#[tokio::test]
async fn a_search_finds_names_as_typed_and_ignores_ascii_case() {
    let (w, _, _) = fresh().await;
    let store = &w.store;
    for (name, group) in [
        ("Serveur-Été-1", "Équipe-Nord"),
        ("serveur-2", "équipe-sud"),
        ("db_1", "prod"),
        ("db-1", "prod"),
    ] {
        let mut fields = vm(name, "");
        fields.group = group.into();
        store.create_vm(&fields, log("vm.create")).await.unwrap();
    }
    let found = |search: &'static str| names_found(store, search);
    assert_eq!(found("Serveur-Été-1").await, ["Serveur-Été-1"]);
    assert_eq!(found("SERVEUR-Été").await, ["Serveur-Été-1"]);
    assert_eq!(found("Équipe-Nord").await, ["Serveur-Été-1"]);
    assert_eq!(found("ÉQUIPE").await, ["Serveur-Été-1"]);
    assert_eq!(found("équipe").await, ["serveur-2"]);
    assert_eq!(found("SERVEUR").await, ["Serveur-Été-1", "serveur-2"]);
    assert_eq!(found("DB_").await, ["db_1"], "a typed wildcard is itself");
    assert_eq!(found("b%1").await, Vec::<String>::new());
}

/// SQLite answers a search of three characters or more from an index that triggers keep
/// (migration 0022): a renamed, regrouped or deleted VM is found by what it holds now, a
/// VM is found as soon as it is written, and FTS5's query syntax typed into the box
/// matches as plain text. PostgreSQL runs the same test on its trigram indexes.
#[tokio::test]
async fn a_search_finds_vms_as_they_are_now_and_takes_typed_syntax_as_text() {
    let (w, admin, _) = fresh().await;
    let store = &w.store;
    let moved = w.vm(&admin, "web-alpha", "blue-team").await;
    let renamed = w.vm(&admin, "web-bravo", "blue-team").await;
    let gone = w.vm(&admin, "web-charlie", "blue-team").await;
    // The portal allows letters, digits and - _ . only; the store holds whatever was
    // written before that rule, and the search must not trip over it.
    for name in [
        "odd\"quote",
        "star*and OR(x)",
        "near NEAR(a b)",
        "caret^col:x",
    ] {
        store
            .create_vm(&vm(name, ""), log("vm.create"))
            .await
            .unwrap();
    }
    let found = |search: &'static str| names_found(store, search);
    assert_eq!(
        found("blue-team").await,
        ["web-alpha", "web-bravo", "web-charlie"]
    );

    let spec =
        |name: &str, group: &str| VmSpec::parse(name, group, "198.51.100.5", "linux", "").unwrap();
    jit::update_vm(store, &admin, &moved.id, spec("web-alpha", "red-team"))
        .await
        .unwrap();
    jit::update_vm(store, &admin, &renamed.id, spec("db-bravo", "blue-team"))
        .await
        .unwrap();
    jit::delete_vm(store, &admin, &gone.id).await.unwrap();
    assert_eq!(found("blue-team").await, ["db-bravo"]);
    assert_eq!(found("RED-TEAM").await, ["web-alpha"]);
    assert_eq!(found("web-").await, ["web-alpha"]);
    assert_eq!(found("charlie").await, Vec::<String>::new());
    assert_eq!(found("db-bra").await, ["db-bravo"]);

    assert_eq!(found("d\"q").await, ["odd\"quote"]);
    assert_eq!(found("r*a").await, ["star*and OR(x)"]);
    assert_eq!(found("OR(").await, ["star*and OR(x)"]);
    assert_eq!(found("NEAR(a").await, ["near NEAR(a b)"]);
    assert_eq!(found("^col:").await, ["caret^col:x"]);
    assert_eq!(found("\"\"\"").await, Vec::<String>::new());
    assert_eq!(
        found("ar").await,
        ["caret^col:x", "near NEAR(a b)", "star*and OR(x)"]
    );
}

/// On SQLite, a search by a viewer who sees every VM is answered from the search index
/// (0024): its counts, and its pages sorted by name from the names the index's keys carry.
/// A viewer who sees the same VMs through their groups walks the tabs instead. Both must
/// see the same titles and the same pages, in either direction, page after page, with
/// names whose case sorts them apart.
#[tokio::test]
async fn a_search_pages_the_same_from_the_index_as_by_walking_the_tabs() {
    let (w, admin, _) = fresh().await;
    let store = &w.store;
    let mut made = Vec::new();
    for i in 0..36 {
        let name = match i % 4 {
            0 => format!("Web-{i:02}"),
            1 => format!("web-{i:02}"),
            2 => format!("db-{i:02}"),
            _ => format!("WEB_{i:02}"),
        };
        let exposed = if i % 3 == 0 { "22" } else { "" };
        let fields = VmFields {
            group: ["Blue", "red", "blue-web"][i % 3].into(),
            ..vm(&name, exposed)
        };
        made.push(store.create_vm(&fields, log("vm.create")).await.unwrap());
    }
    for v in made.iter().step_by(5) {
        w.policy(&admin, v, &[rule("22")]).await;
    }
    // Renamed VMs sort by their new names on both paths.
    for (i, new_name) in [(2, "a-web-02"), (5, "zz-web-05")] {
        let spec = VmSpec::parse(new_name, &made[i].group, "198.51.100.5", "linux", "").unwrap();
        jit::update_vm(store, &admin, &made[i].id, spec)
            .await
            .unwrap();
        made[i].name = new_name.into();
    }
    let by_groups = Visibility {
        groups: vec!["Blue".into(), "red".into(), "blue-web".into()],
        ..Default::default()
    };
    for search in ["web", "WEB-", "blue", "b-0", "eb_", "-1", "nothing"] {
        for t in [
            VmTab::All,
            VmTab::Configured,
            VmTab::Recommended,
            VmTab::NotConfigured,
            VmTab::Unsupported,
        ] {
            for desc in [false, true] {
                for offset in [0, 7, 14, 21] {
                    let q = VmListQuery {
                        desc,
                        offset,
                        limit: 7,
                        ..tab(t, search)
                    };
                    let page = |scope: Visibility| {
                        let q = VmListQuery { scope, ..q.clone() };
                        async move {
                            let (rows, counts) = store.list_vms(&q).await.unwrap();
                            let names: Vec<String> = rows.into_iter().map(|r| r.vm.name).collect();
                            (names, counts)
                        }
                    };
                    assert_eq!(
                        page(all()).await,
                        page(by_groups.clone()).await,
                        "{search:?} on {t:?}, desc {desc}, offset {offset}"
                    );
                }
            }
        }
    }
    // And the index did answer: the whole scope's "web" on All holds what a plain
    // filter of every name holds.
    let (rows, counts) = store
        .list_vms(&VmListQuery {
            limit: 500,
            ..tab(VmTab::All, "web")
        })
        .await
        .unwrap();
    let mut names: Vec<String> = rows.into_iter().map(|r| r.vm.name).collect();
    let mut expected: Vec<String> = made
        .iter()
        .filter(|v| holds(v, "web"))
        .map(|v| v.name.clone())
        .collect();
    assert_eq!(counts.of(VmTab::All), expected.len() as i64);
    names.sort();
    expected.sort();
    assert_eq!(names, expected);
}

/// Each plan a search can take gives the page that the tab's whole list, filtered, holds:
/// on SQLite the index's own page, or a walk of the tab narrowed by the index or not; on
/// PostgreSQL every match sorted, a walk that finds the page within its bound, one that
/// gives up and sorts every match then, or one that goes on to the end of the tab. The
/// plans' bounds are lowered to take each of them with 60 VMs.
#[tokio::test]
async fn a_search_pages_the_same_by_every_plan() {
    let (w, admin, _) = fresh().await;
    for i in 0..60 {
        // Matches of "early" come first in name order, those of "late" last.
        let name = match i {
            0..12 => format!("a-early-{i:02}"),
            48.. => format!("z-LATE-{i:02}"),
            _ => format!("m-{i:02}"),
        };
        let fields = VmFields {
            group: ["Blue", "red-late"][i % 2].into(),
            ..vm(&name, if i % 3 == 0 { "22" } else { "" })
        };
        let made = w.store.create_vm(&fields, log("vm.create")).await.unwrap();
        if i % 4 == 0 {
            w.policy(&admin, &made, &[rule("22")]).await;
        }
    }
    let tabs = [
        VmTab::All,
        VmTab::Configured,
        VmTab::Recommended,
        VmTab::NotConfigured,
        VmTab::Unsupported,
    ];
    // Lowered to nothing: SQLite walks the tabs without its index; PostgreSQL walks them
    // to the end, giving up on no walk.
    let low = SearchPlan {
        index_page_most: 0,
        narrow_most: 0,
        few_on_tab: 0,
        walk_beyond: 0,
        late_most: 0,
    };
    let plans = [
        SearchPlan::default(),
        low,
        // SQLite: the index counts, the walk fetches the matches by their keys.
        // PostgreSQL: a walk that gives up, then every match sorted.
        SearchPlan {
            narrow_most: 1_000,
            late_most: 1_000,
            ..low
        },
        // PostgreSQL: a walk that finds some pages within its bound and gives up on others.
        SearchPlan {
            walk_beyond: 20,
            late_most: 1_000,
            ..low
        },
    ];
    for search in [
        "early", "late-", "late", "-", "blue", "e-0", "late-5", "nothing",
    ] {
        for (sort, desc) in [
            ("name", false),
            ("name", true),
            ("group", false),
            ("os", true),
        ] {
            // The truth: each tab's whole list, unsearched, filtered here.
            let mut truth = Vec::new();
            for t in tabs {
                let (every, _) = w
                    .store
                    .list_vms(&VmListQuery {
                        sort: sort.into(),
                        desc,
                        limit: 500,
                        ..tab(t, "")
                    })
                    .await
                    .unwrap();
                let holding: Vec<String> = every
                    .into_iter()
                    .filter(|r| holds(&r.vm, search))
                    .map(|r| r.vm.name)
                    .collect();
                truth.push((t, holding));
            }
            // A viewer who sees every VM through their groups takes the plans of a scope.
            let scopes = [
                all(),
                Visibility {
                    groups: vec!["Blue".into(), "red-late".into()],
                    ..Default::default()
                },
            ];
            for (plan, scope) in plans
                .iter()
                .flat_map(|p| scopes.iter().map(move |s| (*p, s)))
            {
                let store = w.store.with_search_plan(plan);
                for (t, holding) in &truth {
                    for offset in [0, 5, 10, 40] {
                        let q = VmListQuery {
                            sort: sort.into(),
                            desc,
                            offset,
                            limit: 5,
                            scope: scope.clone(),
                            ..tab(*t, search)
                        };
                        let (rows, counts) = store.list_vms(&q).await.unwrap();
                        let names: Vec<String> = rows.into_iter().map(|r| r.vm.name).collect();
                        let expected: Vec<String> = holding
                            .iter()
                            .skip(offset as usize)
                            .take(5)
                            .cloned()
                            .collect();
                        let context = format!(
                            "{search:?} on {t:?} by {sort}, desc {desc}, offset {offset}, \
                             {plan:?}, everything {}",
                            scope.everything
                        );
                        assert_eq!(names, expected, "{context}");
                        for (u, on_u) in &truth {
                            assert_eq!(counts.of(*u), on_u.len() as i64, "{u:?} of {context}");
                        }
                    }
                }
            }
        }
    }
}

/// Writes that skip the per-group counts' triggers (PostgreSQL's replication role, a
/// table restored without them) leave the counts wrong, and a search finds a group's VMs
/// through its row there: a server that starts counts them again, so the titles are right
/// and the group's VMs are found.
#[tokio::test]
async fn a_start_counts_the_groups_again_when_their_counts_drifted() {
    let (w, _, _) = fresh().await;
    for (name, group) in [("web-1", "Sales"), ("db-1", "Sales-EU"), ("db-2", "ops")] {
        let fields = VmFields {
            group: group.into(),
            ..vm(name, "")
        };
        w.store.create_vm(&fields, log("vm.create")).await.unwrap();
    }
    sqlx::any::install_default_drivers();
    let db = sqlx::AnyPool::connect(&w.url).await.unwrap();
    sqlx::query("DELETE FROM vm_tab_counts WHERE resource_group = 'Sales-EU'")
        .execute(&db)
        .await
        .unwrap();
    sqlx::query("UPDATE vm_tab_counts SET not_configured = 7 WHERE resource_group = 'ops'")
        .execute(&db)
        .await
        .unwrap();
    db.close().await;
    let store = w.replica().await;
    assert!(store.keeps_tab_counts());
    let (rows, counts) = store.list_vms(&tab(VmTab::All, "sales")).await.unwrap();
    let names: Vec<String> = rows.into_iter().map(|r| r.vm.name).collect();
    assert_eq!(names, ["db-1", "web-1"]);
    assert_eq!(counts.of(VmTab::NotConfigured), 2);
    let (_, counts) = store.list_vms(&tab(VmTab::All, "")).await.unwrap();
    assert_eq!(counts.of(VmTab::NotConfigured), 3);
    assert_eq!(store.repair_tab_counts().await.unwrap(), 0);
}

#[tokio::test]
async fn tabs_split_vms_by_policy_and_exposure_with_search_and_paging() {
    let (w, admin, _) = fresh().await;
    let store = &w.store;
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
    w.policy(&admin, &configured, &[rule("22")]).await;

    let (rows, total) = store.list_vms(&tab(VmTab::Configured, "")).await.unwrap();
    assert_eq!((rows.len(), total.of(VmTab::Configured)), (1, 1));
    let (_, total) = store.list_vms(&tab(VmTab::Recommended, "")).await.unwrap();
    assert_eq!(total.of(VmTab::Recommended), 10);
    // Every tab's count comes with any tab's page, under the same search.
    assert_eq!(
        (total.configured, total.not_configured, total.unsupported),
        (1, 19, 0)
    );
    let (rows, total) = store
        .list_vms(&tab(VmTab::NotConfigured, ""))
        .await
        .unwrap();
    assert_eq!(total.of(VmTab::NotConfigured), 19);
    assert_eq!(rows.len(), 19);
    let mut q = tab(VmTab::All, "APP-2");
    q.desc = true;
    let (rows, total) = store.list_vms(&q).await.unwrap();
    assert_eq!(total.of(VmTab::All), 10);
    assert_eq!(rows[0].vm.name, "app-29");
    // Under a search too, each tab counts its own VMs (one scan then, not four).
    let (_, total) = store
        .list_vms(&tab(VmTab::Recommended, "app-0"))
        .await
        .unwrap();
    assert_eq!(
        (
            total.configured,
            total.recommended,
            total.not_configured,
            total.unsupported
        ),
        (1, 4, 5, 0)
    );
    let mut q = tab(VmTab::All, "");
    q.offset = 25;
    let (rows, total) = store.list_vms(&q).await.unwrap();
    assert_eq!((rows.len(), total.of(VmTab::All)), (5, 30));
    let mut q = tab(VmTab::All, "");
    q.scope = Visibility {
        everything: false,
        groups: vec![],
        vm_ids: vec![configured.id.clone()],
    };
    let (rows, _) = store.list_vms(&q).await.unwrap();
    assert_eq!(rows.len(), 1, "scoped users see only their VMs");
    q.scope = Visibility::default();
    assert_eq!(
        store.list_vms(&q).await.unwrap().1.of(VmTab::All),
        0,
        "no scope, no VMs"
    );
}

#[tokio::test]
async fn requests_become_grants_in_the_desired_state() {
    let (w, admin, rita) = fresh().await;
    let store = &w.store;
    let v = w.vm(&admin, "web-1", "prod").await;
    w.policy(&admin, &v, &[rule("22"), rule("2222")]).await;
    let g0 = w.generation(&v).await;
    assert!(w.grants(&v).await.is_empty());

    let first = store
        .create_request(
            "b1",
            &v.id,
            &rita.user_id,
            &spec("22", "203.0.113.7", 600, false),
            log("request"),
        )
        .await
        .unwrap();
    let grants = w.grants(&v).await;
    assert!(
        w.generation(&v).await > g0,
        "generation moves on every change"
    );
    assert_eq!(grants.len(), 1);
    assert_eq!((grants[0].0.as_str(), grants[0].1), ("203.0.113.7/32", 22));
    assert_eq!(grants[0].2, w.clock.now() + 600_000);

    // A newer request of the same user for the same port and source supersedes the old
    // grant.
    w.clock.advance_secs(5);
    let second = store
        .create_request(
            "b2",
            &v.id,
            &rita.user_id,
            &spec("22", "203.0.113.7", 1200, false),
            log("request"),
        )
        .await
        .unwrap();
    let grants = w.grants(&v).await;
    assert_eq!(grants.len(), 1);
    assert_eq!(grants[0].2, w.clock.now() + 1_200_000);
    let old = w.request_row(&first).await;
    assert_eq!(old.ports[0].status, PortStatus::Superseded);
    assert_eq!(old.ports[0].status_reason, "superseded by a newer request");

    // Extend moves its end; revoke removes it.
    let end = w.clock.now() + 30 * 60_000;
    let mut tx = store.begin_write().await.unwrap();
    assert!(
        tx.extend_request(&second, end, log("extend"))
            .await
            .unwrap()
    );
    tx.commit().await.unwrap();
    assert_eq!(w.grants(&v).await[0].2, end);
    requests::revoke(store, &rita, &second).await.unwrap();
    assert!(w.grants(&v).await.is_empty());
    let r = w.request_row(&second).await;
    assert_eq!(r.status, RequestStatus::Revoked);
    assert_eq!(r.ports[0].status_reason, "revoked by user");
    assert!(
        requests::revoke(store, &rita, &second).await.is_err(),
        "already ended"
    );
}

#[tokio::test]
async fn approval_gates_the_grant_and_denial_ends_the_request() {
    let (w, admin, rita) = fresh().await;
    let store = &w.store;
    let alice = w.user("alice", &[(Role::Approver, Scope::All)]).await;
    let bob = w.user("bob", &[(Role::Approver, Scope::All)]).await;
    let v = vm_with_policy(&w, &admin, "win-1", &["3389"], true).await;
    let a = w
        .request(&rita, &v, "3389", "198.51.100.0/24", "10")
        .await
        .unwrap();
    let r = w.request_row(&a).await;
    assert_eq!(r.status, RequestStatus::PendingApproval);
    assert_eq!(r.ports[0].status, PortStatus::Pending);
    assert!(w.grants(&v).await.is_empty());
    requests::approve(store, &alice, &a, "ok").await.unwrap();
    assert!(
        requests::approve(store, &bob, &a, "ok").await.is_err(),
        "decided once"
    );
    assert_eq!(w.grants(&v).await.len(), 1);
    let r = w.request_row(&a).await;
    assert_eq!(
        (r.status, r.decided_by.as_deref()),
        (RequestStatus::Active, Some("alice"))
    );

    let b = w
        .request(&rita, &v, "3389", "198.51.100.7", "10")
        .await
        .unwrap();
    requests::deny(store, &alice, &b, "not now").await.unwrap();
    let r = w.request_row(&b).await;
    assert_eq!(
        (r.status, r.ports[0].status),
        (RequestStatus::Denied, PortStatus::Denied)
    );
    assert_eq!(r.decision_comment, "not now");
}

#[tokio::test]
async fn grants_expire_on_time_and_are_logged() {
    let (w, admin, rita) = fresh().await;
    let store = &w.store;
    let v = vm_with_policy(&w, &admin, "web-2", &["22"], false).await;
    let id = store
        .create_request(
            "b",
            &v.id,
            &rita.user_id,
            &spec("22", "203.0.113.7", 60, false),
            log("request"),
        )
        .await
        .unwrap();
    let end = w.clock.now() + 60_000;
    assert_eq!(store.next_expiry().await.unwrap(), Some(end));
    w.clock.advance_ms(59_999);
    assert_eq!(
        store.expire_due(w.clock.now()).await.unwrap(),
        (0, 0),
        "not yet"
    );
    w.clock.advance_ms(1);
    let g_before = w.generation(&v).await;
    assert_eq!(store.expire_due(w.clock.now()).await.unwrap(), (1, 0));
    assert!(w.grants(&v).await.is_empty() && w.generation(&v).await > g_before);
    let r = w.request_row(&id).await;
    assert_eq!(
        (r.status, r.ports[0].status),
        (RequestStatus::Expired, PortStatus::Expired)
    );
    assert_eq!(
        r.ports[0].end_at,
        Some(end),
        "an expiry keeps the end it had"
    );
    let entries = w.logged("expire").await;
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].content.vm, "web-2");
    assert!(store.next_expiry().await.unwrap().is_none());
}

/// Every replica runs the expiry job; each grant still ends once, with one log entry.
#[tokio::test]
async fn expiry_racing_in_two_replicas_ends_each_grant_once() {
    let (w, admin, rita) = fresh().await;
    let store = &w.store;
    let other = w.replica().await;
    let v = vm_with_policy(&w, &admin, "web-3", &["22"], false).await;
    for i in 1..=10 {
        store
            .create_request(
                &format!("b{i}"),
                &v.id,
                &rita.user_id,
                &spec("22", &format!("203.0.113.{i}"), 60, false),
                log("request"),
            )
            .await
            .unwrap();
    }
    w.clock.advance_secs(61);
    let now = w.clock.now();
    let (a, b) = tokio::join!(store.expire_due(now), other.expire_due(now));
    assert_eq!(a.unwrap().0 + b.unwrap().0, 10);
    assert_eq!(w.logged("expire").await.len(), 10);
    assert!(matches!(
        store.verify_log_full(None).await.unwrap(),
        Verification::Verified(_)
    ));
}

/// The store ends grants, closes requests and logs in slices of a few hundred rows a
/// statement: more than a slice holds still ends and logs each exactly once, closes each
/// request, and leaves a log that verifies.
#[tokio::test]
async fn ending_more_grants_and_requests_than_a_statement_names_misses_none() {
    let (w, admin, rita) = fresh().await;
    let store = &w.store;
    let a = vm_with_policy(&w, &admin, "bulk-a", &["22"], false).await;
    let b = vm_with_policy(&w, &admin, "bulk-b", &["22"], false).await;
    let mut open = Vec::new();
    let mut waiting = Vec::new();
    for i in 0..1_120 {
        let approval = i >= 600;
        let id = store
            .create_request(
                &format!("b{i}"),
                &a.id,
                &rita.user_id,
                &spec("22", &format!("2001:db8::{i:x}"), 3600, approval),
                log("request"),
            )
            .await
            .unwrap();
        if approval {
            waiting.push(id)
        } else {
            open.push(id)
        }
    }
    for i in 0..250 {
        store
            .create_request(
                &format!("e{i}"),
                &b.id,
                &rita.user_id,
                &spec("22", &format!("2001:db8:1::{i:x}"), 60, false),
                log("request"),
            )
            .await
            .unwrap();
    }
    assert_eq!(w.grants(&a).await.len(), 600);
    let generation = w.generation(&a).await;

    jit::remove_policy(store, &admin, &a.id).await.unwrap();
    assert!(w.grants(&a).await.is_empty());
    assert_eq!(
        w.generation(&a).await,
        generation + 2,
        "bumped for the policy and for its grants, not for each grant"
    );
    let revoked = w.logged("revoke").await;
    let sources: std::collections::HashSet<&str> =
        revoked.iter().map(|e| e.content.source.as_str()).collect();
    assert_eq!(
        (revoked.len(), sources.len()),
        (600, 600),
        "each grant logged once"
    );
    assert_eq!(w.logged("request.cancel").await.len(), 520);
    for id in [&open[0], &open[499], &open[500], &open[599]] {
        let r = w.request_row(id).await;
        assert_eq!(
            (r.status, r.ports[0].status),
            (RequestStatus::Revoked, PortStatus::Revoked),
            "{id}"
        );
    }
    for id in [&waiting[0], &waiting[499], &waiting[500], &waiting[519]] {
        let r = w.request_row(id).await;
        assert_eq!(r.ports[0].status, PortStatus::Cancelled, "{id}");
    }

    // The expiry job, in its batches.
    w.clock.advance_secs(61);
    assert_eq!(store.expire_due(w.clock.now()).await.unwrap(), (250, 0));
    assert!(w.grants(&b).await.is_empty());
    assert_eq!(w.logged("expire").await.len(), 250);
    assert!(matches!(
        store.verify_log_full(None).await.unwrap(),
        Verification::Verified(_)
    ));
}

#[tokio::test]
async fn removing_a_policy_ends_its_grants() {
    let (w, admin, rita) = fresh().await;
    let store = &w.store;
    let v = vm_with_policy(&w, &admin, "db-1", &["22", "5432"], false).await;
    w.request(&rita, &v, "5432", "203.0.113.7", "10")
        .await
        .unwrap();
    w.request(&rita, &v, "22", "203.0.113.7", "10")
        .await
        .unwrap();
    // Editing the policy to drop 5432 revokes that grant only.
    w.policy(&admin, &v, &[rule("22")]).await;
    let grants = w.grants(&v).await;
    assert_eq!(grants.iter().map(|g| g.1).collect::<Vec<_>>(), vec![22]);
    jit::remove_policy(store, &admin, &v.id).await.unwrap();
    assert!(store.get_policy(&v.id).await.unwrap().is_none());
    assert!(w.grants(&v).await.is_empty());
}

#[tokio::test]
async fn the_log_chain_verifies_under_concurrency_and_detects_tampering() {
    let (w, admin, rita) = fresh().await;
    let store = &w.store;
    let v = vm_with_policy(&w, &admin, "web-3", &["22"], false).await;
    let mut tasks = Vec::new();
    for i in 0..25 {
        let (store, vm, rita) = (store.clone(), v.id.clone(), rita.user_id.clone());
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
    assert_eq!(w.grants(&v).await.len(), 25);
    assert!(matches!(
        store.verify_log_full(None).await.unwrap(),
        Verification::Verified(cp) if cp.seq == 27
    ));
    store.tamper_with_log_entry(5, "mallory").await.unwrap();
    assert!(matches!(
        store.verify_log_full(None).await.unwrap(),
        Verification::Broken(b) if b.at_seq == 5
    ));
}

/// The tab a VM is on follows its policy from the moment the policy is saved or removed
/// (the store keeps `vms.jit_configured` in the policy's own transaction), and a VM whose
/// agent cannot enforce anything is on Unsupported, not Recommended, until it can.
#[tokio::test]
async fn a_vm_moves_between_tabs_with_its_policy_and_its_agents_errors() {
    let (w, admin, _) = fresh().await;
    let store = &w.store;
    store
        .create_vm(&vm("web-1", "22"), log("vm.create"))
        .await
        .unwrap();
    let v = store.get_vm_by_name("web-1").await.unwrap().unwrap();
    let on = |tab: VmTab| {
        let store = store.clone();
        async move {
            let (rows, counts) = store.list_vms(&self::tab(tab, "")).await.unwrap();
            let names: Vec<String> = rows.into_iter().map(|r| r.vm.name).collect();
            (names, counts.of(tab))
        }
    };
    assert_eq!(on(VmTab::Recommended).await, (vec!["web-1".to_owned()], 1));

    w.policy(&admin, &v, &[rule("22")]).await;
    assert_eq!(on(VmTab::Configured).await, (vec!["web-1".to_owned()], 1));
    assert_eq!(on(VmTab::Recommended).await.1, 0);
    jit::remove_policy(store, &admin, &v.id).await.unwrap();
    assert_eq!(on(VmTab::Configured).await.1, 0);
    assert_eq!(on(VmTab::Recommended).await, (vec!["web-1".to_owned()], 1));

    // An agent on a host without nftables.
    let agent_id = w.enrolled(&admin, EnrollTarget::Vm(&v.id), "web-1").await;
    let report =
        |error: &'static str, exposed: &'static str| w.report(&agent_id, &v, error, exposed);
    report("nft: No such file or directory (os error 2)", "22").await;
    assert_eq!(on(VmTab::Unsupported).await, (vec!["web-1".to_owned()], 1));
    assert_eq!(on(VmTab::Recommended).await.1, 0);
    assert_eq!(on(VmTab::NotConfigured).await.1, 0);
    assert_eq!(on(VmTab::All).await.1, 1, "the tabs split the VMs");

    // Fixed, and nothing listening on a management port: Not configured.
    report("", "").await;
    assert_eq!(on(VmTab::Unsupported).await.1, 0);
    assert_eq!(
        on(VmTab::NotConfigured).await,
        (vec!["web-1".to_owned()], 1)
    );
}

/// Whether `vm`'s name or group holds `folded` (lower-case ASCII), as a search means it.
fn holds(vm: &StoredVm, folded: &str) -> bool {
    vm.name.to_ascii_lowercase().contains(folded) || vm.group.to_ascii_lowercase().contains(folded)
}

/// The tab titles' counts, under `scope` and `search`, as `list_vms` gives them; the rows
/// its pages hold; and the VMs that hold the search, told apart here from the tab's whole
/// list: the counts kept per group (migration 0023), and those SQLite's search index
/// keeps per tab (0024), must be all three. (The pages alone could not tell a stale
/// index: they find their rows through it too.)
async fn counts_and_rows(
    store: &portcullis_app::store::Store,
    scope: &Visibility,
    search: &str,
) -> [(i64, i64, i64); 4] {
    let mut out = [(0, 0, 0); 4];
    let folded = search.to_ascii_lowercase();
    for (i, t) in [
        VmTab::Configured,
        VmTab::Recommended,
        VmTab::NotConfigured,
        VmTab::Unsupported,
    ]
    .into_iter()
    .enumerate()
    {
        let q = VmListQuery {
            scope: scope.clone(),
            limit: 500,
            ..tab(t, search)
        };
        let (rows, counts) = store.list_vms(&q).await.unwrap();
        let (every, _) = store
            .list_vms(&VmListQuery {
                search: String::new(),
                ..q
            })
            .await
            .unwrap();
        let holding = every.iter().filter(|r| holds(&r.vm, &folded)).count();
        out[i] = (counts.of(t), rows.len() as i64, holding as i64);
    }
    out
}

#[tokio::test]
async fn tab_counts_are_the_vms_on_the_tabs_after_every_kind_of_write() {
    let (w, admin, _) = fresh().await;
    let store = &w.store;
    // Or the titles would count the VMs, and this test would prove nothing.
    assert!(
        store.keeps_tab_counts(),
        "the tab counts' triggers are there"
    );
    assert_eq!(
        store.keeps_search_index(),
        !portcullis_app::store::test_support::on_postgres(),
        "SQLite's search index is kept"
    );
    let mut made = Vec::new();
    for (name, group, exposed) in [
        ("b-1", "blue", "22"),
        ("b-2", "blue", ""),
        ("b-3", "blue", "3389"),
        ("r-1", "red", "22"),
        ("r-2", "red", ""),
    ] {
        let made_vm = store
            .create_vm(
                &VmFields {
                    group: group.into(),
                    ..vm(name, exposed)
                },
                log("vm.create"),
            )
            .await
            .unwrap();
        made.push(made_vm);
    }
    let [b1, b2, b3, r1, r2] = <[StoredVm; 5]>::try_from(made).unwrap();
    let scopes = [
        all(),
        Visibility::default(),
        Visibility {
            groups: vec!["blue".into()],
            ..Default::default()
        },
        // A VM named outside the scope's groups counts; one inside them counts once.
        Visibility {
            groups: vec!["blue".into()],
            vm_ids: vec![r1.id.clone(), b1.id.clone()],
            ..Default::default()
        },
        Visibility {
            vm_ids: vec![r1.id.clone(), b2.id.clone()],
            ..Default::default()
        },
    ];
    // Searches of three characters or more are counted by SQLite's index under the
    // whole scope; shorter ones, and narrower scopes, count the VMs.
    let searches = ["", "-1", "BLUE", "red", "b-4", "-", "GREEN", "lue"];
    let check = |after: &'static str| {
        let scopes = scopes.clone();
        async move {
            for scope in &scopes {
                for search in searches {
                    let seen = counts_and_rows(store, scope, search).await;
                    for (count, rows, holding) in seen {
                        assert!(
                            count == rows && rows == holding,
                            "after {after}, under {scope:?}, search {search:?}: {seen:?}"
                        );
                    }
                }
            }
            counts_and_rows(store, &all(), "")
                .await
                .map(|(count, _, _)| count)
        }
    };
    assert_eq!(check("creating VMs").await, [0, 3, 2, 0]);

    w.policy(&admin, &b1, &[rule("22")]).await;
    w.policy(&admin, &r2, &[rule("22")]).await;
    assert_eq!(check("policies on").await, [2, 2, 1, 0]);
    jit::remove_policy(store, &admin, &r2.id).await.unwrap();
    assert_eq!(check("a policy off").await, [1, 2, 2, 0]);

    // Moved to another group, and its exposed ports changed with it.
    let spec = |name: &str, group: &str, exposed: &str| {
        VmSpec::parse(name, group, "198.51.100.5", "linux", exposed).unwrap()
    };
    jit::update_vm(store, &admin, &b3.id, spec("b-3", "red", ""))
        .await
        .unwrap();
    assert_eq!(check("a move to another group").await, [1, 1, 3, 0]);
    jit::update_vm(store, &admin, &b1.id, spec("b-1", "green", "22"))
        .await
        .unwrap();
    assert_eq!(check("a configured VM's move").await, [1, 1, 3, 0]);

    // An agent that registers its own VM, then reports an error and what listens.
    let agent_id = w.enrolled(&admin, EnrollTarget::Group("blue"), "b-4").await;
    assert_eq!(check("an agent registering its VM").await, [1, 1, 4, 0]);
    let b4 = store.get_vm_by_name("b-4").await.unwrap().unwrap();
    let report =
        |error: &'static str, exposed: &'static str| w.report(&agent_id, &b4, error, exposed);
    report("nft: No such file or directory (os error 2)", "22").await;
    assert_eq!(check("an agent's error").await, [1, 1, 3, 1]);
    report("", "22").await;
    assert_eq!(check("the error fixed").await, [1, 2, 3, 0]);

    jit::delete_vm(store, &admin, &b2.id).await.unwrap();
    jit::delete_vm(store, &admin, &b1.id).await.unwrap();
    assert_eq!(check("deletes").await, [0, 2, 2, 0]);
}

/// A request made through the store on `v` for `list` (port, protocol) from `source`,
/// opened at once.
async fn opened(
    w: &World,
    v: &StoredVm,
    who: &Actor,
    list: &[(&str, Protocol)],
    source: &str,
) -> String {
    let mut s = spec("22", source, 600, false);
    s.ports = list
        .iter()
        .map(|(p, pr)| (Port::parse(p).unwrap(), *pr))
        .collect();
    w.store
        .create_request("b", &v.id, &who.user_id, &s, log("request"))
        .await
        .unwrap()
}

/// A request's status and each port's, as "port/protocol Status".
async fn port_states(w: &World, id: &str) -> (RequestStatus, Vec<String>) {
    let r = w.request_row(id).await;
    let ports = r
        .ports
        .iter()
        .map(|p| format!("{}/{} {:?}", p.port, p.protocol, p.status))
        .collect();
    (r.status, ports)
}

/// A newer request supersedes the same requester's grants for its own ports (port and
/// protocol) on the same VM and source, and nothing else: not the other ports of the older
/// request, not the same port over another protocol, not another user's grant or another
/// source's; through an approval too. One entry per older request, its ports in order.
#[tokio::test]
async fn a_newer_request_supersedes_exactly_its_own_ports() {
    use Protocol::{Tcp, Udp};
    let (w, admin, rita) = fresh().await;
    let bob = w.user("bob", &[(Role::Requester, Scope::All)]).await;
    let alice = w.user("alice", &[(Role::Approver, Scope::All)]).await;
    let v = w.vm(&admin, "web-1", "prod").await;
    w.policy(&admin, &v, &[rule("22"), with_approval(rule("3389"))])
        .await;
    let a = "203.0.113.7";
    let older = opened(
        &w,
        &v,
        &rita,
        &[("22", Tcp), ("3389", Tcp), ("53", Udp), ("2222", Tcp)],
        a,
    )
    .await;
    let others = [
        opened(&w, &v, &bob, &[("22", Tcp)], a).await,
        opened(&w, &v, &rita, &[("22", Tcp)], "198.51.100.0/24").await,
        opened(&w, &v, &rita, &[("22", Tcp), ("53", Tcp), ("2222", Tcp)], a).await,
    ];
    let expect = |last: &str| {
        (
            RequestStatus::Active,
            vec![
                "22/tcp Superseded".to_owned(),
                "53/udp Active".to_owned(),
                "2222/tcp Superseded".to_owned(),
                format!("3389/tcp {last}"),
            ],
        )
    };
    assert_eq!(port_states(&w, &older).await, expect("Active"));
    for other in &others {
        assert_eq!(port_states(&w, other).await.0, RequestStatus::Active);
    }
    let entries = w.logged("supersede").await;
    assert_eq!(
        entries
            .iter()
            .map(|e| e.content.ports.as_str())
            .collect::<Vec<_>>(),
        ["22/tcp, 2222/tcp"],
        "one entry for the older request, its ports in order"
    );
    // An approval supersedes as a request opened at once does.
    let approved = w.request(&rita, &v, "3389", a, "10").await.unwrap();
    requests::approve(&w.store, &alice, &approved, "ok")
        .await
        .unwrap();
    assert_eq!(port_states(&w, &older).await, expect("Superseded"));
}
