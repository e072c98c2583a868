//! Services carry out what the domain decided, using the store. Server functions and
//! (later) the REST API call these; neither talks to the store directly.

pub mod access;
pub mod activity;
pub mod delivery;
pub mod enrollment;
pub mod jit;
pub mod notify;
pub mod overview;
pub mod requests;
pub mod sso;
pub mod tokens;
pub mod users;

use crate::domain::RoleAssignment;
use crate::store::NewLogEntry;
use std::net::IpAddr;

/// Who is acting, as the services need it: for permission checks and the activity log.
#[derive(Debug, Clone)]
pub struct Actor {
    pub user_id: String,
    pub username: String,
    pub roles: Vec<RoleAssignment>,
    pub ip: IpAddr,
}

/// `bytes` random bytes from the operating system, as lower-case hex: enrollment tokens,
/// webhook signing keys, API token ids.
pub(crate) fn random_hex(bytes: usize) -> String {
    use rand::RngCore;
    let mut buf = vec![0u8; bytes];
    rand::rngs::OsRng.fill_bytes(&mut buf);
    crate::domain::secret::to_hex(&buf)
}

/// The name host-side commands act under in the activity log. It holds a space, which no
/// user name may (`Username::parse`), so no portal account can pass for the host console.
pub const HOST_CONSOLE_ACTOR: &str = "host console";
/// Where host-side commands come from, in the activity log's address column: they run
/// on the server with its database and key, not through the network.
pub const HOST_CONSOLE_ORIGIN: &str = "local console";
/// Not a user id the store ever makes (those are UUIDs), so no row can be mistaken for it.
const HOST_CONSOLE_ID: &str = "host-console";

impl Actor {
    /// The operator of `portcullis-server` on the host: whoever can run it there holds the
    /// database and the activity log's key, so may administer everything. It still acts
    /// through the services, so that input is checked and every change is logged as any
    /// other, under [`HOST_CONSOLE_ACTOR`] from [`HOST_CONSOLE_ORIGIN`].
    pub fn host_console() -> Actor {
        Actor {
            user_id: HOST_CONSOLE_ID.to_owned(),
            username: HOST_CONSOLE_ACTOR.to_owned(),
            roles: vec![RoleAssignment {
                role: crate::domain::Role::Admin,
                scope: crate::domain::Scope::All,
            }],
            ip: IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
        }
    }

    /// Whether this is the host console rather than a user of the portal or the API.
    pub fn is_host_console(&self) -> bool {
        self.user_id == HOST_CONSOLE_ID
    }

    /// Where the action came from, as the activity log records it.
    pub fn origin(&self) -> String {
        if self.is_host_console() {
            HOST_CONSOLE_ORIGIN.to_owned()
        } else {
            self.ip.to_string()
        }
    }

    pub fn entry(&self, action: &str, vm: &str) -> NewLogEntry {
        NewLogEntry {
            actor: self.username.clone(),
            client_ip: self.origin(),
            action: action.to_owned(),
            vm: vm.to_owned(),
            result: "success".into(),
            ..Default::default()
        }
    }
}
