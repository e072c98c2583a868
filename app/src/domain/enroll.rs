//! The one line an administrator copies onto a VM to install and enroll its agent.
//!
//! It exists once, here, because three places show it (the VM page, the Add VM page and the
//! host-side `enroll-token` command) and they must never drift apart: the line is the
//! contract between the portal and `deploy/install-agent.sh`. The token travels in the
//! environment of the installer, never in the arguments of the long-running agent.

use super::net::plain_http_off_loopback;

/// The name of the agent binary the server offers under `/downloads/` (and of its
/// `.sha256` beside it).
pub const AGENT_DOWNLOAD: &str = "portcullis-agent-linux-x86_64";

/// The variable through which the installer (and `portcullis-agent enroll`) takes the
/// enrollment token.
pub const TOKEN_VARIABLE: &str = "PORTCULLIS_ENROLL_TOKEN";

/// What the page shows for a new enrollment token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnrollCommand {
    /// The line to paste into a root-capable shell on the VM.
    pub command: String,
    /// Why the line says `--insecure-http`, or empty.
    pub warning: String,
}

/// The install line for the portal reached at `portal_url` (no trailing slash needed) and
/// a one-time `token`. The token is exported by the user's shell (a builtin, so it is no
/// process's argument) and handed through `sudo --preserve-env`: as an argument of
/// `sudo VAR=value`, it would be readable in `ps` for as long as the install runs. Plain http to anything but this host adds `--insecure-http` (the
/// agent refuses it otherwise) and a warning that says what that costs.
pub fn enroll_command(portal_url: &str, token: &str) -> EnrollCommand {
    let url = portal_url.trim_end_matches('/');
    let insecure = plain_http_off_loopback(url);
    let quoted_url = sh_quote(url);
    let command = format!(
        "export {TOKEN_VARIABLE}={token}; curl -fsSL {script} | sudo --preserve-env={TOKEN_VARIABLE} sh -s -- --server {quoted_url}{flag}",
        script = sh_quote(&format!("{url}/install-agent.sh")),
        token = sh_quote(token),
        flag = if insecure { " --insecure-http" } else { "" },
    );
    let warning = if insecure {
        "This portal is not reached over https (public_url is not set to an https:// \
         address). The token and the agent's secret cross the network in clear text, and \
         anyone on the path between the VM and the portal can replace the script or the agent it \
         downloads (the checksum comes over the same channel), which then runs as root on \
         the VM; the command says --insecure-http to accept that. Put Portcullis behind \
         TLS and set public_url instead."
            .to_owned()
    } else {
        String::new()
    };
    EnrollCommand { command, warning }
}

/// A word the shell takes literally. URLs and hex tokens normally need no quotes, and
/// the line reads better without them; anything else (a Host header is the caller's
/// text when no public_url is set) is single-quoted so it can never run as a command.
fn sh_quote(word: &str) -> String {
    let plain = !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-._~:/@%+=,[]".contains(c));
    if plain {
        word.to_owned()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn https_portal_gets_the_plain_one_liner() {
        let c = enroll_command("https://jit.example.org/", "0a1b");
        assert_eq!(
            c.command,
            "export PORTCULLIS_ENROLL_TOKEN=0a1b; curl -fsSL https://jit.example.org/install-agent.sh \
             | sudo --preserve-env=PORTCULLIS_ENROLL_TOKEN sh -s -- --server https://jit.example.org"
        );
        assert_eq!(c.warning, "");
    }

    #[test]
    fn plain_http_to_another_host_says_insecure_and_warns() {
        let c = enroll_command("http://198.51.100.1:3000", "ff");
        assert_eq!(
            c.command,
            "export PORTCULLIS_ENROLL_TOKEN=ff; curl -fsSL http://198.51.100.1:3000/install-agent.sh \
             | sudo --preserve-env=PORTCULLIS_ENROLL_TOKEN sh -s -- --server http://198.51.100.1:3000 \
             --insecure-http"
        );
        assert!(c.warning.contains("clear text"));
        assert!(
            c.warning.contains("runs as root on the VM"),
            "{}",
            c.warning
        );
    }

    #[test]
    fn plain_http_on_this_host_needs_no_flag() {
        let c = enroll_command("http://[::1]:3000", "ff");
        assert!(
            c.command.ends_with("--server http://[::1]:3000"),
            "{}",
            c.command
        );
        assert_eq!(c.warning, "");
    }

    #[test]
    fn a_hostile_host_name_cannot_become_a_command() {
        let c = enroll_command("http://evil;touch /tmp/x'", "ff");
        assert!(
            c.command
                .contains(r"--server 'http://evil;touch /tmp/x'\''' --insecure-http"),
            "{}",
            c.command
        );
    }
}
