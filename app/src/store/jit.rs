//! VMs and their JIT policies.

use super::audit::{Bind, NewLogEntry, bind_all, folded};
use super::{
    Backend, ROWS_PER_STATEMENT, Result, Store, StoreError, WriteTx, new_id, placeholders,
};
use crate::domain::Visibility;
use crate::domain::jit::{
    AllowedSources, ApprovalTimeout, Approvers, JitPolicy, LeadTime, MaxDuration, Port, PortRule,
    Protocol, WidestPrefix,
};
use sqlx::AnyConnection;
use sqlx::Row;
use sqlx::any::AnyRow;
use std::collections::HashMap;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredVm {
    pub id: String,
    pub name: String,
    pub group: String,
    pub addresses: String,
    pub os: String,
    pub exposed_ports: String,
    pub agent_id: Option<String>,
    pub agent_last_seen: Option<i64>,
    pub generation: i64,
    pub agent_applied_generation: i64,
    pub agent_error: String,
}

/// Validated VM fields (the service parses them through the domain).
#[derive(Debug, Clone)]
pub struct VmFields {
    pub name: String,
    pub group: String,
    pub addresses: String,
    pub os: String,
    pub exposed_ports: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VmTab {
    Configured,
    Recommended,
    NotConfigured,
    /// VMs without a policy whose agent reports that it cannot enforce one (no nftables,
    /// a refused rule set): enabling JIT there would protect nothing.
    Unsupported,
    All,
}

impl VmTab {
    /// The condition that puts a VM on this tab, word for word the condition of the
    /// tab's partial index (migration 0017), so that both backends read that index.
    fn condition(self) -> &'static str {
        match self {
            VmTab::Configured => "v.jit_configured = 1",
            VmTab::Recommended => {
                "v.jit_configured = 0 AND v.agent_error = '' AND v.exposed_ports <> ''"
            }
            VmTab::NotConfigured => {
                "v.jit_configured = 0 AND v.agent_error = '' AND v.exposed_ports = ''"
            }
            VmTab::Unsupported => "v.jit_configured = 0 AND v.agent_error <> ''",
            VmTab::All => "1 = 1",
        }
    }
}

/// How many VMs each tab holds, for the tab titles.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TabCounts {
    pub configured: i64,
    pub recommended: i64,
    pub not_configured: i64,
    pub unsupported: i64,
}

/// `column` equals one of the binds numbered `binds`: false when there are none.
fn any_of(column: &str, binds: &[usize]) -> String {
    let mut parts = vec!["1 = 0".to_owned()];
    parts.extend(binds.iter().map(|n| format!("{column} = ${n}")));
    format!("({})", parts.join(" OR "))
}

/// The tabs that partition the VMs, with the column `list_vms` reads each one's count as (its
/// column in `vm_tab_counts` too, 0023) and the tab's mark in SQLite's search index (0024).
const TAB_COUNTS: [(VmTab, &str, &str); 4] = [
    (VmTab::Configured, "configured", "CFG"),
    (VmTab::Recommended, "recommended", "REC"),
    (VmTab::NotConfigured, "not_configured", "NCF"),
    (VmTab::Unsupported, "unsupported", "UNS"),
];

/// The four counts of a row whose columns are named as in `TAB_COUNTS`.
fn counts_from(row: &sqlx::any::AnyRow) -> Result<TabCounts> {
    Ok(TabCounts {
        configured: row.try_get("configured")?,
        recommended: row.try_get("recommended")?,
        not_configured: row.try_get("not_configured")?,
        unsupported: row.try_get("unsupported")?,
    })
}

