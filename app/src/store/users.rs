//! Users and their role assignments.

use super::audit::NewLogEntry;
use super::{Result, Store, StoreError, WriteTx, new_id};
use crate::domain::{Role, RoleAssignment, Scope};
use sqlx::Row;
use sqlx::any::AnyRow;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredUser {
    pub id: String,
    pub username: String,
    pub display_name: String,
    pub password_hash: Option<String>,
    pub must_change_password: bool,
    pub disabled: bool,
    pub created_at: i64,
    /// Moved forward by every password change or reset; a session started under an
    /// earlier epoch is no longer valid.
    pub session_epoch: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredAssignment {
    pub id: String,
    pub user_id: String,
    pub assignment: RoleAssignment,
}

pub struct NewUser<'a> {
    pub username: &'a str,
    pub display_name: &'a str,
    pub password_hash: Option<&'a str>,
    pub must_change_password: bool,
}

pub(super) const USER_COLUMNS: &str = "id, username, display_name, password_hash, must_change_password, \
     disabled, created_at, session_epoch";

pub(super) fn user_from_row(row: &AnyRow) -> Result<StoredUser> {
    Ok(StoredUser {
        id: row.try_get("id")?,
        username: row.try_get("username")?,
        display_name: row.try_get("display_name")?,
        password_hash: row.try_get("password_hash")?,
        must_change_password: row.try_get::<i64, _>("must_change_password")? != 0,
        disabled: row.try_get::<i64, _>("disabled")? != 0,
        created_at: row.try_get("created_at")?,
        session_epoch: row.try_get("session_epoch")?,
    })
}

/// A role assignment from its `role`, `scope_kind` and `scope_target` columns.
pub(super) fn role_from_row(row: &AnyRow) -> Result<RoleAssignment> {
    let role: String = row.try_get("role")?;
    let kind: String = row.try_get("scope_kind")?;
    let target: String = row.try_get("scope_target")?;
    Ok(RoleAssignment {
        role: Role::parse(&role).map_err(|_| StoreError::Corrupt(format!("role {role}")))?,
        scope: Scope::parse(&kind, &target)
            .map_err(|_| StoreError::Corrupt(format!("scope {kind}")))?,
    })
}

fn assignment_from_row(row: &AnyRow) -> Result<StoredAssignment> {
    Ok(StoredAssignment {
        id: row.try_get("id")?,
        user_id: row.try_get("user_id")?,
        assignment: role_from_row(row)?,
    })
}

impl Store {
    pub async fn count_users(&self) -> Result<i64> {
        let row = sqlx::query("SELECT COUNT(*) AS n FROM users")
            .fetch_one(&self.pool)
            .await?;
        Ok(row.try_get::<i64, _>("n")?)
    }

    /// Creates a user and, in the same transaction, its first role assignments and the
    /// log entry (none for a test fixture).
    pub async fn create_user(
        &self,
        user: &NewUser<'_>,
        roles: &[RoleAssignment],
        log: Option<NewLogEntry>,
    ) -> Result<StoredUser> {
        let id = new_id();
        let mut tx = self.begin_write().await?;
        let now = tx.now;
        sqlx::query(
            "INSERT INTO users (id, username, display_name, password_hash, must_change_password, \
             disabled, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, 0, $6, $6)",
        )
        .bind(&id)
        .bind(user.username)
        .bind(user.display_name)
        .bind(user.password_hash)
        .bind(i64::from(user.must_change_password))
        .bind(now)
        .execute(&mut *tx.tx)
        .await
        .map_err(StoreError::from_write)?;
        for role in roles {
            tx.add_assignment(&id, role).await?;
        }
        if let Some(log) = log {
            tx.log(log).await?;
        }
        tx.commit().await?;
        Ok(StoredUser {
            id,
            username: user.username.to_owned(),
            display_name: user.display_name.to_owned(),
            password_hash: user.password_hash.map(str::to_owned),
            must_change_password: user.must_change_password,
            disabled: false,
            created_at: now,
            session_epoch: 0,
        })
    }

    pub async fn find_user_by_username(&self, username: &str) -> Result<Option<StoredUser>> {
        let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE username = $1");
        let row = sqlx::query(&sql)
            .bind(username)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(user_from_row).transpose()
    }

    pub async fn get_user(&self, id: &str) -> Result<Option<StoredUser>> {
        let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE id = $1");
        let row = sqlx::query(&sql)
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(user_from_row).transpose()
    }

    pub async fn list_users(&self) -> Result<Vec<StoredUser>> {
        let sql = format!("SELECT {USER_COLUMNS} FROM users ORDER BY username");
        let rows = sqlx::query(&sql).fetch_all(&self.pool).await?;
        rows.iter().map(user_from_row).collect()
    }

