//! The browser bundle is served from its precompressed copies as the browser accepts
//! them, and revalidated rather than downloaded again.

mod common;

use common::*;
use reqwest::StatusCode;
use reqwest::header::{
    ACCEPT_ENCODING, CACHE_CONTROL, CONTENT_ENCODING, IF_MODIFIED_SINCE, LAST_MODIFIED,
};

#[tokio::test]
async fn the_bundle_is_served_precompressed_and_revalidated() {
    let app = spawn_app().await;
    let pkg = app.site_root.join("pkg");
    std::fs::create_dir_all(&pkg).unwrap();
    std::fs::write(pkg.join("portcullis.wasm"), b"raw wasm bytes").unwrap();
    std::fs::write(pkg.join("portcullis.wasm.br"), b"brotli bytes").unwrap();
    std::fs::write(pkg.join("portcullis.wasm.gz"), b"gzip bytes").unwrap();
    let http = reqwest::Client::new();
    let url = format!("{}/pkg/portcullis.wasm", app.base);
    for (accept, encoding, body) in [
        ("br, gzip", Some("br"), "brotli bytes"),
        ("gzip", Some("gzip"), "gzip bytes"),
        ("identity", None, "raw wasm bytes"),
    ] {
        let res = http
            .get(&url)
            .header(ACCEPT_ENCODING, accept)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::OK, "{accept}");
        assert_eq!(
            res.headers()
                .get(CONTENT_ENCODING)
                .map(|v| v.to_str().unwrap().to_owned()),
            encoding.map(str::to_owned),
            "{accept}"
        );
        assert_eq!(res.headers()[CACHE_CONTROL], "no-cache");
        assert_eq!(res.headers()["vary"], "accept-encoding");
        assert_eq!(res.headers()["content-type"], "application/wasm");
        assert_eq!(res.text().await.unwrap(), body);
    }
    let res = http.get(&url).send().await.unwrap();
    let modified = res.headers()[LAST_MODIFIED].clone();
    let again = http
        .get(&url)
        .header(ACCEPT_ENCODING, "br")
        .header(IF_MODIFIED_SINCE, modified)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), StatusCode::NOT_MODIFIED);
    assert!(again.bytes().await.unwrap().is_empty());
    let missing = http
        .get(format!("{}/pkg/nothing.js", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
}
