//! The built `portcullis` binary against a real server: log in with a token made in the
//! portal, put a port under JIT control, request it, see the grant, revoke it, read the
//! log.

use serde_json::Value;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;

struct Server {
    base: String,
    admin_password: String,
    _dir: tempfile::TempDir,
}

async fn start() -> Server {
    let dir = tempfile::tempdir().unwrap();
    // SQLite, or PostgreSQL when PORTCULLIS_TEST_POSTGRES names a server.
    let url = portcullis_app::store::test_support::fresh_database_url(dir.path(), "portal")
        .await
        .unwrap();
    let mut config = portcullis_server::config::Config::for_database(&url);
    config.site_root = dir.path().join("site").display().to_string();
    let built = portcullis_server::build(&config).await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(
            listener,
            built
                .router
                .into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
        .unwrap();
    });
    Server {
        base: format!("http://{addr}"),
        admin_password: built.bootstrap_password.unwrap(),
        _dir: dir,
    }
}

/// Calls a server function as the signed-in portal page does.
async fn call(s: &Server, client: &reqwest::Client, name: &str, form: &[(&str, &str)]) -> Value {
    let res = client
        .post(format!("{}/api/{name}", s.base))
        .header("origin", &s.base)
        .form(form)
        .send()
        .await
        .unwrap();
    assert!(res.status().is_success(), "{name}: {}", res.status());
    res.json().await.unwrap_or(Value::Null)
}

/// Runs the CLI with its own config directory; returns (success, stdout, stderr).
fn cli(config_home: &Path, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args(args)
        .env("XDG_CONFIG_HOME", config_home)
        .env_remove("PORTCULLIS_URL")
        .env_remove("PORTCULLIS_TOKEN")
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

async fn run(config_home: &Path, args: &[&str]) -> (bool, String, String) {
    let home = config_home.to_owned();
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        cli(&home, &args)
    })
    .await
    .unwrap()
}

