//! portcullis-agent: runs as root on a protected host. It long-polls the Portcullis server
//! for its VM's desired state, applies it with one atomic `nft -f` transaction on its own
//! table, and reports what it applied and which management ports listen.
//!
//! Fail closed: grants are nftables set elements with kernel timeouts, so access ends on
//! time whether or not the agent or the server is running. The last state applied is kept
//! on disk with absolute end times and applied again at start, before the agent talks to
//! the server: after a reboot (which empties the kernel's tables) the protected ports are
//! closed again, and grants still in force come back with the time they have left.

mod nft;
mod procnet;
mod saved;

use nft::DesiredState;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::io::AsyncWriteExt;

const DEFAULT_STATE: &str = "/var/lib/portcullis-agent/agent.json";
/// How long a poll waits for news at most: a little under the 60 s that proxies such as
/// nginx wait for an answer by default, and spread (45 to 55 s) so that agents started
/// together do not poll together for ever. Longer polls are fewer polls: the server's
/// idle cost is per poll.
const POLL_WAIT_SECS: u64 = 45;
const POLL_WAIT_SPREAD_SECS: u64 = 10;
/// After a failed poll the agent retries within a second (jittered, so that many agents
/// do not all come back in the same instant): an outage of the server must not delay the
/// first grant after it by more than that.
const RETRY_MAX: Duration = Duration::from_millis(800);
const RETRY_JITTER_MS: u64 = 200;
/// How often an agent whose identity the server refuses tries again.
const REFUSED_RETRY: Duration = Duration::from_secs(30);

#[derive(Serialize, Deserialize)]
struct Identity {
    server: String,
    agent_id: String,
    secret: String,
    vm_name: String,
    /// The operator accepted plain http to another host when enrolling: `run` accepts it
    /// too, so that the installed service (one unit for every host) needs no extra flag.
    #[serde(default)]
    insecure_http: bool,
}

/// Where `enroll` takes the one-time token from, so that it never sits in the arguments of
/// a process, where `ps` shows it to every user of the host.
const TOKEN_VARIABLE: &str = "PORTCULLIS_ENROLL_TOKEN";

fn usage() -> ! {
    eprintln!(
        "usage:\n  portcullis-agent enroll --server URL [--token-file FILE | --token -] [--hostname NAME] [--state FILE] [--insecure-http]\n  \
         portcullis-agent run [--state FILE] [--nft PATH] [--insecure-http]\n  portcullis-agent status [--state FILE] [--nft PATH]\n\
         enroll reads the one-time token from the environment variable {TOKEN_VARIABLE}, from\n\
         FILE with --token-file, or from standard input with --token -.\n\
         The state file (default {DEFAULT_STATE}) holds the agent's identity; keep it private.\n\
         Plain http:// is refused for any server but this host unless --insecure-http is given."
    );
    std::process::exit(2)
}

fn fail(message: &str) -> ! {
    eprintln!("portcullis-agent: {message}");
    std::process::exit(1)
}

struct Args {
    command: String,
    server: Option<String>,
    /// `--token -`: the token comes on standard input.
    token_stdin: bool,
    token_file: Option<PathBuf>,
    hostname: Option<String>,
    state: PathBuf,
    nft: String,
    /// Plain http to another host accepted (the secret then travels in clear text).
    insecure_http: bool,
}

fn parse_args() -> Args {
    let mut it = std::env::args().skip(1);
    let command = it.next().unwrap_or_else(|| usage());
    let mut args = Args {
        command,
        server: None,
        token_stdin: false,
        token_file: None,
        hostname: None,
        state: PathBuf::from(DEFAULT_STATE),
        nft: "nft".into(),
        insecure_http: false,
    };
    while let Some(flag) = it.next() {
        if flag == "--insecure-http" {
            args.insecure_http = true;
            continue;
        }
        let value = it.next().unwrap_or_else(|| usage());
        match flag.as_str() {
            "--server" => args.server = Some(value.trim_end_matches('/').to_owned()),
            "--token" if value == "-" => args.token_stdin = true,
            "--token" => fail(&format!(
                "--token TOKEN is no longer accepted: the command line of a process is visible \
                 to every user of the host (ps). Pass the token in the environment variable \
                 {TOKEN_VARIABLE}, in a file with --token-file FILE, or on standard input with \
                 --token -"
            )),
            "--token-file" => args.token_file = Some(PathBuf::from(value)),
            "--hostname" => args.hostname = Some(value),
            "--state" => args.state = PathBuf::from(value),
            "--nft" => args.nft = value,
            _ => usage(),
        }
    }
    args
}

