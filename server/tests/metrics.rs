//! `/metrics` over real HTTP: off unless configured, guarded by a token and by client
//! addresses, and its numbers move as a request goes through its life (stored, put in force
//! by the agent, revoked). Every scrape is linted with `promtool check metrics`, which must
//! be installed (Debian package `prometheus`): without it these tests fail.

mod common;
#[path = "common/oidc.rs"]
mod sso;

use common::*;
use reqwest::StatusCode;
use serde_json::json;
use std::time::{Duration, Instant};

const TOKEN: &str = "scrape-token-0123456789abcdef";

fn with_token(config: &mut portcullis_server::config::Config) {
    config.metrics.token = Some(TOKEN.to_owned());
}

fn cidrs(list: &[&str]) -> Vec<portcullis_app::domain::Cidr> {
    list.iter()
        .map(|c| portcullis_app::domain::Cidr::parse(c).unwrap())
        .collect()
}

async fn get_metrics(
    app: &TestApp,
    bearer: Option<&str>,
    forwarded_for: Option<&str>,
) -> (StatusCode, String) {
    let mut req = reqwest::Client::new().get(format!("{}/metrics", app.base));
    if let Some(token) = bearer {
        req = req.bearer_auth(token);
    }
    if let Some(ip) = forwarded_for {
        req = req.header("x-forwarded-for", ip);
    }
    let res = req.send().await.unwrap();
    (res.status(), res.text().await.unwrap())
}

/// A scrape that must succeed, checked with promtool.
async fn scrape(app: &TestApp) -> Scrape {
    let res = reqwest::Client::new()
        .get(format!("{}/metrics", app.base))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let kind = res.headers()["content-type"].to_str().unwrap().to_owned();
    assert!(kind.starts_with("text/plain; version=0.0.4"), "{kind}");
    let text = res.text().await.unwrap();
    promtool_check(&text);
    Scrape(text)
}

/// Runs `promtool check metrics` on the text; fails the test if promtool is missing or
/// finds anything (errors or lint problems).
fn promtool_check(text: &str) {
    use std::io::Write;
    let mut child = match std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
    {
        Ok(child) => child,
        Err(e) => panic!(
            "promtool is needed to check the metrics text and could not be run ({e}): \
             install it with `apt-get install -y prometheus`"
        ),
    };
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
        "promtool check metrics: {}\n{}{}\n--- scraped text ---\n{text}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
}

/// The scraped text, read by series.
struct Scrape(String);

impl Scrape {
    /// The value of the series `name` with (at least) these labels; None when absent.
    fn get(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        self.0
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| l.rsplit_once(' '))
            .find(|(series, _)| {
                let (n, rest) = series.split_once('{').unwrap_or((series, ""));
                n == name
                    && labels
                        .iter()
                        .all(|(k, v)| rest.contains(&format!("{k}=\"{v}\"")))
            })
            .map(|(_, v)| v.parse().unwrap())
    }

    /// As [`Scrape::get`], for a series that must be there.
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.get(name, labels)
            .unwrap_or_else(|| panic!("no {name} {labels:?} in\n{}", self.0))
    }

    /// The sum of every series of `name`.
    fn total(&self, name: &str) -> f64 {
        self.0
            .lines()
            .filter(|l| l.starts_with(&format!("{name}{{")) || l.starts_with(&format!("{name} ")))
            .filter_map(|l| l.rsplit_once(' '))
            .map(|(_, v)| v.parse::<f64>().unwrap())
            .sum()
    }
}

