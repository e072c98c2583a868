//! The browser bundle is served from its precompressed copies as the browser accepts
//! them; by its plain name it is revalidated, by its content-hashed name (a release
//! site) it is kept for good.

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

/// A release site (scripts/hash-site.sh) names the bundle after its content and lists the
/// hashes in hash.txt: the pages link those names, and a browser keeps them for good.
#[tokio::test]
async fn a_hashed_bundle_is_linked_by_the_pages_and_cached_as_immutable() {
    let site = tempfile::tempdir().unwrap();
    let pkg = site.path().join("pkg");
    std::fs::create_dir_all(&pkg).unwrap();
    std::fs::write(
        site.path().join("hash.txt"),
        "js: JSHASHjshashJSHASHjs\nwasm: WASMhash-wasm_HASHwasm\ncss: CSShashCSShashCSShash\n",
    )
    .unwrap();
    for (name, body) in [
        ("portcullis.WASMhash-wasm_HASHwasm.wasm", "raw wasm bytes"),
        ("portcullis.WASMhash-wasm_HASHwasm.wasm.br", "brotli bytes"),
        ("portcullis.JSHASHjshashJSHASHjs.js", "glue"),
        ("portcullis.CSShashCSShashCSShash.css", "body {}"),
        ("portcullis.css", "stale"),
    ] {
        std::fs::write(pkg.join(name), body).unwrap();
    }
    let root = site.path().display().to_string();
    let app = spawn_app_with(|c| c.site_root = root).await;
    let http = reqwest::Client::new();
    let page = http
        .get(format!("{}/login", app.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for linked in [
        "/pkg/portcullis.WASMhash-wasm_HASHwasm.wasm",
        "/pkg/portcullis.JSHASHjshashJSHASHjs.js",
        "\"portcullis.JSHASHjshashJSHASHjs\"",
        "\"portcullis.WASMhash-wasm_HASHwasm\"",
        "href=\"/pkg/portcullis.CSShashCSShashCSShash.css\"",
    ] {
        assert!(page.contains(linked), "the page links {linked}: {page}");
    }
    assert!(!page.contains("/pkg/portcullis.css"), "{page}");
    for (name, encoding) in [
        ("portcullis.WASMhash-wasm_HASHwasm.wasm", Some("br")),
        ("portcullis.JSHASHjshashJSHASHjs.js", None),
        ("portcullis.CSShashCSShashCSShash.css", None),
    ] {
        let res = http
            .get(format!("{}/pkg/{name}", app.base))
            .header(ACCEPT_ENCODING, "br, gzip")
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::OK, "{name}");
        assert_eq!(
            res.headers()[CACHE_CONTROL],
            "public, max-age=31536000, immutable",
            "{name}"
        );
        assert_eq!(res.headers()["vary"], "accept-encoding");
        assert_eq!(
            res.headers()
                .get(CONTENT_ENCODING)
                .map(|v| v.to_str().unwrap().to_owned()),
            encoding.map(str::to_owned),
            "{name}"
        );
    }
    // A name hash.txt does not list is not promised to stay the same.
    let plain = http
        .get(format!("{}/pkg/portcullis.css", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(plain.headers()[CACHE_CONTROL], "no-cache");
}

/// The debug site of the browser-test loop has no hash.txt: the pages keep the plain
/// names, which are revalidated.
#[tokio::test]
async fn a_site_without_hashes_links_the_plain_names() {
    let app = spawn_app().await;
    let page = reqwest::get(format!("{}/login", app.base))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        page.contains("href=\"/pkg/portcullis.css\""),
        "the stylesheet by its plain name: {page}"
    );
    assert!(page.contains("/pkg/portcullis.wasm"), "{page}");
}
