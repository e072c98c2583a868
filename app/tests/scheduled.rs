//! Scheduled windows against the services and the store: a request may ask for a later
//! start within its rules' lead time; it is decided ahead, opens at its start after a
//! last re-check (a requester disabled or a policy changed meanwhile gets nothing), can
//! be cancelled before, and its grant covers only the window. Each test runs on SQLite,
//! and on PostgreSQL when `PORTCULLIS_TEST_POSTGRES` names a server.
#![cfg(feature = "ssr")]

mod common;

use common::*;
use portcullis_app::domain::notify::ChannelInput;
use portcullis_app::domain::request::{PortStatus, RequestStatus};
use portcullis_app::domain::{Role, Scope};
use portcullis_app::error::AppError;
use portcullis_app::services::{Actor, notify, requests};
use portcullis_app::store::StoredVm;

const HOUR: i64 = 3_600_000;

/// `ms` as the portal's start field sends it (minutes, no zone: UTC).
fn form_time(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap()
        .format("%Y-%m-%dT%H:%M")
        .to_string()
}

struct Team {
    admin: Actor,
    rita: Actor,
    alice: Actor,
    vm: StoredVm,
}

/// Rita requests, Alice approves; web-1 has port 22 (open on request) and 3389 (approval).
async fn team(w: &World) -> Team {
    let admin = w.admin().await;
    let rita = w.user("rita", &[(Role::Requester, Scope::All)]).await;
    let alice = w.user("alice", &[(Role::Approver, Scope::All)]).await;
    let vm = w.vm(&admin, "web-1", "prod").await;
    w.policy(&admin, &vm, &[rule("22"), with_approval(rule("3389"))])
        .await;
    Team {
        admin,
        rita,
        alice,
        vm,
    }
}

/// The outbox payloads of one event, oldest first, read behind the store's back.
async fn payloads(w: &World, event: &str) -> Vec<String> {
    use sqlx::Row;
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(&w.url).await.unwrap();
    sqlx::query("SELECT payload FROM notification_outbox WHERE event = $1 ORDER BY created_at, id")
        .bind(event)
        .fetch_all(&pool)
        .await
        .unwrap()
        .iter()
        .map(|r| r.try_get("payload").unwrap())
        .collect()
}

fn field(e: AppError, name: &str) -> String {
    match e {
        AppError::Validation(errors) => errors
            .get(name)
            .unwrap_or_else(|| panic!("no error on {name}: {errors:?}"))
            .to_owned(),
        other => panic!("expected field errors, got {other:?}"),
    }
}

#[tokio::test]
async fn a_window_that_needs_no_approval_opens_at_its_start_and_closes_at_its_end() {
    let w = world().await;
    let t = team(&w).await;
    let start = w.clock.now() + 2 * HOUR;
    let id = w
        .request_from(
            &t.rita,
            &t.vm,
            "22",
            "198.51.100.10",
            "30",
            &form_time(start),
        )
        .await
        .unwrap();
    let r = w.request_row(&id).await;
    assert_eq!(r.status, RequestStatus::Approved);
    assert_eq!((r.start_at, r.planned_start_at), (None, Some(start)));
    assert_eq!(r.ports[0].status, PortStatus::Pending);
    let before = w.generation(&t.vm).await;
    assert!(
        w.grants(&t.vm).await.is_empty(),
        "nothing opens before the start"
    );
    assert!(
        w.logged("request")
            .await
            .last()
            .unwrap()
            .content
            .detail
            .contains("from 2027-01-15 10:00:00 UTC; scheduled")
    );
    // The timeline shows the future window; the job sleeps until it.
    let windows = w
        .store
        .access_windows(&t.vm.id, w.clock.now(), w.clock.now() + 24 * HOUR)
        .await
        .unwrap();
    assert_eq!(
        windows,
        vec![(start, start + 30 * 60_000, "rita".into(), "approved".into())]
    );
    assert_eq!(w.store.next_expiry().await.unwrap(), Some(start));

    // A second before: still nothing.
    w.clock.advance_ms(2 * HOUR - 1000);
    assert_eq!(requests::open_due(&w.store).await.unwrap(), (0, 0));
    assert!(w.grants(&t.vm).await.is_empty());
    assert_eq!(w.generation(&t.vm).await, before);

    // At the start the port opens, for the window only (not 30 minutes from a late job).
    w.clock.advance_ms(1500);
    assert_eq!(requests::open_due(&w.store).await.unwrap(), (1, 0));
    assert_eq!(
        w.grants(&t.vm).await,
        vec![("198.51.100.10/32".into(), 22, start + 30 * 60_000)]
    );
    assert!(w.generation(&t.vm).await > before, "the agent is told");
    let r = w.request_row(&id).await;
    assert_eq!(r.status, RequestStatus::Active);
    assert_eq!(r.end_at, Some(start + 30 * 60_000));
    let opened = w.logged("open").await;
    assert_eq!(opened.len(), 1);
    assert_eq!(opened[0].content.actor, "system");
    assert!(
        opened[0]
            .content
            .detail
            .contains("scheduled window of rita opened")
    );

    // And it closes at the end of the window.
    w.clock.advance_ms(30 * 60_000);
    w.store.expire_due(w.clock.now()).await.unwrap();
    assert!(w.grants(&t.vm).await.is_empty());
    assert_eq!(w.request_row(&id).await.status, RequestStatus::Expired);
}

