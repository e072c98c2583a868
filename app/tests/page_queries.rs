//! The list pages read a page with a fixed number of SQL statements, however many rows it
//! shows (issue 18: one query per row made the Configured tab and the REST lists slow
//! with thousands of VMs), and the figures they show are right for every kind of row.
//!
//! Statements are counted as the driver logs them: sqlx emits one `sqlx::query` event per
//! statement it runs, which a tracing layer installed by this test binary only counts.
//! Tests here run one at a time, so that each count holds only its own statements.
#![cfg(feature = "ssr")]

mod common;

use common::*;
use portcullis_app::domain::{Role, Scope, Visibility};
use portcullis_app::services::{Actor, jit};
use portcullis_app::store::{VmListQuery, VmSummary, VmTab};
#[path = "common/statements.rs"]
mod counted;

static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The statements `run` makes: the fewest of three runs, so that a connection the pool
/// happens to open meanwhile (its set-up statements) does not count.
async fn statements<F, Fut, T>(run: F) -> usize
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = T>,
{
    let mut fewest = usize::MAX;
    for _ in 0..3 {
        let before = counted::settled().await;
        run().await;
        fewest = fewest.min(counted::settled().await - before);
    }
    fewest
}

fn page(tab: VmTab, search: &str, limit: i64) -> VmListQuery {
    VmListQuery {
        tab,
        search: search.into(),
        sort: "name".into(),
        desc: false,
        offset: 0,
        limit,
        scope: Visibility {
            everything: true,
            ..Default::default()
        },
        only_id: None,
    }
}

/// `n` VMs named `{prefix}-NN` under a policy on 22 and 3389, each with three grants in
/// force (from two requesters) and a request waiting for approval; and as many VMs
/// without a policy beside them.
async fn configured_vms(w: &World, admin: &Actor, users: &[Actor], prefix: &str, n: usize) {
    for i in 0..n {
        let vm = w.vm(admin, &format!("{prefix}-{i:02}"), "prod").await;
        w.policy(admin, &vm, &[rule("22"), with_approval(rule("3389"))])
            .await;
        w.request(&users[0], &vm, "22", "203.0.113.1", "5")
            .await
            .unwrap();
        w.request(&users[0], &vm, "22", "203.0.113.2", "60")
            .await
            .unwrap();
        w.request(&users[1], &vm, "22", "203.0.113.3", "30")
            .await
            .unwrap();
        w.request(&users[1], &vm, "3389", "203.0.113.4", "30")
            .await
            .unwrap();
        w.vm(admin, &format!("{prefix}-{i:02}-bare"), "prod").await;
    }
}

