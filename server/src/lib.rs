//! The Portcullis server: configuration, the axum router (pages, server functions,
//! health), sessions, and the request guards that sit in front of everything.

pub mod agent_api;
mod assets;
pub mod config;
pub mod downloads;
mod export;
mod guards;
mod metrics;
pub mod oidc;
pub mod rest;
pub mod serve;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;

use config::Config;
use leptos::config::LeptosOptions;
use leptos::prelude::provide_context;
use leptos_axum::{LeptosRoutes, generate_route_list};
use portcullis_app::app::{App, shell};
use portcullis_app::auth::LoginLimiter;
use portcullis_app::services::users::bootstrap_admin;
use portcullis_app::state::AppState;
use portcullis_app::store::{SessionStoreAdapter, Store, StoreError};
use std::sync::Arc;
use std::time::Duration;
use tower_sessions::cookie::{Key, SameSite};
use tower_sessions::{Expiry, SessionManagerLayer};

/// The browser bundle's name (`pkg/portcullis.wasm`, …), as `LEPTOS_OUTPUT_NAME` and
/// scripts/build-site.sh have it.
const OUTPUT_NAME: &str = "portcullis";
pub const SESSION_COOKIE: &str = "portcullis_session";
/// Bodies larger than this are refused with 413 before anything reads them (the REST API
/// allows 64 KiB of JSON; the largest form, a policy of many ports, is far below this).
pub const MAX_REQUEST_BYTES: usize = 256 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("database: {0}")]
    Store(#[from] StoreError),
    #[error("creating the bootstrap administrator failed")]
    Bootstrap,
    #[error("{0}")]
    Oidc(#[from] oidc::OidcSetupError),
    #[error("activity log key: {0}")]
    AuditKey(String),
}

/// The activity log's key: as configured, or from its file, which is created with a
/// random key (mode 0600) the first time.
pub fn load_audit_key(
    source: &config::AuditKeySource,
) -> Result<portcullis_app::domain::audit::AuditKey, StartError> {
    use base64::Engine;
    use portcullis_app::domain::audit::AuditKey;
    let b64 = base64::engine::general_purpose::STANDARD;
    let bytes = match source {
        config::AuditKeySource::Given(bytes) => bytes.clone(),
        config::AuditKeySource::File(path) => match std::fs::read_to_string(path) {
            Ok(text) => b64.decode(text.trim()).map_err(|_| {
                StartError::AuditKey(format!("{} does not hold base64", path.display()))
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                use rand::RngCore;
                let mut bytes = vec![0u8; 32];
                rand::rngs::OsRng.fill_bytes(&mut bytes);
                write_private(path, b64.encode(&bytes).as_bytes()).map_err(|e| {
                    StartError::AuditKey(format!("cannot create {}: {e}", path.display()))
                })?;
                tracing::info!(path = %path.display(), "activity log key created; keep it (and back it up) outside the database");
                bytes
            }
            Err(e) => {
                return Err(StartError::AuditKey(format!(
                    "cannot read {}: {e}",
                    path.display()
                )));
            }
        },
    };
    AuditKey::new(bytes).map_err(StartError::AuditKey)
}

fn write_private(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut f = options.open(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

pub struct Built {
    pub router: Router,
    pub state: AppState,
    /// Set on the very first start: the one-time password of the `admin` account.
    pub bootstrap_password: Option<String>,
}

pub async fn build(config: &Config) -> Result<Built, StartError> {
    let audit_key = load_audit_key(&config.audit_key)?;
    let store = Store::connect_with(
        &config.database_url,
        Arc::new(portcullis_app::store::SystemClock),
        audit_key,
    )
    .await?;
    let bootstrap_password = bootstrap_admin(&store)
        .await
        .map_err(|_| StartError::Bootstrap)?;

    let mut leptos_options = LeptosOptions::builder()
        .output_name(OUTPUT_NAME)
        .site_root(config.site_root.as_str())
        .site_pkg_dir("pkg")
        .site_addr(config.listen)
        .build();
    // A release site (scripts/build-site.sh) names its bundle after the content and lists
    // the hashes in hash.txt; a site without one (a debug build copied by hand) keeps the
    // plain names. Leptos panics on a missing hash file, so hashing is on only with one.
    if let Some(hash_file) = assets::hash_file(&config.site_root) {
        leptos_options.hash_files = true;
        leptos_options.hash_file = hash_file.display().to_string().into();
    }

    let oidc = Arc::new(oidc::Oidc::new(&config.oidc, config.public_url.as_deref())?);
    if config.audit_anchor_file.is_none() {
        tracing::warn!(
            "no audit_anchor_file: the activity log's newest position is kept in memory and the \
             server log only, so removing the newest entries across a restart is found only by \
             comparing with the log; set audit_anchor_file (PORTCULLIS_AUDIT_ANCHOR_FILE)"
        );
    }
    let state = AppState {
        store: store.clone(),
        leptos_options: leptos_options.clone(),
        limiter: Arc::new(LoginLimiter::new(5, Duration::from_secs(15 * 60))),
        trusted_proxies: Arc::new(config.trusted_proxies.clone()),
        expiry_wake: Arc::new(tokio::sync::Notify::new()),
        public_url: config.public_url.clone(),
        sign_in: Arc::new(oidc.sign_in_options(config.local_accounts)),
        audit_anchor: Arc::new(portcullis_app::services::activity::Anchor::open(
            config.audit_anchor_file.clone(),
        )),
        long_polls: Arc::new(tokio::sync::Semaphore::new(config.max_long_polls)),
        metrics: Arc::new(portcullis_app::metrics::Metrics::new()),
    };
    if config.metrics.enabled() {
        tracing::info!(
            token = config.metrics.token.is_some(),
            allowed = ?config.metrics.allowed,
            "metrics served at /metrics"
        );
    }

    let key = match &config.session_key {
        Some(bytes) => Key::from(bytes),
        None => {
            tracing::warn!(
                "no session_key configured: generated one for this run; sign-ins end at restart"
            );
            Key::generate()
        }
    };
    let secure = config
        .public_url
        .as_deref()
        .is_some_and(|u| u.starts_with("https://"));
    let sessions = SessionManagerLayer::new(SessionStoreAdapter(store.clone()))
        .with_name(SESSION_COOKIE)
        .with_http_only(true)
        .with_same_site(SameSite::Lax)
        .with_secure(secure)
        .with_path("/")
        .with_expiry(Expiry::OnInactivity(time::Duration::hours(8)))
        .with_signed(key);

    let routes = generate_route_list(App);
    let context = {
        let state = state.clone();
        move || provide_context(state.clone())
    };
    let router = Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics::scrape))
        .route("/activity.csv", get(export::activity_csv))
        .route("/install-agent.sh", get(downloads::install_script))
        .route("/downloads/{*name}", get(downloads::download))
        .route("/agent/v1/enroll", axum::routing::post(agent_api::enroll))
        .route("/agent/v1/report", axum::routing::post(agent_api::report))
        .merge(assets::router(&config.site_root, OUTPUT_NAME))
        .merge(rest::router())
        .route("/api/v1/{*rest}", axum::routing::any(rest::not_found))
        .route("/auth/oidc/{provider}/start", get(oidc::start))
        .route("/auth/oidc/{provider}/callback", get(oidc::callback))
        .leptos_routes_with_context(&state, routes, context.clone(), {
            let options = leptos_options.clone();
            move || shell(options.clone())
        })
        .fallback(leptos_axum::file_and_error_handler_with_context::<
            AppState,
            _,
        >(context, shell))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            guards::page_gate,
        ))
        .layer(axum::Extension(oidc.clone()))
        .layer(axum::Extension(Arc::new(config.metrics.clone())))
        .layer(axum::middleware::from_fn(
            guards::malformed_arguments_are_client_errors,
        ))
        .layer(sessions)
        .layer(axum::middleware::from_fn_with_state(
            Arc::new(config.public_url.clone()),
            guards::origin_check,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            guards::client_ip,
        ))
        // Every answer comes within this time (a streamed export's body may take longer);
        // agents' long polls are merged in after it, with a cap of their own.
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(
            StatusCode::SERVICE_UNAVAILABLE,
            config.request_timeout,
        ))
        .merge(Router::new().route("/agent/v1/state", get(agent_api::desired_state)))
        .with_state(state.clone());
    // The layers every answer passes, around the whole router once: `Router::layer` would
    // box a future and clone a service per layer and request, which an agent's long poll
    // holds for its whole wait (about 3 KiB a waiting agent, measured).
    let router = Router::new().fallback_service(
        tower::ServiceBuilder::new()
            // Outermost: every answer is counted, whichever layer gave it.
            .layer(metrics::CountRequestsLayer(state.metrics.clone()))
            .layer(tower_http::trace::TraceLayer::new_for_http())
            .layer(tower_http::limit::RequestBodyLimitLayer::new(
                MAX_REQUEST_BYTES,
            ))
            .service(guards::security_headers(router, secure)),
    );

    portcullis_app::services::activity::vouch_for_unsigned_entries(&store, &state.audit_anchor)
        .await?;
    oidc.warm_up();
    spawn_cleanup(store.clone());
    spawn_contact_writer(store.clone());
    spawn_memory_trim();
    tokio::spawn(portcullis_app::services::activity::run_verifier(
        store.clone(),
        state.audit_anchor.clone(),
        Duration::from_secs(5),
    ));
    let portal = config
        .public_url
        .clone()
        .unwrap_or_else(|| format!("http://{}", config.listen));
    tokio::spawn(portcullis_app::services::delivery::run_delivery(
        store.clone(),
        portcullis_app::services::delivery::Sender::new(&portal),
    ));
    tokio::spawn(portcullis_app::services::requests::run_expiry(
        store,
        state.expiry_wake.clone(),
    ));
    Ok(Built {
        router,
        state,
        bootstrap_password,
    })
}

