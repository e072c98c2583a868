//! The page to add many VMs from a CSV file: paste the text (or, with JavaScript, choose
//! the file, which is read in the browser into the same text box), preview every row
//! with its values or its problems, and import only a file with no problem.
//!
//! Without JavaScript the page is a plain form: the text box is posted (a file input
//! would need a multipart post, which server functions do not take), and the preview
//! comes back from the session once ([`take_import_preview`]).

use crate::api::vm_import::{ImportVms, take_import_preview};
use crate::components::{FormAlert, Shell, TableHead, action_error, col};
use crate::domain::vm_import::{COLUMNS, MAX_ROWS};
use crate::model::{ImportPreview, ImportProblem};
use leptos::prelude::*;
use leptos_meta::Title;

/// The largest file the browser reads into the text box: a form post carries the text
/// URL-encoded (a comma takes three bytes), within the server's limit of 256 KiB per
/// request. Larger files go through the CLI or the REST API.
#[cfg(feature = "hydrate")]
const MAX_FILE_BYTES: f64 = 96.0 * 1024.0;

fn problem_text(p: &ImportProblem) -> String {
    if p.column.is_empty() {
        format!("Line {}: {}", p.line, p.message)
    } else {
        format!("Line {}, {}: {}", p.line, p.column, p.message)
    }
}

#[component]
fn PreviewTable(preview: ImportPreview) -> impl IntoView {
    let problems = preview.problem_count();
    let rows = preview.rows.len();
    view! {
        <section class="card" data-testid="import-preview">
            <h2>"Preview"</h2>
            {if problems == 0 {
                view! {
                    <p role="status" data-testid="import-summary">
                        {format!("{rows} VM{} ready to import. Nothing is stored until you press Import.", if rows == 1 { "" } else { "s" })}
                    </p>
                }.into_any()
            } else {
                view! {
                    <div class="alert error" role="alert" data-testid="import-summary">
                        {format!("{problems} problem{} found: fix {} and preview again. Nothing is stored while any row has a problem.",
                            if problems == 1 { "" } else { "s" }, if problems == 1 { "it" } else { "them" })}
                    </div>
                }.into_any()
            }}
            <ul class="import-problems" data-testid="import-file-problems">
                {preview.file_problems.iter().map(|p| view! { <li class="field-error">{problem_text(p)}</li> }).collect_view()}
            </ul>
            <table class="table" data-testid="import-rows">
                <caption class="sr-only">"The rows of the file"</caption>
                <TableHead cols=&[col::LINE, col::NAME, col::GROUP, col::ADDRESSES, col::OS, col::EXPOSED_PORTS, col::PROBLEMS] />
                <tbody>
                    {preview.rows.into_iter().map(|r| {
                        let bad = !r.problems.is_empty();
                        view! {
                            <tr class:invalid=bad data-testid="import-row" data-line=r.line.to_string()>
                                <td data-label=col::LINE>{r.line}</td>
                                <td data-label=col::NAME>{r.name}</td>
                                <td data-label=col::GROUP>{r.group}</td>
                                <td data-label=col::ADDRESSES>{r.addresses}</td>
                                <td data-label=col::OS>{r.os}</td>
                                <td data-label=col::EXPOSED_PORTS>{r.exposed_ports}</td>
                                <td data-label=col::PROBLEMS>
                                    <ul class="import-problems">
                                        {r.problems.iter().map(|p| view! {
                                            <li class="field-error" data-testid="import-problem">{problem_text(p)}</li>
                                        }).collect_view()}
                                    </ul>
                                </td>
                            </tr>
                        }
                    }).collect_view()}
                </tbody>
            </table>
        </section>
    }
}

