//! The Overview page's sections against the services and the store: what waits for an
//! approver (the approval queue itself), a requester's access in force, booked and
//! waiting, the agents in trouble and recent denials among the VMs an administrator
//! administers, and a new install's first steps. Above all, scope: a group-scoped
//! approver or administrator sees nothing of other groups.
//! Each test runs on SQLite, and on PostgreSQL when `PORTCULLIS_TEST_POSTGRES` names a
//! server.
#![cfg(feature = "ssr")]

mod common;

use common::*;
use portcullis_app::domain::jit::PortRuleInput;
use portcullis_app::domain::{Role, Scope};
use portcullis_app::services::enrollment::EnrollTarget;
use portcullis_app::services::overview::{self, SetupStep};
use portcullis_app::services::{notify, requests};
use portcullis_app::store::StoredVm;

const HOUR: i64 = 3_600_000;

/// `ms` as the portal's start field sends it (minutes, no zone: UTC).
fn form_time(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap()
        .format("%Y-%m-%dT%H:%M")
        .to_string()
}

/// Port 3389 with approval by `n` distinct approvers.
fn gated(n: &str) -> PortRuleInput {
    let mut r = with_approval(rule("3389"));
    r.approvals_required = n.into();
    r
}

fn names<T>(rows: &[T], name: impl Fn(&T) -> &str) -> Vec<String> {
    rows.iter().map(|r| name(r).to_owned()).collect()
}

async fn heard(w: &World, vms: &[&StoredVm]) {
    for vm in vms {
        w.store.note_agent_contact(&vm.id);
    }
    w.store.flush_agent_contacts().await.unwrap();
}

#[tokio::test]
async fn approvers_see_what_waits_for_their_decision_within_their_scope() {
    let w = world().await;
    let admin = w.admin().await;
    let web = w.vm(&admin, "web-1", "web").await;
    let db = w.vm(&admin, "db-1", "db").await;
    w.policy(&admin, &web, &[gated("2")]).await;
    w.policy(&admin, &db, &[gated("1")]).await;
    let rita = w
        .user(
            "rita",
            &[(Role::Requester, Scope::All), (Role::Approver, Scope::All)],
        )
        .await;
    let ann = w
        .user("ann", &[(Role::Approver, Scope::Group("web".into()))])
        .await;
    let vic = w
        .user("vic", &[(Role::Approver, Scope::Vm(db.id.clone()))])
        .await;
    let zed = w.user("zed", &[(Role::Approver, Scope::All)]).await;
    let reader = w.user("rob", &[(Role::Reader, Scope::All)]).await;

    let on_web = w
        .request(&rita, &web, "3389", "203.0.113.7", "30")
        .await
        .unwrap();
    w.clock.advance_secs(60);
    let on_db = w
        .request(&rita, &db, "3389", "203.0.113.7", "30")
        .await
        .unwrap();

    let ann_waits = overview::waiting_for(&w.store, &ann)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((ann_waits.count, ann_waits.more), (1, false));
    assert_eq!(names(&ann_waits.first, |r| &r.id), [on_web.as_str()]);
    let r = &ann_waits.first[0];
    assert_eq!(
        (r.vm_name.as_str(), r.requester.as_str()),
        ("web-1", "rita")
    );
    assert_eq!((r.approvals, r.approvals_required), (0, 2));
    assert_eq!(r.ports.len(), 1);
    assert_eq!(r.ports[0].port, 3389);

    let vic_waits = overview::waiting_for(&w.store, &vic)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(names(&vic_waits.first, |r| &r.id), [on_db.as_str()]);
    let zed_waits = overview::waiting_for(&w.store, &zed)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(zed_waits.count, 2);
    assert_eq!(
        names(&zed_waits.first, |r| &r.id),
        [on_db.as_str(), on_web.as_str()],
        "newest first"
    );
    // Nobody's own request waits for them.
    let rita_waits = overview::waiting_for(&w.store, &rita)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(rita_waits.count, 0);
    // Who approves nowhere has no such section.
    assert!(
        overview::waiting_for(&w.store, &reader)
            .await
            .unwrap()
            .is_none()
    );

    // One of two approvals: it leaves Ann's list and shows "1 of 2" to the others.
    requests::approve(&w.store, &ann, &on_web, "")
        .await
        .unwrap();
    let ann_waits = overview::waiting_for(&w.store, &ann)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(ann_waits.count, 0);
    let zed_waits = overview::waiting_for(&w.store, &zed)
        .await
        .unwrap()
        .unwrap();
    let r = zed_waits.first.iter().find(|r| r.id == on_web).unwrap();
    assert_eq!((r.approvals, r.approvals_required), (1, 2));

    // The count follows the queue; the page shows the first few.
    for i in 0..6 {
        w.clock.advance_secs(1);
        w.request(&rita, &db, "3389", &format!("203.0.113.{}", 10 + i), "30")
            .await
            .unwrap();
    }
    let vic_waits = overview::waiting_for(&w.store, &vic)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(vic_waits.count, 7);
    assert_eq!(vic_waits.first.len(), overview::FIRST_FEW);
    let ann_waits = overview::waiting_for(&w.store, &ann)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(ann_waits.count, 0, "nothing of group db reaches Ann");
}

