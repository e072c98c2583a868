//! The life cycle of access against the services and the store, on a clock the test moves:
//! approval time-outs, the re-checks made at decision time, and the changes of authority
//! (IdP groups, group rules, a VM moving group, extensions and policy maxima) that end or
//! shorten grants. Each test runs on SQLite, and on PostgreSQL when
//! `PORTCULLIS_TEST_POSTGRES` names a server.
#![cfg(feature = "ssr")]

mod common;

use common::*;
use portcullis_app::domain::request::{PortStatus, RequestStatus};
use portcullis_app::domain::sso::FederatedIdentity;
use portcullis_app::domain::vm::VmSpec;
use portcullis_app::domain::{Role, Scope};
use portcullis_app::error::AppError;
use portcullis_app::services::sso::{GroupRuleInput, add_group_rule, remove_group_rule};
use portcullis_app::services::{Actor, jit, requests, sso};

fn conflict(e: AppError) -> String {
    match e {
        AppError::Conflict(message) => message,
        other => panic!("expected a conflict, got {other:?}"),
    }
}

#[tokio::test]
async fn a_request_nobody_approves_in_time_is_closed_and_cannot_be_approved() {
    let w = world().await;
    let admin = w.admin().await;
    let rita = w.user("rita", &[(Role::Requester, Scope::All)]).await;
    let alice = w.user("alice", &[(Role::Approver, Scope::All)]).await;
    let vm = w.vm(&admin, "win-1", "prod").await;
    let mut r = with_approval(rule("3389"));
    r.approval_minutes = "30".into();
    w.policy(&admin, &vm, &[r]).await;

    let late = w
        .request(&rita, &vm, "3389", "198.51.100.10", "20")
        .await
        .unwrap();
    let raced = w
        .request(&rita, &vm, "3389", "198.51.100.11", "20")
        .await
        .unwrap();
    let deadline = w.clock.now() + 30 * 60_000;
    assert_eq!(w.store.next_expiry().await.unwrap(), Some(deadline));
    w.clock.advance_secs(30 * 60 - 1);
    assert_eq!(w.store.expire_due(w.clock.now()).await.unwrap(), (0, 0));
    w.clock.advance_secs(1);

    // Approved after the deadline but before the job ran: refused by the re-check.
    let message = conflict(
        requests::approve(&w.store, &alice, &raced, "ok")
            .await
            .unwrap_err(),
    );
    assert!(message.contains("approval had to come by"), "{message}");
    let r = w.request_row(&raced).await;
    assert_eq!(r.status, RequestStatus::Cancelled);
    assert_eq!(r.ports[0].status_reason, "approval timed out");

    // The job closes the other one, with its reason, and logs it.
    assert_eq!(w.store.expire_due(w.clock.now()).await.unwrap(), (0, 1));
    let r = w.request_row(&late).await;
    assert_eq!(
        (r.status, r.ports[0].status),
        (RequestStatus::Cancelled, PortStatus::Cancelled)
    );
    assert_eq!(r.ports[0].status_reason, "approval timed out");
    let logged = w.logged("request.timeout").await;
    assert_eq!(logged.len(), 1);
    assert_eq!(
        logged[0].content.detail,
        "request of rita closed: approval timed out"
    );
    let closed = conflict(
        requests::approve(&w.store, &alice, &late, "ok")
            .await
            .unwrap_err(),
    );
    assert_eq!(closed, "A request that is cancelled cannot be approved.");
    assert!(w.grants(&vm).await.is_empty());
}

