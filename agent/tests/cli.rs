//! The agent binary as an operator runs it.

use std::process::Command;

#[test]
fn plain_http_to_another_host_is_refused_without_the_explicit_flag() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("agent.json");
    let out = Command::new(env!("CARGO_BIN_EXE_portcullis-agent"))
        .args([
            "enroll",
            "--server",
            "http://198.51.100.1:3000",
            "--token",
            "t",
        ])
        .args(["--state", state.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("plain http to another host"), "{err}");
    assert!(err.contains("--insecure-http"), "{err}");
    assert!(!state.exists(), "nothing was enrolled");
}
