//! Federated identities (which provider and subject a user signs in as, and the groups the
//! provider listed last time) and the rules that turn IdP groups into roles.

use super::{NewLogEntry, NewUser, Result, Store, StoreError, StoredUser, WriteTx, new_id};
use crate::domain::sso::GroupRule;
use crate::domain::{Role, RoleAssignment, Scope};
use sqlx::Row;
use sqlx::any::AnyRow;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredIdentity {
    pub user_id: String,
    pub provider: String,
    pub subject: String,
    pub email: String,
    pub groups: Vec<String>,
    pub last_sign_in_at: i64,
}

/// What a sign-in learnt about the user from the provider.
#[derive(Debug, Clone)]
pub struct FederatedProfile<'a> {
    pub provider: &'a str,
    pub subject: &'a str,
    pub email: &'a str,
    pub display_name: &'a str,
    pub groups: &'a [String],
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredGroupRule {
    pub id: String,
    pub rule: GroupRule,
}

pub(super) const IDENTITY_COLUMNS: &str =
    "user_id, provider, subject, email, idp_groups, last_sign_in_at";

pub(super) fn identity_from_row(row: &AnyRow) -> Result<StoredIdentity> {
    let groups: String = row.try_get("idp_groups")?;
    Ok(StoredIdentity {
        user_id: row.try_get("user_id")?,
        provider: row.try_get("provider")?,
        subject: row.try_get("subject")?,
        email: row.try_get("email")?,
        groups: serde_json::from_str(&groups)
            .map_err(|_| StoreError::Corrupt("identity groups".into()))?,
        last_sign_in_at: row.try_get("last_sign_in_at")?,
    })
}

pub(super) const RULE_COLUMNS: &str = "id, provider, idp_group, role, scope_kind, scope_target";

pub(super) fn rule_from_row(row: &AnyRow) -> Result<StoredGroupRule> {
    let role: String = row.try_get("role")?;
    let kind: String = row.try_get("scope_kind")?;
    let target: String = row.try_get("scope_target")?;
    Ok(StoredGroupRule {
        id: row.try_get("id")?,
        rule: GroupRule {
            provider: row.try_get("provider")?,
            group: row.try_get("idp_group")?,
            assignment: RoleAssignment {
                role: Role::parse(&role)
                    .map_err(|_| StoreError::Corrupt(format!("role {role}")))?,
                scope: Scope::parse(&kind, &target)
                    .map_err(|_| StoreError::Corrupt(format!("scope {kind}")))?,
            },
        },
    })
}

fn groups_json(groups: &[String]) -> String {
    serde_json::to_string(groups).unwrap_or_else(|_| "[]".into())
}

impl Store {
    pub async fn find_identity(
        &self,
        provider: &str,
        subject: &str,
    ) -> Result<Option<StoredIdentity>> {
        let sql = format!(
            "SELECT {IDENTITY_COLUMNS} FROM user_identities WHERE provider = $1 AND subject = $2"
        );
        let row = sqlx::query(&sql)
            .bind(provider)
            .bind(subject)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(identity_from_row).transpose()
    }

