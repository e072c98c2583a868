//! The activity log as users see it: filtered pages, streamed exports, and its
//! verification: incremental in the background (with the newest verified position kept
//! outside the database), in full on an administrator's demand.

use super::Actor;
use crate::domain::audit::Checkpoint;
use crate::domain::{Action, Resource, permits};
use crate::error::{AppError, AppResult};
use crate::store::{
    AuditStatus, LogEntry, LogName, LogQuery, LogSuggestions, MAX_ACTIONS, Store, Verification,
};
use std::path::{Path, PathBuf};

pub fn require_log(actor: &Actor) -> AppResult<()> {
    if permits(&actor.roles, Action::ViewActivityLog, &Resource::Global) {
        Ok(())
    } else {
        Err(AppError::Forbidden)
    }
}

/// One page of the log and the outcome of the latest verification: reading the log
/// reads the page, never the chain.
pub async fn page(
    store: &Store,
    actor: &Actor,
    q: &LogQuery,
) -> AppResult<(Vec<LogEntry>, i64, AuditStatus)> {
    require_log(actor)?;
    let (entries, total) = store.query_log(q).await?;
    Ok((entries, total, status(store).await?))
}

/// What the activity page shows: a page of the log, how many entries match, the latest
/// verification, and what the filters can be completed with.
pub struct Browse {
    pub entries: Vec<LogEntry>,
    pub total: i64,
    pub status: AuditStatus,
    pub suggestions: LogSuggestions,
    /// The action asked for occurs nowhere in the log; the page was read without it.
    pub unknown_action: bool,
}

/// The names of one column of the log (VMs or users) that start with what is being typed
/// in its filter (the hydrated page asks as the user types), under the permission that
/// reads the log.
pub async fn suggest(
    store: &Store,
    actor: &Actor,
    column: LogName,
    prefix: &str,
    limit: usize,
) -> AppResult<Vec<String>> {
    require_log(actor)?;
    Ok(store.log_names(column, prefix, limit).await?)
}

/// A page of the log and the filters' suggestions. Suggestions come from the log itself,
/// under the permission that reads the log (it is not scoped to VMs: whoever may read it
/// reads every entry, and so may be told every name in it), and start with the VM and
/// user filters' values. Four statements, whatever the log holds.
pub async fn browse(
    store: &Store,
    actor: &Actor,
    mut q: LogQuery,
    suggestions: usize,
) -> AppResult<Browse> {
    require_log(actor)?;
    let suggestions = store
        .log_suggestions(
            q.vm.as_deref().unwrap_or_default(),
            q.actor.as_deref().unwrap_or_default(),
            suggestions,
        )
        .await?;
    // Every action is known only if the list was not cut short.
    let unknown_action = suggestions.actions.len() < MAX_ACTIONS
        && q.action
            .as_ref()
            .is_some_and(|a| !suggestions.actions.contains(a));
    if unknown_action {
        q.action = None;
    }
    let (entries, total) = store.query_log(&q).await?;
    Ok(Browse {
        entries,
        total,
        status: status(store).await?,
        suggestions,
        unknown_action,
    })
}

/// The latest verification's outcome, or "not verified yet".
pub async fn status(store: &Store) -> AppResult<AuditStatus> {
    Ok(store.audit_status().await?.unwrap_or(AuditStatus {
        ok: true,
        verified_seq: 0,
        message: "Not verified yet: the first verification runs shortly after start.".into(),
        checked_at: 0,
    }))
}

/// The newest verified position of the log, kept outside the database: in this process,
/// in a file when one is configured (it survives restarts), and announced in the server
/// log each time it moves. Whoever removes the newest entries (and the checkpoints that
/// name them) from the database cannot move it back.
#[derive(Debug, Default)]
pub struct Anchor {
    path: Option<PathBuf>,
    last: std::sync::Mutex<Option<Checkpoint>>,
}

