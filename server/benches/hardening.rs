//! `make bench` (part of it): figures for the hardening work, not tests. Prints:
//! - the server's resident memory before and after 1,000 parallel sign-in attempts from
//!   1,000 addresses (the release binary, as `make run` serves it);
//! - the activity page and `GET /api/v1/activity` p50/p95 with 10,000, 100,000 and
//!   1,000,000 entries in the log (SQLite), one client and eight at once.
//!
//! `BENCH_LOG_SIZES=10000,100000` picks other log sizes.

use portcullis_app::domain::{Role, RoleAssignment, Scope};
use portcullis_app::services::Actor;
use portcullis_app::store::{NewLogEntry, NewUser, Store};
use std::time::{Duration, Instant};

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1]
}

async fn sign_in_memory() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let binary = root.join("target/release/portcullis-server");
    if !binary.exists() {
        panic!("{} is missing: run `make release` first", binary.display());
    }
    let dir = tempfile::tempdir().unwrap();
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let mut child = std::process::Command::new(&binary)
        .env("PORTCULLIS_LISTEN", format!("127.0.0.1:{port}"))
        .env(
            "PORTCULLIS_DATABASE_URL",
            format!("sqlite://{}", dir.path().join("bench.db").display()),
        )
        .env("PORTCULLIS_SITE_ROOT", dir.path())
        .env("PORTCULLIS_TRUSTED_PROXIES", "127.0.0.1")
        .env("PORTCULLIS_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    for _ in 0..200 {
        if http.get(format!("{base}/healthz")).send().await.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let before = rss_kib(child.id());
    let started = Instant::now();
    let attempts = (0..1000u32).map(|i| {
        let http = http.clone();
        let base = base.clone();
        async move {
            // A thousand addresses (behind the trusted proxy) and user names: the
            // per-address and per-user limits do not apply, the hasher's queue does.
            let forwarded = if std::env::var_os("BENCH_SAME_ADDRESS").is_some() {
                "10.0.0.1".to_owned()
            } else {
                format!("10.{}.{}.{}", i / 65536, (i / 256) % 256, i % 256)
            };
            http.post(format!("{base}/api/login"))
                .header("X-Forwarded-For", forwarded)
                .header("Origin", &base)
                .form(&[
                    ("username", format!("user{i}")),
                    ("password", "not the password".to_owned()),
                ])
                .send()
                .await
                .map(|r| r.status().as_u16())
                .unwrap_or(0)
        }
    });
    let statuses = futures::future::join_all(attempts).await;
    let took = started.elapsed();
    let after = rss_kib(child.id());
    let peak = std::fs::read_to_string(format!("/proc/{}/status", child.id()))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1).map(str::to_owned))
        .unwrap_or_default();
    let threads = std::fs::read_dir(format!("/proc/{}/task", child.id()))
        .map(|d| d.count())
        .unwrap_or(0);
    println!("sign-in: server threads after the burst: {threads}");
    let count = |code: u16| statuses.iter().filter(|s| **s == code).count();
    println!(
        "sign-in: 1,000 parallel attempts in {took:.1?}: {} refused as wrong (422), {} asked to retry (503), {} other",
        count(422),
        count(503),
        1000 - count(422) - count(503)
    );
    println!(
        "sign-in: server resident memory {} MiB before, {} MiB after, peak {} MiB",
        before / 1024,
        after / 1024,
        peak.parse::<u64>().unwrap_or(0) / 1024
    );
    let _ = child.kill();
    let _ = child.wait();
}

async fn fill(store: &Store, from: usize, to: usize) {
    let mut i = from;
    while i < to {
        let mut tx = store.begin_write().await.unwrap();
        for _ in 0..5000.min(to - i) {
            tx.log(NewLogEntry {
                actor: format!("user{}", i % 500),
                client_ip: "198.51.100.7".into(),
                action: ["request", "approve", "revoke", "expire", "sign-in"][i % 5].into(),
                vm: format!("vm-{}", i % 2000),
                ports: "22/tcp".into(),
                source: "198.51.100.7/32".into(),
                result: "success".into(),
                detail: "bench".into(),
                ..Default::default()
            })
            .await
            .unwrap();
            i += 1;
        }
        tx.commit().await.unwrap();
    }
}

