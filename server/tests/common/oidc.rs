//! Single sign-on test kit: a portal configured with OpenID providers, a fake issuer served
//! by axum inside the test (discovery, JWKS, a token endpoint that checks PKCE and the
//! client secret and returns ID tokens we sign with chosen issuer, audience, expiry, nonce
//! and key), and the real `oidc-provider` from end2end/ run as a child process.
#![allow(dead_code)]

use axum::extract::{Form, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Json};
use axum::routing::{get, post};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use openidconnect::core::{CoreJwsSigningAlgorithm, CoreRsaPrivateSigningKey};
use openidconnect::{JsonWebKeyId, PrivateSigningKey};
use portcullis_app::store::Store;
use portcullis_server::config::Config;
use reqwest::Client;
use reqwest::header::LOCATION;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

pub const CLIENT_ID: &str = "portcullis";
pub const CLIENT_SECRET: &str = "a test client secret";
const KID: &str = "test-key-1";
const NEXT_KID: &str = "test-key-2";

/// A portal on a real socket with its store at hand, so tests can count sessions.
pub struct SsoApp {
    pub base: String,
    pub store: Store,
    pub admin_password: String,
    _dir: tempfile::TempDir,
}

/// Starts a portal whose configuration is `toml` (providers, local_accounts) plus a fresh
/// database; `public_url` is set to the portal's own address.
pub async fn spawn_sso_app(toml: &str) -> SsoApp {
    spawn_sso_app_on(0, toml).await
}

/// Like [`spawn_sso_app`] on a chosen port (one an OpenID provider knows already).
pub async fn spawn_sso_app_on(port: u16, toml: &str) -> SsoApp {
    let _ = tracing_subscriber::fmt()
        .with_test_writer()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .try_init();
    let dir = tempfile::tempdir().unwrap();
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let base = format!("http://{addr}");
    let text = format!("public_url = \"{base}\"\n{toml}");
    let mut config = Config::from_toml(&text, |_| None).expect("test configuration is valid");
    config.database_url =
        portcullis_app::store::test_support::fresh_database_url(dir.path(), "portal")
            .await
            .unwrap();
    config.listen = addr;
    config.site_root = dir.path().join("site").display().to_string();
    let built = portcullis_server::build(&config).await.unwrap();
    let store = built.state.store.clone();
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
    SsoApp {
        base,
        store,
        admin_password: built.bootstrap_password.unwrap(),
        _dir: dir,
    }
}

/// A `[[oidc]]` table for the fake issuer.
pub fn provider_toml(id: &str, name: &str, issuer: &str) -> String {
    format!(
        "[[oidc]]\nid = \"{id}\"\nname = \"{name}\"\nissuer = \"{issuer}\"\n\
         client_id = \"{CLIENT_ID}\"\nclient_secret = \"{CLIENT_SECRET}\"\n\
         scopes = [\"openid\", \"email\", \"profile\", \"groups\"]\n"
    )
}

/// How the fake issuer shapes the next ID token. The default is a valid token.
#[derive(Clone, Debug)]
pub struct TokenSpec {
    pub subject: String,
    pub claims: Value,
    pub issuer: Option<String>,
    pub audience: Option<Value>,
    pub expires_in_secs: i64,
    /// Replaces the nonce of the authorization request.
    pub nonce: Option<String>,
    /// Signs with a key the issuer never published (under the published key id).
    pub forged: bool,
}

impl TokenSpec {
    pub fn valid(subject: &str, claims: Value) -> Self {
        Self {
            subject: subject.into(),
            claims,
            issuer: None,
            audience: None,
            expires_in_secs: 300,
            nonce: None,
            forged: false,
        }
    }
}

struct Code {
    nonce: String,
    challenge: String,
    redirect_uri: String,
    spec: TokenSpec,
}

