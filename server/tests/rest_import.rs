//! `POST /api/v1/vms/import` over a real socket: a dry run stores nothing, one bad row
//! stores nothing and is named by line and column (422), a good file adds every VM with
//! its activity log entry, and a file larger than other bodies may be is accepted.

mod common;

use common::rest::{Api, api_token, scoped_user};
use common::*;
use reqwest::StatusCode;
use serde_json::{Value, json};

async fn admin_api() -> (TestApp, reqwest::Client, Api) {
    let app = spawn_app().await;
    let admin = browser();
    app.admin_ready(&admin).await;
    let token = api_token(&app, &admin, "importer").await;
    let api = Api::new(&app, &token);
    (app, admin, api)
}

const GOOD: &str = "name,group,addresses,os,exposed_ports\n\
    web-1,prod,\"198.51.100.5, 2001:db8::5\",linux,22\n\
    web-2,prod,198.51.100.6,windows,3389;5985\n\
    web-3,dev,,,\n";

fn row_error(body: &Value, line: u64, column: &str) -> bool {
    body["error"]["rows"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|e| e["line"] == line && e["column"] == column)
}

#[tokio::test]
async fn an_import_is_all_or_nothing_with_errors_by_line_and_column() {
    let (app, admin, api) = admin_api().await;

    let (s, doc) = api.get("/api/v1/openapi.json").await;
    assert_eq!(s, StatusCode::OK);
    assert!(
        doc["paths"]["/api/v1/vms/import"]["post"].is_object(),
        "the import is in the OpenAPI document"
    );

    // A dry run shows what would be added and stores nothing.
    let (s, body) = api
        .post("/api/v1/vms/import", &json!({"csv": GOOD, "dryRun": true}))
        .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!(body["imported"], 0);
    assert_eq!(body["rows"].as_array().unwrap().len(), 3);
    assert_eq!(body["rows"][1]["exposedPorts"], json!([3389, 5985]));
    assert_eq!(
        body["rows"][0]["addresses"],
        json!(["198.51.100.5", "2001:db8::5"])
    );
    let (s, _) = api.get("/api/v1/vms/web-1").await;
    assert_eq!(s, StatusCode::NOT_FOUND, "a dry run stores nothing");

    // One bad row: 422, named by line and column, and nothing stored.
    let bad = format!("{GOOD}web-4,prod,300.1.1.1,linux,22\n");
    for dry_run in [true, false] {
        let (s, body) = api
            .post(
                "/api/v1/vms/import",
                &json!({"csv": bad, "dryRun": dry_run}),
            )
            .await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        assert_eq!(body["error"]["code"], "validation");
        assert!(row_error(&body, 5, "addresses"), "{body}");
        assert!(
            body["error"]["fields"]["line 5, addresses"].is_string(),
            "{body}"
        );
    }
    let (s, _) = api.get("/api/v1/vms/web-1").await;
    assert_eq!(s, StatusCode::NOT_FOUND, "nothing of a bad file is stored");

    // The good file: every VM, each with its log entry.
    let (s, body) = api.post("/api/v1/vms/import", &json!({"csv": GOOD})).await;
    assert_eq!(s, StatusCode::CREATED, "{body}");
    assert_eq!(body["imported"], 3);
    assert!(body["rows"][0]["id"].is_string());
    let (s, vm) = api.get("/api/v1/vms/web-2").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(vm["os"], "windows");
    let (s, log) = api.get("/api/v1/activity?action=vm.create").await;
    assert_eq!(s, StatusCode::OK, "{log}");
    assert_eq!(log["total"], 3, "{log}");

    // Again: every name is taken now.
    let (s, body) = api.post("/api/v1/vms/import", &json!({"csv": GOOD})).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    for line in 2..=4 {
        assert!(row_error(&body, line, "name"), "{body}");
    }

    // JSON rows, named by position and by their JSON field names.
    let (s, body) = api
        .post(
            "/api/v1/vms/import",
            &json!({"rows": [
                {"name": "j-1", "group": "prod"},
                {"name": "j-2", "group": "prod", "exposedPorts": [8080]},
            ]}),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(row_error(&body, 2, "exposedPorts"), "{body}");
    let (s, _) = api.get("/api/v1/vms/j-1").await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, body) = api
        .post(
            "/api/v1/vms/import",
            &json!({"rows": [{"name": "j-1", "group": "prod", "addresses": ["198.51.100.9"]}]}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{body}");

    // Exactly one of csv and rows; unknown fields refused.
    for wrong in [
        json!({}),
        json!({"csv": GOOD, "rows": []}),
        json!({"csv": GOOD, "dry": true}),
    ] {
        let (s, body) = api.post("/api/v1/vms/import", &wrong).await;
        assert!(s.is_client_error(), "{wrong}: {s} {body}");
    }

    // A file larger than the 64 KiB other bodies may be.
    let mut big = String::from("name,group,addresses\n");
    for i in 0..4000 {
        big.push_str(&format!("big-{i:04},bulk,198.51.100.{}\n", i % 250 + 1));
    }
    assert!(big.len() > 64 * 1024);
    let (s, body) = api
        .post("/api/v1/vms/import", &json!({"csv": big, "dryRun": true}))
        .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!(body["rows"].as_array().unwrap().len(), 4000);

    // A group administrator adds only to their group; a reader nowhere.
    let prod_admin = scoped_user(&app, &admin, "prodadmin", "admin", "group", "prod").await;
    let token = api_token(&app, &prod_admin, "prod importer").await;
    let prod = Api::new(&app, &token);
    let (s, body) = prod
        .post(
            "/api/v1/vms/import",
            &json!({"csv": "name,group\np-1,prod\nd-1,dev\n"}),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(row_error(&body, 3, "group"), "{body}");
    let (s, body) = prod
        .post(
            "/api/v1/vms/import",
            &json!({"csv": "name,group\np-1,prod\n"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{body}");
    let reader = scoped_user(&app, &admin, "reader1", "reader", "all", "").await;
    let token = api_token(&app, &reader, "reader script").await;
    let (s, body) = Api::new(&app, &token)
        .post(
            "/api/v1/vms/import",
            &json!({"csv": "name,group\nr-1,prod\n"}),
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{body}");
}
