//! The activity log against someone who can write the database but does not have the
//! log's key: rewriting an entry and recomputing every later hash, removing the newest
//! entries, forging a checkpoint. Each is found, by the incremental verification the
//! server runs and by the full one. SQLite, and PostgreSQL when `PORTCULLIS_TEST_POSTGRES`
//! names a server.
#![cfg(feature = "ssr")]

mod common;

use common::*;
use portcullis_app::domain::audit::Checkpoint;
use portcullis_app::services::activity::{Anchor, vouch_for_unsigned_entries};
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

/// Without the key: change entry `seq` and recompute the chain after it.
async fn rewrite_and_rehash(w: &World, seq: i64) {
    portcullis_app::store::test_support::rewrite_and_rehash(&w.url, seq)
        .await
        .unwrap();
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
        "Hash chain verified up to entry 8: new entries checked, the last checkpoint unchanged."
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

/// Takes the database back to before the migration that gave entries an HMAC, as a log
/// written by an older version: no HMAC column, no checkpoints, no recorded status.
async fn as_before_hmacs(db: &sqlx::AnyPool) {
    for sql in [
        "DROP INDEX activity_log_action",
        "ALTER TABLE activity_log DROP COLUMN mac",
        "DROP TABLE audit_checkpoints",
        "DROP TABLE audit_status",
        // Only the two migrations that brought keys to the log run again: the later ones
        // stay applied, so this need not undo every migration to come.
        "DELETE FROM _sqlx_migrations WHERE version IN (7, 8)",
    ] {
        sqlx::query(sql).execute(db).await.unwrap();
    }
}

#[tokio::test]
async fn entries_written_before_the_log_had_a_key_are_covered_by_the_first_checkpoint() {
    let w = world().await;
    write(&w, 3).await;
    let db = raw(&w).await;
    as_before_hmacs(&db).await;
    db.close().await;
    // The upgrade: the first start of the new version (no anchor yet) vouches for the
    // three old entries.
    let upgraded = w.replica().await;
    let anchor = Anchor::open(None);
    vouch_for_unsigned_entries(&upgraded, &anchor)
        .await
        .unwrap();
    for i in 0..2 {
        upgraded
            .log_event(common::log(&format!("after-{i}")))
            .await
            .unwrap();
    }
    assert_eq!(
        verified(upgraded.verify_log_increment(None).await.unwrap()).seq,
        5
    );
    assert_eq!(
        verified(upgraded.verify_log_full(None).await.unwrap()).seq,
        5
    );
    // A later start does not vouch again for what has no HMAC.
    let db = raw(&w).await;
    sqlx::query("UPDATE activity_log SET mac = '' WHERE seq = 4")
        .execute(&db)
        .await
        .unwrap();
    db.close().await;
    let later = w.replica().await;
    vouch_for_unsigned_entries(&later, &Anchor::open(None))
        .await
        .unwrap();
    let (at, _) = broken(later.verify_log_full(None).await.unwrap());
    assert_eq!(at, 4);
}

#[tokio::test]
async fn stripping_every_hmac_and_what_vouched_for_them_is_found() {
    let w = world().await;
    write(&w, 6).await;
    let cp = verified(w.store.verify_log_increment(None).await.unwrap());
    // The anchor file outside the database knows that position.
    let anchor = Anchor::open(None);
    anchor.advance(&cp);
    // Someone with the database and without the key strips every HMAC, removes the
    // checkpoints and the recorded status (with the signed boundary), recomputes the
    // chain after an edit, and restarts the server.
    let db = raw(&w).await;
    for sql in [
        "UPDATE activity_log SET mac = ''",
        "DELETE FROM audit_checkpoints",
        "DELETE FROM audit_status",
    ] {
        sqlx::query(sql).execute(&db).await.unwrap();
    }
    db.close().await;
    rewrite_and_rehash(&w, 2).await;
    let restarted = w.replica().await;
    // The start does not vouch again: the anchor knows the log was verified before.
    vouch_for_unsigned_entries(&restarted, &anchor)
        .await
        .unwrap();
    // (Checked without the anchor's own position, so that the HMACs alone must tell.)
    let (at, reason) = broken(restarted.verify_log_full(None).await.unwrap());
    assert_eq!(at, 1, "{reason}");
    let (at, _) = broken(restarted.verify_log_increment(None).await.unwrap());
    assert_eq!(at, 1);

    // Moving the legacy boundary to the end does not help without the key either.
    let db = raw(&w).await;
    sqlx::query(
        "INSERT INTO audit_status (id, ok, verified_seq, message, checked_at, legacy_until, legacy_mac) \
         VALUES (1, 1, 6, 'ok', 0, 6, 'forged') ON CONFLICT (id) DO UPDATE SET legacy_until = 6, legacy_mac = 'forged'",
    )
    .execute(&db)
    .await
    .unwrap();
    db.close().await;
    let again = w.replica().await;
    vouch_for_unsigned_entries(&again, &anchor).await.unwrap();
    let (at, _) = broken(again.verify_log_full(None).await.unwrap());
    assert_eq!(at, 1);
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

#[tokio::test]
async fn exports_run_one_at_a_time_and_read_to_the_end() {
    use futures::StreamExt;
    use portcullis_app::domain::{Role, Scope};
    use portcullis_app::services::activity::export_batches;
    let w = world().await;
    write(&w, 2500).await;
    let auditor = w.user("auditor", &[(Role::Reader, Scope::All)]).await;
    let first = export_batches(&w.store, &auditor, Default::default())
        .await
        .unwrap();
    // A second export while the first is open (a reader looping exports) waits its turn.
    let second = export_batches(&w.store, &auditor, Default::default()).await;
    assert!(
        matches!(second, Err(portcullis_app::error::AppError::Busy { .. })),
        "a second export ran beside the first"
    );
    let batches: Vec<_> = first.collect().await;
    let seqs: Vec<i64> = batches
        .into_iter()
        .flat_map(|b| b.unwrap())
        .map(|e| e.content.seq)
        .collect();
    assert_eq!(seqs.len(), 2500);
    assert_eq!(seqs.first(), Some(&2500));
    assert_eq!(seqs.last(), Some(&1));
    // Finished, it gives its turn back.
    assert!(
        export_batches(&w.store, &auditor, Default::default())
            .await
            .is_ok()
    );
}

async fn entry(w: &World, actor: &str, action: &str, vm: &str) {
    w.store
        .log_event(NewLogEntry {
            actor: actor.into(),
            action: action.into(),
            vm: vm.into(),
            result: "success".into(),
            ..Default::default()
        })
        .await
        .unwrap();
}

async fn vms_matching(w: &World, vm: Option<&str>, actor: Option<&str>) -> (Vec<String>, i64) {
    vms_of(
        w,
        &portcullis_app::store::LogQuery {
            vm: vm.map(str::to_owned),
            actor: actor.map(str::to_owned),
            limit: 50,
            ..Default::default()
        },
    )
    .await
}

/// The VM names of the entries a query finds, sorted, and how many it finds.
async fn vms_of(w: &World, q: &portcullis_app::store::LogQuery) -> (Vec<String>, i64) {
    let (page, total) = w.store.query_log(q).await.unwrap();
    let mut names: Vec<String> = page.into_iter().map(|e| e.content.vm).collect();
    names.sort();
    (names, total)
}

#[tokio::test]
async fn vm_and_user_filters_match_a_prefix_in_any_case_and_wildcards_are_plain() {
    let w = world().await;
    for (actor, vm) in [
        ("alice", "Web-01"),
        ("alice", "web-02"),
        ("bob", "db_1"),
        ("bob", "db-1"),
        ("carol", "dbx1"),
        ("alice.admin", "xweb"),
        ("bob", "100%"),
        ("bob", "1000"),
        ("bob", ""),
        ("bob", "\u{10FFFF}x"),
        ("bob", "Élan"),
    ] {
        entry(&w, actor, "request", vm).await;
    }
    let matching = |vm, actor| vms_matching(&w, vm, actor);
    assert_eq!(
        matching(Some("WEB"), None).await,
        (vec!["Web-01".to_owned(), "web-02".to_owned()], 2),
        "a prefix, case ignored; not a substring (xweb)"
    );
    // `_` and `%` typed by the user are the characters, not wildcards.
    assert_eq!(
        matching(Some("db_"), None).await,
        (vec!["db_1".to_owned()], 1)
    );
    assert_eq!(
        matching(Some("100%"), None).await,
        (vec!["100%".to_owned()], 1)
    );
    assert_eq!(matching(Some("%"), None).await.1, 0);
    assert_eq!(matching(Some("db"), None).await.1, 3);
    assert_eq!(
        matching(None, Some("ALICE")).await.1,
        3,
        "alice and alice.admin"
    );
    assert_eq!(matching(None, Some("alice.")).await.1, 1);
    assert_eq!(
        matching(Some("web"), Some("alice")).await,
        (vec!["Web-01".to_owned(), "web-02".to_owned()], 2)
    );
    assert_eq!(matching(Some("zzz"), None).await, (vec![], 0));
    // ASCII letters alone are folded, on both backends whatever PostgreSQL's locale.
    assert_eq!(
        matching(Some("ÉL"), None).await,
        (vec!["Élan".to_owned()], 1)
    );
    assert_eq!(matching(Some("Éla"), None).await.1, 1);
    assert_eq!(matching(Some("él"), None).await.1, 0);
    // The end of the code points: a prefix that no string bounds above.
    assert_eq!(
        matching(Some("\u{10FFFF}"), None).await,
        (vec!["\u{10FFFF}x".to_owned()], 1)
    );

    // In double quotes (the VM page's link, the API's exact form): the whole name, in any
    // case; a prefix of it is nothing.
    let filtered = |vm: &str, actor: &str| {
        let f = portcullis_app::api::jit::read_log_filter(vm, actor, "", "", "", "");
        assert!(f.errors.is_empty(), "{:?}", f.errors);
        let w = &w;
        async move { vms_of(w, &f.query).await }
    };
    assert_eq!(filtered("web-0", "").await.1, 2, "unquoted: a prefix");
    assert_eq!(filtered("\"web-0\"", "").await.1, 0, "quoted: not a prefix");
    assert_eq!(
        filtered("\"web-01\"", "").await,
        (vec!["Web-01".to_owned()], 1),
        "quoted: the whole name, case ignored"
    );
    assert_eq!(filtered("", "alice").await.1, 3, "alice and alice.admin");
    assert_eq!(filtered("", "\"alice\"").await.1, 2, "alice only");
    // A control character is no name: refused beside its field, not sent to the database.
    let f = portcullis_app::api::jit::read_log_filter("web\0", "a\u{7}", "", "", "", "");
    assert_eq!(
        f.errors.get("vm"),
        Some("Names have no control characters.")
    );
    assert_eq!(
        f.errors.get("actor"),
        Some("Names have no control characters.")
    );
    assert_eq!((f.query.vm, f.query.actor), (None, None));
}

#[tokio::test]
async fn suggestions_are_the_names_of_the_log_starting_with_the_filter_and_bounded() {
    let w = world().await;
    for i in 0..30 {
        entry(&w, &format!("user{i:02}"), "request", &format!("VM-{i:02}")).await;
        entry(&w, &format!("user{i:02}"), "deny", &format!("VM-{i:02}")).await;
    }
    entry(&w, "system", "grant.expire", "").await;
    entry(&w, "alice", "sign-in", "other_vm").await;
    let s = w.store.log_suggestions("", "", 10).await.unwrap();
    assert_eq!(s.vms.len(), 10);
    assert_eq!(
        s.vms[0], "other_vm",
        "no empty name; in order, case ignored"
    );
    assert_eq!(s.vms[1], "VM-00", "each name once, as written");
    assert_eq!(s.vms[9], "VM-08");
    assert_eq!(s.actors[..2], ["alice".to_owned(), "system".to_owned()]);
    assert_eq!(s.actions, ["deny", "grant.expire", "request", "sign-in"]);
    let s = w.store.log_suggestions("vm-2", "USER1", 50).await.unwrap();
    assert_eq!(
        s.vms,
        (20..30).map(|i| format!("VM-{i}")).collect::<Vec<_>>()
    );
    assert_eq!(
        s.actors,
        (10..20).map(|i| format!("user{i}")).collect::<Vec<_>>()
    );
    let s = w.store.log_suggestions("vm_", "", 50).await.unwrap();
    assert!(s.vms.is_empty(), "`_` is not a wildcard: {:?}", s.vms);
    // One column at a time, as the page asks while a filter is typed in: the same names.
    use portcullis_app::store::LogName;
    let vms = w.store.log_names(LogName::Vm, "vm-2", 50).await.unwrap();
    assert_eq!(vms, (20..30).map(|i| format!("VM-{i}")).collect::<Vec<_>>());
    let users = w.store.log_names(LogName::Actor, "USER1", 3).await.unwrap();
    assert_eq!(users, ["user10", "user11", "user12"]);
    let first = w.store.log_names(LogName::Vm, "", 2).await.unwrap();
    assert_eq!(first, ["other_vm", "VM-00"], "no empty name");
}

#[tokio::test]
async fn the_page_flags_what_it_cannot_use_and_reads_the_log_without_it() {
    use portcullis_app::domain::{Role, Scope};
    use portcullis_app::services::activity::browse;
    let w = world().await;
    entry(&w, "alice", "request", "web-01").await;
    entry(&w, "bob", "deny", "db-01").await;
    let auditor = w.user("auditor", &[(Role::Reader, Scope::All)]).await;
    let f = portcullis_app::api::jit::read_log_filter("web", "", "no.such", "2027-13-01", "", "");
    assert_eq!(f.errors.get("from"), Some("Enter a date as YYYY-MM-DD."));
    assert_eq!(f.query.from_ms, None);
    let b = browse(&w.store, &auditor, f.query, 50).await.unwrap();
    assert!(b.unknown_action);
    assert_eq!(
        b.total, 1,
        "the VM filter holds; the unknown action is left out"
    );
    assert_eq!(b.entries[0].content.vm, "web-01");
    // Someone scoped to a group does not read the log, nor its names.
    let scoped = w
        .user("scoped", &[(Role::Requester, Scope::Group("prod".into()))])
        .await;
    let q = portcullis_app::store::LogQuery::default();
    assert!(matches!(
        browse(&w.store, &scoped, q, 50).await,
        Err(portcullis_app::error::AppError::Forbidden)
    ));
}

#[test]
fn dates_are_read_in_the_chosen_zone() {
    use portcullis_app::api::jit::read_log_filter;
    let utc = read_log_filter("", "", "", "2027-01-15", "2027-01-15", "");
    assert!(utc.errors.is_empty());
    assert_eq!(utc.query.from_ms, Some(1_800_000_000_000 - 8 * 3_600_000));
    assert_eq!(utc.query.to_ms, Some(1_800_000_000_000 + 16 * 3_600_000));
    // Midnight in Kolkata is 18:30 UTC the day before.
    let ist = read_log_filter("", "", "", "2027-01-15", "2027-01-15", "Asia/Kolkata");
    assert!(ist.errors.is_empty());
    assert_eq!(
        ist.query.from_ms,
        Some(1_800_000_000_000 - 8 * 3_600_000 - 5 * 3_600_000 - 1_800_000)
    );
    assert_eq!(
        ist.zone.format(1_800_000_000_000),
        "2027-01-15 13:30:00 +05:30"
    );
    assert_eq!(
        utc.zone.format(1_800_000_000_000),
        "2027-01-15 08:00:00 UTC"
    );
    let bad = read_log_filter("", "", "", "2027-01-16", "2027-01-15", "Mars/Olympus");
    assert_eq!(
        bad.errors.get("to"),
        Some("The end must be after the start.")
    );
    assert_eq!(bad.query.to_ms, None);
    assert!(bad.errors.get("tz").is_some());
    assert_eq!(bad.zone.name(), "UTC");
    let long = "x".repeat(101);
    let bad = read_log_filter(&long, "", "Approve!", "", "", "../../etc/passwd");
    assert_eq!(bad.errors.get("vm"), Some("At most 100 characters."));
    assert!(bad.errors.get("action").is_some());
    assert!(bad.errors.get("tz").is_some());
    assert_eq!((bad.query.vm, bad.query.action), (None, None));
}