/// Runs the CLI with `input` and a newline on its standard input.
async fn run_with_input(config_home: &Path, args: &[&str], input: &str) -> (bool, String, String) {
    use std::io::Write;
    use std::process::Stdio;
    let home = config_home.to_owned();
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    let input = format!("{input}\n");
    tokio::task::spawn_blocking(move || {
        let mut child = Command::new(env!("CARGO_BIN_EXE_portcullis"))
            .args(&args)
            .env("XDG_CONFIG_HOME", &home)
            .env_remove("PORTCULLIS_URL")
            .env_remove("PORTCULLIS_TOKEN")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_opens_and_revokes_a_grant_end_to_end() {
    let server = start().await;
    let portal = reqwest::Client::builder()
        .cookie_store(true)
        .build()
        .unwrap();
    call(
        &server,
        &portal,
        "login",
        &[("username", "admin"), ("password", &server.admin_password)],
    )
    .await;
    let new = "a long new portal passphrase";
    call(
        &server,
        &portal,
        "change_password",
        &[
            ("current_password", &server.admin_password),
            ("new_password", new),
            ("confirm_password", new),
        ],
    )
    .await;
    call(
        &server,
        &portal,
        "save_vm",
        &[
            ("id", ""),
            ("name", "web-1"),
            ("group", "prod"),
            ("addresses", "198.51.100.5"),
            ("os", "linux"),
            ("exposed_ports", "22"),
        ],
    )
    .await;
    let created = call(&server, &portal, "create_api_token", &[("name", "cli")]).await;
    let token = created["token"].as_str().unwrap().to_owned();

    let home = tempfile::tempdir().unwrap();
    let h = home.path();

    let (ok, _, err) = run(h, &["vm", "list"]).await;
    assert!(!ok && err.contains("not logged in"), "{err}");
    let (ok, _, err) = run(h, &["login", "--url", &server.base, "--token", "pcu_wrong"]).await;
    assert!(!ok && err.contains("API token"), "{err}");

    let (ok, out, err) = run(h, &["login", "--url", &server.base, "--token", &token]).await;
    assert!(ok, "{err}");
    assert!(out.contains("as admin"), "{out}");
    // The token may come on standard input instead, out of the process list.
    let (ok, out, err) = run_with_input(h, &["login", "--url", &server.base], &token).await;
    assert!(ok, "{err}");
    assert!(out.contains("as admin"), "{out}");
    let saved = h.join("portcullis").join("config.toml");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&saved).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "the token file is private");
    }

    let (ok, out, err) = run(h, &["vm", "list"]).await;
    assert!(ok, "{err}");
    assert!(out.starts_with("NAME"), "{out}");
    assert!(out.contains("web-1") && out.contains("prod"), "{out}");

    let (ok, out, err) = run(
        h,
        &[
            "jit", "enable", "--vm", "web-1", "--port", "22", "--max", "1h",
        ],
    )
    .await;
    assert!(ok, "{err}");
    assert!(out.contains("PT1H"), "{out}");

    let (ok, _, err) = run(
        h,
        &["request", "--vm", "web-1", "--port", "22", "--for", "2h"],
    )
    .await;
    assert!(!ok, "longer than the policy allows");
    assert!(err.contains("60 minutes"), "{err}");

    let (ok, out, err) = run(
        h,
        &[
            "request",
            "--vm",
            "web-1",
            "--port",
            "22",
            "--for",
            "30m",
            "--source",
            "203.0.113.7",
            "--justification",
            "deploy",
            "--json",
        ],
    )
    .await;
    assert!(ok, "{err}");
    let req: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(req["status"], "Active");
    let id = req["id"].as_str().unwrap().to_owned();

    // A window booked for tomorrow, 09:00 UTC: it waits, approved, for its start.
    let tomorrow = (chrono::Utc::now() + chrono::Duration::days(1))
        .format("%Y-%m-%dT09:00")
        .to_string();
    let (ok, out, err) = run(
        h,
        &[
            "request",
            "--vm",
            "web-1",
            "--port",
            "22",
            "--for",
            "30m",
            "--source",
            "203.0.113.8",
            "--start",
            &tomorrow,
        ],
    )
    .await;
    assert!(ok, "{err}");
    let line = out
        .lines()
        .find(|l| l.contains("203.0.113.8"))
        .unwrap_or_default();
    assert!(
        line.contains("Approved") && line.contains(&format!("{tomorrow}:00Z")),
        "{out}"
    );
    let (ok, _, err) = run(
        h,
        &[
            "request", "--vm", "web-1", "--port", "22", "--for", "30m", "--start", "soon",
        ],
    )
    .await;
    assert!(!ok);
    assert!(err.contains("Enter the start as a date and time"), "{err}");

    let (ok, out, err) = run(h, &["requests"]).await;
    assert!(ok, "{err}");
    let line = out.lines().find(|l| l.contains(&id)).unwrap_or_default();
    assert!(
        line.contains("web-1") && line.contains("203.0.113.7/32") && line.contains("Active"),
        "{out}"
    );
    let (_, out, _) = run(h, &["vm", "list", "--json"]).await;
    let vms: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        vms["value"][0]["activeGrants"][0]["allowedSourceAddressPrefix"],
        "203.0.113.7/32"
    );

    let (ok, out, err) = run(h, &["revoke", &id]).await;
    assert!(ok, "{err}");
    assert!(out.contains("Revoked"), "{out}");
    let (_, out, _) = run(h, &["requests", "--json"]).await;
    let list: Value = serde_json::from_str(&out).unwrap();
    let revoked = list["value"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == id.as_str())
        .unwrap();
    assert_eq!(revoked["status"], "Revoked");
    assert_eq!(
        revoked["virtualMachines"][0]["ports"][0]["status"],
        "Revoked"
    );
    let (_, out, _) = run(h, &["vm", "list", "--json"]).await;
    let vms: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        vms["value"][0]["activeGrants"],
        serde_json::json!([]),
        "the grant is gone"
    );

    let (ok, out, err) = run(h, &["log", "--limit", "5"]).await;
    assert!(ok, "{err}");
    assert!(out.starts_with("TIME (UTC)"), "{out}");
    assert!(out.contains("revoke") && out.contains("request"), "{out}");
    assert!(
        out.contains("Hash chain") && out.contains("verified") && !out.contains("broken"),
        "{out}"
    );
}

