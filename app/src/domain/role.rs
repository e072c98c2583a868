//! Roles, their scopes, and the one function that decides whether a user may do something.
//!
//! Every server function and API endpoint asks [`permits`]; nothing else in the code base
//! decides permissions, so the matrix tested here is the matrix in force.

use serde::{Deserialize, Serialize};
use thiserror::Error;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Role {
    Reader,
    Requester,
    Approver,
    Admin,
}

impl Role {
    pub const ALL: [Role; 4] = [Role::Reader, Role::Requester, Role::Approver, Role::Admin];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Reader => "reader",
            Role::Requester => "requester",
            Role::Approver => "approver",
            Role::Admin => "admin",
        }
    }

    pub fn parse(raw: &str) -> Result<Self, ScopeError> {
        match raw.trim().to_ascii_lowercase().as_str() {
            "reader" => Ok(Role::Reader),
            "requester" => Ok(Role::Requester),
            "approver" => Ok(Role::Approver),
            "admin" => Ok(Role::Admin),
            _ => Err(ScopeError::UnknownRole),
        }
    }

    /// The actions a role allows within its scope. Each role includes the ones below it:
    /// approvers may also request, admins may do everything.
    fn allows(self, action: Action) -> bool {
        use Action::*;
        match self {
            Role::Reader => matches!(action, ViewVm | ViewActivityLog),
            Role::Requester => matches!(action, ViewVm | ViewActivityLog | RequestAccess),
            Role::Approver => {
                matches!(
                    action,
                    ViewVm | ViewActivityLog | RequestAccess | ApproveRequest
                )
            }
            Role::Admin => true,
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a role assignment applies: everywhere, to every VM of a group, or to one VM
/// (by id, so that renaming a VM keeps its roles and a name never matches by accident).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Scope {
    All,
    Group(String),
    Vm(String),
}

/// A scope as an administrator names it in a form: a VM by its name. The service looks
/// the name (or the group) up and refuses one that matches nothing, then stores
/// [`Scope::Vm`] with the VM's id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScopeInput {
    All,
    Group(String),
    VmNamed(String),
}

impl ScopeInput {
    pub fn parse(kind: &str, target: &str) -> Result<Self, ScopeError> {
        Ok(match Scope::parse(kind, target)? {
            Scope::All => ScopeInput::All,
            Scope::Group(g) => ScopeInput::Group(g),
            Scope::Vm(name) => ScopeInput::VmNamed(name),
        })
    }
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum ScopeError {
    #[error("Choose one of reader, requester, approver, admin.")]
    UnknownRole,
    #[error("Choose all, group or vm.")]
    UnknownKind,
    #[error("Name the group or VM this scope applies to.")]
    MissingTarget,
    #[error("A scope target has at most 100 characters.")]
    TooLong,
}

impl Scope {
    pub fn parse(kind: &str, target: &str) -> Result<Self, ScopeError> {
        let target = target.trim();
        if target.chars().count() > 100 {
            return Err(ScopeError::TooLong);
        }
        match kind.trim().to_ascii_lowercase().as_str() {
            "all" => Ok(Scope::All),
            "group" if target.is_empty() => Err(ScopeError::MissingTarget),
            "group" => Ok(Scope::Group(target.to_owned())),
            "vm" if target.is_empty() => Err(ScopeError::MissingTarget),
            "vm" => Ok(Scope::Vm(target.to_owned())),
            _ => Err(ScopeError::UnknownKind),
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            Scope::All => "all",
            Scope::Group(_) => "group",
            Scope::Vm(_) => "vm",
        }
    }

    pub fn target(&self) -> &str {
        match self {
            Scope::All => "",
            Scope::Group(g) | Scope::Vm(g) => g,
        }
    }

    fn covers(&self, resource: &Resource) -> bool {
        match (self, resource) {
            (Scope::All, _) => true,
            (Scope::Group(g), Resource::Vm { group, .. }) => g == group,
            (Scope::Vm(v), Resource::Vm { id, .. }) => v == id,
            (_, Resource::Global) => false,
        }
    }
}

impl std::fmt::Display for Scope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Scope::All => f.write_str("all"),
            Scope::Group(g) => write!(f, "group {g}"),
            Scope::Vm(v) => write!(f, "VM {v}"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct RoleAssignment {
    pub role: Role,
    pub scope: Scope,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    ViewVm,
    ViewActivityLog,
    RequestAccess,
    ApproveRequest,
    ConfigurePolicy,
    ManageVm,
    ManageUsers,
}

impl Action {
    pub const ALL: [Action; 7] = [
        Action::ViewVm,
        Action::ViewActivityLog,
        Action::RequestAccess,
        Action::ApproveRequest,
        Action::ConfigurePolicy,
        Action::ManageVm,
        Action::ManageUsers,
    ];
}

/// What an action is done to: one VM (with its group), or the portal as a whole (users,
/// the full activity log, the VM inventory).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resource {
    Global,
    Vm { id: String, group: String },
}

/// May a user holding `assignments` do `action` on `resource`?
pub fn permits(assignments: &[RoleAssignment], action: Action, resource: &Resource) -> bool {
    assignments
        .iter()
        .any(|a| a.role.allows(action) && a.scope.covers(resource))
}

/// Where a user may see VMs: everything, or these groups and VM ids. Every role can view
/// within its scope, so this is the union of the user's scopes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Visibility {
    pub everything: bool,
    pub groups: Vec<String>,
    pub vm_ids: Vec<String>,
}

