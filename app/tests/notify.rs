//! Notifications with real receivers (SQLite, or PostgreSQL when `PORTCULLIS_TEST_POSTGRES`
//! names a server): an HTTP receiver on 127.0.0.1 in the test checks webhook bodies and
//! signatures, Slack's and Teams' formats, retries and a slow receiver; Debian's aiosmtpd
//! (started by the test) receives the e-mails. Messages are written by the change's own
//! transaction, go to whom the roles say, and are sent once.

mod common;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use common::*;
use portcullis_app::domain::notify::{ChannelInput, signature};
use portcullis_app::domain::{Role, Scope};
use portcullis_app::services::delivery::{Sender, deliver_due};
use portcullis_app::services::enrollment::EnrollTarget;
use portcullis_app::services::{Actor, notify, requests};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const PORTAL: &str = "https://jit.example.com";

/// What the receiver was sent: headers and body of each POST, by path.
#[derive(Default)]
struct Received {
    posts: Mutex<Vec<(String, HeaderMap, serde_json::Value)>>,
    /// Statuses to answer with, in order; 200 once they run out.
    answers: Mutex<Vec<u16>>,
    /// While set, the receiver holds every answer until it is released.
    hold: Mutex<Option<Arc<tokio::sync::Semaphore>>>,
    arrived: tokio::sync::Notify,
}

struct Receiver {
    url: String,
    got: Arc<Received>,
}

impl Receiver {
    async fn start() -> Receiver {
        async fn post(
            State(got): State<Arc<Received>>,
            uri: axum::http::Uri,
            headers: HeaderMap,
            body: axum::body::Bytes,
        ) -> StatusCode {
            let json = serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null);
            got.posts
                .lock()
                .unwrap()
                .push((uri.path().to_owned(), headers, json));
            got.arrived.notify_waiters();
            let hold = got.hold.lock().unwrap().clone();
            if let Some(gate) = hold {
                let _ = gate.acquire().await.unwrap();
            }
            let status = {
                let mut answers = got.answers.lock().unwrap();
                if answers.is_empty() {
                    200
                } else {
                    answers.remove(0)
                }
            };
            StatusCode::from_u16(status).unwrap()
        }
        let got = Arc::new(Received::default());
        let app = axum::Router::new()
            .route("/{*path}", axum::routing::post(post))
            .with_state(got.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Receiver { url, got }
    }

    fn posts(&self, path: &str) -> Vec<(HeaderMap, serde_json::Value)> {
        self.got
            .posts
            .lock()
            .unwrap()
            .iter()
            .filter(|(p, _, _)| p == path)
            .map(|(_, h, b)| (h.clone(), b.clone()))
            .collect()
    }
}

/// Debian's aiosmtpd on a free port of 127.0.0.1, keeping each message in a maildir.
struct Smtp {
    port: u16,
    maildir: std::path::PathBuf,
    child: std::process::Child,
    _dir: tempfile::TempDir,
}