#[tokio::test]
async fn a_window_approved_ahead_opens_at_its_start_and_a_late_approval_opens_only_what_is_left() {
    let w = world().await;
    let t = team(&w).await;
    // The approvers and the requester hear when it opens, through a routed channel.
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
    for event in ["approval.waiting", "request.approved"] {
        notify::add_route(&w.store, &t.admin, &hook, event, "")
            .await
            .unwrap();
    }
    let start = w.clock.now() + 3 * HOUR;
    let id = w
        .request_from(
            &t.rita,
            &t.vm,
            "3389",
            "198.51.100.10",
            "60",
            &form_time(start),
        )
        .await
        .unwrap();
    let waiting = payloads(&w, "approval.waiting").await;
    assert!(
        waiting[0].contains("2027-01-15 11:00:00 UTC"),
        "{waiting:?}"
    );
    let r = w.request_row(&id).await;
    assert_eq!(r.status, RequestStatus::PendingApproval);
    // Approvers have until the start, though the rule's time-out is an hour.
    w.clock.advance_ms(2 * HOUR);
    requests::approve(&w.store, &t.alice, &id, "ok")
        .await
        .unwrap();
    let r = w.request_row(&id).await;
    assert_eq!(
        r.status,
        RequestStatus::Approved,
        "approved ahead, not opened"
    );
    assert!(w.grants(&t.vm).await.is_empty());
    assert!(
        w.logged("approve").await[0]
            .content
            .detail
            .contains("opens at 2027-01-15 11:00:00 UTC")
    );
    let told = payloads(&w, "request.approved").await;
    assert!(
        told[0].contains("was approved and opens at 2027-01-15 11:00:00 UTC by alice"),
        "{told:?}"
    );
    let again = requests::approve(&w.store, &t.alice, &id, "ok").await;
    assert!(matches!(again, Err(AppError::Conflict(_))), "{again:?}");
    let deny = requests::deny(&w.store, &t.alice, &id, "no").await;
    assert!(matches!(deny, Err(AppError::Conflict(_))), "{deny:?}");
    w.clock.advance_ms(HOUR);
    assert_eq!(requests::open_due(&w.store).await.unwrap(), (1, 0));
    assert_eq!(
        w.grants(&t.vm).await,
        vec![("198.51.100.10/32".into(), 3389, start + HOUR)]
    );

    // A window starting within the rule's hour for approval, approved 20 minutes into
    // it: it opens until its own end only.
    let start2 = w.clock.now() + 30 * 60_000;
    let id2 = w
        .request_from(
            &t.rita,
            &t.vm,
            "3389",
            "198.51.100.11",
            "60",
            &form_time(start2),
        )
        .await
        .unwrap();
    w.clock.advance_ms(50 * 60_000);
    requests::approve(&w.store, &t.alice, &id2, "late")
        .await
        .unwrap();
    let r = w.request_row(&id2).await;
    assert_eq!(r.status, RequestStatus::Active);
    assert_eq!(r.end_at, Some(start2 + HOUR));
}