/// Whether `url` is plain `http://` to another host: the agent's secret would cross the
/// network in clear text.
fn plain_http_off_loopback(url: &str) -> bool {
    let Some(rest) = url.strip_prefix("http://") else {
        return false;
    };
    let authority = rest.split('/').next().unwrap_or("");
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => authority.rsplit_once(':').map_or(authority, |(h, _)| h),
    };
    let loopback = host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    !loopback
}

/// Refuses a server the agent would talk to in clear text, unless the operator said so.
fn refuse_plain_http(server: &str, accepted: bool) {
    if plain_http_off_loopback(server) && !accepted {
        fail(&format!(
            "{server} is plain http to another host: the agent's secret would travel in clear \
             text. Use https (put the portal behind TLS and set its public_url), or pass \
             --insecure-http to accept the risk."
        ));
    }
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(
            POLL_WAIT_SECS + POLL_WAIT_SPREAD_SECS + 15,
        ))
        .connect_timeout(Duration::from_secs(5))
        // The server closes a connection idle for 10 s; one idle for less is reused.
        .pool_idle_timeout(Duration::from_secs(5))
        .build()
        .unwrap_or_else(|e| fail(&format!("HTTP client: {e}")))
}

fn load_identity(path: &Path) -> Identity {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| {
        fail(&format!(
            "cannot read {}: {e} (enroll first)",
            path.display()
        ))
    });
    serde_json::from_str(&text).unwrap_or_else(|e| {
        fail(&format!(
            "{} is not an agent state file: {e}",
            path.display()
        ))
    })
}

fn save_identity(path: &Path, identity: &Identity) {
    if let Some(dir) = path.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    let text = serde_json::to_string_pretty(identity).unwrap_or_default();
    // Written beside and renamed over: a crash while enrolling never leaves half a file.
    let tmp = path.with_extension("tmp");
    let written = (|| -> std::io::Result<()> {
        use std::io::Write;
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let mut f = options.open(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if let Err(e) = written {
        fail(&format!("cannot write {}: {e}", path.display()));
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "unknown".into())
}

/// The one-time token from standard input, a file or the environment, in that order.
fn enrollment_token(args: &Args) -> String {
    let (token, from) = if args.token_stdin {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut text)
            .unwrap_or_else(|e| fail(&format!("cannot read the token from standard input: {e}")));
        (text, "standard input".to_owned())
    } else if let Some(path) = &args.token_file {
        let text = std::fs::read_to_string(path)
            .unwrap_or_else(|e| fail(&format!("cannot read {}: {e}", path.display())));
        (text, path.display().to_string())
    } else {
        match std::env::var(TOKEN_VARIABLE) {
            Ok(text) => (text, TOKEN_VARIABLE.to_owned()),
            Err(_) => fail(&format!(
                "no enrollment token: set {TOKEN_VARIABLE}, or pass --token-file FILE, or \
                 --token - to read it from standard input"
            )),
        }
    };
    let token = token.trim();
    if token.is_empty() {
        fail(&format!("the enrollment token from {from} is empty"));
    }
    token.to_owned()
}

async fn enroll(args: &Args) {
    let server = args.server.clone().unwrap_or_else(|| usage());
    refuse_plain_http(&server, args.insecure_http);
    let token = enrollment_token(args);
    let hostname = args.hostname.clone().unwrap_or_else(hostname);
    let res = client()
        .post(format!("{server}/agent/v1/enroll"))
        .json(&serde_json::json!({ "token": token, "hostname": hostname }))
        .send()
        .await
        .unwrap_or_else(|e| fail(&format!("cannot reach {server}: {e}")));
    let status = res.status();
    let body: serde_json::Value = res.json().await.unwrap_or_default();
    if !status.is_success() {
        fail(&format!(
            "enrollment refused ({status}): {}",
            body["error"].as_str().unwrap_or("no reason given")
        ));
    }
    let identity = Identity {
        server,
        agent_id: body["agent_id"].as_str().unwrap_or_default().to_owned(),
        secret: body["secret"].as_str().unwrap_or_default().to_owned(),
        vm_name: body["vm_name"].as_str().unwrap_or_default().to_owned(),
        insecure_http: args.insecure_http,
    };
    save_identity(&args.state, &identity);
    println!(
        "enrolled as the agent of VM {}; identity saved in {}",
        identity.vm_name,
        args.state.display()
    );
}

async fn apply(nft: &str, script: &str) -> Result<(), String> {
    let mut child = tokio::process::Command::new(nft)
        .args(["-f", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run {nft}: {e}"))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(script.as_bytes())
            .await
            .map_err(|e| format!("writing to nft: {e}"))?;
    }
    let out = child
        .wait_with_output()
        .await
        .map_err(|e| format!("nft: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_owned())
    }
}

async fn report(
    http: &reqwest::Client,
    id: &Identity,
    generation: i64,
    error: &str,
) -> Result<(), String> {
    let res = http
        .post(format!("{}/agent/v1/report", id.server))
        .bearer_auth(format!("{}.{}", id.agent_id, id.secret))
        .json(&serde_json::json!({
            "generation": generation,
            "error": error,
            "listening_ports": procnet::read_listening_ports(),
        }))
        .send()
        .await
        .map_err(|e| e.to_string())?;
    if res.status().is_success() {
        Ok(())
    } else {
        Err(format!("report refused: {}", res.status()))
    }
}

/// Sends reports in the background, the latest outcome only: a slow or failing report
/// must never hold up the next poll, which is what closes a revoked port.
fn spawn_reporter(
    http: reqwest::Client,
    id: std::sync::Arc<Identity>,
) -> tokio::sync::watch::Sender<Option<(i64, String)>> {
    let (tx, mut rx) = tokio::sync::watch::channel::<Option<(i64, String)>>(None);
    tokio::spawn(async move {
        while rx.changed().await.is_ok() {
            // A newer outcome that arrives while one is being retried is sent next, at once:
            // the change that woke the retry has been seen, so waiting for another would
            // leave the server believing an older generation until the VM changes again.
            'latest: loop {
                let Some((generation, error)) = rx.borrow_and_update().clone() else {
                    break;
                };
                let mut delay = Duration::from_millis(200);
                // Retried until it lands or a newer outcome replaces it.
                while let Err(e) = report(&http, &id, generation, &error).await {
                    eprintln!("portcullis-agent: report failed: {e}; retrying in {delay:?}");
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => {}
                        changed = rx.changed() => {
                            if changed.is_err() {
                                return;
                            }
                            continue 'latest;
                        }
                    }
                    delay = (delay * 2).min(Duration::from_secs(5));
                }
                break;
            }
        }
    });
    tx
}

/// A short random delay, so that agents coming back after an outage spread out.
fn poll_wait() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::from(d.subsec_nanos()))
        .unwrap_or(0);
    POLL_WAIT_SECS + nanos % (POLL_WAIT_SPREAD_SECS + 1)
}