impl Smtp {
    async fn start() -> Smtp {
        let dir = tempfile::tempdir().unwrap();
        // The handler makes the maildir itself (and fails on an empty folder).
        let maildir = dir.path().join("mail");
        // A free port is only free until someone takes it: another test may bind it between
        // our look and aiosmtpd's bind, and then aiosmtpd exits. Such a start is tried again
        // on another port; a server is ours only while our process is still running.
        for _ in 0..5 {
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            let mut child = std::process::Command::new("/usr/bin/python3")
                .args(["-m", "aiosmtpd", "-n", "-l"])
                .arg(format!("127.0.0.1:{port}"))
                .args(["-c", "aiosmtpd.handlers.Mailbox"])
                .arg(&maildir)
                .spawn()
                .expect(
                    "Debian's python3 with python3-aiosmtpd (scripts/setup.sh test installs it)",
                );
            for _ in 0..100 {
                if child.try_wait().unwrap().is_some() {
                    break;
                }
                if tokio::net::TcpStream::connect(("127.0.0.1", port))
                    .await
                    .is_ok()
                {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    if child.try_wait().unwrap().is_none() {
                        return Smtp {
                            port,
                            maildir,
                            child,
                            _dir: dir,
                        };
                    }
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("aiosmtpd did not start on 127.0.0.1 (five ports tried)");
    }

    /// Every message received, as its raw text.
    fn messages(&self) -> Vec<String> {
        let Ok(entries) = std::fs::read_dir(self.maildir.join("new")) else {
            return Vec::new();
        };
        entries
            .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap())
            .collect()
    }
}

impl Drop for Smtp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn webhook(w: &World, admin: &Actor, name: &str, url: &str, key: &str) -> String {
    notify::create_channel(
        &w.store,
        admin,
        &ChannelInput {
            name,
            kind: "webhook",
            target: url,
            secret: key,
            ..Default::default()
        },
    )
    .await
    .unwrap()
    .0
}

async fn mail_channel(w: &World, admin: &Actor, port: u16, to: &str) -> String {
    let target = format!("127.0.0.1:{port}");
    notify::create_channel(
        &w.store,
        admin,
        &ChannelInput {
            name: "mail",
            kind: "email",
            target: &target,
            smtp_security: "none",
            email_from: "portcullis@example.com",
            email_to: to,
            ..Default::default()
        },
    )
    .await
    .unwrap()
    .0
}

async fn set_email(w: &World, who: &Actor, email: &str, warn: &str) {
    notify::set_mail_settings(&w.store, who, email, true, warn)
        .await
        .unwrap();
}

/// A header of a raw e-mail, unfolded.
fn header(raw: &str, name: &str) -> String {
    let prefix = format!("{}:", name.to_ascii_lowercase());
    let mut out = String::new();
    let mut in_header = false;
    for line in raw.lines() {
        if line.is_empty() {
            break;
        }
        if in_header && line.starts_with([' ', '\t']) {
            out.push_str(line.trim_start_matches([' ', '\t']));
            continue;
        }
        in_header = line.to_ascii_lowercase().starts_with(&prefix);
        if in_header {
            out = line[prefix.len()..].trim().to_owned();
        }
    }
    out
}

/// The body of a raw e-mail, with quoted-printable soft line breaks joined.
fn body(raw: &str) -> String {
    let body = raw.split_once("\n\n").map(|(_, b)| b).unwrap_or_default();
    body.replace("=\n", "").replace("=3D", "=")
}

#[tokio::test]
async fn a_waiting_request_reaches_its_approvers_and_its_routes_signed_and_with_a_link() {
    let w = world().await;
    let smtp = Smtp::start().await;
    let hooks = Receiver::start().await;
    let admin = w.admin().await;
    let web = w.vm(&admin, "web-1", "web").await;
    w.policy(&admin, &web, &[with_approval(rule("22"))]).await;
    let alice = w
        .user("alice", &[(Role::Requester, Scope::Group("web".into()))])
        .await;
    let bob = w
        .user("bob", &[(Role::Approver, Scope::Group("web".into()))])
        .await;
    let carol = w
        .user("carol", &[(Role::Approver, Scope::Group("db".into()))])
        .await;
    let dave = w
        .user("dave", &[(Role::Approver, Scope::Group("web".into()))])
        .await;
    set_email(&w, &alice, "alice@example.com", "10").await;
    set_email(&w, &bob, "bob@example.com", "10").await;
    set_email(&w, &carol, "carol@example.com", "10").await;
    // Dave may approve but asked for no e-mail.
    notify::set_mail_settings(&w.store, &dave, "dave@example.com", false, "10")
        .await
        .unwrap();
    mail_channel(&w, &admin, smtp.port, "").await;
    let key = "a-signing-key-for-the-test";
    let ops = webhook(&w, &admin, "ops", &format!("{}/ops", hooks.url), key).await;
    let other = webhook(&w, &admin, "db-team", &format!("{}/db", hooks.url), key).await;
    notify::add_route(&w.store, &admin, &ops, "approval.waiting", "web")
        .await
        .unwrap();
    notify::add_route(&w.store, &admin, &other, "approval.waiting", "db")
        .await
        .unwrap();

    let id = w
        .request(&alice, &web, "22", "203.0.113.7", "30")
        .await
        .unwrap();
    let sender = Sender::new(PORTAL);
    // Sent once: a second pass finds nothing due.
    assert_eq!(deliver_due(&w.store, &sender).await.unwrap(), 2);
    assert_eq!(deliver_due(&w.store, &sender).await.unwrap(), 0);

    let link = format!("{PORTAL}/requests/{id}");
    let mails = smtp.messages();
    assert_eq!(
        mails.len(),
        1,
        "only bob may approve and wants e-mail: {mails:?}"
    );
    assert_eq!(header(&mails[0], "To"), "bob@example.com");
    assert_eq!(header(&mails[0], "From"), "portcullis@example.com");
    assert_eq!(
        header(&mails[0], "Subject"),
        "alice asks for access to web-1"
    );
    let text = body(&mails[0]);
    assert!(text.contains(&format!("Approve or deny: {link}")), "{text}");
    assert!(text.contains("Source: 203.0.113.7/32"), "{text}");
    println!("e-mail received by aiosmtpd:\n{}", mails[0]);

    assert!(
        hooks.posts("/db").is_empty(),
        "the db route is for another group"
    );
    let posts = hooks.posts("/ops");
    assert_eq!(posts.len(), 1);
    let (headers, json) = &posts[0];
    assert_eq!(json["event"], "approval.waiting");
    assert_eq!(json["url"], link.as_str());
    assert_eq!(json["request_id"], id.as_str());
    assert_eq!(json["vm"], "web-1");
    assert_eq!(json["facts"]["Requester"], "alice");
    assert_eq!(headers["portcullis-event"], "approval.waiting");
    // The receiver's check: recompute the signature over the exact bytes received.
    let sig = headers["portcullis-signature"].to_str().unwrap();
    let t: i64 = sig
        .strip_prefix("t=")
        .and_then(|s| s.split(',').next())
        .unwrap()
        .parse()
        .unwrap();
    let raw = serde_json::to_vec(json).unwrap();
    assert_eq!(sig, signature(key, t, &raw));
    assert_ne!(sig, signature("another-key-entirely", t, &raw));
    println!(
        "webhook received: {sig}\n{}",
        serde_json::to_string_pretty(json).unwrap()
    );

    // The decision reaches the requester.
    requests::approve(&w.store, &bob, &id, "go ahead")
        .await
        .unwrap();
    deliver_due(&w.store, &sender).await.unwrap();
    let mails = smtp.messages();
    let to_alice: Vec<_> = mails
        .iter()
        .filter(|m| header(m, "To") == "alice@example.com")
        .collect();
    assert_eq!(to_alice.len(), 1, "{mails:?}");
    assert_eq!(header(to_alice[0], "Subject"), "Access to web-1 approved");
    assert!(
        body(to_alice[0]).contains("by bob. go ahead"),
        "{}",
        to_alice[0]
    );
}

#[tokio::test]
async fn slack_and_teams_get_their_own_formats() {
    let w = world().await;
    let hooks = Receiver::start().await;
    let admin = w.admin().await;
    for kind in ["slack", "teams"] {
        let (id, key) = notify::create_channel(
            &w.store,
            &admin,
            &ChannelInput {
                name: kind,
                kind,
                target: &format!("{}/{kind}/services/SECRET", hooks.url),
                ..Default::default()
            },
        )
        .await
        .unwrap();
        assert_eq!(key, None, "only generic webhooks get a signing key");
        let shown = notify::get_channel(&w.store, &admin, &id).await.unwrap();
        assert_eq!(
            shown.target,
            format!("{}/…", hooks.url),
            "the path is the secret"
        );
        let message = notify::queue_test(&w.store, &admin, &id).await.unwrap();
        deliver_due(&w.store, &Sender::new(PORTAL)).await.unwrap();
        let m = notify::message(&w.store, &admin, &message).await.unwrap();
        assert_eq!(m.status, "delivered", "{m:?}");
    }
    let slack = &hooks.posts("/slack/services/SECRET")[0].1;
    assert_eq!(slack["text"], "Portcullis test message for slack");
    assert_eq!(slack["blocks"][0]["type"], "section");
    assert_eq!(
        slack["blocks"][2]["elements"][0]["url"],
        format!("{PORTAL}/admin/notifications")
    );
    let teams = &hooks.posts("/teams/services/SECRET")[0].1;
    assert_eq!(teams["type"], "message");
    let card = &teams["attachments"][0];
    assert_eq!(
        card["contentType"],
        "application/vnd.microsoft.card.adaptive"
    );
    assert_eq!(card["content"]["type"], "AdaptiveCard");
    assert_eq!(
        card["content"]["body"][0]["text"],
        "Portcullis test message for teams"
    );
}

#[tokio::test]
async fn a_failing_receiver_is_retried_with_backoff_and_a_refusing_one_is_given_up() {
    let w = world().await;
    let hooks = Receiver::start().await;
    let admin = w.admin().await;
    let ch = webhook(&w, &admin, "ops", &format!("{}/ops", hooks.url), "").await;
    hooks.got.answers.lock().unwrap().extend([500, 503]);
    let message = notify::queue_test(&w.store, &admin, &ch).await.unwrap();
    let sender = Sender::new(PORTAL);
    assert_eq!(deliver_due(&w.store, &sender).await.unwrap(), 0);
    let m = notify::message(&w.store, &admin, &message).await.unwrap();
    assert_eq!((m.status.as_str(), m.attempts), ("pending", 1));
    assert_eq!(m.last_error, "the receiver answered HTTP 500");
    assert_eq!(m.next_attempt_at, w.clock.now() + 30_000);
    let counts = w.store.scrape_counts(0).await.unwrap();
    assert_eq!(
        (counts.notifications_pending, counts.notifications_failed),
        (1, 0)
    );
    // Not due yet: nothing is sent.
    deliver_due(&w.store, &sender).await.unwrap();
    assert_eq!(hooks.posts("/ops").len(), 1);
    w.clock.advance_secs(30);
    deliver_due(&w.store, &sender).await.unwrap();
    let m = notify::message(&w.store, &admin, &message).await.unwrap();
    assert_eq!((m.status.as_str(), m.attempts), ("pending", 2));
    assert_eq!(
        m.next_attempt_at,
        w.clock.now() + 60_000,
        "the wait doubles"
    );
    w.clock.advance_secs(60);
    assert_eq!(deliver_due(&w.store, &sender).await.unwrap(), 1);
    let m = notify::message(&w.store, &admin, &message).await.unwrap();
    assert_eq!((m.status.as_str(), m.attempts), ("delivered", 3));
    assert_eq!(hooks.posts("/ops").len(), 3);
    // The same message each time: one delivery id.
    let ids: Vec<_> = hooks
        .posts("/ops")
        .iter()
        .map(|(h, _)| h["portcullis-delivery"].to_str().unwrap().to_owned())
        .collect();
    assert!(ids.iter().all(|i| *i == message), "{ids:?}");

    // 404: the URL is wrong; trying again cannot help.
    hooks.got.answers.lock().unwrap().push(404);
    let message = notify::queue_test(&w.store, &admin, &ch).await.unwrap();
    deliver_due(&w.store, &sender).await.unwrap();
    let m = notify::message(&w.store, &admin, &message).await.unwrap();
    assert_eq!((m.status.as_str(), m.attempts), ("failed", 1));
    let counts = w.store.scrape_counts(0).await.unwrap();
    assert_eq!(
        (counts.notifications_pending, counts.notifications_failed),
        (0, 1)
    );
    // The channel shows it.
    let shown = notify::get_channel(&w.store, &admin, &ch).await.unwrap();
    assert_eq!(shown.last_status, "failed");
    assert_eq!(shown.last_error, "the receiver answered HTTP 404");

    // Nobody listening: a temporary failure that says so.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/gone", closed.local_addr().unwrap());
    drop(closed);
    let gone = webhook(&w, &admin, "gone", &url, "").await;
    let message = notify::queue_test(&w.store, &admin, &gone).await.unwrap();
    deliver_due(&w.store, &sender).await.unwrap();
    let m = notify::message(&w.store, &admin, &message).await.unwrap();
    assert_eq!(
        (m.status.as_str(), m.last_error.as_str()),
        ("pending", "could not connect")
    );
    // The list shows each channel's latest message, as the channel's own view does.
    let listed = notify::list_channels(&w.store, &admin).await.unwrap();
    for c in &listed {
        assert_eq!(
            *c,
            notify::get_channel(&w.store, &admin, &c.id).await.unwrap()
        );
    }
    let statuses: Vec<_> = listed.iter().map(|c| c.last_status.as_str()).collect();
    assert_eq!(statuses, ["pending", "failed"]);
}

#[tokio::test]
async fn a_slow_receiver_does_not_hold_up_requests() {
    let w = world().await;
    let hooks = Receiver::start().await;
    let admin = w.admin().await;
    let vm = w.vm(&admin, "web-1", "web").await;
    w.policy(&admin, &vm, &[with_approval(rule("22"))]).await;
    let alice = w.user("alice", &[(Role::Requester, Scope::All)]).await;
    let ch = webhook(&w, &admin, "ops", &format!("{}/ops", hooks.url), "").await;
    notify::add_route(&w.store, &admin, &ch, "approval.waiting", "")
        .await
        .unwrap();
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    *hooks.got.hold.lock().unwrap() = Some(gate.clone());
    let job = tokio::spawn(portcullis_app::services::delivery::run_delivery(
        w.store.clone(),
        Sender::new(PORTAL),
    ));
    let arrived = hooks.got.arrived.notified();
    w.request(&alice, &vm, "22", "203.0.113.7", "30")
        .await
        .unwrap();
    // The delivery job took the message and the receiver holds it...
    tokio::time::timeout(Duration::from_secs(10), arrived)
        .await
        .expect("the delivery job sends at once after the commit");
    // ...while requests go on being answered.
    for source in ["203.0.113.8", "203.0.113.9"] {
        tokio::time::timeout(
            Duration::from_secs(5),
            w.request(&alice, &vm, "22", source, "30"),
        )
        .await
        .expect("a request does not wait for a receiver")
        .unwrap();
    }
    assert_eq!(hooks.posts("/ops").len(), 1, "the first is still held");
    gate.add_permits(100);
    for _ in 0..100 {
        if hooks.posts("/ops").len() == 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(hooks.posts("/ops").len(), 3);
    job.abort();
}

#[tokio::test]
async fn time_driven_events_are_told_once_each() {
    let w = world().await;
    let smtp = Smtp::start().await;
    let admin = w.admin().await;
    set_email(&w, &admin, "root@example.com", "10").await;
    let vm = w.vm(&admin, "web-1", "web").await;
    w.policy(&admin, &vm, &[rule("22")]).await;
    let alice = w.user("alice", &[(Role::Requester, Scope::All)]).await;
    set_email(&w, &alice, "alice@example.com", "10").await;
    mail_channel(&w, &admin, smtp.port, "").await;
    let sender = Sender::new(PORTAL);
    let id = w
        .request(&alice, &vm, "22", "203.0.113.7", "60")
        .await
        .unwrap();
    assert_eq!(notify::scan(&w.store).await.unwrap(), 0);
    w.clock.advance_secs(51 * 60);
    assert_eq!(notify::scan(&w.store).await.unwrap(), 1);
    assert_eq!(notify::scan(&w.store).await.unwrap(), 0, "once per end");
    deliver_due(&w.store, &sender).await.unwrap();
    let mails = smtp.messages();
    assert_eq!(mails.len(), 1, "{mails:?}");
    assert_eq!(header(&mails[0], "To"), "alice@example.com");
    assert_eq!(
        header(&mails[0], "Subject"),
        "Access to web-1 ends in 9 min"
    );
    assert!(body(&mails[0]).contains(&format!("{PORTAL}/requests/{id}")));
    // An extension moves the end: its own warning comes when that end nears.
    requests::extend(&w.store, &alice, &id, "60").await.unwrap();
    assert_eq!(notify::scan(&w.store).await.unwrap(), 0);
    w.clock.advance_secs(55 * 60);
    assert_eq!(notify::scan(&w.store).await.unwrap(), 1);

    // Agent trouble reaches the VM's administrators.
    let agent_id = w.enrolled(&admin, EnrollTarget::Vm(&vm.id), &vm.name).await;
    let outcome = w
        .report(&agent_id, &vm, "nft: No such file or directory", "")
        .await;
    assert!(matches!(
        outcome,
        portcullis_app::store::ReportOutcome::Recorded { .. }
    ));
    w.store.note_agent_contact(&vm.id);
    w.store.flush_agent_contacts().await.unwrap();
    assert_eq!(notify::scan(&w.store).await.unwrap(), 1);
    assert_eq!(notify::scan(&w.store).await.unwrap(), 0);
    w.clock.advance_secs(181);
    assert_eq!(notify::scan(&w.store).await.unwrap(), 1, "silent now");
    assert_eq!(notify::scan(&w.store).await.unwrap(), 0);
    deliver_due(&w.store, &sender).await.unwrap();
    let to_root: Vec<String> = smtp
        .messages()
        .into_iter()
        .filter(|m| header(m, "To") == "root@example.com")
        .map(|m| header(&m, "Subject"))
        .collect();
    let mut subjects = to_root.clone();
    subjects.sort();
    assert_eq!(
        subjects,
        ["Agent of web-1 is silent", "Enforcement error on web-1"],
        "{to_root:?}"
    );
    // Heard again, then silent again: told again.
    w.store.note_agent_contact(&vm.id);
    w.store.flush_agent_contacts().await.unwrap();
    w.clock.advance_secs(181);
    assert_eq!(notify::scan(&w.store).await.unwrap(), 1);
}

#[tokio::test]
async fn channels_are_for_administrators_and_never_show_their_secrets() {
    let w = world().await;
    let admin = w.admin().await;
    let approver = w.user("bob", &[(Role::Approver, Scope::All)]).await;
    let input = ChannelInput {
        name: "ops",
        kind: "webhook",
        target: "https://hooks.example.com/in/SECRET-PATH?token=x",
        ..Default::default()
    };
    assert!(matches!(
        notify::create_channel(&w.store, &approver, &input).await,
        Err(portcullis_app::error::AppError::Forbidden)
    ));
    let (id, key) = notify::create_channel(&w.store, &admin, &input)
        .await
        .unwrap();
    let key = key.expect("a webhook without a key gets one, shown once");
    assert_eq!(key.len(), 64);
    let shown = notify::list_channels(&w.store, &admin).await.unwrap();
    let debug = format!("{shown:?}");
    assert!(
        !debug.contains(&key) && !debug.contains("SECRET-PATH"),
        "{debug}"
    );
    assert!(shown[0].has_secret);
    let again = notify::create_channel(&w.store, &admin, &input)
        .await
        .unwrap_err();
    assert!(format!("{again:?}").contains("exists already"), "{again:?}");
    assert!(matches!(
        notify::list_channels(&w.store, &approver).await,
        Err(portcullis_app::error::AppError::Forbidden)
    ));
    // Editing with an empty key keeps it; the activity log names the channel, not the key.
    let edit = ChannelInput {
        name: "ops-renamed",
        ..input.clone()
    };
    notify::update_channel(&w.store, &admin, &id, &edit, false)
        .await
        .unwrap();
    let stored = w.store.get_channel(&id).await.unwrap().unwrap();
    assert_eq!(stored.secret, key);
    assert!(!stored.enabled);
    let name = notify::set_channel_enabled(&w.store, &admin, &id, true)
        .await
        .unwrap();
    assert_eq!(name, "ops-renamed");
    let stored = w.store.get_channel(&id).await.unwrap().unwrap();
    assert!(stored.enabled && stored.secret == key);
    assert!(matches!(
        notify::set_channel_enabled(&w.store, &approver, &id, false).await,
        Err(portcullis_app::error::AppError::Forbidden)
    ));
    for action in ["notify.channel.create", "notify.channel.update"] {
        let entries = w.logged(action).await;
        assert_eq!(entries.len(), 1, "{action}");
        let detail = &entries[0].content.detail;
        assert!(
            !detail.contains("SECRET") && !detail.contains(&key),
            "{detail}"
        );
    }
    // Routes name a real event; removing the channel removes them.
    let e = notify::add_route(&w.store, &admin, &id, "everything", "")
        .await
        .unwrap_err();
    assert!(format!("{e:?}").contains("Choose an event"));
    notify::add_route(&w.store, &admin, &id, "agent.silent", "*")
        .await
        .unwrap();
    assert_eq!(
        notify::list_routes(&w.store, &admin).await.unwrap()[0].group,
        ""
    );
    notify::delete_channel(&w.store, &admin, &id).await.unwrap();
    assert!(
        notify::list_routes(&w.store, &admin)
            .await
            .unwrap()
            .is_empty()
    );
    // A user's own settings are checked.
    let e = notify::set_mail_settings(&w.store, &approver, "not an address", true, "10")
        .await
        .unwrap_err();
    assert!(format!("{e:?}").contains("email"));
    let e = notify::set_mail_settings(&w.store, &approver, "", true, "9999")
        .await
        .unwrap_err();
    assert!(format!("{e:?}").contains("warn_minutes"));
}

/// Several replicas deliver from one outbox: each message is sent once.
#[tokio::test]
async fn replicas_send_each_message_once() {
    let w = world().await;
    assert_eq!(
        w.store.backend(),
        portcullis_app::store::Backend::Postgres,
        "this test needs PORTCULLIS_TEST_POSTGRES"
    );
    let hooks = Receiver::start().await;
    let admin = w.admin().await;
    let ch = webhook(&w, &admin, "ops", &format!("{}/ops", hooks.url), "").await;
    let mut ids = Vec::new();
    for _ in 0..60 {
        ids.push(notify::queue_test(&w.store, &admin, &ch).await.unwrap());
    }
    let replicas = [w.replica().await, w.replica().await, w.replica().await];
    let sender = Sender::new(PORTAL);
    let runs = replicas.iter().map(|r| deliver_due(r, &sender));
    let delivered: usize = futures::future::join_all(runs)
        .await
        .into_iter()
        .map(Result::unwrap)
        .sum();
    assert_eq!(delivered, 60);
    let mut got: Vec<String> = hooks
        .posts("/ops")
        .iter()
        .map(|(h, _)| h["portcullis-delivery"].to_str().unwrap().to_owned())
        .collect();
    got.sort();
    ids.sort();
    assert_eq!(got, ids, "each message once");
}

#[tokio::test]
async fn access_ended_by_someone_elses_change_is_told_to_the_requester() {
    let w = world().await;
    let smtp = Smtp::start().await;
    let admin = w.admin().await;
    let vm = w.vm(&admin, "web-1", "web").await;
    w.policy(&admin, &vm, &[rule("22"), rule("3389")]).await;
    let alice = w.user("alice", &[(Role::Requester, Scope::All)]).await;
    set_email(&w, &alice, "alice@example.com", "10").await;
    mail_channel(&w, &admin, smtp.port, "").await;
    let id = w
        .request(&alice, &vm, "22", "203.0.113.7", "30")
        .await
        .unwrap();
    // Her own revocation tells nobody: she knows.
    let own = w
        .request(&alice, &vm, "3389", "203.0.113.7", "30")
        .await
        .unwrap();
    requests::revoke(&w.store, &alice, &own).await.unwrap();
    portcullis_app::services::jit::remove_policy(&w.store, &admin, &vm.id)
        .await
        .unwrap();
    assert!(w.grants(&vm).await.is_empty());
    deliver_due(&w.store, &Sender::new(PORTAL)).await.unwrap();
    let mails = smtp.messages();
    assert_eq!(mails.len(), 1, "{mails:?}");
    assert_eq!(header(&mails[0], "Subject"), "Access to web-1 revoked");
    let text = body(&mails[0]);
    assert!(
        text.contains("22/tcp on web-1 was revoked by root."),
        "{text}"
    );
    assert!(text.contains("Reason: "), "{text}");
    assert!(text.contains(&format!("{PORTAL}/requests/{id}")), "{text}");
}

/// An approver through an identity provider group, who never set an address, is e-mailed
/// at the address the provider gave; one who turned e-mail off is not.
#[tokio::test]
async fn federated_approvers_are_reached_at_their_providers_address() {
    use portcullis_app::domain::RoleAssignment;
    use portcullis_app::domain::sso::GroupRule;
    use portcullis_app::store::{FederatedProfile, NewLogEntry};
    let w = world().await;
    let smtp = Smtp::start().await;
    let admin = w.admin().await;
    let vm = w.vm(&admin, "web-1", "web").await;
    w.policy(&admin, &vm, &[with_approval(rule("22"))]).await;
    let alice = w.user("alice", &[(Role::Requester, Scope::All)]).await;
    mail_channel(&w, &admin, smtp.port, "").await;
    w.store
        .add_group_rule(
            &GroupRule {
                provider: "corp".into(),
                group: "jit-approvers".into(),
                assignment: RoleAssignment {
                    role: Role::Approver,
                    scope: Scope::Group("web".into()),
                },
            },
            NewLogEntry::default(),
        )
        .await
        .unwrap();
    let groups = vec!["jit-approvers".to_owned()];
    let mut ids = Vec::new();
    for (name, subject) in [("erin", "s-1"), ("frank", "s-2"), ("gina", "s-3")] {
        let email = format!("{name}@corp.example.com");
        let user = w
            .store
            .create_federated_user(
                name,
                &FederatedProfile {
                    provider: "corp",
                    subject,
                    email: &email,
                    display_name: name,
                    // Gina is in no group that may approve.
                    groups: if name == "gina" { &[] } else { &groups },
                },
                NewLogEntry::default(),
            )
            .await
            .unwrap();
        ids.push(user.id);
    }
    let frank = w.actor(&ids[1]).await;
    notify::set_mail_settings(&w.store, &frank, "", false, "10")
        .await
        .unwrap();
    let erin = w.actor(&ids[0]).await;
    let shown = notify::mail_settings(&w.store, &erin).await.unwrap();
    assert_eq!(
        (shown.email.as_str(), shown.provider_email.as_str()),
        ("", "erin@corp.example.com")
    );
    w.request(&alice, &vm, "22", "203.0.113.7", "30")
        .await
        .unwrap();
    deliver_due(&w.store, &Sender::new(PORTAL)).await.unwrap();
    let to: Vec<String> = smtp.messages().iter().map(|m| header(m, "To")).collect();
    assert_eq!(to, ["erin@corp.example.com"]);
}

/// An empty secret keeps the stored one only while the channel still sends to where it
/// did: otherwise whoever holds an administrator's session could point a webhook or an
/// e-mail channel at their own server and have the signing key or the SMTP password sent
/// there. A changed destination needs the secret again, and nothing is stored until then.
#[tokio::test]
async fn a_stored_secret_is_not_sent_to_a_changed_destination() {
    let w = world().await;
    let admin = w.admin().await;
    let hooks = Receiver::start().await;
    let key = "the signing key of ops";
    let url = format!("{}/ops", hooks.url);
    let id = webhook(&w, &admin, "ops", &url, key).await;
    let before = w.store.get_channel(&id).await.unwrap().unwrap();

    let elsewhere = format!("{}/elsewhere", hooks.url);
    let moved = ChannelInput {
        name: "ops",
        kind: "webhook",
        target: &elsewhere,
        ..Default::default()
    };
    let e = notify::update_channel(&w.store, &admin, &id, &moved, true)
        .await
        .unwrap_err();
    let said = e.field_message("secret").unwrap_or_default();
    assert!(said.contains("signing key again"), "{e:?}");
    assert_eq!(w.store.get_channel(&id).await.unwrap().unwrap(), before);
    // The key was not sent there either.
    let message = notify::queue_test(&w.store, &admin, &id).await.unwrap();
    deliver_due(&w.store, &Sender::new(PORTAL)).await.unwrap();
    assert!(hooks.posts("/elsewhere").is_empty());
    assert_eq!(hooks.posts("/ops").len(), 1, "{message}");

    // The same URL keeps the key; a new URL with a key given takes both.
    let renamed = ChannelInput {
        name: "ops-2",
        target: &url,
        ..moved.clone()
    };
    notify::update_channel(&w.store, &admin, &id, &renamed, true)
        .await
        .unwrap();
    let stored = w.store.get_channel(&id).await.unwrap().unwrap();
    assert_eq!(
        (stored.name.as_str(), stored.secret.as_str()),
        ("ops-2", key)
    );
    let with_key = ChannelInput {
        secret: "a new key for the new place",
        ..moved.clone()
    };
    notify::update_channel(&w.store, &admin, &id, &with_key, true)
        .await
        .unwrap();
    let stored = w.store.get_channel(&id).await.unwrap().unwrap();
    assert_eq!(
        (stored.target.as_str(), stored.secret.as_str()),
        (elsewhere.as_str(), "a new key for the new place")
    );

    // E-mail: the password stays only with the same server, security and user name.
    let mail = ChannelInput {
        name: "mail",
        kind: "email",
        target: "127.0.0.1:2525",
        secret: "the smtp password",
        smtp_security: "starttls",
        smtp_username: "portcullis",
        email_from: "portcullis@example.com",
        email_to: "ops@example.com",
    };
    let (mail_id, _) = notify::create_channel(&w.store, &admin, &mail)
        .await
        .unwrap();
    let before = w.store.get_channel(&mail_id).await.unwrap().unwrap();
    let keep = ChannelInput {
        secret: "",
        ..mail.clone()
    };
    for changed in [
        ChannelInput {
            target: "mail.evil.example:2525",
            ..keep.clone()
        },
        ChannelInput {
            target: "127.0.0.1:2526",
            ..keep.clone()
        },
        ChannelInput {
            smtp_security: "none",
            ..keep.clone()
        },
        ChannelInput {
            smtp_username: "someone-else",
            ..keep.clone()
        },
    ] {
        let e = notify::update_channel(&w.store, &admin, &mail_id, &changed, true)
            .await
            .unwrap_err();
        let said = e.field_message("secret").unwrap_or_default();
        assert!(said.contains("password again"), "{changed:?}: {e:?}");
        assert_eq!(
            w.store.get_channel(&mail_id).await.unwrap().unwrap(),
            before
        );
    }
    let more = ChannelInput {
        email_to: "ops@example.com, oncall@example.com",
        ..keep.clone()
    };
    notify::update_channel(&w.store, &admin, &mail_id, &more, true)
        .await
        .unwrap();
    let stored = w.store.get_channel(&mail_id).await.unwrap().unwrap();
    assert_eq!(stored.secret, "the smtp password");
    assert!(stored.settings.contains("oncall@example.com"));

    // Slack and Teams: the URL is the secret, given whole with every change; nothing
    // stored goes anywhere new, so a new URL needs nothing more.
    for kind in ["slack", "teams"] {
        let first = format!("{}/{kind}/services/OLD", hooks.url);
        let (id, _) = notify::create_channel(
            &w.store,
            &admin,
            &ChannelInput {
                name: kind,
                kind,
                target: &first,
                ..Default::default()
            },
        )
        .await
        .unwrap();
        let second = format!("{}/{kind}/services/NEW", hooks.url);
        let input = ChannelInput {
            name: kind,
            kind,
            target: &second,
            ..Default::default()
        };
        notify::update_channel(&w.store, &admin, &id, &input, true)
            .await
            .unwrap();
        assert_eq!(
            w.store.get_channel(&id).await.unwrap().unwrap().target,
            second
        );
    }
}

/// An attempt that outlived its claim (the lease passed and another replica took the
/// message) records nothing: the newer claim's result stands, whichever finishes first.
#[tokio::test]
async fn a_late_attempt_that_lost_its_claim_is_not_recorded() {
    use portcullis_app::store::Attempt;
    let w = world().await;
    let admin = w.admin().await;
    let ch = webhook(&w, &admin, "ops", "https://hooks.example.com/ops", "").await;
    let id = notify::queue_test(&w.store, &admin, &ch).await.unwrap();
    let first = w.store.claim_due_messages(10, 60_000).await.unwrap();
    assert_eq!(first.len(), 1);
    w.clock.advance_secs(61);
    let second = w.store.claim_due_messages(10, 60_000).await.unwrap();
    assert_eq!(
        second.len(),
        1,
        "the lease ended: the message is taken again"
    );

    // The first claimant finishes while the second still holds the message.
    let recorded = w
        .store
        .record_attempt(&first[0].id, first[0].claimed_until, &Attempt::Delivered)
        .await
        .unwrap();
    assert!(!recorded);
    let m = w.store.outbox_message(&id).await.unwrap().unwrap();
    assert_eq!(
        (m.status.as_str(), m.attempts),
        ("pending", 0),
        "a lost claim does not count"
    );
    assert!(
        w.store
            .claim_due_messages(10, 60_000)
            .await
            .unwrap()
            .is_empty(),
        "the second claim still holds the message"
    );

    // The second claimant's outcome counts; a late result after it changes nothing.
    let retry = Attempt::Retry {
        at: w.clock.now() + 30_000,
        error: "the receiver answered HTTP 503".into(),
    };
    let second_claim = second[0].claimed_until;
    assert!(
        w.store
            .record_attempt(&second[0].id, second_claim, &retry)
            .await
            .unwrap()
    );
    let late = Attempt::GiveUp {
        error: "late".into(),
    };
    assert!(
        !w.store
            .record_attempt(&first[0].id, first[0].claimed_until, &late)
            .await
            .unwrap()
    );
    let m = w.store.outbox_message(&id).await.unwrap().unwrap();
    assert_eq!(
        (m.status.as_str(), m.attempts, m.last_error.as_str()),
        ("pending", 1, "the receiver answered HTTP 503")
    );

    // A lease that ended while nobody took the message again: the result still counts.
    w.clock.advance_secs(30);
    let third = w.store.claim_due_messages(10, 60_000).await.unwrap();
    w.clock.advance_secs(61);
    assert!(
        w.store
            .record_attempt(&third[0].id, third[0].claimed_until, &Attempt::Delivered)
            .await
            .unwrap()
    );
    let m = w.store.outbox_message(&id).await.unwrap().unwrap();
    assert_eq!((m.status.as_str(), m.attempts), ("delivered", 2));
}

/// The approvers of a request are found however many users could approve elsewhere: five
/// hundred single sign-on users of a provider with an approver rule, and approvers of
/// other groups, sort before the two who may approve this VM (one through their IdP group,
/// one by a role of their own); both are told.
#[tokio::test]
async fn approvers_are_found_among_many_users_who_may_approve_elsewhere() {
    use portcullis_app::domain::RoleAssignment;
    use portcullis_app::domain::sso::GroupRule;
    use portcullis_app::store::{FederatedProfile, NewLogEntry};
    use sqlx::Row;
    let w = world().await;
    let admin = w.admin().await;
    let vm = w.vm(&admin, "web-1", "web").await;
    w.policy(&admin, &vm, &[with_approval(rule("22"))]).await;
    let alice = w.user("alice", &[(Role::Requester, Scope::All)]).await;
    mail_channel(&w, &admin, 9, "").await;
    w.store
        .add_group_rule(
            &GroupRule {
                provider: "corp".into(),
                group: "jit-approvers".into(),
                assignment: RoleAssignment {
                    role: Role::Approver,
                    scope: Scope::Group("web".into()),
                },
            },
            NewLogEntry::default(),
        )
        .await
        .unwrap();
    let approvers = vec!["jit-approvers".to_owned()];
    let staff = vec!["staff".to_owned()];
    for i in 0..=510 {
        let (name, groups) = if i == 510 {
            ("zed".to_owned(), &approvers)
        } else {
            (format!("a{i:03}"), &staff)
        };
        let email = format!("{name}@corp.example.com");
        w.store
            .create_federated_user(
                &name,
                &FederatedProfile {
                    provider: "corp",
                    subject: &format!("s-{i}"),
                    email: &email,
                    display_name: &name,
                    groups,
                },
                NewLogEntry::default(),
            )
            .await
            .unwrap();
    }
    for i in 0..20 {
        let other = w
            .user(
                &format!("b{i:02}"),
                &[(Role::Approver, Scope::Group("db".into()))],
            )
            .await;
        set_email(&w, &other, &format!("b{i:02}@example.com"), "10").await;
    }
    let zoe = w
        .user("zoe", &[(Role::Approver, Scope::Group("web".into()))])
        .await;
    set_email(&w, &zoe, "zoe@example.com", "10").await;

    w.request(&alice, &vm, "22", "203.0.113.7", "30")
        .await
        .unwrap();
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(&w.url).await.unwrap();
    let mut told: Vec<String> = sqlx::query(
        "SELECT recipient FROM notification_outbox WHERE event = 'approval.waiting' AND channel_id IS NULL",
    )
    .fetch_all(&pool)
    .await
    .unwrap()
    .iter()
    .map(|r| r.try_get("recipient").unwrap())
    .collect();
    told.sort();
    assert_eq!(told, ["zed@corp.example.com", "zoe@example.com"]);
}
