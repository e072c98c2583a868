//! N-of-M approvals against the services and the store: a port rule may require several
//! distinct approvers; the request opens at the last of them, any denial ends it, nobody
//! approves twice or their own request, and the number is the policy's at decision time.
//! Each test runs on SQLite, and on PostgreSQL when `PORTCULLIS_TEST_POSTGRES` names a
//! server.
#![cfg(feature = "ssr")]

mod common;

use common::*;
use portcullis_app::domain::jit::PortRuleInput;
use portcullis_app::domain::notify::ChannelInput;
use portcullis_app::domain::request::{PortStatus, RequestStatus};
use portcullis_app::domain::{Role, Scope};
use portcullis_app::error::AppError;
use portcullis_app::services::{Actor, jit, notify, requests};
use portcullis_app::store::StoredVm;

fn conflict(e: AppError) -> String {
    match e {
        AppError::Conflict(message) => message,
        other => panic!("expected a conflict, got {other:?}"),
    }
}

/// Port 3389 with approval by `n` distinct approvers.
fn gated(n: &str) -> PortRuleInput {
    let mut r = with_approval(rule("3389"));
    r.approvals_required = n.into();
    r
}

struct Team {
    admin: Actor,
    rita: Actor,
    alice: Actor,
    bob: Actor,
    carol: Actor,
    vm: StoredVm,
}

/// Rita requests (and may approve too, so that only the own-request rule stops her);
/// Alice, Bob and Carol approve; win-1 needs `n` of them on port 3389.
async fn team(w: &World, n: &str) -> Team {
    let admin = w.admin().await;
    let rita = w
        .user(
            "rita",
            &[(Role::Requester, Scope::All), (Role::Approver, Scope::All)],
        )
        .await;
    let alice = w.user("alice", &[(Role::Approver, Scope::All)]).await;
    let bob = w.user("bob", &[(Role::Approver, Scope::All)]).await;
    let carol = w.user("carol", &[(Role::Approver, Scope::All)]).await;
    let vm = w.vm(&admin, "win-1", "prod").await;
    w.policy(&admin, &vm, &[gated(n)]).await;
    Team {
        admin,
        rita,
        alice,
        bob,
        carol,
        vm,
    }
}

/// The requests waiting in `who`'s approval queue.
async fn queue(w: &World, who: &Actor) -> Vec<String> {
    requests::approval_queue(&w.store, who, 1)
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|r| r.id)
        .collect()
}

/// Rows in a table, read behind the store's back.
async fn count(w: &World, sql: &str) -> i64 {
    use sqlx::Row;
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(&w.url).await.unwrap();
    let n = sqlx::query(sql)
        .fetch_one(&pool)
        .await
        .unwrap()
        .try_get::<i64, _>("n")
        .unwrap();
    pool.close().await;
    n
}

