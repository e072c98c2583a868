//! A thin client of the REST API: bearer token on every call, JSON in and out, and API
//! errors turned into one readable line (plus the fields they name).

use reqwest::{Method, StatusCode};
use serde_json::Value;

pub struct Client {
    pub url: String,
    pub token: String,
    http: reqwest::Client,
}

impl Client {
    pub fn new(url: &str, token: &str) -> Result<Self, String> {
        let http = reqwest::Client::builder()
            .user_agent(concat!("portcullis-cli/", env!("CARGO_PKG_VERSION")))
            .timeout(std::time::Duration::from_secs(60))
            .build()
            .map_err(|e| e.to_string())?;
        Ok(Client {
            url: url.trim_end_matches('/').to_owned(),
            token: token.to_owned(),
            http,
        })
    }

    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, String> {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.url))
            .bearer_auth(&self.token);
        if let Some(b) = body {
            req = req.json(b);
        }
        let res = req
            .send()
            .await
            .map_err(|e| format!("cannot reach {}: {e}", self.url))?;
        let status = res.status();
        let text = res.text().await.map_err(|e| e.to_string())?;
        if status.is_success() {
            if text.is_empty() {
                return Ok(Value::Null);
            }
            return serde_json::from_str(&text).or(Ok(Value::String(text)));
        }
        Err(describe(status, &text))
    }

    pub async fn get(&self, path: &str) -> Result<Value, String> {
        self.call(Method::GET, path, None).await
    }

    pub async fn post(&self, path: &str, body: &Value) -> Result<Value, String> {
        self.call(Method::POST, path, Some(body)).await
    }

    pub async fn put(&self, path: &str, body: &Value) -> Result<Value, String> {
        self.call(Method::PUT, path, Some(body)).await
    }

    pub async fn delete(&self, path: &str) -> Result<Value, String> {
        self.call(Method::DELETE, path, None).await
    }
}

/// One line for the error, then one per field the server named.
fn describe(status: StatusCode, text: &str) -> String {
    let body: Value = serde_json::from_str(text).unwrap_or(Value::Null);
    let message = body["error"]["message"]
        .as_str()
        .map(str::to_owned)
        .unwrap_or_else(|| format!("the server answered {status}"));
    let mut out = message;
    // An import's problems come in line order, each with its line and column.
    if let Some(rows) = body["error"]["rows"].as_array()
        && !rows.is_empty()
    {
        for r in rows {
            let column = r["column"].as_str().unwrap_or("");
            let place = if column.is_empty() {
                format!("line {}", r["line"])
            } else {
                format!("line {}, {column}", r["line"])
            };
            out.push_str(&format!(
                "\n  {place}: {}",
                r["message"].as_str().unwrap_or("")
            ));
        }
    } else if let Some(fields) = body["error"]["fields"].as_object()
        && fields.len() > 1
    {
        for (field, msg) in fields {
            out.push_str(&format!("\n  {field}: {}", msg.as_str().unwrap_or("")));
        }
    }
    if status == StatusCode::UNAUTHORIZED {
        out.push_str("\n  (run `portcullis login --url URL --token TOKEN` with a token from the portal's API tokens page)");
    }
    out
}

/// Percent-encodes a path segment or query value.
pub fn enc(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