struct Issuer {
    url: String,
    key: CoreRsaPrivateSigningKey,
    forger: CoreRsaPrivateSigningKey,
    /// The key after a rotation: published under another key id, the old one withdrawn.
    next_key: CoreRsaPrivateSigningKey,
    rotated: std::sync::atomic::AtomicBool,
    codes: Mutex<HashMap<String, Code>>,
}

pub struct FakeIssuer {
    pub url: String,
    inner: Arc<Issuer>,
    stop: Mutex<Option<tokio::sync::oneshot::Sender<()>>>,
    task: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

/// What the portal put in its redirect to the provider.
#[derive(Debug, Clone)]
pub struct Authorize {
    pub state: String,
    pub nonce: String,
    pub code_challenge: String,
    pub code_challenge_method: String,
    pub redirect_uri: String,
    pub scope: String,
    pub client_id: String,
}

pub async fn spawn_fake_issuer() -> FakeIssuer {
    spawn_fake_issuer_on(0).await
}

/// Like [`spawn_fake_issuer`] on a chosen port (a provider that comes up late).
pub async fn spawn_fake_issuer_on(port: u16) -> FakeIssuer {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let pem = |name: &str| {
        std::fs::read_to_string(format!(
            "{}/tests/fixtures/{name}",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap()
    };
    let kid = Some(JsonWebKeyId::new(KID.into()));
    let inner = Arc::new(Issuer {
        url: url.clone(),
        key: CoreRsaPrivateSigningKey::from_pem(&pem("oidc_signing_key.pem"), kid.clone()).unwrap(),
        forger: CoreRsaPrivateSigningKey::from_pem(&pem("oidc_forger_key.pem"), kid).unwrap(),
        next_key: CoreRsaPrivateSigningKey::from_pem(
            &pem("oidc_forger_key.pem"),
            Some(JsonWebKeyId::new(NEXT_KID.into())),
        )
        .unwrap(),
        rotated: Default::default(),
        codes: Mutex::new(HashMap::new()),
    });
    let router = axum::Router::new()
        .route("/.well-known/openid-configuration", get(discovery))
        .route("/jwks", get(jwks))
        .route("/token", post(token))
        .with_state(inner.clone());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        axum::serve(listener, router)
            .with_graceful_shutdown(async move {
                let _ = stopped.await;
            })
            .await
            .unwrap()
    });
    FakeIssuer {
        url,
        inner,
        stop: Mutex::new(Some(stop)),
        task: Mutex::new(Some(task)),
    }
}

async fn discovery(State(issuer): State<Arc<Issuer>>) -> Json<Value> {
    let u = &issuer.url;
    Json(json!({
        "issuer": u,
        "authorization_endpoint": format!("{u}/authorize"),
        "token_endpoint": format!("{u}/token"),
        "jwks_uri": format!("{u}/jwks"),
        "end_session_endpoint": format!("{u}/logout"),
        "response_types_supported": ["code"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "code_challenge_methods_supported": ["S256"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic"],
    }))
}

async fn jwks(State(issuer): State<Arc<Issuer>>) -> Json<Value> {
    let key = if issuer.is_rotated() {
        &issuer.next_key
    } else {
        &issuer.key
    };
    Json(json!({ "keys": [key.as_verification_key()] }))
}

impl Issuer {
    fn is_rotated(&self) -> bool {
        self.rotated.load(std::sync::atomic::Ordering::SeqCst)
    }
}

fn oauth_error(code: &str) -> axum::response::Response {
    (StatusCode::BAD_REQUEST, Json(json!({ "error": code }))).into_response()
}

/// Checks what a real provider checks (client secret, one-time code, redirect URI, PKCE)
/// and answers with the ID token the test asked for.
async fn token(
    State(issuer): State<Arc<Issuer>>,
    headers: HeaderMap,
    Form(form): Form<HashMap<String, String>>,
) -> axum::response::Response {
    // RFC 6749 2.3.1: id and secret are form-urlencoded before the Basic encoding.
    let credentials = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(|b| STANDARD.decode(b).ok())
        .and_then(|b| String::from_utf8(b).ok())
        .and_then(|s| {
            let (id, secret) = s.split_once(':')?;
            let decode = |v: &str| {
                openidconnect::url::form_urlencoded::parse(format!("v={v}").as_bytes())
                    .next()
                    .map(|(_, v)| v.into_owned())
            };
            Some((decode(id)?, decode(secret)?))
        });
    if credentials != Some((CLIENT_ID.to_owned(), CLIENT_SECRET.to_owned())) {
        return oauth_error("invalid_client");
    }
    let Some(code) = form
        .get("code")
        .and_then(|c| issuer.codes.lock().unwrap().remove(c))
    else {
        return oauth_error("invalid_grant");
    };
    let verifier = form.get("code_verifier").cloned().unwrap_or_default();
    if URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes())) != code.challenge
        || form.get("redirect_uri") != Some(&code.redirect_uri)
    {
        return oauth_error("invalid_grant");
    }
    let spec = code.spec;
    let now = chrono::Utc::now().timestamp();
    let mut claims = json!({
        "iss": spec.issuer.clone().unwrap_or_else(|| issuer.url.clone()),
        "sub": spec.subject,
        "aud": spec.audience.clone().unwrap_or_else(|| json!(CLIENT_ID)),
        "iat": now - 5,
        "exp": now + spec.expires_in_secs,
        "nonce": spec.nonce.clone().unwrap_or(code.nonce),
    });
    if let Value::Object(extra) = spec.claims {
        claims.as_object_mut().unwrap().extend(extra);
    }
    let (kid, key) = match (spec.forged, issuer.is_rotated()) {
        (true, _) => (KID, &issuer.forger),
        (false, false) => (KID, &issuer.key),
        (false, true) => (NEXT_KID, &issuer.next_key),
    };
    let header = json!({ "alg": "RS256", "typ": "JWT", "kid": kid });
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let signature = key
        .sign(
            &CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256,
            input.as_bytes(),
        )
        .unwrap();
    let id_token = format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature));
    Json(json!({
        "access_token": "an opaque access token",
        "token_type": "Bearer",
        "expires_in": 300,
        "id_token": id_token,
    }))
    .into_response()
}

