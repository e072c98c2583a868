//! `make bench` (part of it): the pages a user waits for, whole, over HTTP, from the
//! release server. Prints, for every JIT tab (page 1, a deep page, a search), the activity
//! page and the REST lists:
//! - the SQL statements one request runs (counted from the server's own `sqlx::query`
//!   log lines in a second, logging, run of the server: those that finished while the
//!   request was in flight, the least of five requests, so that the background jobs'
//!   statements are not counted);
//! - the bytes of the answer;
//! - p50/p95 with one client (50 requests in a row) and with 16 clients at once (each
//!   signed in with its own session, 20 requests each).
//!
//! Why: issue 18. The store-level benchmark (`vm_list`) timed the list query alone
//! (3–7 ms) while the Configured tab took 158 ms at p50 for one user and 1.38 s with 16,
//! running 92 statements: what a user gets is the page, so the page is what is timed.
//! The target (printed beside each row, never asserted): p95 under 50 ms for one client
//! and under 250 ms with 16, at 100,000 VMs (half configured) and 1,000,000 log entries,
//! with a number of statements per page that does not grow with the data.
//!
//! Data: `BENCH_VMS` VMs (default 100,000) in 100 groups, every other one with a JIT
//! policy (22/tcp; Windows ones also 3389/tcp), four in five with an agent, a tenth of
//! the rest recommended, one VM in a hundred unconfigured and unsupported (its agent reports an
//! error); `BENCH_VMS / 20` requests in the last 7 days and `BENCH_VMS / 10`
//! older ones on configured VMs, `BENCH_VMS / 200` of them active grants now; and
//! `BENCH_LOG_ENTRIES` activity log entries (default 1,000,000) written through the store
//! (so the hash chain and HMACs are valid). VMs, policies and requests are inserted with
//! plain SQL in large transactions: a benchmark's shortcut, not a way the product writes.
//! On SQLite by default; on PostgreSQL when `PORTCULLIS_TEST_POSTGRES` names a server
//! (a fresh database, vacuumed and analysed as autovacuum would, dropped at the end).
//! `PORTCULLIS_BIN` picks the server binary (default `target/release/portcullis-server`);
//! `BENCH_SHOW_SQL=1` also prints the statements of each page (their log summaries);
//! `BENCH_KEEP=1` keeps the seeded database and the servers' logs (and prints where they
//! are), even when a page fails; `BENCH_PAGES=Activity` times only the pages whose label
//! holds that text.

use base64::Engine as _;
use portcullis_app::domain::audit::AuditKey;
use portcullis_app::domain::{Role, RoleAssignment, Scope};
use portcullis_app::store::test_support::{fresh_database_url, on_postgres};
use portcullis_app::store::{NewLogEntry, NewUser, Store, SystemClock};
use sqlx::{AnyPool, Row};
use std::io::{Read, Seek};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::Arc;
use std::time::{Duration, Instant};

const GROUPS: usize = 100;
const REQUESTERS: usize = 50;
const PASSWORD: &str = "bench pages passphrase";
const SEQUENTIAL: usize = 50;
const CLIENTS: usize = 16;
const PER_CLIENT: usize = 20;
const TARGET_ONE: Duration = Duration::from_millis(50);
const TARGET_MANY: Duration = Duration::from_millis(250);

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.replace(['_', ','], "").parse().ok())
        .unwrap_or(default)
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1]
}

/// Ids in the UUID form the application uses, distinct per kind and number.
fn id(kind: u16, n: usize) -> String {
    format!("00000000-0000-4000-{kind:04x}-{n:012}")
}

/// One value of a row inserted with plain SQL. NULLs are typed: PostgreSQL wants to know.
enum V {
    T(String),
    I(i64),
    NullT,
    NullI,
}

fn t(s: impl Into<String>) -> V {
    V::T(s.into())
}

