//! `make bench-agent`: the control plane with many agents, figures not tests. Runs the
//! release server (what `make run` serves) and simulates `BENCH_AGENTS` agents (default
//! 10,000) speaking the documented protocol as the real agent does (keep-alive, the same
//! wait, back-off on errors), then prints:
//! - cold start: how long until every agent had its first answer, and server errors;
//! - idle: the server's CPU and resident memory with every agent waiting, log growth;
//! - change latency: an access request (auto-approved, one VM) until that VM's agent is
//!   answered with the new state, p50/p99;
//! - request throughput: access requests from 16 clients for 10 s, per second, p50/p99,
//!   server errors;
//! - restart: how long the old server took to stop, and every agent waiting on the new
//!   one, with server errors;
//! - expiry: the throughput phase's grants, 5 minutes later, ended by the expiry job at
//!   the rate they were made: how late, p50/p99 (the bench waits for them).
//!
//! SQLite by default; `PORTCULLIS_TEST_POSTGRES=postgres://…` runs it on a new database
//! of that PostgreSQL server.

use reqwest::StatusCode;
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, Instant};

const SCRAPE_TOKEN: &str = "bench-scrape-token-0123456789abcdef";
const AUDIT_KEY: &str = "YmVuY2gtYXVkaXQta2V5LTAxMjM0NTY3ODlhYmNkZWY=";
/// The wait the real agent asks for: 45 to 55 s.
fn poll_wait() -> u64 {
    45 + rand::random::<u64>() % 11
}

struct Server {
    binary: std::path::PathBuf,
    config: std::path::PathBuf,
    log: std::path::PathBuf,
    child: Option<std::process::Child>,
    base: String,
}

