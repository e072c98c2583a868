//! `make bench`: how the JIT tabs and the REST lists behave with 10,000 VMs on SQLite,
//! half of them configured with requests and grants in force (the figures the Configured
//! tab shows, as in issue 18). Prints the time of a page and the SQL statements it
//! takes, which must not grow with the rows on it; it asserts nothing about time.

use portcullis_app::domain::jit::{Port, PortRuleInput, Protocol};
use portcullis_app::domain::request::RequestSpec;
use portcullis_app::domain::{Cidr, Role, RoleAssignment, Scope, Visibility};
use portcullis_app::services::Actor;
use portcullis_app::store::{NewLogEntry, NewUser, Store, VmFields, VmListQuery, VmTab};
use std::time::{Duration, Instant};

#[path = "../tests/common/statements.rs"]
mod counted;

const VMS: usize = 10_000;

/// Runs `page` 20 times: its median and longest time, and the statements of one run.
async fn measure<F, Fut>(page: F) -> (Duration, Duration, usize)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let mut times = Vec::new();
    let mut statements = usize::MAX;
    for _ in 0..20 {
        let before = counted::settled().await;
        let t = Instant::now();
        page().await;
        times.push(t.elapsed());
        statements = statements.min(counted::settled().await - before);
    }
    let max = *times.iter().max().unwrap();
    (median(times), max, statements)
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

#[tokio::main]
async fn main() {
    counted::install();
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
        if i % 2 == 0 {
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

    // Two grants in force on every configured VM, from two users: the figures path.
    let t = Instant::now();
    let mut requesters = Vec::new();
    for name in ["rita", "sam"] {
        let user = store
            .create_user(
                &NewUser {
                    username: name,
                    display_name: name,
                    password_hash: None,
                    must_change_password: false,
                },
                &[RoleAssignment {
                    role: Role::Requester,
                    scope: Scope::All,
                }],
                None,
            )
            .await
            .unwrap();
        requesters.push(user.id);
    }
    for chunk in configured.chunks(500) {
        let mut tx = store.begin_write().await.unwrap();
        for vm_id in chunk {
            for (n, requester) in requesters.iter().enumerate() {
                let spec = RequestSpec {
                    ports: vec![(Port::parse("22").unwrap(), Protocol::Tcp)],
                    source: Cidr::parse(&format!("203.0.113.{}", n + 1)).unwrap(),
                    duration_secs: 3600,
                    justification: "bench".into(),
                    needs_approval: false,
                    approval_timeout_secs: None,
                    approvals_required: Default::default(),
                    start_at: None,
                };
                let log = NewLogEntry {
                    actor: "bench".into(),
                    action: "request".into(),
                    ..Default::default()
                };
                tx.create_request("bench", vm_id, requester, &spec, log)
                    .await
                    .unwrap();
            }
        }
        tx.commit().await.unwrap();
    }
    let granted = t.elapsed();

    println!("{VMS} VMs inserted one by one (each with its log entry) in {insert:.2?}");
    println!(
        "bulk-enabled JIT on {} VMs (500 per transaction) in {bulk:.2?}",
        configured.len()
    );
    println!(
        "{} requests with their grants (500 VMs per transaction) in {granted:.2?}",
        configured.len() * requesters.len()
    );
    let everything = Visibility {
        everything: true,
        ..Default::default()
    };
    for (label, tab, search, offset) in [
        ("Configured, page 1", VmTab::Configured, "", 0),
        ("Configured, page 100", VmTab::Configured, "", 99 * 25),
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
        let total = store.list_vms(&q).await.unwrap().1.of(tab);
        let (median, max, statements) = measure(|| async {
            store.list_vms(&q).await.unwrap();
        })
        .await;
        println!(
            "{label:<28} {total:>6} VMs in tab   median {median:>9.2?}   max {max:>9.2?}   \
             {statements:>3} SQL statements"
        );
    }
    // The REST lists, a page of 100 through the services they call.
    let all = VmListQuery {
        tab: VmTab::All,
        search: String::new(),
        sort: "name".into(),
        desc: false,
        offset: 0,
        limit: 100,
        scope: Default::default(),
        only_id: None,
    };
    let (median, max, statements) = measure(|| async {
        portcullis_app::services::jit::list_vms(&store, &actor, all.clone())
            .await
            .unwrap();
    })
    .await;
    println!(
        "{:<28} {VMS:>6} VMs in list  median {median:>9.2?}   max {max:>9.2?}   \
         {statements:>3} SQL statements",
        "REST VMs, 100 per page"
    );
    let (median, max, statements) = measure(|| async {
        portcullis_app::services::jit::list_policies(&store, &actor, 0, 100)
            .await
            .unwrap();
    })
    .await;
    println!(
        "{:<28} {:>6} policies     median {median:>9.2?}   max {max:>9.2?}   \
         {statements:>3} SQL statements",
        "REST policies, 100 per page",
        configured.len()
    );
}