#[component]
pub fn ImportVmsPage() -> impl IntoView {
    let import = ServerAction::<ImportVms>::new();
    let err = action_error(import);
    // Left in the session by a plain form post (no JavaScript).
    let waiting = Resource::new(|| (), |_| take_import_preview());
    let textarea = NodeRef::<leptos::html::Textarea>::new();
    let file_problem = RwSignal::new(None::<String>);
    // The file chooser needs JavaScript: it stays hidden until the page is hydrated.
    let ready = RwSignal::new(false);
    Effect::new(move |_| ready.set(true));

    let on_file = move |ev: leptos::ev::Event| {
        #[cfg(feature = "hydrate")]
        {
            use wasm_bindgen::JsCast;
            file_problem.set(None);
            let Some(file) = ev
                .target()
                .and_then(|t| t.dyn_into::<web_sys::HtmlInputElement>().ok())
                .and_then(|input| input.files())
                .and_then(|files| files.get(0))
            else {
                return;
            };
            if file.size() > MAX_FILE_BYTES {
                file_problem.set(Some(format!(
                    "{} is larger than {} KiB: split it, or import it with `portcullis vm import`.",
                    file.name(),
                    MAX_FILE_BYTES as u64 / 1024
                )));
                return;
            }
            leptos::task::spawn_local(async move {
                match wasm_bindgen_futures::JsFuture::from(file.text()).await {
                    Ok(text) => {
                        if let (Some(text), Some(area)) =
                            (text.as_string(), textarea.get_untracked())
                        {
                            area.set_value(&text);
                        }
                    }
                    Err(_) => file_problem.set(Some(format!("{} could not be read.", file.name()))),
                }
            });
        }
        #[cfg(not(feature = "hydrate"))]
        let _ = (ev, textarea, file_problem);
    };

    let body = move || {
        Suspend::new(async move {
            let waiting = waiting.await.ok().flatten();
            let initial = waiting.as_ref().map(|p| p.csv.clone()).unwrap_or_default();
            let current = Signal::derive(move || {
                import
                    .value()
                    .get()
                    .and_then(Result::ok)
                    .or_else(|| waiting.clone())
            });
            let importable = move || {
                current
                    .get()
                    .map(|p| (p.problem_count() == 0 && !p.rows.is_empty(), p.rows.len()))
            };
            view! {
                <section class="card">
                    <p>
                        "One VM per line, after a header row naming the columns: "
                        <code>{COLUMNS.join(",")}</code>
                        ". "<code>"name"</code>" and "<code>"group"</code>" are required, the others may be left out. Several addresses or ports in one cell are separated by spaces or semicolons (or commas, in a quoted cell). At most "
                        {MAX_ROWS.to_string()}
                        " VMs per file; nothing is stored unless every row is sound."
                    </p>
                    <pre class="command">"name,group,addresses,os,exposed_ports\nweb-1,prod,198.51.100.5;2001:db8::5,linux,22\nsql-1,prod,198.51.100.6,windows,3389"</pre>
                    <FormAlert err />
                    <ActionForm action=import attr:class="form">
                        <div class="field" hidden=move || !ready.get()>
                            <label for="import-file">"CSV file"</label>
                            <input id="import-file" type="file" accept=".csv,text/csv,text/plain" on:change=on_file />
                            <p class="hint">"Read here in your browser into the box below; nothing is sent until you preview."</p>
                            <p class="field-error" data-testid="import-file-error" aria-live="polite">{move || file_problem.get()}</p>
                        </div>
                        <div class="field">
                            <label for="import-csv">"CSV text"</label>
                            <textarea id="import-csv" name="csv" rows="12" spellcheck="false" node_ref=textarea>{initial}</textarea>
                            <p class="hint">"Paste the file's text here."</p>
                        </div>
                        <div class="toolbar">
                            <button type="submit" name="step" value="preview" class="btn">"Preview"</button>
                            <span class="import-go">
                                {move || importable().and_then(|(ok, n)| ok.then(|| view! {
                                    <button type="submit" name="step" value="import" class="btn primary" data-testid="import-submit">
                                        {format!("Import {n} VM{}", if n == 1 { "" } else { "s" })}
                                    </button>
                                }))}
                            </span>
                        </div>
                    </ActionForm>
                </section>
                <div class="import-result">
                    {move || current.get().map(|preview| view! { <PreviewTable preview /> })}
                </div>
            }
        })
    };

    view! {
        <Title text="Import VMs" />
        <Shell>
            <h1>"Import VMs from CSV"</h1>
            <p><a href="/vms/new">"Add one VM"</a>" · "<a href="/jit?tab=all">"All VMs"</a></p>
            <Suspense fallback=|| view! { <p>"Loading…"</p> }>{body}</Suspense>
        </Shell>
    }
}
