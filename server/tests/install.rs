//! Installing an agent in one line: the server serves the installer and the agent binary
//! with its checksum; the VM page and the Add VM page show the line, with JavaScript and
//! without; the installer downloads, checks, installs and enrolls.

mod common;

use common::*;
use reqwest::StatusCode;
use reqwest::header::{
    ACCEPT, CACHE_CONTROL, CONTENT_LENGTH, CONTENT_TYPE, LOCATION, ORIGIN, REFERER,
};
use sha2::Digest;
use std::path::{Path, PathBuf};

const AGENT: &str = "portcullis-agent-linux-x86_64";

fn repo_file(path: &str) -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    std::fs::read_to_string(root.join(path)).unwrap()
}

/// Puts `binary` and its sha256sum-style checksum where the build puts the agent.
fn place_download(site_root: &Path, binary: &[u8]) -> String {
    let dir = site_root.join("downloads");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(AGENT), binary).unwrap();
    let hex = hex(&sha2::Sha256::digest(binary));
    std::fs::write(
        dir.join(format!("{AGENT}.sha256")),
        format!("{hex}  {AGENT}\n"),
    )
    .unwrap();
    hex
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test]
async fn a_server_built_without_the_agent_says_so_and_the_page_warns() {
    let app = spawn_app().await;
    let res = reqwest::get(format!("{}/downloads/{AGENT}", app.base))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    let text = res.text().await.unwrap();
    assert!(text.contains("built without the agent download"), "{text}");

    let admin = browser();
    app.admin_ready(&admin).await;
    let vm = app.add_vm(&admin, "web-1", "linux").await;
    let (s, body) = app
        .call(&admin, "create_enrollment_token", &[("vm_id", &vm)])
        .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!(body["download_missing"], true, "{body}");
    // The line is still shown: the agent can be installed by hand and enrolled with it.
    assert!(
        body["command"]
            .as_str()
            .unwrap()
            .contains("install-agent.sh")
    );

    place_download(&app.site_root, b"agent");
    let (_, body) = app
        .call(&admin, "create_enrollment_token", &[("vm_id", &vm)])
        .await;
    assert_eq!(body["download_missing"], false, "{body}");
}

