//! The Just-in-time page: Configured / Recommended / Not configured, each searchable,
//! sortable and paged on the server so it stays fast with many VMs.

use crate::api::jit::list_vms;
use crate::components::{Countdown, LocalTime, Pager, Shell};
use crate::model::VmRow;
use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::hooks::use_query_map;

const TABS: [(&str, &str); 3] = [
    ("configured", "Configured"),
    ("recommended", "Recommended"),
    ("not_configured", "Not configured"),
];

#[component]
pub fn JitPage() -> impl IntoView {
    let query = use_query_map();
    let params = move || {
        let q = query.get();
        (
            q.get("tab")
                .filter(|t| {
                    ["configured", "recommended", "not_configured", "all"].contains(&t.as_str())
                })
                .unwrap_or_else(|| "configured".into()),
            q.get("q").unwrap_or_default(),
            q.get("sort").unwrap_or_default(),
            q.get("desc").is_some_and(|d| d == "1"),
            q.get("page")
                .and_then(|p| p.parse::<i64>().ok())
                .unwrap_or(1),
        )
    };
    let data = Resource::new(params, |(tab, q, sort, desc, page)| {
        list_vms(tab, q, sort, desc, page)
    });

    let body = move || {
        let (tab, q, sort, desc, _) = params();
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
                    let flip = sort == col && !desc;
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
            let rows = page.rows.clone();
            let empty = rows.is_empty();
            view! {
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
                        } else {
                            page.can_configure.then(|| view! {
                                <button type="submit" class="btn primary">"Enable JIT on selected VMs"</button>
                            }).into_any()
                        }}
                        {page.can_add_vm.then(|| view! {
                            <a class="btn" href="/vms/new">"Add VM"</a>
                            <a class="btn" href="/vms/import">"Import from CSV"</a>
                        })}
                    </div>
                    <table class="table" data-testid="vm-table">
                        <caption class="sr-only">{format!("{} VMs", page.total)}</caption>
                        <thead>
                            <tr>
                                <th scope="col"><span class="sr-only">"Select"</span></th>
                                <th scope="col"><a href=sort_link("name")>"VM"</a></th>
                                <th scope="col"><a href=sort_link("group")>"Group"</a></th>
                                {if configured {
                                    view! {
                                        <th scope="col">"Approved (7 days)"</th>
                                        <th scope="col">"Last access"</th>
                                        <th scope="col">"Last user"</th>
                                        <th scope="col">"Active grants"</th>
                                        <th scope="col">"Enforcement"</th>
                                    }.into_any()
                                } else {
                                    view! {
                                        <th scope="col"><a href=sort_link("os")>"OS"</a></th>
                                        <th scope="col">"Exposed management ports"</th>
                                        <th scope="col">"Status"</th>
                                    }.into_any()
                                }}
                            </tr>
                        </thead>
                        <tbody>
                            {rows.into_iter().map(|r| view! { <VmTableRow row=r configured /> }).collect_view()}
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
            <nav class="tabs" aria-label="VM lists">
                {move || {
                    let (current, q, ..) = params();
                    TABS.iter().map(|(id, label)| {
                        let href = format!("/jit?tab={id}&q={}", urlencode(&q));
                        let active = current == *id;
                        view! { <a href=href class:active=active aria-current=active.then_some("page")>{*label}</a> }
                    }).collect_view()
                }}
            </nav>
            <form method="get" action="/jit" class="search" role="search">
                <input type="hidden" name="tab" value=move || params().0 />
                <label for="vm-search">"Search VMs"</label>
                <input id="vm-search" type="search" name="q" value=move || params().1 placeholder="Name or group" />
                <button type="submit" class="btn">"Search"</button>
            </form>
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
fn VmTableRow(row: VmRow, configured: bool) -> impl IntoView {
    let href = format!("/vms/{}", row.id);
    let check_id = format!("sel-{}", row.id);
    let name = row.name.clone();
    view! {
        <tr data-vm=row.name.clone()>
            <td>
                <input type="checkbox" name="vm" value=row.id.clone() id=check_id.clone() />
                <label for=check_id class="sr-only">{format!("Select {name}")}</label>
            </td>
            <td><a href=href>{row.name.clone()}</a></td>
            <td>{row.group.clone()}</td>
            {if configured {
                view! {
                    <td>{row.approved_last_7d}</td>
                    <td>{row.last_access_at.map(|t| view! { <LocalTime ms=t /> })}</td>
                    <td>{row.last_user.clone()}</td>
                    <td>
                        <ul class="grants">
                            {row.grants.iter().map(|g| view! {
                                <li>{format!("{}/{} from {} · ", g.port, g.protocol, g.source)}<Countdown end_ms=g.end_at /></li>
                            }).collect_view()}
                        </ul>
                    </td>
                    <td>{row.agent_status.clone()}</td>
                }.into_any()
            } else {
                view! {
                    <td>{row.os.clone()}</td>
                    <td>{row.exposed_ports.clone()}</td>
                    <td>{row.agent_status.clone()}</td>
                }.into_any()
            }}
        </tr>
    }
}
