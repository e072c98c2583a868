//! Access lasts only while its authority does. After any change to who may request where
//! (an account disabled, a role or group rule removed, IdP groups changed at sign-in, a VM
//! moved to another group), [`reconcile_users`] runs in the same write transaction: it
//! recomputes each affected user's roles as the transaction sees them, asks [`permits`]
//! about every grant in force and request waiting, and ends or closes what is no longer
//! permitted through the store's one ending path.

use crate::domain::request::PortStatus;
use crate::domain::request::reason;
use crate::domain::sso::roles_from_groups;
use crate::domain::{Action, Resource, RoleAssignment, permits};
use crate::store::{Ending, GrantFilter, RoleInputs, WaitingFilter, WriteTx};

/// Who caused a change, for the log entries of what it ends.
#[derive(Debug, Clone, Copy)]
pub struct By<'a> {
    pub actor: &'a str,
    pub ip: &'a str,
}

/// Everything a user may do, from the inputs the store read: their direct role
/// assignments and the roles their identity provider's groups grant (as of their last
/// sign-in). A disabled or missing user may do nothing.
pub fn roles_from(inputs: &RoleInputs) -> Vec<RoleAssignment> {
    if inputs.user.as_ref().is_none_or(|u| u.disabled) {
        return Vec::new();
    }
    let mut roles = inputs.assignments.clone();
    if let Some(identity) = &inputs.identity {
        let rules: Vec<_> = inputs.group_rules.iter().map(|s| s.rule.clone()).collect();
        for rule in roles_from_groups(&rules, &identity.provider, &identity.groups) {
            if !roles.contains(&rule.assignment) {
                roles.push(rule.assignment.clone());
            }
        }
    }
    roles
}

/// Ends the grants and closes the waiting requests of `users` that they could no longer
/// make now. Returns how many grants ended and requests closed.
pub async fn reconcile_users(
    tx: &mut WriteTx,
    users: &[String],
    by: By<'_>,
) -> crate::store::Result<(usize, usize)> {
    let mut ended = 0;
    let mut closed = 0;
    for user in users {
        let inputs = tx.role_inputs(user).await?;
        let why = match &inputs.user {
            None => reason::REQUESTER_REMOVED,
            Some(u) if u.disabled => reason::REQUESTER_DISABLED,
            Some(_) => reason::LOST_PERMISSION,
        };
        let roles = roles_from(&inputs);
        let may = |vm_id: &str, group: &str| {
            permits(
                &roles,
                Action::RequestAccess,
                &Resource::Vm {
                    id: vm_id.to_owned(),
                    group: group.to_owned(),
                },
            )
        };
        let grants: Vec<_> = tx
            .open_grants(GrantFilter::Requester(user))
            .await?
            .into_iter()
            .filter(|g| !may(&g.vm_id, &g.vm_group))
            .collect();
        super::notify::grants_ended(tx, &grants, by.actor, why).await?;
        ended += tx
            .end_grants(
                &grants,
                &Ending {
                    status: PortStatus::Revoked,
                    reason: why,
                    actor: by.actor,
                    client_ip: by.ip,
                    action: "revoke",
                    result: "success",
                },
            )
            .await?;
        let waiting: Vec<_> = tx
            .waiting_requests(WaitingFilter::Requester(user))
            .await?
            .into_iter()
            .filter(|w| !may(&w.vm_id, &w.vm_group))
            .collect();
        closed += tx
            .close_requests(
                &waiting,
                &Ending {
                    status: PortStatus::Cancelled,
                    reason: why,
                    actor: by.actor,
                    client_ip: by.ip,
                    action: "request.cancel",
                    result: "cancelled",
                },
                None,
            )
            .await?;
    }
    Ok((ended, closed))
}