#[tokio::test]
async fn a_requester_disabled_or_a_policy_changed_before_the_start_gets_nothing() {
    let w = world().await;
    let t = team(&w).await;
    let start = w.clock.now() + HOUR;
    let at = form_time(start);
    let bob = w.user("bob", &[(Role::Requester, Scope::All)]).await;
    let carl = w.user("carl", &[(Role::Requester, Scope::All)]).await;
    let rita_id = w
        .request_from(&t.rita, &t.vm, "22", "198.51.100.10", "30", &at)
        .await
        .unwrap();
    let bob_id = w
        .request_from(&bob, &t.vm, "22", "198.51.100.12", "30", &at)
        .await
        .unwrap();
    let carl_id = w
        .request_from(&carl, &t.vm, "3389", "198.51.100.13", "30", &at)
        .await
        .unwrap();
    requests::approve(&w.store, &t.alice, &carl_id, "ok")
        .await
        .unwrap();

    // Disabling Rita closes her booked window at once.
    portcullis_app::services::users::set_disabled(&w.store, &t.admin, &t.rita.user_id, true)
        .await
        .unwrap();
    let r = w.request_row(&rita_id).await;
    assert_eq!(r.status, RequestStatus::Cancelled);
    assert_eq!(r.ports[0].status_reason, "requester disabled");

    // Bob is disabled behind the services' back (as an older replica might): the re-check
    // at the start still refuses him.
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(&w.url).await.unwrap();
    sqlx::query("UPDATE users SET disabled = 1 WHERE id = $1")
        .bind(&bob.user_id)
        .execute(&pool)
        .await
        .unwrap();
    // Port 3389 leaves the policy: Carl's approved window is closed by the edit.
    w.policy(&t.admin, &t.vm, &[rule("22")]).await;
    let r = w.request_row(&carl_id).await;
    assert_eq!(r.status, RequestStatus::Cancelled);
    assert_eq!(r.ports[0].status_reason, "port removed from policy");

    w.clock.advance_ms(HOUR);
    assert_eq!(requests::open_due(&w.store).await.unwrap(), (0, 1));
    let r = w.request_row(&bob_id).await;
    assert_eq!(r.status, RequestStatus::Cancelled);
    assert_eq!(r.ports[0].status_reason, "requester disabled");
    assert!(w.grants(&t.vm).await.is_empty(), "nobody's window opened");
}

#[tokio::test]
async fn a_booked_window_can_be_cancelled_before_its_start_and_then_never_opens() {
    let w = world().await;
    let t = team(&w).await;
    let start = w.clock.now() + HOUR;
    let id = w
        .request_from(
            &t.rita,
            &t.vm,
            "22",
            "198.51.100.10",
            "30",
            &form_time(start),
        )
        .await
        .unwrap();
    requests::revoke(&w.store, &t.rita, &id).await.unwrap();
    let r = w.request_row(&id).await;
    assert_eq!(r.status, RequestStatus::Revoked);
    assert_eq!(r.ports[0].status, PortStatus::Revoked);
    w.clock.advance_ms(HOUR);
    assert_eq!(requests::open_due(&w.store).await.unwrap(), (0, 0));
    assert!(w.grants(&t.vm).await.is_empty());
    // And a window the server never got to open in time (it was down) is closed, not opened.
    let start = w.clock.now() + HOUR;
    let id = w
        .request_from(
            &t.rita,
            &t.vm,
            "22",
            "198.51.100.10",
            "30",
            &form_time(start),
        )
        .await
        .unwrap();
    w.clock.advance_ms(2 * HOUR);
    assert_eq!(requests::open_due(&w.store).await.unwrap(), (0, 1));
    let r = w.request_row(&id).await;
    assert_eq!(r.status, RequestStatus::Cancelled);
    assert_eq!(r.ports[0].status_reason, "scheduled window passed");
    assert!(w.grants(&t.vm).await.is_empty());
}

