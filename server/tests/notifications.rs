//! Notifications through the REST API over a real socket, with a real receiver on
//! 127.0.0.1: channels for administrators only, secrets never answered, "send test" that
//! reports the delivery, and a waiting request reaching a routed webhook from the server's
//! own delivery job, signed and with a link to the request's page.

mod common;

use axum::extract::State;
use axum::http::HeaderMap;
use common::rest::{Api, api_token, initiate, policy, scoped_user};
use common::*;
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};
use std::time::Duration;

type Posts = Arc<Mutex<Vec<(HeaderMap, Vec<u8>)>>>;

/// An HTTP receiver that records every POST and answers 204.
async fn receiver() -> (String, Posts) {
    async fn post(
        State(posts): State<Posts>,
        headers: HeaderMap,
        body: axum::body::Bytes,
    ) -> StatusCode {
        posts.lock().unwrap().push((headers, body.to_vec()));
        StatusCode::NO_CONTENT
    }
    let posts: Posts = Default::default();
    let app = axum::Router::new()
        .route("/hook", axum::routing::post(post))
        .with_state(posts.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, posts)
}

#[tokio::test]
async fn administrators_manage_channels_and_routes_and_secrets_stay_secret() {
    let app = spawn_app().await;
    let admin = browser();
    app.admin_ready(&admin).await;
    let api = Api::new(&app, &api_token(&app, &admin, "script").await);
    let approver = scoped_user(&app, &admin, "bob", "approver", "all", "").await;
    let bob = Api::new(&app, &api_token(&app, &approver, "script").await);
    let (url, posts) = receiver().await;

    let body = json!({"name": "ops", "kind": "webhook", "target": url});
    let (s, b) = bob.post("/api/v1/notificationChannels", &body).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{b}");
    let (s, created) = api.post("/api/v1/notificationChannels", &body).await;
    assert_eq!(s, StatusCode::CREATED, "{created}");
    let key = created["signingKey"].as_str().unwrap().to_owned();
    assert_eq!(key.len(), 64);
    let id = created["id"].as_str().unwrap().to_owned();
    assert_eq!(
        created["target"],
        url.trim_end_matches("/hook").to_owned() + "/…"
    );
    let (s, list) = api.get("/api/v1/notificationChannels").await;
    assert_eq!(s, StatusCode::OK);
    assert!(!list.to_string().contains(&key), "{list}");
    assert_eq!(list["value"][0]["hasSecret"], true);
    let (s, b) = bob.get("/api/v1/notificationChannels").await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{b}");

    let (s, b) = api
        .post(
            "/api/v1/notificationChannels",
            &json!({"name": "bad", "kind": "email", "target": "mail.example.com", "emailFrom": "nope"}),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
    assert!(b["error"]["fields"]["target"].is_string(), "{b}");
    assert!(b["error"]["fields"]["emailFrom"].is_string(), "{b}");

    // "Send test" answers with the delivery's outcome; the receiver can verify it.
    let (s, m) = api
        .post(
            &format!("/api/v1/notificationChannels/{id}/test"),
            &json!({}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{m}");
    assert_eq!(m["status"], "delivered", "{m}");
    let (headers, raw) = posts.lock().unwrap()[0].clone();
    assert_eq!(headers["portcullis-event"], "test");
    let sig = headers["portcullis-signature"].to_str().unwrap();
    let t: i64 = sig[2..sig.find(',').unwrap()].parse().unwrap();
    assert_eq!(
        sig,
        portcullis_app::domain::notify::signature(&key, t, &raw)
    );
    let json: Value = serde_json::from_slice(&raw).unwrap();
    assert_eq!(json["event"], "test");
    let (_, msgs) = api
        .get(&format!("/api/v1/notificationChannels/{id}/messages"))
        .await;
    assert_eq!(msgs["value"][0]["status"], "delivered");

    // Routes.
    let (s, b) = api
        .post(
            "/api/v1/notificationRoutes",
            &json!({"channelId": id, "event": "everything"}),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
    let (s, route) = api
        .post(
            "/api/v1/notificationRoutes",
            &json!({"channelId": id, "event": "approval.waiting", "group": "prod"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{route}");
    assert_eq!(route["channel"], "ops");

    // The route works end to end: the server's delivery job sends the waiting request.
    let (s, b) = api
        .post(
            "/api/v1/vms",
            &json!({"name": "web-1", "group": "prod", "addresses": ["198.51.100.5"], "os": "linux"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let (s, b) = api
        .put("/api/v1/jitPolicies/web-1", &policy(22, "PT1H", true))
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let (s, req) = bob
        .post("/api/v1/jitPolicies/web-1/initiate", &initiate(22, "PT30M"))
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{req}");
    let request_id = req["id"].as_str().unwrap().to_owned();
    let mut waited = None;
    for _ in 0..100 {
        waited = posts
            .lock()
            .unwrap()
            .iter()
            .map(|(_, b)| serde_json::from_slice::<Value>(b).unwrap())
            .find(|b| b["event"] == "approval.waiting");
        if waited.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let waited = waited.expect("the delivery job sent the waiting request within 10 s");
    assert_eq!(waited["request_id"], request_id.as_str());
    let link = waited["url"].as_str().unwrap();
    assert!(
        link.starts_with("http://127.0.0.1:") && link.ends_with(&format!("/requests/{request_id}")),
        "{link}"
    );

    let route_id = route["id"].as_str().unwrap();
    let (s, _) = api
        .delete(&format!("/api/v1/notificationRoutes/{route_id}"))
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, _) = api
        .delete(&format!("/api/v1/notificationChannels/{id}"))
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, _) = api.get(&format!("/api/v1/notificationChannels/{id}")).await;
    assert_eq!(s, StatusCode::NOT_FOUND);

    // Everyone sets their own e-mail settings.
    let (s, me) = bob.get("/api/v1/me/notifications").await;
    assert_eq!(s, StatusCode::OK, "{me}");
    assert_eq!(me, json!({"email": "", "notify": true, "warnMinutes": 10}));
    let (s, b) = bob
        .put(
            "/api/v1/me/notifications",
            &json!({"email": "bob@", "notify": true, "warnMinutes": 5000}),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
    assert!(
        b["error"]["fields"]["email"].is_string()
            && b["error"]["fields"]["warnMinutes"].is_string(),
        "{b}"
    );
    let (s, me) = bob
        .put(
            "/api/v1/me/notifications",
            &json!({"email": "bob@example.com", "notify": true, "warnMinutes": 15}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{me}");
    assert_eq!(me["email"], "bob@example.com");
}

/// Replacing a channel's URL without its signing key is refused with a field error, as
/// any bad field is: the stored key is sent only where it was sent before.
#[tokio::test]
async fn a_new_url_needs_the_signing_key_again() {
    let app = spawn_app().await;
    let admin = browser();
    app.admin_ready(&admin).await;
    let api = Api::new(&app, &api_token(&app, &admin, "script").await);
    let (url, posts) = receiver().await;
    let (s, created) = api
        .post(
            "/api/v1/notificationChannels",
            &json!({"name": "ops", "kind": "webhook", "target": url}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{created}");
    let id = created["id"].as_str().unwrap().to_owned();
    let key = created["signingKey"].as_str().unwrap().to_owned();
    let (evil, evil_posts) = receiver().await;

    let path = format!("/api/v1/notificationChannels/{id}");
    let (s, b) = api
        .put(
            &path,
            &json!({"name": "ops", "kind": "webhook", "target": evil}),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
    assert!(
        b["error"]["fields"]["secret"]
            .as_str()
            .is_some_and(|m| m.contains("signing key again")),
        "{b}"
    );
    let (s, shown) = api.get(&path).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(shown["target"], created["target"], "nothing changed");
    let (s, m) = api.post(&format!("{path}/test"), &json!({})).await;
    assert_eq!(
        (s, m["status"].as_str()),
        (StatusCode::OK, Some("delivered")),
        "{m}"
    );
    assert!(evil_posts.lock().unwrap().is_empty());
    let (headers, raw) = posts.lock().unwrap()[0].clone();
    let sig = headers["portcullis-signature"].to_str().unwrap();
    let t: i64 = sig[2..sig.find(',').unwrap()].parse().unwrap();
    assert_eq!(
        sig,
        portcullis_app::domain::notify::signature(&key, t, &raw)
    );

    // The same URL without the key keeps it; a new URL with a key is taken.
    let (s, b) = api
        .put(
            &path,
            &json!({"name": "ops-renamed", "kind": "webhook", "target": url}),
        )
        .await;
    assert_eq!(
        (s, b["name"].as_str()),
        (StatusCode::OK, Some("ops-renamed")),
        "{b}"
    );
    assert_eq!(b["hasSecret"], true);
    let (s, b) = api
        .put(
            &path,
            &json!({"name": "ops", "kind": "webhook", "target": evil, "secret": "a key made for the new receiver"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
}
