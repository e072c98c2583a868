//! Enrollment tokens: the one-time secret an agent trades for its identity. The portal's
//! VM pages, the REST API and the host console all make them here, so that the same
//! permission decides, the same log entry is written and the same install command is
//! shown, whichever way an operator asked.

use super::Actor;
use super::jit::{find_vm, require, vm_resource};
use crate::domain::secret::hash_secret;
use crate::domain::vm::VmSpec;
use crate::domain::{Action, FieldErrors, Resource};
use crate::error::{AppError, AppResult};

/// How long an enrollment token may be used.
pub const ENROLLMENT_TOKEN_TTL_MS: i64 = 3_600_000;

/// What the agent will be bound to.
#[derive(Debug, Clone, Copy)]
pub enum EnrollTarget<'a> {
    /// An existing VM, by id or name.
    Vm(&'a str),
    /// A new VM that the agent registers, named after its host, in this group.
    Group(&'a str),
}

/// A token made, shown once, with the command that uses it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Enrollment {
    pub token: String,
    /// The one line to run on the host to protect.
    pub command: String,
    /// Why the command is unsafe as it stands; empty when it is not.
    pub warning: String,
    /// The VM's name, or "new VM in GROUP".
    pub target: String,
    /// Set for an existing VM.
    pub vm_id: Option<String>,
    pub group: String,
    pub expires_at: i64,
}

/// The address agents reach the portal at: the configured public URL, or else the Host
/// the request came to (or, from the host console, the listening address).
pub fn server_url(public_url: Option<&str>, host: Option<&str>) -> String {
    match public_url {
        Some(url) => url.to_owned(),
        None => format!("http://{}", host.unwrap_or("127.0.0.1:3000")),
    }
}

/// Makes a one-time enrollment token (valid one hour) for `target`, for whoever may
/// manage the VM (or VMs of the group); `server` is the address agents reach the portal
/// at. The token and its log entry commit together.
pub async fn create(
    store: &crate::store::Store,
    actor: &Actor,
    target: EnrollTarget<'_>,
    server: &str,
) -> AppResult<Enrollment> {
    let (vm_id, group, label) = match target {
        EnrollTarget::Group(group) => {
            // The group is checked with the same rules as a VM's group.
            let spec = VmSpec::parse("placeholder", group, "", "linux", "").map_err(|e| {
                AppError::Validation(FieldErrors(
                    e.0.into_iter().filter(|f| f.field == "group").collect(),
                ))
            })?;
            require(
                actor,
                Action::ManageVm,
                &Resource::Vm {
                    id: String::new(),
                    group: spec.group.clone(),
                },
            )?;
            let label = format!("new VM in {}", spec.group);
            (None, spec.group, label)
        }
        EnrollTarget::Vm(id_or_name) => {
            let vm = find_vm(store, actor, id_or_name).await?;
            require(actor, Action::ManageVm, &vm_resource(&vm))?;
            (Some(vm.id), vm.group, vm.name)
        }
    };
    let token = super::random_hex(32);
    let log = actor.entry("agent.token", &label);
    let expires_at = store
        .create_enrollment_token(
            vm_id.as_deref(),
            &group,
            &hash_secret(&token),
            &actor.username,
            ENROLLMENT_TOKEN_TTL_MS,
            log,
        )
        .await?;
    let crate::domain::enroll::EnrollCommand { command, warning } =
        crate::domain::enroll::enroll_command(server, &token);
    Ok(Enrollment {
        token,
        command,
        warning,
        target: label,
        vm_id,
        group,
        expires_at,
    })
}
