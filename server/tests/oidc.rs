//! Single sign-on over HTTP. A fake issuer inside the test signs ID tokens exactly as each
//! case needs (bad nonce, expired, wrong audience or issuer, forged signature), so our
//! validation is tested precisely; the real `oidc-provider` drives one full sign-in.
//! Every refusal must answer a clear page and leave no session behind.

mod common;
#[path = "common/oidc.rs"]
mod sso;

use common::browser;
use portcullis_app::store::LogQuery;
use reqwest::StatusCode;
use reqwest::header::{LOCATION, SET_COOKIE};
use serde_json::{Value, json};
use sso::*;

/// One test at a time in this binary. Run in parallel, each in its own tokio runtime in
/// this one process, two portals occasionally left a server-rendered page unanswered for
/// good (3 hangs in about 155 runs of this file; none in 70 serial runs, nor in 150 runs
/// of the affected test alone). The product serves every request from one runtime, so
/// this is a property of the harness; the file takes a few seconds either way.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

async fn fake_app() -> (FakeIssuer, SsoApp) {
    let issuer = spawn_fake_issuer().await;
    let app = spawn_sso_app(&provider_toml("corp", "Corp SSO", &issuer.url)).await;
    (issuer, app)
}

fn alice() -> TokenSpec {
    TokenSpec::valid(
        "00u1alice",
        json!({
            "preferred_username": "alice", "email": "alice@example.org",
            "name": "Alice Approver", "groups": ["ops", "staff"]
        }),
    )
}

/// Runs one sign-in through the fake issuer with the token `spec`; returns the callback
/// answer.
async fn sign_in_with(
    app: &SsoApp,
    issuer: &FakeIssuer,
    client: &reqwest::Client,
    spec: TokenSpec,
) -> reqwest::Response {
    let auth = app.start(client, "corp").await;
    let code = issuer.issue_code(&auth, spec);
    app.callback(client, "corp", &[("code", &code), ("state", &auth.state)])
        .await
}

async fn log_entries(app: &SsoApp) -> Vec<(String, String, String)> {
    let (rows, _) = app
        .store
        .query_log(&LogQuery {
            action: Some("sign-in".into()),
            limit: 100,
            ..Default::default()
        })
        .await
        .unwrap();
    rows.into_iter()
        .map(|e| (e.content.actor, e.content.result, e.content.detail))
        .collect()
}

/// A refused callback: the status, the message on the page, nobody signed in, and no
/// session row left.
async fn assert_refused(
    app: &SsoApp,
    client: &reqwest::Client,
    res: reqwest::Response,
    status: StatusCode,
    message: &str,
) {
    assert_eq!(res.status(), status);
    let html = res.text().await.unwrap();
    assert!(html.contains("Sign-in failed"), "{html}");
    assert!(html.contains(message), "expected «{message}» in {html}");
    assert!(
        html.contains("href=\"/login\""),
        "offers a way back: {html}"
    );
    assert_eq!(app.whoami(client).await, Value::Null, "nobody is signed in");
    assert_eq!(app.sessions().await, 0, "no session is left behind");
}

