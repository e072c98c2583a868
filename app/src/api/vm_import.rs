//! Server functions of the import page: preview a CSV file of VMs, and import it.
//!
//! One function does both (the form's two buttons send `step=preview` or `step=import`),
//! so that the page works as a plain form post too: without JavaScript the answer is a
//! redirect back to the page, so the text previewed waits in the session
//! ([`take_import_preview`] shows it again, previewed afresh) and never in a URL.

use crate::error::AppError;
use crate::model::ImportPreview;
use leptos::prelude::*;

/// Where the text of a plain form post's preview waits for the page it returns to.
#[cfg(feature = "ssr")]
const IMPORT_KEY: &str = "vm_import";

#[cfg(feature = "ssr")]
fn preview_view(file: &crate::domain::vm_import::ImportFile, csv: String) -> ImportPreview {
    use crate::domain::vm_import::RowError;
    use crate::model::{ImportProblem, ImportRowView};
    let problem = |e: &RowError| ImportProblem {
        line: e.line,
        column: e.column.clone(),
        message: e.message.clone(),
    };
    ImportPreview {
        csv,
        rows: file
            .rows
            .iter()
            .map(|r| match &r.spec {
                Some(spec) => ImportRowView {
                    line: r.line,
                    name: spec.name.clone(),
                    group: spec.group.clone(),
                    addresses: spec.addresses_text(),
                    os: spec.os.as_str().to_owned(),
                    exposed_ports: spec.exposed_text(),
                    problems: Vec::new(),
                },
                None => ImportRowView {
                    line: r.line,
                    name: r.raw.name.clone(),
                    group: r.raw.group.clone(),
                    addresses: r.raw.addresses.clone(),
                    os: r.raw.os.clone(),
                    exposed_ports: r.raw.exposed_ports.clone(),
                    problems: r.errors.iter().map(problem).collect(),
                },
            })
            .collect(),
        file_problems: file.file_errors.iter().map(problem).collect(),
    }
}

/// Previews `csv` (`step` other than `import`), or imports it: every VM in one
/// transaction, or none while any row has a problem. The answer is the preview; after an
/// import the browser goes to the VMs with "Imported N VMs.".
#[server(endpoint = "import_vms")]
pub async fn import_vms(
    #[server(default)] csv: String,
    #[server(default)] step: String,
) -> Result<ImportPreview, AppError> {
    use crate::domain::vm_import::parse_csv;
    let run = async {
        let c = super::ctx::ctx().await?;
        let actor = c.actor().await?;
        let dry_run = step != "import";
        let out =
            crate::services::jit::import_vms(&c.state.store, &actor, parse_csv(&csv), dry_run)
                .await?;
        if !dry_run && out.file.is_ok() {
            let n = out.added.len();
            super::flash::done(
                &c,
                format!("Imported {n} VM{}.", if n == 1 { "" } else { "s" }),
                Some("/jit?tab=all"),
            )
            .await?;
            return Ok(preview_view(&out.file, String::new()));
        }
        c.keep_for_next_page(IMPORT_KEY, &csv).await?;
        Ok(preview_view(&out.file, csv))
    };
    super::ctx::finish(run.await)
}

/// The preview of the text a plain form post left just before, once, previewed again now
/// (names taken since count).
#[server(endpoint = "take_import_preview")]
pub async fn take_import_preview() -> Result<Option<ImportPreview>, AppError> {
    use crate::domain::vm_import::parse_csv;
    let run = async {
        let c = super::ctx::ctx().await?;
        let actor = c.actor().await?;
        let Some(csv) = c.take_kept::<String>(IMPORT_KEY, |_| true).await? else {
            return Ok(None);
        };
        let out =
            crate::services::jit::import_vms(&c.state.store, &actor, parse_csv(&csv), true).await?;
        Ok(Some(preview_view(&out.file, csv)))
    };
    super::ctx::finish(run.await)
}