/// Inserts `rows` into `table`, many rows per statement, 20,000 rows per transaction.
async fn insert_rows(db: &AnyPool, table: &str, cols: &[&str], rows: Vec<Vec<V>>) {
    let per_statement = (8000 / cols.len()).max(1);
    for batch in rows.chunks(20_000) {
        let mut tx = db.begin().await.unwrap();
        for chunk in batch.chunks(per_statement) {
            let mut sql = format!("INSERT INTO {table} ({}) VALUES ", cols.join(", "));
            let mut n = 0;
            for (r, row) in chunk.iter().enumerate() {
                assert_eq!(row.len(), cols.len(), "{table}: a row of the wrong width");
                sql.push_str(if r == 0 { "(" } else { ", (" });
                for c in 0..row.len() {
                    n += 1;
                    if c > 0 {
                        sql.push_str(", ");
                    }
                    sql.push_str(&format!("${n}"));
                }
                sql.push(')');
            }
            let mut q = sqlx::query(&sql);
            for v in chunk.iter().flatten() {
                q = match v {
                    V::T(s) => q.bind(s.clone()),
                    V::I(i) => q.bind(*i),
                    V::NullT => q.bind(None::<String>),
                    V::NullI => q.bind(None::<i64>),
                };
            }
            q.execute(&mut *tx)
                .await
                .unwrap_or_else(|e| panic!("insert into {table}: {e}"));
        }
        tx.commit().await.unwrap();
    }
}

