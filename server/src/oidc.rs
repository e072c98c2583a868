//! OpenID Connect sign-in (authorization code flow with PKCE), as plain axum routes:
//! redirects are simpler here than in server functions.
//!
//! `GET /auth/oidc/{provider}/start` discovers the provider (cached), keeps state, nonce,
//! PKCE verifier and the page to return to (`next`, checked like the password sign-in's)
//! in the session and sends the browser to the provider.
//! `GET /auth/oidc/{provider}/callback` takes those back out of the session *before*
//! anything else (so a replayed callback finds nothing), checks the state, exchanges the
//! code, verifies the ID token (issuer, audience, expiry, signature, nonce), signs the
//! user in under a fresh session id and sends the browser to that page (else home). Every
//! refusal answers a page that says what happened in plain words, is written to the
//! activity log, and leaves no session behind.

use crate::config::OidcProviderConfig;
use axum::Extension;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Redirect, Response};
use base64::Engine;
use openidconnect::core::{
    CoreAuthenticationFlow, CoreClient, CoreGenderClaim, CoreIdToken, CoreTokenResponse,
};
use openidconnect::{
    AccessToken, AdditionalClaims, AuthorizationCode, ClaimsVerificationError, ClientId,
    ClientSecret, CsrfToken, EndSessionUrl, EndpointMaybeSet, EndpointNotSet, EndpointSet,
    IssuerUrl, LogoutRequest, Nonce, OAuth2TokenResponse, PkceCodeChallenge, PkceCodeVerifier,
    PostLogoutRedirectUrl, ProviderMetadataWithLogout, RedirectUrl, RequestTokenError, Scope,
    SignatureVerificationError, SubjectIdentifier, TokenResponse, UserInfoClaims,
};
use portcullis_app::api::return_path;
use portcullis_app::auth::{SESSION_END_SESSION_URL, SESSION_USER_ID};
use portcullis_app::domain::sso::{ClaimNames, identity_from_claims};
use portcullis_app::model::{ProviderButton, SignInOptions};
use portcullis_app::services::sso::{FederatedSignIn, log_refused, sign_in_federated};
use portcullis_app::state::{AppState, ClientIp};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::sync::Arc;
use std::time::{Duration, Instant};
use subtle::ConstantTimeEq;
use tower_sessions::Session;

/// Where the pending sign-in waits in the session between start and callback.
const SESSION_PENDING: &str = "oidc_pending";
/// A sign-in not completed within this time must be started again.
const PENDING_TTL_MS: i64 = 10 * 60 * 1000;
/// Provider metadata (and keys) are re-read after this long, and at once when an ID token
/// is signed with a key we do not know (key rotation).
const METADATA_TTL: Duration = Duration::from_secs(60 * 60);

type Client = CoreClient<
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointMaybeSet,
    EndpointMaybeSet,
>;

/// The configured providers and the HTTP client that talks to them.
pub struct Oidc {
    providers: Vec<Provider>,
    http: reqwest::Client,
    public_url: String,
}

struct Provider {
    config: OidcProviderConfig,
    redirect_url: RedirectUrl,
    metadata: tokio::sync::Mutex<Option<(ProviderMetadataWithLogout, Instant)>>,
}

/// What the session remembers between start and callback.
#[derive(Serialize, Deserialize)]
struct Pending {
    provider: String,
    state: String,
    nonce: String,
    pkce_verifier: String,
    started_ms: i64,
    /// Where to go after signing in: a path on this site ([`return_path`]), or none.
    #[serde(default)]
    next: Option<String>,
}