/// Each tab's count of the rows in hand, a column each as `TAB_COUNTS` names them: over a
/// search's matches, or per group under `GROUP BY`.
fn tab_sums() -> String {
    TAB_COUNTS
        .iter()
        .map(|(tab, column, _)| {
            format!(
                "COALESCE(SUM(CASE WHEN {} THEN 1 ELSE 0 END), 0) AS {column}",
                tab.condition()
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

impl TabCounts {
    pub fn of(&self, tab: VmTab) -> i64 {
        match tab {
            VmTab::Configured => self.configured,
            VmTab::Recommended => self.recommended,
            VmTab::NotConfigured => self.not_configured,
            VmTab::Unsupported => self.unsupported,
            VmTab::All => {
                self.configured + self.recommended + self.not_configured + self.unsupported
            }
        }
    }
}

#[derive(Debug, Clone)]
pub struct VmListQuery {
    pub tab: VmTab,
    pub search: String,
    /// `name`, `group` or `os`; descending when `desc`.
    pub sort: String,
    pub desc: bool,
    pub offset: i64,
    pub limit: i64,
    /// Restricts to these groups / VM ids unless `everything` (the caller's view scope).
    pub scope: Visibility,
    /// Just this VM (with its figures), when set.
    pub only_id: Option<String>,
}

/// A VM row of the JIT tabs, with the figures the Configured tab shows.
#[derive(Debug, Clone)]
pub struct VmSummary {
    pub vm: StoredVm,
    pub has_policy: bool,
    pub approved_last_7d: i64,
    pub last_access_at: Option<i64>,
    pub last_user: Option<String>,
    pub active_grants: Vec<(i64, String, String, i64)>, // (port, protocol, source, end_at)
}

const VM_COLUMNS: &str = "v.id, v.name, v.resource_group, v.addresses, v.os, v.exposed_ports, v.agent_id, \
     v.agent_last_seen, v.generation, v.agent_applied_generation, v.agent_error";

fn vm_from_row(row: &AnyRow) -> Result<StoredVm> {
    Ok(StoredVm {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        group: row.try_get("resource_group")?,
        addresses: row.try_get("addresses")?,
        os: row.try_get("os")?,
        exposed_ports: row.try_get("exposed_ports")?,
        agent_id: row.try_get("agent_id")?,
        agent_last_seen: row.try_get("agent_last_seen")?,
        generation: row.try_get("generation")?,
        agent_applied_generation: row.try_get("agent_applied_generation")?,
        agent_error: row.try_get("agent_error")?,
    })
}

impl WriteTx {
    /// Every change to what a VM's agent must enforce moves its generation forward.
    pub(crate) async fn bump_generation(&mut self, vm_id: &str) -> Result<()> {
        self.bump_generations(&[vm_id]).await
    }

    /// [`Self::bump_generation`] for each of `vm_ids` (each once), a statement per slice.
    pub(crate) async fn bump_generations(&mut self, vm_ids: &[&str]) -> Result<()> {
        for slice in vm_ids.chunks(ROWS_PER_STATEMENT) {
            for vm in slice {
                self.announce(vm);
            }
            let sql = format!(
                "UPDATE vms SET generation = generation + 1 WHERE id IN ({})",
                placeholders(1, slice.len())
            );
            let mut query = sqlx::query(&sql);
            for vm in slice {
                query = query.bind(*vm);
            }
            query.execute(&mut *self.tx).await?;
        }
        Ok(())
    }
}

impl WriteTx {
    /// Adds a VM (no agent, no policy) and answers its new id.
    pub async fn insert_vm(&mut self, f: &VmFields) -> Result<String> {
        let id = new_id();
        sqlx::query(
            "INSERT INTO vms (id, name, resource_group, addresses, os, exposed_ports, generation, \
             created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, 0, $7, $7)",
        )
        .bind(&id)
        .bind(&f.name)
        .bind(&f.group)
        .bind(&f.addresses)
        .bind(&f.os)
        .bind(&f.exposed_ports)
        .bind(self.now)
        .execute(&mut *self.tx)
        .await
        .map_err(StoreError::from_write)?;
        Ok(id)
    }

    /// Which of `names` VMs already have, as seen inside this transaction.
    pub async fn taken_vm_names(
        &mut self,
        names: &[String],
    ) -> Result<std::collections::HashSet<String>> {
        taken_names(&mut self.tx, names).await
    }
}

async fn taken_names(
    conn: &mut AnyConnection,
    names: &[String],
) -> Result<std::collections::HashSet<String>> {
    let mut taken = std::collections::HashSet::new();
    for chunk in names.chunks(ROWS_PER_STATEMENT) {
        let sql = format!(
            "SELECT v.name FROM vms v WHERE v.name IN ({})",
            placeholders(1, chunk.len())
        );
        let mut query = sqlx::query(&sql);
        for name in chunk {
            query = query.bind(name.as_str());
        }
        for row in query.fetch_all(&mut *conn).await? {
            taken.insert(row.try_get::<String, _>("name")?);
        }
    }
    Ok(taken)
}

/// Whether `column`, its ASCII letters folded, holds the pattern bound at `$n` (itself
/// folded, wildcards escaped with `\`). SQLite's LIKE already ignores the case of ASCII
/// letters, and only those, as its lower() does: without lower() it matches the same
/// names and copies none (it runs on every VM that `narrow_search` leaves, or on all of
/// them). On PostgreSQL the expression is that of the trigram indexes of migration 0021.
fn contains(column: &str, n: usize, backend: Backend) -> String {
    let folded = match backend {
        Backend::Sqlite => column.to_owned(),
        Backend::Postgres => folded(column, backend),
    };
    format!("{folded} LIKE ${n} ESCAPE '\\'")
}

/// The LIKE pattern of a text anywhere, for `contains`: wildcards typed by the user match
/// themselves ("db_1" is not "db-1").
fn like_contains(search: &str) -> String {
    let literal = search
        .replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_");
    format!("%{literal}%")
}

/// The FTS5 query (migrations 0022, 0024) for the VMs whose name or resource group holds
/// `search`, already folded: one quoted phrase, so that the text matches as typed whatever
/// FTS5 syntax it holds. It needs name no column: only the tab's marks hold capitals.
fn search_phrase(search: &str) -> String {
    format!("\"{}\"", search.replace('"', "\"\""))
}

/// The same, on `tab` alone (All: every tab). The mark comes first: FTS5 then reads the
/// phrase's positions only in the tab's rows (a third to half faster).
fn search_on_tab(search: &str, tab: VmTab) -> String {
    let phrase = search_phrase(search);
    match TAB_COUNTS.iter().find(|(t, _, _)| *t == tab) {
        Some((_, _, mark)) => format!("\"{mark}\" AND {phrase}"),
        None => phrase,
    }
}

/// On SQLite, the most groups whose names a search reads to learn whether groups alone
/// hold it (`Store::groups_alone`): 1,000 rows take a fraction of a millisecond.
const GROUPS_ALONE_MOST: i64 = 1_000;

/// How many VMs holding a search make `Store::list_vms` change its plan. Each plan gives
/// the same rows; the bounds only say which one costs least, as measured at 100,000 VMs.
#[doc(hidden)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SearchPlan {
    /// On SQLite, the most matches on a tab that a page finds through the search index
    /// and sorts by name (10,000 take 5-10 ms, wherever they fall in name order). More
    /// are found soonest by walking the tab in name order.
    pub index_page_most: i64,
    /// On SQLite, the most VMs holding a search that a walk fetches by their keys in the
    /// search index rather than reading every VM (see `narrow_search`).
    pub narrow_most: i64,
    /// On PostgreSQL, the most matches on a tab that a page finds all of and sorts,
    /// rather than walking the tab in name order.
    pub few_on_tab: i64,
    /// On PostgreSQL, how many entries of the tab past the page's own a walk reads in
    /// name order before it gives up on finding the page there.
    pub walk_beyond: i64,
    /// On PostgreSQL, the most matches in all that a page whose walk gave up finds all
    /// of and sorts; with more, the walk goes on to the end of the tab.
    pub late_most: i64,
}

impl Default for SearchPlan {
    fn default() -> Self {
        Self {
            index_page_most: 20_000,
            narrow_most: 2_000,
            few_on_tab: 2_000,
            walk_beyond: 5_000,
            late_most: 20_000,
        }
    }
}

impl Store {
    /// Which of `names` VMs already have (for a preview; the import itself asks again
    /// inside its transaction).
    pub async fn taken_vm_names(
        &self,
        names: &[String],
    ) -> Result<std::collections::HashSet<String>> {
        let mut conn = self.pool.acquire().await?;
        taken_names(&mut conn, names).await
    }

    pub async fn create_vm(&self, f: &VmFields, log: NewLogEntry) -> Result<StoredVm> {
        let mut tx = self.begin_write().await?;
        let id = tx.insert_vm(f).await?;
        tx.log(log).await?;
        tx.commit().await?;
        self.get_vm(&id)
            .await?
            .ok_or(StoreError::Corrupt("vm vanished".into()))
    }

    pub async fn get_vm(&self, id: &str) -> Result<Option<StoredVm>> {
        let sql = format!("SELECT {VM_COLUMNS} FROM vms v WHERE v.id = $1");
        let row = sqlx::query(&sql)
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(vm_from_row).transpose()
    }

    /// The names of the VMs that roles or group rules are scoped to, by id: roles store a
    /// VM's id and are shown with its current name.
    pub async fn vm_names(&self) -> Result<std::collections::HashMap<String, String>> {
        let rows = sqlx::query(
            "SELECT v.id, v.name FROM vms v WHERE v.id IN \
             (SELECT scope_target FROM role_assignments WHERE scope_kind = 'vm' \
              UNION SELECT scope_target FROM group_role_rules WHERE scope_kind = 'vm')",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("id")?, r.try_get("name")?)))
            .collect()
    }

    /// Whether any VM is in `group`.
    pub async fn group_exists(&self, group: &str) -> Result<bool> {
        let row = sqlx::query("SELECT 1 AS one FROM vms WHERE resource_group = $1 LIMIT 1")
            .bind(group)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.is_some())
    }

    pub async fn get_vm_by_name(&self, name: &str) -> Result<Option<StoredVm>> {
        let sql = format!("SELECT {VM_COLUMNS} FROM vms v WHERE v.name = $1");
        let row = sqlx::query(&sql)
            .bind(name)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(vm_from_row).transpose()
    }

    /// One page of a JIT tab, and how many VMs each tab holds under the same search and
    /// scope.
    pub async fn list_vms(&self, q: &VmListQuery) -> Result<(Vec<VmSummary>, TabCounts)> {
        let mut filter = String::new();
        let mut binds: Vec<Bind> = Vec::new();
        // ASCII letters fold, others match as typed: the same on both backends (SQLite's
        // lower() folds ASCII alone), and what PostgreSQL's trigram indexes hold.
        let search = q.search.trim().to_ascii_lowercase();
        let order = match q.sort.as_str() {
            "group" => "v.resource_group",
            "os" => "v.os",
            _ => "v.name",
        };
        let dir = if q.desc { "DESC" } else { "ASC" };
        // Names are unique: they break ties, and need no second key of their own (which
        // would cost SQLite a sort of its own).
        let ties = if order == "v.name" {
            ""
        } else {
            ", v.name ASC"
        };
        let (limit, offset) = (q.limit.clamp(1, 500), q.offset.max(0));
        let page = |from: &str| {
            format!(
                "SELECT {VM_COLUMNS}, v.jit_configured FROM {from} \
                 ORDER BY {order} {dir}{ties} LIMIT {limit} OFFSET {offset}"
            )
        };
        // On SQLite, when the viewer sees every VM and the text has the three characters a
        // trigram needs, the search index counts each tab's matches (0024): it matches
        // exactly what the LIKE matches, and reading each match's row from `vms` cost as
        // much as reading every VM (10,000 matches at 100,000 VMs: 20-25 ms; the index
        // alone: 4 ms). Unless too many match, it finds the page's rows too.
        let mut index_counts = None;
        if self.search_index
            && q.scope.everything
            && q.only_id.is_none()
            && search.chars().count() >= 3
        {
            // A text held by groups' names and no VM's name ("group-9") is answered by
            // the groups: their kept counts (0023) are the titles, and the page reads
            // their VMs by the group index (10,000: 2-5 ms, where the index took 18).
            if self.tab_counts
                && let Some(counts) = self.groups_alone(&search).await?
            {
                let from = format!(
                    "vms v WHERE {} AND v.resource_group IN \
                     (SELECT t.resource_group FROM vm_tab_counts t WHERE {})",
                    q.tab.condition(),
                    contains("t.resource_group", 1, self.backend)
                );
                let rows = sqlx::query(&page(&from))
                    .bind(like_contains(&search))
                    .fetch_all(&self.pool)
                    .await?;
                return Ok((self.summaries(&rows).await?, counts));
            }
            let counts = self.indexed_counts(&search).await?;
            if order == "v.name" && counts.of(q.tab) <= self.search_plan.index_page_most {
                let rows = self.indexed_page(&search, q).await?;
                return Ok((self.summaries(&rows).await?, counts));
            }
            index_counts = Some(counts);
        }
        if !search.is_empty() {
            binds.push(Bind::Text(like_contains(&search)));
            let n = binds.len();
            // On PostgreSQL, with each group's counts kept (0023), a VM's group holds the
            // text when the group's row there does: a hundred-odd rows find the groups,
            // and the group index their VMs, with no text to check again on each (the
            // 10,000 VMs of "group-9": counts 17 -> 6 ms, a page sorting them 18 -> 6).
            let in_group = if self.backend == Backend::Postgres && self.tab_counts {
                format!(
                    "v.resource_group = ANY(ARRAY(SELECT t.resource_group FROM vm_tab_counts t \
                     WHERE {}))",
                    contains("t.resource_group", n, self.backend)
                )
            } else {
                contains("v.resource_group", n, self.backend)
            };
            filter.push_str(&format!(
                " AND ({} OR {in_group})",
                contains("v.name", n, self.backend)
            ));
            // One VM's row (after a change) needs no index to find it. When the index
            // has counted the matches, the count says whether it pays.
            let phrase = match (&q.only_id, index_counts) {
                (Some(_), _) => None,
                (None, Some(counts)) => (counts.of(VmTab::All) <= self.search_plan.narrow_most)
                    .then(|| search_phrase(&search)),
                (None, None) => self.narrow_search(&search).await?,
            };
            if let Some(phrase) = phrase {
                binds.push(Bind::Text(phrase));
                filter.push_str(&format!(
                    " AND v.id IN (SELECT k.vm_id FROM vm_search_keys k WHERE k.key IN \
                     (SELECT rowid FROM vm_search WHERE vm_search MATCH ${}))",
                    binds.len()
                ));
            }
        }
        if let Some(id) = &q.only_id {
            binds.push(Bind::Text(id.clone()));
            filter.push_str(&format!(" AND v.id = ${}", binds.len()));
        }
        // The scope's groups and VM ids, as the numbers of their binds.
        let (mut group_binds, mut id_binds) = (Vec::new(), Vec::new());
        if !q.scope.everything {
            for g in &q.scope.groups {
                binds.push(Bind::Text(g.clone()));
                group_binds.push(binds.len());
            }
            for id in &q.scope.vm_ids {
                binds.push(Bind::Text(id.clone()));
                id_binds.push(binds.len());
            }
            filter.push_str(&format!(
                " AND ({} OR {})",
                any_of("v.resource_group", &group_binds),
                any_of("v.id", &id_binds)
            ));
        }
        // One statement for the four counts. Without a search or a single VM, they are
        // the sums of the counts kept per group (migration 0023), plus the VMs a scope
        // names one by one outside its groups. A search matches anywhere in a name, so
        // then one pass over the matches counts all four rather than four passes one each
        // (on PostgreSQL the trigram indexes find the matches; on SQLite the FTS5 index
        // does, when `narrow_search` says so; above, it counts them itself).
        let kept = self.tab_counts && search.is_empty() && q.only_id.is_none();
        let count = |tab: VmTab, column: &str| {
            if kept {
                let in_groups = |col: &str| {
                    if q.scope.everything {
                        "1 = 1".to_owned()
                    } else {
                        any_of(col, &group_binds)
                    }
                };
                let mut sum = format!(
                    "(SELECT COALESCE(SUM(t.{column}), 0) FROM vm_tab_counts t WHERE {})",
                    in_groups("t.resource_group")
                );
                if !id_binds.is_empty() {
                    sum.push_str(&format!(
                        " + (SELECT COUNT(*) FROM vms v WHERE {} AND {} AND NOT {})",
                        tab.condition(),
                        any_of("v.id", &id_binds),
                        in_groups("v.resource_group")
                    ));
                }
                // PostgreSQL sums BIGINT as NUMERIC.
                format!("CAST({sum} AS BIGINT)")
            } else {
                format!(
                    "(SELECT COUNT(*) FROM vms v WHERE {}{filter})",
                    tab.condition()
                )
            }
        };
        let counts = match index_counts {
            Some(counts) => counts,
            None => {
                let count_sql = if search.is_empty() {
                    let columns = TAB_COUNTS
                        .iter()
                        .map(|(tab, column, _)| format!("{} AS {column}", count(*tab, column)))
                        .collect::<Vec<_>>()
                        .join(", ");
                    format!("SELECT {columns}")
                } else {
                    format!("SELECT {} FROM vms v WHERE 1 = 1{filter}", tab_sums())
                };
                let row = bind_all(sqlx::query(&count_sql), &binds)
                    .fetch_one(&self.pool)
                    .await?;
                counts_from(&row)?
            }
        };
        let fetch = |from: String| {
            let sql = page(&from);
            let binds = &binds;
            async move {
                bind_all(sqlx::query(&sql), binds)
                    .fetch_all(&self.pool)
                    .await
            }
        };
        if self.backend == Backend::Postgres && !search.is_empty() {
            let plan = self.search_plan;
            let on_tab = counts.of(q.tab);
            // PostgreSQL prices walking a tab in name order until it has a page of matches
            // as if the matches were spread evenly; a group's VMs cluster, and for
            // "group-42" it walked 21,000 entries for 25 rows (17 ms). When few VMs match
            // (the count says how many), finding them all by the indexes and sorting them
            // is cheap (4 ms) and cannot go wrong.
            if on_tab <= plan.few_on_tab {
                let fenced = format!(
                    "(SELECT {VM_COLUMNS}, v.jit_configured FROM vms v WHERE {}{filter} \
                     OFFSET 0) v",
                    q.tab.condition()
                );
                return Ok((self.summaries(&fetch(fenced).await?).await?, counts));
            }
            // Many matches are found soonest by walking the tab in name order, unless they
            // come last ("group-9": past 90,000 entries, one heap fetch each, 36 ms). So
            // the walk stops after the page's own entries and a few thousand more: the
            // matches in a prefix of the tab in name order are its first ones, so a full
            // page there is the page. (A short one is not trusted to be the last: the
            // count came from an earlier statement, and a match written since ahead of
            // the page would push one out past the prefix.)
            if order == "v.name" {
                let bound = offset + limit + plan.walk_beyond;
                let prefix = format!(
                    "(SELECT {VM_COLUMNS}, v.jit_configured FROM vms v WHERE {} \
                     ORDER BY v.name {dir} LIMIT {bound}) v WHERE 1 = 1{filter}",
                    q.tab.condition()
                );
                let rows = fetch(prefix).await?;
                if rows.len() as i64 == limit {
                    return Ok((self.summaries(&rows).await?, counts));
                }
            }
            // Late matches, unless there are too many anywhere: every match, then the
            // tab's, sorted (10,000 in 5-6 ms). The tab's condition stays outside the
            // fence: inside it, the planner walked the tab's index in name order after all.
            if counts.of(VmTab::All) <= plan.late_most {
                let matches = format!(
                    "(SELECT {VM_COLUMNS}, v.jit_configured FROM vms v WHERE 1 = 1{filter} \
                     OFFSET 0) v WHERE {}",
                    q.tab.condition()
                );
                return Ok((self.summaries(&fetch(matches).await?).await?, counts));
            }
        }
        let rows = fetch(format!("vms v WHERE {}{filter}", q.tab.condition())).await?;
        Ok((self.summaries(&rows).await?, counts))
    }

    /// Makes the JIT tabs' counts per resource group (0023) those of the VMs again, if
    /// they have drifted: their triggers skip writes made with PostgreSQL's
    /// `session_replication_role = replica` (loaders, replication tools) or while they
    /// were disabled. Searches find a group's VMs through its row there, so a missing row
    /// would hide them, not only miscount them. Returns how many groups were wrong.
    pub async fn repair_tab_counts(&self) -> Result<usize> {
        let actual = format!(
            "SELECT v.resource_group, {} FROM vms v GROUP BY v.resource_group",
            tab_sums()
        );
        let by_group = |rows: Vec<AnyRow>| -> Result<HashMap<String, TabCounts>> {
            rows.iter()
                .map(|r| Ok((r.try_get("resource_group")?, counts_from(r)?)))
                .collect()
        };
        let mut tx = self.begin_write().await?;
        let want = by_group(sqlx::query(&actual).fetch_all(&mut *tx.tx).await?)?;
        let kept = by_group(
            sqlx::query(
                "SELECT t.resource_group, t.configured, t.recommended, t.not_configured, \
                 t.unsupported FROM vm_tab_counts t",
            )
            .fetch_all(&mut *tx.tx)
            .await?,
        )?;
        let wrong = want
            .iter()
            .filter(|(group, counts)| kept.get(*group) != Some(*counts))
            .count()
            + kept.keys().filter(|g| !want.contains_key(*g)).count();
        if wrong > 0 {
            sqlx::query("DELETE FROM vm_tab_counts")
                .execute(&mut *tx.tx)
                .await?;
            sqlx::query(&format!(
                "INSERT INTO vm_tab_counts (resource_group, configured, recommended, \
                 not_configured, unsupported) {actual}"
            ))
            .execute(&mut *tx.tx)
            .await?;
        }
        tx.commit().await?;
        Ok(wrong)
    }

    /// A page's rows, with the Configured tab's figures.
    async fn summaries(&self, rows: &[sqlx::any::AnyRow]) -> Result<Vec<VmSummary>> {
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            out.push(VmSummary {
                vm: vm_from_row(row)?,
                has_policy: row.try_get::<i64, _>("jit_configured")? == 1,
                approved_last_7d: 0,
                last_access_at: None,
                last_user: None,
                active_grants: Vec::new(),
            });
        }
        self.add_figures(&mut out).await?;
        Ok(out)
    }

    /// On SQLite, each tab's count of the VMs holding `search` (three characters or more,
    /// folded) when only groups' names hold it: at least one group's, no VM's, and their
    /// VMs are few enough to sort (`SearchPlan::index_page_most`), among at most
    /// `GROUPS_ALONE_MOST` groups. The groups' kept counts
    /// (0023) give the counts; the search index says that no name holds the text.
    async fn groups_alone(&self, search: &str) -> Result<Option<TabCounts>> {
        let columns = TAB_COUNTS
            .iter()
            .map(|(_, column, _)| format!("COALESCE(SUM(t.{column}), 0) AS {column}"))
            .collect::<Vec<_>>()
            .join(", ");
        // Every group's row is read for the LIKE: with many groups (one VM each, say) it
        // would cost more than it saves, and the index answers as before. SQLite reads a
        // condition on no table once, before the rows.
        let row = sqlx::query(&format!(
            "SELECT COUNT(*) AS matched_groups, {columns} FROM vm_tab_counts t \
             WHERE (SELECT COUNT(*) FROM vm_tab_counts) <= {GROUPS_ALONE_MOST} AND {}",
            contains("t.resource_group", 1, self.backend)
        ))
        .bind(like_contains(search))
        .fetch_one(&self.pool)
        .await?;
        let counts = counts_from(&row)?;
        if row.try_get::<i64, _>("matched_groups")? == 0
            || counts.of(VmTab::All) > self.search_plan.index_page_most
        {
            return Ok(None);
        }
        let names: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM (SELECT rowid FROM vm_search WHERE vm_search MATCH $1 LIMIT 1)",
        )
        .bind(format!("name : {}", search_phrase(search)))
        .fetch_one(&self.pool)
        .await?;
        Ok((names == 0).then_some(counts))
    }

    /// On SQLite, each tab's count of the VMs holding `search` (three characters or
    /// more, folded), from the search index alone (0024): one count per tab, its mark
    /// first.
    async fn indexed_counts(&self, search: &str) -> Result<TabCounts> {
        let columns = TAB_COUNTS
            .iter()
            .enumerate()
            .map(|(i, (_, column, _))| {
                format!(
                    "(SELECT COUNT(*) FROM vm_search WHERE vm_search MATCH ${}) AS {column}",
                    i + 1
                )
            })
            .collect::<Vec<_>>()
            .join(", ");
        let queries: Vec<Bind> = TAB_COUNTS
            .iter()
            .map(|(tab, _, _)| Bind::Text(search_on_tab(search, *tab)))
            .collect();
        let row = bind_all(sqlx::query(&format!("SELECT {columns}")), &queries)
            .fetch_one(&self.pool)
            .await?;
        counts_from(&row)
    }

    /// On SQLite, a page of `q.tab`'s VMs holding `search`, in name order, from the search
    /// index: the keys of the tab's matches carry their VMs' names (0024), so the page
    /// sorts those and reads its own rows alone, where a walk of the tab in name order
    /// read every VM before the first match (past 90,000 for "group-9": 30-45 ms).
    async fn indexed_page(&self, search: &str, q: &VmListQuery) -> Result<Vec<sqlx::any::AnyRow>> {
        let dir = if q.desc { "DESC" } else { "ASC" };
        let sql = format!(
            "SELECT {VM_COLUMNS}, v.jit_configured FROM vms v WHERE v.id IN \
             (SELECT k.vm_id FROM vm_search_keys k WHERE k.key IN \
              (SELECT rowid FROM vm_search WHERE vm_search MATCH $1) \
              ORDER BY k.name {dir} LIMIT {} OFFSET {}) \
             ORDER BY v.name {dir}",
            q.limit.clamp(1, 500),
            q.offset.max(0)
        );
        Ok(sqlx::query(&sql)
            .bind(search_on_tab(search, q.tab))
            .fetch_all(&self.pool)
            .await?)
    }

    /// On SQLite, the FTS5 query (migrations 0022, 0024) that finds the VMs holding
    /// `search`, when it pays: the text has the three characters a trigram needs, and few
    /// enough VMs hold it that fetching them by key costs less than reading every VM (at
    /// 100,000 VMs, a thousand matches take 3 ms that way and a scan 20–25 ms; ten
    /// thousand take longer than the scan). One statement that stops counting at the
    /// bound decides it. The LIKE still runs on the rows the index finds, where it costs
    /// little. PostgreSQL's trigram indexes need no such help (0021).
    async fn narrow_search(&self, search: &str) -> Result<Option<String>> {
        if !self.search_index || search.chars().count() < 3 {
            return Ok(None);
        }
        let phrase = search_phrase(search);
        let found: i64 = sqlx::query_scalar(&format!(
            "SELECT COUNT(*) FROM (SELECT rowid FROM vm_search WHERE vm_search MATCH $1 \
             LIMIT {})",
            self.search_plan.narrow_most + 1
        ))
        .bind(&phrase)
        .fetch_one(&self.pool)
        .await?;
        Ok((found <= self.search_plan.narrow_most).then_some(phrase))
    }

    /// Fills in the Configured tab's figures of the rows with a policy: one query per
    /// figure for the whole page, so that a page costs the same however many rows it has.
    async fn add_figures(&self, rows: &mut [VmSummary]) -> Result<()> {
        let ids: Vec<&str> = rows
            .iter()
            .filter(|r| r.has_policy)
            .map(|r| r.vm.id.as_str())
            .collect();
        if ids.is_empty() {
            return Ok(());
        }
        let week_ago = self.now_ms() - 7 * 24 * 3600 * 1000;
        let mut binds: Vec<Bind> = ids.iter().map(|id| Bind::Text((*id).to_owned())).collect();
        let list = placeholders(1, ids.len());
        binds.push(Bind::Int(week_ago));
        let approved_sql = format!(
            "SELECT vm_id, COUNT(*) AS n FROM access_requests WHERE vm_id IN ({list}) \
             AND created_at >= ${} AND start_at IS NOT NULL GROUP BY vm_id",
            binds.len()
        );
        let approved = bind_all(sqlx::query(&approved_sql), &binds)
            .fetch_all(&self.pool)
            .await?;
        binds.pop();
        // Each VM's latest start first, then the request(s) starting then: an index on
        // (vm_id, start_at) answers both by seeking, where a join ordered by start_at
        // would read every started request of the page's VMs. Requests that start in the
        // same millisecond are told apart by id, so that the page does not flicker.
        let last_sql = format!(
            "SELECT m.vm_id, r.id, r.start_at, u.username FROM \
             (SELECT v.id AS vm_id, (SELECT MAX(a.start_at) FROM access_requests a \
               WHERE a.vm_id = v.id) AS last_at FROM vms v WHERE v.id IN ({list})) m \
             JOIN access_requests r ON r.vm_id = m.vm_id AND r.start_at = m.last_at \
             JOIN users u ON u.id = r.requester_id"
        );
        let last = bind_all(sqlx::query(&last_sql), &binds)
            .fetch_all(&self.pool)
            .await?;
        // No ORDER BY: sorting by end_at tempts SQLite to walk every active grant through
        // request_ports_active(status, end_at) instead of seeking each VM's grants through
        // request_ports_vm_end(vm_id, status, end_at). The page sorts its few rows itself.
        let grants_sql = format!(
            "SELECT vm_id, port, protocol, source_prefix, end_at FROM request_ports \
             WHERE vm_id IN ({list}) AND status = 'active'"
        );
        let grants = bind_all(sqlx::query(&grants_sql), &binds)
            .fetch_all(&self.pool)
            .await?;

        let index: HashMap<String, usize> = rows
            .iter()
            .enumerate()
            .map(|(i, r)| (r.vm.id.clone(), i))
            .collect();
        let row_of = |vm_id: &str| {
            index
                .get(vm_id)
                .copied()
                .ok_or_else(|| StoreError::Corrupt("figure of a VM not on the page".into()))
        };
        for r in &approved {
            let i = row_of(&r.try_get::<String, _>("vm_id")?)?;
            rows[i].approved_last_7d = r.try_get("n")?;
        }
        let mut last_id: HashMap<usize, String> = HashMap::new();
        for r in &last {
            let i = row_of(&r.try_get::<String, _>("vm_id")?)?;
            let id: String = r.try_get("id")?;
            if last_id.get(&i).is_some_and(|seen| *seen <= id) {
                continue;
            }
            last_id.insert(i, id);
            rows[i].last_access_at = r.try_get("start_at")?;
            rows[i].last_user = Some(r.try_get("username")?);
        }
        for r in &grants {
            let i = row_of(&r.try_get::<String, _>("vm_id")?)?;
            rows[i].active_grants.push((
                r.try_get("port")?,
                r.try_get("protocol")?,
                r.try_get("source_prefix")?,
                r.try_get::<Option<i64>, _>("end_at")?.unwrap_or_default(),
            ));
        }
        for row in rows.iter_mut() {
            // By end, then the rest of the grant, so that equal ends keep one order.
            row.active_grants
                .sort_by(|a, b| (a.3, a.0, &a.1, &a.2).cmp(&(b.3, b.0, &b.1, &b.2)));
        }
        Ok(())
    }

    /// VMs by id, in no particular order; ids that name no VM are left out.
    pub async fn get_vms(&self, ids: &[String]) -> Result<Vec<StoredVm>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let sql = format!(
            "SELECT {VM_COLUMNS} FROM vms v WHERE v.id IN ({})",
            placeholders(1, ids.len())
        );
        let binds: Vec<Bind> = ids.iter().map(|id| Bind::Text(id.clone())).collect();
        let rows = bind_all(sqlx::query(&sql), &binds)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(vm_from_row).collect()
    }

    /// The policies of these VMs, by VM id (VMs without one are absent): two queries
    /// however many VMs, for the pages that list policies.
    pub async fn get_policies(&self, vm_ids: &[String]) -> Result<HashMap<String, JitPolicy>> {
        if vm_ids.is_empty() {
            return Ok(HashMap::new());
        }
        let list = placeholders(1, vm_ids.len());
        let binds: Vec<Bind> = vm_ids.iter().map(|id| Bind::Text(id.clone())).collect();
        let with_policy = format!("SELECT vm_id FROM jit_policies WHERE vm_id IN ({list})");
        let mut out = HashMap::new();
        for row in bind_all(sqlx::query(&with_policy), &binds)
            .fetch_all(&self.pool)
            .await?
        {
            out.insert(row.try_get("vm_id")?, JitPolicy { rules: Vec::new() });
        }
        let rules = format!(
            "SELECT vm_id, {RULE_COLUMNS} FROM port_rules WHERE vm_id IN ({list}) \
             ORDER BY vm_id, position"
        );
        for row in bind_all(sqlx::query(&rules), &binds)
            .fetch_all(&self.pool)
            .await?
        {
            let vm_id: String = row.try_get("vm_id")?;
            // Rules outlive no policy (they cascade), so a miss is a policy removed between
            // the two reads: it is then absent, as it would be a moment later.
            if let Some(policy) = out.get_mut(&vm_id) {
                policy.rules.push(rule_from_row(&row)?);
            }
        }
        Ok(out)
    }

    pub async fn get_policy(&self, vm_id: &str) -> Result<Option<JitPolicy>> {
        let mut conn = self.pool.acquire().await?;
        load_policy(&mut conn, vm_id).await
    }
}

