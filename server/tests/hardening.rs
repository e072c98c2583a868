//! Portcullis against an attacker, from outside: someone who can write the database but
//! not read the server's files, anonymous and low-privileged clients. A real server on a
//! fresh database (SQLite, or PostgreSQL when `PORTCULLIS_TEST_POSTGRES` names a server).

mod common;

use common::*;
use reqwest::StatusCode;
use serde_json::Value;
use sqlx::Row;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn db(app: &TestApp) -> sqlx::AnyPool {
    sqlx::any::install_default_drivers();
    sqlx::AnyPool::connect(&app.database_url).await.unwrap()
}

/// Without the key: change entry `seq` and recompute the chain after it.
async fn rewrite_and_rehash(app: &TestApp, seq: i64) {
    portcullis_app::store::test_support::rewrite_and_rehash(&app.database_url, seq)
        .await
        .unwrap();
}

async fn chain(app: &TestApp, admin: &reqwest::Client) -> (bool, String) {
    let (s, page) = app.call(admin, "activity", &[]).await;
    assert_eq!(s, StatusCode::OK, "{page}");
    (
        page["chain_ok"].as_bool().unwrap(),
        page["chain_message"].as_str().unwrap().to_owned(),
    )
}

async fn some_activity(app: &TestApp, admin: &reqwest::Client) {
    for name in ["web-1", "web-2", "web-3"] {
        app.add_vm(admin, name, "linux").await;
    }
}

#[tokio::test]
async fn a_recomputed_activity_log_is_reported_broken() {
    let app = spawn_app().await;
    let admin = browser();
    app.admin_ready(&admin).await;
    some_activity(&app, &admin).await;
    let (s, message) = app.call(&admin, "verify_activity_log", &[]).await;
    assert_eq!(s, StatusCode::OK, "{message}");
    assert!(message.as_str().unwrap().contains("intact"), "{message}");

    rewrite_and_rehash(&app, 3).await;
    let (s, message) = app.call(&admin, "verify_activity_log", &[]).await;
    assert_eq!(s, StatusCode::OK, "{message}");
    let message = message.as_str().unwrap();
    assert!(
        message.starts_with("Hash chain broken at entry 3"),
        "{message}"
    );
    let (ok, shown) = chain(&app, &admin).await;
    assert!(!ok, "the log page says so: {shown}");
    assert!(shown.contains("tampered"), "{shown}");
}

#[tokio::test]
async fn removing_the_newest_activity_log_entries_is_reported() {
    let app = spawn_app().await;
    let admin = browser();
    app.admin_ready(&admin).await;
    some_activity(&app, &admin).await;
    let (s, message) = app.call(&admin, "verify_activity_log", &[]).await;
    assert_eq!(s, StatusCode::OK, "{message}");
    let db = db(&app).await;
    let last: i64 = sqlx::query("SELECT MAX(seq) AS m FROM activity_log")
        .fetch_one(&db)
        .await
        .unwrap()
        .get("m");
    sqlx::query("DELETE FROM activity_log WHERE seq > $1")
        .bind(last - 2)
        .execute(&db)
        .await
        .unwrap();
    sqlx::query("DELETE FROM audit_checkpoints")
        .execute(&db)
        .await
        .unwrap();
    db.close().await;
    let (_, message) = app.call(&admin, "verify_activity_log", &[]).await;
    let message = message.as_str().unwrap();
    assert!(message.contains("entries were removed"), "{message}");
}

#[tokio::test]
async fn only_administrators_over_everything_verify_the_whole_log() {
    let app = spawn_app().await;
    let admin = browser();
    app.admin_ready(&admin).await;
    let (reader, _) = app.user_with_role(&admin, "rita", "reader").await;
    let (s, body) = app.call(&reader, "verify_activity_log", &[]).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{body}");
}