impl Server {
    fn start(&mut self) {
        use std::os::unix::process::CommandExt;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let mut command = std::process::Command::new(&self.binary);
        command
            .arg("--config")
            .arg(&self.config)
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        // A bench stopped by a signal runs no Drop: the server would live on, holding its
        // database connections (a later test run on the same PostgreSQL found too few).
        // The signal follows the spawning thread, which is `main`'s (call this from nowhere
        // shorter-lived).
        let parent = std::process::id();
        // SAFETY: prctl and getppid are async-signal-safe and touch nothing of the parent's.
        unsafe {
            command.pre_exec(move || {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM as libc::c_ulong) == -1 {
                    return Err(std::io::Error::last_os_error());
                }
                // The bench died between the fork and the prctl: nobody would signal us.
                if libc::getppid() as u32 != parent {
                    return Err(std::io::Error::other("the bench is gone"));
                }
                Ok(())
            });
        }
        self.child = Some(command.spawn().unwrap());
    }

    fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = std::process::Command::new("kill")
                .arg(child.id().to_string())
                .status();
            let _ = child.wait();
        }
    }

    async fn ready(&mut self, http: &reqwest::Client) {
        for _ in 0..600 {
            if let Ok(r) = http.get(format!("{}/readyz", self.base)).send().await
                && r.status().is_success()
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // The log lives in a directory removed as the panic unwinds: its end goes with
        // the panic, or nothing would say why.
        let exited = match self.child.as_mut().map(|c| c.try_wait()) {
            Some(Ok(Some(status))) => format!("it exited ({status})"),
            _ => "it is still running".to_owned(),
        };
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        let tail = lines[lines.len().saturating_sub(40)..].join("\n");
        panic!("the server was not ready within 30 s; {exited}; the end of its log:\n{tail}");
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

fn proc_field(pid: u32, file: &str, key: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/{file}"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(key))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// User plus system CPU time of a process, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    f.get(11).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0)
        + f.get(12).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1]
}

/// What the simulated agents saw.
struct Fleet {
    started: Instant,
    /// Per agent: answers received with a new generation, and when the last came (µs
    /// since `started`).
    news: Vec<AtomicU64>,
    news_at: Vec<AtomicI64>,
    /// Agents answered at least once since `epoch` was last moved.
    answered_since: Vec<AtomicU64>,
    epoch: AtomicU64,
    server_errors: AtomicU64,
    refused: AtomicU64,
    connect_errors: AtomicU64,
}

impl Fleet {
    fn now_us(&self) -> i64 {
        self.started.elapsed().as_micros() as i64
    }

    fn answered(&self) -> usize {
        let epoch = self.epoch.load(Ordering::SeqCst);
        self.answered_since
            .iter()
            .filter(|a| a.load(Ordering::SeqCst) == epoch)
            .count()
    }
}

async fn agent(i: usize, bearer: String, base: String, http: reqwest::Client, fleet: Arc<Fleet>) {
    let mut generation = -1i64;
    let mut backoff = Duration::from_millis(100);
    loop {
        let res = http
            .get(format!(
                "{base}/agent/v1/state?after={generation}&wait={}",
                poll_wait()
            ))
            .bearer_auth(&bearer)
            .send()
            .await;
        let jitter = Duration::from_millis(rand::random::<u64>() % 200);
        match res {
            Ok(r) if r.status() == StatusCode::OK => {
                let Ok(body) = r.json::<Value>().await else {
                    continue;
                };
                let g = body["generation"].as_i64().unwrap_or(generation);
                if g != generation {
                    generation = g;
                    fleet.news_at[i].store(fleet.now_us(), Ordering::SeqCst);
                    fleet.news[i].fetch_add(1, Ordering::SeqCst);
                }
                fleet.answered_since[i].store(fleet.epoch.load(Ordering::SeqCst), Ordering::SeqCst);
                backoff = Duration::from_millis(100);
            }
            Ok(r) => {
                if r.status().is_server_error() && r.status() != StatusCode::SERVICE_UNAVAILABLE {
                    fleet.server_errors.fetch_add(1, Ordering::Relaxed);
                } else {
                    fleet.refused.fetch_add(1, Ordering::Relaxed);
                }
                let after = r
                    .headers()
                    .get(reqwest::header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
                    .map(Duration::from_secs)
                    .unwrap_or(backoff);
                tokio::time::sleep(after + jitter * 5).await;
            }
            Err(_) => {
                fleet.connect_errors.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(backoff + jitter).await;
                backoff = (backoff * 2).min(Duration::from_millis(800));
            }
        }
    }
}

/// The source and end (ms since the epoch) of the grant an accepted request made.
fn grant_end(body: &Value) -> Option<(String, i64)> {
    // The answer lists the requests made (one per part: at once, waiting for approval).
    let port = &body["value"][0]["virtualMachines"][0]["ports"][0];
    let end = chrono::DateTime::parse_from_rfc3339(port["endTimeUtc"].as_str()?).ok()?;
    Some((
        port["allowedSourceAddressPrefix"].as_str()?.to_owned(),
        end.timestamp_millis(),
    ))
}

async fn api(
    http: &reqwest::Client,
    base: &str,
    token: &str,
    method: reqwest::Method,
    path: &str,
    body: Value,
) -> (StatusCode, Value) {
    let res = http
        .request(method, format!("{base}{path}"))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = res.status();
    (status, res.json().await.unwrap_or(Value::Null))
}

/// Replaces the bootstrap administrator's one-time password (from the server's log), as
/// a new install's first sign-in does: its API tokens work only after that.
async fn admin_ready(server: &Server) {
    let log = std::fs::read_to_string(&server.log).unwrap();
    let password = log
        .split("one_time_password=")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no one-time password in the server log:\n{log}"))
        .to_owned();
    let browser = reqwest::Client::builder()
        .cookie_store(true)
        .build()
        .unwrap();
    let call = |name: &str, form: Vec<(&str, &str)>| {
        browser
            .post(format!("{}/api/{name}", server.base))
            .header(reqwest::header::ORIGIN, &server.base)
            .form(&form)
            .send()
    };
    let res = call(
        "login",
        vec![("username", "admin"), ("password", &password)],
    )
    .await
    .unwrap();
    assert!(res.status().is_success(), "sign-in: {}", res.status());
    let new = "a long new portal passphrase";
    let res = call(
        "change_password",
        vec![
            ("current_password", &password),
            ("new_password", new),
            ("confirm_password", new),
        ],
    )
    .await
    .unwrap();
    let status = res.status();
    assert!(
        status.is_success(),
        "password change: {status} {}",
        res.text().await.unwrap_or_default()
    );
}

/// Agents with a poll waiting on the server, from its metrics.
async fn connected_agents(http: &reqwest::Client, base: &str) -> f64 {
    let Ok(res) = http
        .get(format!("{base}/metrics"))
        .bearer_auth(SCRAPE_TOKEN)
        .send()
        .await
    else {
        return 0.0;
    };
    let text = res.text().await.unwrap_or_default();
    text.lines()
        .find_map(|l| l.strip_prefix("portcullis_agents_connected ")?.parse().ok())
        .unwrap_or(0.0)
}

async fn wait_all_answered(fleet: &Fleet, n: usize, limit: Duration) -> Option<Duration> {
    let t = Instant::now();
    while fleet.answered() < n {
        if t.elapsed() > limit {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Some(t.elapsed())
}

#[tokio::main]
async fn main() {
    let n: usize = std::env::var("BENCH_AGENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let binary = std::env::var_os("PORTCULLIS_BIN")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| root.join("target/release/portcullis-server"));
    assert!(
        binary.exists(),
        "{} is missing: run `make release` first",
        binary.display()
    );
    let dir = tempfile::tempdir().unwrap();
    let database_url = portcullis_app::store::test_support::fresh_database_url(dir.path(), "bench")
        .await
        .unwrap();
    let backend = database_url.split(':').next().unwrap().to_owned();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = dir.path().join("portcullis.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:{port}\"\ndatabase_url = \"{database_url}\"\nsite_root = \"{}\"\n\
             audit_key = \"{AUDIT_KEY}\"\nmetrics_token = \"{SCRAPE_TOKEN}\"\nlog_format = \"text\"\n",
            dir.path().display()
        ),
    )
    .unwrap();
    let mut server = Server {
        binary: binary.clone(),
        config: config.clone(),
        log: dir.path().join("server.log"),
        child: None,
        base: format!("http://127.0.0.1:{port}"),
    };
    let base = server.base.clone();
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(usize::MAX)
        .build()
        .unwrap();
    server.start();
    server.ready(&http).await;
    let baseline = proc_field(server.pid(), "status", "VmRSS:");
    admin_ready(&server).await;
    let out = std::process::Command::new(&binary)
        .args(["--config"])
        .arg(&config)
        .args([
            "token", "create", "--user", "admin", "--days", "1", "--name", "bench",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = String::from_utf8(out.stdout).unwrap().trim().to_owned();

    println!("== {n} agents, {backend} ==");
    let t = Instant::now();
    let gate = Arc::new(tokio::sync::Semaphore::new(16));
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..n {
        let (gate, http, base, token) = (gate.clone(), http.clone(), base.clone(), token.clone());
        tasks.spawn(async move {
            let _turn = gate.acquire().await.unwrap();
            let (s, made) = api(
                &http,
                &base,
                &token,
                reqwest::Method::POST,
                "/api/v1/groups/fleet/enrollmentTokens",
                json!({}),
            )
            .await;
            assert_eq!(s, StatusCode::CREATED, "{made}");
            let res = http
                .post(format!("{base}/agent/v1/enroll"))
                .json(&json!({"token": made["token"], "hostname": format!("fleet-{i:05}")}))
                .send()
                .await
                .unwrap();
            assert_eq!(res.status(), StatusCode::OK);
            let e: Value = res.json().await.unwrap();
            (
                i,
                format!(
                    "{}.{}",
                    e["agent_id"].as_str().unwrap(),
                    e["secret"].as_str().unwrap()
                ),
                e["vm_name"].as_str().unwrap().to_owned(),
            )
        });
    }
    let mut agents = tasks.join_all().await;
    agents.sort_by_key(|a| a.0);
    println!(
        "enrolled {n} agents (each registering its VM) in {:.1?}",
        t.elapsed()
    );

    // Cold start: the server starts with every agent asking at once.
    server.stop();
    let fleet = Arc::new(Fleet {
        started: Instant::now(),
        news: (0..n).map(|_| AtomicU64::new(0)).collect(),
        news_at: (0..n).map(|_| AtomicI64::new(0)).collect(),
        answered_since: (0..n).map(|_| AtomicU64::new(u64::MAX)).collect(),
        epoch: AtomicU64::new(0),
        server_errors: AtomicU64::new(0),
        refused: AtomicU64::new(0),
        connect_errors: AtomicU64::new(0),
    });
    let sims = http.clone();
    let mut fleet_tasks = Vec::new();
    server.start();
    let t = Instant::now();
    for (i, bearer, _) in &agents {
        fleet_tasks.push(tokio::spawn(agent(
            *i,
            bearer.clone(),
            base.clone(),
            sims.clone(),
            fleet.clone(),
        )));
    }
    match wait_all_answered(&fleet, n, Duration::from_secs(300)).await {
        Some(_) => println!(
            "cold start: every agent answered {:.1?} after the server was started; {} server errors, {} refused (429/503), {} connection errors",
            t.elapsed(),
            fleet.server_errors.load(Ordering::SeqCst),
            fleet.refused.load(Ordering::SeqCst),
            fleet.connect_errors.load(Ordering::SeqCst)
        ),
        None => println!(
            "cold start: only {} of {n} agents answered within 300 s",
            fleet.answered()
        ),
    }

    // Idle: everyone waits.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let pid = server.pid();
    let log_before = std::fs::metadata(&server.log).map(|m| m.len()).unwrap_or(0);
    let (ticks, t) = (cpu_ticks(pid), Instant::now());
    tokio::time::sleep(Duration::from_secs(30)).await;
    let cpu = (cpu_ticks(pid) - ticks) as f64 / 100.0 / t.elapsed().as_secs_f64() * 100.0;
    let rss = proc_field(pid, "status", "VmRSS:");
    let log_growth = std::fs::metadata(&server.log).map(|m| m.len()).unwrap_or(0) - log_before;
    println!(
        "idle with {n} agents waiting: server CPU {cpu:.1} % (of one core), resident {} MiB ({:.1} KiB per agent above the {} MiB of a fresh server), log grew {log_growth} bytes in 30 s",
        rss / 1024,
        rss.saturating_sub(baseline) as f64 / n as f64,
        baseline / 1024
    );

    // Change latency: JIT on 200 VMs, then one auto-approved request at a time.
    let configured: Vec<&String> = agents.iter().take(200.min(n)).map(|a| &a.2).collect();
    for vm in &configured {
        let (s, b) = api(&http, &base, &token, reqwest::Method::PUT, &format!("/api/v1/jitPolicies/{vm}"), json!({"virtualMachines": [{"ports": [
            {"number": 22, "protocol": "TCP", "allowedSourceAddressPrefix": "*", "maxRequestAccessDuration": "PT3H"}]}]})).await;
        assert!(s.is_success(), "{s} {b}");
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut latencies = Vec::new();
    let mut source = 0u32;
    for k in 0..200usize {
        let i = k % configured.len();
        let before = fleet.news[i].load(Ordering::SeqCst);
        source += 1;
        let (s, b) = api(&http, &base, &token, reqwest::Method::POST, "/api/v1/requests", json!({"virtualMachines": [{"id": configured[i], "ports": [
            {"number": 22, "duration": "PT5M", "allowedSourceAddressPrefix": format!("2001:db8::{:x}:{:x}", source >> 16, source & 0xffff)}]}]})).await;
        assert!(s.is_success(), "{s} {b}");
        let answered_at = fleet.now_us();
        let t = Instant::now();
        while fleet.news[i].load(Ordering::SeqCst) == before
            && t.elapsed() < Duration::from_secs(10)
        {
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
        let seen = fleet.news_at[i].load(Ordering::SeqCst);
        latencies.push(Duration::from_micros((seen - answered_at).max(0) as u64));
    }
    latencies.sort();
    println!(
        "change -> its agent answered (request answered to agent's poll answered), n={}: p50 {:.1?}  p99 {:.1?}  max {:.1?}",
        latencies.len(),
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99),
        latencies.last().unwrap()
    );

    // Throughput: 16 clients requesting access for 10 s.
    let errors = Arc::new(AtomicU64::new(0));
    let first_error = Arc::new(std::sync::Mutex::new(None::<String>));
    let next = Arc::new(AtomicU64::new(1_000_000));
    let stop = Instant::now() + Duration::from_secs(10);
    let mut clients = tokio::task::JoinSet::new();
    for c in 0..16 {
        let (http, base, token, errors, next) = (
            http.clone(),
            base.clone(),
            token.clone(),
            errors.clone(),
            next.clone(),
        );
        let first_error = first_error.clone();
        let vms: Vec<String> = configured.iter().map(|v| v.to_string()).collect();
        clients.spawn(async move {
            let mut times = Vec::new();
            let mut ends = Vec::new();
            let mut k = c;
            while Instant::now() < stop {
                let source = next.fetch_add(1, Ordering::Relaxed);
                let t = Instant::now();
                let (s, body) = api(&http, &base, &token, reqwest::Method::POST, "/api/v1/requests", json!({"virtualMachines": [{"id": vms[k % vms.len()], "ports": [
                    {"number": 22, "duration": "PT5M", "allowedSourceAddressPrefix": format!("2001:db8::{:x}:{:x}", source >> 16, source & 0xffff)}]}]})).await;
                times.push(t.elapsed());
                if let Some(end) = grant_end(&body) {
                    ends.push(end);
                }
                if !s.is_success() {
                    errors.fetch_add(1, Ordering::Relaxed);
                    first_error
                        .lock()
                        .unwrap()
                        .get_or_insert_with(|| format!("{s} {body}"));
                }
                k += 16;
            }
            (times, ends)
        });
    }
    let (times, ends): (Vec<_>, Vec<_>) = clients.join_all().await.into_iter().unzip();
    let mut times: Vec<Duration> = times.into_iter().flatten().collect();
    let ends: std::collections::HashMap<String, i64> = ends.into_iter().flatten().collect();
    times.sort();
    println!(
        "access requests, 16 clients for 10 s: {:.0} per second, p50 {:.1?}  p99 {:.1?}, {} not accepted; agent poll server errors so far {}",
        times.len() as f64 / 10.0,
        percentile(&times, 0.5),
        percentile(&times, 0.99),
        errors.load(Ordering::SeqCst),
        fleet.server_errors.load(Ordering::SeqCst)
    );
    if let Some(e) = first_error.lock().unwrap().take() {
        println!("  first request not accepted: {e}");
    }

    // Restart: every agent comes back.
    let errors_before = fleet.server_errors.load(Ordering::SeqCst);
    let stopping = Instant::now();
    server.stop();
    let stopped = stopping.elapsed();
    fleet.epoch.fetch_add(1, Ordering::SeqCst);
    let t = Instant::now();
    server.start();
    server.ready(&http).await;
    let mut connected = 0.0;
    while t.elapsed() < Duration::from_secs(300) {
        connected = connected_agents(&http, &base).await;
        if connected >= n as f64 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    println!(
        "restart (the old server stopped in {stopped:.1?}): {connected} of {n} agents waiting on the new one {:.1?} after it was started; {} server errors",
        t.elapsed(),
        fleet.server_errors.load(Ordering::SeqCst) - errors_before
    );
    println!(
        "server resident memory at the end: {} MiB",
        proc_field(server.pid(), "status", "VmRSS:") / 1024
    );

    // Expiry: the grants of the throughput phase end 5 minutes after they were asked for,
    // as many a second as were made; the expiry job must end each on time.
    let last_end = ends.values().copied().max().unwrap_or(0);
    let wait = Duration::from_millis(
        (last_end - chrono::Utc::now().timestamp_millis()).max(0) as u64 + 3_000,
    );
    println!(
        "waiting {:.0?} for the {} grants of the throughput phase to end",
        wait,
        ends.len()
    );
    tokio::time::sleep(wait).await;
    let store = portcullis_app::store::Store::connect(&database_url)
        .await
        .unwrap();
    assert!(
        !ends.is_empty(),
        "no grant of the throughput phase was read from the answers"
    );
    let mut ended = Vec::new();
    loop {
        let batch = store
            .log_batch(&portcullis_app::store::LogQuery {
                action: Some("expire".into()),
                limit: 10_000,
                before_seq: ended
                    .last()
                    .map(|e: &portcullis_app::store::LogEntry| e.content.seq),
                ..Default::default()
            })
            .await
            .unwrap();
        if batch.is_empty() {
            break;
        }
        ended.extend(batch);
    }
    let mut late: Vec<Duration> = ended
        .iter()
        .filter_map(|e| {
            let end = ends.get(&e.content.source)?;
            Some(Duration::from_millis((e.content.at - end).max(0) as u64))
        })
        .collect();
    late.sort();
    println!(
        "expiry: {} of {} grants ended by the expiry job, late by p50 {:.1?}  p99 {:.1?}  max {:.1?}",
        late.len(),
        ends.len(),
        percentile(&late, 0.5),
        percentile(&late, 0.99),
        late.last().copied().unwrap_or_default()
    );
    for t in fleet_tasks {
        t.abort();
    }
    server.stop();
}