    pub async fn identity_of(&self, user_id: &str) -> Result<Option<StoredIdentity>> {
        let sql = format!("SELECT {IDENTITY_COLUMNS} FROM user_identities WHERE user_id = $1");
        let row = sqlx::query(&sql)
            .bind(user_id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(identity_from_row).transpose()
    }

    pub async fn list_identities(&self) -> Result<Vec<StoredIdentity>> {
        let sql = format!("SELECT {IDENTITY_COLUMNS} FROM user_identities ORDER BY user_id");
        let rows = sqlx::query(&sql).fetch_all(&self.pool).await?;
        rows.iter().map(identity_from_row).collect()
    }

    /// Creates a password-less user linked to the profile's (provider, subject), and logs
    /// the sign-in, in one transaction. `Duplicate` when the user name is taken or the
    /// identity was linked meanwhile by a concurrent first sign-in.
    pub async fn create_federated_user(
        &self,
        username: &str,
        profile: &FederatedProfile<'_>,
        log: NewLogEntry,
    ) -> Result<StoredUser> {
        let id = new_id();
        let user = NewUser {
            username,
            display_name: profile.display_name,
            password_hash: None,
            must_change_password: false,
        };
        let mut tx = self.begin_write().await?;
        let now = tx.now;
        sqlx::query(
            "INSERT INTO users (id, username, display_name, password_hash, must_change_password, \
             disabled, created_at, updated_at) VALUES ($1, $2, $3, NULL, 0, 0, $4, $4)",
        )
        .bind(&id)
        .bind(user.username)
        .bind(user.display_name)
        .bind(now)
        .execute(&mut *tx.tx)
        .await
        .map_err(StoreError::from_write)?;
        sqlx::query(
            "INSERT INTO user_identities (user_id, provider, subject, email, idp_groups, \
             created_at, last_sign_in_at) VALUES ($1, $2, $3, $4, $5, $6, $6)",
        )
        .bind(&id)
        .bind(profile.provider)
        .bind(profile.subject)
        .bind(profile.email)
        .bind(groups_json(profile.groups))
        .bind(now)
        .execute(&mut *tx.tx)
        .await
        .map_err(StoreError::from_write)?;
        tx.log(log).await?;
        tx.commit().await?;
        Ok(StoredUser {
            id,
            username: username.to_owned(),
            display_name: profile.display_name.to_owned(),
            password_hash: None,
            must_change_password: false,
            disabled: false,
            created_at: now,
            session_epoch: 0,
        })
    }

    pub async fn list_group_rules(&self) -> Result<Vec<StoredGroupRule>> {
        let sql = format!(
            "SELECT {RULE_COLUMNS} FROM group_role_rules \
             ORDER BY provider, idp_group, role, scope_kind, scope_target"
        );
        let rows = sqlx::query(&sql).fetch_all(&self.pool).await?;
        rows.iter().map(rule_from_row).collect()
    }

    pub async fn group_rules_for(&self, provider: &str) -> Result<Vec<StoredGroupRule>> {
        let sql = format!(
            "SELECT {RULE_COLUMNS} FROM group_role_rules WHERE provider = $1 \
             ORDER BY idp_group, role, scope_kind, scope_target"
        );
        let rows = sqlx::query(&sql)
            .bind(provider)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(rule_from_row).collect()
    }

    /// `Duplicate` when the same rule exists.
    pub async fn add_group_rule(&self, rule: &GroupRule, log: NewLogEntry) -> Result<String> {
        let id = new_id();
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "INSERT INTO group_role_rules (id, provider, idp_group, role, scope_kind, \
             scope_target, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&id)
        .bind(&rule.provider)
        .bind(&rule.group)
        .bind(rule.assignment.role.as_str())
        .bind(rule.assignment.scope.kind())
        .bind(rule.assignment.scope.target())
        .bind(tx.now)
        .execute(&mut *tx.tx)
        .await
        .map_err(StoreError::from_write)?;
        tx.log(log).await?;
        tx.commit().await?;
        Ok(id)
    }
}

impl WriteTx {
    /// Refreshes what the provider says about an existing federated user (name, email,
    /// groups). The groups count for the user's roles from this transaction on.
    pub async fn update_federated_user(
        &mut self,
        user_id: &str,
        profile: &FederatedProfile<'_>,
    ) -> Result<()> {
        sqlx::query("UPDATE users SET display_name = $1, updated_at = $2 WHERE id = $3")
            .bind(profile.display_name)
            .bind(self.now)
            .bind(user_id)
            .execute(&mut *self.tx)
            .await?;
        sqlx::query(
            "UPDATE user_identities SET email = $1, idp_groups = $2, last_sign_in_at = $3 \
             WHERE user_id = $4",
        )
        .bind(profile.email)
        .bind(groups_json(profile.groups))
        .bind(self.now)
        .bind(user_id)
        .execute(&mut *self.tx)
        .await?;
        Ok(())
    }

    /// Removes a group rule; `None` when there was no such rule.
    pub async fn remove_group_rule(&mut self, id: &str) -> Result<Option<StoredGroupRule>> {
        let sql = format!("SELECT {RULE_COLUMNS} FROM group_role_rules WHERE id = $1");
        let Some(row) = sqlx::query(&sql)
            .bind(id)
            .fetch_optional(&mut *self.tx)
            .await?
        else {
            return Ok(None);
        };
        let found = rule_from_row(&row)?;
        sqlx::query("DELETE FROM group_role_rules WHERE id = $1")
            .bind(id)
            .execute(&mut *self.tx)
            .await?;
        Ok(Some(found))
    }
}