#[tokio::test]
async fn approval_rechecks_everything_the_request_rests_on() {
    let w = world().await;
    let admin = w.admin().await;
    let rita = w
        .user("rita", &[(Role::Requester, Scope::Group("prod".into()))])
        .await;
    let alice = w.user("alice", &[(Role::Approver, Scope::All)]).await;
    let vm = w.vm(&admin, "win-1", "prod").await;
    w.policy(&admin, &vm, &[with_approval(rule("3389"))]).await;

    // Each change below is made behind the services' back (as a bug or a concurrent path
    // might): only the re-check at decision time stands between it and an open port.
    let cases: Vec<(&str, &str)> = vec![
        ("disabled", "rita's account is disabled"),
        ("role", "rita may no longer request access to win-1"),
        ("max", "exceed the 10 minutes port 3389 now allows"),
        ("sources", "is outside the sources allowed for port 3389"),
        ("port", "Port 3389/TCP is no longer under the JIT policy"),
    ];
    for (change, expected) in cases {
        w.policy(&admin, &vm, &[with_approval(rule("3389"))]).await;
        let id = w
            .request(&rita, &vm, "3389", "198.51.100.10", "30")
            .await
            .unwrap();
        let mut tx = w.store.begin_write().await.unwrap();
        let mut undo_role = None;
        match change {
            "disabled" => {
                tx.set_disabled(&rita.user_id, true).await.unwrap();
            }
            "role" => {
                let a = w
                    .store
                    .assignments_of(&rita.user_id)
                    .await
                    .unwrap()
                    .remove(0);
                tx.remove_assignment(&a.id).await.unwrap();
                undo_role = Some(a.assignment);
            }
            _ => {
                let mut r = with_approval(rule(if change == "port" { "3390" } else { "3389" }));
                if change == "max" {
                    r.max_minutes = "10".into();
                }
                if change == "sources" {
                    r.allowed_sources = "203.0.113.0/24".into();
                }
                let policy = portcullis_app::domain::jit::JitPolicy::parse(&[r]).unwrap();
                tx.set_policy(&vm.id, &policy, "test").await.unwrap();
            }
        }
        tx.commit().await.unwrap();
        let message = conflict(
            requests::approve(&w.store, &alice, &id, "ok")
                .await
                .unwrap_err(),
        );
        assert!(message.contains(expected), "{change}: {message}");
        assert!(
            message.starts_with("The request cannot be approved: "),
            "{message}"
        );
        let r = w.request_row(&id).await;
        assert_eq!(r.status, RequestStatus::Cancelled, "{change}");
        assert!(w.grants(&vm).await.is_empty(), "{change}");
        // Put things back for the next case.
        let mut tx = w.store.begin_write().await.unwrap();
        tx.set_disabled(&rita.user_id, false).await.unwrap();
        if let Some(role) = undo_role {
            tx.add_assignment(&rita.user_id, &role).await.unwrap();
        }
        tx.commit().await.unwrap();
    }
    // And with nothing changed, approval opens the port; nobody approves their own.
    w.policy(&admin, &vm, &[with_approval(rule("3389"))]).await;
    let id = w
        .request(&rita, &vm, "3389", "198.51.100.10", "30")
        .await
        .unwrap();
    let own = w
        .request(&alice, &vm, "3389", "198.51.100.12", "30")
        .await
        .unwrap();
    assert_eq!(
        conflict(
            requests::approve(&w.store, &alice, &own, "mine")
                .await
                .unwrap_err()
        ),
        "You cannot approve your own request."
    );
    requests::approve(&w.store, &alice, &id, "ok")
        .await
        .unwrap();
    assert_eq!(w.grants(&vm).await.len(), 1);
}

fn identity(groups: &[&str]) -> FederatedIdentity {
    FederatedIdentity {
        subject: "s-1".into(),
        username_hint: "carol".into(),
        email: "carol@example.org".into(),
        display_name: "Carol".into(),
        groups: groups.iter().map(|g| g.to_string()).collect(),
    }
}

/// An administrator's rule: the provider "corp"'s group "ops" has `role` on the VM group
/// "prod". Returns the rule's id.
async fn ops_rule(w: &World, admin: &Actor, role: &str) -> String {
    add_group_rule(
        &w.store,
        admin,
        &["corp".to_owned()],
        GroupRuleInput {
            provider: "corp",
            group: "ops",
            role,
            scope_kind: "group",
            scope_target: "prod",
        },
    )
    .await
    .unwrap()
}

/// Carol signs in through "corp", listed in `groups`; returns her account's id.
async fn carol_signs_in(w: &World, groups: &[&str]) -> String {
    match sso::sign_in_federated(&w.store, "corp", &identity(groups), IP.parse().unwrap())
        .await
        .unwrap()
    {
        sso::FederatedSignIn::SignedIn { user, .. } => user.id,
        sso::FederatedSignIn::Disabled => panic!("disabled"),
    }
}

