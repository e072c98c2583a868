//! Access ends when its authority ends, seen from outside: through the server functions the
//! portal calls, the REST API and the agent protocol, on a real server with a fresh
//! database (SQLite, or PostgreSQL when `PORTCULLIS_TEST_POSTGRES` names a server).
//!
//! Each test is one promise of the design's "Invariants of access": disabling a user,
//! removing a role, editing or bulk-editing a policy, canonical sources, VM-scoped roles,
//! the last administrator, sessions after a password change, and end times that are the
//! times shown.

mod common;

use common::*;
use reqwest::{Client, StatusCode};
use serde_json::{Value, json};

/// An administrator's browser, signed in with the one-time password replaced.
async fn portal() -> (TestApp, Client) {
    let app = spawn_app().await;
    let admin = browser();
    app.admin_ready(&admin).await;
    (app, admin)
}

/// A user with one role in a scope, signed in; returns their browser and their id.
async fn user(
    app: &TestApp,
    admin: &Client,
    name: &str,
    role: &str,
    kind: &str,
    target: &str,
) -> (Client, String) {
    let password = "a perfectly good passphrase";
    let (s, body) = app
        .call(
            admin,
            "create_user",
            &[
                ("username", name),
                ("display_name", name),
                ("password", password),
                ("role", role),
                ("scope_kind", kind),
                ("scope_target", target),
            ],
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    let client = browser();
    let (s, body) = app
        .call(
            &client,
            "login",
            &[("username", name), ("password", password)],
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    let (_, users) = app.call(admin, "list_users", &[]).await;
    let id = users
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["username"] == name)
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    (client, id)
}

async fn vm_in(app: &TestApp, admin: &Client, name: &str, group: &str) -> String {
    let (s, body) = app
        .call(
            admin,
            "save_vm",
            &[
                ("id", ""),
                ("name", name),
                ("group", group),
                ("addresses", "198.51.100.5"),
                ("os", "linux"),
                ("exposed_ports", "22"),
            ],
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    body.as_str().unwrap().to_owned()
}

/// Sets a VM's policy from `(port, protocol, sources, max minutes, approval)` rows.
async fn set_policy(
    app: &TestApp,
    admin: &Client,
    vm_ids: &[&str],
    rows: &[(&str, &str, &str, &str, bool)],
    extra: &[(&str, &str)],
) -> (StatusCode, Value) {
    let mut form: Vec<(String, String)> = Vec::new();
    for (i, vm) in vm_ids.iter().enumerate() {
        form.push((format!("vm_ids[{i}]"), vm.to_string()));
    }
    for (i, (port, protocol, sources, max, approval)) in rows.iter().enumerate() {
        let k = |f: &str| format!("rules[{i}][{f}]");
        form.push((k("enabled"), "on".into()));
        form.push((k("port"), port.to_string()));
        form.push((k("protocol"), protocol.to_string()));
        form.push((k("allowed_sources"), sources.to_string()));
        form.push((k("max_minutes"), max.to_string()));
        if *approval {
            form.push((k("approval_required"), "on".into()));
        }
    }
    for (k, v) in extra {
        form.push((k.to_string(), v.to_string()));
    }
    let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    app.call(admin, "enable_jit", &form).await
}

/// Requests ports of one VM from a custom source; answers as the portal gets it.
async fn ask(
    app: &TestApp,
    who: &Client,
    vm: &str,
    ports: &[&str],
    source: &str,
    minutes: &str,
) -> (StatusCode, Value) {
    let keys: Vec<String> = ports.iter().map(|p| format!("{vm}:{p}")).collect();
    let mut form = vec![
        ("vm_ids[0]", vm),
        ("source_mode", "custom"),
        ("custom_source", source),
        ("duration", minutes),
        ("justification", "life-cycle test"),
    ];
    let names: Vec<String> = (0..keys.len()).map(|i| format!("ports[{i}]")).collect();
    for (n, k) in names.iter().zip(&keys) {
        form.push((n.as_str(), k.as_str()));
    }
    app.call(who, "request_access", &form).await
}

async fn ask_ok(app: &TestApp, who: &Client, vm: &str, ports: &[&str], source: &str) -> String {
    let (s, body) = ask(app, who, vm, ports, source, "30").await;
    assert_eq!(s, StatusCode::OK, "{body}");
    body[0].as_str().unwrap().to_owned()
}

/// A request as the VM page shows it to an administrator.
async fn request_on(app: &TestApp, admin: &Client, vm: &str, id: &str) -> Value {
    let (s, detail) = app.call(admin, "get_vm", &[("id", vm)]).await;
    assert_eq!(s, StatusCode::OK, "{detail}");
    detail["requests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == id)
        .unwrap_or_else(|| panic!("request {id} not on the VM page: {detail}"))
        .clone()
}

/// (status, reason) of each port of a request.
async fn port_states(app: &TestApp, admin: &Client, vm: &str, id: &str) -> Vec<(String, String)> {
    request_on(app, admin, vm, id).await["ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["status"].as_str().unwrap().to_owned(),
                p["reason"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// The activity log rows with this action, newest first.
async fn logged(app: &TestApp, admin: &Client, action: &str) -> Vec<Value> {
    let (s, page) = app.call(admin, "activity", &[("action", action)]).await;
    assert_eq!(s, StatusCode::OK, "{page}");
    page["rows"].as_array().unwrap().clone()
}

/// An enrolled agent for `vm` and the generation it has applied so far.
async fn agent_for(app: &TestApp, admin: &Client, vm: &str, host: &str) -> (Agent, i64) {
    let token = token_for(app, admin, vm).await;
    let (s, enrolled) = enroll(app, &token, host).await;
    assert_eq!(s, StatusCode::OK, "{enrolled}");
    let agent = Agent::from_enrollment(&enrolled);
    let (_, state) = agent.state(app, -1, 0).await;
    (agent, state["generation"].as_i64().unwrap())
}

#[tokio::test]
async fn disabling_a_user_ends_their_access_at_once_and_nothing_of_theirs_can_be_approved() {
    let (app, admin) = portal().await;
    let web = vm_in(&app, &admin, "web-1", "prod").await;
    let win = vm_in(&app, &admin, "win-1", "prod").await;
    set_policy(
        &app,
        &admin,
        &[&web],
        &[("22", "tcp", "", "60", false)],
        &[],
    )
    .await;
    set_policy(
        &app,
        &admin,
        &[&win],
        &[("3389", "tcp", "", "60", true)],
        &[],
    )
    .await;
    let (rita, rita_id) = user(&app, &admin, "rita", "requester", "all", "").await;
    let (approver, _) = user(&app, &admin, "alice", "approver", "all", "").await;
    let active = ask_ok(&app, &rita, &web, &["22/tcp"], "198.51.100.10").await;
    let pending = ask_ok(&app, &rita, &win, &["3389/tcp"], "198.51.100.10").await;

    // The agent waits for news of its VM; the disable must reach it at once.
    let (agent, applied) = agent_for(&app, &admin, &web, "web-1").await;
    let (_, state) = agent.state(&app, -1, 0).await;
    assert_eq!(state["grants"].as_array().unwrap().len(), 1, "{state}");
    let poll = agent.long_poll(&app, state["generation"].as_i64().unwrap());
    assert!(applied >= 0);

    let started = std::time::Instant::now();
    let (s, body) = app
        .call(
            &admin,
            "set_user_disabled",
            &[("user_id", &rita_id), ("disabled", "true")],
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    let (answered, state) = poll.await.unwrap();
    assert!(
        answered.duration_since(started) < std::time::Duration::from_secs(2),
        "the agent heard of the disable at once"
    );
    assert_eq!(state["grants"], json!([]), "the port closes: {state}");

    assert_eq!(
        port_states(&app, &admin, &web, &active).await,
        vec![("revoked".to_owned(), "requester disabled".to_owned())]
    );
    let closed = request_on(&app, &admin, &win, &pending).await;
    assert_eq!(closed["status"], "cancelled", "{closed}");
    assert_eq!(closed["ports"][0]["reason"], "requester disabled");
    let (s, body) = app
        .call(
            &approver,
            "decide_request",
            &[("id", &pending), ("decision", "approve")],
        )
        .await;
    assert_eq!(s, StatusCode::CONFLICT, "{body}");
    let revoked = logged(&app, &admin, "revoke").await;
    assert!(
        revoked.iter().any(
            |e| e["detail"] == "access of rita ended: requester disabled" && e["actor"] == "admin"
        ),
        "{revoked:?}"
    );
    assert!(!logged(&app, &admin, "request.cancel").await.is_empty());
    assert_eq!(logged(&app, &admin, "user.disable").await.len(), 1);
}

#[tokio::test]
async fn removing_a_role_ends_what_only_that_role_allowed() {
    let (app, admin) = portal().await;
    let web = vm_in(&app, &admin, "web-1", "prod").await;
    let db = vm_in(&app, &admin, "db-1", "dev").await;
    let win = vm_in(&app, &admin, "win-1", "prod").await;
    set_policy(
        &app,
        &admin,
        &[&web],
        &[("22", "tcp", "", "60", false)],
        &[],
    )
    .await;
    set_policy(&app, &admin, &[&db], &[("22", "tcp", "", "60", false)], &[]).await;
    set_policy(
        &app,
        &admin,
        &[&win],
        &[("3389", "tcp", "", "60", true)],
        &[],
    )
    .await;
    let (rita, rita_id) = user(&app, &admin, "rita", "requester", "group", "prod").await;
    let (s, body) = app
        .call(
            &admin,
            "add_role",
            &[
                ("user_id", &rita_id),
                ("role", "requester"),
                ("scope_kind", "group"),
                ("scope_target", "dev"),
            ],
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    let on_prod = ask_ok(&app, &rita, &web, &["22/tcp"], "198.51.100.10").await;
    let on_dev = ask_ok(&app, &rita, &db, &["22/tcp"], "198.51.100.10").await;
    let waiting = ask_ok(&app, &rita, &win, &["3389/tcp"], "198.51.100.10").await;

    let (_, users) = app.call(&admin, "list_users", &[]).await;
    let prod_role = users
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["username"] == "rita")
        .unwrap()["roles"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["scope"] == "group prod")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (s, body) = app
        .call(&admin, "remove_role", &[("assignment_id", &prod_role)])
        .await;
    assert_eq!(s, StatusCode::OK, "{body}");

    assert_eq!(
        port_states(&app, &admin, &web, &on_prod).await,
        vec![("revoked".to_owned(), "requester lost permission".to_owned())]
    );
    assert_eq!(
        port_states(&app, &admin, &db, &on_dev).await,
        vec![("active".to_owned(), String::new())],
        "the dev role still allows the dev grant"
    );
    let w = request_on(&app, &admin, &win, &waiting).await;
    assert_eq!(w["status"], "cancelled", "{w}");
    assert_eq!(w["ports"][0]["reason"], "requester lost permission");
    let removed = logged(&app, &admin, "role.remove").await;
    assert_eq!(removed.len(), 1);
    assert!(
        removed[0]["detail"]
            .as_str()
            .unwrap()
            .contains("rita: requester on group prod"),
        "{removed:?}"
    );
}

#[tokio::test]
async fn editing_a_policy_ends_or_shortens_the_grants_that_no_longer_fit() {
    let (app, admin) = portal().await;
    let web = vm_in(&app, &admin, "web-1", "prod").await;
    set_policy(
        &app,
        &admin,
        &[&web],
        &[
            ("22", "tcp", "", "60", false),
            ("2222", "tcp", "", "60", false),
            ("8080", "any", "", "60", false),
            ("3389", "tcp", "", "60", false),
        ],
        &[],
    )
    .await;
    let (rita, _) = user(&app, &admin, "rita", "requester", "all", "").await;
    let (agent, _) = agent_for(&app, &admin, &web, "web-1").await;
    let long = ask_ok(&app, &rita, &web, &["22/tcp"], "198.51.100.0/24").await;
    let dropped = ask_ok(&app, &rita, &web, &["2222/tcp"], "198.51.100.10").await;
    let narrowed = ask_ok(&app, &rita, &web, &["8080/any"], "198.51.100.10").await;
    let outside = ask_ok(&app, &rita, &web, &["3389/tcp"], "203.0.113.7").await;

    // 2222 goes; 8080 becomes TCP only; 3389 only from 198.51.100.0/24; 22 at most 10 min.
    let (s, body) = set_policy(
        &app,
        &admin,
        &[&web],
        &[
            ("22", "tcp", "", "10", false),
            ("8080", "tcp", "", "60", false),
            ("3389", "tcp", "198.51.100.0/24", "60", false),
        ],
        &[],
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{body}");

    let state = |reason: &str| vec![("revoked".to_owned(), reason.to_owned())];
    assert_eq!(
        port_states(&app, &admin, &web, &dropped).await,
        state("port removed from policy")
    );
    assert_eq!(
        port_states(&app, &admin, &web, &narrowed).await,
        state("protocol no longer allowed by the policy")
    );
    assert_eq!(
        port_states(&app, &admin, &web, &outside).await,
        state("source outside the policy's allowed sources")
    );
    assert_eq!(
        port_states(&app, &admin, &web, &long).await,
        vec![(
            "active".to_owned(),
            "shortened to the policy's new maximum".to_owned()
        )]
    );
    // The agent gets one grant, ending within the new maximum.
    let (_, now) = agent.state(&app, -1, 0).await;
    let grants = now["grants"].as_array().unwrap();
    assert_eq!(grants.len(), 1, "{now}");
    assert_eq!(grants[0]["port"], 22);
    let left = grants[0]["expires_in_ms"].as_i64().unwrap();
    assert!(left <= 10 * 60_000 && left > 9 * 60_000, "{left}");
    assert!(!logged(&app, &admin, "shorten").await.is_empty());
}

#[tokio::test]
async fn a_bulk_edit_never_silently_replaces_differing_policies() {
    let (app, admin) = portal().await;
    let a = vm_in(&app, &admin, "web-1", "prod").await;
    let b = vm_in(&app, &admin, "web-2", "prod").await;
    set_policy(&app, &admin, &[&a], &[("22", "tcp", "", "60", true)], &[]).await;
    set_policy(
        &app,
        &admin,
        &[&b],
        &[
            ("22", "tcp", "", "60", false),
            ("8080", "tcp", "", "60", false),
        ],
        &[],
    )
    .await;

    // The form says the policies differ and what each has; it does not offer defaults.
    let (s, form) = app
        .call(
            &admin,
            "load_policy_form",
            &[("vm_ids[0]", &a), ("vm_ids[1]", &b)],
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{form}");
    let differing = form["differing"].as_array().unwrap();
    assert_eq!(differing.len(), 2, "{form}");
    assert!(differing[0].as_str().unwrap().starts_with("web-1: 22/tcp"));
    assert!(differing[0].as_str().unwrap().contains("approval required"));
    assert!(differing[1].as_str().unwrap().contains("8080/tcp"));

    // Saving both with the form's rules is refused until confirmed, naming the losses.
    let rows = [("22", "tcp", "", "60", false)];
    let (s, body) = set_policy(&app, &admin, &[&a, &b], &rows, &[]).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let message = field_error(&body, "replace_differing").unwrap();
    assert!(
        message.contains("web-1: 22/tcp: approval no longer required"),
        "{message}"
    );
    assert!(message.contains("web-2: 8080/tcp is removed"), "{message}");
    let (_, detail) = app.call(&admin, "get_vm", &[("id", &a)]).await;
    assert_eq!(
        detail["policy"][0]["approval_required"], true,
        "nothing changed"
    );

    let (s, body) = set_policy(
        &app,
        &admin,
        &[&a, &b],
        &rows,
        &[("replace_differing", "on")],
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    for vm in [&a, &b] {
        let (_, detail) = app.call(&admin, "get_vm", &[("id", vm)]).await;
        assert_eq!(detail["policy"].as_array().unwrap().len(), 1);
        assert_eq!(detail["policy"][0]["approval_required"], false);
    }

    // Now they agree: the form starts from their rules, and saving needs no confirmation.
    let (_, form) = app
        .call(
            &admin,
            "load_policy_form",
            &[("vm_ids[0]", &a), ("vm_ids[1]", &b)],
        )
        .await;
    assert_eq!(form["differing"], json!([]));
    assert_eq!(form["rows"].as_array().unwrap().len(), 1);
    assert_eq!(form["rows"][0]["max_minutes"], "60");
    let (s, body) = set_policy(
        &app,
        &admin,
        &[&a, &b],
        &[("22", "tcp", "", "30", false)],
        &[],
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{body}");
}

#[tokio::test]
async fn sources_are_canonical_bounded_and_ports_unique() {
    let (app, admin) = portal().await;
    let web = vm_in(&app, &admin, "web-1", "prod").await;
    set_policy(
        &app,
        &admin,
        &[&web],
        &[
            ("22", "tcp", "10.0.0.0/24", "60", false),
            ("2222", "tcp", "", "60", false),
        ],
        &[],
    )
    .await;
    let (rita, _) = user(&app, &admin, "rita", "requester", "all", "").await;
    for (ports, source, why) in [
        (&["22/tcp"][..], "::ffff:10.0.0.0/103", "10.0.0.0/7"),
        (&["2222/tcp"][..], "0.0.0.0/1", "wider than the /24"),
        (&["2222/tcp"][..], "2001:db8::/32", "wider than the /64"),
        (
            &["2222/tcp", "2222/tcp"][..],
            "198.51.100.10",
            "chosen twice",
        ),
    ] {
        let (s, body) = ask(&app, &rita, &web, ports, source, "30").await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{source}: {body}");
        let field = if why == "chosen twice" {
            "ports"
        } else {
            "source"
        };
        let message = field_error(&body, field).unwrap_or_default();
        assert!(message.contains(why), "{source}: {body}");
    }
    // A mapped address is its IPv4 address.
    let id = ask_ok(&app, &rita, &web, &["22/tcp"], "::ffff:10.0.0.7").await;
    assert_eq!(
        request_on(&app, &admin, &web, &id).await["source"],
        "10.0.0.7/32"
    );
    let (_, detail) = app.call(&admin, "get_vm", &[("id", &web)]).await;
    assert_eq!(detail["vm"]["grants"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn vm_scoped_roles_name_an_existing_vm_and_work_on_it() {
    let (app, admin) = portal().await;
    let web = vm_in(&app, &admin, "web-1", "prod").await;
    let other = vm_in(&app, &admin, "web-2", "prod").await;
    set_policy(
        &app,
        &admin,
        &[&web, &other],
        &[("22", "tcp", "", "60", false)],
        &[],
    )
    .await;
    for (kind, target, message) in [
        ("vm", "web-9", "No VM is named 'web-9'"),
        ("group", "nowhere", "No VM is in a group named 'nowhere'"),
    ] {
        let (s, body) = app
            .call(
                &admin,
                "create_user",
                &[
                    ("username", "ghost"),
                    ("display_name", "ghost"),
                    ("password", "a perfectly good passphrase"),
                    ("role", "requester"),
                    ("scope_kind", kind),
                    ("scope_target", target),
                ],
            )
            .await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        assert!(
            field_error(&body, "scope_target")
                .unwrap()
                .contains(message),
            "{body}"
        );
    }
    let (rita, _) = user(&app, &admin, "rita", "requester", "vm", "web-1").await;
    let (_, me) = app.call(&rita, "whoami", &[]).await;
    assert_eq!(me["roles"][0]["scope"], "VM web-1", "{me}");
    ask_ok(&app, &rita, &web, &["22/tcp"], "198.51.100.10").await;
    let (s, _) = ask(&app, &rita, &other, &["22/tcp"], "198.51.100.10", "30").await;
    assert_eq!(s, StatusCode::NOT_FOUND, "another VM stays invisible");
}

#[tokio::test]
async fn the_last_administrator_survives_two_concurrent_removals() {
    let (app, admin) = portal().await;
    let (second, second_id) = user(&app, &admin, "second", "admin", "all", "").await;
    let (_, users) = app.call(&admin, "list_users", &[]).await;
    let role_of = |name: &str| {
        users
            .as_array()
            .unwrap()
            .iter()
            .find(|u| u["username"] == name)
            .unwrap()["roles"][0]["id"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let (first_role, second_role) = (role_of("admin"), role_of("second"));
    // Each administrator removes the other's role at the same moment.
    let remove_second = [("assignment_id", second_role.as_str())];
    let remove_first = [("assignment_id", first_role.as_str())];
    let (a, b) = tokio::join!(
        app.call(&admin, "remove_role", &remove_second),
        app.call(&second, "remove_role", &remove_first),
    );
    // The other is refused: as the last administrator (409), or, when it was decided after
    // the first committed, because its caller no longer is an administrator (403).
    let mut statuses = [a.0, b.0];
    statuses.sort();
    assert!(
        statuses == [StatusCode::OK, StatusCode::FORBIDDEN]
            || statuses == [StatusCode::OK, StatusCode::CONFLICT],
        "exactly one removal passes: {a:?} {b:?}"
    );
    let (_, users) = app.call(&admin, "list_users", &[]).await;
    let (_, users2) = app.call(&second, "list_users", &[]).await;
    let admins = [users, users2]
        .iter()
        .filter_map(|u| u.as_array().cloned())
        .flatten()
        .filter(|u| {
            u["roles"]
                .as_array()
                .unwrap()
                .iter()
                .any(|r| r["role"] == "admin" && r["scope"] == "all")
        })
        .map(|u| u["username"].as_str().unwrap().to_owned())
        .collect::<std::collections::BTreeSet<_>>();
    assert_eq!(admins.len(), 1, "one administrator over everything is left");

    // The same for disabling: a third admin and the survivor disable each other.
    let survivor = if admins.contains("admin") {
        &admin
    } else {
        &second
    };
    let (third, third_id) = user(&app, survivor, "third", "admin", "all", "").await;
    let (_, me) = app.call(survivor, "whoami", &[]).await;
    let survivor_id = me["id"].as_str().unwrap().to_owned();
    let disable_third = [("user_id", third_id.as_str()), ("disabled", "true")];
    let disable_survivor = [("user_id", survivor_id.as_str()), ("disabled", "true")];
    let (a, b) = tokio::join!(
        app.call(survivor, "set_user_disabled", &disable_third),
        app.call(&third, "set_user_disabled", &disable_survivor),
    );
    let ok = [a.0, b.0].iter().filter(|s| **s == StatusCode::OK).count();
    assert_eq!(ok, 1, "exactly one disable passes: {a:?} {b:?}");
    // And an enabled administrator over everything remains, who can still administer.
    let (s1, _) = app.call(survivor, "list_users", &[]).await;
    let (s2, _) = app.call(&third, "list_users", &[]).await;
    assert_eq!(
        [s1, s2].iter().filter(|s| **s == StatusCode::OK).count(),
        1,
        "exactly one of the two is still an enabled administrator"
    );
    let _ = second_id;
}

#[tokio::test]
async fn a_password_change_or_reset_ends_the_users_other_sessions_and_is_logged() {
    let (app, admin) = portal().await;
    let (rita, rita_id) = user(&app, &admin, "rita", "reader", "all", "").await;
    let laptop = browser();
    let (s, _) = app
        .call(
            &laptop,
            "login",
            &[
                ("username", "rita"),
                ("password", "a perfectly good passphrase"),
            ],
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let new = "another perfectly good passphrase";
    let (s, body) = app
        .call(
            &rita,
            "change_password",
            &[
                ("current_password", "a perfectly good passphrase"),
                ("new_password", new),
                ("confirm_password", new),
            ],
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    let (s, _) = app.call(&rita, "my_requests", &[]).await;
    assert_eq!(s, StatusCode::OK, "the session that changed it goes on");
    let (s, _) = app.call(&laptop, "my_requests", &[]).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "the other session ended");
    let changes = logged(&app, &admin, "password.change").await;
    assert_eq!(
        changes.iter().filter(|e| e["actor"] == "rita").count(),
        1,
        "{changes:?}"
    );

    // An administrator's reset ends every session and forces a change.
    let (s, body) = app
        .call(
            &admin,
            "reset_password",
            &[
                ("user_id", &rita_id),
                ("password", "a temporary passphrase 1"),
            ],
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    let (s, _) = app.call(&rita, "my_requests", &[]).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let again = browser();
    let (s, _) = app
        .call(
            &again,
            "login",
            &[
                ("username", "rita"),
                ("password", "a temporary passphrase 1"),
            ],
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let (s, _) = app.call(&again, "my_requests", &[]).await;
    assert_eq!(
        s,
        StatusCode::FORBIDDEN,
        "the temporary password must be changed"
    );
    assert_eq!(logged(&app, &admin, "password.reset").await.len(), 1);
}

#[tokio::test]
async fn the_end_time_shown_is_the_end_enforced() {
    let (app, admin) = portal().await;
    let web = vm_in(&app, &admin, "web-1", "prod").await;
    set_policy(
        &app,
        &admin,
        &[&web],
        &[("22", "tcp", "", "60", false)],
        &[],
    )
    .await;
    let (rita, _) = user(&app, &admin, "rita", "requester", "all", "").await;
    let (agent, _) = agent_for(&app, &admin, &web, "web-1").await;
    let id = ask_ok(&app, &rita, &web, &["22/tcp"], "198.51.100.10").await;
    let shown = request_on(&app, &admin, &web, &id).await["end_at"]
        .as_i64()
        .unwrap();
    assert_eq!(shown % 1000, 0, "grants end on a whole second: {shown}");
    let (_, state) = agent.state(&app, -1, 0).await;
    let enforced = state["server_time_ms"].as_i64().unwrap()
        + state["grants"][0]["expires_in_ms"].as_i64().unwrap();
    assert_eq!(
        enforced, shown,
        "the agent closes the port at the time shown"
    );
}