/// VMs, policies, agents, requests and grants, with plain SQL.
async fn seed_inventory(db: &AnyPool, vms: usize, requesters: &[String]) {
    let now = now_ms();
    let configured = |i: usize| i.is_multiple_of(2);
    let windows = |i: usize| i.is_multiple_of(3);
    let mut vm_rows = Vec::with_capacity(vms);
    for i in 0..vms {
        let exposed = if configured(i) {
            if windows(i) { "22,3389" } else { "22" }
        } else if i % 10 == 1 {
            if windows(i) { "3389" } else { "22" }
        } else {
            ""
        };
        let agent = i % 5 != 4;
        let generation = i64::from(configured(i));
        vm_rows.push(vec![
            t(id(0x8000, i)),
            t(format!("vm-{i:06}")),
            t(format!("group-{:02}", i * GROUPS / vms)),
            t(format!(
                "10.{}.{}.{}",
                (i >> 16) & 255,
                (i >> 8) & 255,
                i & 255
            )),
            t(if windows(i) { "windows" } else { "linux" }),
            t(exposed),
            if agent { t(id(0x9000, i)) } else { V::NullT },
            if agent {
                V::I(now - (i % 60) as i64 * 1000)
            } else {
                V::NullI
            },
            V::I(generation),
            if agent {
                t(format!("$argon2id$bench${i}"))
            } else {
                V::NullT
            },
            t(if agent {
                format!("host-{i:06}")
            } else {
                String::new()
            }),
            V::I(if agent { generation } else { -1 }),
            // One unconfigured VM in 100 has an agent that cannot enforce: Unsupported.
            t(if agent && !configured(i) && i % 100 == 3 {
                "nft: No such file or directory (os error 2)"
            } else {
                ""
            }),
            V::I(now - 90 * 86_400_000),
            V::I(now - 86_400_000),
            // Kept by the store beside jit_policies (below): the JIT tabs read it.
            V::I(i64::from(configured(i))),
        ]);
    }
    insert_rows(
        db,
        "vms",
        &[
            "id",
            "name",
            "resource_group",
            "addresses",
            "os",
            "exposed_ports",
            "agent_id",
            "agent_last_seen",
            "generation",
            "agent_secret_hash",
            "agent_hostname",
            "agent_applied_generation",
            "agent_error",
            "created_at",
            "updated_at",
            "jit_configured",
        ],
        vm_rows,
    )
    .await;

    let policies = (0..vms)
        .filter(|i| configured(*i))
        .map(|i| {
            vec![
                t(id(0x8000, i)),
                t("bench"),
                V::I(now - 30 * 86_400_000),
                V::I(now - 30 * 86_400_000),
            ]
        })
        .collect();
    insert_rows(
        db,
        "jit_policies",
        &["vm_id", "created_by", "created_at", "updated_at"],
        policies,
    )
    .await;
    let mut rules = Vec::new();
    for i in (0..vms).filter(|i| configured(*i)) {
        let ports: &[i64] = if windows(i) { &[22, 3389] } else { &[22] };
        for (position, port) in ports.iter().enumerate() {
            rules.push(vec![
                t(id(0xa000 + position as u16, i)),
                t(id(0x8000, i)),
                V::I(position as i64),
                V::I(*port),
                t("tcp"),
                t("per request"),
                V::I(3 * 3600),
                V::I(1),
                V::I(i64::from(i.is_multiple_of(4))),
                V::I(3600),
                V::I(24),
                V::I(64),
            ]);
        }
    }
    insert_rows(
        db,
        "port_rules",
        &[
            "id",
            "vm_id",
            "position",
            "port",
            "protocol",
            "allowed_sources",
            "max_duration_secs",
            "justification_required",
            "approval_required",
            "approval_timeout_secs",
            "widest_prefix_v4",
            "widest_prefix_v6",
        ],
        rules,
    )
    .await;

    // Requests on configured VMs: recent ones (the last 7 days; the first of them active
    // grants now, begun within the last hour for 3 hours) and older ones (8 to 90 days).
    let recent = vms / 20;
    let older = vms / 10;
    let active = vms / 200;
    let configured_count = vms.div_ceil(2);
    let (mut requests, mut ports) = (Vec::new(), Vec::new());
    for k in 0..recent + older {
        let vm = 2 * ((k * 7919) % configured_count);
        let created = if k < active {
            now - (k % 60) as i64 * 60_000 - 1000
        } else if k < recent {
            now - 3_600_000 - ((k as i64 * 104_729) % (6 * 86_400_000))
        } else {
            now - 8 * 86_400_000 - ((k as i64 * 104_729) % (82 * 86_400_000))
        };
        let (status, port_status, duration) = if k < active {
            ("active", "active", 3 * 3600)
        } else if k.is_multiple_of(13) {
            ("denied", "denied", 3600)
        } else {
            ("expired", "expired", 3600)
        };
        let granted = status != "denied";
        let end = created + duration * 1000;
        let source = format!("198.51.100.{}/32", k % 250);
        let request = id(0xc000, k);
        requests.push(vec![
            t(request.clone()),
            t(id(0xd000, k)),
            t(id(0x8000, vm)),
            t(requesters[k % requesters.len()].clone()),
            t(source.clone()),
            V::I(duration),
            t(format!("ticket OPS-{k}")),
            t(status),
            V::I(created),
            if granted { V::I(created) } else { V::NullI },
            if granted { V::I(created) } else { V::NullI },
            if granted { V::I(end) } else { V::NullI },
            if granted {
                V::NullT
            } else {
                t(requesters[0].clone())
            },
            if granted { V::NullI } else { V::I(created) },
            t(""),
            V::NullI,
            if granted {
                V::I(created + 1500)
            } else {
                V::NullI
            },
        ]);
        let mut request_ports = vec![22];
        if windows(vm) && k.is_multiple_of(2) {
            request_ports.push(3389);
        }
        for (n, port) in request_ports.into_iter().enumerate() {
            ports.push(vec![
                t(id(0xe000 + n as u16, k)),
                t(request.clone()),
                t(id(0x8000, vm)),
                V::I(port),
                t("tcp"),
                t(source.clone()),
                t(port_status),
                t(if granted { "" } else { "denied by approver" }),
                if granted { V::I(end) } else { V::NullI },
            ]);
        }
    }
    insert_rows(
        db,
        "access_requests",
        &[
            "id",
            "batch_id",
            "vm_id",
            "requester_id",
            "source_prefix",
            "duration_secs",
            "justification",
            "status",
            "created_at",
            "start_at",
            "window_start_at",
            "end_at",
            "decided_by",
            "decided_at",
            "decision_comment",
            "approval_expires_at",
            "enforced_at",
        ],
        requests,
    )
    .await;
    insert_rows(
        db,
        "request_ports",
        &[
            "id",
            "request_id",
            "vm_id",
            "port",
            "protocol",
            "source_prefix",
            "status",
            "status_reason",
            "end_at",
        ],
        ports,
    )
    .await;
}

