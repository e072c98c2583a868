//! Shared by the HTTP test files: a real server on port 0 with a fresh SQLite file.
#![allow(dead_code)]

use portcullis_server::config::Config;
use reqwest::header::ORIGIN;
use reqwest::{Client, StatusCode, redirect::Policy};
use serde_json::Value;
use std::net::SocketAddr;

pub struct TestApp {
    pub base: String,
    pub admin_password: String,
    _dir: tempfile::TempDir,
}

pub async fn spawn_app() -> TestApp {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::for_database(&format!(
        "sqlite://{}",
        dir.path().join("portal.db").display()
    ));
    config.listen = "127.0.0.1:0".parse().unwrap();
    config.site_root = dir.path().join("site").display().to_string();
    let built = portcullis_server::build(&config).await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(
            listener,
            built
                .router
                .into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
        .unwrap();
    });
    TestApp {
        base: format!("http://{addr}"),
        admin_password: built
            .bootstrap_password
            .expect("first start creates the admin"),
        _dir: dir,
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
pub mod rest;