fn jitter() -> Duration {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::from(d.subsec_nanos()))
        .unwrap_or(0);
    Duration::from_millis(nanos % (RETRY_JITTER_MS + 1))
}

/// Remembers a state on disk, then applies it, so that a restart (or a reboot) puts it
/// back before anything else happens. Saved first: a crash in between must not leave an
/// older state (with a since revoked grant) to come back at the next boot.
async fn apply_and_save(args: &Args, state: &DesiredState) -> Result<(), String> {
    let path = saved::path_for(&args.state);
    if let Err(e) = saved::save(&path, state, saved::wall_clock_ms()) {
        // The older saved state may hold a grant this one ends: it must not come back at
        // the next boot.
        let done = saved::forget_grants(&path, state, saved::wall_clock_ms());
        eprintln!("portcullis-agent: cannot save the state to apply: {e}; {done}");
    }
    apply(&args.nft, &nft::ruleset(state)).await
}

/// At start, before anything else (even reading the identity): the last state applied,
/// with what has ended since left out.
async fn restore(args: &Args) -> Option<DesiredState> {
    let path = saved::path_for(&args.state);
    let state = saved::load(&path, saved::wall_clock_ms())?;
    match apply(&args.nft, &nft::ruleset(&state)).await {
        Ok(()) => {
            eprintln!(
                "portcullis-agent: restored generation {} from {} ({} ports under JIT, {} grants still in force)",
                state.generation,
                path.display(),
                state.rules.len(),
                state.grants.len()
            );
            Some(state)
        }
        Err(e) => {
            eprintln!("portcullis-agent: restoring {} failed: {e}", path.display());
            None
        }
    }
}

/// The generation recorded while the server refuses this agent: no real generation is
/// negative other than -1 (nothing applied yet).
const REFUSED: i64 = -2;

/// Keeps the ports under JIT control closed and ends every grant now.
async fn withdraw_grants(args: &Args, last: Option<&DesiredState>) {
    let Some(mut state) = last.cloned() else {
        return;
    };
    state.grants.clear();
    match apply_and_save(args, &state).await {
        Ok(()) => eprintln!(
            "portcullis-agent: withdrew every grant; {} ports stay closed",
            state.rules.len()
        ),
        Err(e) => eprintln!("portcullis-agent: withdrawing the grants failed: {e}"),
    }
}