async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    match state.store.ping().await {
        Ok(()) => (StatusCode::OK, "ready"),
        Err(e) => {
            tracing::error!(error = %e, "readiness check failed");
            (StatusCode::SERVICE_UNAVAILABLE, "database unavailable")
        }
    }
}

fn spawn_cleanup(store: Store) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(600));
        loop {
            tick.tick().await;
            if store.is_closed() {
                return;
            }
            match store.delete_expired_sessions().await {
                Ok(n) if n > 0 => tracing::info!(removed = n, "expired sessions removed"),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "session cleanup failed"),
            }
            if let Err(e) = store.optimize().await {
                tracing::warn!(error = %e, "updating the query planner's statistics failed");
            }
            store.prune_watches(600);
        }
    });
}

/// Writes when agents were last heard from, every few seconds, in batches: the portal
/// calls an agent silent after 90 seconds, so seconds of delay do not matter, and a poll
/// then costs no write.
fn spawn_contact_writer(store: Store) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(CONTACT_FLUSH);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if store.is_closed() {
                return;
            }
            if let Err(e) = store.flush_agent_contacts().await {
                tracing::warn!(error = %e, "recording agent contacts failed");
            }
        }
    });
}

const CONTACT_FLUSH: Duration = Duration::from_secs(5);

/// Gives the pages that glibc's allocator holds free back to the system, now and then.
/// Rust's allocations go to jemalloc, which does so by itself; SQLite's go to glibc's
/// malloc, which keeps an arena per connection thread and little of it returns on its
/// own. With ten thousand idle agents that was 26 MB resident for 3 MB SQLite had in use
/// (measured); a trim takes well under a millisecond.
fn spawn_memory_trim() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    tokio::spawn(async {
        let mut tick = tokio::time::interval(Duration::from_secs(30));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            // On a blocking thread: it takes each arena's lock in turn, and an async
            // worker must not wait for one.
            // SAFETY: malloc_trim takes the allocator's own locks and touches only its
            // free lists; it is safe to call from any thread at any time.
            let _ = tokio::task::spawn_blocking(|| unsafe { libc::malloc_trim(0) }).await;
        }
    });
}
