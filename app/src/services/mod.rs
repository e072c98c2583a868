//! Services carry out what the domain decided, using the store. Server functions and
//! (later) the REST API call these; neither talks to the store directly.

pub mod access;
pub mod activity;
pub mod jit;
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

impl Actor {
    pub fn entry(&self, action: &str, vm: &str) -> NewLogEntry {
        NewLogEntry {
            actor: self.username.clone(),
            client_ip: self.ip.to_string(),
            action: action.to_owned(),
            vm: vm.to_owned(),
            result: "success".into(),
            ..Default::default()
        }
    }
}
