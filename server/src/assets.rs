//! The browser bundle (`/pkg/…`: the wasm, its JavaScript glue and the stylesheet), served
//! from the brotli and gzip copies `scripts/build-site.sh` made at the highest levels, as
//! the browser accepts them: the 2 MB wasm crosses the network as about a quarter of that,
//! and nothing is compressed per request.
//!
//! A release build names the three files after their content (`portcullis.<hash>.wasm`)
//! and lists the hashes in `<site_root>/hash.txt`, in cargo-leptos' format; the pages then
//! link those names (Leptos' `hash_files`), so a browser keeps them for a year without
//! asking again (`immutable`) and a new build is a new name. A site without `hash.txt`
//! (the debug build of the browser-test loop) keeps the plain names, which browsers
//! revalidate (`no-cache`) and get `304 Not Modified` while the file is unchanged.

use axum::Router;
use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;
use portcullis_app::state::AppState;
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The name cargo-leptos gives the hash file; `scripts/build-site.sh` writes it into the
/// site root.
pub const HASH_FILE: &str = "hash.txt";

/// The site's hash file as an absolute path, if the build wrote one. Absolute because
/// Leptos joins `hash_file` to the directory of the running executable, and joining an
/// absolute path replaces that directory: the file stays with the site it describes.
pub fn hash_file(site_root: &str) -> Option<PathBuf> {
    let path = std::path::absolute(Path::new(site_root).join(HASH_FILE)).ok()?;
    path.is_file().then_some(path)
}

/// The hashed file names `hash.txt` lists (`js: <hash>` and so on, one a line), as the
/// pages link them: `<output_name>.<hash>.<ext>`.
fn hashed_names(hash_file: &Path, output_name: &str) -> HashSet<String> {
    let Ok(text) = std::fs::read_to_string(hash_file) else {
        return HashSet::new();
    };
    text.lines()
        .filter_map(|line| line.split_once(':'))
        .map(|(ext, hash)| (ext.trim(), hash.trim()))
        .filter(|(ext, hash)| matches!(*ext, "js" | "wasm" | "css") && !hash.is_empty())
        .map(|(ext, hash)| format!("{output_name}.{hash}.{ext}"))
        .collect()
}

pub fn router(site_root: &str, output_name: &str) -> Router<AppState> {
    let pkg = Path::new(site_root).join("pkg");
    let immutable: Arc<HashSet<String>> = Arc::new(
        hash_file(site_root)
            .map(|f| hashed_names(&f, output_name))
            .unwrap_or_default(),
    );
    let files = tower_http::services::ServeDir::new(pkg)
        .precompressed_br()
        .precompressed_gzip();
    Router::new()
        .nest_service("/pkg", files)
        .layer(axum::middleware::from_fn(
            move |req: Request, next: Next| {
                let immutable = immutable.clone();
                async move {
                    let name = req.uri().path().rsplit('/').next().unwrap_or_default();
                    let hashed = immutable.contains(name);
                    cache_headers(next.run(req).await, hashed)
                }
            },
        ))
}

fn cache_headers(mut res: Response, hashed: bool) -> Response {
    if res.status().is_success() || res.status() == StatusCode::NOT_MODIFIED {
        // A hashed name never changes content: no need to ask again, even on reload.
        let policy = if hashed {
            "public, max-age=31536000, immutable"
        } else {
            "no-cache"
        };
        res.headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static(policy));
        // The body depends on Accept-Encoding: a shared cache must not hand brotli to a
        // browser that did not ask for it.
        res.headers_mut()
            .insert(header::VARY, HeaderValue::from_static("accept-encoding"));
    }
    res
}