/// The portal's admin with the one-time password replaced, and an API token of theirs.
async fn admin_token(server: &Server) -> (reqwest::Client, String) {
    let portal = reqwest::Client::builder()
        .cookie_store(true)
        .build()
        .unwrap();
    call(
        server,
        &portal,
        "login",
        &[("username", "admin"), ("password", &server.admin_password)],
    )
    .await;
    let new = "a long new portal passphrase";
    call(
        server,
        &portal,
        "change_password",
        &[
            ("current_password", &server.admin_password),
            ("new_password", new),
            ("confirm_password", new),
        ],
    )
    .await;
    let created = call(server, &portal, "create_api_token", &[("name", "cli")]).await;
    (portal, created["token"].as_str().unwrap().to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_makes_api_tokens_and_enrollment_tokens_without_the_portal() {
    let server = start().await;
    let (portal, token) = admin_token(&server).await;
    call(
        &server,
        &portal,
        "save_vm",
        &[
            ("id", ""),
            ("name", "web-1"),
            ("group", "prod"),
            ("addresses", "198.51.100.5"),
            ("os", "linux"),
            ("exposed_ports", "22"),
        ],
    )
    .await;
    let home = tempfile::tempdir().unwrap();
    let h = home.path();
    let (ok, _, err) = run(h, &["login", "--url", &server.base, "--token", &token]).await;
    assert!(ok, "{err}");

    // A token for a script: standard output is the token alone, and it works.
    let (ok, out, err) = run(h, &["token", "create", "--name", "nightly", "--days", "3"]).await;
    assert!(ok, "{err}");
    let made = out.trim();
    assert!(made.starts_with("pcu_") && !made.contains('\n'), "{out}");
    assert!(err.contains("nightly"), "{err}");
    let (ok, out, err) = run(h, &["whoami", "--token", made]).await;
    assert!(ok && out.starts_with("admin"), "{out}{err}");
    let (ok, _, err) = run(h, &["token", "create", "--name", "x", "--user", "nobody"]).await;
    assert!(!ok && err.contains("nobody"), "{err}");

    // Enrollment tokens: the token, then the command to run on the host.
    let (ok, out, err) = run(h, &["vm", "enroll-token", "web-1"]).await;
    assert!(ok, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    assert!(
        lines[1].contains(lines[0]) && lines[1].contains(&server.base),
        "{out}"
    );
    let res = reqwest::Client::new()
        .post(format!("{}/agent/v1/enroll", server.base))
        .json(&serde_json::json!({"token": lines[0], "hostname": "web-1.example.org"}))
        .send()
        .await
        .unwrap();
    assert!(res.status().is_success(), "{}", res.status());

    let (ok, out, err) = run(h, &["group", "enroll-token", "lab", "--json"]).await;
    assert!(ok, "{err}");
    let made: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(made["group"], "lab");
    let (ok, _, err) = run(h, &["vm", "enroll-token", "nosuch"]).await;
    assert!(!ok && err.contains("not found"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_adds_one_vm_and_imports_many_all_or_nothing() {
    let server = start().await;
    let (_portal, token) = admin_token(&server).await;
    let home = tempfile::tempdir().unwrap();
    let h = home.path();
    let (ok, _, err) = run(h, &["login", "--url", &server.base, "--token", &token]).await;
    assert!(ok, "{err}");

    // One VM, with the fields of the portal's form.
    let (ok, out, err) = run(
        h,
        &[
            "vm",
            "add",
            "one-1",
            "--group",
            "prod",
            "--address",
            "198.51.100.5",
            "--address",
            "2001:db8::5",
            "--os",
            "linux",
            "--exposed-port",
            "22",
        ],
    )
    .await;
    assert!(ok, "{err}");
    assert!(out.contains("Added VM one-1"), "{out}");
    let (ok, out, err) = run(h, &["vm", "show", "one-1"]).await;
    assert!(ok, "{err}");
    let vm: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        vm["addresses"],
        serde_json::json!(["198.51.100.5", "2001:db8::5"])
    );
    let (ok, _, err) = run(h, &["vm", "add", "bad name", "--group", "prod"]).await;
    assert!(!ok && err.contains("name"), "{err}");

    // A file with bad lines: every problem by line and column, in line order, a
    // non-zero exit, and nothing stored.
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.csv");
    std::fs::write(
        &bad,
        "name,group,addresses,os\nimp-1,prod,198.51.100.6,linux\nimp-2,prod,300.1.1.1,linux\n\
         imp-3,prod,,beos\nimp-4,prod,,\nimp-5,prod,,\nimp-6,prod,,\nimp-7,prod,,\nimp-8,prod,,\n\
         imp-9,prod,,\none-1,prod,,\n",
    )
    .unwrap();
    let (ok, out, err) = run(h, &["vm", "import", bad.to_str().unwrap()]).await;
    assert!(!ok, "{out}");
    assert!(err.contains("Nothing was imported"), "{err}");
    let at = |needle: &str| {
        err.find(needle)
            .unwrap_or_else(|| panic!("{needle} in {err}"))
    };
    assert!(at("line 3, addresses") < at("line 4, os"), "{err}");
    assert!(
        at("line 4, os") < at("line 11, name"),
        "line order, not text order: {err}"
    );
    assert!(err.contains("already exists"), "{err}");
    let (ok, _, _) = run(h, &["vm", "show", "imp-1"]).await;
    assert!(!ok, "nothing of a bad file is stored");

    // A dry run of a good file from standard input stores nothing either.
    let good = "name,group,addresses,os,exposed_ports\n\
                imp-1,prod,198.51.100.6,linux,22\n\
                imp-2,lab,\"198.51.100.7, 198.51.100.8\",windows,3389\n";
    let (ok, out, err) = run_with_input(h, &["vm", "import", "-", "--dry-run"], good).await;
    assert!(ok, "{err}");
    assert!(out.contains("Dry run: 2 VMs would be imported"), "{out}");
    assert!(out.contains("198.51.100.7 198.51.100.8"), "{out}");
    let (ok, _, _) = run(h, &["vm", "show", "imp-1"]).await;
    assert!(!ok, "a dry run stores nothing");

    let (ok, out, err) = run_with_input(h, &["vm", "import", "-"], good).await;
    assert!(ok, "{err}");
    assert!(out.contains("Imported 2 VMs."), "{out}");
    let (ok, out, err) = run(h, &["vm", "list"]).await;
    assert!(ok, "{err}");
    assert!(out.contains("imp-1") && out.contains("imp-2"), "{out}");
    let (ok, out, err) = run(h, &["log", "--action", "vm.create"]).await;
    assert!(ok, "{err}");
    assert!(
        out.contains("imp-2") && out.contains("imported together"),
        "{out}"
    );

    let (ok, _, err) = run(h, &["vm", "import", "/nonexistent/vms.csv"]).await;
    assert!(!ok && err.contains("reading /nonexistent/vms.csv"), "{err}");
}
