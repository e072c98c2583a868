//! The Just-in-time page: Configured / Recommended / Not configured / Unsupported, each
//! with its count, searchable, sortable and paged on the server so it stays fast with many
//! VMs.

use crate::api::jit::list_vms;
use crate::components::{Countdown, LocalTime, Pager, Shell, StatusBadge, col};
use crate::model::{VmRow, ask};
use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::hooks::use_query_map;

const TABS: [(&str, &str); 4] = [
    ("configured", "Configured"),
    ("recommended", "Recommended"),
    ("not_configured", "Not configured"),
    ("unsupported", "Unsupported"),
];

/// Whether the list is sorted by `col`; no sort asked is by name, so that its link
/// reverses the order as when asked.
fn sorted_by(sort: &str, col: &str) -> bool {
    sort == col || (sort.is_empty() && col == "name")
}

#[component]
pub fn JitPage() -> impl IntoView {
    let query = use_query_map();
    let params = move || {
        let q = query.get();
        (
            q.get("tab")
                .filter(|t| t == "all" || TABS.iter().any(|(id, _)| id == t))
                .unwrap_or_else(|| "configured".into()),
            q.get("q").unwrap_or_default(),
            q.get("sort").unwrap_or_default(),
            q.get("desc").is_some_and(|d| d == "1"),
            q.get("page")
                .and_then(|p| p.parse::<i64>().ok())
                .unwrap_or(1),
        )
    };
    // "Select all on this page" is a link, so that it works without JavaScript too.
    let select_all = move || query.get().get("select").is_some_and(|s| s == "all");
    let data = Resource::new(params, |(tab, q, sort, desc, page)| {
        list_vms(tab, q, sort, desc, page)
    });

    let body = move || {
        let (tab, q, sort, desc, page_no) = params();
        let all = select_all();
        Suspend::new(async move {
            let page = match data.await {
                Ok(p) => p,
                Err(e) => {
                    return view! { <div class="alert error" role="alert">{e.summary()}</div> }
                        .into_any();
                }
            };
            let sort_link = {
                let (tab, q, sort) = (tab.clone(), q.clone(), sort.clone());
                move |col: &str| {
                    let flip = sorted_by(&sort, col) && !desc;
                    format!(
                        "/jit?tab={tab}&q={}&sort={col}{}",
                        urlencode(&q),
                        if flip { "&desc=1" } else { "" }
                    )
                }
            };
            let base = format!(
                "/jit?tab={tab}&q={}&sort={sort}{}",
                urlencode(&q),
                if desc { "&desc=1" } else { "" }
            );
            let configured = tab == "configured";
            let unsupported = tab == "unsupported";
            let status_col = if unsupported {
                col::REASON
            } else {
                col::STATUS
            };
            let here = format!("{base}&page={page_no}");
            let (select_href, select_label, select_name) = if all {
                (here.clone(), "Clear", "Clear the selection")
            } else {
                (
                    format!("{here}&select=all"),
                    "All",
                    "Select all VMs on this page",
                )
            };
            // Ticked boxes, counted as they change once hydrated; without JavaScript the
            // button keeps its general label.
            // A row is ticked only for what its tab's buttons do and the viewer may do
            // there: a ticked VM the services would refuse fails the whole batch.
            let selectable = move |r: &VmRow| {
                if configured {
                    r.may.request || r.may.configure
                } else {
                    !unsupported && r.may.configure
                }
            };
            let ticked = if all {
                page.rows.iter().filter(|r| selectable(r)).count()
            } else {
                0
            };
            let selected = RwSignal::new(ticked);
            let enable_label = move || match selected.get() {
                0 => "Enable JIT on selected VMs".to_owned(),
                1 => "Enable JIT on 1 VM".to_owned(),
                n => format!("Enable JIT on {n} VMs"),
            };
            let rows = page.rows.clone();
            let empty = rows.is_empty();
            let counts = page.counts;
            let tabs = TABS.iter().map(|(id, label)| {
                let href = format!("/jit?tab={id}&q={}", urlencode(&q));
                let active = tab == *id;
                let n = counts.of(id).unwrap_or_default();
                view! {
                    <a href=href class:active=active aria-current=active.then_some("page") data-tab=*id>
                        {format!("{label} ({n})")}
                    </a>
                }
            }).collect_view();
            view! {
                <nav class="tabs" aria-label="VM lists">{tabs}</nav>
                <form method="get" action="/jit" class="search" role="search">
                    <input type="hidden" name="tab" value=tab.clone() />
                    <label for="vm-search">"Search VMs"</label>
                    <input id="vm-search" type="search" name="q" value=q.clone() placeholder="Name or group" />
                    <button type="submit" class="btn">"Search"</button>
                </form>
                {unsupported.then(|| view! {
                    <p class="muted" data-testid="unsupported-help">
                        "These VMs cannot be protected as they are: their agent reports that it cannot enforce rules (nftables missing, or a rule set the host refused). Fix the host, and the VM moves back once its agent reports success."
                    </p>
                })}
                <form method="get" action="/jit/configure" class="bulk">
                    <div class="toolbar">
                        {if configured {
                            view! {
                                {page.can_request.then(|| view! {
                                    <button type="submit" class="btn primary" formaction="/jit/request">"Request access"</button>
                                })}
                                {page.can_configure.then(|| view! {
                                    <button type="submit" class="btn">"Edit JIT policy"</button>
                                })}
                            }.into_any()
                        } else if unsupported {
                            ().into_any()
                        } else {
                            page.can_configure.then(|| view! {
                                <button type="submit" class="btn primary" data-testid="enable-selected">{enable_label}</button>
                            }).into_any()
                        }}
                        {page.can_add_vm.then(|| view! {
                            <a class="btn" href="/vms/new">"Add VM"</a>
                            <a class="btn" href="/vms/import">"Import from CSV"</a>
                        })}
                    </div>
                    // On a phone the heads, and their sort links, are hidden: the same links here.
                    <nav class="sort-bar" aria-label="Sort VMs" data-testid="sort-bar">
                        "Sort by: "
                        {[("name", col::VM), ("group", col::GROUP), ("os", col::OS)]
                            .into_iter()
                            .filter(|(c, _)| *c != "os" || !configured)
                            .map(|(c, label)| {
                                let current = sorted_by(&sort, c);
                                let text = match (current, desc) {
                                    (true, true) => format!("{label} (descending)"),
                                    (true, false) => format!("{label} (ascending)"),
                                    _ => label.to_owned(),
                                };
                                view! {
                                    <a class="btn small" href=sort_link(c) aria-current=current.then_some("true")>{text}</a>
                                    " "
                                }
                            })
                            .collect_view()}
                    </nav>
                    <table class="table" data-testid="vm-table">
                        <caption class="sr-only">{format!("{} VMs", page.total)}</caption>
                        <thead>
                            <tr>
                                <th scope="col"><a href=select_href aria-label=select_name data-testid="select-all">{select_label}</a></th>
                                <th scope="col"><a href=sort_link("name")>{col::VM}</a></th>
                                <th scope="col"><a href=sort_link("group")>{col::GROUP}</a></th>
                                {if configured {
                                    view! {
                                        <th scope="col">{col::APPROVED_7_DAYS}</th>
                                        <th scope="col">{col::LAST_ACCESS}</th>
                                        <th scope="col">{col::LAST_USER}</th>
                                        <th scope="col">{col::ACTIVE_GRANTS}</th>
                                        <th scope="col">{col::ENFORCEMENT}</th>
                                    }.into_any()
                                } else {
                                    view! {
                                        <th scope="col"><a href=sort_link("os")>{col::OS}</a></th>
                                        <th scope="col">{col::EXPOSED_MANAGEMENT_PORTS}</th>
                                        <th scope="col">{status_col}</th>
                                    }.into_any()
                                }}
                                <th scope="col"><span class="sr-only">{col::ACTIONS}</span></th>
                            </tr>
                        </thead>
                        <tbody>
                            {rows.into_iter().map(|r| {
                                let selectable = selectable(&r);
                                view! { <VmTableRow row=r configured status_col selectable checked=all selected /> }
                            }).collect_view()}
                        </tbody>
                    </table>
                    {empty.then(|| view! { <p class="muted">"No VMs here."</p> })}
                </form>
                <Pager base page=page.page page_size=page.page_size total=page.total />
            }
            .into_any()
        })
    };

    view! {
        <Title text="Just-in-time VM access" />
        <Shell>
            <h1>"Just-in-time VM access"</h1>
            <Transition fallback=|| view! { <p>"Loading…"</p> }>{body}</Transition>
        </Shell>
    }
}