const RULE_COLUMNS: &str = "port, protocol, allowed_sources, max_duration_secs, justification_required, \
     approval_required, approval_timeout_secs, widest_prefix_v4, widest_prefix_v6, approvals_required, max_lead_secs";

/// A port rule as stored, checked again on the way out: a row the domain would refuse
/// is reported as corrupt rather than enforced.
fn rule_from_row(r: &AnyRow) -> Result<PortRule> {
    let corrupt = |what: &str| StoreError::Corrupt(format!("port rule {what}"));
    let port: i64 = r.try_get("port")?;
    let protocol: String = r.try_get("protocol")?;
    let sources: String = r.try_get("allowed_sources")?;
    let widest = |column: &str, max: u8| -> Result<u8> {
        u8::try_from(r.try_get::<i64, _>(column)?)
            .ok()
            .filter(|n| (1..=max).contains(n))
            .ok_or_else(|| corrupt(column))
    };
    Ok(PortRule {
        port: u16::try_from(port)
            .ok()
            .and_then(Port::new)
            .ok_or_else(|| corrupt("port"))?,
        protocol: Protocol::parse(&protocol).map_err(|_| corrupt("protocol"))?,
        allowed_sources: AllowedSources::parse(&sources).map_err(|_| corrupt("sources"))?,
        max_duration: MaxDuration::from_secs(r.try_get("max_duration_secs")?)
            .map_err(|_| corrupt("duration"))?,
        justification_required: r.try_get::<i64, _>("justification_required")? != 0,
        approval_required: r.try_get::<i64, _>("approval_required")? != 0,
        approval_timeout: ApprovalTimeout::from_secs(r.try_get("approval_timeout_secs")?)
            .map_err(|_| corrupt("approval time-out"))?,
        widest_source: WidestPrefix {
            v4: widest("widest_prefix_v4", 32)?,
            v6: widest("widest_prefix_v6", 128)?,
        },
        approvals_required: Approvers::from_count(r.try_get("approvals_required")?)
            .map_err(|_| corrupt("approvers"))?,
        max_lead: LeadTime::from_secs(r.try_get("max_lead_secs")?)
            .map_err(|_| corrupt("lead time"))?,
    })
}