impl FakeIssuer {
    /// The provider rotates its signing key: new tokens carry a key id the portal has not
    /// seen, and the old key leaves the published set.
    pub fn rotate_keys(&self) {
        self.inner
            .rotated
            .store(true, std::sync::atomic::Ordering::SeqCst);
    }

    /// The provider goes down: its port closes and open connections end.
    pub async fn stop(&self) {
        if let Some(stop) = self.stop.lock().unwrap().take() {
            let _ = stop.send(());
        }
        let task = self.task.lock().unwrap().take();
        if let Some(task) = task {
            let _ = task.await;
        }
    }

    /// Issues a one-time code for the authorization request `auth`, redeemable for a
    /// token shaped by `spec`.
    pub fn issue_code(&self, auth: &Authorize, spec: TokenSpec) -> String {
        let code = uuid_like();
        self.inner.codes.lock().unwrap().insert(
            code.clone(),
            Code {
                nonce: auth.nonce.clone(),
                challenge: auth.code_challenge.clone(),
                redirect_uri: auth.redirect_uri.clone(),
                spec,
            },
        );
        code
    }
}

fn uuid_like() -> String {
    use rand::Rng;
    let n: u128 = rand::thread_rng().r#gen();
    format!("{n:032x}")
}

fn query_of(url: &str) -> HashMap<String, String> {
    let parsed = reqwest::Url::parse(url).unwrap();
    parsed.query_pairs().into_owned().collect()
}