#[tokio::test]
async fn two_of_three_approvers_open_the_request_at_the_second_distinct_one() {
    let w = world().await;
    let t = team(&w, "2").await;
    // The requester hears of the approval through a route, written in the transaction.
    let (hook, _) = notify::create_channel(
        &w.store,
        &t.admin,
        &ChannelInput {
            name: "ops",
            kind: "webhook",
            target: "http://127.0.0.1:9/hook",
            secret: "a-signing-key-for-the-test",
            ..Default::default()
        },
    )
    .await
    .unwrap();
    notify::add_route(&w.store, &t.admin, &hook, "request.approved", "")
        .await
        .unwrap();
    let told = "SELECT COUNT(*) AS n FROM notification_outbox WHERE event = 'request.approved'";

    let id = w
        .request(&t.rita, &t.vm, "3389", "198.51.100.10", "30")
        .await
        .unwrap();
    let r = w.request_row(&id).await;
    assert_eq!((r.approvals, r.approvals_required), (0, 2));
    let before = w.generation(&t.vm).await;
    for who in [&t.alice, &t.bob, &t.carol] {
        assert_eq!(queue(&w, who).await, vec![id.clone()], "{}", who.username);
    }
    assert!(queue(&w, &t.rita).await.is_empty(), "not her own");

    // The first approval is recorded and logged; nothing opens.
    requests::approve(&w.store, &t.alice, &id, " first look ")
        .await
        .unwrap();
    let r = w.request_row(&id).await;
    assert_eq!(r.status, RequestStatus::PendingApproval);
    assert_eq!(r.ports[0].status, PortStatus::Pending);
    assert_eq!((r.approvals, r.approvals_required), (1, 2));
    // Her request page no longer offers her a decision; Bob's does.
    assert!(!requests::may_decide(&w.store, &t.alice, &r).await.unwrap());
    assert!(requests::may_decide(&w.store, &t.bob, &r).await.unwrap());
    assert!(!requests::may_decide(&w.store, &t.rita, &r).await.unwrap());
    assert!(w.grants(&t.vm).await.is_empty());
    assert_eq!(w.generation(&t.vm).await, before);
    let logged = w.logged("approve").await;
    assert_eq!(logged.len(), 1);
    assert_eq!(
        logged[0].content.detail,
        "1 of 2 approvals; request of rita; first look"
    );
    assert_eq!(logged[0].content.actor, "alice");
    assert_eq!(
        count(&w, told).await,
        0,
        "the requester is told only at the end"
    );

    // Still in the other approvers' queues, no longer in Alice's.
    assert!(queue(&w, &t.alice).await.is_empty());
    assert_eq!(queue(&w, &t.bob).await, vec![id.clone()]);
    assert_eq!(queue(&w, &t.carol).await, vec![id.clone()]);
    let mine = requests::my_requests(&w.store, &t.rita, 1).await.unwrap();
    assert_eq!(
        (mine.items[0].approvals, mine.items[0].approvals_required),
        (1, 2)
    );

    // Nobody counts twice, and nobody approves their own request.
    assert_eq!(
        conflict(
            requests::approve(&w.store, &t.alice, &id, "again")
                .await
                .unwrap_err()
        ),
        "You approved this request already."
    );
    assert_eq!(
        conflict(
            requests::approve(&w.store, &t.rita, &id, "mine")
                .await
                .unwrap_err()
        ),
        "You cannot approve your own request."
    );
    assert_eq!(w.request_row(&id).await.approvals, 1);
    assert_eq!(w.logged("approve").await.len(), 1);

    // The second distinct approver opens it: grants, a new generation, the requester told.
    requests::approve(&w.store, &t.bob, &id, "go")
        .await
        .unwrap();
    let r = w.request_row(&id).await;
    assert_eq!(r.status, RequestStatus::Active);
    assert_eq!(r.ports[0].status, PortStatus::Active);
    assert_eq!((r.approvals, r.approvals_required), (2, 2));
    assert_eq!(r.decided_by.as_deref(), Some("bob"));
    let grants = w.grants(&t.vm).await;
    assert_eq!(grants.len(), 1);
    assert_eq!(
        (grants[0].0.as_str(), grants[0].1),
        ("198.51.100.10/32", 3389)
    );
    assert_eq!(grants[0].2, w.clock.now() + 30 * 60_000);
    assert!(w.generation(&t.vm).await > before);
    let logged = w.logged("approve").await;
    assert_eq!(logged.len(), 2);
    assert_eq!(
        logged[1].content.detail,
        "2 of 2 approvals; request of rita; go"
    );
    assert_eq!(count(&w, told).await, 1);
    assert!(queue(&w, &t.carol).await.is_empty());
    assert_eq!(
        conflict(
            requests::approve(&w.store, &t.carol, &id, "late")
                .await
                .unwrap_err()
        ),
        "A request that is active cannot be approved."
    );

    // The approvals go with their request.
    jit::delete_vm(&w.store, &t.admin, &t.vm.id).await.unwrap();
    assert_eq!(
        count(&w, "SELECT COUNT(*) AS n FROM request_approvals").await,
        0
    );
}

#[tokio::test]
async fn a_denial_after_one_approval_ends_the_request() {
    let w = world().await;
    let t = team(&w, "2").await;
    let id = w
        .request(&t.rita, &t.vm, "3389", "198.51.100.10", "30")
        .await
        .unwrap();
    requests::approve(&w.store, &t.alice, &id, "fine by me")
        .await
        .unwrap();
    requests::deny(&w.store, &t.bob, &id, "not during the freeze")
        .await
        .unwrap();
    let r = w.request_row(&id).await;
    assert_eq!(r.status, RequestStatus::Denied);
    assert_eq!(r.ports[0].status, PortStatus::Denied);
    assert_eq!(r.decision_comment, "not during the freeze");
    assert!(w.grants(&t.vm).await.is_empty());
    assert!(queue(&w, &t.carol).await.is_empty());
    assert_eq!(
        conflict(
            requests::approve(&w.store, &t.carol, &id, "ok")
                .await
                .unwrap_err()
        ),
        "A request that is denied cannot be approved."
    );
    assert!(w.grants(&t.vm).await.is_empty());
}