impl Anchor {
    /// Reads the anchor file, if there is one.
    pub fn open(path: Option<PathBuf>) -> Self {
        let last = match path.as_deref().map(read_anchor) {
            Some(Ok(a)) => a,
            Some(Err(e)) => {
                tracing::error!(error = %e, "the activity log's anchor file cannot be read");
                None
            }
            None => None,
        };
        if let Some(a) = &last {
            tracing::info!(seq = a.seq, hash = %a.hash, "activity log anchor read");
        }
        Anchor {
            path,
            last: std::sync::Mutex::new(last),
        }
    }

    pub fn known(&self) -> Option<Checkpoint> {
        self.last.lock().ok().and_then(|l| l.clone())
    }

    /// Moves the anchor to a newly verified position (never back).
    pub fn advance(&self, cp: &Checkpoint) {
        let Ok(mut last) = self.last.lock() else {
            return;
        };
        if last.as_ref().is_some_and(|l| l.seq >= cp.seq) {
            return;
        }
        tracing::info!(seq = cp.seq, hash = %cp.hash, "activity log checkpoint");
        if let Some(path) = &self.path
            && let Err(e) = write_anchor(path, cp)
        {
            tracing::error!(error = %e, path = %path.display(), "writing the activity log's anchor failed");
        }
        *last = Some(cp.clone());
    }
}

/// At start: vouches for the entries written before the log had a key, once (see
/// [`Store::sign_legacy_boundary`]). Only while nothing outside the database knows a
/// verified position: once the anchor does, a boundary that is not signed means someone
/// removed the signed one, and vouching again would cover their edits. Without an anchor
/// file the server has no such memory across restarts (it warns about that at start).
pub async fn vouch_for_unsigned_entries(
    store: &Store,
    anchor: &Anchor,
) -> Result<(), crate::store::StoreError> {
    if anchor.known().is_some() {
        return Ok(());
    }
    if store.sign_legacy_boundary().await? {
        tracing::info!("activity log: the entries written before it had a key are vouched for");
    }
    Ok(())
}

/// Verifies the whole log now, in batches; for administrators over everything (it reads
/// everything). The outcome is recorded, logged, and answered.
pub async fn verify_full(store: &Store, actor: &Actor, anchor: &Anchor) -> AppResult<AuditStatus> {
    if !permits(&actor.roles, Action::ManageUsers, &Resource::Global) {
        return Err(AppError::Forbidden);
    }
    if let Verification::Verified(cp) = store.verify_log_full(anchor.known().as_ref()).await? {
        anchor.advance(&cp);
    }
    let mut log = actor.entry("log.verify", "");
    let status = status(store).await?;
    log.result = if status.ok { "success" } else { "failed" }.into();
    log.detail = status.message.clone();
    store.log_event(log).await?;
    Ok(status)
}

/// The newest verified position kept outside the database: a small JSON file.
pub fn read_anchor(path: &Path) -> std::io::Result<Option<Checkpoint>> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(std::io::Error::other),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

fn write_anchor(path: &Path, cp: &Checkpoint) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, serde_json::to_vec(cp).map_err(std::io::Error::other)?)?;
    std::fs::rename(&tmp, path)
}

/// The verifier: every few seconds, verifies what was written since the last checkpoint
/// and moves the anchor, so that removing the newest entries, or recomputing the chain,
/// is noticed.
const FULL_VERIFICATION_EVERY: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

pub async fn run_verifier(
    store: Store,
    anchor: std::sync::Arc<Anchor>,
    every: std::time::Duration,
) {
    let mut last_message = String::new();
    // A round reads only what is new; once a day (and at start) every entry is read again,
    // so that an old entry changed without touching its hash is found too.
    let mut last_full: Option<std::time::Instant> = None;
    loop {
        let full = last_full.is_none_or(|at| at.elapsed() >= FULL_VERIFICATION_EVERY);
        let outcome = if full {
            last_full = Some(std::time::Instant::now());
            store.verify_log_full(anchor.known().as_ref()).await
        } else {
            store.verify_log_increment(anchor.known().as_ref()).await
        };
        if store.is_closed() {
            return;
        }
        match outcome {
            Ok(Verification::Verified(cp)) => {
                anchor.advance(&cp);
                last_message.clear();
            }
            Ok(Verification::Broken(b)) => {
                let message = format!("broken at entry {}: {}", b.at_seq, b.reason);
                if message != last_message {
                    tracing::error!(at_seq = b.at_seq, reason = %b.reason, "activity log verification failed: the log was tampered with");
                    last_message = message;
                }
            }
            Err(e) => tracing::warn!(error = %e, "activity log verification did not run"),
        }
        tokio::time::sleep(every).await;
    }
}

