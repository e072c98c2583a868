//! HTTP tests: the real router on a real socket (port 0) with a fresh SQLite file each.
//! Server functions are called the way the hydrated page calls them (form-encoded POST,
//! JSON answer) and the way a plain HTML form posts them (Accept: text/html, redirects).

mod common;

use common::*;
use reqwest::header::{ACCEPT, LOCATION, ORIGIN, REFERER, SET_COOKIE};
use reqwest::{Client, StatusCode};
use serde_json::Value;

#[tokio::test]
async fn health_endpoints_answer() {
    let app = spawn_app().await;
    let c = browser();
    let r = app.get(&c, "/healthz").await;
    assert_eq!(r.status(), StatusCode::OK);
    let r = app.get(&c, "/readyz").await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.text().await.unwrap(), "ready");
}

#[tokio::test]
async fn signed_out_visitors_are_sent_to_the_sign_in_page() {
    let app = spawn_app().await;
    let c = browser();
    for (path, to) in [
        ("/", "/login"),
        ("/admin/users", "/login?next=/admin/users"),
        ("/account/password", "/login?next=/account/password"),
        ("/no/such/page", "/login?next=/no/such/page"),
        (
            "/requests/r1?x=1&y=2",
            "/login?next=/requests/r1%3Fx%3D1%26y%3D2",
        ),
    ] {
        let r = app.get(&c, path).await;
        assert!(r.status().is_redirection(), "{path}: {}", r.status());
        assert_eq!(r.headers()[LOCATION], to, "{path}");
    }
    let r = app.get(&c, "/login").await;
    assert_eq!(r.status(), StatusCode::OK);
    let html = r.text().await.unwrap();
    assert!(
        html.contains("action=\"/api/login\""),
        "the sign-in form posts without JavaScript"
    );
    assert!(html.contains("name=\"username\"") && html.contains("name=\"password\""));
    let (s, body) = app.call(&c, "whoami", &[]).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(body, Value::Null);
}