/// A VM's policy as `conn` sees it (a pooled connection, or a write transaction).
async fn load_policy(conn: &mut AnyConnection, vm_id: &str) -> Result<Option<JitPolicy>> {
    let exists = sqlx::query("SELECT vm_id FROM jit_policies WHERE vm_id = $1")
        .bind(vm_id)
        .fetch_optional(&mut *conn)
        .await?;
    if exists.is_none() {
        return Ok(None);
    }
    let sql = format!("SELECT {RULE_COLUMNS} FROM port_rules WHERE vm_id = $1 ORDER BY position");
    let rules = sqlx::query(&sql)
        .bind(vm_id)
        .fetch_all(&mut *conn)
        .await?
        .iter()
        .map(rule_from_row)
        .collect::<Result<Vec<_>>>()?;
    Ok(Some(JitPolicy { rules }))
}

impl WriteTx {
    /// A VM as this transaction sees it.
    pub async fn vm(&mut self, id: &str) -> Result<Option<StoredVm>> {
        let sql = format!("SELECT {VM_COLUMNS} FROM vms v WHERE v.id = $1");
        let row = sqlx::query(&sql)
            .bind(id)
            .fetch_optional(&mut *self.tx)
            .await?;
        row.as_ref().map(vm_from_row).transpose()
    }