pub(crate) fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[component]
fn VmTableRow(
    row: VmRow,
    configured: bool,
    /// The name of the column that says how the VM stands: its status, or why it cannot
    /// be protected.
    status_col: &'static str,
    /// Whether the row has a box: the viewer may use a bulk button on it.
    selectable: bool,
    checked: bool,
    selected: RwSignal<usize>,
) -> impl IntoView {
    let href = format!("/vms/{}", row.id);
    let check_id = format!("sel-{}", row.id);
    let name = row.name.clone();
    let menu = row_menu(&row);
    let count = move |ev: leptos::ev::Event| {
        let on = event_target_checked(&ev);
        selected.update(|n| *n = if on { *n + 1 } else { n.saturating_sub(1) });
    };
    view! {
        <tr data-vm=row.name.clone()>
            <td data-label=col::SELECT class:blank=!selectable>
                {selectable.then(|| view! {
                    <input type="checkbox" name="vm" value=row.id.clone() id=check_id.clone() checked=checked on:change=count />
                    <label for=check_id class="sr-only">{format!("Select {name}")}</label>
                })}
            </td>
            <td data-label=col::VM><a href=href>{row.name.clone()}</a></td>
            <td data-label=col::GROUP>{row.group.clone()}</td>
            {if configured {
                view! {
                    <td data-label=col::APPROVED_7_DAYS>{row.approved_last_7d}</td>
                    <td data-label=col::LAST_ACCESS>{row.last_access_at.map(|t| view! { <LocalTime ms=t /> })}</td>
                    <td data-label=col::LAST_USER>{row.last_user.clone()}</td>
                    <td data-label=col::ACTIVE_GRANTS>
                        <ul class="grants">
                            {row.grants.iter().map(|g| view! {
                                <li>{format!("{}/{} from {} · ", g.port, g.protocol, g.source)}<Countdown end_ms=g.end_at /></li>
                            }).collect_view()}
                        </ul>
                    </td>
                    <td data-label=col::ENFORCEMENT><StatusBadge level=row.status_level.clone() text=row.agent_status.clone() /></td>
                }.into_any()
            } else {
                view! {
                    <td data-label=col::OS>{row.os.clone()}</td>
                    <td data-label=col::EXPOSED_MANAGEMENT_PORTS>{row.exposed_ports.clone()}</td>
                    <td data-label=status_col><StatusBadge level=row.status_level.clone() text=row.agent_status.clone() /></td>
                }.into_any()
            }}
            <td data-label=col::ACTIONS class="row-actions">{menu}</td>
        </tr>
    }
}