    pub async fn assignments_of(&self, user_id: &str) -> Result<Vec<StoredAssignment>> {
        let rows = sqlx::query(
            "SELECT id, user_id, role, scope_kind, scope_target FROM role_assignments \
             WHERE user_id = $1 ORDER BY role, scope_kind, scope_target",
        )
        .bind(user_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(assignment_from_row).collect()
    }

    pub async fn all_assignments(&self) -> Result<Vec<StoredAssignment>> {
        let rows = sqlx::query(
            "SELECT id, user_id, role, scope_kind, scope_target FROM role_assignments \
             ORDER BY user_id, role, scope_kind, scope_target",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(assignment_from_row).collect()
    }
}

impl WriteTx {
    /// A user as this transaction sees it.
    pub async fn user(&mut self, id: &str) -> Result<Option<StoredUser>> {
        let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE id = $1");
        let row = sqlx::query(&sql)
            .bind(id)
            .fetch_optional(&mut *self.tx)
            .await?;
        row.as_ref().map(user_from_row).transpose()
    }

    /// Sets a new password hash and moves the session epoch forward, so that every
    /// session signed in before ends. False when no such user exists.
    pub async fn set_password(
        &mut self,
        user_id: &str,
        hash: &str,
        must_change: bool,
    ) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE users SET password_hash = $1, must_change_password = $2, updated_at = $3, \
             session_epoch = session_epoch + 1 WHERE id = $4",
        )
        .bind(hash)
        .bind(i64::from(must_change))
        .bind(self.now)
        .bind(user_id)
        .execute(&mut *self.tx)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    pub async fn set_disabled(&mut self, user_id: &str, disabled: bool) -> Result<bool> {
        let done = sqlx::query("UPDATE users SET disabled = $1, updated_at = $2 WHERE id = $3")
            .bind(i64::from(disabled))
            .bind(self.now)
            .bind(user_id)
            .execute(&mut *self.tx)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    /// `Duplicate` when the user already has this role in this scope.
    pub async fn add_assignment(&mut self, user_id: &str, role: &RoleAssignment) -> Result<String> {
        let id = new_id();
        sqlx::query(
            "INSERT INTO role_assignments (id, user_id, role, scope_kind, scope_target, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&id)
        .bind(user_id)
        .bind(role.role.as_str())
        .bind(role.scope.kind())
        .bind(role.scope.target())
        .bind(self.now)
        .execute(&mut *self.tx)
        .await
        .map_err(StoreError::from_write)?;
        Ok(id)
    }

    /// Removes an assignment unless it is the last admin-over-everything of an enabled
    /// user. Decided and written under the write lock, so two concurrent removals of the
    /// last two administrators cannot both pass.
    pub async fn remove_assignment(&mut self, assignment_id: &str) -> Result<RemoveOutcome> {
        let row = sqlx::query(
            "SELECT id, user_id, role, scope_kind, scope_target FROM role_assignments WHERE id = $1",
        )
        .bind(assignment_id)
        .fetch_optional(&mut *self.tx)
        .await?;
        let Some(row) = row else {
            return Ok(RemoveOutcome::NotFound);
        };
        let found = assignment_from_row(&row)?;
        let global_admin = found.assignment
            == RoleAssignment {
                role: Role::Admin,
                scope: Scope::All,
            };
        if global_admin
            && self
                .user(&found.user_id)
                .await?
                .is_some_and(|u| !u.disabled)
            && self.count_other_global_admins(&found.user_id).await? == 0
        {
            return Ok(RemoveOutcome::LastAdmin);
        }
        sqlx::query("DELETE FROM role_assignments WHERE id = $1")
            .bind(assignment_id)
            .execute(&mut *self.tx)
            .await?;
        Ok(RemoveOutcome::Removed(found))
    }

    /// Number of enabled users holding admin over everything, other than `except_user`.
    pub async fn count_other_global_admins(&mut self, except_user: &str) -> Result<i64> {
        let row = sqlx::query(
            "SELECT COUNT(*) AS n FROM role_assignments r JOIN users u ON u.id = r.user_id \
             WHERE r.role = 'admin' AND r.scope_kind = 'all' AND u.disabled = 0 AND u.id <> $1",
        )
        .bind(except_user)
        .fetch_one(&mut *self.tx)
        .await?;
        Ok(row.try_get::<i64, _>("n")?)
    }
}

#[derive(Debug, PartialEq, Eq)]
pub enum RemoveOutcome {
    Removed(StoredAssignment),
    NotFound,
    LastAdmin,
}
