//! What every request handler and server function can reach: the store, rendering options
//! and the in-process guards. Cheap to clone.

use crate::auth::LoginLimiter;
use crate::domain::Cidr;
use crate::store::Store;
use axum::extract::FromRef;
use leptos::config::LeptosOptions;
use std::net::IpAddr;
use std::sync::Arc;

#[derive(Clone)]
pub struct AppState {
    pub store: Store,
    pub leptos_options: LeptosOptions,
    pub limiter: Arc<LoginLimiter>,
    pub trusted_proxies: Arc<Vec<Cidr>>,
    /// Wakes the expiry job when a new grant may end sooner than the ones it knows.
    pub expiry_wake: Arc<tokio::sync::Notify>,
    /// The configured public origin, for links and commands shown to users.
    pub public_url: Option<String>,
    /// The password form (on or off) and the configured identity providers.
    pub sign_in: Arc<crate::model::SignInOptions>,
    /// The activity log's newest verified position, kept outside the database.
    pub audit_anchor: Arc<crate::services::activity::Anchor>,
    /// Agents' long polls waiting in this replica, at most as many as it has permits;
    /// beyond that an agent is told to come back later.
    pub long_polls: Arc<tokio::sync::Semaphore>,
    /// What `/metrics` shows; bumped where things happen.
    pub metrics: Arc<crate::metrics::Metrics>,
}

impl FromRef<AppState> for LeptosOptions {
    fn from_ref(state: &AppState) -> Self {
        state.leptos_options.clone()
    }
}

/// The client address of a request, resolved through the trusted proxies by the server's
/// middleware and stored in the request extensions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClientIp(pub IpAddr);