#[tokio::test]
async fn the_number_of_approvers_is_the_policys_at_each_decision() {
    let w = world().await;
    let t = team(&w, "2").await;
    let id = w
        .request(&t.rita, &t.vm, "3389", "198.51.100.10", "30")
        .await
        .unwrap();
    requests::approve(&w.store, &t.alice, &id, "one")
        .await
        .unwrap();

    // An administrator raises the number to three between the approvals: the waiting
    // request shows it, and Bob's approval no longer suffices.
    w.policy(&t.admin, &t.vm, &[gated("3")]).await;
    let r = w.request_row(&id).await;
    assert_eq!(
        (r.status, r.approvals, r.approvals_required),
        (RequestStatus::PendingApproval, 1, 3)
    );
    requests::approve(&w.store, &t.bob, &id, "two")
        .await
        .unwrap();
    let r = w.request_row(&id).await;
    assert_eq!(
        (r.status, r.approvals, r.approvals_required),
        (RequestStatus::PendingApproval, 2, 3)
    );
    assert!(w.grants(&t.vm).await.is_empty());
    assert_eq!(
        w.logged("approve").await[1].content.detail,
        "2 of 3 approvals; request of rita; two"
    );
    requests::approve(&w.store, &t.carol, &id, "three")
        .await
        .unwrap();
    assert_eq!(w.request_row(&id).await.status, RequestStatus::Active);
    assert_eq!(w.grants(&t.vm).await.len(), 1);

    // The number is read from the policy at decision time, not from what the request
    // remembers: a policy changed behind the services' back counts too.
    let second = w
        .request(&t.rita, &t.vm, "3389", "198.51.100.11", "30")
        .await
        .unwrap();
    assert_eq!(w.request_row(&second).await.approvals_required, 3);
    let mut tx = w.store.begin_write().await.unwrap();
    let policy = portcullis_app::domain::jit::JitPolicy::parse(&[gated("1")]).unwrap();
    tx.set_policy(&t.vm.id, &policy, "test").await.unwrap();
    tx.commit().await.unwrap();
    requests::approve(&w.store, &t.alice, &second, "one is enough now")
        .await
        .unwrap();
    let r = w.request_row(&second).await;
    assert_eq!(
        (r.status, r.approvals, r.approvals_required),
        (RequestStatus::Active, 1, 1),
        "opened by the policy's one, which the request now shows"
    );
    assert_eq!(
        w.logged("approve").await.last().unwrap().content.detail,
        "request of rita; one is enough now"
    );

    // Lowered through the services between approvals: the next approval opens it.
    w.policy(&t.admin, &t.vm, &[gated("3")]).await;
    let third = w
        .request(&t.rita, &t.vm, "3389", "198.51.100.12", "30")
        .await
        .unwrap();
    requests::approve(&w.store, &t.alice, &third, "one")
        .await
        .unwrap();
    w.policy(&t.admin, &t.vm, &[gated("2")]).await;
    assert_eq!(w.request_row(&third).await.approvals_required, 2);
    requests::approve(&w.store, &t.bob, &third, "two")
        .await
        .unwrap();
    assert_eq!(w.request_row(&third).await.status, RequestStatus::Active);
}

#[tokio::test]
async fn an_approver_who_lost_the_role_between_approvals_is_refused() {
    let w = world().await;
    let t = team(&w, "2").await;
    let id = w
        .request(&t.rita, &t.vm, "3389", "198.51.100.10", "30")
        .await
        .unwrap();
    requests::approve(&w.store, &t.alice, &id, "one")
        .await
        .unwrap();
    // Bob's call carries the roles read when it began; the removal commits first.
    let role = w
        .store
        .assignments_of(&t.bob.user_id)
        .await
        .unwrap()
        .remove(0);
    portcullis_app::services::users::remove_role(&w.store, &t.admin, &role.id)
        .await
        .unwrap();
    let refused = requests::approve(&w.store, &t.bob, &id, "two").await;
    assert!(matches!(refused, Err(AppError::Forbidden)), "{refused:?}");
    let r = w.request_row(&id).await;
    assert_eq!((r.status, r.approvals), (RequestStatus::PendingApproval, 1));
    assert!(w.grants(&t.vm).await.is_empty());
    // Carol still may, and completes it.
    requests::approve(&w.store, &t.carol, &id, "two")
        .await
        .unwrap();
    assert_eq!(w.request_row(&id).await.status, RequestStatus::Active);
    assert_eq!(w.grants(&t.vm).await.len(), 1);
}