#[tokio::test]
async fn a_page_costs_the_same_statements_for_2_rows_as_for_20() {
    counted::install();
    let _alone = ONE_AT_A_TIME.lock().await;
    let w = world().await;
    let admin = w.admin().await;
    let users = [
        w.user("rita", &[(Role::Requester, Scope::All)]).await,
        w.user("sam", &[(Role::Requester, Scope::All)]).await,
    ];
    configured_vms(&w, &admin, &users, "vm", 20).await;
    let store = &w.store;

    let configured = |limit| {
        let q = page(VmTab::Configured, "", limit);
        async move { store.list_vms(&q).await.unwrap() }
    };
    assert_eq!(configured(20).await.0.len(), 20);
    assert!(
        configured(20)
            .await
            .0
            .iter()
            .all(|r| r.active_grants.len() == 3),
        "every row has its figures"
    );
    let (two, twenty) = (
        statements(|| configured(2)).await,
        statements(|| configured(20)).await,
    );
    assert!(two >= 2, "the counter sees the driver's statements: {two}");
    assert_eq!(two, twenty, "Configured tab: 2 rows vs 20 rows");

    // The REST VM list (all tabs mixed) and the portal's tab go through the service.
    let all = |limit| {
        let q = page(VmTab::All, "", limit);
        let admin = &admin;
        async move { jit::list_vms(store, admin, q).await.unwrap() }
    };
    assert_eq!(all(40).await.0.len(), 40);
    let (four, forty) = (statements(|| all(4)).await, statements(|| all(40)).await);
    assert_eq!(four, forty, "VM list, all tabs: 4 rows vs 40 rows");

    let policies = |limit| {
        let admin = &admin;
        async move { jit::list_policies(store, admin, 0, limit).await.unwrap() }
    };
    assert_eq!(policies(20).await.0.len(), 20);
    assert!(policies(20).await.0.iter().all(|(_, p)| p.rules.len() == 2));
    let (two_policies, twenty_policies) = (
        statements(|| policies(2)).await,
        statements(|| policies(20)).await,
    );
    assert_eq!(two_policies, twenty_policies, "policy list: 2 vs 20");

    // The policy form and the request blade, opened on VMs chosen in a tab.
    let (rows, _) = configured(20).await;
    let ids: Vec<String> = rows.iter().map(|r| r.vm.id.clone()).collect();
    let edit = |n: usize| {
        let (admin, ids) = (&admin, &ids[..n]);
        async move { jit::policies_for_edit(store, admin, ids).await.unwrap() }
    };
    assert!(edit(20).await.iter().all(|(_, p)| p.is_some()));
    let (edit_two, edit_twenty) = (statements(|| edit(2)).await, statements(|| edit(20)).await);
    assert_eq!(edit_two, edit_twenty, "policy form: 2 VMs vs 20");

    println!(
        "statements per page: Configured {two} (2 rows) / {twenty} (20 rows); all VMs {four} / \
         {forty}; policies {two_policies} / {twenty_policies}; policy form {edit_two} / {edit_twenty}"
    );
}

/// What a row shows: has a policy, approved in 7 days, last access, last user, and the
/// grants in force (port, source, end).
type Figures<'a> = (
    bool,
    i64,
    Option<i64>,
    Option<&'a str>,
    Vec<(i64, &'a str, i64)>,
);

fn figures(r: &VmSummary) -> Figures<'_> {
    (
        r.has_policy,
        r.approved_last_7d,
        r.last_access_at,
        r.last_user.as_deref(),
        r.active_grants
            .iter()
            .map(|(port, _, source, end)| (*port, source.as_str(), *end))
            .collect(),
    )
}

