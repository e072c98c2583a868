//! Shared by the HTTP test files: a real server on port 0 with a fresh database (SQLite,
//! or PostgreSQL when `PORTCULLIS_TEST_POSTGRES` names a server).
#![allow(dead_code)]

use portcullis_server::config::Config;
use reqwest::header::ORIGIN;
use reqwest::{Client, StatusCode, redirect::Policy};
use serde_json::{Value, json};

pub struct TestApp {
    pub base: String,
    pub admin_password: String,
    /// The app's database, for tests that look at or change it directly.
    pub database_url: String,
    /// The site root the server serves from (empty at first; `downloads/` goes here).
    pub site_root: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

/// As [`spawn_app`], with the configuration adjusted first.
pub async fn spawn_app_with(adjust: impl FnOnce(&mut Config)) -> TestApp {
    // The server's warnings and errors go with a failing test's output (captured, so a
    // passing test stays quiet); `RUST_LOG` asks for more.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_test_writer()
        .try_init();
    let dir = tempfile::tempdir().unwrap();
    let url = portcullis_app::store::test_support::fresh_database_url(dir.path(), "portal")
        .await
        .unwrap();
    let mut config = Config::for_database(&url);
    // Before `adjust`, so that a test may bring a site of its own.
    config.site_root = dir.path().join("site").display().to_string();
    adjust(&mut config);
    config.listen = "127.0.0.1:0".parse().unwrap();
    let built = portcullis_server::build(&config).await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let header_timeout = portcullis_server::serve::HEADER_READ_TIMEOUT.min(config.request_timeout);
    tokio::spawn(portcullis_server::serve::serve(
        listener,
        built.router,
        header_timeout,
        config.request_timeout,
        std::future::pending(),
    ));
    TestApp {
        base: format!("http://{addr}"),
        admin_password: built
            .bootstrap_password
            .expect("first start creates the admin"),
        database_url: url,
        site_root: config.site_root.clone().into(),
        _dir: dir,
    }
}

impl TestApp {
    /// A portal started elsewhere (another process), reached at `base`.
    pub fn at(base: String, admin_password: String) -> TestApp {
        let dir = tempfile::tempdir().unwrap();
        TestApp {
            base,
            admin_password,
            database_url: String::new(),
            site_root: dir.path().to_owned(),
            _dir: dir,
        }
    }
}

pub fn browser() -> Client {
    Client::builder()
        .cookie_store(true)
        .redirect(Policy::none())
        .build()
        .unwrap()
}

impl TestApp {
    /// Calls a server function like the hydrated page does.
    pub async fn call(
        &self,
        client: &Client,
        name: &str,
        form: &[(&str, &str)],
    ) -> (StatusCode, Value) {
        let res = client
            .post(format!("{}/api/{name}", self.base))
            .header(ORIGIN, &self.base)
            .form(form)
            .send()
            .await
            .unwrap();
        let status = res.status();
        let text = res.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    pub async fn get(&self, client: &Client, path: &str) -> reqwest::Response {
        client
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .unwrap()
    }

    /// Signs in as admin and replaces the one-time password; returns the new password.
    pub async fn admin_ready(&self, client: &Client) -> String {
        let (s, _) = self
            .call(
                client,
                "login",
                &[("username", "admin"), ("password", &self.admin_password)],
            )
            .await;
        assert_eq!(s, StatusCode::OK);
        self.change_admin_password(client).await
    }

    /// Replaces the one-time password in an already signed-in admin session.
    pub async fn change_admin_password(&self, client: &Client) -> String {
        let new = "a long new portal passphrase";
        let (s, body) = self
            .call(
                client,
                "change_password",
                &[
                    ("current_password", &self.admin_password),
                    ("new_password", new),
                    ("confirm_password", new),
                ],
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{body}");
        new.to_owned()
    }
}

pub fn field_error<'a>(body: &'a Value, field: &str) -> Option<&'a str> {
    body["Validation"]
        .as_array()?
        .iter()
        .find(|e| e["field"] == field)?["message"]
        .as_str()
}

impl TestApp {
    /// Creates a user with one role over everything, signed in, with no forced change.
    pub async fn user_with_role(&self, admin: &Client, name: &str, role: &str) -> (Client, String) {
        let password = "a perfectly good passphrase";
        let (s, body) = self
            .call(
                admin,
                "create_user",
                &[
                    ("username", name),
                    ("display_name", name),
                    ("password", password),
                    ("role", role),
                    ("scope_kind", "all"),
                    ("scope_target", ""),
                ],
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{body}");
        let client = browser();
        let (s, body) = self
            .call(
                &client,
                "login",
                &[("username", name), ("password", password)],
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{body}");
        (client, body_id(&body))
    }

    /// Adds a VM through the API and returns its id.
    pub async fn add_vm(&self, admin: &Client, name: &str, os: &str) -> String {
        let (s, body) = self
            .call(
                admin,
                "save_vm",
                &[
                    ("id", ""),
                    ("name", name),
                    ("group", "prod"),
                    ("addresses", "198.51.100.5"),
                    ("os", os),
                    ("exposed_ports", "22"),
                ],
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{body}");
        body.as_str().unwrap().to_owned()
    }

    /// Puts one TCP port of a VM under JIT control.
    pub async fn enable(&self, admin: &Client, vm_id: &str, port: &str, approval: bool) {
        let mut form = vec![
            ("vm_ids[0]", vm_id),
            ("rules[0][enabled]", "on"),
            ("rules[0][port]", port),
            ("rules[0][protocol]", "tcp"),
            ("rules[0][allowed_sources]", ""),
            ("rules[0][max_minutes]", "60"),
        ];
        if approval {
            form.push(("rules[0][approval_required]", "on"));
        }
        let (s, body) = self.call(admin, "enable_jit", &form).await;
        assert_eq!(s, StatusCode::OK, "{body}");
    }

    /// Requests a port from the caller's own address; returns the request id.
    pub async fn request(&self, client: &Client, vm_id: &str, port: &str, minutes: &str) -> String {
        let key = format!("{vm_id}:{port}/tcp");
        let (s, body) = self
            .call(
                client,
                "request_access",
                &[
                    ("vm_ids[0]", vm_id),
                    ("ports[0]", &key),
                    ("source_mode", "my_ip"),
                    ("duration", minutes),
                    ("justification", "testing"),
                ],
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{body}");
        body[0].as_str().unwrap().to_owned()
    }
}

fn body_id(_body: &Value) -> String {
    String::new()
}

/// An agent speaking the documented protocol over HTTP.
pub struct Agent {
    pub bearer: String,
}

impl Agent {
    /// Starts a 20 s long-poll for a state newer than `after`; yields when it was
    /// answered, and the answer.
    pub fn long_poll(
        &self,
        app: &TestApp,
        after: i64,
    ) -> tokio::task::JoinHandle<(std::time::Instant, Value)> {
        let url = format!("{}/agent/v1/state?after={after}&wait=20", app.base);
        let bearer = self.bearer.clone();
        tokio::spawn(async move {
            let res = reqwest::Client::new()
                .get(url)
                .bearer_auth(bearer)
                .send()
                .await
                .unwrap();
            (
                std::time::Instant::now(),
                res.json::<Value>().await.unwrap(),
            )
        })
    }

    /// The agent an enrollment answer (`agent_id`, `secret`) makes.
    pub fn from_enrollment(enrolled: &Value) -> Agent {
        Agent {
            bearer: format!(
                "{}.{}",
                enrolled["agent_id"].as_str().unwrap(),
                enrolled["secret"].as_str().unwrap()
            ),
        }
    }
}

pub async fn enroll(app: &TestApp, token: &str, hostname: &str) -> (StatusCode, Value) {
    let res = reqwest::Client::new()
        .post(format!("{}/agent/v1/enroll", app.base))
        .json(&json!({ "token": token, "hostname": hostname }))
        .send()
        .await
        .unwrap();
    (res.status(), res.json().await.unwrap_or(Value::Null))
}

impl Agent {
    pub async fn state(&self, app: &TestApp, after: i64, wait: u64) -> (StatusCode, Value) {
        let res = reqwest::Client::new()
            .get(format!(
                "{}/agent/v1/state?after={after}&wait={wait}",
                app.base
            ))
            .bearer_auth(&self.bearer)
            .send()
            .await
            .unwrap();
        (res.status(), res.json().await.unwrap_or(Value::Null))
    }

    /// Sends a report (`generation`, `error`, `listening_ports`) as the agent does.
    pub async fn report(&self, app: &TestApp, report: Value) -> StatusCode {
        reqwest::Client::new()
            .post(format!("{}/agent/v1/report", app.base))
            .bearer_auth(&self.bearer)
            .json(&report)
            .send()
            .await
            .unwrap()
            .status()
    }
}

pub async fn token_for(app: &TestApp, admin: &reqwest::Client, vm: &str) -> String {
    let (s, body) = app
        .call(admin, "create_enrollment_token", &[("vm_id", vm)])
        .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    let token = body["token"].as_str().unwrap().to_owned();
    let command = body["command"].as_str().unwrap();
    // The token is exported by the shell, never an argument of sudo (which ps shows).
    assert!(
        command.starts_with(&format!(
            "export PORTCULLIS_ENROLL_TOKEN={token}; curl -fsSL http://127.0.0.1:"
        )),
        "{command}"
    );
    assert!(
        command.contains(
            "| sudo --preserve-env=PORTCULLIS_ENROLL_TOKEN sh -s -- --server http://127.0.0.1:"
        ),
        "{command}"
    );
    token
}
pub mod rest;
