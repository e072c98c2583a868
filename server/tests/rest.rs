//! The REST API over a real socket: tokens, every endpoint as every role, bad input, and
//! the request life cycle in Azure's shapes.

mod common;

use common::rest::{Api, api_token, database_url, field, initiate, message, policy, scoped_user};
use common::*;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

const ROLES: [&str; 4] = ["reader", "requester", "approver", "admin"];

/// An app with a signed-in admin session and an admin API token.
async fn admin_api() -> (TestApp, reqwest::Client, Api) {
    let app = spawn_app().await;
    let admin = browser();
    app.admin_ready(&admin).await;
    let token = api_token(&app, &admin, "admin script").await;
    let api = Api::new(&app, &token);
    (app, admin, api)
}

async fn add_vm(api: &Api, name: &str, group: &str) -> String {
    let (s, body) = api
        .post(
            "/api/v1/vms",
            &json!({"name": name, "group": group, "addresses": ["198.51.100.5"], "os": "linux", "exposedPorts": [22]}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{body}");
    body["id"].as_str().unwrap().to_owned()
}

async fn put_policy(api: &Api, vm: &str, body: &Value) {
    let (s, b) = api.put(&format!("/api/v1/jitPolicies/{vm}"), body).await;
    assert_eq!(s, StatusCode::OK, "{b}");
}

async fn open(api: &Api, vm: &str, body: &Value) -> Value {
    let (s, b) = api
        .post(&format!("/api/v1/jitPolicies/{vm}/initiate"), body)
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{b}");
    b
}

#[tokio::test]
async fn the_openapi_document_and_reference_page_describe_every_endpoint() {
    let (app, _admin, api) = admin_api().await;
    let anonymous = reqwest::Client::new();
    let res = anonymous
        .get(format!("{}/api/v1/openapi.json", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let doc: Value = res.json().await.unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let paths = doc["paths"].as_object().unwrap();
    for p in [
        "/api/v1/me",
        "/api/v1/tokens",
        "/api/v1/tokens/{id}",
        "/api/v1/vms",
        "/api/v1/vms/{vm}",
        "/api/v1/jitPolicies",
        "/api/v1/jitPolicies/{vm}",
        "/api/v1/jitPolicies/{vm}/initiate",
        "/api/v1/requests",
        "/api/v1/requests/{id}",
        "/api/v1/requests/{id}/approve",
        "/api/v1/requests/{id}/deny",
        "/api/v1/requests/{id}/revoke",
        "/api/v1/requests/{id}/extend",
        "/api/v1/activity",
        "/api/v1/activity/export",
        "/api/v1/notificationChannels",
        "/api/v1/notificationChannels/{id}",
        "/api/v1/notificationChannels/{id}/test",
        "/api/v1/notificationChannels/{id}/messages",
        "/api/v1/notificationRoutes",
        "/api/v1/notificationRoutes/{id}",
        "/api/v1/me/notifications",
    ] {
        assert!(paths.contains_key(p), "{p} missing from the document");
    }
    assert!(doc["components"]["securitySchemes"]["bearer"].is_object());
    assert!(doc["components"]["schemas"]["PolicyInput"].is_object());

    let res = anonymous
        .get(format!("{}/api/v1/reference", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let html = res.text().await.unwrap();
    assert!(html.contains("/api/v1/jitPolicies/{vm}/initiate"));
    assert!(
        html.contains("maxRequestAccessDuration") && html.contains("ISO 8601"),
        "the schemas' fields are explained"
    );
    assert!(!html.contains("<script"), "the page needs no scripts");

    let (s, body) = api.get("/api/v1/nothing-here").await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_eq!(body["error"]["code"], "not_found");
}

#[tokio::test]
async fn api_tokens_are_checked_on_every_call_with_clear_refusals() {
    let (app, admin, api) = admin_api().await;
    let (s, me) = api.get("/api/v1/me").await;
    assert_eq!(s, StatusCode::OK, "{me}");
    assert_eq!(me["username"], "admin");
    assert_eq!(me["roles"][0]["role"], "admin");

    // The page gets the new token in the answer; the list never repeats it (see
    // a_new_token_waits_in_the_session_only_for_a_plain_form_post).
    let (_, page) = app.call(&admin, "list_api_tokens", &[]).await;
    assert_eq!(page["new_token"], Value::Null, "shown once: {page}");
    let (_, created) = app
        .call(&admin, "create_api_token", &[("name", "once")])
        .await;
    assert!(created["token"].as_str().unwrap().starts_with("pcu_"));
    let (_, page) = app.call(&admin, "list_api_tokens", &[]).await;
    assert_eq!(page["new_token"], Value::Null);
    let (s, body) = app
        .call(
            &admin,
            "create_api_token",
            &[("name", ""), ("expires_days", "400")],
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(field_error(&body, "name").is_some() && field_error(&body, "expires_days").is_some());

    let http = reqwest::Client::new();
    let (s, list) = api.get("/api/v1/tokens").await;
    assert_eq!(s, StatusCode::OK);
    let text = list.to_string();
    assert!(
        !text.contains(&api.token[20..]),
        "secrets never leave the server"
    );
    assert_eq!(list["value"].as_array().unwrap().len(), 2);

    let me_url = format!("{}/api/v1/me", app.base);
    let res = http.get(&me_url).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert!(res.headers().contains_key("www-authenticate"));
    let (_, body) = common::rest::read(res).await;
    assert!(message(&body).contains("Bearer"), "{body}");
    // A signed-in browser session is not an API credential, so a cross-site form post
    // with the victim's cookies gets nowhere.
    let res = admin.get(&me_url).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    let res = admin
        .post(format!("{}/api/v1/vms", app.base))
        .header("origin", "https://evil.example")
        .json(&json!({"name": "evil", "group": "prod"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    // A token needs no Origin check: a script that sends one is not refused for it.
    let res = http
        .post(format!("{}/api/v1/vms", app.base))
        .bearer_auth(&api.token)
        .header("origin", "https://tools.example")
        .json(&json!({"name": "from-a-tool", "group": "prod"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::CREATED);

    for (header, expect) in [
        ("Basic YWRtaW46eA==".to_owned(), "does not carry"),
        ("Bearer not-a-token".to_owned(), "does not carry"),
        (
            format!("Bearer {}x", &api.token[..api.token.len() - 1]),
            "not valid",
        ),
    ] {
        let res = http
            .get(&me_url)
            .header("authorization", header)
            .send()
            .await
            .unwrap();
        let (s, body) = common::rest::read(res).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED, "{body}");
        assert!(message(&body).contains(expect), "{body}");
    }

    // Expired: time passes for the token.
    let expiring = api_token(&app, &admin, "short").await;
    let id = expiring.split('_').nth(1).unwrap().to_owned();
    let store = portcullis_app::store::Store::connect(&database_url(&app))
        .await
        .unwrap();
    store.set_api_token_expiry(&id, 1).await.unwrap();
    let (s, body) = Api::new(&app, &expiring).get("/api/v1/me").await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert!(message(&body).contains("expired"), "{body}");

    // Revoked through the API: the very next call is refused.
    let doomed = api_token(&app, &admin, "doomed").await;
    let doomed_id = doomed.split('_').nth(1).unwrap().to_owned();
    let (s, _) = api.delete(&format!("/api/v1/tokens/{doomed_id}")).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, body) = Api::new(&app, &doomed).get("/api/v1/me").await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert!(message(&body).contains("revoked"), "{body}");
    let (s, _) = api.delete(&format!("/api/v1/tokens/{doomed_id}")).await;
    assert_eq!(s, StatusCode::CONFLICT);

    // Someone else's token cannot be revoked (or even found) by a user who does not
    // administer accounts; an administrator over everything revokes anyone's.
    let other = scoped_user(&app, &admin, "other", "reader", "all", "").await;
    let other_token = api_token(&app, &other, "theirs").await;
    let admin_id = api.token.split('_').nth(1).unwrap().to_owned();
    let (s, _) = Api::new(&app, &other_token)
        .delete(&format!("/api/v1/tokens/{admin_id}"))
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let lost = api_token(&app, &other, "lost laptop").await;
    let lost_id = lost.split('_').nth(1).unwrap().to_owned();
    let owned_by = |list: &Value, owner: &str, name: &str| {
        list["value"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["owner"] == owner && t["name"] == name)
    };
    let (s, list) = api.get("/api/v1/tokens?all=true").await;
    assert_eq!(s, StatusCode::OK, "{list}");
    assert!(owned_by(&list, "other", "lost laptop"), "{list}");
    assert!(owned_by(&list, "admin", "admin script"), "{list}");
    assert!(
        !owned_by(&list, "admin", "doomed"),
        "revoked tokens are not in force: {list}"
    );
    let (s, body) = Api::new(&app, &other_token)
        .get("/api/v1/tokens?all=true")
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{body}");
    let (s, body) = api.get("/api/v1/tokens?all=maybe").await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{body}");
    assert!(
        message(&body).contains("all"),
        "names the parameter: {body}"
    );
    let (s, _) = api.delete(&format!("/api/v1/tokens/{lost_id}")).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (_, list) = api.get("/api/v1/tokens?all=true").await;
    assert!(!owned_by(&list, "other", "lost laptop"), "{list}");
    assert!(owned_by(&list, "other", "theirs"), "{list}");
    let (s, body) = Api::new(&app, &lost).get("/api/v1/me").await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert!(message(&body).contains("revoked"), "{body}");

    // A token acts with its owner's roles as they are at each call.
    let reader = Api::new(&app, &other_token);
    let vm = add_vm(&api, "web-1", "prod").await;
    put_policy(&api, &vm, &policy(22, "PT1H", false)).await;
    let (s, _) = reader
        .post("/api/v1/jitPolicies/web-1/initiate", &initiate(22, "PT5M"))
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (_, users) = app.call(&admin, "list_users", &[]).await;
    let other_user = users
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["username"] == "other")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (s, b) = app
        .call(
            &admin,
            "add_role",
            &[
                ("user_id", &other_user),
                ("role", "requester"),
                ("scope_kind", "all"),
                ("scope_target", ""),
            ],
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let (s, b) = reader
        .post("/api/v1/jitPolicies/web-1/initiate", &initiate(22, "PT5M"))
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{b}");

    // A disabled owner's tokens stop working.
    let (s, _) = app
        .call(
            &admin,
            "set_user_disabled",
            &[("user_id", &other_user), ("disabled", "true")],
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let (s, body) = reader.get("/api/v1/me").await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    assert!(message(&body).contains("disabled"), "{body}");

    // Token creation and revocation are in the activity log.
    let (_, log) = api.get("/api/v1/activity?action=token.create").await;
    assert!(log["total"].as_i64().unwrap() >= 4, "{log}");
    let (_, log) = api.get("/api/v1/activity?action=token.revoke").await;
    assert_eq!(log["total"], 2, "{log}");
    assert_eq!(log["value"][0]["actor"], "admin");
    assert!(
        log["value"][0]["detail"]
            .as_str()
            .unwrap()
            .ends_with("of user other"),
        "{log}"
    );
    assert_eq!(log["value"][1]["actor"], "admin");
}

#[tokio::test]
async fn every_endpoint_checks_the_callers_role() {
    let (app, admin, api) = admin_api().await;
    add_vm(&api, "web-1", "prod").await;
    put_policy(&api, "web-1", &policy(22, "PT1H", false)).await;
    add_vm(&api, "win-1", "prod").await;
    put_policy(&api, "win-1", &policy(3389, "PT1H", true)).await;
    add_vm(&api, "doomed", "prod").await;
    add_vm(&api, "unpolicy", "prod").await;
    put_policy(&api, "unpolicy", &policy(22, "PT1H", false)).await;

    let mut callers = Vec::new();
    for role in ROLES {
        let client = scoped_user(&app, &admin, &format!("{role}1"), role, "all", "").await;
        let token = api_token(&app, &client, "script").await;
        callers.push((role, Api::new(&app, &token)));
    }
    let requester = &callers[1].1;
    let id = |b: &Value| b["id"].as_str().unwrap().to_owned();
    let active = id(&open(requester, "web-1", &initiate(22, "PT30M")).await);
    let active2 = id(&open(requester, "web-1", &initiate(22, "PT20M")).await);
    let pending = id(&open(requester, "win-1", &initiate(3389, "PT30M")).await);
    let pending2 = id(&open(requester, "win-1", &initiate(3389, "PT20M")).await);

    let new_vm = json!({"name": "new-vm", "group": "prod", "os": "linux"});
    let web =
        json!({"name": "web-1", "group": "prod", "addresses": ["198.51.100.5"], "os": "linux"});
    let multi = json!({"virtualMachines": [{"id": "web-1", "ports": [{"number": 22, "duration": "PT5M"}]}]});
    let all: &[&str] = &ROLES;
    let may_request: &[&str] = &["requester", "approver", "admin"];
    let calls: Vec<(Method, String, Option<Value>, &[&str])> = vec![
        (Method::GET, "/api/v1/me".into(), None, all),
        (Method::GET, "/api/v1/tokens".into(), None, all),
        (
            Method::GET,
            "/api/v1/tokens?all=true".into(),
            None,
            &["admin"],
        ),
        (Method::GET, "/api/v1/vms".into(), None, all),
        (Method::GET, "/api/v1/vms/web-1".into(), None, all),
        (Method::GET, "/api/v1/jitPolicies".into(), None, all),
        (Method::GET, "/api/v1/jitPolicies/web-1".into(), None, all),
        (Method::GET, "/api/v1/requests".into(), None, all),
        (
            Method::GET,
            "/api/v1/requests?view=approvals".into(),
            None,
            all,
        ),
        (
            Method::GET,
            "/api/v1/requests?view=vm&vm=web-1".into(),
            None,
            all,
        ),
        (Method::GET, format!("/api/v1/requests/{active}"), None, all),
        (Method::GET, "/api/v1/activity".into(), None, all),
        (Method::GET, "/api/v1/activity/export".into(), None, all),
        (
            Method::POST,
            "/api/v1/jitPolicies/web-1/initiate".into(),
            Some(initiate(22, "PT5M")),
            may_request,
        ),
        (
            Method::POST,
            "/api/v1/requests".into(),
            Some(multi),
            may_request,
        ),
        (
            Method::POST,
            format!("/api/v1/requests/{pending}/approve"),
            Some(json!({"comment": "ok"})),
            &["approver", "admin"],
        ),
        (
            Method::POST,
            format!("/api/v1/requests/{pending2}/deny"),
            Some(json!({"comment": "no"})),
            &["approver", "admin"],
        ),
        (
            Method::POST,
            format!("/api/v1/requests/{active2}/extend"),
            Some(json!({"duration": "PT50M"})),
            &["requester", "admin"],
        ),
        (
            Method::POST,
            format!("/api/v1/requests/{active}/revoke"),
            None,
            &["requester", "admin"],
        ),
        (Method::POST, "/api/v1/vms".into(), Some(new_vm), &["admin"]),
        (
            Method::PUT,
            "/api/v1/vms/web-1".into(),
            Some(web),
            &["admin"],
        ),
        (
            Method::PUT,
            "/api/v1/jitPolicies/web-1".into(),
            Some(policy(22, "PT1H", false)),
            &["admin"],
        ),
        (
            Method::DELETE,
            "/api/v1/jitPolicies/unpolicy".into(),
            None,
            &["admin"],
        ),
        (
            Method::DELETE,
            "/api/v1/vms/doomed".into(),
            None,
            &["admin"],
        ),
    ];

    let anonymous = Api::new(&app, "");
    let mut checked = 0;
    for (method, path, body, allowed) in &calls {
        let res = anonymous
            .http
            .request(method.clone(), format!("{}{path}", app.base))
            .json(body.as_ref().unwrap_or(&Value::Null))
            .send()
            .await
            .unwrap();
        assert_eq!(
            res.status(),
            StatusCode::UNAUTHORIZED,
            "{method} {path} without a token"
        );
        for (role, caller) in &callers {
            let (status, reply) = caller.send(method.clone(), path, body.as_ref()).await;
            assert!(
                !status.is_server_error(),
                "{method} {path} as {role}: {reply}"
            );
            assert_ne!(
                status,
                StatusCode::UNAUTHORIZED,
                "{method} {path} as {role}"
            );
            if allowed.contains(role) {
                assert_ne!(
                    status,
                    StatusCode::FORBIDDEN,
                    "{role} may {method} {path}: {reply}"
                );
            } else {
                assert_eq!(
                    status,
                    StatusCode::FORBIDDEN,
                    "{role} must not {method} {path}: {reply}"
                );
                assert_eq!(reply["error"]["code"], "forbidden");
            }
            checked += 1;
        }
    }
    assert_eq!(checked, calls.len() * ROLES.len());
}

#[tokio::test]
async fn scoped_roles_see_and_change_only_their_scope() {
    let (app, admin, api) = admin_api().await;
    add_vm(&api, "web-1", "prod").await;
    add_vm(&api, "web-2", "prod").await;
    add_vm(&api, "db-1", "dev").await;
    for vm in ["web-1", "web-2", "db-1"] {
        put_policy(&api, vm, &policy(22, "PT1H", true)).await;
    }
    let dev_admin = scoped_user(&app, &admin, "devadmin", "admin", "group", "dev").await;
    let dev_admin = Api::new(&app, &api_token(&app, &dev_admin, "s").await);
    // A VM scope is chosen by the VM's name and stored by its id.
    let one_vm = scoped_user(&app, &admin, "onevm", "requester", "vm", "web-2").await;
    let one_vm = Api::new(&app, &api_token(&app, &one_vm, "s").await);
    let prod_approver = scoped_user(&app, &admin, "prodappr", "approver", "group", "prod").await;
    let prod_approver = Api::new(&app, &api_token(&app, &prod_approver, "s").await);

    let (_, list) = dev_admin.get("/api/v1/vms").await;
    let names: Vec<&str> = list["value"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["db-1"]);
    let (s, _) = dev_admin
        .put("/api/v1/jitPolicies/db-1", &policy(22, "PT2H", false))
        .await;
    assert_eq!(s, StatusCode::OK);
    let (s, _) = dev_admin
        .put("/api/v1/jitPolicies/web-1", &policy(22, "PT2H", false))
        .await;
    assert_eq!(
        s,
        StatusCode::NOT_FOUND,
        "a VM outside the scope is not even visible"
    );
    let (s, _) = dev_admin
        .post("/api/v1/vms", &json!({"name": "prod-x", "group": "prod"}))
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, _) = dev_admin
        .post("/api/v1/vms", &json!({"name": "dev-x", "group": "dev"}))
        .await;
    assert_eq!(s, StatusCode::CREATED);

    let (_, list) = one_vm.get("/api/v1/jitPolicies").await;
    assert_eq!(list["total"], 1, "{list}");
    assert_eq!(list["value"][0]["name"], "web-2");
    let (s, _) = one_vm
        .post("/api/v1/jitPolicies/web-1/initiate", &initiate(22, "PT5M"))
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let on_web2 = open(&one_vm, "web-2", &initiate(22, "PT5M")).await;
    assert_eq!(on_web2["status"], "PendingApproval");
    let (s, _) = dev_admin
        .post(
            &format!(
                "/api/v1/requests/{}/approve",
                on_web2["id"].as_str().unwrap()
            ),
            &json!({}),
        )
        .await;
    assert_eq!(
        s,
        StatusCode::NOT_FOUND,
        "the dev admin cannot see a prod request"
    );
    let (_, queue) = prod_approver.get("/api/v1/requests?view=approvals").await;
    assert_eq!(queue["value"].as_array().unwrap().len(), 1, "{queue}");
    let (s, approved) = prod_approver
        .post(
            &format!(
                "/api/v1/requests/{}/approve",
                on_web2["id"].as_str().unwrap()
            ),
            &json!({"comment": "go"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{approved}");
    assert_eq!(approved["status"], "Active");
    assert_eq!(approved["decidedBy"], "prodappr");
}

#[tokio::test]
async fn bad_input_gets_a_clear_4xx_and_changes_nothing() {
    let (app, admin, api) = admin_api().await;
    add_vm(&api, "web-1", "prod").await;
    put_policy(&api, "web-1", &policy(22, "PT1H", false)).await;
    let requester = scoped_user(&app, &admin, "req", "requester", "all", "").await;
    let requester = Api::new(&app, &api_token(&app, &requester, "s").await);

    let before_policy = api.get("/api/v1/jitPolicies/web-1").await.1;
    let before_vms = api.get("/api/v1/vms").await.1;
    let before_log = api.get("/api/v1/activity").await.1["total"].clone();

    let port = |p: Value| json!({"virtualMachines": [{"ports": [p]}]});
    let bad_policies: Vec<(Value, StatusCode, &str, &str)> = vec![
        (
            json!({"virtualMachines": [{"ports": [{"number": 22, "protocol": "TCP", "bogus": 1}]}]}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "",
            "unknown field `bogus`",
        ),
        (
            port(json!({"number": 70000, "protocol": "TCP"})),
            StatusCode::UNPROCESSABLE_ENTITY,
            "virtualMachines[0].ports[0].number",
            "1 to 65535",
        ),
        (
            port(json!({"number": 0, "protocol": "TCP"})),
            StatusCode::UNPROCESSABLE_ENTITY,
            "virtualMachines[0].ports[0].number",
            "1 to 65535",
        ),
        (
            port(json!({"number": "22", "protocol": "TCP"})),
            StatusCode::UNPROCESSABLE_ENTITY,
            "",
            "number",
        ),
        (
            port(json!({"number": 22, "protocol": "ICMP"})),
            StatusCode::UNPROCESSABLE_ENTITY,
            "virtualMachines[0].ports[0].protocol",
            "TCP",
        ),
        (
            port(json!({"number": 22, "protocol": "TCP", "maxRequestAccessDuration": "PT25H"})),
            StatusCode::UNPROCESSABLE_ENTITY,
            "virtualMachines[0].ports[0].maxRequestAccessDuration",
            "24 hours",
        ),
        (
            port(json!({"number": 22, "protocol": "TCP", "maxRequestAccessDuration": "PT2M"})),
            StatusCode::UNPROCESSABLE_ENTITY,
            "virtualMachines[0].ports[0].maxRequestAccessDuration",
            "5 minutes",
        ),
        (
            port(json!({"number": 22, "protocol": "TCP", "maxRequestAccessDuration": "3 hours"})),
            StatusCode::UNPROCESSABLE_ENTITY,
            "virtualMachines[0].ports[0].maxRequestAccessDuration",
            "ISO 8601",
        ),
        (
            port(
                json!({"number": 22, "protocol": "TCP", "allowedSourceAddressPrefixes": ["198.51.100.0/33"]}),
            ),
            StatusCode::UNPROCESSABLE_ENTITY,
            "virtualMachines[0].ports[0].allowedSourceAddressPrefixes",
            "prefix length",
        ),
        (
            port(json!({"number": 22, "protocol": "TCP", "allowedSourceAddressPrefix": "banana"})),
            StatusCode::UNPROCESSABLE_ENTITY,
            "virtualMachines[0].ports[0].allowedSourceAddressPrefix",
            "IPv4 or IPv6",
        ),
        (
            json!({"virtualMachines": []}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "virtualMachines",
            "one VM",
        ),
        (
            json!({"virtualMachines": [{"ports": []}]}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "virtualMachines[0].ports",
            "at least one",
        ),
        (
            json!({"virtualMachines": [{"id": "other-vm", "ports": [{"number": 22, "protocol": "TCP"}]}]}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "virtualMachines[0].id",
            "path",
        ),
        (
            json!([1, 2]),
            StatusCode::UNPROCESSABLE_ENTITY,
            "",
            "Failed to deserialize",
        ),
    ];
    for (body, status, name, says) in &bad_policies {
        let (s, reply) = api.put("/api/v1/jitPolicies/web-1", body).await;
        assert_eq!(s, *status, "{body} → {reply}");
        assert!(message(&reply).contains(says), "{body} → {reply}");
        if !name.is_empty() {
            assert!(field(&reply, name).is_some(), "{body} → {reply}");
        }
    }

    let path = "/api/v1/jitPolicies/web-1";
    let (s, reply) = api
        .raw(
            Method::PUT,
            path,
            "application/json",
            "{\"virtualMachines\": [",
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{reply}");
    assert_eq!(reply["error"]["code"], "bad_request");
    let (s, reply) = api.raw(Method::PUT, path, "text/plain", "{}").await;
    assert_eq!(s, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{reply}");
    assert!(message(&reply).contains("application/json"), "{reply}");
    let huge = format!(
        "{{\"virtualMachines\": [{{\"ports\": [], \"id\": \"{}\"}}]}}",
        "x".repeat(100_000)
    );
    let (s, reply) = api
        .raw(Method::PUT, path, "application/json", huge.clone())
        .await;
    assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE, "{reply}");
    assert_eq!(reply["error"]["code"], "payload_too_large");
    assert!(message(&reply).contains("65536"), "{reply}");

    let ask = |p: Value| json!({"virtualMachines": [{"ports": [p]}], "justification": "x"});
    let future = (chrono::Utc::now() + chrono::Duration::minutes(30)).to_rfc3339();
    let bad_requests: Vec<(Value, &str, &str)> = vec![
        (
            ask(json!({"number": 70000, "duration": "PT5M"})),
            "virtualMachines[0].ports[0].number",
            "1 to 65535",
        ),
        (
            ask(json!({"number": 23, "duration": "PT5M"})),
            "virtualMachines",
            "not under JIT control",
        ),
        (
            ask(json!({"number": 22, "duration": "PT2H"})),
            "virtualMachines[0].ports[0].duration",
            "60 minutes",
        ),
        (
            ask(json!({"number": 22, "duration": "PT90S"})),
            "virtualMachines[0].ports[0].duration",
            "whole minutes",
        ),
        (
            ask(json!({"number": 22, "endTimeUtc": "2001-01-01T00:00:00Z"})),
            "virtualMachines[0].ports[0].endTimeUtc",
            "future",
        ),
        (
            ask(json!({"number": 22, "endTimeUtc": "tomorrow"})),
            "virtualMachines[0].ports[0].endTimeUtc",
            "RFC 3339",
        ),
        (
            ask(json!({"number": 22})),
            "virtualMachines[0].ports[0].endTimeUtc",
            "how long",
        ),
        (
            ask(
                json!({"number": 22, "endTimeUtc": future, "allowedSourceAddressPrefix": "203.0.113.0/33"}),
            ),
            "virtualMachines[0].ports[0].allowedSourceAddressPrefix",
            "prefix length",
        ),
        (
            ask(
                json!({"number": 22, "duration": "PT5M", "allowedSourceAddressPrefix": "0.0.0.0/0"}),
            ),
            "virtualMachines[0].ports[0].allowedSourceAddressPrefix",
            "every address",
        ),
        (
            ask(
                json!({"number": 22, "duration": "PT5M", "allowedSourceAddressPrefixes": ["203.0.113.7", "203.0.113.8"]}),
            ),
            "virtualMachines[0].ports[0].allowedSourceAddressPrefixes",
            "one source",
        ),
        (
            json!({"virtualMachines": [{"ports": [{"number": 22, "duration": "PT5M"}]}], "justification": "j".repeat(501)}),
            "justification",
            "500",
        ),
        (
            json!({"virtualMachines": [{"ports": [{"number": 22, "duration": "PT5M"}], "extra": true}]}),
            "",
            "unknown field `extra`",
        ),
    ];
    for (body, name, says) in &bad_requests {
        let (s, reply) = requester
            .post("/api/v1/jitPolicies/web-1/initiate", body)
            .await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{body} → {reply}");
        assert!(message(&reply).contains(says), "{body} → {reply}");
        if !name.is_empty() {
            assert!(field(&reply, name).is_some(), "{body} → {reply}");
        }
    }
    let (s, _) = requester
        .raw(
            Method::POST,
            "/api/v1/jitPolicies/web-1/initiate",
            "application/json",
            huge,
        )
        .await;
    assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE);
    // Several VMs: one bad part refuses the whole request.
    let (s, reply) = requester
        .post(
            "/api/v1/requests",
            &json!({"virtualMachines": [
                {"id": "web-1", "ports": [{"number": 22, "duration": "PT5M"}]},
                {"id": "web-1", "ports": [{"number": 22, "duration": "PT5M"}]},
            ]}),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{reply}");
    let (s, reply) = requester.get("/api/v1/vms?page=0").await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{reply}");
    assert!(field(&reply, "page").is_some());
    let (s, reply) = requester.get("/api/v1/vms?page=abc").await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{reply}");
    // A NUL ended SQLite's FTS5 query and PostgreSQL refuses it in text: both said 500.
    for search in ["web%00-1", "we%00", "w%09eb"] {
        let (s, reply) = requester.get(&format!("/api/v1/vms?search={search}")).await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{search}: {reply}");
        assert!(field(&reply, "search").is_some(), "{reply}");
    }
    let (s, reply) = requester.get("/api/v1/activity?from=yesterday").await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{reply}");
    assert!(field(&reply, "from").is_some(), "{reply}");
    let (s, reply) = requester
        .post(
            "/api/v1/requests/nope/extend",
            &json!({"duration": "PT1.5H"}),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(field(&reply, "duration").is_some(), "{reply}");

    assert_eq!(api.get("/api/v1/jitPolicies/web-1").await.1, before_policy);
    assert_eq!(api.get("/api/v1/vms").await.1, before_vms);
    let (_, mine) = requester.get("/api/v1/requests").await;
    assert_eq!(mine["value"], json!([]), "no request was stored");
    assert_eq!(
        api.get("/api/v1/activity").await.1["total"],
        before_log,
        "nothing was logged"
    );
}

#[tokio::test]
async fn requests_follow_azures_shapes_through_their_life_cycle() {
    let (app, admin, api) = admin_api().await;
    let (s, vm) = api
        .post("/api/v1/vms", &json!({"name": "web-1", "group": "prod", "addresses": ["198.51.100.5", "2001:db8::5"], "os": "linux", "exposedPorts": [22]}))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{vm}");
    assert_eq!(vm["addresses"], json!(["198.51.100.5", "2001:db8::5"]));
    assert_eq!(vm["jitPolicyConfigured"], false);
    let (s, p) = api
        .put("/api/v1/jitPolicies/web-1", &json!({"virtualMachines": [{"id": "web-1", "ports": [
            {"number": 22, "protocol": "TCP", "allowedSourceAddressPrefix": "*", "maxRequestAccessDuration": "PT1H"},
            {"number": 3389, "protocol": "*", "allowedSourceAddressPrefixes": ["203.0.113.0/24"], "approvalRequired": true},
        ]}]}))
        .await;
    assert_eq!(s, StatusCode::OK, "{p}");
    let ports = &p["virtualMachines"][0]["ports"];
    assert_eq!(ports[0]["maxRequestAccessDuration"], "PT1H");
    assert_eq!(ports[0]["allowedSourceAddressPrefix"], "*");
    assert_eq!(ports[1]["protocol"], "*");
    assert_eq!(ports[1]["maxRequestAccessDuration"], "PT3H");
    assert_eq!(
        ports[1]["allowedSourceAddressPrefixes"],
        json!(["203.0.113.0/24"])
    );
    let mut answered = p.clone();
    assert_eq!(
        answered.as_object_mut().unwrap().remove("replaced"),
        Some(json!([])),
        "a first policy replaces nothing"
    );
    assert_eq!(api.get("/api/v1/jitPolicies/web-1").await.1, answered);
    assert_eq!(
        api.get(&format!(
            "/api/v1/jitPolicies/{}",
            vm["id"].as_str().unwrap()
        ))
        .await
        .1,
        answered
    );

    let requester = scoped_user(&app, &admin, "req", "requester", "all", "").await;
    let requester = Api::new(&app, &api_token(&app, &requester, "s").await);
    let approver = scoped_user(&app, &admin, "appr", "approver", "all", "").await;
    let approver = Api::new(&app, &api_token(&app, &approver, "s").await);

    let end = chrono::Utc::now() + chrono::Duration::minutes(30);
    let r = open(&requester, "web-1", &json!({"virtualMachines": [{"id": "web-1", "ports": [
        {"number": 22, "endTimeUtc": end.to_rfc3339(), "allowedSourceAddressPrefix": "198.51.100.7"}]}],
        "justification": "deploy"})).await;
    assert_eq!(r["status"], "Active");
    assert_eq!(r["requestor"], "req");
    assert_eq!(r["duration"], "PT30M");
    let port = &r["virtualMachines"][0]["ports"][0];
    assert_eq!(port["number"], 22);
    assert_eq!(port["allowedSourceAddressPrefix"], "198.51.100.7/32");
    assert_eq!(port["status"], "Initiated");
    assert!(port["statusReason"].as_str().unwrap().contains("no agent"));
    let id = r["id"].as_str().unwrap();
    let (_, vmv) = api.get("/api/v1/vms/web-1").await;
    assert_eq!(
        vmv["activeGrants"][0]["allowedSourceAddressPrefix"],
        "198.51.100.7/32"
    );

    let (s, ext) = requester
        .post(
            &format!("/api/v1/requests/{id}/extend"),
            &json!({"duration": "PT50M"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{ext}");
    assert!(ext["endTimeUtc"].as_str().unwrap() > r["endTimeUtc"].as_str().unwrap());
    let (s, rev) = requester
        .post(&format!("/api/v1/requests/{id}/revoke"), &json!({}))
        .await;
    assert_eq!(s, StatusCode::OK, "{rev}");
    assert_eq!(rev["status"], "Revoked");
    assert_eq!(rev["virtualMachines"][0]["ports"][0]["status"], "Revoked");
    assert_eq!(
        rev["virtualMachines"][0]["ports"][0]["statusReason"],
        "revoked by user"
    );
    let (s, _) = requester
        .post(&format!("/api/v1/requests/{id}/revoke"), &json!({}))
        .await;
    assert_eq!(s, StatusCode::CONFLICT);

    // Approval: the protocol may be left out when the policy has one rule for the port.
    let pending = open(
        &requester,
        "web-1",
        &json!({"virtualMachines": [{"ports": [
        {"number": 3389, "duration": "PT15M", "allowedSourceAddressPrefix": "203.0.113.7"}]}]}),
    )
    .await;
    assert_eq!(pending["status"], "PendingApproval");
    assert_eq!(
        pending["virtualMachines"][0]["ports"][0]["status"],
        "Pending"
    );
    assert_eq!(pending["virtualMachines"][0]["ports"][0]["protocol"], "*");
    let pid = pending["id"].as_str().unwrap();
    let own = open(
        &approver,
        "web-1",
        &json!({"virtualMachines": [{"ports": [
        {"number": 3389, "duration": "PT15M", "allowedSourceAddressPrefix": "203.0.113.8"}]}]}),
    )
    .await;
    let (s, body) = approver
        .post(
            &format!("/api/v1/requests/{}/approve", own["id"].as_str().unwrap()),
            &json!({}),
        )
        .await;
    assert_eq!(s, StatusCode::CONFLICT, "{body}");
    assert!(message(&body).contains("own request"));
    let (s, _) = requester
        .post(&format!("/api/v1/requests/{pid}/approve"), &json!({}))
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let res = approver
        .http
        .post(format!("{}/api/v1/requests/{pid}/approve", app.base))
        .bearer_auth(&approver.token)
        .send()
        .await
        .unwrap();
    let (s, ok) = common::rest::read(res).await;
    assert_eq!(s, StatusCode::OK, "an approval needs no body: {ok}");
    assert_eq!(ok["status"], "Active");
    let (s, denied) = api
        .post(
            &format!("/api/v1/requests/{}/deny", own["id"].as_str().unwrap()),
            &json!({"comment": "not now"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{denied}");
    assert_eq!(denied["status"], "Denied");
    assert_eq!(denied["decisionComment"], "not now");

    // Several VMs in one call.
    add_vm(&api, "web-2", "prod").await;
    put_policy(&api, "web-2", &policy(22, "PT1H", false)).await;
    let (s, both) = requester
        .post(
            "/api/v1/requests",
            &json!({"virtualMachines": [
            {"id": "web-1", "ports": [{"number": 22, "duration": "PT10M"}]},
            {"id": "web-2", "ports": [{"number": 22, "protocol": "TCP", "duration": "PT10M"}]},
        ], "justification": "rollout"}),
        )
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{both}");
    assert_eq!(both["value"].as_array().unwrap().len(), 2);
    let (_, mine) = requester.get("/api/v1/requests").await;
    assert_eq!(mine["value"].as_array().unwrap().len(), 4);

    // The API's actions are in the activity log like the browser's.
    let (_, log) = api.get("/api/v1/activity?actor=req&action=request").await;
    assert_eq!(log["total"], 4, "{log}");
    assert_eq!(log["value"][0]["vm"], "web-2");
    assert_eq!(log["chain"]["verified"], true);
    let res = api
        .http
        .get(format!("{}/api/v1/activity/export?action=revoke", app.base))
        .bearer_auth(&api.token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.headers()["content-type"], "text/csv; charset=utf-8");
    let csv = res.text().await.unwrap();
    assert!(csv.starts_with("seq,time_utc,actor"));
    assert_eq!(csv.lines().count(), 2, "{csv}");
    let (_, json_export) = api
        .get("/api/v1/activity/export?format=json&actor=appr")
        .await;
    assert!(
        json_export
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["action"] == "approve")
    );

    let (s, _) = api.delete("/api/v1/jitPolicies/web-2").await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, _) = api.get("/api/v1/jitPolicies/web-2").await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, _) = api.delete("/api/v1/vms/web-2").await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, _) = api.get("/api/v1/vms/web-2").await;
    assert_eq!(s, StatusCode::NOT_FOUND);
}

/// The secret of a new token goes back in the answer to the hydrated page and is never
/// written to the session table; only a plain form post (answered with a redirect) needs
/// the session to carry it to the next page, which shows it once.
#[tokio::test]
async fn a_new_token_waits_in_the_session_only_for_a_plain_form_post() {
    let app = spawn_app().await;
    let admin = browser();
    app.admin_ready(&admin).await;
    let sessions_hold = |secret: String| {
        let url = app.database_url.clone();
        async move {
            let store = portcullis_app::store::Store::connect(&url).await.unwrap();
            store.sessions_containing(&secret).await.unwrap() > 0
        }
    };

    // The hydrated page's call (asks for JSON).
    let token = api_token(&app, &admin, "from the page").await;
    let secret = token.rsplit('_').next().unwrap().to_owned();
    assert!(
        !sessions_hold(secret).await,
        "the secret was stored in the session"
    );
    let (_, page) = app.call(&admin, "list_api_tokens", &[]).await;
    assert_eq!(page["new_token"], Value::Null);

    // A browser without JavaScript posting the form.
    let res = admin
        .post(format!("{}/api/create_api_token", app.base))
        .header(reqwest::header::ORIGIN, &app.base)
        .header(reqwest::header::ACCEPT, "text/html")
        .header(reqwest::header::REFERER, format!("{}/tokens", app.base))
        .form(&[("name", "from a form"), ("expires_days", "7")])
        .send()
        .await
        .unwrap();
    assert!(res.status().is_redirection(), "{}", res.status());
    let (_, page) = app.call(&admin, "list_api_tokens", &[]).await;
    let shown = page["new_token"]
        .as_str()
        .expect("shown after the redirect");
    assert!(shown.starts_with("pcu_"));
    let (_, again) = app.call(&admin, "list_api_tokens", &[]).await;
    assert_eq!(again["new_token"], Value::Null, "shown once");
    let secret = shown.rsplit('_').next().unwrap().to_owned();
    assert!(!sessions_hold(secret).await, "removed once shown");
}

#[tokio::test]
async fn replacing_a_policy_says_what_the_vm_lost() {
    let (_app, _admin, api) = admin_api().await;
    add_vm(&api, "web-1", "prod").await;
    let first = json!({"virtualMachines": [{"ports": [
        {"number": 22, "protocol": "TCP", "allowedSourceAddressPrefix": "*", "approvalRequired": true},
        {"number": 8080, "protocol": "TCP", "allowedSourceAddressPrefix": "*"},
    ]}]});
    let (s, p) = api.put("/api/v1/jitPolicies/web-1", &first).await;
    assert_eq!(s, StatusCode::OK, "{p}");
    assert_eq!(p["replaced"], json!([]));
    let second = json!({"virtualMachines": [{"ports": [
        {"number": 22, "protocol": "TCP", "allowedSourceAddressPrefix": "*", "approvalTimeout": "PT30M"},
    ]}]});
    let (s, p) = api.put("/api/v1/jitPolicies/web-1", &second).await;
    assert_eq!(s, StatusCode::OK, "{p}");
    assert_eq!(
        p["replaced"],
        json!([
            "22/tcp: approval no longer required; approval within 60 → 30 min",
            "8080/tcp is removed"
        ])
    );
    assert_eq!(
        p["virtualMachines"][0]["ports"][0]["approvalTimeout"],
        "PT30M"
    );
}

#[tokio::test]
async fn two_approvers_over_the_api() {
    let (app, admin, api) = admin_api().await;
    add_vm(&api, "win-1", "prod").await;
    let body = json!({"virtualMachines": [{"ports": [
        {"number": 3389, "protocol": "TCP", "allowedSourceAddressPrefix": "*",
         "approvalRequired": true, "approvalsRequired": 2},
        {"number": 22, "protocol": "TCP", "allowedSourceAddressPrefix": "*"},
    ]}]});
    let (s, p) = api.put("/api/v1/jitPolicies/win-1", &body).await;
    assert_eq!(s, StatusCode::OK, "{p}");
    let ports = &p["virtualMachines"][0]["ports"];
    assert_eq!(ports[0]["approvalsRequired"], 2);
    assert_eq!(ports[1]["approvalsRequired"], 1, "the default");
    let (_, got) = api.get("/api/v1/jitPolicies/win-1").await;
    assert_eq!(got["virtualMachines"][0]["ports"], *ports);

    // Out of range, or more than one without approval: named by JSON path, nothing stored.
    for (port, expected) in [
        (
            json!({"number": 3389, "protocol": "TCP", "approvalRequired": true, "approvalsRequired": 6}),
            "The number of approvers is a whole number from 1 to 5.",
        ),
        (
            json!({"number": 3389, "protocol": "TCP", "approvalsRequired": 3}),
            "More than one approver needs “Approval required” on.",
        ),
    ] {
        let (s, e) = api
            .put(
                "/api/v1/jitPolicies/win-1",
                &json!({"virtualMachines": [{"ports": [port]}]}),
            )
            .await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{e}");
        assert_eq!(
            field(&e, "virtualMachines[0].ports[0].approvalsRequired"),
            Some(expected),
            "{e}"
        );
    }
    let (_, unchanged) = api.get("/api/v1/jitPolicies/win-1").await;
    assert_eq!(unchanged["virtualMachines"][0]["ports"], *ports);

    // The change of the number is named in what a replacement says.
    let mut three = body.clone();
    three["virtualMachines"][0]["ports"][0]["approvalsRequired"] = json!(3);
    let (s, p) = api.put("/api/v1/jitPolicies/win-1", &three).await;
    assert_eq!(s, StatusCode::OK, "{p}");
    assert_eq!(p["replaced"], json!(["3389/tcp: approvers 2 → 3"]));
    put_policy(&api, "win-1", &body).await;

    let requester = scoped_user(&app, &admin, "req", "requester", "all", "").await;
    let requester = Api::new(&app, &api_token(&app, &requester, "s").await);
    let mut approvers = Vec::new();
    for name in ["appr1", "appr2"] {
        let client = scoped_user(&app, &admin, name, "approver", "all", "").await;
        approvers.push(Api::new(&app, &api_token(&app, &client, "s").await));
    }
    let r = open(&requester, "win-1", &initiate(3389, "PT15M")).await;
    assert_eq!(r["status"], "PendingApproval");
    assert_eq!(
        (r["approvals"].clone(), r["approvalsRequired"].clone()),
        (json!(0), json!(2))
    );
    let id = r["id"].as_str().unwrap();

    let approve = |who: &Api| {
        let who = who.clone();
        let path = format!("/api/v1/requests/{id}/approve");
        async move { who.post(&path, &json!({"comment": "ok"})).await }
    };
    let (s, first) = approve(&approvers[0]).await;
    assert_eq!(s, StatusCode::OK, "{first}");
    assert_eq!(first["status"], "PendingApproval");
    assert_eq!(first["approvals"], 1);
    assert_eq!(first["approvalsRequired"], 2);
    assert_eq!(first["virtualMachines"][0]["ports"][0]["status"], "Pending");
    let (s, again) = approve(&approvers[0]).await;
    assert_eq!(s, StatusCode::CONFLICT, "{again}");
    assert_eq!(message(&again), "You approved this request already.");
    // The first approver's queue no longer holds it; the second's does.
    let (_, q1) = approvers[0].get("/api/v1/requests?view=approvals").await;
    assert_eq!(q1["value"], json!([]));
    let (_, q2) = approvers[1].get("/api/v1/requests?view=approvals").await;
    assert_eq!(q2["value"][0]["id"], id);
    assert_eq!(q2["value"][0]["approvals"], 1);

    let (s, done) = approve(&approvers[1]).await;
    assert_eq!(s, StatusCode::OK, "{done}");
    assert_eq!(done["status"], "Active");
    assert_eq!(done["approvals"], 2);
    assert_eq!(done["decidedBy"], "appr2");
    let (_, vm) = api.get("/api/v1/vms/win-1").await;
    assert_eq!(vm["activeGrants"][0]["number"], 3389);
    let (_, log) = api.get("/api/v1/activity?action=approve").await;
    assert_eq!(log["total"], 2, "{log}");
    assert_eq!(
        log["value"][0]["detail"],
        "2 of 2 approvals; request of req; ok"
    );
    assert_eq!(
        log["value"][1]["detail"],
        "1 of 2 approvals; request of req; ok"
    );
}

/// A window booked ahead over the API: the policy's lead time (`maxScheduleAhead`, whole
/// days), a request with `startTimeUtc` that waits, approved, for its start (its end
/// counted from the start), one too far ahead refused on `startTimeUtc`, and a booked
/// window withdrawn before it opens.
#[tokio::test]
async fn a_window_booked_ahead_over_the_api() {
    let (_app, _admin, api) = admin_api().await;
    add_vm(&api, "web-1", "prod").await;
    let body = json!({"virtualMachines": [{"ports": [
        {"number": 22, "protocol": "TCP", "allowedSourceAddressPrefix": "*", "maxScheduleAhead": "P2D"},
        {"number": 80, "protocol": "TCP", "allowedSourceAddressPrefix": "*"},
    ]}]});
    let (s, p) = api.put("/api/v1/jitPolicies/web-1", &body).await;
    assert_eq!(s, StatusCode::OK, "{p}");
    let ports = &p["virtualMachines"][0]["ports"];
    assert_eq!(ports[0]["maxScheduleAhead"], "P2D");
    assert_eq!(ports[1]["maxScheduleAhead"], "P7D", "the default");
    for (lead, expected) in [
        ("PT5H", "Give whole days, e.g. P7D."),
        (
            "P31D",
            "Scheduling ahead is a whole number of days from 0 to 30.",
        ),
    ] {
        let mut bad = body.clone();
        bad["virtualMachines"][0]["ports"][0]["maxScheduleAhead"] = json!(lead);
        let (s, e) = api.put("/api/v1/jitPolicies/web-1", &bad).await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{e}");
        assert_eq!(
            field(&e, "virtualMachines[0].ports[0].maxScheduleAhead"),
            Some(expected),
            "{e}"
        );
    }

    let start = chrono::Utc::now().timestamp() / 60 * 60 + 3600;
    let at = |secs: i64| {
        chrono::DateTime::from_timestamp(secs, 0)
            .unwrap()
            .format("%Y-%m-%dT%H:%M:%SZ")
            .to_string()
    };
    let mut ask = initiate(22, "PT30M");
    ask["startTimeUtc"] = json!(at(start));
    let r = open(&api, "web-1", &ask).await;
    assert_eq!(r["status"], "Approved", "{r}");
    assert_eq!(r["startTimeUtc"], at(start));
    assert_eq!(r["endTimeUtc"], at(start + 1800));
    let port = &r["virtualMachines"][0]["ports"][0];
    assert_eq!(port["status"], "Pending", "{r}");
    // An end time counts from the start.
    let mut until = initiate(80, "PT1M");
    until["virtualMachines"][0]["ports"][0] = json!({"number": 80, "endTimeUtc": at(start + 3600)});
    until["startTimeUtc"] = json!(at(start));
    let u = open(&api, "web-1", &until).await;
    assert_eq!(u["endTimeUtc"], at(start + 3600), "{u}");

    let mut far = initiate(22, "PT30M");
    far["startTimeUtc"] = json!(at(start + 3 * 86_400));
    let (s, e) = api.post("/api/v1/jitPolicies/web-1/initiate", &far).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{e}");
    assert_eq!(
        field(&e, "startTimeUtc"),
        Some("Requests on web-1 may start at most 2 days ahead."),
        "{e}"
    );

    let id = r["id"].as_str().unwrap();
    let (s, w) = api
        .post(&format!("/api/v1/requests/{id}/revoke"), &json!({}))
        .await;
    assert_eq!(s, StatusCode::OK, "{w}");
    assert_eq!(w["status"], "Revoked");
}
