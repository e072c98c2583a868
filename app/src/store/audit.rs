//! The activity log: append-only, hash-chained, each entry with an HMAC under a key kept
//! outside the database, written in the transaction of the change it records.
//!
//! Verification is incremental: a signed checkpoint remembers how far the chain was
//! verified, and each round checks only what came after it, in batches on the store's
//! small reports pool. Reading a page of the log reads that page and the stored outcome,
//! never the chain.

use super::{Backend, ROWS_PER_STATEMENT, Result, Store, StoreError, WriteTx, placeholders};
use crate::domain::audit::{
    Break, Checkpoint, EntryContent, GENESIS, Stored, entry_hash, verify_segment,
};
use sqlx::Row;
use sqlx::any::AnyRow;

/// Entries read per query when verifying or exporting.
pub const BATCH: i64 = 1000;

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
    pub mac: String,
}

/// The outcome of the latest verification, as the log page and the API show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditStatus {
    pub ok: bool,
    /// Entries up to here verified.
    pub verified_seq: i64,
    pub message: String,
    pub checked_at: i64,
}

/// What a verification round found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verification {
    /// Verified up to this position.
    Verified(Checkpoint),
    Broken(Break),
}

#[derive(Debug, Clone, Default)]
pub struct LogQuery {
    /// Entries whose VM name starts with this, ignoring the case of ASCII letters.
    pub vm: Option<String>,
    /// Entries whose actor starts with this, ignoring the case of ASCII letters.
    pub actor: Option<String>,
    /// `vm` names the whole VM name (case ignored), not its start.
    pub vm_exact: bool,
    /// `actor` names the whole actor (case ignored), not its start.
    pub actor_exact: bool,
    /// Entries of exactly this action.
    pub action: Option<String>,
    pub from_ms: Option<i64>,
    pub to_ms: Option<i64>,
    pub offset: i64,
    pub limit: i64,
    /// Only entries before this position (for reading the log in batches, newest first).
    pub before_seq: Option<i64>,
}

/// What the log's filters can be completed with: names that occur in the log, in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogSuggestions {
    /// VM names starting with the prefix asked for (case ignored), at most the limit.
    pub vms: Vec<String>,
    /// Actors starting with the prefix asked for (case ignored), at most the limit.
    pub actors: Vec<String>,
    /// Every action in the log, up to [`MAX_ACTIONS`].
    pub actions: Vec<String>,
}

/// The most distinct actions [`Store::log_suggestions`] reads; the product writes about
/// fifty kinds.
pub const MAX_ACTIONS: usize = 200;

/// The most VM or user names one suggestion list holds.
const MAX_NAMES: usize = 500;

/// A column of the log whose names the activity page suggests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogName {
    Vm,
    Actor,
}

impl LogName {
    fn column(self) -> &'static str {
        match self {
            LogName::Vm => "vm",
            LogName::Actor => "actor",
        }
    }
}

/// The bounds of a prefix match on a lower-cased column, as a range `[low, high)` in
/// code point (byte) order: "web" is `["web", "wec")`. A range, not `LIKE`, so that
/// wildcards typed by the user are plain characters and both backends read an index
/// (PostgreSQL's `LIKE` reads a btree only under the C collation, and a prepared statement's
/// generic plan never). `None` for `high` when no string bounds it (a prefix of U+10FFFF).
pub fn prefix_range(prefix: &str) -> (String, Option<String>) {
    // SQLite's lower() folds ASCII letters only: fold the prefix the same way on both.
    let low = prefix.to_ascii_lowercase();
    let mut chars: Vec<char> = low.chars().collect();
    while let Some(last) = chars.pop() {
        let next = match last {
            '\u{D7FF}' => Some('\u{E000}'),
            c => char::from_u32(c as u32 + 1),
        };
        if let Some(n) = next {
            chars.push(n);
            return (low, Some(chars.into_iter().collect()));
        }
    }
    (low, None)
}

/// The deepest page offset served; a bigger one (a typo, a probe) reads the last pages.
pub const MAX_OFFSET: i64 = 100_000_000;

