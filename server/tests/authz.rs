//! Every server function, called as every role (and signed out): allowed or refused as
//! the permission matrix says. "Allowed" means the permission check passed (the call may
//! still fail on its input or on the request's state); "refused" means 403 Forbidden.

mod common;

use common::*;
use reqwest::StatusCode;
use serde_json::Value;

const ROLES: [&str; 4] = ["reader", "requester", "approver", "admin"];

/// A server function, its form arguments, and the roles allowed to call it.
type Call<'a> = (&'a str, Vec<(&'a str, &'a str)>, &'a [&'a str]);

#[tokio::test]
async fn every_server_function_checks_the_callers_role() {
    let app = spawn_app().await;
    let admin = browser();
    app.admin_ready(&admin).await;

    let web = app.add_vm(&admin, "web-1", "linux").await;
    app.enable(&admin, &web, "22", false).await;
    let win = app.add_vm(&admin, "win-1", "windows").await;
    app.enable(&admin, &win, "3389", true).await;
    let doomed = app.add_vm(&admin, "tmp-delete", "linux").await;
    let unpolicy = app.add_vm(&admin, "tmp-policy", "linux").await;
    app.enable(&admin, &unpolicy, "22", false).await;

    let mut clients = Vec::new();
    for role in ROLES {
        let (client, _) = app.user_with_role(&admin, &format!("{role}1"), role).await;
        clients.push((role, client));
    }
    let requester = &clients[1].1;
    let active = app.request(requester, &web, "22", "30").await;
    let active2 = app.request(requester, &web, "22", "20").await;
    let pending = app.request(requester, &win, "3389", "30").await;
    let pending2 = app.request(requester, &win, "3389", "20").await;
    let (_, users) = app.call(&admin, "list_users", &[]).await;
    let victim = users
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["username"] == "reader1")
        .unwrap()
        .clone();
    let victim_id = victim["id"].as_str().unwrap().to_owned();
    let victim_role = victim["roles"][0]["id"].as_str().unwrap().to_owned();

    let web_key = format!("{web}:22/tcp");
    let calls: Vec<Call> = vec![
        ("whoami", vec![], &ROLES),
        ("list_vms", vec![("tab", "configured")], &ROLES),
        ("get_vm", vec![("id", &web)], &ROLES),
        ("my_requests", vec![], &ROLES),
        ("activity", vec![], &ROLES),
        (
            "activity_suggestions",
            vec![("field", "vm"), ("typed", "web")],
            &ROLES,
        ),
        (
            "load_request_blade",
            vec![("vm_ids[0]", &web)],
            &["requester", "approver", "admin"],
        ),
        (
            "request_access",
            vec![
                ("vm_ids[0]", &web),
                ("ports[0]", &web_key),
                ("source_mode", "my_ip"),
                ("duration", "5"),
            ],
            &["requester", "approver", "admin"],
        ),
        (
            "decide_request",
            vec![("id", &pending), ("decision", "approve")],
            &["approver", "admin"],
        ),
        (
            "decide_request",
            vec![("id", &pending2), ("decision", "deny")],
            &["approver", "admin"],
        ),
        (
            "extend_request",
            vec![("id", &active2), ("duration", "50")],
            &["requester", "admin"],
        ),
        (
            "revoke_request",
            vec![("id", &active)],
            &["requester", "admin"],
        ),
        (
            "save_vm",
            vec![
                ("id", ""),
                ("name", "new-vm"),
                ("group", "prod"),
                ("os", "linux"),
            ],
            &["admin"],
        ),
        (
            "save_vm",
            vec![
                ("id", &web),
                ("name", "web-1"),
                ("group", "prod"),
                ("os", "linux"),
            ],
            &["admin"],
        ),
        ("load_policy_form", vec![("vm_ids[0]", &web)], &["admin"]),
        ("create_enrollment_token", vec![("vm_id", &web)], &["admin"]),
        (
            "create_enrollment_token",
            vec![("vm_id", ""), ("group", "prod")],
            &["admin"],
        ),
        (
            "enable_jit",
            vec![
                ("vm_ids[0]", &web),
                ("rules[0][enabled]", "on"),
                ("rules[0][port]", "22"),
                ("rules[0][protocol]", "tcp"),
            ],
            &["admin"],
        ),
        // The plain form's "Add port" stores nothing but a draft, and only for those who
        // may save the form.
        (
            "enable_jit",
            vec![
                ("vm_ids[0]", &web),
                ("rules[0][port]", "22"),
                ("add_row", "on"),
            ],
            &["admin"],
        ),
        ("remove_policy", vec![("vm_id", &unpolicy)], &["admin"]),
        ("delete_vm", vec![("id", &doomed)], &["admin"]),
        (
            "import_vms",
            vec![
                ("csv", "name,group\nimported-1,prod\n"),
                ("step", "preview"),
            ],
            &["admin"],
        ),
        ("take_import_preview", vec![], &ROLES),
        ("list_users", vec![], &["admin"]),
        (
            "create_user",
            vec![
                ("username", "zed"),
                ("display_name", "Zed"),
                ("password", "zed's long password"),
                ("role", "reader"),
                ("scope_kind", "all"),
                ("scope_target", ""),
            ],
            &["admin"],
        ),
        (
            "add_role",
            vec![
                ("user_id", &victim_id),
                ("role", "approver"),
                ("scope_kind", "group"),
                ("scope_target", "dev"),
            ],
            &["admin"],
        ),
        (
            "remove_role",
            vec![("assignment_id", &victim_role)],
            &["admin"],
        ),
        (
            "set_user_disabled",
            vec![("user_id", &victim_id), ("disabled", "false")],
            &["admin"],
        ),
        ("sign_in_options", vec![], &ROLES),
        ("list_group_rules", vec![], &["admin"]),
        ("list_all_api_tokens", vec![], &["admin"]),
        (
            "add_group_rule",
            vec![
                ("provider", "corp"),
                ("group", "ops"),
                ("role", "reader"),
                ("scope_kind", "all"),
                ("scope_target", ""),
            ],
            &["admin"],
        ),
        (
            "remove_group_rule",
            vec![("rule_id", "no-such-rule")],
            &["admin"],
        ),
    ];

    let anonymous = browser();
    let mut checked = 0;
    for (name, form, allowed) in &calls {
        let (status, body) = app.call(&anonymous, name, form).await;
        assert!(!status.is_server_error(), "{name}: {body}");
        if *name == "whoami" {
            assert_eq!((status, &body), (StatusCode::OK, &Value::Null));
        } else if *name == "sign_in_options" {
            // The sign-in page needs it before anyone is signed in.
            assert_eq!(status, StatusCode::OK, "{body}");
        } else {
            assert_eq!(
                status,
                StatusCode::UNAUTHORIZED,
                "{name} signed out: {body}"
            );
        }
        for (role, client) in &clients {
            let (status, body) = app.call(client, name, form).await;
            let refused = status == StatusCode::FORBIDDEN;
            assert_ne!(status, StatusCode::UNAUTHORIZED, "{name} as {role}");
            assert!(
                status != StatusCode::INTERNAL_SERVER_ERROR,
                "{name} as {role}: {body}"
            );
            if allowed.contains(role) {
                assert!(!refused, "{role} may call {name}: {body}");
            } else {
                assert!(refused, "{role} must not call {name}, got {status}: {body}");
                assert_eq!(body, Value::String("Forbidden".into()));
            }
            checked += 1;
        }
    }
    assert_eq!(checked, calls.len() * ROLES.len());

    // Nobody approves their own request, whatever their role.
    let (approver_client, _) = app.user_with_role(&admin, "selfish", "approver").await;
    let own = app.request(&approver_client, &win, "3389", "10").await;
    let (status, body) = app
        .call(
            &approver_client,
            "decide_request",
            &[("id", &own), ("decision", "approve")],
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert!(
        body["Conflict"]
            .as_str()
            .unwrap()
            .contains("your own request")
    );
}

#[tokio::test]
async fn malformed_arguments_are_refused_as_bad_requests() {
    let app = spawn_app().await;
    let admin = browser();
    app.admin_ready(&admin).await;
    let (status, body) = app
        .call(&admin, "decide_request", &[("decision", "approve")])
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(
        body["Transport"]
            .as_str()
            .unwrap()
            .contains("missing field `id`")
    );
    let (status, _) = app
        .call(&admin, "list_vms", &[("page", "not-a-number")])
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}
