//! The activity log: append-only, hash-chained, written in the transaction of the change
//! it records.

use super::{Result, Store, StoreError, WriteTx};
use crate::domain::audit::{ChainStatus, EntryContent, GENESIS, entry_hash, verify};
use sqlx::Row;
use sqlx::any::AnyRow;

/// What a caller records; sequence number, time and hashes are added on append.
#[derive(Debug, Clone, Default)]
pub struct NewLogEntry {
    pub actor: String,
    pub client_ip: String,
    pub action: String,
    pub vm: String,
    pub ports: String,
    pub source: String,
    pub justification: String,
    pub result: String,
    pub detail: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogEntry {
    pub content: EntryContent,
    pub prev_hash: String,
    pub hash: String,
}

#[derive(Debug, Clone, Default)]
pub struct LogQuery {
    pub vm: Option<String>,
    pub actor: Option<String>,
    pub action: Option<String>,
    pub from_ms: Option<i64>,
    pub to_ms: Option<i64>,
    pub offset: i64,
    pub limit: i64,
}

const COLUMNS: &str = "seq, at, actor, client_ip, action, vm, ports, source, justification, result, detail, prev_hash, hash";

fn from_row(row: &AnyRow) -> Result<LogEntry> {
    Ok(LogEntry {
        content: EntryContent {
            seq: row.try_get("seq")?,
            at: row.try_get("at")?,
            actor: row.try_get("actor")?,
            client_ip: row.try_get("client_ip")?,
            action: row.try_get("action")?,
            vm: row.try_get("vm")?,
            ports: row.try_get("ports")?,
            source: row.try_get("source")?,
            justification: row.try_get("justification")?,
            result: row.try_get("result")?,
            detail: row.try_get("detail")?,
        },
        prev_hash: row.try_get("prev_hash")?,
        hash: row.try_get("hash")?,
    })
}

impl WriteTx {
    /// Appends one entry after the current last one.
    pub async fn log(&mut self, entry: NewLogEntry) -> Result<()> {
        let last = sqlx::query("SELECT seq, hash FROM activity_log ORDER BY seq DESC LIMIT 1")
            .fetch_optional(&mut *self.tx)
            .await?;
        let (seq, prev) = match last {
            Some(row) => (
                row.try_get::<i64, _>("seq")? + 1,
                row.try_get::<String, _>("hash")?,
            ),
            None => (1, GENESIS.to_owned()),
        };
        let content = EntryContent {
            seq,
            at: self.now,
            actor: entry.actor,
            client_ip: entry.client_ip,
            action: entry.action,
            vm: entry.vm,
            ports: entry.ports,
            source: entry.source,
            justification: entry.justification,
            result: entry.result,
            detail: entry.detail,
        };
        let hash = entry_hash(&prev, &content);
        sqlx::query(
            "INSERT INTO activity_log (seq, at, actor, client_ip, action, vm, ports, source, \
             justification, result, detail, prev_hash, hash) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
        )
        .bind(content.seq)
        .bind(content.at)
        .bind(&content.actor)
        .bind(&content.client_ip)
        .bind(&content.action)
        .bind(&content.vm)
        .bind(&content.ports)
        .bind(&content.source)
        .bind(&content.justification)
        .bind(&content.result)
        .bind(&content.detail)
        .bind(&prev)
        .bind(&hash)
        .execute(&mut *self.tx)
        .await
        .map_err(StoreError::from_write)?;
        Ok(())
    }
}

fn push_filters(q: &LogQuery, sql: &mut String, binds: &mut Vec<Bind>) {
    let mut add = |clause: &str, b: Bind| {
        binds.push(b);
        sql.push_str(&format!(" AND {clause} ${}", binds.len()));
    };
    if let Some(vm) = &q.vm {
        add("vm =", Bind::Text(vm.clone()));
    }
    if let Some(actor) = &q.actor {
        add("actor =", Bind::Text(actor.clone()));
    }
    if let Some(action) = &q.action {
        add("action =", Bind::Text(action.clone()));
    }
    if let Some(from) = q.from_ms {
        add("at >=", Bind::Int(from));
    }
    if let Some(to) = q.to_ms {
        add("at <", Bind::Int(to));
    }
}

pub(crate) enum Bind {
    Text(String),
    Int(i64),
}

pub(crate) fn bind_all<'q>(
    mut query: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>,
    binds: &'q [Bind],
) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>> {
    for b in binds {
        query = match b {
            Bind::Text(s) => query.bind(s.as_str()),
            Bind::Int(i) => query.bind(*i),
        };
    }
    query
}

impl Store {
    /// Entries matching the filter, newest first, and how many match in all.
    pub async fn query_log(&self, q: &LogQuery) -> Result<(Vec<LogEntry>, i64)> {
        let mut filter = String::from(" WHERE 1 = 1");
        let mut binds = Vec::new();
        push_filters(q, &mut filter, &mut binds);
        let count_sql = format!("SELECT COUNT(*) AS n FROM activity_log{filter}");
        let total: i64 = bind_all(sqlx::query(&count_sql), &binds)
            .fetch_one(&self.pool)
            .await?
            .try_get("n")?;
        let sql = format!(
            "SELECT {COLUMNS} FROM activity_log{filter} ORDER BY seq DESC LIMIT {} OFFSET {}",
            q.limit.clamp(1, 10_000),
            q.offset.max(0)
        );
        let rows = bind_all(sqlx::query(&sql), &binds)
            .fetch_all(&self.pool)
            .await?;
        Ok((rows.iter().map(from_row).collect::<Result<_>>()?, total))
    }

    /// Recomputes the whole chain.
    pub async fn verify_log(&self) -> Result<ChainStatus> {
        let sql = format!("SELECT {COLUMNS} FROM activity_log ORDER BY seq");
        let rows = sqlx::query(&sql).fetch_all(&self.pool).await?;
        let entries = rows.iter().map(from_row).collect::<Result<Vec<_>>>()?;
        Ok(verify(entries.iter().map(|e| {
            (&e.content, e.prev_hash.as_str(), e.hash.as_str())
        })))
    }

    /// Records an event that changes nothing else (sign-in, refused attempts).
    pub async fn log_event(&self, entry: NewLogEntry) -> Result<()> {
        let mut tx = self.begin_write().await?;
        tx.log(entry).await?;
        tx.commit().await
    }

    /// Distinct actors and VMs in the log, for filter suggestions.
    pub async fn log_actions(&self) -> Result<Vec<String>> {
        let rows = sqlx::query("SELECT DISTINCT action FROM activity_log ORDER BY action")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| Ok(r.try_get::<String, _>("action")?))
            .collect()
    }

    #[doc(hidden)]
    /// Test support: rewrites one stored entry, as an attacker with database access would.
    pub async fn tamper_with_log_entry(&self, seq: i64, actor: &str) -> Result<()> {
        sqlx::query("UPDATE activity_log SET actor = $1 WHERE seq = $2")
            .bind(actor)
            .bind(seq)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}
