//! `portcullis-server [--config FILE]`: serves the portal.
//! `portcullis-server verify-log [--config FILE]`: verifies the whole activity log.

use portcullis_server::config::{Config, LogFormat};
use std::path::PathBuf;
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let mut config_path: Option<PathBuf> = std::env::var_os("PORTCULLIS_CONFIG").map(PathBuf::from);
    let mut command = "serve";
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--config" | "-c" => match args.next() {
                Some(p) => config_path = Some(PathBuf::from(p)),
                None => fail("--config needs a file path"),
            },
            "--help" | "-h" => {
                println!(
                    "usage: portcullis-server [--config FILE]          serve the portal\n       \
                     portcullis-server verify-log [--config FILE]   verify the whole activity log\n\
                     See README.md for settings."
                );
                return;
            }
            "verify-log" if command == "serve" => command = "verify-log",
            other => fail(&format!("unknown argument '{other}' (try --help)")),
        }
    }
    let config = Config::load(config_path.as_deref()).unwrap_or_else(|e| fail(&e.to_string()));

    let filter = EnvFilter::try_from_env("PORTCULLIS_LOG")
        .unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn,tower_http=warn"));
    match config.log_format {
        LogFormat::Json => tracing_subscriber::fmt()
            .json()
            .with_env_filter(filter)
            .init(),
        LogFormat::Text => tracing_subscriber::fmt().with_env_filter(filter).init(),
    }

    if command == "verify-log" {
        std::process::exit(verify_log(&config).await);
    }

    let built = portcullis_server::build(&config)
        .await
        .unwrap_or_else(|e| fail(&format!("start-up failed: {e}")));
    if let Some(password) = &built.bootstrap_password {
        // Printed once, on the first start only; it must be changed at first sign-in.
        tracing::warn!(
            user = "admin",
            one_time_password = %password,
            "bootstrap administrator created: sign in with this one-time password and choose a new one"
        );
    }
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .unwrap_or_else(|e| fail(&format!("cannot listen on {}: {e}", config.listen)));
    tracing::info!(address = %config.listen, database = %redact(&config.database_url), "listening");
    portcullis_server::serve::serve(
        listener,
        built.router,
        portcullis_server::serve::HEADER_READ_TIMEOUT.min(config.request_timeout),
        config.request_timeout,
        shutdown(),
    )
    .await;
    built.state.store.close().await;
}

/// Verifies every entry of the activity log, its HMACs and signed checkpoints, and the
/// position kept outside the database, in batches on one connection at a time; prints the
/// outcome. Exit status 0 when the log is intact, 1 when it is not, 2 when it could not
/// be read.
async fn verify_log(config: &Config) -> i32 {
    use portcullis_app::store::{Store, SystemClock, Verification};
    let key = match portcullis_server::load_audit_key(&config.audit_key) {
        Ok(k) => k,
        Err(e) => fail(&e.to_string()),
    };
    let store = match Store::connect_with(
        &config.database_url,
        std::sync::Arc::new(SystemClock),
        key,
    )
    .await
    {
        Ok(s) => s,
        Err(e) => fail(&format!("database: {e}")),
    };
    let anchor = match config.audit_anchor_file.as_deref() {
        Some(path) => match portcullis_app::services::activity::read_anchor(path) {
            Ok(a) => a,
            Err(e) => fail(&format!("cannot read the anchor {}: {e}", path.display())),
        },
        None => None,
    };
    let outcome = store.verify_log_full(anchor.as_ref()).await;
    store.close().await;
    match outcome {
        Ok(Verification::Verified(cp)) => {
            println!(
                "activity log intact: entries 1 to {} verified (last hash {})",
                cp.seq, cp.hash
            );
            0
        }
        Ok(Verification::Broken(b)) => {
            println!("activity log BROKEN at entry {}: {}", b.at_seq, b.reason);
            1
        }
        Err(e) => {
            eprintln!("portcullis-server: verifying the activity log failed: {e}");
            2
        }
    }
}

/// Database URLs may carry a password; log only scheme and host part.
fn redact(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => match rest.rsplit_once('@') {
            Some((_, host)) => format!("{scheme}://***@{host}"),
            None => url.to_owned(),
        },
        None => url.to_owned(),
    }
}

async fn shutdown() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let term = async {
        if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            s.recv().await;
        }
    };
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
    tracing::info!("shutting down");
}

fn fail(message: &str) -> ! {
    eprintln!("portcullis-server: {message}");
    std::process::exit(2)
}