#[tokio::test]
async fn a_partly_approved_request_still_times_out() {
    let w = world().await;
    let t = team(&w, "2").await;
    let id = w
        .request(&t.rita, &t.vm, "3389", "198.51.100.10", "30")
        .await
        .unwrap();
    requests::approve(&w.store, &t.alice, &id, "one")
        .await
        .unwrap();
    w.clock.advance_secs(60 * 60);
    let message = conflict(
        requests::approve(&w.store, &t.bob, &id, "too late")
            .await
            .unwrap_err(),
    );
    assert!(message.contains("approval had to come by"), "{message}");
    let r = w.request_row(&id).await;
    assert_eq!(r.status, RequestStatus::Cancelled);
    assert_eq!(r.ports[0].status_reason, "approval timed out");
    assert!(w.grants(&t.vm).await.is_empty());
}

#[tokio::test]
async fn a_bad_number_of_approvers_is_refused_and_changes_nothing() {
    let w = world().await;
    let admin = w.admin().await;
    let vm = w.vm(&admin, "win-1", "prod").await;
    for (raw, approval, expected) in [
        (
            "6",
            true,
            "The number of approvers is a whole number from 1 to 5.",
        ),
        (
            "0",
            true,
            "The number of approvers is a whole number from 1 to 5.",
        ),
        (
            "2",
            false,
            "More than one approver needs “Approval required” on.",
        ),
    ] {
        let mut r = rule("3389");
        r.approval_required = approval.then(|| "on".into());
        r.approvals_required = raw.into();
        let e = jit::enable_jit(&w.store, &admin, std::slice::from_ref(&vm.id), &[r], false)
            .await
            .unwrap_err();
        match e {
            AppError::Validation(errors) => assert_eq!(
                errors.get("rules[0].approvals_required"),
                Some(expected),
                "{raw}"
            ),
            other => panic!("{raw}: expected a field error, got {other:?}"),
        }
    }
    assert!(w.store.get_policy(&vm.id).await.unwrap().is_none());
}

/// An approval counts only while its approver may still approve the request: one given
/// by somebody whose role was since taken away, whose account was disabled, or on a VM
/// that has since moved out of their scope, does not help open it.
#[tokio::test]
async fn approvals_from_approvers_who_since_lost_the_right_do_not_count() {
    let w = world().await;
    let t = team(&w, "2").await;
    let id = w
        .request(&t.rita, &t.vm, "3389", "198.51.100.10", "30")
        .await
        .unwrap();
    requests::approve(&w.store, &t.alice, &id, "one")
        .await
        .unwrap();
    let role = w
        .store
        .assignments_of(&t.alice.user_id)
        .await
        .unwrap()
        .remove(0);
    portcullis_app::services::users::remove_role(&w.store, &t.admin, &role.id)
        .await
        .unwrap();
    // Bob's is now the only approval that counts: the request keeps waiting.
    requests::approve(&w.store, &t.bob, &id, "two")
        .await
        .unwrap();
    let r = w.request_row(&id).await;
    assert_eq!(r.status, RequestStatus::PendingApproval);
    assert_eq!((r.approvals, r.approvals_required), (1, 2));
    assert!(
        w.grants(&t.vm).await.is_empty(),
        "opened on a stale approval"
    );
    let logged = w.logged("approve").await;
    assert!(
        logged[0].content.detail.starts_with("1 of 2 approvals"),
        "{}",
        logged[0].content.detail
    );

    // Disabled, Bob's approval stops counting too; Carol's alone is not enough.
    portcullis_app::services::users::set_disabled(&w.store, &t.admin, &t.bob.user_id, true)
        .await
        .unwrap();
    requests::approve(&w.store, &t.carol, &id, "three")
        .await
        .unwrap();
    let r = w.request_row(&id).await;
    assert_eq!((r.status, r.approvals), (RequestStatus::PendingApproval, 1));
    assert!(
        w.grants(&t.vm).await.is_empty(),
        "opened on a disabled approver"
    );

    // A new approver's approval and Carol's make two that count.
    let dave = w.user("dave", &[(Role::Approver, Scope::All)]).await;
    requests::approve(&w.store, &dave, &id, "four")
        .await
        .unwrap();
    assert_eq!(w.request_row(&id).await.status, RequestStatus::Active);
    assert_eq!(w.grants(&t.vm).await.len(), 1);
}

