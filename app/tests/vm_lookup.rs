//! Finding one VM for the REST API: by id or by name, and with its figures even when
//! other VMs' names contain its name or it contains a LIKE wildcard.
#![cfg(feature = "ssr")]

use portcullis_app::domain::{Role, RoleAssignment, Scope};
use portcullis_app::error::AppError;
use portcullis_app::services::{Actor, jit};
use portcullis_app::store::{NewLogEntry, Store, VmFields, VmListQuery, VmTab};

fn fields(name: &str, group: &str) -> VmFields {
    VmFields {
        name: name.into(),
        group: group.into(),
        addresses: "198.51.100.5".into(),
        os: "linux".into(),
        exposed_ports: String::new(),
    }
}

fn actor(role: Role, scope: Scope) -> Actor {
    Actor {
        user_id: "u1".into(),
        username: "someone".into(),
        roles: vec![RoleAssignment { role, scope }],
        ip: "198.51.100.9".parse().unwrap(),
    }
}

#[tokio::test]
async fn a_vm_is_found_by_id_or_name_among_many_like_it() {
    let dir = tempfile::tempdir().unwrap();
    let url = portcullis_app::store::test_support::fresh_database_url(dir.path(), "lookup")
        .await
        .unwrap();
    let store = Store::connect(&url).await.unwrap();
    // A search for "web-1" also finds "a-web-1-000"…, which sort before it.
    for i in 0..20 {
        store
            .create_vm(
                &fields(&format!("a-web-1-{i:03}"), "prod"),
                NewLogEntry::default(),
            )
            .await
            .unwrap();
    }
    let target = store
        .create_vm(&fields("web-1", "prod"), NewLogEntry::default())
        .await
        .unwrap();
    store
        .create_vm(&fields("db-1", "dev"), NewLogEntry::default())
        .await
        .unwrap();
    let underscored = store
        .create_vm(&fields("db_primary", "dev"), NewLogEntry::default())
        .await
        .unwrap();
    store
        .create_vm(&fields("dbxprimary", "dev"), NewLogEntry::default())
        .await
        .unwrap();
    let everyone = actor(Role::Reader, Scope::All);

    let by_name = jit::find_vm(&store, &everyone, "web-1").await.unwrap();
    let by_id = jit::find_vm(&store, &everyone, &target.id).await.unwrap();
    assert_eq!(by_name.id, target.id);
    assert_eq!(by_id.id, target.id);
    let summary = jit::vm_summary(&store, &everyone, &target.id)
        .await
        .unwrap();
    assert_eq!(summary.vm.name, "web-1");
    // "_" in a name is a character, not a wildcard: found by name, and searched as itself.
    let found = jit::find_vm(&store, &everyone, "db_primary").await.unwrap();
    assert_eq!(found.id, underscored.id);
    let summary = jit::vm_summary(&store, &everyone, &underscored.id)
        .await
        .unwrap();
    assert_eq!(summary.vm.name, "db_primary");
    let (rows, total) = jit::list_vms(
        &store,
        &everyone,
        VmListQuery {
            tab: VmTab::All,
            search: "db_".into(),
            sort: "name".into(),
            desc: false,
            offset: 0,
            limit: 50,
            scope: Default::default(),
            only_id: None,
        },
    )
    .await
    .unwrap();
    assert_eq!(total.of(VmTab::All), 1);
    assert_eq!(rows[0].vm.name, "db_primary");

    // Outside one's scope a VM is simply not there, by name or by id.
    let dev_only = actor(Role::Admin, Scope::Group("dev".into()));
    assert_eq!(
        jit::find_vm(&store, &dev_only, "web-1").await.unwrap_err(),
        AppError::NotFound("The VM".into())
    );
    assert_eq!(
        jit::find_vm(&store, &dev_only, &target.id)
            .await
            .unwrap_err(),
        AppError::NotFound("The VM".into())
    );
    assert!(jit::find_vm(&store, &dev_only, "db-1").await.is_ok());
    assert!(jit::find_vm(&store, &everyone, "nope").await.is_err());
}