pub fn visibility(assignments: &[RoleAssignment], action: Action) -> Visibility {
    let mut v = Visibility::default();
    for a in assignments.iter().filter(|a| a.role.allows(action)) {
        match &a.scope {
            Scope::All => v.everything = true,
            Scope::Group(g) if !v.groups.contains(g) => v.groups.push(g.clone()),
            Scope::Vm(id) if !v.vm_ids.contains(id) => v.vm_ids.push(id.clone()),
            _ => {}
        }
    }
    v
}

/// Approval is the one action that also depends on who asked: nobody approves their own
/// request, whatever their roles.
pub fn permits_approval(
    assignments: &[RoleAssignment],
    resource: &Resource,
    approver_id: &str,
    requester_id: &str,
) -> bool {
    approver_id != requester_id && permits(assignments, Action::ApproveRequest, resource)
}

#[cfg(test)]
mod tests {
    use super::*;
    use Action::*;

    fn vm() -> Resource {
        Resource::Vm {
            id: "vm-1".into(),
            group: "prod".into(),
        }
    }

    fn other_vm() -> Resource {
        Resource::Vm {
            id: "vm-2".into(),
            group: "dev".into(),
        }
    }

    fn assigned(role: Role, scope: Scope) -> Vec<RoleAssignment> {
        vec![RoleAssignment { role, scope }]
    }

    /// The whole matrix, written out so that a change to any cell is a visible diff.
    #[test]
    fn every_role_times_every_action_at_all_scope() {
        let expected: [(Role, [bool; 7]); 4] = [
            //                 view   log    req    appr   policy vm     users
            (
                Role::Reader,
                [true, true, false, false, false, false, false],
            ),
            (
                Role::Requester,
                [true, true, true, false, false, false, false],
            ),
            (
                Role::Approver,
                [true, true, true, true, false, false, false],
            ),
            (Role::Admin, [true, true, true, true, true, true, true]),
        ];
        for (role, row) in expected {
            let a = assigned(role, Scope::All);
            for (action, allowed) in Action::ALL.into_iter().zip(row) {
                assert_eq!(
                    permits(&a, action, &vm()),
                    allowed,
                    "{role} {action:?} on a VM"
                );
                assert_eq!(
                    permits(&a, action, &Resource::Global),
                    allowed,
                    "{role} {action:?} globally"
                );
            }
        }
    }

    #[test]
    fn group_and_vm_scopes_cover_only_their_vms_and_never_global() {
        for role in Role::ALL {
            for scope in [Scope::Group("prod".into()), Scope::Vm("vm-1".into())] {
                let a = assigned(role, scope.clone());
                for action in Action::ALL {
                    let in_scope = role.allows(action);
                    assert_eq!(
                        permits(&a, action, &vm()),
                        in_scope,
                        "{role} {scope} {action:?}"
                    );
                    assert!(
                        !permits(&a, action, &other_vm()),
                        "{role} {scope} {action:?} other VM"
                    );
                    assert!(
                        !permits(&a, action, &Resource::Global),
                        "{role} {scope} {action:?} global"
                    );
                }
            }
        }
    }

    #[test]
    fn no_assignment_allows_nothing() {
        for action in Action::ALL {
            assert!(!permits(&[], action, &vm()));
            assert!(!permits(&[], action, &Resource::Global));
        }
    }

    #[test]
    fn assignments_combine() {
        let a = vec![
            RoleAssignment {
                role: Role::Reader,
                scope: Scope::All,
            },
            RoleAssignment {
                role: Role::Admin,
                scope: Scope::Vm("vm-2".into()),
            },
        ];
        assert!(permits(&a, ManageVm, &other_vm()));
        assert!(!permits(&a, ManageVm, &vm()));
        assert!(permits(&a, ViewVm, &vm()));
    }

    #[test]
    fn visibility_is_the_union_of_scopes_for_the_action() {
        let a = vec![
            RoleAssignment {
                role: Role::Reader,
                scope: Scope::Group("prod".into()),
            },
            RoleAssignment {
                role: Role::Approver,
                scope: Scope::Vm("vm-9".into()),
            },
        ];
        let view = visibility(&a, ViewVm);
        assert!(!view.everything);
        assert_eq!(view.groups, vec!["prod".to_owned()]);
        assert_eq!(view.vm_ids, vec!["vm-9".to_owned()]);
        let approve = visibility(&a, ApproveRequest);
        assert!(approve.groups.is_empty());
        assert_eq!(approve.vm_ids, vec!["vm-9".to_owned()]);
        assert!(
            visibility(
                &[RoleAssignment {
                    role: Role::Reader,
                    scope: Scope::All
                }],
                ViewVm
            )
            .everything
        );
    }

    #[test]
    fn nobody_approves_their_own_request() {
        for role in Role::ALL {
            let a = assigned(role, Scope::All);
            let can = role.allows(ApproveRequest);
            assert_eq!(permits_approval(&a, &vm(), "u1", "u2"), can, "{role}");
            assert!(
                !permits_approval(&a, &vm(), "u1", "u1"),
                "{role} self-approval"
            );
        }
    }

    #[test]
    fn scopes_parse_with_field_messages() {
        assert_eq!(Scope::parse("all", "ignored"), Ok(Scope::All));
        assert_eq!(
            Scope::parse("group", " prod "),
            Ok(Scope::Group("prod".into()))
        );
        assert_eq!(Scope::parse("vm", ""), Err(ScopeError::MissingTarget));
        assert_eq!(Scope::parse("planet", "x"), Err(ScopeError::UnknownKind));
        assert_eq!(Role::parse("Admin"), Ok(Role::Admin));
        assert_eq!(Role::parse("root"), Err(ScopeError::UnknownRole));
    }
}
