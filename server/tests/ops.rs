//! Operations without a browser: the built `portcullis-server` binary's host commands
//! (`--version`, `backup`, `create-admin`, `token create`, `enroll-token`) run against a
//! fresh database (SQLite, or PostgreSQL with `PORTCULLIS_TEST_POSTGRES`), the server's
//! log written to a file, and the REST calls that make API and enrollment tokens.

mod common;

use common::rest::{Api, api_token, field, message, scoped_user};
use common::*;
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_portcullis-server");

/// A host with a fresh database, on which the binary's commands run.
struct Host {
    dir: tempfile::TempDir,
    url: String,
    /// With PostgreSQL the activity log's key must be given; with SQLite it lives beside
    /// the database file, as in a default installation.
    audit_key: Option<String>,
}

impl Host {
    async fn new() -> Host {
        let dir = tempfile::tempdir().unwrap();
        let url = portcullis_app::store::test_support::fresh_database_url(dir.path(), "portal")
            .await
            .unwrap();
        let audit_key = url.starts_with("postgres").then(|| {
            use base64::Engine;
            base64::engine::general_purpose::STANDARD.encode([7u8; 32])
        });
        Host {
            dir,
            url,
            audit_key,
        }
    }

    fn is_sqlite(&self) -> bool {
        self.url.starts_with("sqlite:")
    }

    fn command(&self, url: &str) -> Command {
        let mut c = Command::new(BIN);
        c.env_remove("PORTCULLIS_CONFIG")
            .env_remove("PORTCULLIS_LOG")
            .env_remove("NO_COLOR")
            .env("PORTCULLIS_DATABASE_URL", url)
            .env("PORTCULLIS_SITE_ROOT", self.dir.path().join("site"))
            .current_dir(self.dir.path());
        if let Some(key) = &self.audit_key {
            c.env("PORTCULLIS_AUDIT_KEY", key);
        }
        c
    }

    fn run(&self, args: &[&str]) -> Output {
        self.command(&self.url).args(args).output().unwrap()
    }