#[tokio::test]
async fn requesters_see_their_access_in_force_booked_and_waiting() {
    let w = world().await;
    let admin = w.admin().await;
    let vm = w.vm(&admin, "web-1", "web").await;
    w.policy(&admin, &vm, &[rule("22"), gated("2")]).await;
    let rita = w.user("rita", &[(Role::Requester, Scope::All)]).await;
    let bob = w.user("bob", &[(Role::Requester, Scope::All)]).await;
    let reader = w.user("rob", &[(Role::Reader, Scope::All)]).await;

    let mine = overview::my_access(&w.store, &rita).await.unwrap().unwrap();
    assert!(mine.active.is_empty() && mine.scheduled.is_empty() && mine.pending.is_empty());

    let now = w.clock.now();
    let active = w
        .request(&rita, &vm, "22", "203.0.113.7", "30")
        .await
        .unwrap();
    let start = now + 2 * HOUR;
    let booked = w
        .request_from(&rita, &vm, "22", "203.0.113.8", "30", &form_time(start))
        .await
        .unwrap();
    let waiting = w
        .request(&rita, &vm, "3389", "203.0.113.9", "30")
        .await
        .unwrap();
    w.request(&bob, &vm, "22", "203.0.113.50", "30")
        .await
        .unwrap();

    let mine = overview::my_access(&w.store, &rita).await.unwrap().unwrap();
    assert_eq!(names(&mine.active, |r| &r.id), [active.as_str()]);
    assert_eq!(mine.active[0].end_at, Some(now + 30 * 60_000));
    assert_eq!(names(&mine.scheduled, |r| &r.id), [booked.as_str()]);
    assert_eq!(mine.scheduled[0].planned_start_at, Some(start));
    assert_eq!(names(&mine.pending, |r| &r.id), [waiting.as_str()]);
    assert_eq!(
        (
            mine.pending[0].approvals,
            mine.pending[0].approvals_required
        ),
        (0, 2)
    );
    assert!(!mine.more);

    // Ended access leaves the page; a denied request too.
    w.clock.advance_secs(31 * 60);
    w.store.expire_due(w.clock.now()).await.unwrap();
    let mine = overview::my_access(&w.store, &rita).await.unwrap().unwrap();
    assert!(mine.active.is_empty());
    assert_eq!(names(&mine.scheduled, |r| &r.id), [booked.as_str()]);
    let zed = w.user("zed", &[(Role::Approver, Scope::All)]).await;
    requests::deny(&w.store, &zed, &waiting, "no")
        .await
        .unwrap();
    let mine = overview::my_access(&w.store, &rita).await.unwrap().unwrap();
    assert!(mine.pending.is_empty());

    // At its start the booked window is in force, until its end.
    w.clock.advance_secs(2 * 3600 - 31 * 60);
    requests::open_due(&w.store).await.unwrap();
    let mine = overview::my_access(&w.store, &rita).await.unwrap().unwrap();
    assert_eq!(names(&mine.active, |r| &r.id), [booked.as_str()]);
    assert_eq!(mine.active[0].end_at, Some(start + 30 * 60_000));
    assert!(mine.scheduled.is_empty());

    // Who may request nowhere and has nothing open has no such section.
    assert!(
        overview::my_access(&w.store, &reader)
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test]
async fn administrators_see_agents_in_trouble_and_denials_among_their_vms_only() {
    let w = world().await;
    let root = w.admin().await;
    let web1 = w.vm(&root, "web-1", "web").await;
    let web2 = w.vm(&root, "web-2", "web").await;
    let web3 = w.vm(&root, "web-3", "web").await;
    let db1 = w.vm(&root, "db-1", "db").await;
    let db2 = w.vm(&root, "db-2", "db").await;
    let web_admin = w
        .user("wanda", &[(Role::Admin, Scope::Group("web".into()))])
        .await;
    let db1_admin = w
        .user("dave", &[(Role::Admin, Scope::Vm(db1.id.clone()))])
        .await;
    let approver = w.user("zed", &[(Role::Approver, Scope::All)]).await;
    let rita = w.user("rita", &[(Role::Requester, Scope::All)]).await;

    let agents = [
        w.enrolled(&root, EnrollTarget::Vm(&web1.id), &web1.name)
            .await,
        w.enrolled(&root, EnrollTarget::Vm(&web2.id), &web2.name)
            .await,
        w.enrolled(&root, EnrollTarget::Vm(&db1.id), &db1.name)
            .await,
        w.enrolled(&root, EnrollTarget::Vm(&db2.id), &db2.name)
            .await,
    ];
    // web-3 has no agent: nothing to say about it.
    let _ = &web3;
    w.report(&agents[0], &web1, "", "").await;
    w.report(&agents[2], &db1, "", "").await;
    let quiet = overview::trouble(&w.store, &root).await.unwrap().unwrap();
    assert!(quiet.silent.is_empty() && quiet.errors.is_empty());
    assert!(quiet.denials.is_empty());

    // 100 s later web-1 and db-1 are heard from, with an error; web-2 and db-2 are not.
    w.clock.advance_secs(100);
    w.report(&agents[0], &web1, "nft: table busy", "").await;
    w.report(&agents[2], &db1, "nft: no such file", "").await;
    heard(&w, &[&web1, &db1]).await;

    let t = overview::trouble(&w.store, &web_admin)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(names(&t.silent, |a| &a.vm_name), ["web-2"]);
    assert_eq!(names(&t.errors, |a| &a.vm_name), ["web-1"]);
    assert_eq!(t.errors[0].error, "nft: table busy");
    let t = overview::trouble(&w.store, &db1_admin)
        .await
        .unwrap()
        .unwrap();
    assert!(t.silent.is_empty(), "db-2 is not Dave's");
    assert_eq!(names(&t.errors, |a| &a.vm_name), ["db-1"]);
    let t = overview::trouble(&w.store, &root).await.unwrap().unwrap();
    let mut silent = names(&t.silent, |a| &a.vm_name);
    silent.sort();
    assert_eq!(silent, ["db-2", "web-2"]);
    assert_eq!(names(&t.errors, |a| &a.vm_name), ["db-1", "web-1"]);

    // Once administrators were told (the notification job marks it), the agents are still
    // silent on the page: both kinds are read.
    w.clock.advance_secs(200);
    notify::scan(&w.store).await.unwrap();
    heard(&w, &[&web1]).await;
    let t = overview::trouble(&w.store, &web_admin)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(names(&t.silent, |a| &a.vm_name), ["web-2"]);
    assert_eq!(names(&t.errors, |a| &a.vm_name), ["web-1"]);
    let t = overview::trouble(&w.store, &root).await.unwrap().unwrap();
    let mut silent = names(&t.silent, |a| &a.vm_name);
    silent.sort();
    assert_eq!(silent, ["db-1", "db-2", "web-2"]);
    assert!(t.silent.iter().all(|a| a.last_seen.is_some()));
    assert_eq!(
        names(&t.errors, |a| &a.vm_name),
        ["web-1"],
        "a silent agent's error is not repeated"
    );
    // Heard from again: no longer silent.
    heard(&w, &[&web2]).await;
    let t = overview::trouble(&w.store, &web_admin)
        .await
        .unwrap()
        .unwrap();
    assert!(t.silent.is_empty());

    // Denials of the last day, on their VMs only.
    for vm in [&web1, &db1] {
        w.policy(&root, vm, &[gated("1")]).await;
    }
    let on_web = w
        .request(&rita, &web1, "3389", "203.0.113.7", "30")
        .await
        .unwrap();
    let on_db = w
        .request(&rita, &db1, "3389", "203.0.113.7", "30")
        .await
        .unwrap();
    requests::deny(&w.store, &approver, &on_web, "not now")
        .await
        .unwrap();
    w.clock.advance_secs(60);
    requests::deny(&w.store, &approver, &on_db, "")
        .await
        .unwrap();
    let t = overview::trouble(&w.store, &web_admin)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(names(&t.denials, |d| &d.request_id), [on_web.as_str()]);
    let d = &t.denials[0];
    assert_eq!(
        (
            d.vm_name.as_str(),
            d.requester.as_str(),
            d.decided_by.as_str(),
            d.comment.as_str()
        ),
        ("web-1", "rita", "zed", "not now")
    );
    let t = overview::trouble(&w.store, &db1_admin)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(names(&t.denials, |d| &d.request_id), [on_db.as_str()]);
    let t = overview::trouble(&w.store, &root).await.unwrap().unwrap();
    assert_eq!(
        names(&t.denials, |d| &d.request_id),
        [on_db.as_str(), on_web.as_str()],
        "newest first"
    );
    w.clock.advance_secs(24 * 3600 - 1);
    let t = overview::trouble(&w.store, &root).await.unwrap().unwrap();
    assert_eq!(names(&t.denials, |d| &d.request_id), [on_db.as_str()]);
    w.clock.advance_secs(2);
    let t = overview::trouble(&w.store, &root).await.unwrap().unwrap();
    assert!(t.denials.is_empty(), "older than a day");

    // Who administers no VM has no such section.
    for who in [&approver, &rita] {
        assert!(overview::trouble(&w.store, who).await.unwrap().is_none());
    }
}

#[tokio::test]
async fn a_few_of_many_are_shown_and_more_is_said() {
    let w = world().await;
    let root = w.admin().await;
    let mut vms = Vec::new();
    for i in 0..7 {
        let vm = w.vm(&root, &format!("web-{i}"), "web").await;
        w.enrolled(&root, EnrollTarget::Vm(&vm.id), &vm.name).await;
        vms.push(vm);
    }
    w.clock.advance_secs(100);
    let t = overview::trouble(&w.store, &root).await.unwrap().unwrap();
    assert_eq!(t.silent.len(), overview::FIRST_FEW);
    assert!(t.more_silent);
    assert!(!t.more_errors);
}

#[tokio::test]
async fn a_new_install_shows_its_first_steps_to_global_administrators_until_done() {
    let w = world().await;
    let root = w.admin().await;
    assert_eq!(
        overview::setup(&w.store, &root, false).await.unwrap(),
        [
            (SetupStep::AddVm, false),
            (SetupStep::EnableJit, false),
            (SetupStep::InviteUsers, false),
            (SetupStep::ConnectSso, false),
        ]
    );
    let vm = w.vm(&root, "web-1", "web").await;
    let done = |s: Vec<(SetupStep, bool)>| -> Vec<SetupStep> {
        s.into_iter().filter(|(_, d)| *d).map(|(s, _)| s).collect()
    };
    assert_eq!(
        done(overview::setup(&w.store, &root, false).await.unwrap()),
        [SetupStep::AddVm]
    );
    w.policy(&root, &vm, &[rule("22")]).await;
    let wanda = w
        .user("wanda", &[(Role::Admin, Scope::Group("web".into()))])
        .await;
    assert_eq!(
        done(overview::setup(&w.store, &root, false).await.unwrap()),
        [
            SetupStep::AddVm,
            SetupStep::EnableJit,
            SetupStep::InviteUsers
        ]
    );
    // Only for who administers everything.
    assert!(
        overview::setup(&w.store, &wanda, false)
            .await
            .unwrap()
            .is_empty()
    );
    // Every step done: the list goes away.
    assert!(
        overview::setup(&w.store, &root, true)
            .await
            .unwrap()
            .is_empty()
    );
    let all = overview::overview(&w.store, &root, true).await.unwrap();
    assert!(all.setup.is_empty());
    assert!(all.waiting.is_some() && all.access.is_some() && all.trouble.is_some());
}
