//! Several replicas of the real server binary on one PostgreSQL database: a change made
//! through one replica wakes agents long-polling another; concurrent writers through
//! both keep one verifying activity-log chain and never duplicate a grant; killing a
//! replica loses nothing. Runs in the PostgreSQL pass of `make test` (it needs a
//! database several processes share; SQLite is embedded in one).

mod common;

use common::*;
use portcullis_app::store::Store;
use portcullis_app::store::Verification;
use portcullis_app::store::test_support::{fresh_database_url, on_postgres};
use reqwest::StatusCode;
use serde_json::Value;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Replica {
    app: TestApp,
    child: Child,
}

/// Starts the server binary on a free port; returns once it listens, with the
/// bootstrap password if this start created the administrator.
async fn start_replica(database_url: &str, site: &std::path::Path) -> (Replica, Option<String>) {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let base = format!("http://127.0.0.1:{port}");
    let mut child = Command::new(env!("CARGO_BIN_EXE_portcullis-server"))
        .env("PORTCULLIS_LISTEN", format!("127.0.0.1:{port}"))
        .env("PORTCULLIS_DATABASE_URL", database_url)
        .env("PORTCULLIS_PUBLIC_URL", &base)
        .env("PORTCULLIS_SITE_ROOT", site)
        .env("PORTCULLIS_LOG_FORMAT", "json")
        // One activity log key for all replicas: each signs and verifies the same log.
        .env("PORTCULLIS_AUDIT_KEY", AUDIT_KEY)
        .env("PORTCULLIS_AUDIT_ANCHOR_FILE", site.join(format!("anchor-{port}")))
        // One key for all replicas: a session cookie issued by one is good on the other.
        .env(
            "PORTCULLIS_SESSION_KEY",
            "cmVwbGljYXMtc2hhcmUtb25lLXNlc3Npb24ta2V5LXNvLWNvb2tpZXMtd29yay1vbi1ldmVyeS1yZXBsaWNhLW9mLXRoZS1wb3J0YWw=",
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    // Read the log on a thread: the bootstrap password, then "listening", then drain it
    // so the replica never blocks on a full pipe.
    let stdout = child.stdout.take().unwrap();
    let (ready, started) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let mut password = None;
        let mut ready = Some(ready);
        for line in std::io::BufRead::lines(std::io::BufReader::new(stdout)) {
            let Ok(line) = line else { break };
            let Ok(entry) = serde_json::from_str::<Value>(&line) else {
                continue;
            };
            if let Some(p) = entry["fields"]["one_time_password"].as_str() {
                password = Some(p.to_owned());
            }
            if entry["fields"]["message"] == "listening"
                && let Some(ready) = ready.take()
            {
                let _ = ready.send(password.take());
            }
        }
    });
    let password = tokio::time::timeout(Duration::from_secs(30), started)
        .await
        .expect("replica did not start within 30 s")
        .expect("replica exited before listening");
    (
        Replica {
            app: TestApp::at(base, String::new()),
            child,
        },
        password,
    )
}

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replicas_share_changes_writes_and_sessions() {
    // Run in the PostgreSQL pass only (`make unit-postgres`); anywhere else it fails
    // rather than pass without having tested anything.
    assert!(
        on_postgres(),
        "replicas need PostgreSQL: set PORTCULLIS_TEST_POSTGRES (make unit-postgres does)"
    );
    let dir = tempfile::tempdir().unwrap();
    let url = fresh_database_url(dir.path(), "replicas").await.unwrap();
    let site = dir.path().join("site");

    // Both start at once: exactly one of them creates the administrator.
    let ((mut a, pa), (b, pb)) =
        tokio::join!(start_replica(&url, &site), start_replica(&url, &site));
    let password = match (pa, pb) {
        (Some(p), None) | (None, Some(p)) => p,
        other => panic!("expected one bootstrap password, got {other:?}"),
    };
    a.app.admin_password = password;

    let admin = browser();
    a.app.admin_ready(&admin).await;
    let vm = a.app.add_vm(&admin, "web-1", "linux").await;
    a.app.enable(&admin, &vm, "22", false).await;
    let token = token_for(&a.app, &admin, &vm).await;
    let (s, enrolled) = enroll(&b.app, &token, "web-1.example").await;
    assert_eq!(s, StatusCode::OK, "{enrolled}");
    let agent = Agent::from_enrollment(&enrolled);
    let (_, state) = agent.state(&b.app, -1, 0).await;
    let generation = state["generation"].as_i64().unwrap();
    assert_eq!(state["grants"], serde_json::json!([]));

    // The agent long-polls replica B; the request is made through replica A.
    let poll = agent.long_poll(&b.app, generation);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let asked = Instant::now();
    a.app.request(&admin, &vm, "22", "30").await;
    let (woke, state) = poll.await.unwrap();
    let latency = woke.duration_since(asked);
    assert!(
        latency < Duration::from_secs(1),
        "the agent on B saw the grant {latency:?} after A made it"
    );
    assert_eq!(state["grants"].as_array().unwrap().len(), 1, "{state}");
    assert_eq!(state["grants"][0]["port"], 22);

    // 50 identical requests at once, half through each replica: each supersedes the
    // one before, so exactly one grant is left, and the log stays one chain.
    let store = replicas_store(&url).await;
    let before = verified(&store).await;
    let mut tasks = Vec::new();
    for i in 0..50 {
        let app = TestApp::at(
            if i % 2 == 0 {
                a.app.base.clone()
            } else {
                b.app.base.clone()
            },
            String::new(),
        );
        let admin = admin.clone();
        let vm = vm.clone();
        tasks.push(tokio::spawn(async move {
            app.request(&admin, &vm, "22", "30").await
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let after = verified(&store).await;
    assert!(after >= before + 50, "{before} -> {after} entries");
    let (_, state) = agent.state(&b.app, -1, 0).await;
    assert_eq!(
        state["grants"].as_array().unwrap().len(),
        1,
        "duplicated grant: {state}"
    );

    // Replica A dies while requests to it are in flight. Every request A acknowledged
    // is kept and readable through B, with A's session; B serves on; the chain holds.
    let (acks, mut acked) = tokio::sync::mpsc::unbounded_channel();
    let in_flight: Vec<_> = (0..40u64)
        .map(|i| {
            let base = a.app.base.clone();
            let admin = admin.clone();
            let vm = vm.clone();
            let acks = acks.clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(10 * i)).await;
                if let Some(id) = try_request(&base, &admin, &vm).await {
                    let _ = acks.send(id);
                }
            })
        })
        .collect();
    drop(acks);
    let mut acknowledged = Vec::new();
    while acknowledged.len() < 5 {
        acknowledged.push(
            acked
                .recv()
                .await
                .expect("A acknowledged fewer than 5 requests"),
        );
    }
    a.child.kill().unwrap();
    a.child.wait().unwrap();
    for t in in_flight {
        t.await.unwrap();
    }
    while let Some(id) = acked.recv().await {
        acknowledged.push(id);
    }
    eprintln!(
        "{} of 40 requests acknowledged before A died",
        acknowledged.len()
    );
    let (s, body) = b.app.call(&admin, "my_requests", &[]).await;
    assert_eq!(
        s,
        StatusCode::OK,
        "the session made on A works on B: {body}"
    );
    let listed = body.to_string();
    assert!(listed.contains("web-1"), "{body}");
    for id in &acknowledged {
        assert!(
            listed.contains(id.as_str()),
            "request {id} acknowledged by A is lost"
        );
    }
    let (_, state) = agent.state(&b.app, -1, 0).await;
    assert_eq!(state["grants"].as_array().unwrap().len(), 1, "{state}");
    b.app.request(&admin, &vm, "22", "30").await;
    assert!(verified(&store).await > after);
}

/// A request that may meet a dying replica: the new request's id if it was acknowledged.
async fn try_request(base: &str, client: &reqwest::Client, vm: &str) -> Option<String> {
    let res = client
        .post(format!("{base}/api/request_access"))
        .header(reqwest::header::ORIGIN, base)
        .form(&[
            ("vm_ids[0]", vm),
            ("ports[0]", &format!("{vm}:22/tcp")),
            ("source_mode", "my_ip"),
            ("duration", "30"),
            ("justification", "testing"),
        ])
        .send()
        .await
        .ok()?;
    if res.status() != StatusCode::OK {
        return None;
    }
    let body: Value = res.json().await.ok()?;
    body[0].as_str().map(str::to_owned)
}

/// The activity log key every replica is started with (base64).
const AUDIT_KEY: &str = "cmVwbGljYXMtc2hhcmUtb25lLWF1ZGl0LWxvZy1rZXktdG9vLTMyYg==";

/// A store on the replicas' database with their activity log key.
async fn replicas_store(url: &str) -> Store {
    use base64::Engine;
    let key = base64::engine::general_purpose::STANDARD
        .decode(AUDIT_KEY)
        .unwrap();
    Store::connect_with(
        url,
        std::sync::Arc::new(portcullis_app::store::SystemClock),
        portcullis_app::domain::audit::AuditKey::new(key).unwrap(),
    )
    .await
    .unwrap()
}

/// Verifies the whole log (every entry's HMAC with the replicas' key); the number of
/// entries.
async fn verified(store: &Store) -> i64 {
    match store.verify_log_full(None).await.unwrap() {
        Verification::Verified(cp) => cp.seq,
        broken => panic!("activity log chain broken: {broken:?}"),
    }
}
