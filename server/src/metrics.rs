//! The `/metrics` endpoint and the layer that counts every answer. The endpoint exists only
//! when configured (a token, allowed addresses, or both): what the portal does is nobody's
//! business by default. A refused scraper learns nothing but that it was refused.

use crate::config::MetricsAccess;
use axum::Extension;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Request, StatusCode, header};
use axum::response::{IntoResponse, Response};
use portcullis_app::domain::secret::{hash_secret, hashes_match};
use portcullis_app::metrics::{CONTENT_TYPE, Metrics};
use portcullis_app::state::{AppState, ClientIp};
use std::sync::Arc;

pub async fn scrape(
    State(state): State<AppState>,
    Extension(access): Extension<Arc<MetricsAccess>>,
    Extension(ClientIp(ip)): Extension<ClientIp>,
    headers: HeaderMap,
) -> Response {
    if !access.enabled() {
        return (StatusCode::NOT_FOUND, "Not found.").into_response();
    }
    if !access.allowed.is_empty() && !access.allowed.iter().any(|c| c.contains(ip)) {
        tracing::warn!(%ip, "metrics scrape refused: address not in metrics_allowed");
        return (StatusCode::FORBIDDEN, "Forbidden.").into_response();
    }
    if let Some(token) = &access.token {
        let given = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or_default();
        // Hashed first, so the comparison takes the same time whatever the length given.
        if !hashes_match(&hash_secret(given), &hash_secret(token)) {
            tracing::warn!(%ip, "metrics scrape refused: wrong or missing token");
            let mut res = (StatusCode::UNAUTHORIZED, "Unauthorized.").into_response();
            res.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            return res;
        }
    }
    let text = state
        .metrics
        .render(&state.store, &state.audit_anchor)
        .await;
    (
        [
            (header::CONTENT_TYPE, CONTENT_TYPE),
            (header::CACHE_CONTROL, "no-store"),
        ],
        text,
    )
        .into_response()
}

/// The route group of a path: a handful of fixed values, so that the request counter has
/// a bounded number of series whatever URLs clients make up.
fn route_group(path: &str) -> &'static str {
    if path.starts_with("/agent/") {
        "agent"
    } else if path.starts_with("/api/v1/") {
        "rest"
    } else if path.starts_with("/api/") {
        "server_fn"
    } else if path.starts_with("/auth/") {
        "auth"
    } else if path == "/healthz" || path == "/readyz" {
        "health"
    } else if path == "/metrics" {
        "metrics"
    } else if path.starts_with("/pkg/") || path.contains('.') {
        "static"
    } else {
        "page"
    }
}

/// Counts each answer by route group and status, including those the layers inside give
/// (413 for a large body, 503 on time-out). A tower layer with a future of its own rather
/// than `from_fn`, which boxes a future and a service per request: an agent's long poll
/// holds them for its whole wait, ten thousand times over.
#[derive(Clone)]
pub struct CountRequestsLayer(pub Arc<Metrics>);

impl<S> tower::Layer<S> for CountRequestsLayer {
    type Service = CountRequests<S>;
    fn layer(&self, inner: S) -> Self::Service {
        CountRequests {
            inner,
            metrics: self.0.clone(),
        }
    }
}

#[derive(Clone)]
pub struct CountRequests<S> {
    inner: S,
    metrics: Arc<Metrics>,
}

impl<S, ReqBody, ResBody> tower::Service<Request<ReqBody>> for CountRequests<S>
where
    S: tower::Service<Request<ReqBody>, Response = axum::http::Response<ResBody>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Counted<S::Future>;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        Counted {
            group: route_group(req.uri().path()),
            inner: self.inner.call(req),
            metrics: self.metrics.clone(),
        }
    }
}

pin_project_lite::pin_project! {
    /// The answer on its way, counted when it comes.
    pub struct Counted<F> {
        #[pin]
        inner: F,
        group: &'static str,
        metrics: Arc<Metrics>,
    }
}

impl<F, ResBody, E> std::future::Future for Counted<F>
where
    F: std::future::Future<Output = Result<axum::http::Response<ResBody>, E>>,
{
    type Output = F::Output;

    fn poll(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        let this = self.project();
        let res = std::task::ready!(this.inner.poll(cx));
        if let Ok(res) = &res {
            this.metrics
                .count_request(this.group, res.status().as_u16());
        }
        std::task::Poll::Ready(res)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn route_groups_are_few_and_fixed() {
        use super::route_group;
        assert_eq!(route_group("/agent/v1/state"), "agent");
        assert_eq!(route_group("/api/v1/vms/1234"), "rest");
        assert_eq!(route_group("/api/login"), "server_fn");
        assert_eq!(route_group("/auth/oidc/corp/callback"), "auth");
        assert_eq!(route_group("/readyz"), "health");
        assert_eq!(route_group("/metrics"), "metrics");
        assert_eq!(route_group("/pkg/portcullis.wasm"), "static");
        assert_eq!(route_group("/favicon.ico"), "static");
        assert_eq!(route_group("/vms/any-made-up-id"), "page");
    }
}