/// The highest page number worth asking for with pages of `page_size`: page numbers are
/// clamped to it before any arithmetic, so a huge `page=` can never overflow.
pub fn audit_max_page(page_size: i64) -> i64 {
    MAX_OFFSET / page_size.max(1) + 1
}

const COLUMNS: &str = "seq, at, actor, client_ip, action, vm, ports, source, justification, result, detail, prev_hash, hash, mac";

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
        mac: row.try_get("mac")?,
    })
}

impl WriteTx {
    /// Appends one entry after the current last one.
    pub async fn log(&mut self, entry: NewLogEntry) -> Result<()> {
        self.log_all(vec![entry]).await
    }

    /// Appends entries after the current last one, in order, a statement per slice: the
    /// expiry job logs hundreds at a time under the write lock.
    pub async fn log_all(&mut self, entries: Vec<NewLogEntry>) -> Result<()> {
        if entries.is_empty() {
            return Ok(());
        }
        // Taken, not copied: after a failed insert the next entry reads the tail again.
        let (mut seq, mut prev) = match self.log_tail.take() {
            Some(tail) => tail,
            None => {
                let last =
                    sqlx::query("SELECT seq, hash FROM activity_log ORDER BY seq DESC LIMIT 1")
                        .fetch_optional(&mut *self.tx)
                        .await?;
                match last {
                    Some(row) => (
                        row.try_get::<i64, _>("seq")?,
                        row.try_get::<String, _>("hash")?,
                    ),
                    None => (0, GENESIS.to_owned()),
                }
            }
        };
        let mut entries = entries.into_iter().peekable();
        while entries.peek().is_some() {
            let mut rows = Vec::new();
            for entry in entries.by_ref().take(ROWS_PER_STATEMENT) {
                seq += 1;
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
                let mac = self.audit_key.entry_mac(&hash);
                let prev_hash = std::mem::replace(&mut prev, hash.clone());
                rows.push((content, prev_hash, hash, mac));
            }
            let values = (0..rows.len())
                .map(|i| format!("({})", placeholders(i * 14 + 1, 14)))
                .collect::<Vec<_>>()
                .join(", ");
            let sql = format!("INSERT INTO activity_log ({COLUMNS}) VALUES {values}");
            let mut query = sqlx::query(&sql);
            for (content, prev_hash, hash, mac) in &rows {
                query = query
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
                    .bind(prev_hash)
                    .bind(hash)
                    .bind(mac);
            }
            query
                .execute(&mut *self.tx)
                .await
                .map_err(StoreError::from_write)?;
        }
        self.log_tail = Some((seq, prev));
        Ok(())
    }
}

/// The column with its ASCII letters lower-cased, compared in code point order: SQLite's
/// lower() folds ASCII alone and compares bytes (BINARY) already; PostgreSQL's lower()
/// folds ASCII alone in the C collation, whose order its result then has (the expression
/// indexes of migration 0019), whatever the database's locale. The JIT tabs' search folds
/// names the same way (the trigram indexes of migration 0021).
pub(crate) fn folded(column: &str, backend: Backend) -> String {
    match backend {
        Backend::Sqlite => format!("LOWER({column})"),
        Backend::Postgres => format!("LOWER({column} COLLATE \"C\")"),
    }
}