async fn timed(http: &reqwest::Client, url: &str, token: Option<&str>, n: usize) -> Vec<Duration> {
    let mut times = Vec::with_capacity(n);
    for _ in 0..n {
        let mut req = http.get(url);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let t = Instant::now();
        let res = req.send().await.unwrap();
        assert!(res.status().is_success(), "{url}: {}", res.status());
        res.bytes().await.unwrap();
        times.push(t.elapsed());
    }
    times
}

async fn activity_pages() {
    let sizes: Vec<usize> = std::env::var("BENCH_LOG_SIZES")
        .ok()
        .map(|s| s.split(',').filter_map(|n| n.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![10_000, 100_000, 1_000_000]);
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("log.db").display());
    let mut config = portcullis_server::config::Config::for_database(&url);
    config.site_root = dir.path().display().to_string();
    let built = portcullis_server::build(&config).await.unwrap();
    let store = built.state.store.clone();
    let admin = store.find_user_by_username("admin").await.unwrap().unwrap();
    // An API token for the REST figures, a signed-in browser session for the page.
    let actor = Actor {
        user_id: admin.id.clone(),
        username: admin.username.clone(),
        roles: vec![RoleAssignment {
            role: Role::Admin,
            scope: Scope::All,
        }],
        ip: "127.0.0.1".parse().unwrap(),
    };
    let _ = actor;
    let viewer = store
        .create_user(
            &NewUser {
                username: "viewer",
                display_name: "Viewer",
                password_hash: Some(
                    &portcullis_app::auth::hash_password("bench viewer passphrase".into())
                        .await
                        .unwrap(),
                ),
                must_change_password: false,
            },
            &[RoleAssignment {
                role: Role::Reader,
                scope: Scope::All,
            }],
            None,
        )
        .await
        .unwrap();
    // The bootstrap administrator must change its password first; a reader over
    // everything reads the whole log.
    let token = portcullis_app::services::tokens::create(
        &store,
        &Actor {
            user_id: viewer.id.clone(),
            username: viewer.username.clone(),
            roles: vec![RoleAssignment {
                role: Role::Reader,
                scope: Scope::All,
            }],
            ip: "127.0.0.1".parse().unwrap(),
        },
        "bench",
        "1",
    )
    .await
    .unwrap()
    .token;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(portcullis_server::serve::serve(
        listener,
        built.router,
        portcullis_server::serve::HEADER_READ_TIMEOUT,
        std::time::Duration::from_secs(30),
        std::future::pending(),
    ));
    let base = format!("http://{addr}");
    let browser = reqwest::Client::builder()
        .cookie_store(true)
        .build()
        .unwrap();
    let res = browser
        .post(format!("{base}/api/login"))
        .header("Origin", &base)
        .form(&[
            ("username", "viewer"),
            ("password", "bench viewer passphrase"),
        ])
        .send()
        .await
        .unwrap();
    assert!(res.status().is_success(), "sign-in: {}", res.status());
    let api = reqwest::Client::new();
    let mut have = 0;
    for size in sizes {
        let t = Instant::now();
        fill(&store, have, size).await;
        have = size;
        let rss = rss_kib(std::process::id());
        println!(
            "activity log: {size} entries (filled in {:.1?}); bench process resident memory {} MiB",
            t.elapsed(),
            rss / 1024
        );
        for (label, url, token) in [
            ("page /activity (HTML)", format!("{base}/activity"), None),
            (
                "GET /api/v1/activity",
                format!("{base}/api/v1/activity?pageSize=25"),
                Some(token.as_str()),
            ),
            (
                "GET /api/v1/activity?actor=user7",
                format!("{base}/api/v1/activity?pageSize=25&actor=user7"),
                Some(token.as_str()),
            ),
        ] {
            let client = if token.is_some() { &api } else { &browser };
            let mut one = timed(client, &url, token, 40).await;
            one.sort();
            let parallel =
                futures::future::join_all((0..8).map(|_| timed(client, &url, token, 10))).await;
            let mut eight: Vec<Duration> = parallel.into_iter().flatten().collect();
            eight.sort();
            println!(
                "  {label:<34} 1 client p50 {:>8.2?} p95 {:>8.2?} | 8 clients p50 {:>8.2?} p95 {:>8.2?}",
                percentile(&one, 0.5),
                percentile(&one, 0.95),
                percentile(&eight, 0.5),
                percentile(&eight, 0.95)
            );
        }
    }
}

#[tokio::main]
async fn main() {
    sign_in_memory().await;
    activity_pages().await;
}
