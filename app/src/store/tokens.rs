//! Personal API tokens: stored as a hash with their owner, lifetime and use.

use super::audit::NewLogEntry;
use super::{Result, Store};
use sqlx::Row;
use sqlx::any::AnyRow;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredApiToken {
    pub id: String,
    pub user_id: String,
    pub name: String,
    pub prefix: String,
    pub token_hash: String,
    pub created_at: i64,
    pub expires_at: i64,
    pub last_used_at: Option<i64>,
    pub revoked_at: Option<i64>,
}

/// What a new token row holds; the caller hashed the secret.
pub struct NewApiToken<'a> {
    pub id: &'a str,
    pub user_id: &'a str,
    pub name: &'a str,
    pub prefix: &'a str,
    pub token_hash: &'a str,
    pub created_at: i64,
    pub expires_at: i64,
}

const TOKEN_COLUMNS: &str =
    "id, user_id, name, prefix, token_hash, created_at, expires_at, last_used_at, revoked_at";

fn token_from_row(row: &AnyRow) -> Result<StoredApiToken> {
    Ok(StoredApiToken {
        id: row.try_get("id")?,
        user_id: row.try_get("user_id")?,
        name: row.try_get("name")?,
        prefix: row.try_get("prefix")?,
        token_hash: row.try_get("token_hash")?,
        created_at: row.try_get("created_at")?,
        expires_at: row.try_get("expires_at")?,
        last_used_at: row.try_get("last_used_at")?,
        revoked_at: row.try_get("revoked_at")?,
    })
}

/// What became of a new token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenCreation {
    Created,
    /// The owner already has the most tokens in force allowed.
    TooMany,
    /// The owner already has an unrevoked token of that name.
    NameTaken,
}

impl Store {
    /// Stores a new token and its activity log entry in one transaction, unless its owner
    /// already has `max_live` unrevoked, unexpired ones, or an unrevoked one of the same
    /// name (both checked under the write lock, so concurrent creations cannot pass; the
    /// unique index `api_tokens_live_name` backs the second). Nothing is written then.
    pub async fn create_api_token(
        &self,
        t: &NewApiToken<'_>,
        max_live: i64,
        log: NewLogEntry,
    ) -> Result<TokenCreation> {
        let mut tx = self.begin_write().await?;
        let taken = sqlx::query(
            "SELECT id FROM api_tokens WHERE user_id = $1 AND name = $2 AND revoked_at IS NULL",
        )
        .bind(t.user_id)
        .bind(t.name)
        .fetch_optional(&mut *tx.tx)
        .await?;
        if taken.is_some() {
            return Ok(TokenCreation::NameTaken);
        }
        let live: i64 = sqlx::query(
            "SELECT COUNT(*) AS live FROM api_tokens \
             WHERE user_id = $1 AND revoked_at IS NULL AND expires_at > $2",
        )
        .bind(t.user_id)
        .bind(t.created_at)
        .fetch_one(&mut *tx.tx)
        .await?
        .try_get("live")?;
        if live >= max_live {
            return Ok(TokenCreation::TooMany);
        }
        sqlx::query(
            "INSERT INTO api_tokens (id, user_id, name, prefix, token_hash, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(t.id)
        .bind(t.user_id)
        .bind(t.name)
        .bind(t.prefix)
        .bind(t.token_hash)
        .bind(t.created_at)
        .bind(t.expires_at)
        .execute(&mut *tx.tx)
        .await?;
        tx.log(log).await?;
        tx.commit().await?;
        Ok(TokenCreation::Created)
    }

    pub async fn get_api_token(&self, id: &str) -> Result<Option<StoredApiToken>> {
        let sql = format!("SELECT {TOKEN_COLUMNS} FROM api_tokens WHERE id = $1");
        let row = sqlx::query(&sql)
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(token_from_row).transpose()
    }

    /// A user's tokens, newest first.
    pub async fn list_api_tokens(&self, user_id: &str) -> Result<Vec<StoredApiToken>> {
        let sql = format!(
            "SELECT {TOKEN_COLUMNS} FROM api_tokens WHERE user_id = $1 ORDER BY created_at DESC, id LIMIT 500"
        );
        let rows = sqlx::query(&sql)
            .bind(user_id)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(token_from_row).collect()
    }

    /// Every user's tokens still in force, with their owner's user name, for the
    /// administrators' list: by owner, newest first.
    pub async fn list_live_api_tokens(&self, now: i64) -> Result<Vec<(StoredApiToken, String)>> {
        // The owner's name by subquery, so the token columns need no table prefix.
        let sql = format!(
            "SELECT {TOKEN_COLUMNS}, \
             (SELECT u.username FROM users u WHERE u.id = api_tokens.user_id) AS username \
             FROM api_tokens WHERE revoked_at IS NULL AND expires_at > $1 \
             ORDER BY username, created_at DESC, id LIMIT 2000"
        );
        let rows = sqlx::query(&sql).bind(now).fetch_all(&self.pool).await?;
        rows.iter()
            .map(|r| Ok((token_from_row(r)?, r.try_get("username")?)))
            .collect()
    }

    /// Revokes one of the user's live tokens. False when there is no such live token.
    pub async fn revoke_api_token(
        &self,
        id: &str,
        user_id: &str,
        now: i64,
        log: NewLogEntry,
    ) -> Result<bool> {
        let mut tx = self.begin_write().await?;
        let done = sqlx::query(
            "UPDATE api_tokens SET revoked_at = $1 WHERE id = $2 AND user_id = $3 AND revoked_at IS NULL",
        )
        .bind(now)
        .bind(id)
        .bind(user_id)
        .execute(&mut *tx.tx)
        .await?
        .rows_affected()
            == 1;
        if done {
            tx.log(log).await?;
            tx.commit().await?;
        }
        Ok(done)
    }

    /// Notes that a token was used. Callers throttle this so that reads stay reads. It
    /// takes the write lock like every write: on SQLite an unserialised write could make
    /// a concurrent write transaction fail on a stale snapshot.
    pub async fn touch_api_token(&self, id: &str, now: i64) -> Result<()> {
        let mut tx = self.begin_write().await?;
        sqlx::query("UPDATE api_tokens SET last_used_at = $1 WHERE id = $2")
            .bind(now)
            .bind(id)
            .execute(&mut *tx.tx)
            .await?;
        tx.commit().await
    }
}

impl Store {
    #[doc(hidden)]
    /// Test support: moves a token's expiry, as time passing would.
    pub async fn set_api_token_expiry(&self, id: &str, expires_at: i64) -> Result<()> {
        let mut tx = self.begin_write().await?;
        sqlx::query("UPDATE api_tokens SET expires_at = $1 WHERE id = $2")
            .bind(expires_at)
            .bind(id)
            .execute(&mut *tx.tx)
            .await?;
        tx.commit().await
    }
}