#[tokio::test]
async fn figures_of_a_mixed_page_are_those_of_each_vm() {
    counted::install();
    let _alone = ONE_AT_A_TIME.lock().await;
    let w = world().await;
    let admin = w.admin().await;
    let rita = w.user("rita", &[(Role::Requester, Scope::All)]).await;
    let sam = w.user("sam", &[(Role::Requester, Scope::All)]).await;
    let busy = w.vm(&admin, "a-busy", "prod").await;
    let waiting = w.vm(&admin, "b-waiting", "prod").await;
    let quiet = w.vm(&admin, "c-quiet", "prod").await;
    let dropped = w.vm(&admin, "d-dropped", "prod").await;
    w.vm(&admin, "e-bare", "prod").await;
    w.policy(&admin, &busy, &[rule("22")]).await;
    w.policy(&admin, &waiting, &[with_approval(rule("22"))])
        .await;
    w.policy(&admin, &quiet, &[rule("22")]).await;
    w.policy(&admin, &dropped, &[rule("22")]).await;

    // Eight days ago: a grant long expired, outside the week, and no longer the last.
    w.request(&rita, &busy, "22", "203.0.113.9", "60")
        .await
        .unwrap();
    w.request(&sam, &dropped, "22", "203.0.113.9", "60")
        .await
        .unwrap();
    w.clock.advance_secs(8 * 24 * 3600);
    w.store.expire_due(w.clock.now()).await.unwrap();
    // The last policy goes: its VM shows no figures, whatever its past.
    jit::remove_policy(&w.store, &admin, &dropped.id)
        .await
        .unwrap();
    let sam_at = w.clock.now();
    w.request(&sam, &busy, "22", "203.0.113.7", "60")
        .await
        .unwrap();
    w.clock.advance_secs(60);
    // Started last but ends first: grants are listed by their end.
    let rita_at = w.clock.now();
    w.request(&rita, &busy, "22", "203.0.113.8", "30")
        .await
        .unwrap();
    w.request(&rita, &waiting, "22", "203.0.113.8", "30")
        .await
        .unwrap();

    let expected = [
        (
            "a-busy",
            (
                true,
                2,
                Some(rita_at),
                Some("rita"),
                vec![
                    (22, "203.0.113.8/32", rita_at + 30 * 60_000),
                    (22, "203.0.113.7/32", sam_at + 60 * 60_000),
                ],
            ),
        ),
        ("b-waiting", (true, 0, None, None, vec![])),
        ("c-quiet", (true, 0, None, None, vec![])),
        ("d-dropped", (false, 0, None, None, vec![])),
        ("e-bare", (false, 0, None, None, vec![])),
    ];
    let (rows, counts) = w.store.list_vms(&page(VmTab::All, "", 25)).await.unwrap();
    assert_eq!(counts.of(VmTab::All), 5);
    for ((name, want), row) in expected.iter().zip(&rows) {
        assert_eq!(&row.vm.name, name);
        assert_eq!(&figures(row), want, "{name}");
    }
    // The Configured tab and a single VM's page show the same figures.
    let (rows, _) = w
        .store
        .list_vms(&page(VmTab::Configured, "", 25))
        .await
        .unwrap();
    assert_eq!(rows.len(), 3);
    for ((name, want), row) in expected.iter().zip(&rows) {
        assert_eq!(&row.vm.name, name);
        assert_eq!(&figures(row), want, "{name} in the Configured tab");
    }
    let one = jit::vm_summary(&w.store, &admin, &busy.id).await.unwrap();
    assert_eq!(figures(&one), expected[0].1);

    // The approval started later than sam's and rita's grants: it is the last access now.
    w.clock.advance_secs(60);
    let approver = w.user("alex", &[(Role::Approver, Scope::All)]).await;
    let pending = w
        .store
        .list_requests(&portcullis_app::store::RequestFilter {
            vm_id: Some(waiting.id.clone()),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    portcullis_app::services::requests::approve(&w.store, &approver, &pending[0].id, "")
        .await
        .unwrap();
    let one = jit::vm_summary(&w.store, &admin, &waiting.id)
        .await
        .unwrap();
    let (_, approved, last_at, last_user, grants) = figures(&one);
    assert_eq!(
        (approved, last_at, last_user, grants.len()),
        (1, Some(w.clock.now()), Some("rita"), 1)
    );
}

#[tokio::test]
async fn an_activity_page_costs_the_same_statements_for_2_rows_as_for_40() {
    let _one = ONE_AT_A_TIME.lock().await;
    counted::install();
    let w = world().await;
    let auditor = w.user("auditor", &[(Role::Reader, Scope::All)]).await;
    for i in 0..60 {
        w.store
            .log_event(portcullis_app::store::NewLogEntry {
                actor: format!("user{i:02}"),
                action: "request".into(),
                vm: format!("web-{i:02}"),
                result: "success".into(),
                ..Default::default()
            })
            .await
            .unwrap();
    }
    let store = &w.store;
    let page = |limit: i64| {
        let auditor = &auditor;
        let q = portcullis_app::store::LogQuery {
            vm: Some("WEB".into()),
            actor: Some("user".into()),
            action: Some("request".into()),
            limit,
            ..Default::default()
        };
        async move {
            portcullis_app::services::activity::browse(store, auditor, q, 50)
                .await
                .unwrap()
        }
    };
    let b = page(40).await;
    assert_eq!((b.entries.len(), b.total), (40, 60));
    assert_eq!(b.suggestions.vms.len(), 50, "suggestions are bounded");
    let (two, forty) = (statements(|| page(2)).await, statements(|| page(40)).await);
    assert!(two >= 4, "the counter sees the driver's statements: {two}");
    assert_eq!(two, forty, "activity page: 2 rows vs 40 rows");
}