/// Activity log entries through the store (valid chain and HMACs), 5,000 per transaction.
async fn seed_log(store: &Store, entries: usize, vms: usize) {
    const ACTIONS: [&str; 8] = [
        "request.create",
        "request.approve",
        "grant.expire",
        "grant.revoke",
        "sign-in",
        "policy.update",
        "vm.update",
        "request.deny",
    ];
    let mut i = 0;
    while i < entries {
        let mut tx = store.begin_write().await.unwrap();
        for _ in 0..5000.min(entries - i) {
            tx.log(NewLogEntry {
                actor: format!("user{}", i % REQUESTERS),
                client_ip: format!("198.51.100.{}", i % 250),
                action: ACTIONS[i % ACTIONS.len()].into(),
                vm: format!("vm-{:06}", (i * 7) % vms.max(1)),
                ports: "22/tcp".into(),
                source: format!("198.51.100.{}/32", i % 250),
                justification: format!("ticket OPS-{i}"),
                result: "success".into(),
                detail: "bench".into(),
            })
            .await
            .unwrap();
            i += 1;
        }
        tx.commit().await.unwrap();
    }
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// The server binary with none of the caller's `PORTCULLIS_*` settings (`make` exports a
/// development database URL, which would win over the configuration file).
fn server_command(bin: &Path) -> Command {
    let mut cmd = Command::new(bin);
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("PORTCULLIS_") {
            cmd.env_remove(key);
        }
    }
    cmd
}

struct Server {
    child: Child,
    base: String,
    stdout: PathBuf,
    stderr: PathBuf,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct Setup {
    bin: PathBuf,
    dir: PathBuf,
    database_url: String,
    site_root: PathBuf,
    audit_key: String,
    session_key: String,
}

impl Setup {
    fn config(&self, port: u16, json: bool) -> PathBuf {
        let path = self.dir.join(format!("portcullis-{port}.toml"));
        let text = format!(
            "listen = \"127.0.0.1:{port}\"\ndatabase_url = \"{}\"\nsite_root = \"{}\"\n\
             audit_key = \"{}\"\naudit_anchor_file = \"{}\"\nsession_key = \"{}\"\n\
             log_format = \"{}\"\n",
            self.database_url,
            self.site_root.display(),
            self.audit_key,
            self.dir.join("anchor").display(),
            self.session_key,
            if json { "json" } else { "text" },
        );
        std::fs::write(&path, text).unwrap();
        path
    }