#[tokio::test]
async fn leaving_an_idp_group_or_losing_its_rule_ends_what_the_group_allowed() {
    let w = world().await;
    let admin = w.admin().await;
    let vm = w.vm(&admin, "web-1", "prod").await;
    w.policy(&admin, &vm, &[rule("22")]).await;
    let ops = ops_rule(&w, &admin, "requester").await;
    let carol = w.actor(&carol_signs_in(&w, &["ops"]).await).await;
    let first = w
        .request(&carol, &vm, "22", "198.51.100.10", "30")
        .await
        .unwrap();

    // The provider no longer lists the group: the next sign-in ends the grant.
    carol_signs_in(&w, &[]).await;
    let r = w.request_row(&first).await;
    assert_eq!(
        (r.ports[0].status, r.ports[0].status_reason.as_str()),
        (PortStatus::Revoked, "requester lost permission")
    );

    // Back in the group; then an administrator removes the rule itself.
    carol_signs_in(&w, &["ops"]).await;
    let carol = w.actor(&carol.user_id).await;
    let second = w
        .request(&carol, &vm, "22", "198.51.100.10", "30")
        .await
        .unwrap();
    remove_group_rule(&w.store, &admin, &ops).await.unwrap();
    let r = w.request_row(&second).await;
    assert_eq!(r.ports[0].status_reason, "requester lost permission");
    assert!(w.grants(&vm).await.is_empty());
    // The ending is logged under the administrator who removed the rule.
    let revokes = w.logged("revoke").await;
    assert_eq!(revokes.last().unwrap().content.actor, "root");
}

#[tokio::test]
async fn moving_a_vm_to_another_group_ends_grants_the_new_group_does_not_allow() {
    let w = world().await;
    let admin = w.admin().await;
    let rita = w
        .user("rita", &[(Role::Requester, Scope::Group("prod".into()))])
        .await;
    let everywhere = w.user("ed", &[(Role::Requester, Scope::All)]).await;
    let vm = w.vm(&admin, "web-1", "prod").await;
    w.policy(&admin, &vm, &[rule("22")]).await;
    let hers = w
        .request(&rita, &vm, "22", "198.51.100.10", "30")
        .await
        .unwrap();
    let his = w
        .request(&everywhere, &vm, "22", "198.51.100.11", "30")
        .await
        .unwrap();
    let spec = VmSpec::parse("web-1", "dev", "198.51.100.5", "linux", "").unwrap();
    jit::update_vm(&w.store, &admin, &vm.id, spec)
        .await
        .unwrap();
    assert_eq!(
        w.request_row(&hers).await.ports[0].status_reason,
        "requester lost permission"
    );
    assert_eq!(
        w.request_row(&his).await.ports[0].status,
        PortStatus::Active
    );
    assert_eq!(w.grants(&vm).await.len(), 1);
}

#[tokio::test]
async fn a_new_maximum_counts_from_the_start_of_the_current_window() {
    let w = world().await;
    let admin = w.admin().await;
    let rita = w.user("rita", &[(Role::Requester, Scope::All)]).await;
    let vm = w.vm(&admin, "web-1", "prod").await;
    w.policy(&admin, &vm, &[rule("22")]).await;
    let id = w
        .request(&rita, &vm, "22", "198.51.100.10", "60")
        .await
        .unwrap();
    let start = w.clock.now();
    assert_eq!(w.grants(&vm).await[0].2, start + 3_600_000);

    // Extended 50 minutes in by 40 minutes: the window now starts at the extension.
    w.clock.advance_secs(50 * 60);
    requests::extend(&w.store, &rita, &id, "40").await.unwrap();
    let extended_at = w.clock.now();
    assert_eq!(w.grants(&vm).await[0].2, extended_at + 40 * 60_000);

    // A new maximum of 30 minutes shortens it to the extension + 30 minutes.
    let mut r = rule("22");
    r.max_minutes = "30".into();
    w.policy(&admin, &vm, &[r]).await;
    assert_eq!(w.grants(&vm).await[0].2, extended_at + 30 * 60_000);
    let row = w.request_row(&id).await;
    assert_eq!(row.end_at, Some(extended_at + 30 * 60_000));
    assert_eq!(
        row.ports[0].status_reason,
        "shortened to the policy's new maximum"
    );

    // 35 minutes later a 5-minute maximum has already passed: the grant ends.
    w.clock.advance_secs(25 * 60);
    let mut r = rule("22");
    r.max_minutes = "5".into();
    w.policy(&admin, &vm, &[r]).await;
    let row = w.request_row(&id).await;
    assert_eq!(
        (row.ports[0].status, row.ports[0].status_reason.as_str()),
        (PortStatus::Revoked, "longer than the policy's maximum")
    );
    assert!(w.grants(&vm).await.is_empty());
}