#[tokio::test]
async fn wrong_credentials_are_refused_without_a_session() {
    let app = spawn_app().await;
    let c = browser();
    let res = c
        .post(format!("{}/api/login", app.base))
        .form(&[("username", "admin"), ("password", "not the password")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        res.headers().get(SET_COOKIE).is_none(),
        "no session for a failed sign-in"
    );
    let body: Value = res.json().await.unwrap();
    assert_eq!(
        field_error(&body, "password"),
        Some("The user name or password is not correct.")
    );
    // An unknown user gets the very same answer.
    let (_, body2) = app
        .call(
            &c,
            "login",
            &[("username", "mallory"), ("password", "whatever")],
        )
        .await;
    assert_eq!(body, body2);
    let (_, body) = app
        .call(&c, "login", &[("username", ""), ("password", "")])
        .await;
    assert_eq!(
        field_error(&body, "username"),
        Some("Enter your user name.")
    );
    assert_eq!(field_error(&body, "password"), Some("Enter your password."));
}

#[tokio::test]
async fn bootstrap_admin_must_change_the_one_time_password_first() {
    let app = spawn_app().await;
    let c = browser();
    let res = c
        .post(format!("{}/api/login", app.base))
        .form(&[
            ("username", "admin"),
            ("password", app.admin_password.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let cookie = res.headers()[SET_COOKIE].to_str().unwrap().to_owned();
    assert!(cookie.starts_with("portcullis_session="), "{cookie}");
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Lax"),
        "{cookie}"
    );
    assert!(
        !cookie.contains("Secure"),
        "plain http on loopback: {cookie}"
    );

    // Everything but the password page is closed until the password is changed.
    let r = app.get(&c, "/").await;
    assert_eq!(r.headers()[LOCATION], "/account/password");
    let (s, body) = app.call(&c, "list_users", &[]).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    assert_eq!(body, Value::String("PasswordChangeRequired".into()));
    assert_eq!(
        app.get(&c, "/account/password").await.status(),
        StatusCode::OK
    );

    // Bad new passwords get a message on the field and change nothing.
    let pw = app.admin_password.as_str();
    for (new, confirm, field, expected) in [
        (
            "short",
            "short",
            "new_password",
            "A password has at least 12 characters.",
        ),
        (
            "a fine long password",
            "a fine long passw0rd",
            "new_password",
            "The two passwords do not match.",
        ),
        (
            "my admin password!",
            "my admin password!",
            "new_password",
            "The password must not contain the user name.",
        ),
        (
            pw,
            pw,
            "new_password",
            "Choose a password different from the current one.",
        ),
    ] {
        let (s, body) = app
            .call(
                &c,
                "change_password",
                &[
                    ("current_password", pw),
                    ("new_password", new),
                    ("confirm_password", confirm),
                ],
            )
            .await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(field_error(&body, field), Some(expected), "{body}");
    }
    let (s, body) = app
        .call(
            &c,
            "change_password",
            &[
                ("current_password", "wrong one"),
                ("new_password", "a fine long password"),
                ("confirm_password", "a fine long password"),
            ],
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        field_error(&body, "current_password"),
        Some("The current password is not correct.")
    );

    let new = app.change_admin_password(&c).await;
    assert_eq!(app.get(&c, "/").await.status(), StatusCode::OK);
    let (s, body) = app.call(&c, "list_users", &[]).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(body[0]["username"], "admin");
    assert_eq!(body[0]["must_change_password"], false);

    // The one-time password no longer works; the new one does.
    let c2 = browser();
    let (s, _) = app
        .call(&c2, "login", &[("username", "admin"), ("password", pw)])
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    let (s, _) = app
        .call(&c2, "login", &[("username", "admin"), ("password", &new)])
        .await;
    assert_eq!(s, StatusCode::OK);
}

fn session_cookie(res: &reqwest::Response) -> String {
    res.headers()
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with("portcullis_session="))
        .map(|v| v.split(';').next().unwrap().to_owned())
        .expect("a session cookie")
}

#[tokio::test]
async fn session_id_is_rotated_at_sign_in_and_ended_at_sign_out() {
    let app = spawn_app().await;
    let c = browser();
    let new = app.admin_ready(&c).await;
    let login = |cookie: Option<String>| {
        let mut req = Client::new()
            .post(format!("{}/api/login", app.base))
            .form(&[("username", "admin"), ("password", new.as_str())]);
        if let Some(cookie) = cookie {
            req = req.header("cookie", cookie);
        }
        req.send()
    };
    let first = login(None).await.unwrap();
    let a = session_cookie(&first);
    let second = login(Some(a.clone())).await.unwrap();
    let b = session_cookie(&second);
    assert_ne!(a, b, "signing in again issues a new session id");

    let whoami = |cookie: String| {
        Client::new()
            .post(format!("{}/api/whoami", app.base))
            .header("cookie", cookie)
            .send()
    };
    let old: Value = whoami(a).await.unwrap().json().await.unwrap();
    assert_eq!(old, Value::Null, "the replaced session id is dead");
    let current: Value = whoami(b.clone()).await.unwrap().json().await.unwrap();
    assert_eq!(current["username"], "admin");

    let out = Client::new()
        .post(format!("{}/api/logout", app.base))
        .header("cookie", b.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(out.status(), StatusCode::OK);
    let after: Value = whoami(b).await.unwrap().json().await.unwrap();
    assert_eq!(
        after,
        Value::Null,
        "signed out sessions are gone from the store"
    );
}

#[tokio::test]
async fn cross_origin_posts_are_refused() {
    let app = spawn_app().await;
    let c = browser();
    for origin in ["http://evil.example", "null", "https://127.0.0.1"] {
        let res = c
            .post(format!("{}/api/login", app.base))
            .header(ORIGIN, origin)
            .form(&[
                ("username", "admin"),
                ("password", app.admin_password.as_str()),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::FORBIDDEN, "{origin}");
        assert!(res.headers().get(SET_COOKIE).is_none());
    }
    let res = c
        .post(format!("{}/api/login", app.base))
        .header(REFERER, "http://evil.example/page")
        .form(&[
            ("username", "admin"),
            ("password", app.admin_password.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    // Same origin passes.
    let (s, _) = app
        .call(
            &c,
            "login",
            &[("username", "admin"), ("password", &app.admin_password)],
        )
        .await;
    assert_eq!(s, StatusCode::OK);
}

#[tokio::test]
async fn repeated_failures_lock_sign_in_for_a_while() {
    let app = spawn_app().await;
    let c = browser();
    for _ in 0..5 {
        let (s, _) = app
            .call(&c, "login", &[("username", "admin"), ("password", "guess")])
            .await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    }
    let (s, body) = app
        .call(
            &c,
            "login",
            &[("username", "admin"), ("password", &app.admin_password)],
        )
        .await;
    assert_eq!(s, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert!(body["RateLimited"]["retry_after_secs"].as_u64().unwrap() > 0);
}

#[tokio::test]
async fn plain_form_posts_redirect_with_errors_or_to_the_next_page() {
    let app = spawn_app().await;
    let c = browser();
    let post = |pw: &str| {
        c.post(format!("{}/api/login", app.base))
            .header(ACCEPT, "text/html")
            .header(ORIGIN, &app.base)
            .header(REFERER, format!("{}/login", app.base))
            .form(&[("username", "admin"), ("password", pw)])
            .send()
    };
    let bad = post("nope").await.unwrap();
    assert_eq!(bad.status(), StatusCode::FOUND);
    let location = bad.headers()[LOCATION].to_str().unwrap().to_owned();
    assert!(
        location.starts_with(&format!("{}/login?", app.base)) && location.contains("__err="),
        "{location}"
    );
    // The page rendered at that address shows the message next to the field.
    let page = c.get(&location).send().await.unwrap().text().await.unwrap();
    assert!(
        page.contains("The user name or password is not correct."),
        "error shown without JavaScript at {location}: {page}"
    );

    let good = post(&app.admin_password).await.unwrap();
    assert_eq!(good.status(), StatusCode::FOUND);
    assert_eq!(good.headers()[LOCATION], "/account/password");
}

#[tokio::test]
async fn user_administration_checks_roles_and_input() {
    let app = spawn_app().await;
    let admin = browser();
    app.admin_ready(&admin).await;
    // Group scopes name a group that holds VMs.
    app.add_vm(&admin, "web-1", "linux").await;

    // Bad input: each field named, nothing stored.
    let (s, body) = app
        .call(
            &admin,
            "create_user",
            &[
                ("username", "x y"),
                ("display_name", ""),
                ("password", "short"),
                ("role", "root"),
                ("scope_kind", "group"),
                ("scope_target", ""),
            ],
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    for field in ["username", "display_name", "role", "scope_target"] {
        assert!(field_error(&body, field).is_some(), "{field}: {body}");
    }
    let (_, users) = app.call(&admin, "list_users", &[]).await;
    assert_eq!(users.as_array().unwrap().len(), 1);

    let create = [
        ("username", "Rita"),
        ("display_name", "Rita Requester"),
        ("password", "first sign-in secret 42"),
        ("role", "requester"),
        ("scope_kind", "all"),
        ("scope_target", ""),
    ];
    let (s, body) = app.call(&admin, "create_user", &create).await;
    assert_eq!(s, StatusCode::OK, "{body}");
    let rita_id = body.as_str().unwrap().to_owned();
    let (s, body) = app.call(&admin, "create_user", &create).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        field_error(&body, "username"),
        Some("A user with this name already exists.")
    );

    // Rita (no forced change: the box was not ticked) signs in and is a requester, not an admin.
    let rita = browser();
    let (s, _) = app
        .call(
            &rita,
            "login",
            &[
                ("username", "rita"),
                ("password", "first sign-in secret 42"),
            ],
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let (_, me) = app.call(&rita, "whoami", &[]).await;
    assert_eq!(me["roles"][0]["role"], "requester");
    assert_eq!(me["can_manage_users"], false);
    for (name, form) in [
        ("list_users", vec![]),
        ("create_user", create.to_vec()),
        (
            "add_role",
            vec![
                ("user_id", rita_id.as_str()),
                ("role", "admin"),
                ("scope_kind", "all"),
                ("scope_target", ""),
            ],
        ),
        (
            "set_user_disabled",
            vec![("user_id", rita_id.as_str()), ("disabled", "true")],
        ),
    ] {
        let (s, body) = app.call(&rita, name, &form).await;
        assert_eq!(s, StatusCode::FORBIDDEN, "{name}");
        assert_eq!(body, Value::String("Forbidden".into()), "{name}");
    }
    let (s, _) = app
        .call(&rita, "remove_role", &[("assignment_id", "whatever")])
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    // The admin page itself renders, but shows the refusal instead of data.
    let page = app.get(&rita, "/admin/users").await.text().await.unwrap();
    assert!(page.contains("You do not have permission to do that."));
    assert!(
        !page.contains("users-table"),
        "no user data for a requester"
    );

    // Admin grants a scoped approver role, then disables Rita: her session ends.
    let (s, body) = app
        .call(
            &admin,
            "add_role",
            &[
                ("user_id", &rita_id),
                ("role", "approver"),
                ("scope_kind", "group"),
                ("scope_target", "prod"),
            ],
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    let (_, me) = app.call(&rita, "whoami", &[]).await;
    assert!(
        me["roles"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["role"] == "approver" && r["scope"] == "group prod")
    );
    let (s, _) = app
        .call(
            &admin,
            "set_user_disabled",
            &[("user_id", &rita_id), ("disabled", "true")],
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let (_, me) = app.call(&rita, "whoami", &[]).await;
    assert_eq!(me, Value::Null);
    let (s, _) = app
        .call(
            &rita,
            "login",
            &[
                ("username", "rita"),
                ("password", "first sign-in secret 42"),
            ],
        )
        .await;
    assert_eq!(
        s,
        StatusCode::UNPROCESSABLE_ENTITY,
        "disabled accounts cannot sign in"
    );

    // The last administrator cannot be locked out.
    let (_, users) = app.call(&admin, "list_users", &[]).await;
    let admin_row = users
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["username"] == "admin")
        .unwrap()
        .clone();
    let (s, body) = app
        .call(
            &admin,
            "remove_role",
            &[(
                "assignment_id",
                admin_row["roles"][0]["id"].as_str().unwrap(),
            )],
        )
        .await;
    assert_eq!(s, StatusCode::CONFLICT, "{body}");
    let (s, _) = app
        .call(
            &admin,
            "set_user_disabled",
            &[
                ("user_id", admin_row["id"].as_str().unwrap()),
                ("disabled", "true"),
            ],
        )
        .await;
    assert_eq!(s, StatusCode::CONFLICT);
}

/// The VM page's edit form is rendered with the current values, each field labelled and
/// wired to its error message, so it works without JavaScript too.
#[tokio::test]
async fn the_vm_edit_form_shows_current_values() {
    let app = spawn_app().await;
    let admin = browser();
    app.admin_ready(&admin).await;
    let vm = app.add_vm(&admin, "web-7", "linux").await;
    let page = app
        .get(&admin, &format!("/vms/{vm}"))
        .await
        .text()
        .await
        .unwrap();
    for (name, value) in [("name", "web-7"), ("group", "prod")] {
        let input = page
            .split("<input")
            .find(|i| i.contains(&format!("id=\"e-{name}\"")))
            .unwrap_or_else(|| panic!("no edit field {name}: {page}"));
        assert!(input.contains(&format!("value=\"{value}\"")), "{input}");
        assert!(
            input.contains(&format!("aria-describedby=\"e-{name}-error\"")),
            "{input}"
        );
        assert!(page.contains(&format!("for=\"e-{name}\"")));
    }
}