    async fn start(&self, filter: &str, json: bool) -> Server {
        let port = free_port();
        let config = self.config(port, json);
        let stdout = self.dir.join(format!("server-{port}.out"));
        let stderr = self.dir.join(format!("server-{port}.err"));
        let child = server_command(&self.bin)
            .arg("--config")
            .arg(&config)
            .env("PORTCULLIS_LOG", filter)
            .stdout(std::fs::File::create(&stdout).unwrap())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .spawn()
            .unwrap_or_else(|e| panic!("{}: {e}", self.bin.display()));
        let mut server = Server {
            child,
            base: format!("http://127.0.0.1:{port}"),
            stdout,
            stderr,
        };
        let http = reqwest::Client::new();
        let started = Instant::now();
        loop {
            if let Ok(res) = http.get(format!("{}/readyz", server.base)).send().await
                && res.status().is_success()
            {
                break;
            }
            if let Ok(Some(status)) = server.child.try_wait() {
                panic!(
                    "the server exited ({status}): {}",
                    std::fs::read_to_string(&server.stderr).unwrap_or_default()
                        + &std::fs::read_to_string(&server.stdout).unwrap_or_default()
                );
            }
            assert!(
                started.elapsed() < Duration::from_secs(600),
                "the server did not become ready"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        server
    }

    fn token(&self) -> String {
        let config = self.config(free_port(), false);
        let out = server_command(&self.bin)
            .arg("--config")
            .arg(&config)
            .args(["token", "create", "--user", "bench", "--days", "1"])
            .env("PORTCULLIS_LOG", "warn")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "token create: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    }
}

/// Waits until the server's verification of the activity log at start has covered it all
/// (it reads every entry once at start: the figures are for a server past that).
async fn wait_for_verification(db: &AnyPool, since: i64) -> Duration {
    let started = Instant::now();
    loop {
        let last: i64 = sqlx::query("SELECT COALESCE(MAX(seq), 0) AS n FROM activity_log")
            .fetch_one(db)
            .await
            .unwrap()
            .try_get("n")
            .unwrap();
        let status =
            sqlx::query("SELECT ok, verified_seq, checked_at FROM audit_status WHERE id = 1")
                .fetch_optional(db)
                .await
                .unwrap();
        if let Some(row) = status {
            let (ok, verified, at): (i64, i64, i64) = (
                row.try_get("ok").unwrap(),
                row.try_get("verified_seq").unwrap(),
                row.try_get("checked_at").unwrap(),
            );
            if at >= since && verified >= last - 10 {
                assert_eq!(ok, 1, "the server found the seeded log broken");
                return started.elapsed();
            }
        }
        assert!(
            started.elapsed() < Duration::from_secs(1800),
            "the log's verification did not finish"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn signed_in(base: &str) -> reqwest::Client {
    let client = reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let res = client
        .post(format!("{base}/api/login"))
        .header("Origin", base)
        .form(&[("username", "bench"), ("password", PASSWORD)])
        .send()
        .await
        .unwrap();
    assert!(
        res.status().is_success() || res.status().is_redirection(),
        "sign-in: {}",
        res.status()
    );
    client
}

struct Page {
    label: &'static str,
    path: String,
    api: bool,
    /// Text the answer must contain: the page itself, not a sign-in page or an error.
    marker: &'static str,
}

/// The pages to time, in the order printed; `BENCH_PAGES` keeps those whose label contains
/// its text, and one that matches none stops the run before it seeds anything.
fn pages_to_time() -> Vec<Page> {
    let only = std::env::var("BENCH_PAGES").ok();
    let deep = 200;
    let jit = |tab: &str, extra: &str| format!("/jit?tab={tab}{extra}");
    let pages = vec![
        (
            "Configured, page 1",
            jit("configured", ""),
            false,
            "vm-table",
        ),
        (
            "Configured, page 200",
            jit("configured", &format!("&page={deep}")),
            false,
            "vm-table",
        ),
        (
            "Configured, search",
            jit("configured", "&q=group-42"),
            false,
            "vm-table",
        ),
        (
            "Recommended, page 1",
            jit("recommended", ""),
            false,
            "vm-table",
        ),
        (
            "Not configured, page 1",
            jit("not_configured", ""),
            false,
            "vm-table",
        ),
        (
            "Not configured, page 200",
            jit("not_configured", &format!("&page={deep}")),
            false,
            "vm-table",
        ),
        (
            "Unsupported, page 1",
            jit("unsupported", ""),
            false,
            "vm-table",
        ),
        ("All, page 1", jit("all", ""), false, "vm-table"),
        (
            "All, page 200",
            jit("all", &format!("&page={deep}")),
            false,
            "vm-table",
        ),
        (
            "All, search 'vm-0042'",
            jit("all", "&q=vm-0042"),
            false,
            "vm-table",
        ),
        // 10,000 matches, first in name order: on SQLite the search index counts them and
        // finds the page (0024); PostgreSQL walks the tab in name order and finds the page
        // within its bound.
        (
            "All, search 'vm-00' (broad)",
            jit("all", "&q=vm-00"),
            false,
            "vm-table",
        ),
        // 10,000 matches (groups 90 to 99), last in name order: a walk of the tab in name
        // order passes 90,000 VMs (All) or 35,000 (Not configured) before the first, so
        // PostgreSQL's gives up and sorts every match, found through the groups.
        (
            "All, search 'group-9' (broad, late)",
            jit("all", "&q=group-9"),
            false,
            "vm-table",
        ),
        (
            "Not configured, search 'group-9' (broad, late)",
            jit("not_configured", "&q=group-9"),
            false,
            "vm-table",
        ),
        (
            "Activity, page 1",
            "/activity".into(),
            false,
            "Activity log",
        ),
        (
            "Activity, page 200",
            format!("/activity?page={deep}"),
            false,
            "Activity log",
        ),
        (
            "Activity, actor user7",
            "/activity?actor=user7".into(),
            false,
            "Activity log",
        ),
        (
            "API vms configured x100",
            "/api/v1/vms?tab=configured&pageSize=100".into(),
            true,
            "\"value\"",
        ),
        (
            "API vms configured x100 p200",
            format!("/api/v1/vms?tab=configured&pageSize=100&page={deep}"),
            true,
            "\"value\"",
        ),
        (
            "API activity x25",
            "/api/v1/activity?pageSize=25".into(),
            true,
            "\"value\"",
        ),
    ]
    .into_iter()
    .map(|(label, path, api, marker)| Page {
        label,
        path,
        api,
        marker,
    })
    .filter(|page| only.as_deref().is_none_or(|only| page.label.contains(only)))
    .collect::<Vec<_>>();
    if let Some(only) = &only {
        assert!(
            !pages.is_empty(),
            "BENCH_PAGES={only:?} matches no page's label: nothing to time"
        );
    }
    pages
}

async fn fetch(client: &reqwest::Client, url: &str, token: Option<&str>, marker: &str) -> usize {
    let mut req = client.get(url);
    if let Some(token) = token {
        req = req.bearer_auth(token);
    }
    let res = req.send().await.unwrap();
    let status = res.status();
    let body = res.bytes().await.unwrap();
    assert!(status.is_success(), "{url}: {status}");
    assert!(
        marker.is_empty() || body.windows(marker.len()).any(|w| w == marker.as_bytes()),
        "{url}: the answer lacks {marker:?}"
    );
    body.len()
}

async fn timed(
    client: &reqwest::Client,
    url: &str,
    token: Option<&str>,
    n: usize,
) -> Vec<Duration> {
    let mut times = Vec::with_capacity(n);
    for _ in 0..n {
        let started = Instant::now();
        fetch(client, url, token, "").await;
        times.push(started.elapsed());
    }
    times
}

/// The summaries of the `sqlx::query` events (one JSON line each) that the server logged
/// since `offset` and that finished between `from` and `to`. The server's background jobs
/// (expiry every second, log verification every five) log statements of their own: the
/// window, and the least of several tries, leave them out.
fn statements_between(
    path: &Path,
    offset: &mut u64,
    from: chrono::DateTime<chrono::Utc>,
    to: chrono::DateTime<chrono::Utc>,
) -> Vec<String> {
    let mut file = std::fs::File::open(path).unwrap();
    file.seek(std::io::SeekFrom::Start(*offset)).unwrap();
    let mut text = String::new();
    file.read_to_string(&mut text).unwrap();
    // Whole lines only; a partial last line is read next time.
    let whole = text.rfind('\n').map_or(0, |i| i + 1);
    *offset += whole as u64;
    text[..whole]
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|event| event["target"] == "sqlx::query")
        .filter(|event| {
            event["timestamp"]
                .as_str()
                .and_then(|at| chrono::DateTime::parse_from_rfc3339(at).ok())
                .is_some_and(|at| at >= from && at <= to)
        })
        .map(|event| event["fields"]["summary"].as_str().unwrap_or("").to_owned())
        .collect()
}

struct Figures {
    label: &'static str,
    statements: usize,
    bytes: usize,
    one: (Duration, Duration),
    many: (Duration, Duration),
}

#[tokio::main]
async fn main() {
    let vms = env_usize("BENCH_VMS", 100_000);
    let log_entries = env_usize("BENCH_LOG_ENTRIES", 1_000_000);
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let bin = std::env::var_os("PORTCULLIS_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            std::env::var_os("CARGO_TARGET_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(|| root.join("target"))
                .join("release/portcullis-server")
        });
    assert!(
        bin.exists(),
        "{} is missing: run `make release` first (or set PORTCULLIS_BIN)",
        bin.display()
    );
    let backend = if on_postgres() {
        "PostgreSQL"
    } else {
        "SQLite"
    };
    let keep = std::env::var_os("BENCH_KEEP").is_some();
    let pages = pages_to_time();
    let tempdir = tempfile::tempdir().unwrap();
    // Kept from the start, so that a run that fails leaves the servers' logs to read.
    let (dir, _removed_at_end) = if keep {
        (tempdir.keep(), None)
    } else {
        (tempdir.path().to_owned(), Some(tempdir))
    };
    let database_url = fresh_database_url(&dir, "pages").await.unwrap();
    let key: [u8; 32] = rand::random();
    let session_key: Vec<u8> = (0..64).map(|_| rand::random::<u8>()).collect();
    let b64 = base64::engine::general_purpose::STANDARD;
    let site_root = bin
        .parent()
        .and_then(Path::parent)
        .map(|p| p.join("site"))
        .filter(|p| p.is_dir())
        .unwrap_or_else(|| dir.clone());
    let setup = Setup {
        bin: bin.clone(),
        dir: dir.clone(),
        database_url: database_url.clone(),
        site_root,
        audit_key: b64.encode(key),
        session_key: b64.encode(&session_key),
    };
    println!(
        "pages: {backend}, {vms} VMs ({} configured), {log_entries} log entries; server {}",
        vms.div_ceil(2),
        bin.display()
    );

    if keep {
        println!(
            "keeping the database and the servers' logs in {}",
            dir.display()
        );
    }

    // ---- Seeding ----
    let seeding = Instant::now();
    let store = Store::connect_with(
        &database_url,
        Arc::new(SystemClock),
        AuditKey::new(key.to_vec()).unwrap(),
    )
    .await
    .unwrap();
    let hash = portcullis_app::auth::hash_password(PASSWORD.into())
        .await
        .unwrap();
    store
        .create_user(
            &NewUser {
                username: "bench",
                display_name: "Bench",
                password_hash: Some(&hash),
                must_change_password: false,
            },
            &[RoleAssignment {
                role: Role::Admin,
                scope: Scope::All,
            }],
            None,
        )
        .await
        .unwrap();
    let mut requesters = Vec::new();
    for n in 0..REQUESTERS {
        let user = store
            .create_user(
                &NewUser {
                    username: &format!("user{n}"),
                    display_name: &format!("User {n}"),
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
    let db = sqlx::any::AnyPoolOptions::new()
        .max_connections(2)
        .connect(&database_url)
        .await
        .unwrap();
    let t = Instant::now();
    seed_inventory(&db, vms, &requesters).await;
    let inventory = t.elapsed();
    let t = Instant::now();
    seed_log(&store, log_entries, vms).await;
    let log = t.elapsed();
    drop(store);
    let t = Instant::now();
    if on_postgres() {
        // What autovacuum reaches on its own after a while; not running it would time
        // the planner's guesses about tables it has never seen.
        sqlx::query("VACUUM ANALYZE").execute(&db).await.unwrap();
    }
    let analyse = t.elapsed();
    println!(
        "seeded in {:.1?}: VMs, policies and requests {inventory:.1?}, log {log:.1?}{}",
        seeding.elapsed(),
        if on_postgres() {
            format!(", VACUUM ANALYZE {analyse:.1?}")
        } else {
            String::new()
        }
    );

    // ---- Timing: the server as it runs in production (warnings only) ----
    let since = now_ms();
    let server = setup.start("warn", false).await;
    let verified = wait_for_verification(&db, since).await;
    println!("server ready; its verification of the log at start took {verified:.1?}");
    let token = setup.token();
    let base = server.base.clone();
    let mut clients = Vec::new();
    for _ in 0..CLIENTS {
        clients.push(signed_in(&base).await);
    }
    let mut rows = Vec::new();
    for page in &pages {
        let url = format!("{base}{}", page.path);
        let token = page.api.then_some(token.as_str());
        let mut bytes = 0;
        for _ in 0..3 {
            bytes = fetch(&clients[0], &url, token, page.marker).await;
        }
        let mut one = timed(&clients[0], &url, token, SEQUENTIAL).await;
        one.sort();
        let runs = clients.iter().map(|c| timed(c, &url, token, PER_CLIENT));
        let mut many: Vec<Duration> = futures::future::join_all(runs)
            .await
            .into_iter()
            .flatten()
            .collect();
        many.sort();
        rows.push(Figures {
            label: page.label,
            statements: 0,
            bytes,
            one: (percentile(&one, 0.5), percentile(&one, 0.95)),
            many: (percentile(&many, 0.5), percentile(&many, 0.95)),
        });
        eprintln!("  timed {}", page.label);
    }
    drop(server);

    // ---- Counting: the same pages once each, with every statement logged ----
    let since = now_ms();
    let server = setup.start("warn,sqlx::query=debug", true).await;
    wait_for_verification(&db, since).await;
    let show = std::env::var_os("BENCH_SHOW_SQL").is_some();
    let mut offset = 0;
    let client = signed_in(&server.base).await;
    for (page, row) in pages.iter().zip(rows.iter_mut()) {
        let url = format!("{}{}", server.base, page.path);
        let token = page.api.then_some(token.as_str());
        let mut least: Option<Vec<String>> = None;
        for _ in 0..5 {
            let from = chrono::Utc::now();
            fetch(&client, &url, token, page.marker).await;
            let to = chrono::Utc::now();
            // The server writes its log line before the answer leaves; a moment for the
            // file to have it all.
            tokio::time::sleep(Duration::from_millis(50)).await;
            let seen = statements_between(&server.stdout, &mut offset, from, to);
            if least.as_ref().is_none_or(|l| seen.len() < l.len()) {
                least = Some(seen);
            }
        }
        let least = least.unwrap_or_default();
        row.statements = least.len();
        if show {
            println!("{} ({} statements):", page.label, least.len());
            for summary in &least {
                println!("    {summary}");
            }
        }
    }
    drop(server);

    println!(
        "target: p95 < {TARGET_ONE:?} (1 client) and < {TARGET_MANY:?} ({CLIENTS} clients) at 100,000 VMs and 1,000,000 log entries, a constant number of statements"
    );
    println!(
        "{:<30} {:>5} {:>9} {:>21} {:>21}  target",
        "page",
        "SQL",
        "bytes",
        "1 client p50/p95",
        format!("{CLIENTS} clients p50/p95")
    );
    for row in &rows {
        let sql = row.statements;
        let met = row.one.1 < TARGET_ONE && row.many.1 < TARGET_MANY;
        println!(
            "{:<30} {sql:>5} {:>9} {:>10} {:>10} {:>10} {:>10}  {}",
            row.label,
            row.bytes,
            format!("{:.1?}", row.one.0),
            format!("{:.1?}", row.one.1),
            format!("{:.1?}", row.many.0),
            format!("{:.1?}", row.many.1),
            if met { "met" } else { "missed" }
        );
    }

    db.close().await;
    if keep {
        println!("kept: {database_url} (files in {})", dir.display());
        return;
    }
    if let Some(server_url) = std::env::var(portcullis_app::store::test_support::POSTGRES_ENV)
        .ok()
        .filter(|v| !v.is_empty())
    {
        let name = database_url
            .rsplit('/')
            .next()
            .and_then(|s| s.split('?').next())
            .unwrap_or_default()
            .to_owned();
        let admin = sqlx::any::AnyPoolOptions::new()
            .max_connections(1)
            .connect(&server_url)
            .await
            .unwrap();
        sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            .execute(&admin)
            .await
            .unwrap();
        admin.close().await;
    }
}