impl SsoApp {
    /// Clicks the provider's button: returns the authorization request the portal sent the
    /// browser to.
    pub async fn start(&self, client: &Client, provider: &str) -> Authorize {
        let res = client
            .get(format!("{}/auth/oidc/{provider}/start", self.base))
            .send()
            .await
            .unwrap();
        assert!(res.status().is_redirection(), "start: {}", res.status());
        let location = res.headers()[LOCATION].to_str().unwrap().to_owned();
        let q = query_of(&location);
        Authorize {
            state: q["state"].clone(),
            nonce: q["nonce"].clone(),
            code_challenge: q["code_challenge"].clone(),
            code_challenge_method: q["code_challenge_method"].clone(),
            redirect_uri: q["redirect_uri"].clone(),
            scope: q["scope"].clone(),
            client_id: q["client_id"].clone(),
        }
    }

    /// The browser coming back from the provider with `query`.
    pub async fn callback(
        &self,
        client: &Client,
        provider: &str,
        query: &[(&str, &str)],
    ) -> reqwest::Response {
        client
            .get(format!("{}/auth/oidc/{provider}/callback", self.base))
            .query(query)
            .send()
            .await
            .unwrap()
    }

    pub async fn sessions(&self) -> i64 {
        self.store.count_sessions().await.unwrap()
    }

    pub async fn whoami(&self, client: &Client) -> Value {
        let res = client
            .post(format!("{}/api/whoami", self.base))
            .header(reqwest::header::ORIGIN, &self.base)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        res.json().await.unwrap()
    }

    pub async fn call(
        &self,
        client: &Client,
        name: &str,
        form: &[(&str, &str)],
    ) -> (reqwest::StatusCode, Value) {
        let res = client
            .post(format!("{}/api/{name}", self.base))
            .header(reqwest::header::ORIGIN, &self.base)
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

    /// Signs in as the bootstrap admin and replaces the one-time password.
    pub async fn admin(&self) -> Client {
        let c = crate::common::browser();
        let (s, _) = self
            .call(
                &c,
                "login",
                &[("username", "admin"), ("password", &self.admin_password)],
            )
            .await;
        assert_eq!(s, reqwest::StatusCode::OK);
        let new = "a long new portal passphrase";
        let (s, body) = self
            .call(
                &c,
                "change_password",
                &[
                    ("current_password", &self.admin_password),
                    ("new_password", new),
                    ("confirm_password", new),
                ],
            )
            .await;
        assert_eq!(s, reqwest::StatusCode::OK, "{body}");
        c
    }
}

/// The real `oidc-provider` (end2end/oidc/provider.mjs) on a free loopback port, stopped
/// when dropped. `None` when Node or the package is not installed (`scripts/setup.sh
/// test` installs them), so plain `cargo test` still runs everything else.
pub struct RealProvider {
    pub issuer: String,
    child: std::process::Child,
    /// Kept open: a provider writing to a closed pipe would die of EPIPE.
    _stdout: std::io::BufReader<std::process::ChildStdout>,
}

impl Drop for RealProvider {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Fails the test when the provider is not installed: a test that passes without the
/// component it is about proves nothing.
pub fn start_real_provider(redirect_uri: &str, post_logout_uri: &str) -> RealProvider {
    use std::io::BufRead;
    let end2end = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../end2end");
    assert!(
        end2end.join("node_modules/oidc-provider").is_dir(),
        "end2end/node_modules/oidc-provider is missing: run `scripts/setup.sh test` (make test does)"
    );
    let mut child = std::process::Command::new("node")
        .arg("oidc/provider.mjs")
        .args(["--redirect-uri", redirect_uri])
        .args(["--post-logout-redirect-uri", post_logout_uri])
        .current_dir(&end2end)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("node runs end2end/oidc/provider.mjs");
    let mut stdout = std::io::BufReader::new(child.stdout.take().expect("piped stdout"));
    let mut line = String::new();
    stdout
        .read_line(&mut line)
        .expect("the provider prints its issuer");
    let issuer =
        serde_json::from_str::<Value>(&line).expect("the provider's first line is JSON")["issuer"]
            .as_str()
            .expect("with an issuer")
            .to_owned();
    RealProvider {
        issuer,
        child,
        _stdout: stdout,
    }
}
