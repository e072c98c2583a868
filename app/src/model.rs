//! The shapes that cross the wire between server functions and pages. They are views
//! built from domain values, never store rows.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoleView {
    pub id: String,
    pub role: String,
    pub scope: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserView {
    pub id: String,
    pub username: String,
    pub display_name: String,
    pub must_change_password: bool,
    pub roles: Vec<RoleView>,
    /// Precomputed so that pages show or hide admin navigation without their own rules.
    /// Hiding is cosmetic: every server function checks again.
    pub can_manage_users: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserRow {
    pub id: String,
    pub username: String,
    pub display_name: String,
    pub disabled: bool,
    pub must_change_password: bool,
    pub roles: Vec<RoleView>,
}

#[cfg(feature = "ssr")]
mod ssr {
    use super::*;
    use crate::domain::{Action, Resource, RoleAssignment, permits};
    use crate::store::{StoredAssignment, StoredUser};

    impl From<&StoredAssignment> for RoleView {
        fn from(a: &StoredAssignment) -> Self {
            RoleView {
                id: a.id.clone(),
                role: a.assignment.role.as_str().to_owned(),
                scope: a.assignment.scope.to_string(),
            }
        }
    }

    impl UserView {
        pub fn new(user: &StoredUser, assignments: &[StoredAssignment]) -> Self {
            let roles: Vec<RoleAssignment> =
                assignments.iter().map(|a| a.assignment.clone()).collect();
            UserView {
                id: user.id.clone(),
                username: user.username.clone(),
                display_name: user.display_name.clone(),
                must_change_password: user.must_change_password,
                roles: assignments.iter().map(RoleView::from).collect(),
                can_manage_users: permits(&roles, Action::ManageUsers, &Resource::Global),
            }
        }
    }
}
