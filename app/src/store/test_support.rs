//! Test support shared by the store and HTTP suites: a fresh, empty database per test,
//! on SQLite by default or on PostgreSQL when `PORTCULLIS_TEST_POSTGRES` holds a server
//! URL (`make test` runs every suite both ways).

use super::{Result, StoreError};
use sqlx::Connection;

impl super::Store {
    /// Whether the JIT tabs' titles read the counts kept by migration 0023's triggers
    /// (rather than counting the VMs, as they do when those triggers are missing).
    pub fn keeps_tab_counts(&self) -> bool {
        self.tab_counts
    }

    /// Whether SQLite's search index (migrations 0022, 0024) is there and kept: searches
    /// of three characters or more then read it, and its own counts title the tabs.
    pub fn keeps_search_index(&self) -> bool {
        self.search_index
    }

    /// This store with a JIT search's plans changed at other counts of matches, so that
    /// a test takes each of them with a few VMs.
    pub fn with_search_plan(&self, plan: super::SearchPlan) -> Self {
        Self {
            search_plan: plan,
            ..self.clone()
        }
    }
}

/// The variable naming the PostgreSQL server the suites run against, if any.
pub const POSTGRES_ENV: &str = "PORTCULLIS_TEST_POSTGRES";

/// Whether the suites run against PostgreSQL in this run.
pub fn on_postgres() -> bool {
    std::env::var(POSTGRES_ENV).is_ok_and(|v| !v.is_empty())
}

/// A database URL nobody else uses: an SQLite file in `dir`, or a new PostgreSQL
/// database created on the test server (named after `name`, unique per call).
pub async fn fresh_database_url(dir: &std::path::Path, name: &str) -> Result<String> {
    let Some(server) = std::env::var(POSTGRES_ENV).ok().filter(|v| !v.is_empty()) else {
        return Ok(format!(
            "sqlite://{}",
            dir.join(format!("{name}.db")).display()
        ));
    };
    let database = format!(
        "portcullis_test_{}",
        uuid::Uuid::new_v4()
            .simple()
            .to_string()
            .get(..16)
            .unwrap_or("x")
    );
    let mut admin = sqlx::postgres::PgConnection::connect(&server).await?;
    // One locale whatever the server's default, and one whose own case folding goes
    // beyond ASCII (C.UTF-8 lower-cases "É"): the tests that the log's filters fold ASCII
    // only, as SQLite does, can then fail.
    sqlx::query(&format!(
        "CREATE DATABASE {database} TEMPLATE template0 ENCODING 'UTF8' \
         LC_COLLATE 'C.UTF-8' LC_CTYPE 'C.UTF-8'"
    ))
    .execute(&mut admin)
    .await
    .inspect_err(|e| {
        eprintln!(
            "creating a test database in the C.UTF-8 locale failed: {e}; \
             the suites need a PostgreSQL server that has that locale (Debian's has)"
        )
    })?;
    admin.close().await?;
    with_database(&server, &database).ok_or(StoreError::UnsupportedUrl)
}

/// `server` with its database name replaced.
fn with_database(server: &str, database: &str) -> Option<String> {
    let (base, query) = match server.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (server, None),
    };
    let scheme_end = base.find("://")? + 3;
    let authority_end = base[scheme_end..]
        .find('/')
        .map_or(base.len(), |i| scheme_end + i);
    let mut url = format!("{}/{database}", &base[..authority_end]);
    if let Some(q) = query {
        url.push('?');
        url.push_str(q);
    }
    Some(url)
}

/// What someone with write access to the database and without the activity log's key
/// does: change entry `seq`, then recompute its hash and every later one so that the
/// chain links up again. The HMACs and the anchor are what must give them away.
pub async fn rewrite_and_rehash(url: &str, seq: i64) -> Result<()> {
    use crate::domain::audit::{EntryContent, entry_hash};
    use sqlx::Row;
    sqlx::any::install_default_drivers();
    let db = sqlx::AnyPool::connect(url).await?;
    sqlx::query("UPDATE activity_log SET detail = 'nothing happened' WHERE seq = $1")
        .bind(seq)
        .execute(&db)
        .await?;
    let rows = sqlx::query(
        "SELECT seq, at, actor, client_ip, action, vm, ports, source, justification, result, \
         detail, prev_hash FROM activity_log WHERE seq >= $1 ORDER BY seq",
    )
    .bind(seq)
    .fetch_all(&db)
    .await?;
    let Some(first) = rows.first() else {
        return Ok(());
    };
    let mut prev: String = first.try_get("prev_hash")?;
    for r in &rows {
        let c = EntryContent {
            seq: r.try_get("seq")?,
            at: r.try_get("at")?,
            actor: r.try_get("actor")?,
            client_ip: r.try_get("client_ip")?,
            action: r.try_get("action")?,
            vm: r.try_get("vm")?,
            ports: r.try_get("ports")?,
            source: r.try_get("source")?,
            justification: r.try_get("justification")?,
            result: r.try_get("result")?,
            detail: r.try_get("detail")?,
        };
        let hash = entry_hash(&prev, &c);
        sqlx::query("UPDATE activity_log SET prev_hash = $1, hash = $2 WHERE seq = $3")
            .bind(&prev)
            .bind(&hash)
            .bind(c.seq)
            .execute(&db)
            .await?;
        prev = hash;
    }
    db.close().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::with_database;

    #[test]
    fn replaces_only_the_database_name() {
        assert_eq!(
            with_database("postgres://postgres@127.0.0.1:5432/test", "x").as_deref(),
            Some("postgres://postgres@127.0.0.1:5432/x")
        );
        assert_eq!(
            with_database("postgres://u:p@h:1?sslmode=disable", "x").as_deref(),
            Some("postgres://u:p@h:1/x?sslmode=disable")
        );
    }
}
