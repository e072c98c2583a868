//! The control plane with thousands of agents, over real HTTP (SQLite, or PostgreSQL when
//! `PORTCULLIS_TEST_POSTGRES` names a server): every agent gets its first answer without a
//! server error, and a change wakes exactly the long polls of the VMs it touched. Not
//! timed: the figures are `make bench-agent`'s.

mod common;

use common::rest::{Api, api_token};
use common::*;
use reqwest::StatusCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

const AGENTS: usize = 2_000;
const SCRAPE_TOKEN: &str = "scale-scrape-token-0123456789abcdef";

struct Fleet {
    vm_ids: Vec<String>,
    bearers: Vec<String>,
}

/// Enrolls `n` agents, each registering its host as a VM of group `fleet`.
async fn enroll_fleet(app: &TestApp, api: &Api, n: usize) -> Fleet {
    let gate = Arc::new(tokio::sync::Semaphore::new(16));
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..n {
        let gate = gate.clone();
        let api = Api::new(app, &api.token);
        tasks.spawn(async move {
            let _turn = gate.acquire().await.unwrap();
            let (s, made) = api
                .post(
                    "/api/v1/groups/fleet/enrollmentTokens",
                    &serde_json::json!({}),
                )
                .await;
            assert_eq!(s, StatusCode::CREATED, "{made}");
            let res = api
                .http
                .post(format!("{}/agent/v1/enroll", api.base))
                .json(&serde_json::json!({
                    "token": made["token"],
                    "hostname": format!("fleet-{i:04}"),
                }))
                .send()
                .await
                .unwrap();
            assert_eq!(res.status(), StatusCode::OK);
            let enrolled: serde_json::Value = res.json().await.unwrap();
            (
                i,
                enrolled["vm_id"].as_str().unwrap().to_owned(),
                Agent::from_enrollment(&enrolled).bearer,
            )
        });
    }
    let mut rows = tasks.join_all().await;
    rows.sort_by_key(|r| r.0);
    Fleet {
        vm_ids: rows.iter().map(|r| r.1.clone()).collect(),
        bearers: rows.into_iter().map(|r| r.2).collect(),
    }
}

/// One long poll: its status and the generation answered.
async fn poll(http: &reqwest::Client, base: &str, bearer: &str, after: i64) -> (StatusCode, i64) {
    let res = http
        .get(format!("{base}/agent/v1/state?after={after}&wait=60"))
        .bearer_auth(bearer)
        .send()
        .await
        .unwrap_or_else(|e| panic!("a poll failed to connect: {e}"));
    let status = res.status();
    let body: serde_json::Value = res.json().await.unwrap_or_default();
    (status, body["generation"].as_i64().unwrap_or(i64::MIN))
}

async fn metric(app: &TestApp, name: &str) -> f64 {
    let text = reqwest::Client::new()
        .get(format!("{}/metrics", app.base))
        .bearer_auth(SCRAPE_TOKEN)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in\n{text}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousands_of_agents_are_answered_and_a_change_wakes_only_its_vms() {
    let app = spawn_app_with(|c| c.metrics.token = Some(SCRAPE_TOKEN.to_owned())).await;
    let admin = browser();
    app.admin_ready(&admin).await;
    let api = Api::new(&app, &api_token(&app, &admin, "fleet").await);
    let fleet = enroll_fleet(&app, &api, AGENTS).await;
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(AGENTS)
        .build()
        .unwrap();

    // Every agent asks at once, as after a restart of the server.
    let mut first = tokio::task::JoinSet::new();
    for (i, bearer) in fleet.bearers.iter().enumerate() {
        let (http, base, bearer) = (http.clone(), app.base.clone(), bearer.clone());
        first.spawn(async move { (i, poll(&http, &base, &bearer, -1).await) });
    }
    let mut generations = vec![0; AGENTS];
    let mut refused = Vec::new();
    for (i, (status, generation)) in first.join_all().await {
        if status != StatusCode::OK {
            refused.push((i, status));
        }
        generations[i] = generation;
    }
    assert!(
        refused.is_empty(),
        "{} of {AGENTS} first polls failed: {:?}",
        refused.len(),
        &refused[..refused.len().min(10)]
    );

    // Every agent waits for news of its VM.
    let mut waiting = tokio::task::JoinSet::new();
    for (i, bearer) in fleet.bearers.iter().enumerate() {
        let (http, base, bearer, after) = (
            http.clone(),
            app.base.clone(),
            bearer.clone(),
            generations[i],
        );
        waiting.spawn(async move { (i, poll(&http, &base, &bearer, after).await) });
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while metric(&app, "portcullis_long_polls_in_flight").await < AGENTS as f64 {
        assert!(
            Instant::now() < deadline,
            "not every agent's poll is waiting: {}",
            metric(&app, "portcullis_long_polls_in_flight").await
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let woken_before = metric(&app, "portcullis_long_poll_wakeups_total").await;

    // One change to five VMs: JIT enabled on them, in one transaction.
    let touched = [3, 400, 999, 1500, AGENTS - 1];
    let mut form = vec![
        ("rules[0][enabled]".to_owned(), "on".to_owned()),
        ("rules[0][port]".to_owned(), "22".to_owned()),
        ("rules[0][protocol]".to_owned(), "tcp".to_owned()),
        ("rules[0][allowed_sources]".to_owned(), String::new()),
        ("rules[0][max_minutes]".to_owned(), "60".to_owned()),
    ];
    for (n, i) in touched.iter().enumerate() {
        form.push((format!("vm_ids[{n}]"), fleet.vm_ids[*i].clone()));
    }
    let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let (s, body) = app.call(&admin, "enable_jit", &form).await;
    assert_eq!(s, StatusCode::OK, "{body}");

    // Exactly the touched VMs' agents are answered, each with the new generation.
    let mut answered = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while answered.len() < touched.len() {
        let next = tokio::time::timeout_at(deadline.into(), waiting.join_next()).await;
        let Ok(Some(done)) = next else {
            panic!("only {answered:?} answered after the change to {touched:?}");
        };
        let (i, (status, generation)) = done.unwrap();
        assert_eq!(status, StatusCode::OK, "agent {i}");
        assert!(
            generation > generations[i],
            "agent {i}: {generation} after {}",
            generations[i]
        );
        answered.push(i);
    }
    // A moment for any poll woken by mistake to answer too.
    let stray = tokio::time::timeout(Duration::from_secs(2), waiting.join_next()).await;
    if let Ok(Some(Ok((i, _)))) = stray {
        panic!("agent {i}, whose VM did not change, was answered");
    }
    answered.sort_unstable();
    assert_eq!(answered, touched.to_vec());
    assert_eq!(waiting.len(), AGENTS - touched.len());
    assert_eq!(
        metric(&app, "portcullis_long_poll_wakeups_total").await - woken_before,
        touched.len() as f64,
        "a change wakes the polls of the VMs it touched, and no other"
    );
    waiting.abort_all();
}
