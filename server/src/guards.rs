//! Request guards: client address resolution, the cross-site (Origin) check on
//! state-changing requests, and the redirect of signed-out visitors to the sign-in page.

use axum::body::Body;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, Method, Request, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use portcullis_app::api::encode_query_value;
use portcullis_app::domain::client_ip as resolve_client_ip;
use portcullis_app::state::{AppState, ClientIp};
use std::net::SocketAddr;
use std::sync::Arc;
use tower_sessions::Session;

pub async fn client_ip(
    State(state): State<AppState>,
    mut req: Request<Body>,
    next: Next,
) -> Response {
    let Some(peer) = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip())
    else {
        tracing::error!("no peer address: serve with into_make_service_with_connect_info");
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    };
    let forwarded: Vec<&str> = req
        .headers()
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    let ip = resolve_client_ip(peer, &forwarded, &state.trusted_proxies);
    req.extensions_mut().insert(ClientIp(ip));
    next.run(req).await
}

fn origin_of(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    let host = rest.split('/').next()?;
    (!host.is_empty()).then(|| {
        format!(
            "{}://{}",
            scheme.to_ascii_lowercase(),
            host.to_ascii_lowercase()
        )
    })
}

fn request_origin(headers: &HeaderMap) -> Option<String> {
    let value = headers
        .get(header::ORIGIN)
        .or_else(|| headers.get(header::REFERER))?
        .to_str()
        .ok()?;
    // "null" (sandboxed frames, some redirects) can never be our own origin.
    if value == "null" {
        return Some(value.to_owned());
    }
    origin_of(value).or_else(|| Some(value.to_owned()))
}

/// Refuses state-changing requests whose Origin (or, failing that, Referer) is not this
/// site. Requests with neither header come from non-browser clients, which cannot be made
/// to carry a victim's cookies by another site, and pass; so do REST API calls, which
/// carry no cookie credentials at all.
pub async fn origin_check(
    State(public_url): State<Arc<Option<String>>>,
    req: Request<Body>,
    next: Next,
) -> Response {
    let changes_state = !matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    // The REST API authenticates by bearer token only, never by cookie: another site
    // cannot make a browser send it, so there is nothing to forge.
    let token_api = req.uri().path().starts_with("/api/v1/");
    if changes_state
        && !token_api
        && let Some(origin) = request_origin(req.headers())
    {
        let expected: Option<String> = match public_url.as_ref() {
            Some(url) => origin_of(url),
            None => req
                .headers()
                .get(header::HOST)
                .and_then(|h| h.to_str().ok())
                .map(|host| {
                    let scheme = origin.split("://").next().unwrap_or("http");
                    format!("{scheme}://{}", host.to_ascii_lowercase())
                }),
        };
        if expected.as_deref() != Some(origin.as_str()) {
            tracing::warn!(%origin, path = %req.uri().path(), "cross-origin request refused");
            return (StatusCode::FORBIDDEN, "Cross-origin request refused.").into_response();
        }
    }
    next.run(req).await
}

