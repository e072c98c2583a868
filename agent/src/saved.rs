//! The last state the agent applied, kept on disk with absolute end times.
//!
//! The kernel forgets the agent's table at a reboot, and a host comes up with its ports
//! open until something closes them. The agent therefore puts back the last applied state
//! at start, before it talks to the server (which may be unreachable): the ports under JIT
//! control are closed again, and each grant still in force comes back with the time it has
//! left by the host's clock; grants that ended meanwhile are left out.

use crate::nft::{DesiredState, Grant, Rule};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct SavedGrant {
    source: String,
    port: u16,
    protocol: String,
    /// When the grant ends, in the host's wall-clock milliseconds.
    ends_at_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct SavedState {
    generation: i64,
    saved_at_ms: i64,
    rules: Vec<(u16, String)>,
    grants: Vec<SavedGrant>,
}

/// Where the applied state lives: beside the identity file (`agent.json` →
/// `agent.applied.json`).
pub fn path_for(identity: &Path) -> PathBuf {
    identity.with_extension("applied.json")
}

pub fn wall_clock_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

impl SavedState {
    fn of(state: &DesiredState, now_ms: i64) -> Self {
        SavedState {
            generation: state.generation,
            saved_at_ms: now_ms,
            rules: state
                .rules
                .iter()
                .map(|r| (r.port, r.protocol.clone()))
                .collect(),
            grants: state
                .grants
                .iter()
                .filter(|g| g.expires_in_ms > 0)
                .map(|g| SavedGrant {
                    source: g.source.clone(),
                    port: g.port,
                    protocol: g.protocol.clone(),
                    ends_at_ms: now_ms + g.expires_in_ms,
                })
                .collect(),
        }
    }
}

/// Writes the state just applied, received at `now_ms` (host clock), atomically: a crash
/// while writing leaves the previous file, never half of one.
pub fn save(path: &Path, state: &DesiredState, now_ms: i64) -> std::io::Result<()> {
    let saved = SavedState::of(state, now_ms);
    let text = serde_json::to_vec_pretty(&saved).map_err(std::io::Error::other)?;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension("tmp");
    {
        use std::io::Write;
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let mut f = options.open(&tmp)?;
        f.write_all(&text)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    // The rename itself is durable only once the directory is.
    if let Some(dir) = path.parent()
        && let Ok(d) = std::fs::File::open(dir)
    {
        let _ = d.sync_all();
    }
    Ok(())
}

/// When [`save`] failed (a full disk, say): the saved file is rewritten in place, no
/// longer than it was (so a full disk needs no new block), with the closed ports and no
/// grant, so that no grant the new state ends can come back at the next boot while the
/// protected ports still come back closed. The new rules if they fit, else the old file's
/// own rules. Never removed: without it a reboot would leave the ports open until the
/// server answers. Says what it did.
pub fn forget_grants(path: &Path, state: &DesiredState, now_ms: i64) -> String {
    let Ok(old) = std::fs::read(path) else {
        return "no saved state holds a grant".into();
    };
    let Ok(old_state) = serde_json::from_slice::<SavedState>(&old) else {
        return "the saved state is unreadable and restores nothing".into();
    };
    if old_state.grants.is_empty() {
        return "the saved state holds no grant".into();
    }
    let new_rules = SavedState::of(
        &DesiredState {
            grants: Vec::new(),
            ..state.clone()
        },
        now_ms,
    );
    let old_rules = SavedState {
        grants: Vec::new(),
        ..old_state
    };
    let fitting = [new_rules, old_rules]
        .iter()
        .filter_map(|s| serde_json::to_vec(s).ok())
        .find(|text| text.len() <= old.len());
    let Some(mut text) = fitting else {
        return "and it cannot be cut down: a grant in it may come back at the next boot".into();
    };
    // Trailing spaces are still the same JSON.
    text.resize(old.len(), b' ');
    let written = (|| {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new().write(true).open(path)?;
        f.write_all(&text)?;
        f.sync_all()
    })();
    match written {
        Ok(()) => "kept only the closed ports in the saved state".into(),
        Err(e) => format!(
            "and cutting it down failed too ({e}): a grant in it may come back at the next boot"
        ),
    }
}

/// The saved state as it stands at `now_ms`: grants that ended are dropped, the others
/// carry the time they have left, never more than they had when saved. A host clock
/// behind the time of saving (no NTP yet at boot, a dead RTC battery) cannot tell how long
/// ago that was, so then no grant comes back: the ports stay closed until the server
/// says otherwise. `None` when nothing was saved or the file is unreadable.
pub fn load(path: &Path, now_ms: i64) -> Option<DesiredState> {
    let text = std::fs::read(path).ok()?;
    let saved: SavedState = match serde_json::from_slice(&text) {
        Ok(s) => s,
        Err(e) => {
            eprintln!(
                "portcullis-agent: ignoring {}: not a saved state ({e})",
                path.display()
            );
            return None;
        }
    };
    let clock_went_back = now_ms < saved.saved_at_ms;
    if clock_went_back {
        eprintln!(
            "portcullis-agent: the clock reads earlier than when {} was saved; no grant is restored",
            path.display()
        );
    }
    let saved_at = saved.saved_at_ms;
    Some(DesiredState {
        generation: saved.generation,
        server_time_ms: now_ms,
        rules: saved
            .rules
            .into_iter()
            .map(|(port, protocol)| Rule { port, protocol })
            .collect(),
        grants: saved
            .grants
            .into_iter()
            .filter(|g| !clock_went_back && g.ends_at_ms > now_ms)
            .map(|g| Grant {
                source: g.source,
                port: g.port,
                protocol: g.protocol,
                expires_in_ms: (g.ends_at_ms - now_ms).min(g.ends_at_ms - saved_at),
            })
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state() -> DesiredState {
        DesiredState {
            generation: 42,
            server_time_ms: 5,
            rules: vec![Rule {
                port: 22,
                protocol: "tcp".into(),
            }],
            grants: vec![
                Grant {
                    source: "198.51.100.10/32".into(),
                    port: 22,
                    protocol: "tcp".into(),
                    expires_in_ms: 600_000,
                },
                Grant {
                    source: "203.0.113.7/32".into(),
                    port: 22,
                    protocol: "tcp".into(),
                    expires_in_ms: 60_000,
                },
            ],
        }
    }

    #[test]
    fn a_saved_state_comes_back_with_the_time_left_and_without_what_ended() {
        let dir = std::env::temp_dir().join(format!("pc-saved-{}", std::process::id()));
        let path = path_for(&dir.join("agent.json"));
        assert!(path.ends_with("agent.applied.json"));
        let t0 = 1_000_000;
        save(&path, &state(), t0).unwrap();
        // Two minutes later (a reboot): the one-minute grant has ended.
        let back = load(&path, t0 + 120_000).unwrap();
        assert_eq!(back.generation, 42);
        assert_eq!(back.rules, state().rules);
        assert_eq!(back.grants.len(), 1);
        assert_eq!(back.grants[0].source, "198.51.100.10/32");
        assert_eq!(back.grants[0].expires_in_ms, 480_000);
        // Much later: the ports stay closed, no grant is left.
        let late = load(&path, t0 + 3_600_000).unwrap();
        assert!(late.grants.is_empty());
        assert_eq!(late.rules.len(), 1);
        // A clock that went back (boot before NTP): nothing comes back but the closed ports.
        let back = load(&path, t0 - 60_000).unwrap();
        assert!(back.grants.is_empty());
        assert_eq!(back.rules.len(), 1);
        std::fs::write(&path, b"{ not json").unwrap();
        assert!(load(&path, t0).is_none());
        assert!(load(&dir.join("missing.json"), t0).is_none());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn when_saving_fails_no_older_grant_can_come_back() {
        let dir = std::env::temp_dir().join(format!("pc-saved-fail-{}", std::process::id()));
        let path = path_for(&dir.join("agent.json"));
        let t0 = 1_000_000;
        save(&path, &state(), t0).unwrap();
        // The next state (every grant revoked) cannot be written: its temporary file's
        // place is taken, as a full disk or a read-only directory would refuse it.
        std::fs::create_dir_all(path.with_extension("tmp")).unwrap();
        let revoked = DesiredState {
            generation: 43,
            grants: Vec::new(),
            ..state()
        };
        assert!(save(&path, &revoked, t0 + 1_000).is_err());
        let done = forget_grants(&path, &revoked, t0 + 1_000);
        assert!(done.contains("closed ports"), "{done}");
        let back = load(&path, t0 + 2_000).unwrap();
        assert!(
            back.grants.is_empty(),
            "a revoked grant would come back: {back:?}"
        );
        assert_eq!(back.rules, state().rules);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