#[tokio::test]
async fn another_users_request_from_a_shared_address_does_not_end_your_grant() {
    let w = world().await;
    let admin = w.admin().await;
    let rita = w.user("rita", &[(Role::Requester, Scope::All)]).await;
    let sam = w.user("sam", &[(Role::Requester, Scope::All)]).await;
    let vm = w.vm(&admin, "web-1", "prod").await;
    w.policy(&admin, &vm, &[rule("22")]).await;
    let hers = w
        .request(&rita, &vm, "22", "203.0.113.7", "30")
        .await
        .unwrap();
    w.request(&sam, &vm, "22", "203.0.113.7", "10")
        .await
        .unwrap();
    assert_eq!(
        w.request_row(&hers).await.ports[0].status,
        PortStatus::Active
    );
    assert_eq!(w.grants(&vm).await.len(), 2);
    // Her own newer request supersedes her older one.
    w.request(&rita, &vm, "22", "203.0.113.7", "20")
        .await
        .unwrap();
    assert_eq!(
        w.request_row(&hers).await.ports[0].status,
        PortStatus::Superseded
    );
}

#[tokio::test]
async fn removing_a_vm_removes_the_roles_scoped_to_it() {
    let w = world().await;
    let admin = w.admin().await;
    let vm = w.vm(&admin, "web-1", "prod").await;
    let rita = w
        .user("rita", &[(Role::Requester, Scope::Vm(vm.id.clone()))])
        .await;
    assert_eq!(rita.roles.len(), 1);
    jit::delete_vm(&w.store, &admin, &vm.id).await.unwrap();
    assert!(
        w.store
            .assignments_of(&rita.user_id)
            .await
            .unwrap()
            .is_empty(),
        "a role on a VM that is gone would mean nothing until an id is reused"
    );
}

#[tokio::test]
async fn an_approver_who_just_lost_the_role_cannot_approve() {
    let w = world().await;
    let admin = w.admin().await;
    let rita = w.user("rita", &[(Role::Requester, Scope::All)]).await;
    let alice = w.user("alice", &[(Role::Approver, Scope::All)]).await;
    let vm = w.vm(&admin, "win-1", "prod").await;
    w.policy(&admin, &vm, &[with_approval(rule("3389"))]).await;
    let id = w
        .request(&rita, &vm, "3389", "198.51.100.10", "30")
        .await
        .unwrap();
    // Alice's call carries the roles read when it began; the removal commits first.
    let role = w
        .store
        .assignments_of(&alice.user_id)
        .await
        .unwrap()
        .remove(0);
    portcullis_app::services::users::remove_role(&w.store, &admin, &role.id)
        .await
        .unwrap();
    let refused = requests::approve(&w.store, &alice, &id, "ok").await;
    assert!(matches!(refused, Err(AppError::Forbidden)), "{refused:?}");
    assert_eq!(
        w.request_row(&id).await.status,
        RequestStatus::PendingApproval
    );
    assert!(w.grants(&vm).await.is_empty());
}