#[tokio::test]
async fn a_start_beyond_the_lead_time_or_in_the_past_is_refused_and_stores_nothing() {
    let w = world().await;
    let t = team(&w).await;
    let far = form_time(w.clock.now() + 8 * 24 * HOUR);
    let e = w
        .request_from(&t.rita, &t.vm, "22", "198.51.100.10", "30", &far)
        .await
        .unwrap_err();
    assert_eq!(
        field(e, "start"),
        "Requests on web-1 may start at most 7 days ahead."
    );
    let past = form_time(w.clock.now() - 2 * HOUR);
    let e = w
        .request_from(&t.rita, &t.vm, "22", "198.51.100.10", "30", &past)
        .await
        .unwrap_err();
    assert!(field(e, "start").contains("has passed"));
    // A rule that allows no scheduling ahead.
    let mut now_only = rule("22");
    now_only.lead_days = "0".into();
    w.policy(&t.admin, &t.vm, &[now_only]).await;
    let soon = form_time(w.clock.now() + HOUR);
    let e = w
        .request_from(&t.rita, &t.vm, "22", "198.51.100.10", "30", &soon)
        .await
        .unwrap_err();
    assert!(field(e, "start").contains("cannot start later"));
    assert!(w.logged("request").await.is_empty());
    // Seven days ahead is fine under the default.
    let mut week = rule("22");
    week.lead_days = String::new();
    w.policy(&t.admin, &t.vm, &[week]).await;
    let ok = form_time(w.clock.now() + 7 * 24 * HOUR);
    w.request_from(&t.rita, &t.vm, "22", "198.51.100.10", "30", &ok)
        .await
        .unwrap();
}

/// A booked window opens only on an approval that still stands at its start: the approver
/// disabled since, or approval made a requirement after it was booked, and nothing opens.
#[tokio::test]
async fn a_booked_window_opens_only_on_an_approval_that_still_stands_at_its_start() {
    let w = world().await;
    let t = team(&w).await;
    let start = w.clock.now() + HOUR;
    let at = form_time(start);
    // Approved ahead by Alice, who is disabled before the start.
    let approved = w
        .request_from(&t.rita, &t.vm, "3389", "198.51.100.10", "30", &at)
        .await
        .unwrap();
    requests::approve(&w.store, &t.alice, &approved, "ok")
        .await
        .unwrap();
    assert_eq!(
        w.request_row(&approved).await.status,
        RequestStatus::Approved
    );
    portcullis_app::services::users::set_disabled(&w.store, &t.admin, &t.alice.user_id, true)
        .await
        .unwrap();
    // Booked without approval on port 22, which needs approval by the start.
    let open = w
        .request_from(&t.rita, &t.vm, "22", "198.51.100.11", "30", &at)
        .await
        .unwrap();
    assert_eq!(w.request_row(&open).await.status, RequestStatus::Approved);
    w.policy(
        &t.admin,
        &t.vm,
        &[with_approval(rule("22")), with_approval(rule("3389"))],
    )
    .await;
    assert_eq!(w.request_row(&open).await.status, RequestStatus::Approved);

    w.clock.advance_ms(HOUR);
    assert_eq!(requests::open_due(&w.store).await.unwrap(), (0, 2));
    for id in [&approved, &open] {
        let r = w.request_row(id).await;
        assert_eq!(r.status, RequestStatus::Cancelled);
        assert_eq!(r.ports[0].status_reason, "its approval no longer stands");
    }
    assert!(
        w.grants(&t.vm).await.is_empty(),
        "nothing opened unapproved"
    );
}

/// Saving the policy again keeps a booked request's approval deadline at its start, as
/// when it was made, instead of cutting it to the time-out from when it was made.
#[tokio::test]
async fn a_policy_save_keeps_a_booked_requests_time_for_approval() {
    let w = world().await;
    let t = team(&w).await;
    let start = w.clock.now() + 3 * 24 * HOUR;
    let id = w
        .request_from(
            &t.rita,
            &t.vm,
            "3389",
            "198.51.100.10",
            "30",
            &form_time(start),
        )
        .await
        .unwrap();
    w.clock.advance_ms(2 * HOUR);
    w.policy(&t.admin, &t.vm, &[rule("22"), with_approval(rule("3389"))])
        .await;
    w.store.expire_due(w.clock.now()).await.unwrap();
    assert_eq!(
        w.request_row(&id).await.status,
        RequestStatus::PendingApproval,
        "still waiting for its approver"
    );
    requests::approve(&w.store, &t.alice, &id, "ok")
        .await
        .unwrap();
    assert_eq!(w.request_row(&id).await.status, RequestStatus::Approved);
}
