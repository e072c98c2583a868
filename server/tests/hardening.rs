//! Portcullis against an attacker, from outside: someone who can write the database but
//! not read the server's files, anonymous and low-privileged clients. A real server on a
//! fresh database (SQLite, or PostgreSQL when `PORTCULLIS_TEST_POSTGRES` names a server).

mod common;

use common::*;
use portcullis_app::domain::audit::{EntryContent, entry_hash};
use reqwest::StatusCode;
use serde_json::Value;
use sqlx::Row;

async fn db(app: &TestApp) -> sqlx::AnyPool {
    sqlx::any::install_default_drivers();
    sqlx::AnyPool::connect(&app.database_url).await.unwrap()
}

/// Without the key: change entry `seq`, then recompute its hash and every later one.
async fn rewrite_and_rehash(app: &TestApp, seq: i64) {
    let db = db(app).await;
    sqlx::query("UPDATE activity_log SET detail = 'nothing happened' WHERE seq = $1")
        .bind(seq)
        .execute(&db)
        .await
        .unwrap();
    let rows = sqlx::query(
        "SELECT seq, at, actor, client_ip, action, vm, ports, source, justification, result, \
         detail, prev_hash FROM activity_log WHERE seq >= $1 ORDER BY seq",
    )
    .bind(seq)
    .fetch_all(&db)
    .await
    .unwrap();
    let mut prev: String = rows[0].get("prev_hash");
    for r in &rows {
        let c = EntryContent {
            seq: r.get("seq"),
            at: r.get("at"),
            actor: r.get("actor"),
            client_ip: r.get("client_ip"),
            action: r.get("action"),
            vm: r.get("vm"),
            ports: r.get("ports"),
            source: r.get("source"),
            justification: r.get("justification"),
            result: r.get("result"),
            detail: r.get("detail"),
        };
        let hash = entry_hash(&prev, &c);
        sqlx::query("UPDATE activity_log SET prev_hash = $1, hash = $2 WHERE seq = $3")
            .bind(&prev)
            .bind(&hash)
            .bind(c.seq)
            .execute(&db)
            .await
            .unwrap();
        prev = hash;
    }
    db.close().await;
}

async fn chain(app: &TestApp, admin: &reqwest::Client) -> (bool, String) {
    let (s, page) = app.call(admin, "activity", &[]).await;
    assert_eq!(s, StatusCode::OK, "{page}");
    (
        page["chain_ok"].as_bool().unwrap(),
        page["chain_message"].as_str().unwrap().to_owned(),
    )
}

async fn some_activity(app: &TestApp, admin: &reqwest::Client) {
    for name in ["web-1", "web-2", "web-3"] {
        app.add_vm(admin, name, "linux").await;
    }
}

#[tokio::test]
async fn a_recomputed_activity_log_is_reported_broken() {
    let app = spawn_app().await;
    let admin = browser();
    app.admin_ready(&admin).await;
    some_activity(&app, &admin).await;
    let (s, message) = app.call(&admin, "verify_activity_log", &[]).await;
    assert_eq!(s, StatusCode::OK, "{message}");
    assert!(message.as_str().unwrap().contains("intact"), "{message}");

    rewrite_and_rehash(&app, 3).await;
    let (s, message) = app.call(&admin, "verify_activity_log", &[]).await;
    assert_eq!(s, StatusCode::OK, "{message}");
    let message = message.as_str().unwrap();
    assert!(
        message.starts_with("Hash chain broken at entry 3"),
        "{message}"
    );
    let (ok, shown) = chain(&app, &admin).await;
    assert!(!ok, "the log page says so: {shown}");
    assert!(shown.contains("tampered"), "{shown}");
}

#[tokio::test]
async fn removing_the_newest_activity_log_entries_is_reported() {
    let app = spawn_app().await;
    let admin = browser();
    app.admin_ready(&admin).await;
    some_activity(&app, &admin).await;
    let (s, message) = app.call(&admin, "verify_activity_log", &[]).await;
    assert_eq!(s, StatusCode::OK, "{message}");
    let db = db(&app).await;
    let last: i64 = sqlx::query("SELECT MAX(seq) AS m FROM activity_log")
        .fetch_one(&db)
        .await
        .unwrap()
        .get("m");
    sqlx::query("DELETE FROM activity_log WHERE seq > $1")
        .bind(last - 2)
        .execute(&db)
        .await
        .unwrap();
    sqlx::query("DELETE FROM audit_checkpoints")
        .execute(&db)
        .await
        .unwrap();
    db.close().await;
    let (_, message) = app.call(&admin, "verify_activity_log", &[]).await;
    let message = message.as_str().unwrap();
    assert!(message.contains("entries were removed"), "{message}");
}

#[tokio::test]
async fn only_administrators_over_everything_verify_the_whole_log() {
    let app = spawn_app().await;
    let admin = browser();
    app.admin_ready(&admin).await;
    let (reader, _) = app.user_with_role(&admin, "rita", "reader").await;
    let (s, body) = app.call(&reader, "verify_activity_log", &[]).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{body}");
}

#[tokio::test]
async fn exported_cells_that_a_spreadsheet_would_run_are_defused() {
    let app = spawn_app().await;
    let admin = browser();
    app.admin_ready(&admin).await;
    let vm = app.add_vm(&admin, "web-1", "linux").await;
    app.enable(&admin, &vm, "22", false).await;
    for justification in ["\t=HYPERLINK(\"x\")", "\r+1+1", "@SUM(A1)"] {
        let (s, body) = app
            .call(
                &admin,
                "request_access",
                &[
                    ("vm_ids[0]", vm.as_str()),
                    ("ports[0]", &format!("{vm}:22/tcp")),
                    ("source_mode", "my_ip"),
                    ("duration", "5"),
                    ("justification", justification),
                ],
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{body}");
    }
    let csv = app.get(&admin, "/activity.csv").await.text().await.unwrap();
    assert!(csv.starts_with("seq,time_utc,"), "{csv}");
    // Justifications are trimmed when stored: what is left must still not start a formula.
    for line in csv.lines().skip(1) {
        for cell in line.split("\",\"") {
            let cell = cell.trim_start_matches('"');
            assert!(
                !cell.starts_with(['=', '+', '-', '@', '\t', '\r']),
                "a cell starts a formula: {cell:?} in {line}"
            );
        }
    }
    let body: Value = serde_json::Value::String(csv);
    assert!(body.as_str().unwrap().contains("'@SUM(A1)"));
}