/// What the sign-in page adds to the provider's button.
#[derive(Deserialize)]
pub struct StartQuery {
    /// The page a signed-out visitor was sent to sign in from.
    next: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum OidcSetupError {
    #[error("oidc provider '{0}': the redirect URI built from public_url is not a valid URL")]
    RedirectUrl(String),
    #[error("building the HTTP client failed: {0}")]
    Http(String),
}

impl Oidc {
    pub fn new(
        configs: &[OidcProviderConfig],
        public_url: Option<&str>,
    ) -> Result<Self, OidcSetupError> {
        let public_url = public_url
            .unwrap_or_default()
            .trim_end_matches('/')
            .to_owned();
        let providers = configs
            .iter()
            .map(|c| {
                let redirect_url =
                    RedirectUrl::new(format!("{public_url}/auth/oidc/{}/callback", c.id))
                        .map_err(|_| OidcSetupError::RedirectUrl(c.id.clone()))?;
                Ok(Provider {
                    config: c.clone(),
                    redirect_url,
                    metadata: tokio::sync::Mutex::new(None),
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        // No redirects: a token endpoint that redirects could be made to leak the code
        // elsewhere (the openidconnect crate asks for this).
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(15))
            .build()
            .map_err(|e| OidcSetupError::Http(e.to_string()))?;
        Ok(Self {
            providers,
            http,
            public_url,
        })
    }

    /// What the sign-in page offers.
    pub fn sign_in_options(&self, local_accounts: bool) -> SignInOptions {
        SignInOptions {
            local_accounts,
            providers: self
                .providers
                .iter()
                .map(|p| ProviderButton {
                    id: p.config.id.clone(),
                    name: p.config.name.clone(),
                })
                .collect(),
        }
    }

    /// Reads every provider's metadata in the background so the first sign-in is quick. A
    /// provider that is down is only logged: its button stays, and an attempt explains.
    pub fn warm_up(self: &Arc<Self>) {
        for index in 0..self.providers.len() {
            let this = self.clone();
            tokio::spawn(async move {
                let provider = &this.providers[index];
                if let Err(e) = provider.metadata(&this.http, false).await {
                    tracing::warn!(provider = %provider.config.id, error = %e,
                        "identity provider not reachable at start-up; will retry at sign-in");
                }
            });
        }
    }

    fn provider(&self, id: &str) -> Option<&Provider> {
        self.providers.iter().find(|p| p.config.id == id)
    }
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct DiscoveryFailed(String);

impl Provider {
    /// The provider's metadata: cached, re-read when older than [`METADATA_TTL`] or when
    /// `refresh` is asked for. A stale copy is used if the provider is down meanwhile.
    async fn metadata(
        &self,
        http: &reqwest::Client,
        refresh: bool,
    ) -> Result<ProviderMetadataWithLogout, DiscoveryFailed> {
        let mut cached = self.metadata.lock().await;
        if let Some((metadata, at)) = cached.as_ref()
            && !refresh
            && at.elapsed() < METADATA_TTL
        {
            return Ok(metadata.clone());
        }
        let issuer = IssuerUrl::new(self.config.issuer.clone())
            .map_err(|e| DiscoveryFailed(format!("issuer URL: {e}")))?;
        match ProviderMetadataWithLogout::discover_async(issuer, http).await {
            Ok(metadata) => {
                *cached = Some((metadata.clone(), Instant::now()));
                Ok(metadata)
            }
            Err(e) => {
                let error = error_chain(&e);
                match cached.as_ref() {
                    Some((metadata, _)) if !refresh => {
                        tracing::warn!(provider = %self.config.id, %error,
                            "provider discovery failed; using the metadata read earlier");
                        Ok(metadata.clone())
                    }
                    _ => Err(DiscoveryFailed(error)),
                }
            }
        }
    }

    fn client(&self, metadata: ProviderMetadataWithLogout) -> Client {
        CoreClient::from_provider_metadata(
            metadata,
            ClientId::new(self.config.client_id.clone()),
            self.config.client_secret.clone().map(ClientSecret::new),
        )
        .set_redirect_uri(self.redirect_url.clone())
    }

    fn claim_names(&self) -> ClaimNames {
        ClaimNames {
            username: self.config.username_claim.clone(),
            email: self.config.email_claim.clone(),
            name: self.config.name_claim.clone(),
            groups: self.config.groups_claim.clone(),
        }
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

/// Why a sign-in was refused: the page the user sees, and the reason in the log.
#[derive(Debug)]
enum Refusal {
    UnknownProvider,
    Unreachable,
    NotPending,
    StateMismatch,
    IssuerMismatch,
    PendingExpired,
    Denied,
    ProviderError(String),
    CodeRejected,
    NoIdToken,
    Token(TokenProblem),
    Claims(String),
    Disabled,
    Internal,
}

#[derive(Debug)]
enum TokenProblem {
    Expired,
    Audience,
    Issuer,
    Nonce,
    Signature,
    Other,
}

impl Refusal {
    fn status(&self) -> StatusCode {
        match self {
            Refusal::UnknownProvider => StatusCode::NOT_FOUND,
            Refusal::Unreachable | Refusal::ProviderError(_) => StatusCode::BAD_GATEWAY,
            Refusal::Denied | Refusal::Disabled => StatusCode::FORBIDDEN,
            Refusal::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            _ => StatusCode::BAD_REQUEST,
        }
    }

    /// For the activity log: short, stable, no secrets.
    fn reason(&self) -> String {
        match self {
            Refusal::UnknownProvider => "unknown provider".into(),
            Refusal::Unreachable => "provider unreachable".into(),
            Refusal::NotPending => "callback without a pending sign-in (replayed or forged)".into(),
            Refusal::StateMismatch => "state mismatch (forged callback)".into(),
            Refusal::IssuerMismatch => "response from another issuer (mix-up)".into(),
            Refusal::PendingExpired => "sign-in took too long".into(),
            Refusal::Denied => "access denied at the provider".into(),
            Refusal::ProviderError(code) => format!("provider error {code}"),
            Refusal::CodeRejected => "authorization code rejected by the provider".into(),
            Refusal::NoIdToken => "no ID token".into(),
            Refusal::Token(p) => format!("ID token invalid: {}", p.as_str()),
            Refusal::Claims(m) => format!("claims: {m}"),
            Refusal::Disabled => "account disabled".into(),
            Refusal::Internal => "internal error".into(),
        }
    }

    fn message(&self, provider_name: &str) -> String {
        match self {
            Refusal::UnknownProvider => "This sign-in option does not exist.".into(),
            Refusal::Unreachable => format!(
                "{provider_name} cannot be reached right now, so signing in with it is not \
                 possible. Please try again in a few minutes; if it keeps happening, tell your \
                 administrator."
            ),
            Refusal::NotPending => "This sign-in response was not expected: it was already used, \
                 or the sign-in was not started in this browser. Please start again from the \
                 sign-in page."
                .into(),
            Refusal::StateMismatch => "This sign-in response does not belong to the sign-in \
                 started in this browser, so it was refused. Please start again from the sign-in \
                 page."
                .into(),
            Refusal::IssuerMismatch => "This sign-in response names another identity provider \
                 than the one the sign-in was started with, so it was refused. Please start again \
                 from the sign-in page."
                .into(),
            Refusal::PendingExpired => {
                "The sign-in took too long and has expired. Please start again.".into()
            }
            Refusal::Denied => format!(
                "Sign-in was cancelled: {provider_name} did not grant access (consent was \
                 denied or the sign-in was aborted)."
            ),
            Refusal::ProviderError(code) => format!(
                "{provider_name} refused the sign-in (error: {code}). Please try again or tell \
                 your administrator."
            ),
            Refusal::CodeRejected => format!(
                "{provider_name} did not accept this sign-in response; it may have been used \
                 already. Please start again from the sign-in page."
            ),
            Refusal::NoIdToken => {
                format!("{provider_name} did not send an ID token, so you cannot be signed in.")
            }
            Refusal::Token(p) => format!(
                "The sign-in could not be verified: {}. Please start again; if it keeps \
                 happening, tell your administrator.",
                p.message()
            ),
            Refusal::Claims(m) => {
                format!("{provider_name} did not send what Portcullis needs to sign you in: {m}.")
            }
            Refusal::Disabled => {
                "Your account is disabled. Ask an administrator to enable it.".into()
            }
            Refusal::Internal => {
                "Something went wrong on our side. It has been logged; please try again.".into()
            }
        }
    }
}

impl TokenProblem {
    fn as_str(&self) -> &'static str {
        match self {
            TokenProblem::Expired => "expired",
            TokenProblem::Audience => "wrong audience",
            TokenProblem::Issuer => "wrong issuer",
            TokenProblem::Nonce => "nonce mismatch",
            TokenProblem::Signature => "bad signature",
            TokenProblem::Other => "not valid",
        }
    }

    fn message(&self) -> &'static str {
        match self {
            TokenProblem::Expired => "the identity token has expired",
            TokenProblem::Audience => "the identity token was issued for another application",
            TokenProblem::Issuer => "the identity token comes from an unexpected issuer",
            TokenProblem::Nonce => "the identity token does not belong to this sign-in",
            TokenProblem::Signature => "the signature of the identity token is not valid",
            TokenProblem::Other => "the identity token is not valid",
        }
    }

    fn from_error(e: &ClaimsVerificationError) -> Self {
        match e {
            ClaimsVerificationError::Expired(_) => TokenProblem::Expired,
            ClaimsVerificationError::InvalidAudience(_) => TokenProblem::Audience,
            ClaimsVerificationError::InvalidIssuer(_) => TokenProblem::Issuer,
            ClaimsVerificationError::InvalidNonce(_) => TokenProblem::Nonce,
            ClaimsVerificationError::SignatureVerification(_) => TokenProblem::Signature,
            _ => TokenProblem::Other,
        }
    }
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

/// A page of its own (not the Leptos app): it must render for signed-out visitors and
/// without the app's data.
fn page(status: StatusCode, title: &str, message: &str) -> Response {
    let body = format!(
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{title} · Portcullis</title>\
         <link rel=\"stylesheet\" href=\"/pkg/portcullis.css\"></head>\
         <body><main id=\"main\" class=\"auth-page\"><div class=\"card auth-card\">\
         <p class=\"brand big\"><span class=\"brand-mark\" aria-hidden=\"true\">▦</span> Portcullis</p>\
         <h1>{title}</h1><div class=\"alert error\" role=\"alert\">{message}</div>\
         <p><a class=\"btn\" href=\"/login\">Back to sign-in</a></p>\
         </div></main></body></html>",
        title = escape(title),
        message = escape(message),
    );
    (status, Html(body)).into_response()
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// Answers a refusal: logs it, ends an anonymous session (the pending sign-in is the only
/// thing in it), and shows the page.
async fn refuse(
    state: &AppState,
    session: &Session,
    ip: ClientIp,
    provider: &str,
    provider_name: &str,
    refusal: Refusal,
) -> Response {
    state
        .metrics
        .sign_in_failed(portcullis_app::metrics::SignInMethod::Oidc);
    let signed_in = session
        .get::<String>(SESSION_USER_ID)
        .await
        .ok()
        .flatten()
        .is_some();
    let ended = if signed_in {
        // Keeps the signed-in session but stores the removal of the pending sign-in now:
        // the session layer does not save on 5xx answers, and the callback must stay
        // one-shot.
        session.save().await
    } else {
        session.flush().await
    };
    if let Err(e) = ended {
        tracing::error!(error = %e, "ending the pending sign-in of a refusal failed");
    }
    // Anyone may call the callback, and each log entry takes the write lock: an address
    // gets a few entries per window in the activity log, and the server log beyond that.
    let key = [format!(
        "oidc-refusal:{}",
        portcullis_app::auth::client_key(ip.0)
    )];
    if matches!(refusal, Refusal::Disabled) {
        // Already in the activity log, under the account's name, from the sign-in itself.
    } else if state.limiter.check(&key).is_ok() {
        state.limiter.record_failure(&key);
        if let Err(e) = log_refused(&state.store, provider, provider, ip.0, &refusal.reason()).await
        {
            tracing::error!(error = %e, "logging a refused sign-in failed");
        }
    } else {
        tracing::warn!(%provider, ip = %ip.0, reason = %refusal.reason(), "sign-in refused (not in the activity log: too many from this address)");
    }
    page(
        refusal.status(),
        "Sign-in failed",
        &refusal.message(provider_name),
    )
}

pub async fn start(
    State(state): State<AppState>,
    Extension(oidc): Extension<Arc<Oidc>>,
    Extension(ip): Extension<ClientIp>,
    Path(id): Path<String>,
    Query(start): Query<StartQuery>,
    session: Session,
) -> Response {
    let Some(provider) = oidc.provider(&id) else {
        return page(
            StatusCode::NOT_FOUND,
            "Sign-in failed",
            &Refusal::UnknownProvider.message(""),
        );
    };
    let name = provider.config.name.as_str();
    let metadata = match provider.metadata(&oidc.http, false).await {
        Ok(m) => m,
        Err(e) => {
            tracing::warn!(provider = %id, error = %e, "identity provider discovery failed");
            return refuse(&state, &session, ip, &id, name, Refusal::Unreachable).await;
        }
    };
    let client = provider.client(metadata);
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let mut request = client.authorize_url(
        CoreAuthenticationFlow::AuthorizationCode,
        CsrfToken::new_random,
        Nonce::new_random,
    );
    for scope in provider.config.scopes.iter().filter(|s| *s != "openid") {
        request = request.add_scope(Scope::new(scope.clone()));
    }
    let (url, csrf, nonce) = request.set_pkce_challenge(challenge).url();
    let pending = Pending {
        provider: id.clone(),
        state: csrf.secret().clone(),
        nonce: nonce.secret().clone(),
        pkce_verifier: verifier.secret().clone(),
        started_ms: now_ms(),
        next: start
            .next
            .as_deref()
            .and_then(return_path)
            .map(str::to_owned),
    };
    if let Err(e) = session.insert(SESSION_PENDING, pending).await {
        tracing::error!(error = %e, "storing the pending sign-in failed");
        return page(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Sign-in failed",
            &Refusal::Internal.message(name),
        );
    }
    Redirect::to(url.as_str()).into_response()
}

#[derive(Deserialize)]
pub struct CallbackQuery {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
    /// RFC 9207: providers that send it say who answered; it must be the provider the
    /// sign-in went to (defence against mix-up between several providers).
    iss: Option<String>,
}

pub async fn callback(
    State(state): State<AppState>,
    Extension(oidc): Extension<Arc<Oidc>>,
    Extension(ip): Extension<ClientIp>,
    Path(id): Path<String>,
    Query(query): Query<CallbackQuery>,
    session: Session,
) -> Response {
    let Some(provider) = oidc.provider(&id) else {
        return page(
            StatusCode::NOT_FOUND,
            "Sign-in failed",
            &Refusal::UnknownProvider.message(""),
        );
    };
    let name = provider.config.name.clone();
    match complete(&state, &oidc, provider, &session, ip, query).await {
        Ok(next) => {
            Redirect::to(next.as_deref().and_then(return_path).unwrap_or("/")).into_response()
        }
        Err(refusal) => refuse(&state, &session, ip, &id, &name, refusal).await,
    }
}

async fn complete(
    state: &AppState,
    oidc: &Oidc,
    provider: &Provider,
    session: &Session,
    ip: ClientIp,
    query: CallbackQuery,
) -> Result<Option<String>, Refusal> {
    // One-shot: the pending sign-in leaves the session before anything is checked, so the
    // same callback presented twice finds nothing the second time.
    let pending: Option<Pending> = session.remove(SESSION_PENDING).await.map_err(|e| {
        tracing::error!(error = %e, "reading the pending sign-in failed");
        Refusal::Internal
    })?;
    let pending = pending.ok_or(Refusal::NotPending)?;
    let given_state = query.state.unwrap_or_default();
    let state_ok: bool = pending
        .state
        .as_bytes()
        .ct_eq(given_state.as_bytes())
        .into();
    if pending.provider != provider.config.id || !state_ok {
        return Err(Refusal::StateMismatch);
    }
    if now_ms() - pending.started_ms > PENDING_TTL_MS {
        return Err(Refusal::PendingExpired);
    }
    if let Some(iss) = &query.iss
        && iss != &provider.config.issuer
    {
        return Err(Refusal::IssuerMismatch);
    }
    if let Some(error) = query.error {
        return Err(if error == "access_denied" {
            Refusal::Denied
        } else {
            // Only a short code from the provider is shown, never free text it sent.
            let code: String = error
                .chars()
                .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
                .take(40)
                .collect();
            Refusal::ProviderError(code)
        });
    }
    let code = query
        .code
        .filter(|c| !c.is_empty())
        .ok_or(Refusal::StateMismatch)?;

    let metadata = provider
        .metadata(&oidc.http, false)
        .await
        .map_err(|_| Refusal::Unreachable)?;
    let mut client = provider.client(metadata.clone());
    let token: CoreTokenResponse = client
        .exchange_code(AuthorizationCode::new(code))
        .map_err(|e| {
            tracing::error!(provider = %provider.config.id, error = %e, "provider has no token endpoint");
            Refusal::Unreachable
        })?
        .set_pkce_verifier(PkceCodeVerifier::new(pending.pkce_verifier))
        .request_async(&oidc.http)
        .await
        .map_err(|e| {
            tracing::warn!(provider = %provider.config.id, error = %error_chain(&e), "code exchange failed");
            match e {
                RequestTokenError::ServerResponse(_) => Refusal::CodeRejected,
                RequestTokenError::Request(_) => Refusal::Unreachable,
                _ => Refusal::ProviderError("invalid_token_response".into()),
            }
        })?;
    let id_token = token.id_token().ok_or(Refusal::NoIdToken)?;
    let nonce = Nonce::new(pending.nonce);

    let mut metadata = metadata;
    let verified = match verify(&client, id_token, &nonce) {
        // A key we do not know: the provider may have rotated its keys since we read them.
        Err(ClaimsVerificationError::SignatureVerification(
            SignatureVerificationError::NoMatchingKey,
        )) => {
            metadata = provider
                .metadata(&oidc.http, true)
                .await
                .map_err(|_| Refusal::Unreachable)?;
            client = provider.client(metadata.clone());
            verify(&client, id_token, &nonce)
        }
        other => other,
    };
    let (subject, mut claims) = verified.map_err(|e| {
        tracing::warn!(provider = %provider.config.id, error = %e, "ID token refused");
        Refusal::Token(TokenProblem::from_error(&e))
    })?;

    let names = provider.claim_names();
    let wanted = [&names.username, &names.email, &names.name, &names.groups];
    if wanted.iter().any(|n| !claims.contains_key(n.as_str())) {
        merge_userinfo(
            oidc,
            provider,
            &client,
            token.access_token(),
            subject,
            &mut claims,
        )
        .await;
    }
    let identity =
        identity_from_claims(&claims, &names).map_err(|e| Refusal::Claims(e.to_string()))?;

    let user = match sign_in_federated(&state.store, &provider.config.id, &identity, ip.0).await {
        Ok(FederatedSignIn::SignedIn { user, .. }) => user,
        Ok(FederatedSignIn::Disabled) => return Err(Refusal::Disabled),
        Err(_) => return Err(Refusal::Internal),
    };

    let end_session = end_session_url(oidc, provider, &metadata, id_token);
    let session_error = |e: tower_sessions::session::Error| {
        tracing::error!(error = %e, "starting the session failed");
        Refusal::Internal
    };
    // A fresh id: an id planted before sign-in (session fixation) is worthless afterwards.
    // Nothing of an earlier sign-in in this browser (its end-session link) carries over.
    session.clear().await;
    session.cycle_id().await.map_err(session_error)?;
    portcullis_app::auth::mark_signed_in(session, &user)
        .await
        .map_err(|_| Refusal::Internal)?;
    if let Some(url) = end_session {
        session
            .insert(SESSION_END_SESSION_URL, url)
            .await
            .map_err(session_error)?;
    }
    Ok(pending.next)
}

/// Verifies the ID token and returns its subject and all its claims. The claims are read
/// from the very token whose signature was just checked.
fn verify(
    client: &Client,
    id_token: &CoreIdToken,
    nonce: &Nonce,
) -> Result<(SubjectIdentifier, Map<String, Value>), ClaimsVerificationError> {
    let verifier = client.id_token_verifier();
    let claims = id_token.claims(&verifier, nonce)?;
    let subject = claims.subject().clone();
    let jwt = id_token.to_string();
    let payload = jwt
        .split('.')
        .nth(1)
        .and_then(|p| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(p)
                .ok()
        })
        .and_then(|bytes| serde_json::from_slice::<Map<String, Value>>(&bytes).ok())
        .ok_or_else(|| ClaimsVerificationError::Other("unreadable payload".into()))?;
    Ok((subject, payload))
}

/// Claims this deployment reads that are not in the ID token of every provider (groups,
/// often; email with some), taken from the userinfo endpoint. The ID token's own claims
/// win. A failure here only means fewer claims: the user then gets fewer roles, not more.
async fn merge_userinfo(
    oidc: &Oidc,
    provider: &Provider,
    client: &Client,
    access_token: &AccessToken,
    subject: SubjectIdentifier,
    claims: &mut Map<String, Value>,
) {
    let Ok(request) = client.user_info(access_token.clone(), Some(subject)) else {
        return;
    };
    let info: Result<UserInfoClaims<ExtraClaims, CoreGenderClaim>, _> =
        request.request_async(&oidc.http).await;
    match info.map(|i| serde_json::to_value(&i)) {
        Ok(Ok(Value::Object(extra))) => {
            for (k, v) in extra {
                claims.entry(k).or_insert(v);
            }
        }
        Ok(_) => {}
        Err(e) => {
            tracing::warn!(provider = %provider.config.id, error = %error_chain(&e), "userinfo request failed");
        }
    }
}

/// Any claims beyond the standard ones (groups, custom user names).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct ExtraClaims {
    #[serde(flatten)]
    rest: Map<String, Value>,
}
impl AdditionalClaims for ExtraClaims {}

/// Where sign-out sends the browser so that the provider's session ends too, if the
/// provider has an end-session endpoint (or one is configured).
fn end_session_url(
    oidc: &Oidc,
    provider: &Provider,
    metadata: &ProviderMetadataWithLogout,
    id_token: &CoreIdToken,
) -> Option<String> {
    let endpoint = match &provider.config.end_session_url {
        Some(url) => EndSessionUrl::new(url.clone()).ok()?,
        None => metadata
            .additional_metadata()
            .end_session_endpoint
            .clone()?,
    };
    let back = PostLogoutRedirectUrl::new(format!("{}/login", oidc.public_url)).ok()?;
    Some(
        LogoutRequest::from(endpoint)
            .set_id_token_hint(id_token)
            .set_client_id(ClientId::new(provider.config.client_id.clone()))
            .set_post_logout_redirect_uri(back)
            .http_get_url()
            .to_string(),
    )
}