/// An approver scoped to one group: the VM moving out of that group takes their earlier
/// approval with it.
#[tokio::test]
async fn an_approval_stops_counting_when_the_vm_leaves_the_approvers_scope() {
    let w = world().await;
    let t = team(&w, "2").await;
    let gina = w
        .user("gina", &[(Role::Approver, Scope::Group("prod".into()))])
        .await;
    let id = w
        .request(&t.rita, &t.vm, "3389", "198.51.100.10", "30")
        .await
        .unwrap();
    requests::approve(&w.store, &gina, &id, "one")
        .await
        .unwrap();
    let spec =
        portcullis_app::domain::vm::VmSpec::parse("win-1", "staging", "198.51.100.5", "linux", "")
            .unwrap();
    portcullis_app::services::jit::update_vm(&w.store, &t.admin, &t.vm.id, spec)
        .await
        .unwrap();
    requests::approve(&w.store, &t.alice, &id, "two")
        .await
        .unwrap();
    let r = w.request_row(&id).await;
    assert_eq!((r.status, r.approvals), (RequestStatus::PendingApproval, 1));
    assert!(
        w.grants(&t.vm).await.is_empty(),
        "opened on an out-of-scope approval"
    );
}

/// One submission over two VMs: the VM with no port ticked is left out, and on the other
/// the port that needs approval waits in a request of its own while the other opens at
/// once; one bad part stores nothing at all.
#[tokio::test]
async fn ports_needing_approval_wait_apart_while_the_others_open_and_an_unticked_vm_is_left_out() {
    let w = world().await;
    let t = team(&w, "1").await;
    w.policy(&t.admin, &t.vm, &[rule("22"), gated("1")]).await;
    let other = w.vm(&t.admin, "win-2", "prod").await;
    w.policy(&t.admin, &other, &[rule("22")]).await;
    let form = |ports: &'static [&'static str], minutes: &'static str| {
        let ports: Vec<String> = ports
            .iter()
            .map(|p| format!("{}:{p}/tcp", t.vm.id))
            .collect();
        (ports, minutes)
    };
    let submit = |ports: Vec<String>, minutes: &'static str| {
        let vm_ids = vec![t.vm.id.clone(), other.id.clone()];
        let rita = t.rita.clone();
        let store = w.store.clone();
        async move {
            requests::request_access(
                &store,
                &rita,
                requests::AccessForm {
                    ports: &ports,
                    vm_ids: &vm_ids,
                    source_mode: "custom",
                    custom_source: "198.51.100.10",
                    duration_minutes: minutes,
                    justification: "maintenance",
                    start: "",
                },
            )
            .await
        }
    };
    // Nothing ticked on either VM: one message, nothing stored.
    let (none, minutes) = form(&[], "30");
    match submit(none, minutes).await {
        Err(AppError::Validation(e)) => {
            assert_eq!(e.get("ports"), Some("Choose at least one port."));
        }
        other => panic!("expected a field error, got {other:?}"),
    }
    // Over both ports' bound (60 minutes): neither part is stored.
    let (both, _) = form(&["22", "3389"], "30");
    let too_long = submit(both.clone(), "100000").await;
    assert!(
        matches!(too_long, Err(AppError::Validation(_))),
        "{too_long:?}"
    );
    assert_eq!(
        count(&w, "SELECT COUNT(*) AS n FROM access_requests").await,
        0
    );

    let ids = submit(both, "30").await.unwrap();
    assert_eq!(ids.len(), 2, "one request that opens, one that waits");
    let opened = w.request_row(&ids[0]).await;
    let waiting = w.request_row(&ids[1]).await;
    assert_eq!(opened.status, RequestStatus::Active);
    assert_eq!(
        opened.ports.iter().map(|p| p.port).collect::<Vec<_>>(),
        vec![22]
    );
    assert_eq!(waiting.status, RequestStatus::PendingApproval);
    assert_eq!(
        waiting.ports.iter().map(|p| p.port).collect::<Vec<_>>(),
        vec![3389]
    );
    assert_eq!(opened.vm_id, t.vm.id);
    assert_eq!(waiting.vm_id, t.vm.id);
    // Port 22 is open now; 3389 is not, and waits in the approvers' queue.
    let grants = w.grants(&t.vm).await;
    assert_eq!(
        grants.iter().map(|g| g.1).collect::<Vec<_>>(),
        vec![22],
        "{grants:?}"
    );
    assert_eq!(queue(&w, &t.alice).await, vec![ids[1].clone()]);
    // win-2, offered but not ticked, got nothing.
    assert!(w.grants(&other).await.is_empty());
    assert_eq!(
        count(&w, "SELECT COUNT(*) AS n FROM access_requests").await,
        2
    );
    // The approval opens 3389 beside the 22 already open.
    requests::approve(&w.store, &t.alice, &ids[1], "ok")
        .await
        .unwrap();
    let mut open: Vec<i64> = w.grants(&t.vm).await.iter().map(|g| g.1).collect();
    open.sort();
    assert_eq!(open, vec![22, 3389]);
}
