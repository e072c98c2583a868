//! The agent binary as an operator runs it.

use std::process::Command;

fn agent() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_portcullis-agent"));
    c.env_remove("PORTCULLIS_ENROLL_TOKEN");
    c
}

#[test]
fn plain_http_to_another_host_is_refused_without_the_explicit_flag() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("agent.json");
    let out = agent()
        .args(["enroll", "--server", "http://198.51.100.1:3000"])
        .args(["--state", state.to_str().unwrap()])
        .env("PORTCULLIS_ENROLL_TOKEN", "t")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("plain http to another host"), "{err}");
    assert!(err.contains("--insecure-http"), "{err}");
    assert!(!state.exists(), "nothing was enrolled");
}

/// A token in the arguments shows in `ps` to every user of the host: refused, with the
/// ways that do not.
#[test]
fn a_token_on_the_command_line_is_refused_and_the_ways_to_pass_it_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("agent.json");
    let out = agent()
        .args(["enroll", "--server", "http://127.0.0.1:9", "--token", "abc"])
        .args(["--state", state.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    for way in [
        "PORTCULLIS_ENROLL_TOKEN",
        "--token-file FILE",
        "--token -",
        "ps",
    ] {
        assert!(err.contains(way), "{way} not named in: {err}");
    }
    assert!(!state.exists());
}

#[test]
fn without_a_token_enroll_says_how_to_give_one() {
    let dir = tempfile::tempdir().unwrap();
    let out = agent()
        .args(["enroll", "--server", "http://127.0.0.1:9"])
        .args(["--state", dir.path().join("agent.json").to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no enrollment token"), "{err}");
    assert!(err.contains("PORTCULLIS_ENROLL_TOKEN"), "{err}");
}

/// Each way in is read (the server at port 9 is unreachable, so getting as far as trying
/// it shows the token was accepted); an empty one is refused before any connection.
#[test]
fn the_token_is_read_from_a_file_or_standard_input() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("agent.json");
    let file = dir.path().join("token");
    std::fs::write(&file, "abc\n").unwrap();
    let out = agent()
        .args(["enroll", "--server", "http://127.0.0.1:9", "--token-file"])
        .arg(&file)
        .args(["--state", state.to_str().unwrap()])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cannot reach http://127.0.0.1:9"), "{err}");

    let mut child = agent()
        .args(["enroll", "--server", "http://127.0.0.1:9", "--token", "-"])
        .args(["--state", state.to_str().unwrap()])
        .stdin(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"abc\n").unwrap();
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cannot reach http://127.0.0.1:9"), "{err}");

    std::fs::write(&file, "\n").unwrap();
    let out = agent()
        .args(["enroll", "--server", "http://127.0.0.1:9", "--token-file"])
        .arg(&file)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("is empty"), "{err}");
    assert!(!state.exists());
}