    /// A VM's policy as this transaction sees it.
    pub async fn policy(&mut self, vm_id: &str) -> Result<Option<JitPolicy>> {
        load_policy(&mut self.tx, vm_id).await
    }

    /// Creates or replaces a VM's policy (its rules only: what becomes of the grants in
    /// force is the caller's decision, made in the same transaction) and moves the VM's
    /// generation forward.
    pub async fn set_policy(&mut self, vm_id: &str, policy: &JitPolicy, actor: &str) -> Result<()> {
        let now = self.now;
        sqlx::query("DELETE FROM port_rules WHERE vm_id = $1")
            .bind(vm_id)
            .execute(&mut *self.tx)
            .await?;
        let updated = sqlx::query("UPDATE jit_policies SET updated_at = $1 WHERE vm_id = $2")
            .bind(now)
            .bind(vm_id)
            .execute(&mut *self.tx)
            .await?;
        if updated.rows_affected() == 0 {
            sqlx::query("INSERT INTO jit_policies (vm_id, created_by, created_at, updated_at) VALUES ($1, $2, $3, $3)")
                .bind(vm_id)
                .bind(actor)
                .bind(now)
                .execute(&mut *self.tx)
                .await?;
            self.set_configured(vm_id, true).await?;
        }
        for (position, rule) in policy.rules.iter().enumerate() {
            sqlx::query(
                "INSERT INTO port_rules (id, vm_id, position, port, protocol, allowed_sources, \
                 max_duration_secs, justification_required, approval_required, approval_timeout_secs, \
                 widest_prefix_v4, widest_prefix_v6, approvals_required, max_lead_secs) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
            )
            .bind(new_id())
            .bind(vm_id)
            .bind(position as i64)
            .bind(i64::from(rule.port.get()))
            .bind(rule.protocol.as_str())
            .bind(rule.allowed_sources.to_string())
            .bind(rule.max_duration.secs())
            .bind(i64::from(rule.justification_required))
            .bind(i64::from(rule.approval_required))
            .bind(rule.approval_timeout.secs())
            .bind(i64::from(rule.widest_source.v4))
            .bind(i64::from(rule.widest_source.v6))
            .bind(i64::from(rule.approvals_required.get()))
            .bind(rule.max_lead.secs())
            .execute(&mut *self.tx)
            .await?;
        }
        self.bump_generation(vm_id).await
    }

