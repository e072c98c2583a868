//! Importing many VMs: one transaction for the whole file with an activity log entry per
//! VM, nothing stored when any row is bad (a bad cell, a name already taken, a group the
//! importer may not add to). Runs on SQLite, and on PostgreSQL with
//! `PORTCULLIS_TEST_POSTGRES`.
#![cfg(feature = "ssr")]

use portcullis_app::domain::vm_import::parse_csv;
use portcullis_app::domain::{Role, RoleAssignment, Scope};
use portcullis_app::error::AppError;
use portcullis_app::services::{Actor, jit};
use portcullis_app::store::{LogQuery, NewLogEntry, Store, VmFields};

fn actor(role: Role, scope: Scope) -> Actor {
    Actor {
        user_id: "u1".into(),
        username: "importer".into(),
        roles: vec![RoleAssignment { role, scope }],
        ip: "198.51.100.9".parse().unwrap(),
    }
}

async fn store(name: &str) -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let url = portcullis_app::store::test_support::fresh_database_url(dir.path(), name)
        .await
        .unwrap();
    let store = Store::connect(&url).await.unwrap();
    (dir, store)
}

async fn created_log(store: &Store) -> Vec<String> {
    let q = LogQuery {
        action: Some("vm.create".into()),
        limit: 10_000,
        ..LogQuery::default()
    };
    let mut vms: Vec<String> = store
        .log_batch(&q)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.content.vm)
        .collect();
    vms.sort();
    vms
}

fn csv(names: &[&str]) -> String {
    let mut text = String::from("name,group,addresses,os,exposed_ports\n");
    for n in names {
        text.push_str(&format!(
            "{n},prod,\"198.51.100.5, 2001:db8::5\",linux,22\n"
        ));
    }
    text
}

async fn taken(store: &Store, names: &[&str]) -> usize {
    let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    store.taken_vm_names(&names).await.unwrap().len()
}

#[tokio::test]
async fn a_good_file_stores_every_vm_with_its_log_entry_in_one_go() {
    let (_dir, store) = store("import_good").await;
    let admin = actor(Role::Admin, Scope::All);
    let names: Vec<String> = (0..120).map(|i| format!("web-{i:03}")).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();

    // A preview stores nothing.
    let preview = jit::import_vms(&store, &admin, parse_csv(&csv(&refs)), true)
        .await
        .unwrap();
    assert!(preview.file.is_ok(), "{:?}", preview.file.errors());
    assert!(preview.added.is_empty());
    assert_eq!(taken(&store, &refs).await, 0);
    assert!(created_log(&store).await.is_empty());

    let done = jit::import_vms(&store, &admin, parse_csv(&csv(&refs)), false)
        .await
        .unwrap();
    assert_eq!(done.added.len(), 120);
    assert_eq!(taken(&store, &refs).await, 120);
    let mut want = names.clone();
    want.sort();
    assert_eq!(created_log(&store).await, want, "one log entry per VM");
    let vm = store.get_vm_by_name("web-007").await.unwrap().unwrap();
    assert_eq!(vm.addresses, "198.51.100.5, 2001:db8::5");
    assert_eq!(vm.exposed_ports, "22");
    let verified = store.verify_log_full(None).await.unwrap();
    assert!(
        matches!(verified, portcullis_app::store::Verification::Verified(_)),
        "{verified:?}"
    );
}

#[tokio::test]
async fn one_bad_row_stores_nothing() {
    let (_dir, store) = store("import_bad").await;
    let admin = actor(Role::Admin, Scope::All);
    // A bad cell on the last line.
    let mut text = csv(&["a-1", "a-2", "a-3"]);
    text.push_str("a-4,prod,300.1.1.1,linux,22\n");
    let out = jit::import_vms(&store, &admin, parse_csv(&text), false)
        .await
        .unwrap();
    assert!(out.added.is_empty());
    let errors = out.file.errors();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(
        (errors[0].line, errors[0].column.as_str()),
        (5, "addresses")
    );
    assert_eq!(taken(&store, &["a-1", "a-2", "a-3", "a-4"]).await, 0);
    assert!(created_log(&store).await.is_empty());

    // A name that exists already is a row error, found in the preview and at import.
    store
        .create_vm(
            &VmFields {
                name: "a-2".into(),
                group: "prod".into(),
                addresses: String::new(),
                os: "linux".into(),
                exposed_ports: String::new(),
            },
            NewLogEntry::default(),
        )
        .await
        .unwrap();
    for dry_run in [true, false] {
        let out = jit::import_vms(
            &store,
            &admin,
            parse_csv(&csv(&["a-1", "a-2", "a-3"])),
            dry_run,
        )
        .await
        .unwrap();
        assert!(out.added.is_empty());
        let errors = out.file.errors();
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!((errors[0].line, errors[0].column.as_str()), (3, "name"));
        assert!(errors[0].message.contains("already exists"));
    }
    assert_eq!(taken(&store, &["a-1", "a-3"]).await, 0);
}

#[tokio::test]
async fn each_row_is_allowed_by_its_own_group() {
    let (_dir, store) = store("import_scope").await;
    let group_admin = actor(Role::Admin, Scope::Group("prod".into()));
    let text = "name,group\nok-1,prod\nelsewhere-1,dev\nok-2,prod\n";
    let out = jit::import_vms(&store, &group_admin, parse_csv(text), false)
        .await
        .unwrap();
    assert!(out.added.is_empty());
    let errors = out.file.errors();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!((errors[0].line, errors[0].column.as_str()), (3, "group"));
    assert_eq!(taken(&store, &["ok-1", "ok-2", "elsewhere-1"]).await, 0);

    let out = jit::import_vms(
        &store,
        &group_admin,
        parse_csv("name,group\nok-1,prod\nok-2,prod\n"),
        false,
    )
    .await
    .unwrap();
    assert_eq!(out.added.len(), 2);

    // Someone who may add VMs nowhere is refused outright.
    let requester = actor(Role::Requester, Scope::All);
    let refused = jit::import_vms(
        &store,
        &requester,
        parse_csv("name,group\nx-1,prod\n"),
        true,
    )
    .await
    .unwrap_err();
    assert_eq!(refused, AppError::Forbidden);
}