/// Scrapes until `ready` holds (things an agent's poll does happen on another task).
async fn scrape_until(app: &TestApp, what: &str, ready: impl Fn(&Scrape) -> bool) -> Scrape {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let s = scrape(app).await;
        if ready(&s) {
            return s;
        }
        assert!(Instant::now() < deadline, "{what} never happened:\n{}", s.0);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn metrics_are_off_by_default() {
    let app = spawn_app().await;
    let (status, body) = get_metrics(&app, None, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(!body.contains("portcullis_"), "{body}");
    let (status, body) = get_metrics(&app, Some("anything-at-all-0123456"), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(!body.contains("portcullis_"), "{body}");
}

#[tokio::test]
async fn a_token_guards_the_metrics() {
    let app = spawn_app_with(with_token).await;
    for bearer in [None, Some("not-the-token-0123456789"), Some("")] {
        let (status, body) = get_metrics(&app, bearer, None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{bearer:?}");
        assert!(!body.contains("portcullis_"), "{body}");
    }
    // The token as a password (Basic) is not the bearer token.
    let res = reqwest::Client::new()
        .get(format!("{}/metrics", app.base))
        .basic_auth("prometheus", Some(TOKEN))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(res.headers()["www-authenticate"], "Bearer");

    let s = scrape(&app).await;
    assert_eq!(
        s.value(
            "portcullis_build_info",
            &[("version", env!("CARGO_PKG_VERSION"))]
        ),
        1.0
    );
    assert!(s.value("portcullis_start_time_seconds", &[]) > 1.7e9);
    assert!(s.value("portcullis_db_pool_max_connections", &[("pool", "main")]) >= 1.0);
    assert!(
        s.value(
            "portcullis_db_pool_connections",
            &[("pool", "main"), ("state", "idle")]
        ) >= 0.0
    );
    assert_eq!(s.value("portcullis_metrics_scrape_errors_total", &[]), 0.0);
    // Setting the app up wrote (its users, at least): each write committed.
    let writes = s.value("portcullis_write_transactions_total", &[]);
    let commits = s.value("portcullis_write_commits_total", &[]);
    assert!(
        writes >= 1.0 && commits >= 1.0 && commits <= writes,
        "{writes} {commits}"
    );
    // Shown (a background job may be waiting at that moment).
    assert!(s.value("portcullis_write_transactions_waiting", &[]) >= 0.0);
}

#[tokio::test]
async fn client_addresses_guard_the_metrics() {
    // Tests connect from 127.0.0.1.
    let app = spawn_app_with(|c| c.metrics.allowed = cidrs(&["192.0.2.0/24"])).await;
    let (status, body) = get_metrics(&app, None, None).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(!body.contains("portcullis_"), "{body}");

    let app = spawn_app_with(|c| c.metrics.allowed = cidrs(&["127.0.0.0/8", "::1"])).await;
    let (status, body) = get_metrics(&app, None, None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains("portcullis_active_grants"), "{body}");
    promtool_check(&body);

    // Behind a trusted proxy, the client is the forwarded address; one the proxy did not
    // vouch for (no header) is the proxy itself, which is not allowed.
    let app = spawn_app_with(|c| {
        c.trusted_proxies = cidrs(&["127.0.0.1"]);
        c.metrics.allowed = cidrs(&["203.0.113.0/24"]);
    })
    .await;
    assert_eq!(
        get_metrics(&app, None, Some("203.0.113.9")).await.0,
        StatusCode::OK
    );
    assert_eq!(
        get_metrics(&app, None, Some("198.51.100.9")).await.0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(get_metrics(&app, None, None).await.0, StatusCode::FORBIDDEN);

    // With both, a scraper needs both.
    let app = spawn_app_with(|c| {
        with_token(c);
        c.metrics.allowed = cidrs(&["192.0.2.0/24"]);
    })
    .await;
    assert_eq!(
        get_metrics(&app, Some(TOKEN), None).await.0,
        StatusCode::FORBIDDEN
    );
    let app = spawn_app_with(|c| {
        with_token(c);
        c.metrics.allowed = cidrs(&["127.0.0.1"]);
    })
    .await;
    assert_eq!(
        get_metrics(&app, None, None).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(get_metrics(&app, Some(TOKEN), None).await.0, StatusCode::OK);
}

#[tokio::test]
async fn the_numbers_move_through_a_request_life_cycle() {
    let app = spawn_app_with(with_token).await;
    let start = scrape(&app).await;
    for name in [
        "portcullis_active_grants",
        "portcullis_pending_approvals",
        "portcullis_agents_enrolled",
        "portcullis_agents_silent",
        "portcullis_notifications_pending",
        "portcullis_notifications_failed",
        "portcullis_agents_connected",
        "portcullis_long_polls_in_flight",
        "portcullis_open_latency_seconds_count",
    ] {
        assert_eq!(start.value(name, &[]), 0.0, "{name}");
    }
    let local_failures = [("method", "local")];
    assert_eq!(
        start.value("portcullis_sign_in_failures_total", &local_failures),
        0.0
    );
    assert_eq!(
        start.value("portcullis_sign_in_failures_total", &[("method", "oidc")]),
        0.0
    );

    // A wrong password is a sign-in failure.
    let (s, _) = app
        .call(
            &browser(),
            "login",
            &[("username", "admin"), ("password", "not the password")],
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    let after_failure = scrape(&app).await;
    assert_eq!(
        after_failure.value("portcullis_sign_in_failures_total", &local_failures),
        1.0
    );

    // A VM with an agent, and one whose port needs approval.
    let admin = browser();
    app.admin_ready(&admin).await;
    let vm = app.add_vm(&admin, "web-1", "linux").await;
    app.enable(&admin, &vm, "22", false).await;
    let guarded = app.add_vm(&admin, "db-1", "linux").await;
    app.enable(&admin, &guarded, "22", true).await;
    let token = token_for(&app, &admin, &vm).await;
    let (s, enrolled) = enroll(&app, &token, "web-1.example").await;
    assert_eq!(s, StatusCode::OK, "{enrolled}");
    let agent = Agent::from_enrollment(&enrolled);
    let (_, state) = agent.state(&app, -1, 0).await;
    let generation = state["generation"].as_i64().unwrap();

    let before = scrape(&app).await;
    assert_eq!(before.value("portcullis_agents_enrolled", &[]), 1.0);
    assert_eq!(before.value("portcullis_agents_silent", &[]), 0.0);
    assert!(
        before.total("portcullis_http_requests_total")
            > start.total("portcullis_http_requests_total")
    );
    assert!(
        before.value(
            "portcullis_http_requests_total",
            &[("group", "server_fn"), ("code", "200")]
        ) >= 5.0
    );
    assert!(
        before.value(
            "portcullis_http_requests_total",
            &[("group", "agent"), ("code", "200")]
        ) >= 2.0,
        "the enrollment and the first state"
    );
    assert!(
        before.value("portcullis_activity_log_newest_position", &[])
            > start.value("portcullis_activity_log_newest_position", &[])
    );

    // A request waiting for approval is pending until it is decided.
    let (rita, _) = app.user_with_role(&admin, "rita", "requester").await;
    let waiting = app.request(&rita, &guarded, "22", "30").await;
    assert_eq!(
        scrape(&app)
            .await
            .value("portcullis_pending_approvals", &[]),
        1.0
    );
    let (s, body) = app
        .call(
            &admin,
            "decide_request",
            &[("id", &waiting), ("decision", "deny")],
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!(
        scrape(&app)
            .await
            .value("portcullis_pending_approvals", &[]),
        0.0
    );

    // The agent waits for news: one poll in flight, one agent connected.
    let poll = agent.long_poll(&app, generation);
    scrape_until(&app, "the long poll to be counted", |s| {
        s.value("portcullis_long_polls_in_flight", &[]) == 1.0
    })
    .await;
    assert_eq!(
        scrape(&app).await.value("portcullis_agents_connected", &[]),
        1.0
    );

    // Access is requested: a grant in force, the poll answered; the open latency is not
    // known until the agent says it applied the state.
    let request = app.request(&admin, &vm, "22", "10").await;
    let (_, state) = poll.await.unwrap();
    let applied = state["generation"].as_i64().unwrap();
    assert_eq!(state["grants"].as_array().unwrap().len(), 1, "{state}");
    let granted = scrape_until(&app, "the answered poll to be uncounted", |s| {
        s.value("portcullis_long_polls_in_flight", &[]) == 0.0
    })
    .await;
    assert_eq!(granted.value("portcullis_agents_connected", &[]), 0.0);
    assert_eq!(granted.value("portcullis_active_grants", &[]), 1.0);
    assert_eq!(
        granted.value("portcullis_open_latency_seconds_count", &[]),
        0.0
    );

    // The agent reports the generation applied: one open latency observed, once.
    for _ in 0..2 {
        let res = reqwest::Client::new()
            .post(format!("{}/agent/v1/report", app.base))
            .bearer_auth(&agent.bearer)
            .json(&json!({ "generation": applied, "error": "", "listening_ports": [22] }))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::NO_CONTENT);
        tokio::time::sleep(Duration::from_millis(1050)).await;
    }
    let enforced = scrape(&app).await;
    assert_eq!(
        enforced.value("portcullis_open_latency_seconds_count", &[]),
        1.0
    );
    let latency = enforced.value("portcullis_open_latency_seconds_sum", &[]);
    assert!((0.0..30.0).contains(&latency), "{latency}");
    assert_eq!(
        enforced.value("portcullis_open_latency_seconds_bucket", &[("le", "+Inf")]),
        1.0
    );
    assert_eq!(
        enforced.value(
            "portcullis_http_requests_total",
            &[("group", "agent"), ("code", "204")]
        ),
        2.0
    );

    // Revoked: no grant in force any more.
    let (s, body) = app
        .call(&admin, "revoke_request", &[("id", &request)])
        .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    let revoked = scrape(&app).await;
    assert_eq!(revoked.value("portcullis_active_grants", &[]), 0.0);
    assert_eq!(
        revoked.value("portcullis_open_latency_seconds_count", &[]),
        1.0
    );

    // An agent not heard from for over 90 seconds is silent.
    {
        sqlx::any::install_default_drivers();
        let db = sqlx::AnyPool::connect(&app.database_url).await.unwrap();
        sqlx::query("UPDATE vms SET agent_last_seen = $1 WHERE id = $2")
            .bind(chrono_like_now_ms() - 91_000)
            .bind(&vm)
            .execute(&db)
            .await
            .unwrap();
        db.close().await;
    }
    assert_eq!(
        scrape(&app).await.value("portcullis_agents_silent", &[]),
        1.0
    );

    // The verifier catches up with the newest entry of the activity log.
    let verified = scrape_until(&app, "the activity log to be verified", |s| {
        s.value("portcullis_activity_log_verified_position", &[])
            >= revoked.value("portcullis_activity_log_newest_position", &[])
    })
    .await;
    assert_eq!(verified.value("portcullis_activity_log_intact", &[]), 1.0);
}

fn chrono_like_now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// The metric families a scrape declares (`# TYPE name kind`).
fn families(text: &str) -> std::collections::BTreeSet<String> {
    text.lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split(' ').next())
        .map(str::to_owned)
        .collect()
}

#[tokio::test]
async fn the_grafana_dashboard_charts_every_metric_with_valid_queries() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../deploy/grafana/portcullis-dashboard.json");
    let text = std::fs::read_to_string(&path).unwrap();
    let dashboard: serde_json::Value = serde_json::from_str(&text).expect("the dashboard is JSON");

    // The Prometheus data source is chosen on import, as a template variable.
    let variables = dashboard["templating"]["list"].as_array().unwrap();
    assert!(
        variables.iter().any(|v| v["name"] == "datasource"
            && v["type"] == "datasource"
            && v["query"] == "prometheus"),
        "{variables:?}"
    );
    let mut exprs = Vec::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        if panel["type"] == "row" {
            continue;
        }
        assert_eq!(
            panel["datasource"]["uid"], "${datasource}",
            "{}",
            panel["title"]
        );
        for target in panel["targets"].as_array().unwrap() {
            assert_eq!(
                target["datasource"]["uid"], "${datasource}",
                "{}",
                panel["title"]
            );
            exprs.push(target["expr"].as_str().unwrap().to_owned());
        }
    }

    // Every query is valid PromQL: promtool checks them as recording rules (JSON is YAML).
    let rules = json!({ "groups": [{ "name": "dashboard", "rules": exprs.iter().enumerate().map(|(i, e)| json!({
        "record": format!("dashboard:query_{i}"),
        "expr": e.replace("$__rate_interval", "5m").replace("$instance", ".*").replace("$job", ".*"),
    })).collect::<Vec<_>>() }] });
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("rules.yml");
    std::fs::write(&file, rules.to_string()).unwrap();
    let out = match std::process::Command::new("promtool")
        .args(["check", "rules"])
        .arg(&file)
        .output()
    {
        Ok(out) => out,
        Err(e) => panic!(
            "promtool is needed to check the dashboard's queries and could not be run ({e}): \
             install it with `apt-get install -y prometheus`"
        ),
    };
    assert!(
        out.status.success(),
        "promtool check rules: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    // The queries name metrics the server has, and every metric has a panel.
    let app = spawn_app_with(with_token).await;
    // The first scrape is counted once it is answered: the request counter has a series
    // from the second on.
    scrape(&app).await;
    let served = families(&scrape(&app).await.0);
    let mut charted = std::collections::BTreeSet::new();
    for e in &exprs {
        let mut rest = e.as_str();
        while let Some(at) = rest.find("portcullis_") {
            let name: String = rest[at..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            rest = &rest[at + name.len()..];
            let family = ["_bucket", "_count", "_sum"]
                .iter()
                .find_map(|s| name.strip_suffix(s).filter(|f| served.contains(*f)))
                .map_or(name.clone(), str::to_owned);
            assert!(
                served.contains(&family),
                "{family} is charted but not served"
            );
            charted.insert(family);
        }
    }
    let missing: Vec<_> = served.difference(&charted).collect();
    assert!(missing.is_empty(), "no panel for {missing:?}");
}

#[tokio::test]
async fn refused_single_sign_ons_are_counted() {
    let issuer = sso::spawn_fake_issuer().await;
    let app = sso::spawn_sso_app(&format!(
        "metrics_token = \"{TOKEN}\"\n{}",
        sso::provider_toml("corp", "Corp SSO", &issuer.url)
    ))
    .await;
    let portal = TestApp::at(app.base.clone(), app.admin_password.clone());
    let oidc = [("method", "oidc")];
    assert_eq!(
        scrape(&portal)
            .await
            .value("portcullis_sign_in_failures_total", &oidc),
        0.0
    );
    // A provider's answer to a sign-in this browser never started is refused.
    let res = app
        .callback(&browser(), "corp", &[("code", "x"), ("state", "y")])
        .await;
    assert!(res.status().is_client_error(), "{}", res.status());
    let s = scrape(&portal).await;
    assert_eq!(s.value("portcullis_sign_in_failures_total", &oidc), 1.0);
    assert_eq!(
        s.value("portcullis_sign_in_failures_total", &[("method", "local")]),
        0.0
    );
}