    /// Removes a VM's policy (its rules go with it); false when it had none. The grants
    /// and waiting requests on the VM are the caller's to end in the same transaction.
    pub async fn delete_policy(&mut self, vm_id: &str) -> Result<bool> {
        let done = sqlx::query("DELETE FROM jit_policies WHERE vm_id = $1")
            .bind(vm_id)
            .execute(&mut *self.tx)
            .await?;
        if done.rows_affected() == 0 {
            return Ok(false);
        }
        self.set_configured(vm_id, false).await?;
        self.bump_generation(vm_id).await?;
        Ok(true)
    }

    /// Keeps `vms.jit_configured`, which puts the VM on its JIT tab, equal to whether a
    /// policy exists: set with the policy's creation and removal, in their transaction.
    async fn set_configured(&mut self, vm_id: &str, configured: bool) -> Result<()> {
        sqlx::query("UPDATE vms SET jit_configured = $1 WHERE id = $2")
            .bind(i64::from(configured))
            .bind(vm_id)
            .execute(&mut *self.tx)
            .await?;
        Ok(())
    }

    /// Removes a VM with its requests, and the roles scoped to it (which would otherwise
    /// dangle, meaning nothing until an id happened to be reused). Its grants must have
    /// been ended first, in this transaction, so that their ending is logged.
    pub async fn delete_vm(&mut self, id: &str) -> Result<bool> {
        let done = sqlx::query("DELETE FROM vms WHERE id = $1")
            .bind(id)
            .execute(&mut *self.tx)
            .await?;
        if done.rows_affected() == 0 {
            return Ok(false);
        }
        // Its agent's waiting poll learns at once that the VM is gone.
        self.announce(id);
        sqlx::query("DELETE FROM role_assignments WHERE scope_kind = 'vm' AND scope_target = $1")
            .bind(id)
            .execute(&mut *self.tx)
            .await?;
        sqlx::query("DELETE FROM group_role_rules WHERE scope_kind = 'vm' AND scope_target = $1")
            .bind(id)
            .execute(&mut *self.tx)
            .await?;
        Ok(true)
    }

    pub async fn update_vm(&mut self, id: &str, f: &VmFields) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE vms SET name = $1, resource_group = $2, addresses = $3, os = $4, exposed_ports = $5, \
             updated_at = $6 WHERE id = $7",
        )
        .bind(&f.name)
        .bind(&f.group)
        .bind(&f.addresses)
        .bind(&f.os)
        .bind(&f.exposed_ports)
        .bind(self.now)
        .bind(id)
        .execute(&mut *self.tx)
        .await
        .map_err(StoreError::from_write)?;
        Ok(done.rows_affected() == 1)
    }
}
