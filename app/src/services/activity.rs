//! The activity log as users see it: filtered pages, CSV export, chain verification.

use super::Actor;
use crate::domain::audit::ChainStatus;
use crate::domain::{Action, Resource, permits};
use crate::error::{AppError, AppResult};
use crate::store::{LogEntry, LogQuery, Store};

pub fn require_log(actor: &Actor) -> AppResult<()> {
    if permits(&actor.roles, Action::ViewActivityLog, &Resource::Global) {
        Ok(())
    } else {
        Err(AppError::Forbidden)
    }
}

pub async fn page(store: &Store, actor: &Actor, q: &LogQuery) -> AppResult<(Vec<LogEntry>, i64)> {
    require_log(actor)?;
    Ok(store.query_log(q).await?)
}

pub async fn verify(store: &Store, actor: &Actor) -> AppResult<ChainStatus> {
    require_log(actor)?;
    Ok(store.verify_log().await?)
}

fn csv_field(s: &str) -> String {
    // Quote everything; neutralise leading formula characters for spreadsheet users.
    let s = if s.starts_with(['=', '+', '-', '@']) {
        format!("'{s}")
    } else {
        s.to_owned()
    };
    format!("\"{}\"", s.replace('"', "\"\""))
}

pub async fn csv(store: &Store, actor: &Actor, mut q: LogQuery) -> AppResult<String> {
    require_log(actor)?;
    q.offset = 0;
    q.limit = 10_000;
    let (entries, _) = store.query_log(&q).await?;
    let mut out = String::from(
        "seq,time_utc,actor,client_ip,action,vm,ports,source,justification,result,detail,hash\n",
    );
    for e in entries {
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
        out.push_str(
            &row.iter()
                .map(|f| csv_field(f))
                .collect::<Vec<_>>()
                .join(","),
        );
        out.push('\n');
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #[test]
    fn csv_fields_are_quoted_and_formulas_defused() {
        assert_eq!(super::csv_field("a\"b"), "\"a\"\"b\"");
        assert_eq!(super::csv_field("=cmd()"), "\"'=cmd()\"");
    }
}
