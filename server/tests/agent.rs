//! The agent protocol over real HTTP: enrollment with a one-time token, authenticated
//! long-polls that wake when a grant is made, reports that feed the portal.

mod common;

use common::*;
use reqwest::StatusCode;
use serde_json::json;
use std::time::{Duration, Instant};

#[tokio::test]
async fn agents_enroll_once_poll_their_own_state_and_report() {
    let app = spawn_app().await;
    let admin = browser();
    app.admin_ready(&admin).await;
    let vm = app.add_vm(&admin, "web-1", "linux").await;
    app.enable(&admin, &vm, "22", false).await;
    let other = app.add_vm(&admin, "web-2", "linux").await;

    let token = token_for(&app, &admin, &vm).await;
    let (s, enrolled) = enroll(&app, &token, "web-1.example").await;
    assert_eq!(s, StatusCode::OK, "{enrolled}");
    let (s, again) = enroll(&app, &token, "web-1.example").await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "a token works once: {again}");
    let agent = Agent::from_enrollment(&enrolled);

    // Bad credentials are refused.
    let forged = Agent {
        bearer: format!("{}.not-the-secret", enrolled["agent_id"].as_str().unwrap()),
    };
    assert_eq!(forged.state(&app, -1, 0).await.0, StatusCode::UNAUTHORIZED);
    let res = reqwest::Client::new()
        .get(format!("{}/agent/v1/state", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);

    let (s, state) = agent.state(&app, -1, 0).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(state["rules"], json!([{ "port": 22, "protocol": "tcp" }]));
    assert_eq!(state["grants"], json!([]));
    let generation = state["generation"].as_i64().unwrap();

    // Nothing changes: the poll holds for the wait and returns the same generation.
    let started = Instant::now();
    let (_, same) = agent.state(&app, generation, 1).await;
    assert!(started.elapsed() >= Duration::from_millis(900));
    assert_eq!(same["generation"].as_i64().unwrap(), generation);

    // A grant wakes the waiting poll long before its 20 s wait ends.
    let started = Instant::now();
    let poll = agent.long_poll(&app, generation);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let key = format!("{vm}:22/tcp");
    request_from(&app, &admin, &key, "198.51.100.10").await;
    let (woke, state) = poll.await.unwrap();
    let waited = woke - started;
    assert!(
        waited < Duration::from_secs(10),
        "woken by the change, not the timeout: {waited:?}"
    );
    let grants = state["grants"].as_array().unwrap();
    assert_eq!(grants.len(), 1, "{state}");
    assert_eq!(grants[0]["source"], "198.51.100.10/32");
    let left = grants[0]["expires_in_ms"].as_i64().unwrap();
    assert!((590_000..=600_000).contains(&left), "{left}");
    let applied = state["generation"].as_i64().unwrap();
    assert!(applied > generation);

    // The other VM's agent sees none of it.
    let token2 = token_for(&app, &admin, &other).await;
    let (_, enrolled2) = enroll(&app, &token2, "web-2.example").await;
    let agent2 = Agent::from_enrollment(&enrolled2);
    let (_, state2) = agent2.state(&app, -1, 0).await;
    assert_eq!(state2["grants"], json!([]));
    assert_eq!(state2["rules"], json!([]));

    // Before the report the portal says the change waits for the agent; after, applied.
    let (_, detail) = app.call(&admin, "get_vm", &[("id", &vm)]).await;
    assert_eq!(
        detail["vm"]["agent_status"],
        "Initiated: waiting for the agent"
    );
    assert_eq!(
        agent
            .report(
                &app,
                json!({ "generation": applied, "error": "", "listening_ports": [22, 8080, 3389] })
            )
            .await,
        StatusCode::NO_CONTENT
    );
    let (_, detail) = app.call(&admin, "get_vm", &[("id", &vm)]).await;
    assert_eq!(detail["vm"]["agent_status"], "Enforced: 1 grant open");
    assert_eq!(detail["vm"]["status_level"], "ok");
    let (_, mine) = app.call(&admin, "my_requests", &[]).await;
    assert_eq!(mine[0][0]["ports"][0]["enforcement"], "Active");
    assert_eq!(
        detail["vm"]["exposed_ports"], "22, 3389",
        "only management ports are recorded"
    );
    let (_, log) = app.call(&admin, "activity", &[("action", "enforce")]).await;
    assert_eq!(
        log["rows"][0]["detail"],
        format!("generation {applied} applied")
    );

    // An error report is shown and logged (a second later: one report a second per agent).
    tokio::time::sleep(std::time::Duration::from_millis(1050)).await;
    assert_eq!(
        agent
            .report(
                &app,
                json!({ "generation": applied, "error": "nft: syntax error" })
            )
            .await,
        StatusCode::NO_CONTENT
    );
    let (_, detail) = app.call(&admin, "get_vm", &[("id", &vm)]).await;
    assert_eq!(
        detail["vm"]["agent_status"],
        "Enforcement error: nft: syntax error"
    );
    assert_eq!(detail["vm"]["status_level"], "error");
    // The grant applied before the failure is still in the kernel (a refused `nft -f`
    // changes nothing): still Active.
    let (_, mine) = app.call(&admin, "my_requests", &[]).await;
    assert_eq!(mine[0][0]["ports"][0]["enforcement"], "Active");

    // A grant made after it is in a generation the host refuses: never "Active", though
    // the agent reports that generation (it reports what it attempted).
    request_from(&app, &admin, &key, "198.51.100.11").await;
    let (_, state) = agent.state(&app, applied, 0).await;
    let refused = state["generation"].as_i64().unwrap();
    assert!(refused > applied);
    tokio::time::sleep(std::time::Duration::from_millis(1050)).await;
    assert_eq!(
        agent
            .report(
                &app,
                json!({ "generation": refused, "error": "nft: syntax error in rule 2" })
            )
            .await,
        StatusCode::NO_CONTENT
    );
    let (_, mine) = app.call(&admin, "my_requests", &[]).await;
    let by_source = |source: &str| -> serde_json::Value {
        mine[0]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["source"] == source)
            .unwrap_or_else(|| panic!("no request from {source}: {mine}"))
            .clone()
    };
    let late = by_source("198.51.100.11/32");
    assert_eq!(
        late["ports"][0]["enforcement"], "Not applied: enforcement error",
        "{late}"
    );
    assert_eq!(late["ports"][0]["enforcement_level"], "error");
    assert_eq!(
        by_source("198.51.100.10/32")["ports"][0]["enforcement"],
        "Active"
    );

    // A VM without a policy whose agent cannot enforce anything (no nftables) leaves
    // Recommended for Unsupported, with the agent's words as the reason, and comes back
    // once the agent reports success.
    let tab = |name: &'static str| {
        let app = &app;
        let admin = &admin;
        async move {
            let (s, page) = app.call(admin, "list_vms", &[("tab", name)]).await;
            assert_eq!(s, StatusCode::OK, "{page}");
            page
        }
    };
    let names = |page: &serde_json::Value| -> Vec<String> {
        page["rows"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["name"].as_str().unwrap().to_owned())
            .collect()
    };
    let report2 = |error: &'static str| {
        agent2.report(
            &app,
            json!({ "generation": state2["generation"], "error": error, "listening_ports": [22] }),
        )
    };
    assert_eq!(
        report2("nft: No such file or directory (os error 2)").await,
        StatusCode::NO_CONTENT
    );
    let unsupported = tab("unsupported").await;
    assert_eq!(names(&unsupported), ["web-2"]);
    assert_eq!(
        unsupported["rows"][0]["agent_status"],
        "Cannot enforce: nft: No such file or directory (os error 2)"
    );
    assert_eq!(unsupported["counts"]["unsupported"], 1);
    assert!(!names(&tab("recommended").await).contains(&"web-2".to_owned()));
    tokio::time::sleep(std::time::Duration::from_millis(1050)).await;
    assert_eq!(report2("").await, StatusCode::NO_CONTENT);
    assert!(names(&tab("unsupported").await).is_empty());
    let recommended = tab("recommended").await;
    let row = recommended["rows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "web-2")
        .expect("back on Recommended once the agent applies its state")
        .clone();
    assert_eq!(row["agent_status"], "Agent connected; JIT not enabled");
    assert_eq!(row["status_level"], "neutral");
}

