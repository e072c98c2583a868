//! The activity log: filters, pages, CSV download, and whether the hash chain verifies.

use crate::api::jit::{VerifyActivityLog, activity};
use crate::components::col;
use crate::components::{FormAlert, LocalTime, Pager, Shell, action_error};
use crate::pages::jit::urlencode;
use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::hooks::use_query_map;

#[component]
pub fn ActivityPage() -> impl IntoView {
    let query = use_query_map();
    let filters = move || {
        let q = query.get();
        let g = |k: &str| q.get(k).unwrap_or_default();
        (
            g("vm"),
            g("actor"),
            g("action"),
            g("from"),
            g("to"),
            q.get("page")
                .and_then(|p| p.parse::<i64>().ok())
                .unwrap_or(1),
        )
    };
    let verify = ServerAction::<VerifyActivityLog>::new();
    let verify_err = action_error(verify);
    let data = Resource::new(
        move || (filters(), verify.version().get()),
        |((vm, actor, action, from, to, page), _)| activity(vm, actor, action, from, to, page),
    );
    let qs = move || {
        let (vm, actor, action, from, to, _) = filters();
        format!(
            "vm={}&actor={}&action={}&from={}&to={}",
            urlencode(&vm),
            urlencode(&actor),
            urlencode(&action),
            urlencode(&from),
            urlencode(&to)
        )
    };

    let body = move || {
        let base = format!("/activity?{}", qs());
        Suspend::new(async move {
            let p = match data.await {
                Ok(p) => p,
                Err(e) => {
                    return view! { <div class="alert error" role="alert">{e.summary()}</div> }
                        .into_any();
                }
            };
            view! {
                <div class=if p.chain_ok { "alert success" } else { "alert error" } role="status" data-testid="chain-status">{p.chain_message.clone()}</div>
                <table class="table log" data-testid="activity-table">
                    <thead><tr>
                        <th scope="col">"Time"</th><th scope="col">"Actor"</th><th scope="col">"Action"</th><th scope="col">"VM"</th>
                        <th scope="col">"Ports"</th><th scope="col">"Source"</th><th scope="col">"Justification"</th>
                        <th scope="col">"Result"</th><th scope="col">"Details"</th>
                    </tr></thead>
                    <tbody>
                        {p.rows.iter().map(|r| view! {
                            <tr data-action=r.action.clone()>
                                <td data-label=col::TIME><LocalTime ms=r.at /></td>
                                <td data-label=col::ACTOR>{r.actor.clone()}<br /><span class="muted">{r.client_ip.clone()}</span></td>
                                <td data-label=col::ACTION>{r.action.clone()}</td>
                                <td data-label=col::VM>{r.vm.clone()}</td>
                                <td data-label=col::PORTS>{r.ports.clone()}</td>
                                <td data-label=col::SOURCE>{r.source.clone()}</td>
                                <td data-label=col::JUSTIFICATION>{r.justification.clone()}</td>
                                <td data-label=col::RESULT>{r.result.clone()}</td>
                                <td data-label=col::DETAILS>{r.detail.clone()}</td>
                            </tr>
                        }).collect_view()}
                    </tbody>
                </table>
                <Pager base page=p.page page_size=p.page_size total=p.total />
            }
            .into_any()
        })
    };

    view! {
        <Title text="Activity log" />
        <Shell>
            <h1>"Activity log"</h1>
            <form method="get" action="/activity" class="filters">
                <div class="field"><label for="fl-vm">"VM"</label><input id="fl-vm" name="vm" type="text" value=move || filters().0 /></div>
                <div class="field"><label for="fl-actor">"User"</label><input id="fl-actor" name="actor" type="text" value=move || filters().1 /></div>
                <div class="field"><label for="fl-action">"Action"</label><input id="fl-action" name="action" type="text" value=move || filters().2 placeholder="request, approve, revoke…" /></div>
                <div class="field"><label for="fl-from">"From (UTC date)"</label><input id="fl-from" name="from" type="date" value=move || filters().3 /></div>
                <div class="field"><label for="fl-to">"To (UTC date)"</label><input id="fl-to" name="to" type="date" value=move || filters().4 /></div>
                <div class="actions">
                    <button type="submit" class="btn primary">"Filter"</button>
                    <a class="btn" href=move || format!("/activity.csv?{}", qs()) download="activity.csv">"Download CSV"</a>
                </div>
            </form>
            <Transition fallback=|| view! { <p>"Loading…"</p> }>{body}</Transition>
            <section class="card">
                <h2>"Verify the whole log"</h2>
                <p class="hint">"The log is verified as it grows: each new entry once, against a signed checkpoint. Administrators over everything can check every entry again now (it reads the whole log)."</p>
                <FormAlert err=verify_err />
                {move || verify.value().get().and_then(Result::ok).map(|m| view! { <div class="alert info" role="status" data-testid="verify-result">{m}</div> })}
                <ActionForm action=verify attr:class="inline-form">
                    <button type="submit" class="btn">"Verify the whole log now"</button>
                </ActionForm>
            </section>
        </Shell>
    }
}