#[tokio::test]
async fn the_agent_and_its_checksum_are_served_to_anyone_and_nothing_else_is() {
    let app = spawn_app().await;
    let binary: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    let sum = place_download(&app.site_root, &binary);
    std::fs::write(app.site_root.join("downloads/notes.txt"), "private").unwrap();
    // No session, no cookie: a VM fetching it has neither.
    let vm = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();

    let res = vm
        .get(format!("{}/downloads/{AGENT}", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let h = res.headers().clone();
    assert_eq!(h[CONTENT_TYPE], "application/octet-stream");
    assert_eq!(h[CONTENT_LENGTH], binary.len().to_string().as_str());
    assert_eq!(h[CACHE_CONTROL], "no-cache");
    assert!(h.contains_key(reqwest::header::LAST_MODIFIED));
    assert_eq!(res.bytes().await.unwrap().as_ref(), binary.as_slice());

    let res = vm
        .get(format!("{}/downloads/{AGENT}.sha256", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert!(
        res.headers()[CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    assert_eq!(res.text().await.unwrap(), format!("{sum}  {AGENT}\n"));

    for path in [
        "/downloads/notes.txt",
        "/downloads/",
        "/downloads/x/../notes.txt",
        "/downloads/%2e%2e%2fCargo.toml",
        "/downloads/..%2f..%2fCargo.toml",
        &format!("/downloads/{AGENT}/x"),
    ] {
        let res = vm.get(format!("{}{path}", app.base)).send().await.unwrap();
        let status = res.status();
        let text = res.text().await.unwrap();
        assert!(
            status == StatusCode::NOT_FOUND || status.is_redirection(),
            "{path}: {status}"
        );
        assert!(!text.contains("private"), "{path} served another file");
        assert!(!text.contains("[workspace]"), "{path} left the directory");
    }
}

#[tokio::test]
async fn the_installer_is_served_and_carries_the_canonical_unit() {
    let app = spawn_app().await;
    let res = reqwest::get(format!("{}/install-agent.sh", app.base))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert!(
        res.headers()[CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/x-shellscript")
    );
    let script = res.text().await.unwrap();
    assert_eq!(script, repo_file("deploy/install-agent.sh"));
    let embedded = script
        .split_once("<<'PORTCULLIS_UNIT'\n")
        .and_then(|(_, rest)| rest.split_once("\nPORTCULLIS_UNIT\n"))
        .map(|(unit, _)| format!("{unit}\n"))
        .expect("the installer embeds the unit");
    assert_eq!(
        embedded,
        repo_file("deploy/systemd/portcullis-agent.service"),
        "deploy/install-agent.sh's copy of the unit differs from deploy/systemd/portcullis-agent.service"
    );
}

/// `systemd-analyze verify` on the unit, in a root that has the binary it names.
#[test]
fn the_agent_unit_passes_systemd_analyze_verify() {
    let root = tempfile::tempdir().unwrap();
    let bin = root.path().join("usr/bin/portcullis-agent");
    let units = root.path().join("etc/systemd/system");
    std::fs::create_dir_all(bin.parent().unwrap()).unwrap();
    std::fs::create_dir_all(&units).unwrap();
    std::fs::copy("/bin/true", &bin).unwrap();
    let unit = units.join("portcullis-agent.service");
    std::fs::write(&unit, repo_file("deploy/systemd/portcullis-agent.service")).unwrap();
    let out = std::process::Command::new("systemd-analyze")
        .arg("verify")
        .arg(format!("--root={}", root.path().display()))
        .arg(&unit)
        .output()
        .expect("systemd-analyze (Debian package systemd) is needed for this test");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{said}");
    assert!(said.trim().is_empty(), "warnings: {said}");
}

/// The hex token in a page's install line.
fn token_in(html: &str) -> Option<String> {
    let at = html.find("PORTCULLIS_ENROLL_TOKEN=")? + "PORTCULLIS_ENROLL_TOKEN=".len();
    let token: String = html[at..]
        .chars()
        .take_while(|c| c.is_ascii_hexdigit())
        .collect();
    (token.len() == 64).then_some(token)
}

/// Posts a form as a browser without JavaScript does, and follows the redirect.
async fn post_plain_form(
    app: &TestApp,
    browser: &reqwest::Client,
    from: &str,
    form: &[(&str, &str)],
) -> String {
    let res = browser
        .post(format!("{}/api/create_enrollment_token", app.base))
        .header(ORIGIN, &app.base)
        .header(ACCEPT, "text/html")
        .header(REFERER, format!("{}{from}", app.base))
        .form(form)
        .send()
        .await
        .unwrap();
    assert!(res.status().is_redirection(), "{}", res.status());
    let location = res.headers()[LOCATION].to_str().unwrap().to_owned();
    assert!(
        !location.contains("PORTCULLIS") && location.len() < 200,
        "the token went into the URL: {location}"
    );
    location
}

async fn page(app: &TestApp, browser: &reqwest::Client, path: &str) -> String {
    let res = browser
        .get(format!(
            "{}{}",
            app.base,
            path.trim_start_matches(&app.base)
        ))
        .header(ACCEPT, "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK, "{path}");
    res.text().await.unwrap()
}

#[tokio::test]
async fn without_javascript_the_install_line_is_shown_once_on_the_page_it_was_made_for() {
    let app = spawn_app().await;
    let admin = browser();
    app.admin_ready(&admin).await;
    place_download(&app.site_root, b"agent");
    let vm = app.add_vm(&admin, "web-1", "linux").await;
    let other = app.add_vm(&admin, "web-2", "linux").await;

    let location = post_plain_form(&app, &admin, &format!("/vms/{vm}"), &[("vm_id", &vm)]).await;
    assert!(
        location
            .trim_end_matches('?')
            .ends_with(&format!("/vms/{vm}")),
        "{location}"
    );
    // Another VM's page does not take it.
    let html = page(&app, &admin, &format!("/vms/{other}")).await;
    assert_eq!(token_in(&html), None, "shown on another VM's page");
    let html = page(&app, &admin, &location).await;
    let token = token_in(&html).expect("the install line with the token is on the page");
    assert!(
        html.contains(&format!(
            "export PORTCULLIS_ENROLL_TOKEN={token}; curl -fsSL {}/install-agent.sh | sudo --preserve-env=PORTCULLIS_ENROLL_TOKEN sh -s -- --server {}",
            app.base, app.base
        )),
        "{html}"
    );
    assert!(
        html.contains("The token works once and expires at"),
        "{html}"
    );
    assert!(!html.contains("download-missing"), "{html}");
    let again = page(&app, &admin, &location).await;
    assert_eq!(token_in(&again), None, "shown a second time");
    // The token shown is the one the server keeps: an agent enrolls with it, once.
    let (s, enrolled) = enroll(&app, &token, "web-1").await;
    assert_eq!(s, StatusCode::OK, "{enrolled}");
    assert_eq!(enrolled["vm_name"], "web-1");

    // The Add VM page's registration token, and a server without the agent download.
    std::fs::remove_dir_all(app.site_root.join("downloads")).unwrap();
    let location = post_plain_form(
        &app,
        &admin,
        "/vms/new",
        &[("vm_id", ""), ("group", "edge")],
    )
    .await;
    assert!(
        location.trim_end_matches('?').ends_with("/vms/new"),
        "{location}"
    );
    let html = page(&app, &admin, &format!("/vms/{vm}")).await;
    assert_eq!(
        token_in(&html),
        None,
        "the registration token on a VM's page"
    );
    let html = page(&app, &admin, "/vms/new").await;
    let token = token_in(&html).expect("the registration line is on the Add VM page");
    assert!(html.contains("data-testid=\"register-command\""), "{html}");
    assert!(html.contains("built without the agent download"), "{html}");
    assert_eq!(
        token_in(&page(&app, &admin, "/vms/new").await),
        None,
        "shown twice"
    );
    let (s, enrolled) = enroll(&app, &token, "edge-9").await;
    assert_eq!(s, StatusCode::OK, "{enrolled}");
}

/// The installer as the page's line runs it (`curl … | sh -s -- …`), against this server,
/// with a stand-in agent that records how it was called: the real agent is installed and
/// started in a network namespace by end2end/netns/enforcement.sh.
#[tokio::test]
async fn the_installer_checks_the_download_installs_it_and_hands_the_token_over_the_environment() {
    let app = spawn_app().await;
    let work = tempfile::tempdir().unwrap();
    let record = work.path().join("called");
    let stand_in = format!(
        "#!/bin/sh\n{{ printf 'args:%s\\n' \"$*\"; printf 'token:%s\\n' \"$PORTCULLIS_ENROLL_TOKEN\"; }} >>'{}'\n",
        record.display()
    );
    place_download(&app.site_root, stand_in.as_bytes());
    let prefix = work.path().join("root");
    let install = |token: &str, extra: &str| {
        shell(format!(
            "curl -fsSL {base}/install-agent.sh | PORTCULLIS_ENROLL_TOKEN={token} sh -s -- \
             --server {base} --prefix '{prefix}' --hostname vm-7{extra}",
            base = app.base,
            prefix = prefix.display()
        ))
    };
    let installed: PathBuf = prefix.join("usr/bin/portcullis-agent");

    let (ok, err) = install("first-token", "").await;
    assert!(ok, "{err}");
    assert!(err.contains("checksum verified"), "{err}");
    assert!(err.contains("without systemd"), "{err}");
    assert_eq!(std::fs::read_to_string(&installed).unwrap(), stand_in);
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&installed).unwrap().permissions().mode() & 0o777,
        0o755
    );
    let called = std::fs::read_to_string(&record).unwrap();
    let state = prefix.join("var/lib/portcullis-agent/agent.json");
    assert_eq!(
        called,
        format!(
            "args:enroll --server {} --state {} --hostname vm-7\ntoken:first-token\n",
            app.base,
            state.display()
        ),
        "the token must reach the agent in its environment, not its arguments"
    );
    assert!(
        !prefix.join("etc/systemd").exists(),
        "no unit without systemd"
    );

    // Again, with a new token: the same install, enrolled again.
    let (ok, err) = install("second-token", " --insecure-http").await;
    assert!(ok, "{err}");
    let called = std::fs::read_to_string(&record).unwrap();
    assert!(
        called.ends_with(" --hostname vm-7 --insecure-http\ntoken:second-token\n"),
        "{called}"
    );

    // A download that does not match its checksum is refused and installs nothing.
    std::fs::write(
        app.site_root.join("downloads").join(AGENT),
        "#!/bin/sh\necho tampered\n",
    )
    .unwrap();
    std::fs::remove_file(&record).unwrap();
    let (ok, err) = install("third-token", "").await;
    assert!(!ok, "a tampered download was accepted: {err}");
    assert!(err.contains("checksum mismatch"), "{err}");
    assert_eq!(std::fs::read_to_string(&installed).unwrap(), stand_in);
    assert!(!record.exists(), "enrolled with a tampered agent");

    // No token: it says how to give one.
    let (ok, err) = shell(format!(
        "unset PORTCULLIS_ENROLL_TOKEN; curl -fsSL {base}/install-agent.sh | sh -s -- --server {base} --prefix '{}'",
        prefix.display(),
        base = app.base
    ))
    .await;
    assert!(!ok);
    assert!(err.contains("PORTCULLIS_ENROLL_TOKEN"), "{err}");
}

/// Runs `line` with sh off the test's runtime (which also runs the server); returns
/// whether it succeeded and what it said on standard error.
async fn shell(line: String) -> (bool, String) {
    tokio::task::spawn_blocking(move || {
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(&line)
            .output()
            .expect("sh");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    })
    .await
    .unwrap()
}