    /// Runs a command that must succeed; returns its standard output.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "{args:?}: {:?}\nstdout: {}\nstderr: {}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Starts the server on `url`, its log (standard output) going to a file.
    async fn serve(&self, url: &str, extra_env: &[(&str, &str)]) -> Server {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let log = self.dir.path().join(format!("server-{port}.log"));
        let mut c = self.command(url);
        c.env("PORTCULLIS_LISTEN", format!("127.0.0.1:{port}"))
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(Stdio::inherit());
        for (k, v) in extra_env {
            c.env(k, v);
        }
        let child = c.spawn().unwrap();
        let server = Server {
            child,
            base: format!("http://127.0.0.1:{port}"),
            log,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(r) = reqwest::get(format!("{}/healthz", server.base)).await
                && r.status().is_success()
            {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the server did not start: {}",
                server.log_text()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        server
    }
}

/// A server process this test started; stopped when dropped.
struct Server {
    child: Child,
    base: String,
    log: PathBuf,
}

impl Server {
    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn app(&self, admin_password: &str) -> TestApp {
        TestApp::at(self.base.clone(), admin_password.to_owned())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The value after `label` on a line of `text`.
fn line_value<'a>(text: &'a str, label: &str) -> &'a str {
    text.lines()
        .find_map(|l| l.strip_prefix(label))
        .unwrap_or_else(|| panic!("no '{label}' line in:\n{text}"))
        .trim()
}

/// Signs `name` in with a one-time password, checks that nothing but a password change
/// is allowed, changes it; returns the signed-in session.
async fn first_sign_in(app: &TestApp, name: &str, one_time: &str) -> reqwest::Client {
    let client = browser();
    let (s, body) = app
        .call(
            &client,
            "login",
            &[("username", name), ("password", one_time)],
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    let (s, body) = app.call(&client, "list_api_tokens", &[]).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "must change first: {body}");
    let new = "a long new portal passphrase";
    let (s, body) = app
        .call(
            &client,
            "change_password",
            &[
                ("current_password", one_time),
                ("new_password", new),
                ("confirm_password", new),
            ],
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    let (s, body) = app.call(&client, "list_api_tokens", &[]).await;
    assert_eq!(s, StatusCode::OK, "{body}");
    client
}

fn entries<'a>(log: &'a Value, action: &str) -> Vec<&'a Value> {
    log["value"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == action)
        .collect()
}

#[test]
fn version_is_the_crate_version() {
    let out = Command::new(BIN).arg("--version").output().unwrap();
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8(out.stdout).unwrap().trim(),
        format!("portcullis-server {}", env!("CARGO_PKG_VERSION"))
    );
    let out = Command::new(BIN).arg("--help").output().unwrap();
    let help = String::from_utf8(out.stdout).unwrap();
    for command in [
        "backup",
        "verify-log",
        "create-admin",
        "token",
        "enroll-token",
    ] {
        assert!(
            help.contains(command),
            "{command} missing from --help:\n{help}"
        );
    }
    // A mistyped command is refused, not served.
    let out = Command::new(BIN).arg("bakup").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[tokio::test]
async fn the_log_in_a_file_has_no_colour_codes_and_its_one_time_password_signs_in() {
    let host = Host::new().await;
    let server = host.serve(&host.url, &[]).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while !server.log_text().contains("one_time_password=") {
        assert!(Instant::now() < deadline, "{}", server.log_text());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let log = server.log_text();
    assert!(
        !log.contains('\u{1b}'),
        "colour codes in a log file:\n{log}"
    );
    // What the README tells an operator to do.
    let password = log
        .lines()
        .find_map(|l| l.split("one_time_password=").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap();
    first_sign_in(&server.app(password), "admin", password).await;
}

#[tokio::test]
async fn create_admin_recovers_a_lost_administrator_and_token_create_serves_scripts() {
    let host = Host::new().await;
    let server = host.serve(&host.url, &[]).await;

    // Everyone forgot the administrator's password: a new administrator, from the host,
    // while the server runs.
    let out = host.ok(&["create-admin", "alice"]);
    assert!(out.contains("administrator alice created"), "{out}");
    let alice_once = line_value(&out, "one-time password:").to_owned();
    let app = server.app("");
    let alice = first_sign_in(&app, "alice", &alice_once).await;

    // The bootstrap administrator, disabled and stripped of the role, is restored.
    let admin_id = {
        let (s, users) = app.call(&alice, "list_users", &[]).await;
        assert_eq!(s, StatusCode::OK, "{users}");
        users
            .as_array()
            .unwrap()
            .iter()
            .find(|u| u["username"] == "admin")
            .unwrap()["id"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let (s, body) = app
        .call(
            &alice,
            "set_user_disabled",
            &[("user_id", &admin_id), ("disabled", "true")],
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    let out = host.ok(&["create-admin", "admin"]);
    assert!(out.contains("administrator admin restored"), "{out}");
    let admin_once = line_value(&out, "one-time password:").to_owned();
    first_sign_in(&app, "admin", &admin_once).await;

    // Names are checked as in the portal.
    let out = host.run(&["create-admin", "a b"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("username"));

    // A token for a script, made on the host; standard output is the token alone.
    let token = host.ok(&[
        "token", "create", "--user", "alice", "--days", "7", "--name", "nightly",
    ]);
    let token = token.trim();
    assert!(
        token.starts_with("pcu_") && !token.contains('\n'),
        "{token}"
    );
    let api = Api::new(&app, token);
    let (s, me) = api.get("/api/v1/me").await;
    assert_eq!(s, StatusCode::OK, "{me}");
    assert_eq!(me["username"], "alice");
    let (_, list) = api.get("/api/v1/tokens").await;
    let listed = &list["value"][0];
    assert_eq!(listed["name"], "nightly");
    let left = chrono::DateTime::parse_from_rfc3339(listed["expiresUtc"].as_str().unwrap())
        .unwrap()
        .timestamp()
        - chrono::Utc::now().timestamp();
    assert!((left - 7 * 86_400).abs() < 120, "7 days: {listed}");

    // The same rules as the portal's token page.
    for (args, expected) in [
        (vec!["--user", "nobody"], "No user is named 'nobody'"),
        (vec!["--user", "alice", "--days", "999"], "expires_days"),
    ] {
        let mut all = vec!["token", "create"];
        all.extend(args);
        let out = host.run(&all);
        assert_eq!(out.status.code(), Some(1), "{all:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(expected), "{all:?}: {err}");
    }

    // Every host action is in the activity log, from the host console.
    let (s, log) = api.get("/api/v1/activity?pageSize=100").await;
    assert_eq!(s, StatusCode::OK, "{log}");
    let from_host = |action: &str, detail: &str| {
        assert!(
            entries(&log, action)
                .iter()
                .any(|e| e["actor"] == "host console"
                    && e["clientIp"] == "local console"
                    && e["detail"].as_str().unwrap().contains(detail)),
            "no {action} entry from the host console with '{detail}': {log:#}"
        );
    };
    from_host("user.create", "alice as admin on all");
    from_host("user.recover", "admin (administrator recovery");
    from_host("user.recover", "account enabled");
    from_host("token.create", "\"nightly\"");
    from_host("token.create", "for user alice");
    let out = host.ok(&["verify-log"]);
    assert!(out.contains("activity log intact"), "{out}");
}

#[tokio::test]
async fn enroll_token_prints_a_token_an_agent_enrolls_with_and_the_api_shows_its_contact() {
    let host = Host::new().await;
    let server = host.serve(&host.url, &[]).await;
    let out = host.ok(&["create-admin", "ops"]);
    let app = server.app("");
    first_sign_in(&app, "ops", line_value(&out, "one-time password:")).await;
    let api = Api::new(&app, host.ok(&["token", "create", "--user", "ops"]).trim());
    let (s, body) = api
        .post(
            "/api/v1/vms",
            &json!({"name": "web1", "group": "prod", "os": "linux"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{body}");
    assert_eq!(body["agentLastContactUtc"], Value::Null);

    let out = host
        .command(&host.url)
        .env("PORTCULLIS_PUBLIC_URL", "https://jit.example.org")
        .args(["enroll-token", "--vm", "web1"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let out = String::from_utf8(out.stdout).unwrap();
    let mut lines = out.lines();
    let token = lines.next().unwrap().trim().to_owned();
    let command = lines.next().unwrap();
    assert!(command.contains("https://jit.example.org"), "{command}");
    assert!(command.contains(&token), "{command}");
    let (s, enrolled) = enroll(&app, &token, "web1.example.org").await;
    assert_eq!(s, StatusCode::OK, "{enrolled}");
    let agent = Agent::from_enrollment(&enrolled);
    let (s, state) = agent.state(&app, -1, 0).await;
    assert_eq!(s, StatusCode::OK, "{state}");
    let generation = state["generation"].as_i64().unwrap();
    let res = reqwest::Client::new()
        .post(format!("{}/agent/v1/report", app.base))
        .bearer_auth(&agent.bearer)
        .json(&json!({"generation": generation}))
        .send()
        .await
        .unwrap();
    assert!(res.status().is_success(), "{}", res.status());
    let (_, vm) = api.get("/api/v1/vms/web1").await;
    assert!(vm["agentLastContactUtc"].is_string(), "{vm}");
    assert_eq!(vm["agentAppliedGeneration"], generation, "{vm}");
    assert_eq!(vm["desiredGeneration"], generation, "{vm}");
    let (_, list) = api.get("/api/v1/vms").await;
    assert_eq!(list["value"][0]["agentAppliedGeneration"], generation);

    // A token for a new VM in a group: the agent registers its host.
    let out = host.ok(&["enroll-token", "--group", "lab"]);
    let token = out.lines().next().unwrap().trim();
    let (s, enrolled) = enroll(&app, token, "lab-7").await;
    assert_eq!(s, StatusCode::OK, "{enrolled}");
    let (s, vm) = api.get("/api/v1/vms/lab-7").await;
    assert_eq!(s, StatusCode::OK, "{vm}");
    assert_eq!(vm["group"], "lab");

    // Refusals name what is wrong and make nothing.
    let out = host.run(&["enroll-token", "--vm", "nosuch"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("The VM was not found"));
    let out = host.run(&["enroll-token", "--vm", "web1", "--group", "lab"]);
    assert_eq!(out.status.code(), Some(2), "one target only");
    let (_, log) = api.get("/api/v1/activity?pageSize=100").await;
    let made = entries(&log, "agent.token");
    assert_eq!(made.len(), 2, "{log:#}");
    assert!(
        made.iter()
            .all(|e| e["actor"] == "host console" && e["clientIp"] == "local console")
    );
}

#[tokio::test]
async fn backup_copies_a_running_database_that_a_server_starts_from() {
    let host = Host::new().await;
    if !host.is_sqlite() {
        // PostgreSQL is backed up with its own tool; the command says so.
        let out = host.run(&["backup", "copy.dump"]);
        assert_eq!(out.status.code(), Some(2));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("pg_dump") && err.contains("portcullis_test_"),
            "{err}"
        );
        return;
    }
    let server = host.serve(&host.url, &[]).await;
    let out = host.ok(&["create-admin", "alice"]);
    let once = line_value(&out, "one-time password:").to_owned();
    let copy = host.dir.path().join("copy.db");
    let out = host.ok(&["backup", copy.to_str().unwrap()]);
    assert!(out.contains("copy.db"), "{out}");
    assert!(
        out.contains("portal.db.audit-key") && out.contains("back them up too"),
        "the key outside the database is named: {out}"
    );
    // The copy holds password hashes and sessions: its owner alone may read it.
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&copy).unwrap().permissions().mode() & 0o777,
        0o600
    );
    // Never through a symbolic link, even one that points nowhere yet.
    let elsewhere = host.dir.path().join("elsewhere.db");
    let link = host.dir.path().join("link.db");
    std::os::unix::fs::symlink(&elsewhere, &link).unwrap();
    let out = host.run(&["backup", link.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(!elsewhere.exists(), "the backup followed a symbolic link");
    // Never over an existing file.
    let before = std::fs::read(&copy).unwrap();
    let out = host.run(&["backup", copy.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("exists already"));
    assert_eq!(std::fs::read(&copy).unwrap(), before);
    drop(server);

    // The copy, with the original's activity log key, is a portal that holds the data.
    let key = host.dir.path().join("portal.db.audit-key");
    let copy_url = format!("sqlite://{}", copy.display());
    let out = host
        .command(&copy_url)
        .env("PORTCULLIS_AUDIT_KEY_FILE", &key)
        .arg("verify-log")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let restored = host
        .serve(
            &copy_url,
            &[("PORTCULLIS_AUDIT_KEY_FILE", key.to_str().unwrap())],
        )
        .await;
    first_sign_in(&restored.app(""), "alice", &once).await;
}

/// A host command run where there is no database (a forgotten --config, the wrong
/// directory) says so and creates nothing: it must not report success on a new, empty
/// database that no server serves.
#[test]
fn host_commands_refuse_a_missing_database_instead_of_creating_one() {
    let dir = tempfile::tempdir().unwrap();
    for args in [
        &["create-admin", "alice"][..],
        &["enroll-token", "--group", "lab"][..],
        &["token", "create", "--user", "admin"][..],
        &["verify-log"][..],
    ] {
        let out = Command::new(BIN)
            .env_remove("PORTCULLIS_CONFIG")
            .env_remove("PORTCULLIS_DATABASE_URL")
            .env_remove("PORTCULLIS_AUDIT_KEY")
            .current_dir(dir.path())
            .args(args)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("there is no database at"), "{args:?}: {err}");
        assert!(err.contains("--config"), "{args:?}: {err}");
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            0,
            "{args:?} created files"
        );
    }
}

/// A PostgreSQL URL is answered with the `pg_dump` advice without any server to reach.
#[test]
fn backup_of_postgresql_points_to_pg_dump() {
    let out = Command::new(BIN)
        .env_remove("PORTCULLIS_CONFIG")
        .env(
            "PORTCULLIS_DATABASE_URL",
            "postgres://portcullis:secret@db.example.org:5432/portcullis_prod?sslmode=require",
        )
        .env(
            "PORTCULLIS_AUDIT_KEY",
            "BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=",
        )
        .args(["backup", "/nonexistent/copy.dump"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("pg_dump"), "{err}");
    assert!(err.contains("portcullis_prod"), "{err}");
    assert!(
        !err.contains("secret"),
        "the password is not printed: {err}"
    );
    assert!(err.contains("activity log key"), "{err}");
}

// ---- the REST calls that make tokens ----

async fn admin_api() -> (TestApp, reqwest::Client, Api) {
    let app = spawn_app().await;
    let admin = browser();
    app.admin_ready(&admin).await;
    let token = api_token(&app, &admin, "admin script").await;
    let api = Api::new(&app, &token);
    (app, admin, api)
}

#[tokio::test]
async fn api_tokens_are_made_through_the_api_within_the_callers_rights_and_lifetime() {
    let (app, admin, api) = admin_api().await;
    let bob = scoped_user(&app, &admin, "bob", "requester", "all", "").await;
    let bob_api = Api::new(&app, &api_token(&app, &bob, "bob's").await);

    // For oneself: it works at once, and never outlives the token that made it (7 days).
    let (s, made) = api
        .post(
            "/api/v1/tokens",
            &json!({"name": "ci", "expiresInDays": 365}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{made}");
    assert_eq!(made["owner"], "admin");
    let expires =
        chrono::DateTime::parse_from_rfc3339(made["info"]["expiresUtc"].as_str().unwrap()).unwrap();
    assert!(
        expires < chrono::Utc::now() + chrono::Duration::days(8),
        "{made}"
    );
    let (s, me) = Api::new(&app, made["token"].as_str().unwrap())
        .get("/api/v1/me")
        .await;
    assert_eq!(
        (s, me["username"].as_str()),
        (StatusCode::OK, Some("admin"))
    );

    // For another user: an administrator may; the token acts as that user.
    let (s, made) = api
        .post("/api/v1/tokens", &json!({"name": "svc", "user": "bob"}))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{made}");
    assert_eq!(made["owner"], "bob");
    let (_, me) = Api::new(&app, made["token"].as_str().unwrap())
        .get("/api/v1/me")
        .await;
    assert_eq!(me["username"], "bob");

    // A requester makes their own, not anyone else's.
    let (s, body) = bob_api
        .post(
            "/api/v1/tokens",
            &json!({"name": "mine", "expiresInDays": 3}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{body}");
    let (s, body) = bob_api
        .post(
            "/api/v1/tokens",
            &json!({"name": "theirs", "user": "admin"}),
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{body}");

    // Bad input names the field and makes nothing.
    let (_, before) = api.get("/api/v1/tokens?all=true").await;
    let (s, body) = api
        .post("/api/v1/tokens", &json!({"name": "x", "user": "nobody"}))
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(field(&body, "user").is_some(), "{body}");
    let (s, body) = api
        .post("/api/v1/tokens", &json!({"name": "x", "expiresInDays": 0}))
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(field(&body, "expiresInDays").is_some(), "{body}");
    let (s, body) = api
        .post("/api/v1/tokens", &json!({"name": "", "lifetime": 3}))
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{}", message(&body));
    let (_, after) = api.get("/api/v1/tokens?all=true").await;
    assert_eq!(before["value"], after["value"]);

    let (_, log) = api.get("/api/v1/activity?pageSize=100").await;
    assert!(
        entries(&log, "token.create").iter().any(
            |e| e["actor"] == "admin" && e["detail"].as_str().unwrap().contains("for user bob")
        ),
        "{log:#}"
    );
}

#[tokio::test]
async fn enrollment_tokens_are_made_through_the_api_for_whoever_manages_the_vm() {
    let (app, admin, api) = admin_api().await;
    let (s, body) = api
        .post(
            "/api/v1/vms",
            &json!({"name": "db1", "group": "prod", "os": "linux"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{body}");

    let (s, made) = api
        .post("/api/v1/vms/db1/enrollmentTokens", &json!({}))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{made}");
    let token = made["token"].as_str().unwrap();
    assert!(made["command"].as_str().unwrap().contains(token), "{made}");
    assert!(
        made["command"].as_str().unwrap().contains(&app.base),
        "the portal's address as the caller reached it: {made}"
    );
    assert_eq!(made["target"], "db1");
    let (s, enrolled) = enroll(&app, token, "db1.example.org").await;
    assert_eq!(s, StatusCode::OK, "{enrolled}");
    assert_eq!(enrolled["vm_name"], "db1", "{enrolled}");

    let (s, made) = api
        .post("/api/v1/groups/lab/enrollmentTokens", &json!({}))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{made}");
    assert_eq!(made["group"], "lab");
    let (s, enrolled) = enroll(&app, made["token"].as_str().unwrap(), "lab-1").await;
    assert_eq!(s, StatusCode::OK, "{enrolled}");

    // The same decisions as the portal: a requester may not; a bad group name is named.
    let bob = scoped_user(&app, &admin, "bob", "requester", "all", "").await;
    let bob_api = Api::new(&app, &api_token(&app, &bob, "bob's").await);
    let (s, body) = bob_api
        .post("/api/v1/vms/db1/enrollmentTokens", &json!({}))
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{body}");
    let (s, body) = bob_api
        .post("/api/v1/groups/lab/enrollmentTokens", &json!({}))
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{body}");
    let (s, body) = api
        .post("/api/v1/groups/a%20b/enrollmentTokens", &json!({}))
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(field(&body, "group").is_some(), "{body}");
    let (s, body) = api
        .post("/api/v1/vms/nosuch/enrollmentTokens", &json!({}))
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{body}");

    let doc: Value = reqwest::get(format!("{}/api/v1/openapi.json", app.base))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    for p in [
        "/api/v1/vms/{vm}/enrollmentTokens",
        "/api/v1/groups/{group}/enrollmentTokens",
    ] {
        assert!(doc["paths"][p]["post"].is_object(), "{p} not documented");
    }
    assert!(doc["paths"]["/api/v1/tokens"]["post"].is_object());
    let vm = &doc["components"]["schemas"]["VmDto"]["properties"];
    for f in [
        "agentLastContactUtc",
        "agentAppliedGeneration",
        "desiredGeneration",
    ] {
        assert!(vm[f].is_object(), "{f} not in the VM schema");
    }
}