/// The "…" menu of a row, as in the reference portal: what the viewer may do with this VM
/// (decided by the services), its activity log and its page. A `<details>`, so that it
/// opens with Enter or Space and works without JavaScript; Escape closes it when hydrated.
fn row_menu(row: &VmRow) -> impl IntoView + use<> {
    let id = &row.id;
    let items = [
        row.may
            .request
            .then(|| (format!("/jit/request?vm={id}"), "Request access")),
        row.may.configure.then(|| {
            let label = if row.has_policy {
                "Edit JIT policy"
            } else {
                "Enable JIT"
            };
            (format!("/jit/configure?vm={id}"), label)
        }),
        row.may.view_log.then(|| {
            (
                format!("/activity?vm={}", urlencode(&format!("\"{}\"", row.name))),
                "Activity log",
            )
        }),
        Some((format!("/vms/{id}"), "Properties")),
        row.may
            .manage
            .then(|| (ask::href(ask::VM, id, "jit"), "Remove")),
    ];
    let close_on_escape = |ev: leptos::ev::KeyboardEvent| {
        if ev.key() == "Escape" {
            use wasm_bindgen::JsCast;
            if let Some(details) = ev
                .current_target()
                .and_then(|t| t.dyn_into::<leptos::web_sys::Element>().ok())
            {
                let _ = details.remove_attribute("open");
                if let Ok(Some(summary)) = details.query_selector("summary")
                    && let Ok(summary) = summary.dyn_into::<leptos::web_sys::HtmlElement>()
                {
                    let _ = summary.focus();
                }
            }
        }
    };
    view! {
        <details class="row-menu" on:keydown=close_on_escape>
            <summary aria-label=format!("Actions for {}", row.name)><span aria-hidden="true">"…"</span></summary>
            <ul class="menu">
                {items.into_iter().flatten().map(|(href, label)| view! {
                    <li><a href=href>{label}</a></li>
                }).collect_view()}
            </ul>
        </details>
    }
}
