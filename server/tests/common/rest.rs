//! Helpers for the REST API tests: API tokens made through the portal, and a small
//! client that sends JSON with a bearer token and reads JSON back.
#![allow(dead_code)]

use super::TestApp;
use reqwest::{Client, Method, StatusCode};
use serde_json::Value;

/// Creates an API token for the signed-in `client` through the portal's server function
/// and returns it (shown once).
pub async fn api_token(app: &TestApp, client: &Client, name: &str) -> String {
    let (s, body) = app
        .call(
            client,
            "create_api_token",
            &[("name", name), ("expires_days", "7")],
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    let token = body["token"].as_str().unwrap().to_owned();
    assert!(token.starts_with("pcu_"), "{token}");
    token
}

/// The URL of the app's database, for tests that play time forward.
pub fn database_url(app: &TestApp) -> String {
    app.database_url.clone()
}

/// Creates a user with one role in a scope (`all`, `group` NAME or `vm` ID), signs them
/// in and returns their browser session.
pub async fn scoped_user(
    app: &TestApp,
    admin: &Client,
    name: &str,
    role: &str,
    scope_kind: &str,
    scope_target: &str,
) -> Client {
    let password = "a perfectly good passphrase";
    let (s, body) = app
        .call(
            admin,
            "create_user",
            &[
                ("username", name),
                ("display_name", name),
                ("password", password),
                ("role", role),
                ("scope_kind", scope_kind),
                ("scope_target", scope_target),
            ],
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    let client = super::browser();
    let (s, body) = app
        .call(
            &client,
            "login",
            &[("username", name), ("password", password)],
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    client
}

/// A script calling the API with one token.
#[derive(Clone)]
pub struct Api {
    pub base: String,
    pub token: String,
    pub http: Client,
}

impl Api {
    pub fn new(app: &TestApp, token: &str) -> Self {
        Api {
            base: app.base.clone(),
            token: token.to_owned(),
            http: Client::new(),
        }
    }

    pub async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> (StatusCode, Value) {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.token);
        if let Some(b) = body {
            req = req.json(b);
        }
        read(req.send().await.unwrap()).await
    }

    pub async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.send(Method::GET, path, None).await
    }

    pub async fn post(&self, path: &str, body: &Value) -> (StatusCode, Value) {
        self.send(Method::POST, path, Some(body)).await
    }

    pub async fn put(&self, path: &str, body: &Value) -> (StatusCode, Value) {
        self.send(Method::PUT, path, Some(body)).await
    }

    pub async fn delete(&self, path: &str) -> (StatusCode, Value) {
        self.send(Method::DELETE, path, None).await
    }

    /// Sends a raw body with the given content type.
    pub async fn raw(
        &self,
        method: Method,
        path: &str,
        content_type: &str,
        body: impl Into<reqwest::Body>,
    ) -> (StatusCode, Value) {
        let res = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .header(reqwest::header::CONTENT_TYPE, content_type)
            .body(body)
            .send()
            .await
            .unwrap();
        read(res).await
    }
}

pub async fn read(res: reqwest::Response) -> (StatusCode, Value) {
    let status = res.status();
    let text = res.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// The message of an API error body.
pub fn message(body: &Value) -> &str {
    body["error"]["message"].as_str().unwrap_or("")
}

/// The message for one JSON field of an API validation error.
pub fn field<'a>(body: &'a Value, name: &str) -> Option<&'a str> {
    body["error"]["fields"][name].as_str()
}

/// An Azure-style policy body with one port rule.
pub fn policy(port: i64, max: &str, approval: bool) -> Value {
    serde_json::json!({"virtualMachines": [{"ports": [{
        "number": port,
        "protocol": "TCP",
        "allowedSourceAddressPrefix": "*",
        "maxRequestAccessDuration": max,
        "approvalRequired": approval,
    }]}]})
}

/// An Azure-style initiate body for one port, from the caller's address.
pub fn initiate(port: i64, duration: &str) -> Value {
    serde_json::json!({
        "virtualMachines": [{"ports": [{"number": port, "duration": duration}]}],
        "justification": "maintenance",
    })
}
