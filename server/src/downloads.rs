//! What a VM fetches to install its agent in one line: the installer script, and the agent
//! binary this server was built with plus its SHA-256, from `{site_root}/downloads/`.
//!
//! None of it is secret, so none of it needs a session: the VM has none. Only these three
//! names are served (no listing, nothing else from that directory), and a server built
//! without the agent says so in plain words instead of a bare 404.

use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use portcullis_app::domain::enroll::AGENT_DOWNLOAD;
use portcullis_app::state::AppState;
use tower::ServiceExt;

/// The installer, `deploy/install-agent.sh`, compiled in: it always matches this server.
pub const INSTALL_SCRIPT: &str = include_str!("../../deploy/install-agent.sh");

/// The agent's systemd unit, the canonical copy the installer's embedded one must equal.
pub const AGENT_UNIT: &str = include_str!("../../deploy/systemd/portcullis-agent.service");

pub async fn install_script() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/x-shellscript; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        INSTALL_SCRIPT,
    )
        .into_response()
}

/// `GET /downloads/NAME`: the agent binary or its `.sha256`, nothing else.
pub async fn download(
    State(state): State<AppState>,
    Path(name): Path<String>,
    req: Request<Body>,
) -> Response {
    let checksum = format!("{AGENT_DOWNLOAD}.sha256");
    let content_type = if name == AGENT_DOWNLOAD {
        "application/octet-stream"
    } else if name == checksum {
        "text/plain; charset=utf-8"
    } else {
        return (StatusCode::NOT_FOUND, "Not found.\n").into_response();
    };
    let path = std::path::Path::new(&*state.leptos_options.site_root)
        .join("downloads")
        .join(&name);
    if !tokio::fs::metadata(&path).await.is_ok_and(|m| m.is_file()) {
        return (
            StatusCode::NOT_FOUND,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            format!(
                "This server was built without the agent download: {name} is not in its site \
                 root's downloads/ directory. Build the release with the agent, or install \
                 portcullis-agent on the host by hand.\n"
            ),
        )
            .into_response();
    }
    // ServeFile answers HEAD, ranges and If-Modified-Since, with the length and date.
    let mut res = match tower_http::services::ServeFile::new(&path)
        .oneshot(req)
        .await
    {
        Ok(res) => res.map(Body::new),
        Err(e) => {
            tracing::error!(error = %e, path = %path.display(), "serving the agent download failed");
            return (StatusCode::INTERNAL_SERVER_ERROR, "Internal error.\n").into_response();
        }
    };
    let h = res.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    // Revalidated every time: an upgraded server offers a new agent under the same name.
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    if name == AGENT_DOWNLOAD {
        h.insert(
            header::CONTENT_DISPOSITION,
            HeaderValue::from_static("attachment; filename=\"portcullis-agent-linux-x86_64\""),
        );
    }
    res
}