#[tokio::test]
async fn exported_cells_that_a_spreadsheet_would_run_are_defused() {
    let app = spawn_app().await;
    let admin = browser();
    app.admin_ready(&admin).await;
    let vm = app.add_vm(&admin, "web-1", "linux").await;
    app.enable(&admin, &vm, "22", false).await;
    for justification in ["\t=HYPERLINK(\"x\")", "\r+1+1", "@SUM(A1)"] {
        let (s, body) = app
            .call(
                &admin,
                "request_access",
                &[
                    ("vm_ids[0]", vm.as_str()),
                    ("ports[0]", &format!("{vm}:22/tcp")),
                    ("source_mode", "my_ip"),
                    ("duration", "5"),
                    ("justification", justification),
                ],
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{body}");
    }
    let csv = app.get(&admin, "/activity.csv").await.text().await.unwrap();
    assert!(csv.starts_with("seq,time_utc,"), "{csv}");
    // Justifications are trimmed when stored: what is left must still not start a formula.
    for line in csv.lines().skip(1) {
        for cell in line.split("\",\"") {
            let cell = cell.trim_start_matches('"');
            assert!(
                !cell.starts_with(['=', '+', '-', '@', '\t', '\r']),
                "a cell starts a formula: {cell:?} in {line}"
            );
        }
    }
    let body: Value = serde_json::Value::String(csv);
    assert!(body.as_str().unwrap().contains("'@SUM(A1)"));
}

#[tokio::test]
async fn parallel_password_guesses_are_counted_before_any_is_checked() {
    let app = spawn_app().await;
    let guesses = (0..20).map(|i| {
        let app = &app;
        async move {
            let client = browser();
            let password = format!("guess number {i}");
            app.call(
                &client,
                "login",
                &[("username", "admin"), ("password", password.as_str())],
            )
            .await
            .0
        }
    });
    let statuses = futures::future::join_all(guesses).await;
    let checked = statuses
        .iter()
        .filter(|s| **s != StatusCode::TOO_MANY_REQUESTS)
        .count();
    assert_eq!(
        checked, 5,
        "five guesses are checked, the rest refused: {statuses:?}"
    );
}

#[tokio::test]
async fn an_overlong_password_is_refused_before_it_is_hashed() {
    let app = spawn_app().await;
    let client = browser();
    let long = "x".repeat(100_000);
    let started = std::time::Instant::now();
    let (s, body) = app
        .call(
            &client,
            "login",
            &[("username", "admin"), ("password", &long)],
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(
        field_error(&body, "password"),
        Some("A password has at most 256 characters.")
    );
    let (s, body) = app
        .call(
            &client,
            "login",
            &[("username", &"u".repeat(65)), ("password", "x")],
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(field_error(&body, "username").is_some(), "{body}");
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
}

/// A POST to `path` with a chunked form body, written by hand: the request line and
/// headers are sent; the caller writes the chunks.
async fn raw_post(app: &TestApp, path: &str) -> tokio::net::TcpStream {
    let addr = app.base.trim_start_matches("http://");
    let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nOrigin: {}\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nTransfer-Encoding: chunked\r\n\
         Connection: close\r\n\r\n",
        app.base
    );
    conn.write_all(head.as_bytes()).await.unwrap();
    conn
}

#[tokio::test]
async fn pages_carry_a_nonced_content_security_policy_and_everything_the_usual_headers() {
    let app = spawn_app().await;
    let res = app.get(&browser(), "/login").await;
    assert_eq!(res.status(), StatusCode::OK);
    let h = res.headers().clone();
    let csp = h["content-security-policy"].to_str().unwrap().to_owned();
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    assert!(csp.contains("'wasm-unsafe-eval'"), "{csp}");
    assert!(!csp.contains("unsafe-inline"), "{csp}");
    let nonce = csp
        .split("'nonce-")
        .nth(1)
        .and_then(|rest| rest.split('\'').next())
        .unwrap_or_else(|| panic!("no nonce in {csp}"));
    let html = res.text().await.unwrap();
    let scripts = html.matches("<script").count();
    assert!(scripts > 0, "{html}");
    assert_eq!(
        html.matches(&format!("nonce=\"{nonce}\"")).count(),
        scripts,
        "every inline script carries this response's nonce"
    );
    assert_eq!(h["x-content-type-options"], "nosniff");
    assert_eq!(h["x-frame-options"], "DENY");
    assert_eq!(h["referrer-policy"], "same-origin");
    assert!(
        h.get("strict-transport-security").is_none(),
        "plain http here"
    );
    let api = app.get(&browser(), "/api/v1/openapi.json").await;
    assert_eq!(
        api.headers()["content-security-policy"],
        "default-src 'none'; style-src 'self'; img-src 'self' data:; connect-src 'self'; \
         frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
    );
    let secure = spawn_app_with(|c| c.public_url = Some("https://jit.example.org".into())).await;
    let res = reqwest::Client::new()
        .get(format!("{}/healthz", secure.base))
        .send()
        .await
        .unwrap();
    assert_eq!(
        res.headers()["strict-transport-security"],
        "max-age=31536000"
    );
}

#[tokio::test]
async fn oversized_bodies_are_refused_with_413_everywhere() {
    let app = spawn_app().await;
    let client = browser();
    let big = "x".repeat(300 * 1024);
    // A form post with its length announced, to a server function.
    let (s, body) = app
        .call(
            &client,
            "login",
            &[("username", "admin"), ("password", &big)],
        )
        .await;
    assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
    // The same without a length (chunked): cut off while read, still 413.
    let mut conn = raw_post(&app, "/api/login").await;
    let mut answer = String::new();
    for _ in 0..300 {
        let chunk = format!("password={}", "y".repeat(1024));
        if conn
            .write_all(format!("{:x}\r\n{chunk}\r\n", chunk.len()).as_bytes())
            .await
            .is_err()
        {
            break;
        }
    }
    let _ = conn.write_all(b"0\r\n\r\n").await;
    let _ = conn.read_to_string(&mut answer).await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(
        !answer.contains("Transport"),
        "no internal message: {answer}"
    );
    // The agent protocol and the REST API too.
    let res = reqwest::Client::new()
        .post(format!("{}/agent/v1/enroll", app.base))
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(big.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::PAYLOAD_TOO_LARGE);
}

#[tokio::test]
async fn a_request_that_never_finishes_is_answered_within_the_timeout() {
    let app = spawn_app_with(|c| c.request_timeout = std::time::Duration::from_secs(1)).await;
    // A body that starts and then stalls for good (a slow-loris client).
    let mut conn = raw_post(&app, "/api/login").await;
    conn.write_all(b"f\r\nusername=admin&\r\n").await.unwrap();
    let started = std::time::Instant::now();
    let mut head = vec![0u8; 12];
    tokio::time::timeout(
        std::time::Duration::from_secs(10),
        conn.read_exact(&mut head),
    )
    .await
    .expect("the server answers a stalled request instead of waiting forever")
    .unwrap();
    assert_eq!(&head, b"HTTP/1.1 503");
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
}

#[tokio::test]
async fn a_request_head_that_never_ends_is_cut_off() {
    let app = spawn_app_with(|c| c.request_timeout = std::time::Duration::from_secs(1)).await;
    // Slowloris: a connection whose request head trickles in and never ends holds a
    // socket and a task; no request timeout covers it, since no request exists yet.
    let mut conn = tokio::net::TcpStream::connect(app.base.trim_start_matches("http://"))
        .await
        .unwrap();
    conn.write_all(b"GET /login HTTP/1.1\r\nHost: portal\r\nX-Slow: a")
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        conn.read_to_end(&mut rest),
    )
    .await;
    assert!(
        closed.is_ok(),
        "the connection was still open after 10 s of an unfinished request head"
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
}

#[tokio::test]
async fn a_replica_keeps_only_so_many_agents_waiting() {
    let app = spawn_app_with(|c| c.max_long_polls = 1).await;
    let admin = browser();
    app.admin_ready(&admin).await;
    let vm = app.add_vm(&admin, "web-1", "linux").await;
    let token = token_for(&app, &admin, &vm).await;
    let (_, enrolled) = enroll(&app, &token, "web-1").await;
    let agent = Agent::from_enrollment(&enrolled);
    let (_, first) = agent.state(&app, -1, 0).await;
    let generation = first["generation"].as_i64().unwrap();
    // One agent waits for news; a second poll finds no room.
    let waiting = agent.long_poll(&app, generation);
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let res = reqwest::Client::new()
        .get(format!(
            "{}/agent/v1/state?after={generation}&wait=5",
            app.base
        ))
        .bearer_auth(&agent.bearer)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(res.headers()["retry-after"], "5");
    waiting.abort();
}

#[tokio::test]
async fn one_agent_cannot_take_the_waiting_places_of_the_others() {
    let app = spawn_app_with(|c| c.max_long_polls = 3).await;
    let admin = browser();
    app.admin_ready(&admin).await;
    let mut agents = Vec::new();
    for name in ["web-1", "web-2"] {
        let vm = app.add_vm(&admin, name, "linux").await;
        let token = token_for(&app, &admin, &vm).await;
        let (_, enrolled) = enroll(&app, &token, name).await;
        agents.push(Agent::from_enrollment(&enrolled));
    }
    let (_, first) = agents[0].state(&app, -1, 0).await;
    let generation = first["generation"].as_i64().unwrap();
    // An agent whose secret was taken opens poll after poll: two wait, the third is told
    // to come back, and the other agent's place is still there.
    let waiting = [
        agents[0].long_poll(&app, generation),
        agents[0].long_poll(&app, generation),
    ];
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let res = reqwest::Client::new()
        .get(format!(
            "{}/agent/v1/state?after={generation}&wait=5",
            app.base
        ))
        .bearer_auth(&agents[0].bearer)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(res.headers()["retry-after"], "1");
    let (s, state) = agents[1].state(&app, -1, 0).await;
    assert_eq!(s, StatusCode::OK, "{state}");
    for w in waiting {
        w.abort();
    }
}

#[tokio::test]
async fn an_agent_cannot_flood_the_log_or_claim_a_generation_never_issued() {
    let app = spawn_app().await;
    let admin = browser();
    app.admin_ready(&admin).await;
    let vm = app.add_vm(&admin, "web-1", "linux").await;
    let token = token_for(&app, &admin, &vm).await;
    let (_, enrolled) = enroll(&app, &token, "web-1").await;
    let agent = Agent::from_enrollment(&enrolled);
    let (_, state) = agent.state(&app, -1, 0).await;
    let generation = state["generation"].as_i64().unwrap();
    let report = |body: Value| {
        let url = format!("{}/agent/v1/report", app.base);
        let bearer = agent.bearer.clone();
        async move {
            reqwest::Client::new()
                .post(url)
                .bearer_auth(bearer)
                .json(&body)
                .send()
                .await
                .unwrap()
                .status()
        }
    };
    let (_, before) = app.call(&admin, "activity", &[("action", "enforce")]).await;
    let before = before["total"].as_i64().unwrap();
    // A hundred reports that each differ from the last.
    let mut accepted = 0;
    for i in 0..100 {
        let s = report(serde_json::json!({
            "generation": generation,
            "error": if i % 2 == 0 { "flap" } else { "" },
        }))
        .await;
        assert!(
            s == StatusCode::NO_CONTENT || s == StatusCode::TOO_MANY_REQUESTS,
            "{s}"
        );
        accepted += usize::from(s == StatusCode::NO_CONTENT);
    }
    assert!(accepted <= 2, "{accepted} reports accepted in a burst");
    let (_, after) = app.call(&admin, "activity", &[("action", "enforce")]).await;
    assert!(after["total"].as_i64().unwrap() - before <= 2, "{after}");
    tokio::time::sleep(std::time::Duration::from_millis(1050)).await;
    let s = report(serde_json::json!({ "generation": generation + 100, "error": "" })).await;
    assert_eq!(
        s,
        StatusCode::UNPROCESSABLE_ENTITY,
        "a generation from the future"
    );
}

#[tokio::test]
async fn a_scoped_approver_sees_their_requests_however_many_wait_elsewhere() {
    let app = spawn_app().await;
    let admin = browser();
    app.admin_ready(&admin).await;
    let prod = app.add_vm(&admin, "web-1", "linux").await;
    let (s, dev) = app
        .call(
            &admin,
            "save_vm",
            &[
                ("id", ""),
                ("name", "db-1"),
                ("group", "dev"),
                ("addresses", "198.51.100.6"),
                ("os", "linux"),
            ],
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{dev}");
    let dev = dev.as_str().unwrap().to_owned();
    app.enable(&admin, &prod, "22", true).await;
    app.enable(&admin, &dev, "22", true).await;
    let (rita, _) = app.user_with_role(&admin, "rita", "requester").await;
    // The prod request is the oldest; more than any fixed window of newer ones follow.
    let mine = app.request(&rita, &prod, "22", "10").await;
    for _ in 0..510 {
        app.request(&rita, &dev, "22", "10").await;
    }
    let password = "a perfectly good passphrase";
    let (s, body) = app
        .call(
            &admin,
            "create_user",
            &[
                ("username", "pat"),
                ("display_name", "Pat"),
                ("password", password),
                ("role", "approver"),
                ("scope_kind", "group"),
                ("scope_target", "prod"),
            ],
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    let pat = browser();
    app.call(
        &pat,
        "login",
        &[("username", "pat"), ("password", password)],
    )
    .await;
    let (s, lists) = app.call(&pat, "my_requests", &[]).await;
    assert_eq!(s, StatusCode::OK, "{lists}");
    let queue = lists[1].as_array().unwrap();
    assert_eq!(queue.len(), 1, "only the prod request is Pat's to decide");
    assert_eq!(queue[0]["id"], mine.as_str());
    // Rita's own list pages through all 511, fifty at a time.
    let (_, first) = app.call(&rita, "my_requests", &[]).await;
    assert_eq!(first[0].as_array().unwrap().len(), 50);
    assert_eq!(first[2], true, "more pages follow");
    let (_, last) = app.call(&rita, "my_requests", &[("page", "11")]).await;
    assert_eq!(last[0].as_array().unwrap().len(), 11);
    assert_eq!(last[2], false);
    assert_eq!(last[0][10]["id"], mine.as_str(), "the oldest comes last");
}

#[tokio::test]
async fn huge_page_numbers_are_clamped() {
    let app = spawn_app().await;
    let admin = browser();
    app.admin_ready(&admin).await;
    for (name, args) in [
        ("list_vms", vec![("page", "9223372036854775807")]),
        ("activity", vec![("page", "9223372036854775807")]),
        ("my_requests", vec![("page", "9223372036854775807")]),
    ] {
        let (s, body) = app.call(&admin, name, &args).await;
        assert_eq!(s, StatusCode::OK, "{name}: {body}");
    }
    let page = app.get(&admin, "/jit?page=9223372036854775807").await;
    assert_eq!(page.status(), StatusCode::OK);
}

#[tokio::test]
async fn another_users_request_from_the_same_address_leaves_your_grant_alone() {
    let app = spawn_app().await;
    let admin = browser();
    app.admin_ready(&admin).await;
    let vm = app.add_vm(&admin, "web-1", "linux").await;
    app.enable(&admin, &vm, "22", false).await;
    let (rita, _) = app.user_with_role(&admin, "rita", "requester").await;
    let (sam, _) = app.user_with_role(&admin, "sam", "requester").await;
    // Both sit behind the same NAT: the same source address.
    let hers = app.request(&rita, &vm, "22", "30").await;
    app.request(&sam, &vm, "22", "10").await;
    let (_, mine) = app.call(&rita, "my_requests", &[]).await;
    let r = mine[0]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == hers.as_str())
        .unwrap()
        .clone();
    assert_eq!(r["ports"][0]["status"], "active", "{r}");
}

#[tokio::test]
async fn the_enroll_command_warns_and_says_so_when_the_portal_is_plain_http() {
    let app = spawn_app_with(|c| c.public_url = Some("http://jit.example.org".into())).await;
    let admin = browser();
    // The public origin is where browsers come from: this client says it is.
    let (s, _) = admin
        .post(format!("{}/api/login", app.base))
        .header(reqwest::header::ORIGIN, "http://jit.example.org")
        .form(&[
            ("username", "admin"),
            ("password", app.admin_password.as_str()),
        ])
        .send()
        .await
        .map(|r| (r.status(), ()))
        .unwrap();
    assert_eq!(s, StatusCode::OK);
    let call = |name: &'static str, form: Vec<(&'static str, String)>| {
        let admin = admin.clone();
        let base = app.base.clone();
        async move {
            let res = admin
                .post(format!("{base}/api/{name}"))
                .header(reqwest::header::ORIGIN, "http://jit.example.org")
                .form(&form)
                .send()
                .await
                .unwrap();
            (
                res.status(),
                res.json::<Value>().await.unwrap_or(Value::Null),
            )
        }
    };
    let new = "a long new portal passphrase";
    let (s, body) = call(
        "change_password",
        vec![
            ("current_password", app.admin_password.clone()),
            ("new_password", new.into()),
            ("confirm_password", new.into()),
        ],
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    let (s, body) = call(
        "create_enrollment_token",
        vec![("vm_id", String::new()), ("group", "prod".into())],
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    let command = body["command"].as_str().unwrap();
    assert!(
        command.contains("; curl -fsSL http://jit.example.org/install-agent.sh | sudo "),
        "{command}"
    );
    assert!(
        command.ends_with(" sh -s -- --server http://jit.example.org --insecure-http"),
        "{command}"
    );
    assert!(
        body["warning"].as_str().unwrap().contains("clear text"),
        "{body}"
    );
}

#[tokio::test]
async fn a_vm_page_is_found_by_id_among_many_similar_names() {
    let app = spawn_app().await;
    let admin = browser();
    app.admin_ready(&admin).await;
    // 510 VMs whose names contain the target's name and sort before it.
    for i in 0..510 {
        app.add_vm(&admin, &format!("avm-{i:03}"), "linux").await;
    }
    let target = app.add_vm(&admin, "vm", "linux").await;
    let (s, detail) = app.call(&admin, "get_vm", &[("id", &target)]).await;
    assert_eq!(s, StatusCode::OK, "{detail}");
    assert_eq!(detail["vm"]["name"], "vm");
}