#[tokio::test]
async fn sign_in_creates_the_user_rotates_the_session_and_signs_out_at_the_provider() {
    let _serial = SERIAL.lock().await;
    let (issuer, app) = fake_app().await;
    let c = browser();

    // The sign-in page offers the provider next to the password form.
    let html = c
        .get(format!("{}/login", app.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(html.contains("Sign in with Corp SSO"), "{html}");
    assert!(html.contains("href=\"/auth/oidc/corp/start\""), "{html}");
    assert!(
        html.contains("name=\"password\""),
        "local accounts stay available"
    );

    // The redirect carries PKCE (S256), state, nonce, the configured scopes and our
    // redirect URI built from public_url.
    let res = c
        .get(format!("{}/auth/oidc/corp/start", app.base))
        .send()
        .await
        .unwrap();
    assert!(res.status().is_redirection());
    let location = res.headers()[LOCATION].to_str().unwrap();
    assert!(
        location.starts_with(&format!("{}/authorize?", issuer.url)),
        "{location}"
    );
    let pending_cookie = res.headers()[SET_COOKIE].to_str().unwrap().to_owned();
    let auth = app.start(&c, "corp").await;
    assert_eq!(auth.code_challenge_method, "S256");
    assert_eq!(auth.client_id, CLIENT_ID);
    assert_eq!(auth.scope, "openid email profile groups");
    assert_eq!(
        auth.redirect_uri,
        format!("{}/auth/oidc/corp/callback", app.base)
    );
    assert!(auth.state.len() >= 16 && auth.nonce.len() >= 16);

    let code = issuer.issue_code(&auth, alice());
    let res = app
        .callback(&c, "corp", &[("code", &code), ("state", &auth.state)])
        .await;
    assert!(res.status().is_redirection(), "{}", res.status());
    assert_eq!(res.headers()[LOCATION], "/");
    let cookie = res.headers()[SET_COOKIE].to_str().unwrap().to_owned();
    assert_ne!(
        cookie.split(';').next(),
        pending_cookie.split(';').next(),
        "the session id changes at sign-in"
    );

    let me = app.whoami(&c).await;
    assert_eq!(me["username"], "alice");
    assert_eq!(me["display_name"], "Alice Approver");
    assert_eq!(me["federated"], true);
    assert_eq!(
        me["roles"],
        json!([]),
        "no roles until an admin grants some"
    );
    assert_eq!(app.sessions().await, 1);
    let log = log_entries(&app).await;
    assert!(
        log.iter().any(|(a, r, d)| a == "alice"
            && r == "success"
            && d.contains("oidc corp")
            && d.contains("groups: ops, staff")
            && d.contains("user created")),
        "{log:?}"
    );

    // A federated user has no password: the password form refuses the name.
    let (s, _) = app
        .call(
            &browser(),
            "login",
            &[("username", "alice"), ("password", "anything at all")],
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);

    // Sign-out ends the session and continues at the provider's end-session endpoint
    // with the ID token as hint and the way back to our sign-in page.
    let (s, _) = app.call(&c, "logout", &[]).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(app.whoami(&c).await, Value::Null);
    assert_eq!(app.sessions().await, 0);
    let res = c
        .post(format!("{}/api/logout", app.base))
        .header("origin", &app.base)
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    // Signed out already: the plain form post goes back to the sign-in page.
    assert_eq!(res.headers()[LOCATION], "/login");

    // Again, this time looking at where sign-out leads (a plain HTML form post).
    let res = sign_in_with(&app, &issuer, &c, alice()).await;
    assert!(res.status().is_redirection());
    let res = c
        .post(format!("{}/api/logout", app.base))
        .header("origin", &app.base)
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    let to = res.headers()[LOCATION].to_str().unwrap().to_owned();
    assert!(to.starts_with(&format!("{}/logout?", issuer.url)), "{to}");
    let q: std::collections::HashMap<String, String> = reqwest::Url::parse(&to)
        .unwrap()
        .query_pairs()
        .into_owned()
        .collect();
    assert_eq!(q["post_logout_redirect_uri"], format!("{}/login", app.base));
    assert_eq!(q["client_id"], CLIENT_ID);
    assert_eq!(q["id_token_hint"].split('.').count(), 3);
    assert_eq!(app.sessions().await, 0);
}

#[tokio::test]
async fn later_sign_ins_update_the_profile_and_groups_grant_roles() {
    let _serial = SERIAL.lock().await;
    let (issuer, app) = fake_app().await;
    let admin = app.admin().await;
    let (s, body) = app
        .call(
            &admin,
            "add_group_rule",
            &[
                ("provider", "corp"),
                ("group", "ops"),
                ("role", "approver"),
                ("scope_kind", "all"),
                ("scope_target", ""),
            ],
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    // A provider that is not configured is refused with a message on the field.
    let (s, body) = app
        .call(
            &admin,
            "add_group_rule",
            &[
                ("provider", "elsewhere"),
                ("group", "ops"),
                ("role", "admin"),
                ("scope_kind", "all"),
                ("scope_target", ""),
            ],
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(
        common::field_error(&body, "provider"),
        Some("Choose one of the configured identity providers.")
    );

    let c = browser();
    let res = sign_in_with(&app, &issuer, &c, alice()).await;
    assert!(res.status().is_redirection());
    let me = app.whoami(&c).await;
    assert_eq!(me["roles"][0]["role"], "approver");
    assert_eq!(me["roles"][0]["via_group"], "ops");
    // The role counts for permission checks, not just for display: approvers see the
    // activity log.
    let (s, body) = app.call(&c, "activity", &[]).await;
    assert_eq!(s, StatusCode::OK, "{body}");
    // An API token acts with the same roles, the group's included.
    let (s, body) = app
        .call(
            &c,
            "create_api_token",
            &[("name", "script"), ("expires_days", "7")],
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    let token = body["token"].as_str().unwrap().to_owned();
    let api_activity = || async {
        reqwest::Client::new()
            .get(format!("{}/api/v1/activity", app.base))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .status()
    };
    assert_eq!(api_activity().await, StatusCode::OK);
    // Group rules are for administrators only.
    let (s, _) = app.call(&c, "list_group_rules", &[]).await;
    assert_eq!(s, StatusCode::FORBIDDEN);

    // The admin page lists how the user signs in and the role through the group.
    let (s, users) = app.call(&admin, "list_users", &[]).await;
    assert_eq!(s, StatusCode::OK);
    let row = users
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["username"] == "alice")
        .unwrap()
        .clone();
    assert_eq!(
        row["identity"],
        "corp: alice@example.org (groups: ops, staff)"
    );
    assert_eq!(row["roles"][0]["via_group"], "ops");

    // Next sign-in: renamed, and no longer in "ops" at the provider → the role is gone.
    let mut spec = alice();
    spec.claims = json!({
        "preferred_username": "alice", "email": "alice@corp.example",
        "name": "Alice Renamed", "groups": ["staff"]
    });
    let c2 = browser();
    let res = sign_in_with(&app, &issuer, &c2, spec).await;
    assert!(res.status().is_redirection());
    let me2 = app.whoami(&c2).await;
    assert_eq!(me2["id"], me["id"], "same subject, same user");
    assert_eq!(me2["display_name"], "Alice Renamed");
    assert_eq!(me2["roles"], json!([]));
    // The other session of the same user sees the change on its next request too.
    assert_eq!(app.whoami(&c).await["roles"], json!([]));
    let (s, _) = app.call(&c, "activity", &[]).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "the role went with the group");
    assert_eq!(
        api_activity().await,
        StatusCode::FORBIDDEN,
        "and from the token"
    );

    // Removing the rule is logged like adding it.
    let (_, rules) = app.call(&admin, "list_group_rules", &[]).await;
    let id = rules[0]["id"].as_str().unwrap().to_owned();
    let (s, _) = app
        .call(&admin, "remove_group_rule", &[("rule_id", &id)])
        .await;
    assert_eq!(s, StatusCode::OK);
    let (_, rules) = app.call(&admin, "list_group_rules", &[]).await;
    assert_eq!(rules, json!([]));
}

#[tokio::test]
async fn identities_are_matched_by_subject_never_by_name() {
    let _serial = SERIAL.lock().await;
    let (issuer, app) = fake_app().await;
    // A local "alice" exists; the federated alice must not become her.
    let admin = app.admin().await;
    let (s, body) = app
        .call(
            &admin,
            "create_user",
            &[
                ("username", "alice"),
                ("display_name", "Local Alice"),
                ("password", "a perfectly good passphrase"),
                ("role", "admin"),
                ("scope_kind", "all"),
                ("scope_target", ""),
            ],
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    let c = browser();
    let res = sign_in_with(&app, &issuer, &c, alice()).await;
    assert!(res.status().is_redirection());
    let me = app.whoami(&c).await;
    assert_eq!(me["username"], "alice.corp");
    assert_eq!(me["roles"], json!([]), "no roles of the local alice");

    // Another subject with the same email is another user.
    let mut other = alice();
    other.subject = "00u2mallory".into();
    let c2 = browser();
    sign_in_with(&app, &issuer, &c2, other).await;
    let me2 = app.whoami(&c2).await;
    assert_ne!(me2["id"], me["id"]);
    assert_eq!(me2["username"], "alice.corp2");
}

#[tokio::test]
async fn a_rotated_signing_key_is_fetched_again() {
    let _serial = SERIAL.lock().await;
    let (issuer, app) = fake_app().await;
    let c = browser();
    assert!(
        sign_in_with(&app, &issuer, &c, alice())
            .await
            .status()
            .is_redirection()
    );
    // The portal has the provider's metadata and keys cached; the provider rotates.
    issuer.rotate_keys();
    let c2 = browser();
    let res = sign_in_with(&app, &issuer, &c2, alice()).await;
    assert!(res.status().is_redirection(), "{}", res.status());
    assert_eq!(app.whoami(&c2).await["username"], "alice");
}

#[tokio::test]
async fn a_forged_state_is_refused() {
    let _serial = SERIAL.lock().await;
    let (issuer, app) = fake_app().await;
    let c = browser();
    let auth = app.start(&c, "corp").await;
    let code = issuer.issue_code(&auth, alice());
    let res = app
        .callback(&c, "corp", &[("code", &code), ("state", "not-the-state")])
        .await;
    assert_refused(
        &app,
        &c,
        res,
        StatusCode::BAD_REQUEST,
        "does not belong to the sign-in started in this browser",
    )
    .await;
    // Nor does the right state help afterwards: the pending sign-in is gone.
    let res = app
        .callback(&c, "corp", &[("code", &code), ("state", &auth.state)])
        .await;
    assert_refused(&app, &c, res, StatusCode::BAD_REQUEST, "was not expected").await;
    let log = log_entries(&app).await;
    assert!(
        log.iter()
            .any(|(_, r, d)| r == "refused" && d.contains("state mismatch")),
        "{log:?}"
    );
}

#[tokio::test]
async fn a_replayed_or_unsolicited_callback_is_refused() {
    let _serial = SERIAL.lock().await;
    let (issuer, app) = fake_app().await;
    let c = browser();
    let auth = app.start(&c, "corp").await;
    let code = issuer.issue_code(&auth, alice());
    let query = [("code", code.as_str()), ("state", auth.state.as_str())];
    assert!(
        app.callback(&c, "corp", &query)
            .await
            .status()
            .is_redirection()
    );
    assert_eq!(app.sessions().await, 1);

    // An attacker replaying the captured callback URL in another browser.
    let attacker = browser();
    let res = app.callback(&attacker, "corp", &query).await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    assert!(res.text().await.unwrap().contains("was not expected"));
    assert_eq!(app.whoami(&attacker).await, Value::Null);
    assert_eq!(app.sessions().await, 1, "only the real user's session");

    // The same browser presenting it twice: refused, the signed-in session is kept.
    let res = app.callback(&c, "corp", &query).await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    assert_eq!(app.whoami(&c).await["username"], "alice");

    // A flood of forged callbacks is refused every time, but cannot flood the activity
    // log: an address gets a few entries per window.
    let before = log_entries(&app).await.len();
    for _ in 0..12 {
        let res = app
            .callback(&browser(), "corp", &[("code", "x"), ("state", "forged")])
            .await;
        assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    }
    let logged = log_entries(&app).await.len() - before;
    assert!(
        (1..=5).contains(&logged),
        "{logged} entries for 12 refusals"
    );
}

#[tokio::test]
async fn a_response_naming_another_issuer_is_refused() {
    let _serial = SERIAL.lock().await;
    let (issuer, app) = fake_app().await;
    let c = browser();
    let auth = app.start(&c, "corp").await;
    let code = issuer.issue_code(&auth, alice());
    let res = app
        .callback(
            &c,
            "corp",
            &[
                ("code", &code),
                ("state", &auth.state),
                ("iss", "http://127.0.0.1:9/another-provider"),
            ],
        )
        .await;
    assert_refused(
        &app,
        &c,
        res,
        StatusCode::BAD_REQUEST,
        "names another identity provider",
    )
    .await;
}

#[tokio::test]
async fn a_bad_nonce_is_refused() {
    let _serial = SERIAL.lock().await;
    let (issuer, app) = fake_app().await;
    let c = browser();
    let mut spec = alice();
    spec.nonce = Some("a nonce from another sign-in".into());
    let res = sign_in_with(&app, &issuer, &c, spec).await;
    assert_refused(
        &app,
        &c,
        res,
        StatusCode::BAD_REQUEST,
        "the identity token does not belong to this sign-in",
    )
    .await;
    let log = log_entries(&app).await;
    assert!(
        log.iter()
            .any(|(a, r, d)| a == "corp" && r == "refused" && d.contains("nonce mismatch")),
        "{log:?}"
    );
}

#[tokio::test]
async fn an_expired_id_token_is_refused() {
    let _serial = SERIAL.lock().await;
    let (issuer, app) = fake_app().await;
    let c = browser();
    let mut spec = alice();
    spec.expires_in_secs = -600;
    let res = sign_in_with(&app, &issuer, &c, spec).await;
    assert_refused(
        &app,
        &c,
        res,
        StatusCode::BAD_REQUEST,
        "the identity token has expired",
    )
    .await;
}

#[tokio::test]
async fn an_id_token_for_another_audience_is_refused() {
    let _serial = SERIAL.lock().await;
    let (issuer, app) = fake_app().await;
    let c = browser();
    let mut spec = alice();
    spec.audience = Some(json!("some-other-application"));
    let res = sign_in_with(&app, &issuer, &c, spec).await;
    assert_refused(
        &app,
        &c,
        res,
        StatusCode::BAD_REQUEST,
        "the identity token was issued for another application",
    )
    .await;
    // Our client id among other, untrusted audiences is refused too.
    let mut spec = alice();
    spec.audience = Some(json!([CLIENT_ID, "some-other-application"]));
    let res = sign_in_with(&app, &issuer, &c, spec).await;
    assert_refused(
        &app,
        &c,
        res,
        StatusCode::BAD_REQUEST,
        "issued for another application",
    )
    .await;
}

#[tokio::test]
async fn an_id_token_from_another_issuer_is_refused() {
    let _serial = SERIAL.lock().await;
    let (issuer, app) = fake_app().await;
    let c = browser();
    let mut spec = alice();
    spec.issuer = Some("http://127.0.0.1:9/someone-else".into());
    let res = sign_in_with(&app, &issuer, &c, spec).await;
    assert_refused(
        &app,
        &c,
        res,
        StatusCode::BAD_REQUEST,
        "the identity token comes from an unexpected issuer",
    )
    .await;
}

#[tokio::test]
async fn a_forged_signature_is_refused() {
    let _serial = SERIAL.lock().await;
    let (issuer, app) = fake_app().await;
    let c = browser();
    let mut spec = alice();
    spec.forged = true;
    let res = sign_in_with(&app, &issuer, &c, spec).await;
    assert_refused(
        &app,
        &c,
        res,
        StatusCode::BAD_REQUEST,
        "the signature of the identity token is not valid",
    )
    .await;
    assert!(
        app.store
            .find_user_by_username("alice")
            .await
            .unwrap()
            .is_none(),
        "no user created from a forged token"
    );
}

#[tokio::test]
async fn a_denied_consent_is_explained() {
    let _serial = SERIAL.lock().await;
    let (_issuer, app) = fake_app().await;
    let c = browser();
    let auth = app.start(&c, "corp").await;
    let res = app
        .callback(
            &c,
            "corp",
            &[
                ("error", "access_denied"),
                ("error_description", "<script>alert(1)</script>"),
                ("state", &auth.state),
            ],
        )
        .await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    let html = res.text().await.unwrap();
    assert!(!html.contains("<script>"), "provider text is never echoed");
    assert!(html.contains("Corp SSO did not grant access"), "{html}");
    assert_eq!(app.whoami(&c).await, Value::Null);
    assert_eq!(app.sessions().await, 0);
}

#[tokio::test]
async fn an_unreachable_provider_does_not_stop_the_portal_and_is_explained() {
    let _serial = SERIAL.lock().await;
    // Nothing listens on this port: bind one, note it, close it.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let issuer = spawn_fake_issuer().await;
    let app = spawn_sso_app(&format!(
        "{}{}",
        provider_toml("down", "Down IdP", &format!("http://127.0.0.1:{closed}")),
        provider_toml("corp", "Corp SSO", &issuer.url)
    ))
    .await;
    let c = browser();
    let html = c
        .get(format!("{}/login", app.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(html.contains("Sign in with Down IdP") && html.contains("Sign in with Corp SSO"));
    let res = c
        .get(format!("{}/auth/oidc/down/start", app.base))
        .send()
        .await
        .unwrap();
    assert_refused(
        &app,
        &c,
        res,
        StatusCode::BAD_GATEWAY,
        "Down IdP cannot be reached right now",
    )
    .await;
    // The other provider still works.
    let res = sign_in_with(&app, &issuer, &c, alice()).await;
    assert!(res.status().is_redirection());
    let log = log_entries(&app).await;
    assert!(
        log.iter()
            .any(|(a, r, d)| a == "down" && r == "refused" && d.contains("provider unreachable")),
        "{log:?}"
    );
}

#[tokio::test]
async fn a_provider_that_comes_up_after_the_portal_is_used_once_it_is_there() {
    let _serial = SERIAL.lock().await;
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let app = spawn_sso_app(&provider_toml(
        "corp",
        "Corp SSO",
        &format!("http://127.0.0.1:{port}"),
    ))
    .await;
    let c = browser();
    let res = c
        .get(format!("{}/auth/oidc/corp/start", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::BAD_GATEWAY);
    let issuer = spawn_fake_issuer_on(port).await;
    let res = sign_in_with(&app, &issuer, &c, alice()).await;
    assert!(res.status().is_redirection(), "{}", res.status());
    assert_eq!(app.whoami(&c).await["username"], "alice");
}

#[tokio::test]
async fn a_provider_that_goes_down_after_the_redirect_is_explained() {
    let _serial = SERIAL.lock().await;
    let (issuer, app) = fake_app().await;
    let c = browser();
    let auth = app.start(&c, "corp").await;
    let code = issuer.issue_code(&auth, alice());
    issuer.stop().await;
    let res = app
        .callback(&c, "corp", &[("code", &code), ("state", &auth.state)])
        .await;
    assert_refused(
        &app,
        &c,
        res,
        StatusCode::BAD_GATEWAY,
        "Corp SSO cannot be reached right now",
    )
    .await;
}

#[tokio::test]
async fn a_code_the_provider_does_not_accept_is_explained() {
    let _serial = SERIAL.lock().await;
    let (_issuer, app) = fake_app().await;
    // A code the provider never issued (or already redeemed) is refused by its token
    // endpoint: the user is told, nothing is created.
    let c = browser();
    let auth = app.start(&c, "corp").await;
    let res = app
        .callback(
            &c,
            "corp",
            &[("code", "never-issued"), ("state", &auth.state)],
        )
        .await;
    assert_refused(
        &app,
        &c,
        res,
        StatusCode::BAD_REQUEST,
        "Corp SSO did not accept this sign-in response",
    )
    .await;
}

#[tokio::test]
async fn disabled_federated_users_cannot_sign_in() {
    let _serial = SERIAL.lock().await;
    let (issuer, app) = fake_app().await;
    let c = browser();
    assert!(
        sign_in_with(&app, &issuer, &c, alice())
            .await
            .status()
            .is_redirection()
    );
    let id = app.whoami(&c).await["id"].as_str().unwrap().to_owned();
    let admin = app.admin().await;
    let (s, _) = app
        .call(
            &admin,
            "set_user_disabled",
            &[("user_id", &id), ("disabled", "true")],
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(app.whoami(&c).await, Value::Null, "signed out everywhere");
    let before = app.sessions().await;
    let logged = log_entries(&app).await.len();
    let c2 = browser();
    let res = sign_in_with(&app, &issuer, &c2, alice()).await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    assert!(
        res.text()
            .await
            .unwrap()
            .contains("Your account is disabled")
    );
    assert_eq!(app.whoami(&c2).await, Value::Null);
    assert_eq!(app.sessions().await, before);
    // One entry for the refusal, naming the account.
    let entries = log_entries(&app).await;
    assert_eq!(entries.len(), logged + 1, "{entries:?}");
    assert!(
        entries.iter().any(|(actor, _, _)| actor == "alice"),
        "{entries:?}"
    );
}

#[tokio::test]
async fn local_accounts_can_be_switched_off() {
    let _serial = SERIAL.lock().await;
    let issuer = spawn_fake_issuer().await;
    let app = spawn_sso_app(&format!(
        "local_accounts = false\n{}",
        provider_toml("corp", "Corp SSO", &issuer.url)
    ))
    .await;
    let c = browser();
    let html = c
        .get(format!("{}/login", app.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(html.contains("Sign in with Corp SSO"));
    assert!(!html.contains("name=\"password\""), "no password form");
    let (s, body) = app
        .call(
            &c,
            "login",
            &[("username", "admin"), ("password", &app.admin_password)],
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        common::field_error(&body, "password")
            .unwrap()
            .contains("switched off")
    );
    assert_eq!(app.sessions().await, 0);
}

#[tokio::test]
async fn unknown_providers_are_not_found() {
    let _serial = SERIAL.lock().await;
    let (_issuer, app) = fake_app().await;
    let c = browser();
    for path in [
        "/auth/oidc/nope/start",
        "/auth/oidc/nope/callback?code=x&state=y",
    ] {
        let res = c.get(format!("{}{path}", app.base)).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::NOT_FOUND, "{path}");
        assert!(res.text().await.unwrap().contains("does not exist"));
    }
    assert_eq!(app.sessions().await, 0);
}

/// The real, certified `oidc-provider`: PKCE, client secret, discovery and keys as a real
/// deployment sees them; the user signs in on its login form.
#[tokio::test]
async fn signs_in_through_a_real_openid_provider() {
    let _serial = SERIAL.lock().await;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let base = format!("http://127.0.0.1:{port}");
    let provider = start_real_provider(
        &format!("{base}/auth/oidc/test/callback"),
        &format!("{base}/login"),
    );
    // The portal listens on the port the provider knows from its redirect URI.
    let app = spawn_sso_app_on(
        port,
        &format!(
            "[[oidc]]\nid = \"test\"\nname = \"Test IdP\"\nissuer = \"{}\"\n\
             client_id = \"portcullis-test\"\nclient_secret = \"a client secret only the tests know\"\n\
             scopes = [\"openid\", \"email\", \"profile\", \"groups\"]\n",
            provider.issuer
        ),
    )
    .await;
    let admin = app.admin().await;
    let (s, body) = app
        .call(
            &admin,
            "add_group_rule",
            &[
                ("provider", "test"),
                ("group", "portcullis-approvers"),
                ("role", "approver"),
                ("scope_kind", "all"),
                ("scope_target", ""),
            ],
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{body}");

    let c = browser();
    let mut url = format!("{}/auth/oidc/test/start", app.base);
    let mut form_posted = false;
    for _ in 0..20 {
        let res = c.get(&url).send().await.unwrap();
        if res.status().is_redirection() {
            let next = res.headers()[LOCATION].to_str().unwrap().to_owned();
            url = reqwest::Url::parse(&url)
                .unwrap()
                .join(&next)
                .unwrap()
                .to_string();
            if url == format!("{}/", app.base) {
                break;
            }
            continue;
        }
        let status = res.status();
        let html = res.text().await.unwrap();
        assert_eq!(status, StatusCode::OK, "{url}: {html}");
        assert!(!form_posted, "login form shown twice");
        assert!(html.contains("Sign in to continue"), "{html}");
        let res = c
            .post(format!("{url}/login"))
            .form(&[
                ("login", "alice"),
                ("password", "correct horse battery staple"),
            ])
            .send()
            .await
            .unwrap();
        assert!(res.status().is_redirection(), "{}", res.status());
        let next = res.headers()[LOCATION].to_str().unwrap().to_owned();
        url = reqwest::Url::parse(&url)
            .unwrap()
            .join(&next)
            .unwrap()
            .to_string();
        form_posted = true;
    }
    assert_eq!(url, format!("{}/", app.base), "lands in the portal");
    let me = app.whoami(&c).await;
    assert_eq!(me["username"], "alice");
    assert_eq!(me["display_name"], "Alice Approver");
    assert_eq!(me["roles"][0]["role"], "approver");
    assert_eq!(me["roles"][0]["via_group"], "portcullis-approvers");
}

/// Runs one sign-in through the real provider from `start` (a portal URL) in a fresh
/// browser, and returns where the portal's callback sent the browser.
async fn real_sign_in_from(app: &SsoApp, start: &str) -> String {
    let c = browser();
    let mut url = start.to_owned();
    let callback = format!("{}/auth/oidc/test/callback", app.base);
    // A signed-out visitor's sign-in page: the provider's button, as the page offers it.
    if url.starts_with(&format!("{}/login", app.base)) {
        let html = c.get(&url).send().await.unwrap().text().await.unwrap();
        let at = html
            .find("href=\"/auth/oidc/test/start")
            .unwrap_or_else(|| panic!("no provider button: {html}"))
            + "href=\"".len();
        let href = &html[at..at + html[at..].find('"').unwrap()];
        url = format!("{}{}", app.base, href.replace("&amp;", "&"));
    }
    let mut form_posted = false;
    for _ in 0..20 {
        let res = c.get(&url).send().await.unwrap();
        if res.status().is_redirection() {
            let location = res.headers()[LOCATION].to_str().unwrap().to_owned();
            if url.starts_with(&callback) {
                assert_eq!(app.whoami(&c).await["username"], "alice");
                return location;
            }
            url = reqwest::Url::parse(&url)
                .unwrap()
                .join(&location)
                .unwrap()
                .to_string();
            continue;
        }
        let status = res.status();
        let html = res.text().await.unwrap();
        assert_eq!(status, StatusCode::OK, "{url}: {html}");
        assert!(!form_posted, "login form shown twice");
        assert!(html.contains("Sign in to continue"), "{html}");
        let res = c
            .post(format!("{url}/login"))
            .form(&[
                ("login", "alice"),
                ("password", "correct horse battery staple"),
            ])
            .send()
            .await
            .unwrap();
        assert!(res.status().is_redirection(), "{}", res.status());
        let location = res.headers()[LOCATION].to_str().unwrap().to_owned();
        url = reqwest::Url::parse(&url)
            .unwrap()
            .join(&location)
            .unwrap()
            .to_string();
        form_posted = true;
    }
    panic!("the sign-in never came back to the portal (last at {url})");
}

/// A signed-out visitor sent to the sign-in page from a page (a message's link to a
/// request) comes back to that page after signing in with the provider, as after a
/// password sign-in; a `next` that leads off the site lands on the home page.
#[tokio::test]
async fn single_sign_on_returns_to_the_page_the_visitor_came_from() {
    let _serial = SERIAL.lock().await;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let base = format!("http://127.0.0.1:{port}");
    let provider = start_real_provider(
        &format!("{base}/auth/oidc/test/callback"),
        &format!("{base}/login"),
    );
    let app = spawn_sso_app_on(
        port,
        &format!(
            "[[oidc]]\nid = \"test\"\nname = \"Test IdP\"\nissuer = \"{}\"\n\
             client_id = \"portcullis-test\"\nclient_secret = \"a client secret only the tests know\"\n\
             scopes = [\"openid\", \"email\", \"profile\", \"groups\"]\n",
            provider.issuer
        ),
    )
    .await;

    // The page a message links to sends a signed-out visitor to sign in, and back.
    let res = browser()
        .get(format!("{}/requests/x", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(res.headers()[LOCATION], "/login?next=/requests/x");
    let landed = real_sign_in_from(&app, &format!("{}/login?next=/requests/x", app.base)).await;
    assert_eq!(landed, "/requests/x");

    for hostile in [
        "//evil.example",
        "/\\evil",
        "https://evil",
        "/login?next=//evil",
    ] {
        let mut login = reqwest::Url::parse(&format!("{}/login", app.base)).unwrap();
        login.query_pairs_mut().append_pair("next", hostile);
        assert_eq!(
            real_sign_in_from(&app, login.as_str()).await,
            "/",
            "{hostile}"
        );
        // A link made to skip the sign-in page is checked just the same.
        let mut start = reqwest::Url::parse(&format!("{}/auth/oidc/test/start", app.base)).unwrap();
        start.query_pairs_mut().append_pair("next", hostile);
        assert_eq!(
            real_sign_in_from(&app, start.as_str()).await,
            "/",
            "{hostile}"
        );
    }
}
