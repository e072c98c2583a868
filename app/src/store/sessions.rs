//! Sessions live in the database so that a restart keeps users signed in and several
//! server replicas share them. The cookie carries only the (signed) session id.
//!
//! Session expiry is set by tower-sessions from the system clock, so it is compared with
//! the system clock here, not with the store's (injectable) clock.

use super::{Clock, Store, SystemClock};
use async_trait::async_trait;
use sqlx::Row;
use tower_sessions::session::{Id, Record};
use tower_sessions::session_store::{self, SessionStore};

#[derive(Clone, Debug)]
pub struct SessionStoreAdapter(pub Store);

fn backend(e: impl std::fmt::Display) -> session_store::Error {
    session_store::Error::Backend(e.to_string())
}

impl Store {
    /// Removes sessions past their expiry. With several replicas, one does it at a time;
    /// the others skip this round (`Ok(0)`).
    pub async fn delete_expired_sessions(&self) -> super::Result<u64> {
        let Some(mut tx) = self.begin_job().await? else {
            return Ok(0);
        };
        let done = sqlx::query("DELETE FROM sessions WHERE expires_at < $1")
            .bind(SystemClock.now_ms())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(done.rows_affected())
    }

    /// How many stored sessions contain `text`: lets tests prove a secret never rests in
    /// the session table.
    pub async fn sessions_containing(&self, text: &str) -> super::Result<i64> {
        let literal = text
            .replace('\\', "\\\\")
            .replace('%', "\\%")
            .replace('_', "\\_");
        let row = sqlx::query("SELECT COUNT(*) AS n FROM sessions WHERE data LIKE $1 ESCAPE '\\'")
            .bind(format!("%{literal}%"))
            .fetch_one(&self.pool)
            .await?;
        Ok(row.try_get::<i64, _>("n")?)
    }

    pub async fn count_sessions(&self) -> super::Result<i64> {
        let row = sqlx::query("SELECT COUNT(*) AS n FROM sessions")
            .fetch_one(&self.pool)
            .await?;
        Ok(row.try_get::<i64, _>("n")?)
    }
}

fn expiry_ms(record: &Record) -> i64 {
    (record.expiry_date.unix_timestamp_nanos() / 1_000_000) as i64
}

#[async_trait]
impl SessionStore for SessionStoreAdapter {
    async fn create(&self, record: &mut Record) -> session_store::Result<()> {
        let data = serde_json::to_string(record)
            .map_err(|e| session_store::Error::Encode(e.to_string()))?;
        loop {
            let result =
                sqlx::query("INSERT INTO sessions (id, data, expires_at) VALUES ($1, $2, $3)")
                    .bind(record.id.to_string())
                    .bind(&data)
                    .bind(expiry_ms(record))
                    .execute(&self.0.pool)
                    .await;
            match result {
                Ok(_) => return Ok(()),
                // An id collision is astronomically unlikely, but a fresh id is the answer.
                Err(sqlx::Error::Database(db)) if db.is_unique_violation() => {
                    record.id = Id::default();
                }
                Err(e) => return Err(backend(e)),
            }
        }
    }

    async fn save(&self, record: &Record) -> session_store::Result<()> {
        let data = serde_json::to_string(record)
            .map_err(|e| session_store::Error::Encode(e.to_string()))?;
        let id = record.id.to_string();
        let updated = sqlx::query("UPDATE sessions SET data = $1, expires_at = $2 WHERE id = $3")
            .bind(&data)
            .bind(expiry_ms(record))
            .bind(&id)
            .execute(&self.0.pool)
            .await
            .map_err(backend)?;
        if updated.rows_affected() == 0 {
            sqlx::query("INSERT INTO sessions (id, data, expires_at) VALUES ($1, $2, $3)")
                .bind(&id)
                .bind(&data)
                .bind(expiry_ms(record))
                .execute(&self.0.pool)
                .await
                .map_err(backend)?;
        }
        Ok(())
    }

    async fn load(&self, session_id: &Id) -> session_store::Result<Option<Record>> {
        let row = sqlx::query("SELECT data FROM sessions WHERE id = $1 AND expires_at > $2")
            .bind(session_id.to_string())
            .bind(SystemClock.now_ms())
            .fetch_optional(&self.0.pool)
            .await
            .map_err(backend)?;
        match row {
            None => Ok(None),
            Some(row) => {
                let data: String = row.try_get("data").map_err(backend)?;
                serde_json::from_str(&data)
                    .map(Some)
                    .map_err(|e| session_store::Error::Decode(e.to_string()))
            }
        }
    }

    async fn delete(&self, session_id: &Id) -> session_store::Result<()> {
        sqlx::query("DELETE FROM sessions WHERE id = $1")
            .bind(session_id.to_string())
            .execute(&self.0.pool)
            .await
            .map_err(backend)?;
        Ok(())
    }
}
