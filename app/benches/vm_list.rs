//! `make bench`: how the JIT tabs behave with 10,000 VMs on SQLite. Prints figures; it
//! asserts nothing about time.

use portcullis_app::domain::jit::PortRuleInput;
use portcullis_app::domain::{Role, RoleAssignment, Scope, Visibility};
use portcullis_app::services::Actor;
use portcullis_app::store::{NewLogEntry, NewUser, Store, VmFields, VmListQuery, VmTab};
use std::time::{Duration, Instant};

const VMS: usize = 10_000;

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

#[tokio::main]
async fn main() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::connect(&format!(
        "sqlite://{}",
        dir.path().join("bench.db").display()
    ))
    .await
    .unwrap();
    let started = Instant::now();
    let mut configured = Vec::new();
    for i in 0..VMS {
        let vm = store
            .create_vm(
                &VmFields {
                    name: format!("vm-{i:05}"),
                    group: format!("group-{}", i % 50),
                    addresses: "198.51.100.1".into(),
                    os: "linux".into(),
                    exposed_ports: if i % 3 == 0 {
                        "22".into()
                    } else {
                        String::new()
                    },
                },
                NewLogEntry {
                    actor: "bench".into(),
                    action: "vm.create".into(),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        if i % 10 == 0 {
            configured.push(vm.id);
        }
    }
    let insert = started.elapsed();
    let rows = [PortRuleInput {
        enabled: Some("on".into()),
        port: "22".into(),
        protocol: "tcp".into(),
        max_minutes: "180".into(),
        ..Default::default()
    }];
    let admin_role = RoleAssignment {
        role: Role::Admin,
        scope: Scope::All,
    };
    let admin = store
        .create_user(
            &NewUser {
                username: "bench",
                display_name: "Bench",
                password_hash: None,
                must_change_password: false,
            },
            std::slice::from_ref(&admin_role),
            None,
        )
        .await
        .unwrap();
    let actor = Actor {
        user_id: admin.id,
        username: admin.username,
        roles: vec![admin_role],
        ip: "127.0.0.1".parse().unwrap(),
    };
    let t = Instant::now();
    // The form takes 500 VMs at a time.
    for chunk in configured.chunks(500) {
        portcullis_app::services::jit::enable_jit(&store, &actor, chunk, &rows, true)
            .await
            .unwrap();
    }
    let bulk = t.elapsed();

    println!("{VMS} VMs inserted one by one (each with its log entry) in {insert:.2?}");
    println!(
        "bulk-enabled JIT on {} VMs (500 per transaction) in {bulk:.2?}",
        configured.len()
    );
    let everything = Visibility {
        everything: true,
        ..Default::default()
    };
    for (label, tab, search, offset) in [
        ("Configured, page 1", VmTab::Configured, "", 0),
        ("Recommended, page 1", VmTab::Recommended, "", 0),
        ("Not configured, page 1", VmTab::NotConfigured, "", 0),
        (
            "Not configured, page 200",
            VmTab::NotConfigured,
            "",
            199 * 25,
        ),
        ("All, search 'vm-09'", VmTab::All, "vm-09", 0),
        ("All, search 'group-7'", VmTab::All, "group-7", 0),
    ] {
        let q = VmListQuery {
            tab,
            search: search.into(),
            sort: "name".into(),
            desc: false,
            offset,
            limit: 25,
            scope: everything.clone(),
            only_id: None,
        };
        let mut times = Vec::new();
        let mut total = 0;
        for _ in 0..20 {
            let t = Instant::now();
            let (_, n) = store.list_vms(&q).await.unwrap();
            times.push(t.elapsed());
            total = n;
        }
        println!(
            "{label:<28} {total:>6} VMs in tab   median {:>9.2?}   max {:>9.2?}",
            median(times.clone()),
            times.iter().max().unwrap()
        );
    }
}
