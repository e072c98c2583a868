//! The browser bundle (`/pkg/…`: the wasm, its JavaScript glue and the stylesheet), served
//! from the brotli and gzip copies `scripts/build-site.sh` made at the highest levels, as
//! the browser accepts them: the 2 MB wasm crosses the network as about a quarter of that,
//! and nothing is compressed per request. The names carry no content hash, so browsers
//! revalidate (`no-cache`) and get `304 Not Modified` while the file is unchanged.

use axum::Router;
use axum::http::{HeaderValue, header};
use axum::response::Response;
use portcullis_app::state::AppState;

pub fn router(site_root: &str) -> Router<AppState> {
    let pkg = std::path::Path::new(site_root).join("pkg");
    let files = tower_http::services::ServeDir::new(pkg)
        .precompressed_br()
        .precompressed_gzip();
    Router::new()
        .nest_service("/pkg", files)
        .layer(axum::middleware::map_response(revalidate))
}

async fn revalidate(mut res: Response) -> Response {
    if res.status().is_success() || res.status() == axum::http::StatusCode::NOT_MODIFIED {
        res.headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        // The body depends on Accept-Encoding: a shared cache must not hand brotli to a
        // browser that did not ask for it.
        res.headers_mut()
            .insert(header::VARY, HeaderValue::from_static("accept-encoding"));
    }
    res
}
