//! The activity log against someone who can write the database but does not have the
//! log's key: rewriting an entry and recomputing every later hash, removing the newest
//! entries, forging a checkpoint. Each is found, by the incremental verification the
//! server runs and by the full one. SQLite, and PostgreSQL when `PORTCULLIS_TEST_POSTGRES`
//! names a server.
#![cfg(feature = "ssr")]

mod common;

use common::*;
use portcullis_app::domain::audit::{Checkpoint, EntryContent, entry_hash};
use portcullis_app::store::{NewLogEntry, Verification};
use sqlx::Row;

async fn write(w: &World, n: usize) {
    for i in 0..n {
        w.store
            .log_event(NewLogEntry {
                actor: format!("user{i}"),
                action: "sign-in".into(),
                result: "success".into(),
                ..Default::default()
            })
            .await
            .unwrap();
    }
}

async fn raw(w: &World) -> sqlx::AnyPool {
    sqlx::any::install_default_drivers();
    sqlx::AnyPool::connect(&w.url).await.unwrap()
}

/// What an attacker with database access and without the key does: change entry `seq`
/// and recompute the hash of it and every later entry so that the chain links up.
async fn rewrite_and_rehash(w: &World, seq: i64) {
    let db = raw(w).await;
    sqlx::query("UPDATE activity_log SET actor = 'mallory' WHERE seq = $1")
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

fn verified(v: Verification) -> Checkpoint {
    match v {
        Verification::Verified(cp) => cp,
        other => panic!("expected a verified log, got {other:?}"),
    }
}

fn broken(v: Verification) -> (i64, String) {
    match v {
        Verification::Broken(b) => (b.at_seq, b.reason),
        other => panic!("expected a broken log, got {other:?}"),
    }
}

#[tokio::test]
async fn each_round_verifies_what_is_new_and_signs_a_checkpoint() {
    let w = world().await;
    write(&w, 5).await;
    let cp = verified(w.store.verify_log_increment(None).await.unwrap());
    assert_eq!(cp.seq, 5);
    write(&w, 3).await;
    assert_eq!(
        verified(w.store.verify_log_increment(Some(&cp)).await.unwrap()).seq,
        8
    );
    let status = w.store.audit_status().await.unwrap().unwrap();
    assert!(status.ok);
    assert_eq!(status.verified_seq, 8);
    assert_eq!(
        status.message,
        "Hash chain verified: entries 1 to 8 intact."
    );
}

#[tokio::test]
async fn a_recomputed_chain_is_found_by_both_verifications() {
    let w = world().await;
    write(&w, 6).await;
    verified(w.store.verify_log_increment(None).await.unwrap());
    write(&w, 4).await;
    rewrite_and_rehash(&w, 3).await;
    // Incremental: the signed checkpoint at 6 no longer matches the entry there.
    let (at, reason) = broken(w.store.verify_log_increment(None).await.unwrap());
    assert_eq!(at, 6);
    assert!(reason.contains("changed after it was verified"), "{reason}");
    let status = w.store.audit_status().await.unwrap().unwrap();
    assert!(!status.ok, "the page says so: {status:?}");
    assert!(status.message.starts_with("Hash chain broken at entry 6"));
    // Full: entry 3 itself carries an HMAC the attacker could not make.
    let (at, reason) = broken(w.store.verify_log_full(None).await.unwrap());
    assert_eq!(at, 3);
    assert!(reason.contains("HMAC"), "{reason}");
    // Later rounds keep saying so.
    write(&w, 1).await;
    broken(w.store.verify_log_increment(None).await.unwrap());
}

#[tokio::test]
async fn removing_the_newest_entries_is_found_by_the_anchor_kept_outside() {
    let w = world().await;
    write(&w, 10).await;
    let anchor = verified(w.store.verify_log_increment(None).await.unwrap());
    assert_eq!(anchor.seq, 10);
    // The attacker deletes the last four entries, and the checkpoints that name them.
    let db = raw(&w).await;
    sqlx::query("DELETE FROM activity_log WHERE seq > 6")
        .execute(&db)
        .await
        .unwrap();
    sqlx::query("DELETE FROM audit_checkpoints")
        .execute(&db)
        .await
        .unwrap();
    db.close().await;
    let (at, reason) = broken(w.store.verify_log_increment(Some(&anchor)).await.unwrap());
    assert_eq!(at, 7);
    assert!(
        reason.contains("the log ends at entry 6 but entry 10 was verified before"),
        "{reason}"
    );
    let (_, reason) = broken(w.store.verify_log_full(Some(&anchor)).await.unwrap());
    assert!(reason.contains("entries were removed"), "{reason}");
}

#[tokio::test]
async fn a_forged_checkpoint_or_a_stripped_hmac_is_found() {
    let w = world().await;
    write(&w, 4).await;
    verified(w.store.verify_log_increment(None).await.unwrap());
    write(&w, 2).await;
    let db = raw(&w).await;
    // A newer checkpoint made without the key, to skip the entries after 4.
    let hash: String = sqlx::query("SELECT hash FROM activity_log WHERE seq = 6")
        .fetch_one(&db)
        .await
        .unwrap()
        .get("hash");
    sqlx::query("INSERT INTO audit_checkpoints (seq, hash, mac, at) VALUES (6, $1, 'forged', 0)")
        .bind(&hash)
        .execute(&db)
        .await
        .unwrap();
    let (at, reason) = broken(w.store.verify_log_increment(None).await.unwrap());
    assert_eq!(at, 6);
    assert!(reason.contains("not signed"), "{reason}");
    sqlx::query("DELETE FROM audit_checkpoints WHERE seq = 6")
        .execute(&db)
        .await
        .unwrap();
    // An entry whose HMAC was blanked to pass as written before the log had a key.
    sqlx::query("UPDATE activity_log SET mac = '' WHERE seq = 5")
        .execute(&db)
        .await
        .unwrap();
    db.close().await;
    let (at, _) = broken(w.store.verify_log_full(None).await.unwrap());
    assert_eq!(at, 5);
}

#[tokio::test]
async fn entries_written_before_the_log_had_a_key_are_covered_by_the_first_checkpoint() {
    let w = world().await;
    write(&w, 3).await;
    // As a log upgraded from a version without HMACs: its first entries have none.
    let db = raw(&w).await;
    sqlx::query("UPDATE activity_log SET mac = ''")
        .execute(&db)
        .await
        .unwrap();
    db.close().await;
    write(&w, 2).await;
    assert_eq!(
        verified(w.store.verify_log_increment(None).await.unwrap()).seq,
        5
    );
    assert_eq!(
        verified(w.store.verify_log_full(None).await.unwrap()).seq,
        5
    );
}

#[tokio::test]
async fn pages_are_read_by_position_and_huge_offsets_are_clamped() {
    let w = world().await;
    write(&w, 30).await;
    let (page, total) = w
        .store
        .query_log(&portcullis_app::store::LogQuery {
            limit: 10,
            offset: i64::MAX,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(total, 30);
    assert!(page.is_empty());
    let (page, _) = w
        .store
        .query_log(&portcullis_app::store::LogQuery {
            limit: 10,
            before_seq: Some(21),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(page.first().unwrap().content.seq, 20);
    assert_eq!(page.last().unwrap().content.seq, 11);
}