#[tokio::test]
async fn extending_access_that_needed_approval_needs_an_administrator() {
    let w = world().await;
    let admin = w.admin().await;
    let rita = w.user("rita", &[(Role::Requester, Scope::All)]).await;
    let alice = w.user("alice", &[(Role::Approver, Scope::All)]).await;
    let vm = w.vm(&admin, "win-1", "prod").await;
    w.policy(&admin, &vm, &[with_approval(rule("3389")), rule("22")])
        .await;
    let gated = w
        .request(&rita, &vm, "3389", "198.51.100.10", "30")
        .await
        .unwrap();
    requests::approve(&w.store, &alice, &gated, "ok")
        .await
        .unwrap();
    let message = conflict(
        requests::extend(&w.store, &rita, &gated, "60")
            .await
            .unwrap_err(),
    );
    assert_eq!(
        message,
        "This access needed approval; request it again to get more time."
    );
    requests::extend(&w.store, &admin, &gated, "60")
        .await
        .unwrap();
    assert_eq!(w.grants(&vm).await[0].2, w.clock.now() + 3_600_000);
    // Without approval, the requester extends as before.
    let open = w
        .request(&rita, &vm, "22", "198.51.100.11", "10")
        .await
        .unwrap();
    requests::extend(&w.store, &rita, &open, "20")
        .await
        .unwrap();
}

/// An API token acts with its owner's direct roles alone once the owner's last sign-in at
/// the identity provider is old (`token_roles`). Deciding again inside the transaction on
/// the stored roles must not give the group's roles back: an administrator of the VM's
/// group through the provider, acting with a token, extends gated access only while those
/// roles count for the token.
#[tokio::test]
async fn a_token_whose_group_roles_lapsed_cannot_extend_access_that_needed_approval() {
    let w = world().await;
    let admin = w.admin().await;
    let vm = w.vm(&admin, "win-1", "prod").await;
    w.policy(&admin, &vm, &[with_approval(rule("3389"))]).await;
    ops_rule(&w, &admin, "admin").await;
    let carol = carol_signs_in(&w, &["ops"]).await;
    // A direct role lets carol request access on her own.
    portcullis_app::services::users::add_role(&w.store, &admin, &carol, "requester", "all", "")
        .await
        .unwrap();
    let alice = w.user("alice", &[(Role::Approver, Scope::All)]).await;
    let carol_now = w.actor(&carol).await;
    let gated = w
        .request(&carol_now, &vm, "3389", "198.51.100.10", "30")
        .await
        .unwrap();
    requests::approve(&w.store, &alice, &gated, "ok")
        .await
        .unwrap();

    // Her token, once the provider sign-in is older than a token may rely on.
    let later = w.clock.now() + sso::TOKEN_GROUPS_FRESH_FOR_MS + 1;
    let token = Actor {
        roles: sso::token_roles(&w.store, &carol, later).await.unwrap(),
        ..carol_now.clone()
    };
    assert!(
        !token.roles.iter().any(|r| r.role == Role::Admin),
        "{:?}",
        token.roles
    );
    let message = conflict(
        requests::extend(&w.store, &token, &gated, "60")
            .await
            .unwrap_err(),
    );
    assert_eq!(
        message,
        "This access needed approval; request it again to get more time."
    );
    // Signed in recently, her group's administrator role counts, and she may.
    requests::extend(&w.store, &carol_now, &gated, "60")
        .await
        .unwrap();
}

#[tokio::test]
async fn a_request_made_as_the_requester_is_disabled_is_refused() {
    let w = world().await;
    let admin = w.admin().await;
    let vm = w.vm(&admin, "web-1", "prod").await;
    w.policy(&admin, &vm, &[rule("22")]).await;
    let rita = w.user("rita", &[(Role::Requester, Scope::All)]).await;
    // Rita's call was authenticated (her roles read) just before an administrator
    // disabled her; the request reaches the store after the disable committed.
    portcullis_app::services::users::set_disabled(&w.store, &admin, &rita.user_id, true)
        .await
        .unwrap();
    let refused = w.request(&rita, &vm, "22", "198.51.100.10", "30").await;
    assert!(matches!(refused, Err(AppError::Forbidden)), "{refused:?}");
    assert!(
        w.grants(&vm).await.is_empty(),
        "nothing opened for a disabled user"
    );
}