fn csv_field(s: &str) -> String {
    // Quote everything; neutralise what a spreadsheet would read as a formula, including
    // a leading tab or carriage return (which some strip before deciding).
    let s = if s.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{s}")
    } else {
        s.to_owned()
    };
    format!("\"{}\"", s.replace('"', "\"\""))
}

pub const CSV_HEADER: &str =
    "seq,time_utc,actor,client_ip,action,vm,ports,source,justification,result,detail,hash\n";

fn csv_row(e: &LogEntry) -> String {
    let c = &e.content;
    let row = [
        c.seq.to_string(),
        crate::model::format_utc(c.at),
        c.actor.clone(),
        c.client_ip.clone(),
        c.action.clone(),
        c.vm.clone(),
        c.ports.clone(),
        c.source.clone(),
        c.justification.clone(),
        c.result.clone(),
        c.detail.clone(),
        e.hash.clone(),
    ];
    let mut line = row
        .iter()
        .map(|f| csv_field(f))
        .collect::<Vec<_>>()
        .join(",");
    line.push('\n');
    line
}

/// Every matching entry, newest first, one batch at a time: an export of a million
/// entries holds one batch in memory and one reports connection at a time, and stops at
/// nothing short of the end.
pub async fn export_batches(
    store: &Store,
    actor: &Actor,
    q: LogQuery,
) -> AppResult<impl futures::Stream<Item = Result<Vec<LogEntry>, crate::store::StoreError>> + use<>>
{
    require_log(actor)?;
    // Exports share the reports pool with the log pages and the verifier: one at a time
    // per server, the others are asked to come back (503 with Retry-After).
    let Some(turn) = store.export_turn() else {
        return Err(AppError::Busy {
            retry_after_secs: 10,
        });
    };
    let store = store.clone();
    Ok(futures::stream::try_unfold(
        (store, q, false, turn),
        |(store, mut q, done, turn)| async move {
            if done {
                return Ok(None);
            }
            q.offset = 0;
            q.limit = crate::store::BATCH;
            let batch = store.log_batch(&q).await?;
            let done = (batch.len() as i64) < q.limit;
            q.before_seq = batch.last().map(|e| e.content.seq);
            if batch.is_empty() {
                return Ok(None);
            }
            Ok(Some((batch, (store, q, done, turn))))
        },
    ))
}

/// The export as CSV text chunks (a header, then a chunk per batch).
pub async fn csv_stream(
    store: &Store,
    actor: &Actor,
    q: LogQuery,
) -> AppResult<impl futures::Stream<Item = Result<String, crate::store::StoreError>> + use<>> {
    use futures::StreamExt;
    let batches = export_batches(store, actor, q).await?;
    Ok(futures::stream::once(async { Ok(CSV_HEADER.to_owned()) })
        .chain(batches.map(|b| b.map(|entries| entries.iter().map(csv_row).collect::<String>()))))
}

#[cfg(test)]
mod tests {
    #[test]
    fn csv_fields_are_quoted_and_formulas_defused() {
        assert_eq!(super::csv_field("a\"b"), "\"a\"\"b\"");
        assert_eq!(super::csv_field("=cmd()"), "\"'=cmd()\"");
        assert_eq!(super::csv_field("\t=cmd()"), "\"'\t=cmd()\"");
        assert_eq!(super::csv_field("\r@SUM(A1)"), "\"'\r@SUM(A1)\"");
        assert_eq!(super::csv_field("plain"), "\"plain\"");
    }
}
