//! Counts the SQL statements run in this process as the driver logs them: sqlx emits one
//! `sqlx::query` event per statement. Shared by the page-query tests and `make bench`
//! (`app/benches/vm_list.rs`), each a process of its own.
#![allow(dead_code)]

use std::sync::atomic::{AtomicUsize, Ordering};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::{Layer, filter::Targets};

static STATEMENTS: AtomicUsize = AtomicUsize::new(0);

struct CountStatements;

impl<S: tracing::Subscriber> Layer<S> for CountStatements {
    fn on_event(&self, event: &tracing::Event<'_>, _: Context<'_, S>) {
        if event.metadata().target() == "sqlx::query" {
            STATEMENTS.fetch_add(1, Ordering::SeqCst);
        }
    }
}

/// Installs the counter as the process's tracing subscriber, once.
pub fn install() {
    static INSTALLED: std::sync::Once = std::sync::Once::new();
    INSTALLED.call_once(|| {
        // Only sqlx's statement events reach the layer (at any level: a slow statement is
        // logged as a warning), so the other crates' tracing costs nothing here.
        let only_statements = Targets::new().with_target("sqlx::query", tracing::Level::TRACE);
        let subscriber =
            tracing_subscriber::registry().with(CountStatements.with_filter(only_statements));
        tracing::subscriber::set_global_default(subscriber).unwrap();
    });
}

/// The statements run so far.
pub fn so_far() -> usize {
    STATEMENTS.load(Ordering::SeqCst)
}

/// The statements run so far, once the driver has logged every statement it answered.
/// SQLite's driver hands the answer over from its worker thread before it logs the
/// statement, so a count read as soon as the answer is back may miss the last ones: on a
/// loaded machine a page counted 3 statements instead of 4. The log is settled once it
/// has stayed the same for a moment.
pub async fn settled() -> usize {
    let mut seen = so_far();
    loop {
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
        let now = so_far();
        if now == seen {
            return now;
        }
        seen = now;
    }
}