async fn run(args: &Args) {
    // Closed first: whatever happens next (an unreadable identity, no server), the ports
    // under JIT control are not left open by a reboot.
    let mut last = restore(args).await;
    let id = std::sync::Arc::new(load_identity(&args.state));
    refuse_plain_http(&id.server, args.insecure_http || id.insecure_http);
    let http = client();
    // Always asks for the full state: the restored one may belong to an earlier identity.
    let mut applied: i64 = -1;
    let mut backoff = Duration::from_millis(100);
    let reports = spawn_reporter(http.clone(), id.clone());
    eprintln!(
        "portcullis-agent: running for VM {} against {}",
        id.vm_name, id.server
    );
    loop {
        let res = http
            .get(format!(
                "{}/agent/v1/state?after={applied}&wait={}",
                id.server,
                poll_wait()
            ))
            .bearer_auth(format!("{}.{}", id.agent_id, id.secret))
            .send()
            .await;
        let state: Result<DesiredState, String> = match res {
            Ok(r) if r.status().is_success() => r.json().await.map_err(|e| e.to_string()),
            Ok(r)
                if r.status() == reqwest::StatusCode::UNAUTHORIZED
                    || r.status() == reqwest::StatusCode::NOT_FOUND =>
            {
                // The VM or this agent was removed, or the VM enrolled another agent. Nothing
                // here can tell which grants still stand, so none does: the protected ports
                // stay closed, for everyone, until an enrolled agent hears otherwise.
                eprintln!(
                    "portcullis-agent: the server refuses this agent ({}): the VM or its agent \
                     was removed, or another agent enrolled for it. The protected ports stay \
                     closed and every grant is withdrawn. Enroll again with a new token; \
                     retrying in {REFUSED_RETRY:?}",
                    r.status()
                );
                if applied != REFUSED {
                    withdraw_grants(args, last.as_ref()).await;
                    if let Some(state) = last.as_mut() {
                        state.grants.clear();
                    }
                    applied = REFUSED;
                }
                tokio::time::sleep(REFUSED_RETRY).await;
                continue;
            }
            Ok(r) if r.status() == reqwest::StatusCode::SERVICE_UNAVAILABLE => {
                // The server has enough agents waiting: come back when it says, spread out.
                let secs = r
                    .headers()
                    .get(reqwest::header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse::<u64>().ok())
                    .unwrap_or(5)
                    .min(300);
                let wait = Duration::from_secs(secs) + jitter() * 5;
                eprintln!("portcullis-agent: the server is busy; asking again in {wait:?}");
                tokio::time::sleep(wait).await;
                continue;
            }
            Ok(r) => Err(format!("server answered {}", r.status())),
            Err(e) => Err(e.to_string()),
        };
        match state {
            Ok(state) => {
                backoff = Duration::from_millis(100);
                if state.generation == applied {
                    continue;
                }
                let result = apply_and_save(args, &state).await;
                let error = result.as_ref().err().cloned().unwrap_or_default();
                match &result {
                    Ok(()) => eprintln!(
                        "portcullis-agent: applied generation {} ({} grants)",
                        state.generation,
                        state.grants.len()
                    ),
                    Err(e) => eprintln!(
                        "portcullis-agent: applying generation {} failed: {e}",
                        state.generation
                    ),
                }
                let _ = reports.send(Some((state.generation, error)));
                if result.is_ok() {
                    applied = state.generation;
                    last = Some(state);
                } else {
                    tokio::time::sleep(Duration::from_secs(2)).await;
                }
            }
            Err(e) => {
                // Unreachable server: what is applied stays and expires by itself.
                let wait = backoff + jitter();
                eprintln!(
                    "portcullis-agent: cannot get the desired state: {e}; retrying in {wait:?}"
                );
                tokio::time::sleep(wait).await;
                backoff = (backoff * 2).min(RETRY_MAX);
            }
        }
    }
}

async fn status(args: &Args) {
    let id = load_identity(&args.state);
    println!(
        "VM:     {}\nserver: {}\nagent:  {}",
        id.vm_name, id.server, id.agent_id
    );
    let out = tokio::process::Command::new(&args.nft)
        .args(["list", "table", "inet", "portcullis"])
        .output()
        .await;
    match out {
        Ok(o) if o.status.success() => println!("{}", String::from_utf8_lossy(&o.stdout)),
        Ok(_) => println!("no portcullis table is installed"),
        Err(e) => println!("cannot run {}: {e}", args.nft),
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args = parse_args();
    match args.command.as_str() {
        "enroll" => enroll(&args).await,
        "run" => run(&args).await,
        "status" => status(&args).await,
        _ => usage(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn plain_http_is_refused_unless_it_stays_on_this_host() {
        assert!(super::plain_http_off_loopback("http://jit.example.org"));
        assert!(super::plain_http_off_loopback("http://203.0.113.1:3000"));
        assert!(!super::plain_http_off_loopback("http://127.0.0.1:18080"));
        assert!(!super::plain_http_off_loopback("http://[::1]:3000"));
        assert!(!super::plain_http_off_loopback("https://jit.example.org"));
    }
}
