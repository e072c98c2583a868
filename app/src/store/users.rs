//! Users and their role assignments.

use super::{Result, Store, StoreError, new_id, now_ms};
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

const USER_COLUMNS: &str =
    "id, username, display_name, password_hash, must_change_password, disabled, created_at";

fn user_from_row(row: &AnyRow) -> Result<StoredUser> {
    Ok(StoredUser {
        id: row.try_get("id")?,
        username: row.try_get("username")?,
        display_name: row.try_get("display_name")?,
        password_hash: row.try_get("password_hash")?,
        must_change_password: row.try_get::<i64, _>("must_change_password")? != 0,
        disabled: row.try_get::<i64, _>("disabled")? != 0,
        created_at: row.try_get("created_at")?,
    })
}

fn assignment_from_row(row: &AnyRow) -> Result<StoredAssignment> {
    let role: String = row.try_get("role")?;
    let kind: String = row.try_get("scope_kind")?;
    let target: String = row.try_get("scope_target")?;
    Ok(StoredAssignment {
        id: row.try_get("id")?,
        user_id: row.try_get("user_id")?,
        assignment: RoleAssignment {
            role: Role::parse(&role).map_err(|_| StoreError::Corrupt(format!("role {role}")))?,
            scope: Scope::parse(&kind, &target)
                .map_err(|_| StoreError::Corrupt(format!("scope {kind}")))?,
        },
    })
}

impl Store {
    pub async fn count_users(&self) -> Result<i64> {
        let row = sqlx::query("SELECT COUNT(*) AS n FROM users")
            .fetch_one(&self.pool)
            .await?;
        Ok(row.try_get::<i64, _>("n")?)
    }

    /// Creates a user and, in the same transaction, its first role assignments.
    pub async fn create_user(
        &self,
        user: &NewUser<'_>,
        roles: &[RoleAssignment],
    ) -> Result<StoredUser> {
        let id = new_id();
        let now = now_ms();
        let mut tx = self.pool.begin().await?;
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
        .execute(&mut *tx)
        .await
        .map_err(StoreError::from_write)?;
        for role in roles {
            insert_assignment(&mut tx, &id, role).await?;
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

    /// Returns false when no such user exists.
    pub async fn set_password(&self, user_id: &str, hash: &str, must_change: bool) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE users SET password_hash = $1, must_change_password = $2, updated_at = $3 \
             WHERE id = $4",
        )
        .bind(hash)
        .bind(i64::from(must_change))
        .bind(now_ms())
        .bind(user_id)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    pub async fn set_disabled(&self, user_id: &str, disabled: bool) -> Result<bool> {
        let done = sqlx::query("UPDATE users SET disabled = $1, updated_at = $2 WHERE id = $3")
            .bind(i64::from(disabled))
            .bind(now_ms())
            .bind(user_id)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
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

    pub async fn add_assignment(&self, user_id: &str, role: &RoleAssignment) -> Result<String> {
        let mut tx = self.pool.begin().await?;
        let id = insert_assignment(&mut tx, user_id, role).await?;
        tx.commit().await?;
        Ok(id)
    }

    /// Removes an assignment unless it is the last admin-for-all of an enabled user, so
    /// the portal can never lock out every administrator. Returns false if nothing matched.
    pub async fn remove_assignment(&self, assignment_id: &str) -> Result<RemoveOutcome> {
        let mut tx = self.pool.begin().await?;
        let row = sqlx::query(
            "SELECT id, user_id, role, scope_kind, scope_target FROM role_assignments WHERE id = $1",
        )
        .bind(assignment_id)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else {
            return Ok(RemoveOutcome::NotFound);
        };
        let found = assignment_from_row(&row)?;
        if found.assignment
            == (RoleAssignment {
                role: Role::Admin,
                scope: Scope::All,
            })
        {
            let admins = sqlx::query(
                "SELECT COUNT(*) AS n FROM role_assignments r JOIN users u ON u.id = r.user_id \
                 WHERE r.role = 'admin' AND r.scope_kind = 'all' AND u.disabled = 0",
            )
            .fetch_one(&mut *tx)
            .await?
            .try_get::<i64, _>("n")?;
            if admins <= 1 {
                return Ok(RemoveOutcome::LastAdmin);
            }
        }
        sqlx::query("DELETE FROM role_assignments WHERE id = $1")
            .bind(assignment_id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(RemoveOutcome::Removed(found))
    }

    /// Number of enabled users holding admin over everything, other than `except_user`.
    pub async fn count_other_global_admins(&self, except_user: &str) -> Result<i64> {
        let row = sqlx::query(
            "SELECT COUNT(*) AS n FROM role_assignments r JOIN users u ON u.id = r.user_id \
             WHERE r.role = 'admin' AND r.scope_kind = 'all' AND u.disabled = 0 AND u.id <> $1",
        )
        .bind(except_user)
        .fetch_one(&self.pool)
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

async fn insert_assignment(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    user_id: &str,
    role: &RoleAssignment,
) -> Result<String> {
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
    .bind(now_ms())
    .execute(&mut **tx)
    .await
    .map_err(StoreError::from_write)?;
    Ok(id)
}