fn push_filters(q: &LogQuery, backend: Backend, sql: &mut String, binds: &mut Vec<Bind>) {
    let mut add = |clause: &str, b: Bind| {
        binds.push(b);
        sql.push_str(&format!(" AND {clause} ${}", binds.len()));
    };
    for (column, prefix, exact) in [
        ("vm", &q.vm, q.vm_exact),
        ("actor", &q.actor, q.actor_exact),
    ] {
        if let Some(prefix) = prefix {
            let (low, high) = prefix_range(prefix);
            let col = folded(column, backend);
            if exact {
                add(&format!("{col} ="), Bind::Text(low));
                continue;
            }
            add(&format!("{col} >="), Bind::Text(low));
            if let Some(high) = high {
                add(&format!("{col} <"), Bind::Text(high));
            }
        }
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
    if let Some(before) = q.before_seq {
        add("seq <", Bind::Int(before));
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
    /// Entries matching the filter, newest first, and how many match in all. Reads only
    /// the page (and a count) on the reports pool.
    pub async fn query_log(&self, q: &LogQuery) -> Result<(Vec<LogEntry>, i64)> {
        let mut filter = String::from(" WHERE 1 = 1");
        let mut binds = Vec::new();
        push_filters(q, self.backend, &mut filter, &mut binds);
        // Without a filter the count is the last position: the log has no gaps.
        let count_sql = if binds.is_empty() {
            "SELECT COALESCE(MAX(seq), 0) AS n FROM activity_log".to_owned()
        } else {
            format!("SELECT COUNT(*) AS n FROM activity_log{filter}")
        };
        let total: i64 = bind_all(sqlx::query(&count_sql), &binds)
            .fetch_one(&self.reports)
            .await?
            .try_get("n")?;
        Ok((self.log_batch(q).await?, total))
    }

    /// Entries matching the filter, newest first, without counting them: a batch of an
    /// export (a count per batch would read the whole log again for each).
    pub async fn log_batch(&self, q: &LogQuery) -> Result<Vec<LogEntry>> {
        let mut filter = String::from(" WHERE 1 = 1");
        let mut binds = Vec::new();
        push_filters(q, self.backend, &mut filter, &mut binds);
        // The page's positions first, from an index alone, then its entries: with a VM or
        // user filter, SQLite read every matching entry whole to sort them (20,000 of them
        // for one user of fifty in a 1,000,000-entry log: 90–180 ms a page, 5 ms this way).
        let sql = format!(
            "SELECT {COLUMNS} FROM activity_log WHERE seq IN \
             (SELECT seq FROM activity_log{filter} ORDER BY seq DESC LIMIT {} OFFSET {}) \
             ORDER BY seq DESC",
            q.limit.clamp(1, 10_000),
            q.offset.clamp(0, MAX_OFFSET)
        );
        let rows = bind_all(sqlx::query(&sql), &binds)
            .fetch_all(&self.reports)
            .await?;
        rows.iter().map(from_row).collect()
    }

    /// VM names and actors of the log starting with `vm_prefix` and `actor_prefix` (case
    /// ignored), the first `limit` of each in order, and the log's actions: in one
    /// statement, whatever the size of the log. Each list is a skip scan: a recursive step
    /// asks an index for the next name after the last one, so a million entries over a few
    /// hundred VMs cost a few hundred index probes, not a million rows.
    pub async fn log_suggestions(
        &self,
        vm_prefix: &str,
        actor_prefix: &str,
        limit: usize,
    ) -> Result<LogSuggestions> {
        let mut binds = Vec::new();
        let limit = limit.clamp(1, MAX_NAMES);
        let vms = self.skip_scan("v", LogName::Vm, vm_prefix, limit, &mut binds);
        let actors = self.skip_scan("u", LogName::Actor, actor_prefix, limit, &mut binds);
        // Actions are matched exactly: their plain index, in its own order.
        let sql = format!(
            "WITH RECURSIVE {cte_v}, {cte_u}, \
             a(k, n) AS (SELECT MIN(action), 0 FROM activity_log \
             UNION ALL SELECT (SELECT MIN(action) FROM activity_log WHERE action > a.k), a.n + 1 \
             FROM a WHERE a.k IS NOT NULL AND a.n < {MAX_ACTIONS}) \
             {pick_v} UNION ALL {pick_u} \
             UNION ALL SELECT 'a' AS kind, n, a.k AS value FROM a WHERE a.k IS NOT NULL AND a.k <> '' \
             ORDER BY kind, n",
            cte_v = vms.0,
            pick_v = vms.1,
            cte_u = actors.0,
            pick_u = actors.1,
        );
        let rows = bind_all(sqlx::query(&sql), &binds)
            .fetch_all(&self.reports)
            .await?;
        let mut out = LogSuggestions::default();
        for row in rows {
            let kind: String = row.try_get("kind")?;
            let value: String = row.try_get("value")?;
            let list = match kind.as_str() {
                "v" => &mut out.vms,
                "u" => &mut out.actors,
                _ => &mut out.actions,
            };
            list.push(value);
        }
        out.vms.truncate(limit);
        out.actors.truncate(limit);
        Ok(out)
    }

    /// The names of one column of the log starting with `prefix` (case ignored), the first
    /// `limit` in order: what the activity page suggests while one filter is typed in, one
    /// skip scan and nothing of the other columns.
    pub async fn log_names(
        &self,
        column: LogName,
        prefix: &str,
        limit: usize,
    ) -> Result<Vec<String>> {
        let limit = limit.clamp(1, MAX_NAMES);
        let mut binds = Vec::new();
        let (cte, pick) = self.skip_scan("v", column, prefix, limit, &mut binds);
        let sql = format!("WITH RECURSIVE {cte} {pick} ORDER BY n");
        let rows = bind_all(sqlx::query(&sql), &binds)
            .fetch_all(&self.reports)
            .await?;
        let mut names = rows
            .iter()
            .map(|r| r.try_get("value"))
            .collect::<std::result::Result<Vec<String>, _>>()?;
        names.truncate(limit);
        Ok(names)
    }

    /// A recursive CTE `name(k, n)` walking the folded names of `column` that start with
    /// `prefix`, and the `SELECT kind, n, value` that turns each step back into the name as
    /// written, at most `limit` steps (already bounded by the caller). The empty name
    /// (entries about no VM) is skipped, one step of the limit.
    fn skip_scan(
        &self,
        name: &str,
        column: LogName,
        prefix: &str,
        limit: usize,
        binds: &mut Vec<Bind>,
    ) -> (String, String) {
        let column = column.column();
        let col = folded(column, self.backend);
        let (low, high) = prefix_range(prefix);
        binds.push(Bind::Text(low));
        let low = format!("{col} >= ${}", binds.len());
        let high = match high {
            Some(high) => {
                binds.push(Bind::Text(high));
                format!(" AND {col} < ${}", binds.len())
            }
            None => String::new(),
        };
        // Each step seeks past the last name, which is already above the prefix's low
        // bound: with both lower bounds SQLite seeks by the low one and walks every entry
        // of the names before (with 50 users in a 1,000,000-entry log, 1.5–2 s a page).
        let cte = format!(
            "{name}(k, n) AS (\
             SELECT MIN({col}), 0 FROM activity_log WHERE {low}{high} \
             UNION ALL SELECT (SELECT MIN({col}) FROM activity_log WHERE {col} > {name}.k{high}), \
             {name}.n + 1 FROM {name} WHERE {name}.k IS NOT NULL AND {name}.n < {limit})"
        );
        let pick = format!(
            "SELECT '{name}' AS kind, n, (SELECT {column} FROM activity_log WHERE {col} = {name}.k LIMIT 1) AS value \
             FROM {name} WHERE {name}.k IS NOT NULL AND {name}.k <> ''"
        );
        (cte, pick)
    }

    /// Entries after `after_seq`, oldest first, at most `limit`: one batch of a
    /// verification.
    async fn log_after(&self, after_seq: i64, limit: i64) -> Result<Vec<LogEntry>> {
        let sql = format!(
            "SELECT {COLUMNS} FROM activity_log WHERE seq > $1 ORDER BY seq LIMIT {}",
            limit.clamp(1, 10_000)
        );
        let rows = sqlx::query(&sql)
            .bind(after_seq)
            .fetch_all(&self.reports)
            .await?;
        rows.iter().map(from_row).collect()
    }

    /// The hash stored at `seq`, if that entry exists.
    async fn hash_at(&self, seq: i64) -> Result<Option<String>> {
        let row = sqlx::query("SELECT hash FROM activity_log WHERE seq = $1")
            .bind(seq)
            .fetch_optional(&self.reports)
            .await?;
        Ok(row.map(|r| r.try_get("hash")).transpose()?)
    }

    /// The newest signed checkpoint (genesis when there is none yet).
    async fn last_checkpoint(&self) -> Result<(Checkpoint, String)> {
        let row =
            sqlx::query("SELECT seq, hash, mac FROM audit_checkpoints ORDER BY seq DESC LIMIT 1")
                .fetch_optional(&self.reports)
                .await?;
        Ok(match row {
            Some(r) => (
                Checkpoint {
                    seq: r.try_get("seq")?,
                    hash: r.try_get("hash")?,
                },
                r.try_get("mac")?,
            ),
            None => (Checkpoint::genesis(), String::new()),
        })
    }

    /// Where entries without an HMAC end: the boundary signed by
    /// [`Store::sign_legacy_boundary`]. Missing or not signed with this key, there is
    /// none: every entry needs its HMAC. Never worked out from the data, which whoever can
    /// write the database controls.
    async fn legacy_until(&self) -> Result<i64> {
        Ok(self.signed_legacy_boundary().await?.unwrap_or(0))
    }

    async fn signed_legacy_boundary(&self) -> Result<Option<i64>> {
        let row = sqlx::query("SELECT legacy_until, legacy_mac FROM audit_status WHERE id = 1")
            .fetch_optional(&self.reports)
            .await?;
        let Some(row) = row else { return Ok(None) };
        let (Some(n), mac) = (
            row.try_get::<Option<i64>, _>("legacy_until")?,
            row.try_get::<String, _>("legacy_mac")?,
        ) else {
            return Ok(None);
        };
        Ok(crate::domain::secret::hashes_match(&mac, &self.audit_key.legacy_mac(n)).then_some(n))
    }

    /// Vouches, once, for the entries written before the log had a key (an upgrade): they
    /// carry no HMAC, and the position where they end is signed now. Does nothing when a
    /// signed boundary exists. The caller decides when this may happen at all: only when
    /// nothing outside the database knows a verified position (see
    /// `services::activity::vouch_for_unsigned_entries`), since otherwise an unsigned
    /// boundary means someone removed the signed one. Answers whether it signed.
    pub async fn sign_legacy_boundary(&self) -> Result<bool> {
        if self.signed_legacy_boundary().await?.is_some() {
            return Ok(false);
        }
        let mut tx = self.begin_write().await?;
        let last: i64 =
            sqlx::query("SELECT COALESCE(MAX(seq), 0) AS m FROM activity_log WHERE mac = ''")
                .fetch_one(&mut *tx.tx)
                .await?
                .try_get("m")?;
        sqlx::query(
            "INSERT INTO audit_status (id, ok, verified_seq, message, checked_at, legacy_until, legacy_mac) \
             VALUES (1, 1, 0, 'Not verified yet.', $1, $2, $3) ON CONFLICT (id) DO UPDATE SET \
             legacy_until = $2, legacy_mac = $3 WHERE audit_status.legacy_mac = ''",
        )
        .bind(tx.now)
        .bind(last)
        .bind(self.audit_key.legacy_mac(last))
        .execute(&mut *tx.tx)
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    /// The outcome of the latest verification, if there was one.
    pub async fn audit_status(&self) -> Result<Option<AuditStatus>> {
        let row = sqlx::query(
            "SELECT ok, verified_seq, message, checked_at FROM audit_status WHERE id = 1",
        )
        .fetch_optional(&self.reports)
        .await?;
        row.map(|r| {
            Ok(AuditStatus {
                ok: r.try_get::<i64, _>("ok")? == 1,
                verified_seq: r.try_get("verified_seq")?,
                message: r.try_get("message")?,
                checked_at: r.try_get("checked_at")?,
            })
        })
        .transpose()
    }

    async fn record_verification(
        &self,
        outcome: &std::result::Result<Checkpoint, Break>,
        full: bool,
    ) -> Result<()> {
        let mut tx = self.begin_write().await?;
        let now = tx.now;
        let (ok, seq, message) = match outcome {
            Ok(cp) => {
                sqlx::query(
                    "INSERT INTO audit_checkpoints (seq, hash, mac, at) VALUES ($1, $2, $3, $4) \
                     ON CONFLICT (seq) DO NOTHING",
                )
                .bind(cp.seq)
                .bind(&cp.hash)
                .bind(self.audit_key.checkpoint_mac(cp.seq, &cp.hash))
                .bind(now)
                .execute(&mut *tx.tx)
                .await?;
                let message = if full {
                    format!("Hash chain fully verified: entries 1 to {} intact.", cp.seq)
                } else {
                    // Honest about what a round reads: the new entries, and that the last
                    // checkpoint's entry is unchanged; the full verification reads them all.
                    format!(
                        "Hash chain verified up to entry {}: new entries checked, the last checkpoint unchanged.",
                        cp.seq
                    )
                };
                (1, cp.seq, message)
            }
            Err(b) => (
                0,
                b.at_seq - 1,
                format!("Hash chain broken at entry {}: {}.", b.at_seq, b.reason),
            ),
        };
        // A broken chain stays reported broken until a full verification says otherwise.
        let keep_broken = if ok == 1 && !full {
            " WHERE audit_status.ok = 1"
        } else {
            ""
        };
        sqlx::query(&format!(
            "INSERT INTO audit_status (id, ok, verified_seq, message, checked_at) \
             VALUES (1, $1, $2, $3, $4) ON CONFLICT (id) DO UPDATE SET ok = $1, \
             verified_seq = $2, message = $3, checked_at = $4{keep_broken}"
        ))
        .bind(ok)
        .bind(seq)
        .bind(&message)
        .bind(now)
        .execute(&mut *tx.tx)
        .await?;
        tx.commit().await
    }

    /// Verifies the entries written since the last checkpoint, and that what the last
    /// checkpoint and `anchor` (the newest position kept outside the database) vouch for
    /// is still there, unchanged. Records the outcome and, when it holds, a new signed
    /// checkpoint. Reads in batches of [`BATCH`] on the reports pool.
    pub async fn verify_log_increment(&self, anchor: Option<&Checkpoint>) -> Result<Verification> {
        let legacy_until = self.legacy_until().await?;
        let (from, mac) = self.last_checkpoint().await?;
        let outcome = self.check_from(&from, &mac, anchor, legacy_until).await?;
        self.record_verification(&outcome, false).await?;
        Ok(match outcome {
            Ok(cp) => Verification::Verified(cp),
            Err(b) => Verification::Broken(b),
        })
    }

    /// Verifies the whole log from its first entry, every signed checkpoint on the way,
    /// and `anchor`; records the outcome (a full verification may clear an earlier
    /// "broken", after the operator restored the log). One batch in memory at a time.
    pub async fn verify_log_full(&self, anchor: Option<&Checkpoint>) -> Result<Verification> {
        let legacy_until = self.legacy_until().await?;
        let checkpoints = sqlx::query("SELECT seq, hash, mac FROM audit_checkpoints ORDER BY seq")
            .fetch_all(&self.reports)
            .await?
            .iter()
            .map(|r| {
                Ok((
                    Checkpoint {
                        seq: r.try_get("seq")?,
                        hash: r.try_get("hash")?,
                    },
                    r.try_get::<String, _>("mac")?,
                ))
            })
            .collect::<Result<Vec<_>>>()?;
        let outcome = self
            .walk(&Checkpoint::genesis(), &checkpoints, anchor, legacy_until)
            .await?;
        self.record_verification(&outcome, true).await?;
        Ok(match outcome {
            Ok(cp) => Verification::Verified(cp),
            Err(b) => Verification::Broken(b),
        })
    }

    async fn check_from(
        &self,
        from: &Checkpoint,
        mac: &str,
        anchor: Option<&Checkpoint>,
        legacy_until: i64,
    ) -> Result<std::result::Result<Checkpoint, Break>> {
        if from.seq > 0 {
            if !crate::domain::secret::hashes_match(
                mac,
                &self.audit_key.checkpoint_mac(from.seq, &from.hash),
            ) {
                return Ok(Err(Break {
                    at_seq: from.seq,
                    reason: "its checkpoint is not signed with the log's key".into(),
                }));
            }
            match self.hash_at(from.seq).await? {
                Some(h) if h == from.hash => {}
                Some(_) => {
                    return Ok(Err(Break {
                        at_seq: from.seq,
                        reason: "it changed after it was verified".into(),
                    }));
                }
                None => {
                    return Ok(Err(Break {
                        at_seq: from.seq,
                        reason: "it was verified before and is gone: entries were removed".into(),
                    }));
                }
            }
        }
        self.walk(
            from,
            &[(from.clone(), mac.to_owned())],
            anchor,
            legacy_until,
        )
        .await
    }

    /// Verifies batches after `from`, checking each signed checkpoint and the anchor as
    /// their positions go by, and that the log reaches the anchor.
    async fn walk(
        &self,
        from: &Checkpoint,
        checkpoints: &[(Checkpoint, String)],
        anchor: Option<&Checkpoint>,
        legacy_until: i64,
    ) -> Result<std::result::Result<Checkpoint, Break>> {
        let vouched: Vec<(&Checkpoint, bool)> = checkpoints
            .iter()
            .filter(|(cp, _)| cp.seq > 0)
            .map(|(cp, mac)| {
                (
                    cp,
                    crate::domain::secret::hashes_match(
                        mac,
                        &self.audit_key.checkpoint_mac(cp.seq, &cp.hash),
                    ),
                )
            })
            .chain(anchor.filter(|a| a.seq > 0).map(|a| (a, true)))
            .collect();
        let mut at = from.clone();
        loop {
            let batch = self.log_after(at.seq, BATCH).await?;
            if batch.is_empty() {
                break;
            }
            let start = at.seq;
            match verify_segment(
                &at,
                batch.iter().map(|e| Stored {
                    content: &e.content,
                    prev_hash: &e.prev_hash,
                    hash: &e.hash,
                    mac: &e.mac,
                }),
                &self.audit_key,
                legacy_until,
            ) {
                Ok(next) => at = next,
                Err(b) => return Ok(Err(b)),
            }
            for (cp, signed) in &vouched {
                if cp.seq <= start || cp.seq > at.seq {
                    continue;
                }
                if !signed {
                    return Ok(Err(Break {
                        at_seq: cp.seq,
                        reason: "its checkpoint is not signed with the log's key".into(),
                    }));
                }
                let stored = batch
                    .iter()
                    .find(|e| e.content.seq == cp.seq)
                    .map(|e| e.hash.as_str());
                if stored != Some(cp.hash.as_str()) {
                    return Ok(Err(Break {
                        at_seq: cp.seq,
                        reason:
                            "it differs from what was verified before: the chain was recomputed"
                                .into(),
                    }));
                }
            }
        }
        if let Some((cp, _)) = vouched
            .iter()
            .filter(|(cp, _)| cp.seq > at.seq)
            .max_by_key(|(cp, _)| cp.seq)
        {
            return Ok(Err(Break {
                at_seq: at.seq + 1,
                reason: format!(
                    "the log ends at entry {} but entry {} was verified before: entries were removed",
                    at.seq, cp.seq
                ),
            }));
        }
        Ok(Ok(at))
    }

    /// Records an event that changes nothing else (sign-in, refused attempts).
    pub async fn log_event(&self, entry: NewLogEntry) -> Result<()> {
        let mut tx = self.begin_write().await?;
        tx.log(entry).await?;
        tx.commit().await
    }

    /// Distinct actions in the log, for filter suggestions (an index walk).
    pub async fn log_actions(&self) -> Result<Vec<String>> {
        let rows = sqlx::query("SELECT DISTINCT action FROM activity_log ORDER BY action")
            .fetch_all(&self.reports)
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

#[cfg(test)]
mod tests {
    use super::prefix_range;

    #[test]
    fn a_prefix_is_the_range_up_to_its_successor() {
        assert_eq!(prefix_range("web"), ("web".into(), Some("wec".into())));
        assert_eq!(
            prefix_range("WeB"),
            ("web".into(), Some("wec".into())),
            "ASCII folded"
        );
        assert_eq!(
            prefix_range("É"),
            ("É".into(), Some("Ê".into())),
            "only ASCII folded"
        );
        assert_eq!(
            prefix_range("a%_"),
            ("a%_".into(), Some("a%`".into())),
            "no wildcards"
        );
        // The surrogate gap is skipped; the last code point carries into the one before.
        assert_eq!(
            prefix_range("x\u{D7FF}"),
            ("x\u{D7FF}".into(), Some("x\u{E000}".into()))
        );
        assert_eq!(
            prefix_range("x\u{10FFFF}"),
            ("x\u{10FFFF}".into(), Some("y".into()))
        );
        assert_eq!(prefix_range("\u{10FFFF}"), ("\u{10FFFF}".into(), None));
        assert_eq!(prefix_range(""), (String::new(), None));
    }
}