/// Page requests from signed-out visitors go to the sign-in page; a user who must change a
/// one-time password goes to the password page first. Server functions check for
/// themselves and are not redirected.
pub async fn page_gate(
    State(state): State<AppState>,
    mut req: Request<Body>,
    next: Next,
) -> Response {
    // Whatever this request learns of its user is kept for the rest of it: a page's
    // server functions then read the user and roles once between them.
    let known = portcullis_app::auth::RequestUser::default();
    req.extensions_mut().insert(known.clone());
    let path = req.uri().path().to_owned();
    let is_page = matches!(*req.method(), Method::GET | Method::HEAD)
        && !path.starts_with("/api/")
        && !path.starts_with("/pkg/")
        && !path.starts_with("/agent/")
        && !path.starts_with("/auth/")
        // The agent's download and installer: fetched by a VM, which has no session.
        && !path.starts_with("/downloads/")
        && path != "/healthz"
        && path != "/readyz"
        && path != "/metrics"
        && !path.contains('.');
    if !is_page {
        return next.run(req).await;
    }
    let Some(session) = req.extensions().get::<Session>().cloned() else {
        return next.run(req).await;
    };
    let user = match known.session_user(&state.store, &session).await {
        Ok(user) => user,
        Err(_) => {
            return (StatusCode::SERVICE_UNAVAILABLE, "Temporarily unavailable.").into_response();
        }
    };
    match (user, path.as_str()) {
        (None, "/login") => next.run(req).await,
        (None, "/") => Redirect::to("/login").into_response(),
        // A link from a message (`/requests/…`) leads back to its page after sign-in; the
        // login server function accepts only a path on this site.
        (None, _) => {
            let wanted = req
                .uri()
                .path_and_query()
                .map_or(path.as_str(), |p| p.as_str());
            Redirect::to(&format!("/login?next={}", encode_query_value(wanted))).into_response()
        }
        (Some(_), "/login") => Redirect::to("/").into_response(),
        (Some(u), p) if u.must_change_password && p != "/account/password" => {
            Redirect::to("/account/password").into_response()
        }
        (Some(_), _) => next.run(req).await,
    }
}

type Header<S> = tower_http::set_header::SetResponseHeader<S, axum::http::HeaderValue>;
/// [`security_headers`] around a service.
pub type SecurityHeaders<S> = Header<Header<Header<Header<tower::util::Either<Header<S>, S>>>>>;

/// Headers every answer carries, where the answer did not set its own. Pages set their own
/// Content-Security-Policy (with the nonce of their inline scripts, see the app's shell);
/// everything else gets one that allows no script at all, only this origin's stylesheet
/// (the sign-in refusal page is plain HTML). `hsts` when the public URL is https: browsers
/// are told to use nothing else. Plain tower-http layers, composed without a box, since an
/// agent's long poll holds what they allocate for its whole wait.
pub fn security_headers<S>(inner: S, hsts: bool) -> SecurityHeaders<S> {
    use axum::http::HeaderValue;
    use tower_http::set_header::SetResponseHeaderLayer;
    let set = |name: header::HeaderName, value: &'static str| {
        SetResponseHeaderLayer::if_not_present(name, HeaderValue::from_static(value))
    };
    tower::ServiceBuilder::new()
        .layer(set(header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .layer(set(header::X_FRAME_OPTIONS, "DENY"))
        // `same-origin`, not `no-referrer`: with no-referrer a browser sends `Origin: null`
        // on same-origin form posts, which the origin check must refuse.
        .layer(set(header::REFERRER_POLICY, "same-origin"))
        .layer(set(
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; style-src 'self'; img-src 'self' data:; connect-src 'self'; \
             frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
        ))
        .option_layer(hsts.then(|| set(header::STRICT_TRANSPORT_SECURITY, "max-age=31536000")))
        .service(inner)
}

/// A server function whose arguments cannot even be decoded answers 500 from the
/// framework; that is the caller's mistake, so it becomes 400 with the same message.
pub async fn malformed_arguments_are_client_errors(req: Request<Body>, next: Next) -> Response {
    let is_server_fn = req.uri().path().starts_with("/api/");
    let res = next.run(req).await;
    if !is_server_fn || res.status() != StatusCode::INTERNAL_SERVER_ERROR {
        return res;
    }
    let (mut parts, body) = res.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, 64 * 1024).await else {
        return (StatusCode::INTERNAL_SERVER_ERROR, "").into_response();
    };
    if bytes.starts_with(b"{\"Transport\"") {
        // A body cut off by the size limit (sent without a length, so not refused up
        // front) is too large, not malformed.
        if String::from_utf8_lossy(&bytes).contains("length limit exceeded") {
            return (
                StatusCode::PAYLOAD_TOO_LARGE,
                "The request body is too large.",
            )
                .into_response();
        }
        parts.status = StatusCode::BAD_REQUEST;
    }
    Response::from_parts(parts, Body::from(bytes))
}