#[tokio::test]
async fn an_agent_can_register_its_host_as_a_new_vm() {
    let app = spawn_app().await;
    let admin = browser();
    app.admin_ready(&admin).await;
    let (s, body) = app
        .call(
            &admin,
            "create_enrollment_token",
            &[("vm_id", ""), ("group", "bad group!")],
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(field_error(&body, "group").is_some(), "{body}");
    let (s, body) = app
        .call(
            &admin,
            "create_enrollment_token",
            &[("vm_id", ""), ("group", "edge")],
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    let token = body["token"].as_str().unwrap().to_owned();
    let (s, enrolled) = enroll(&app, &token, "edge-7").await;
    assert_eq!(s, StatusCode::OK, "{enrolled}");
    assert_eq!(enrolled["vm_name"], "edge-7");
    let (_, detail) = app
        .call(
            &admin,
            "get_vm",
            &[("id", enrolled["vm_id"].as_str().unwrap())],
        )
        .await;
    assert_eq!(detail["vm"]["group"], "edge");
    assert_eq!(detail["vm"]["os"], "linux");
    assert_eq!(detail["vm"]["addresses"], "127.0.0.1");
    // A second host with the same name cannot silently take the VM over.
    let (_, body) = app
        .call(
            &admin,
            "create_enrollment_token",
            &[("vm_id", ""), ("group", "edge")],
        )
        .await;
    let (s, refused) = enroll(&app, body["token"].as_str().unwrap(), "edge-7").await;
    assert_eq!(s, StatusCode::CONFLICT, "{refused}");
}

/// `admin` asks for the port `key` (`VM:PORT/PROTO`) from `source` for 10 minutes.
async fn request_from(app: &TestApp, admin: &reqwest::Client, key: &str, source: &str) {
    let vm = key.split(':').next().unwrap();
    let (s, body) = app
        .call(
            admin,
            "request_access",
            &[
                ("vm_ids[0]", vm),
                ("ports[0]", key),
                ("source_mode", "custom"),
                ("custom_source", source),
                ("duration", "10"),
            ],
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{body}");
}
