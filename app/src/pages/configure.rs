//! The port configuration of a JIT policy, for one VM or many at once.
//!
//! The form shows the policy's rows and grows by "Add port": hydrated, a row appears in
//! place (and may be removed again before saving); without JavaScript the button posts the
//! form, which comes back as typed with one more row (see `enable_jit`'s `add_row`).

use crate::api::jit::{EnableJit, MAX_POLICY_ROWS, RemovePolicy, load_policy_form};
use crate::components::{Breadcrumbs, Confirm, FieldMsg, FormAlert, Shell, action_error, col};
use crate::model::{RuleView, ask};
use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::hooks::use_query_map;

/// One row of the form. `key` names it for as long as the page lives, while its position
/// (and so its field names, `rules[i][…]`) changes as rows before it are removed.
#[derive(Clone)]
struct FormRow {
    key: usize,
    rule: RuleView,
    /// Added on this page and not saved yet: it may be removed.
    added: bool,
}

#[component]
pub fn ConfigurePage() -> impl IntoView {
    let query = use_query_map();
    let vm_ids = move || query.get().get_all("vm").unwrap_or_default();
    let form = Resource::new(vm_ids, load_policy_form);
    let enable = ServerAction::<EnableJit>::new();
    let remove = ServerAction::<RemovePolicy>::new();
    let err = action_error(enable);
    let remove_err = action_error(remove);

    let body = move || {
        Suspend::new(async move {
            let f = match form.await {
                Ok(f) => f,
                Err(e) => {
                    return view! { <div class="alert error" role="alert">{e.summary()}</div> }
                        .into_any();
                }
            };
            let names = f
                .vms
                .iter()
                .map(|(_, n)| n.clone())
                .collect::<Vec<_>>()
                .join(", ");
            let mut initial = f.rows.clone();
            if initial.is_empty() {
                initial.push(RuleView::added());
            }
            let initial: Vec<FormRow> = initial
                .into_iter()
                .enumerate()
                .map(|(key, rule)| FormRow {
                    key,
                    rule,
                    added: false,
                })
                .collect();
            let next_key = StoredValue::new(initial.len());
            let rows = RwSignal::new(initial);
            let add_button = NodeRef::<leptos::html::Button>::new();
            // Hydrated, a row appears here; before that the button posts the form.
            let add = move |ev: leptos::ev::MouseEvent| {
                ev.prevent_default();
                if rows.with(Vec::len) >= MAX_POLICY_ROWS {
                    return;
                }
                let key = next_key.get_value();
                next_key.set_value(key + 1);
                rows.update(|r| {
                    r.push(FormRow {
                        key,
                        rule: RuleView::added(),
                        added: true,
                    })
                });
            };
            let remove_row = Callback::new(move |key: usize| {
                rows.update(|r| r.retain(|row| row.key != key));
                if let Some(b) = add_button.get_untracked() {
                    let _ = b.focus();
                }
            });
            let replace_checked = f.replace_differing;
            let differing = f.differing.clone();
            let single = (f.vms.len() == 1 && f.existing).then(|| {
                let ports = ask::ports(
                    f.rows
                        .iter()
                        .filter(|r| r.enabled)
                        .map(|r| (r.port.clone(), r.protocol.as_str())),
                );
                (f.vms[0].0.clone(), ask::remove_policy(&f.vms[0].1, &ports))
            });
            view! {
                <p>"Applies to: " <strong data-testid="policy-vms">{names}</strong></p>
                <FormAlert err />
                <FieldMsg err field="rules".to_owned() />
                <FieldMsg err field="vms".to_owned() />
                <ActionForm action=enable attr:class="form">
                    {f.vms.iter().enumerate().map(|(i, (id, _))| view! { <input type="hidden" name=format!("vm_ids[{i}]") value=id.clone() /> }).collect_view()}
                    {(!differing.is_empty()).then(|| view! {
                        <div class="alert warning" role="alert" data-testid="differing-policies">
                            <p><strong>"These VMs have different JIT policies."</strong>" Saving replaces each VM's policy with the rules below. What each has now:"</p>
                            <ul>{differing.into_iter().map(|line| view! { <li>{line}</li> }).collect_view()}</ul>
                            <p>
                                <input type="checkbox" id="f-replace_differing" name="replace_differing" value="on" checked=replace_checked />
                                " "
                                <label for="f-replace_differing">"Replace the differing policies with these rules"</label>
                            </p>
                            <FieldMsg err field="replace_differing".to_owned() />
                        </div>
                    })}
                    <table class="table ports">
                        <thead>
                            <tr>
                                {[col::ON, col::PORT, col::PROTOCOL, col::ALLOWED_SOURCE_IPS, col::MAX_REQUEST_TIME,
                                  col::JUSTIFICATION_REQUIRED, col::APPROVAL_REQUIRED, col::APPROVERS, col::APPROVAL_WITHIN,
                                  col::SCHEDULE_AHEAD, col::WIDEST_SOURCE]
                                    .into_iter()
                                    .map(|c| view! { <th scope="col">{c}</th> })
                                    .collect_view()}
                            </tr>
                        </thead>
                        <tbody>
                            <For each=move || rows.get() key=|r| r.key let:row>
                                <RuleRow
                                    pos=Signal::derive({
                                        let key = row.key;
                                        move || rows.with(|r| r.iter().position(|x| x.key == key).unwrap_or_default())
                                    })
                                    r=row.rule
                                    remove=row.added.then_some((row.key, remove_row))
                                    err
                                />
                            </For>
                        </tbody>
                    </table>
                    <p class="hint">"Allowed source IPs: leave empty for “per request” (the requester names one source, at most as wide as the widest prefix), or list IPv4/IPv6 CIDRs separated by commas. Maximum request time: 5 to 1440 minutes. Approvers: how many different people (1 to 5) must approve a request that needs approval; one denial ends it. A request that needs approval and gets none within its time is closed."</p>
                    // Save comes first: Enter in a field presses the form's first button.
                    <div class="actions">
                        <button type="submit" class="btn primary">"Save JIT policy"</button>
                        <button type="submit" class="btn" name="add_row" value="on" node_ref=add_button on:click=add>"Add port"</button>
                        <a class="btn" href="/jit">"Cancel"</a>
                    </div>
                </ActionForm>
                {single.map(|(vm_id, question)| view! {
                    <section class="card danger-zone">
                        <h2>"Remove the policy"</h2>
                        <p>"Removes JIT control from this VM and ends every access in force on it."</p>
                        <FormAlert err=remove_err />
                        <Confirm id="remove-policy" label="Remove JIT policy" href=ask::href(ask::POLICY, &vm_id, "policy") question pending=remove.pending()>
                            <ActionForm action=remove attr:class="inline-form">
                                <input type="hidden" name="vm_id" value=vm_id />
                                <button type="submit" class="btn danger">"Remove JIT policy"</button>
                            </ActionForm>
                        </Confirm>
                    </section>
                })}
            }
            .into_any()
        })
    };

    view! {
        <Title text="JIT policy" />
        <Shell>
            <Breadcrumbs trail=vec![("/jit".to_owned(), "Just-in-time".to_owned())] here="JIT policy" />
            <h1>"JIT VM access configuration"</h1>
            <Transition fallback=|| view! { <p>"Loading…"</p> }>{body}</Transition>
        </Shell>
    }
}

/// One port row. Its field names, ids and labels follow its position `pos`, so that the
/// posted rows stay numbered 0, 1, 2… and each error lands beside its field; on a phone
/// each cell shows its column's name (`data-label`) above the field.
#[component]
fn RuleRow(
    pos: Signal<usize>,
    r: RuleView,
    /// For a row added on this page: its key, and what removes it.
    remove: Option<(usize, Callback<usize>)>,
    err: Signal<Option<crate::error::AppError>>,
) -> impl IntoView {
    let n = move |f: &'static str| move || format!("rules[{}][{f}]", pos.get());
    let id = move |f: &'static str| move || format!("rule-{}-{f}", pos.get());
    let row = move || pos.get() + 1;
    let msg = move |f: &'static str| move || view! { <FieldMsg err field=format!("rules[{}].{f}", pos.get()) /> };
    let protocol = r.protocol.clone();
    let port_input = NodeRef::<leptos::html::Input>::new();
    // A row added by "Add port" takes the focus, so typing goes on there.
    if remove.is_some() {
        Effect::new(move |_| {
            if let Some(input) = port_input.get() {
                let _ = input.focus();
            }
        });
    }
    let remove_button = remove.map(|(key, remove)| {
        view! {
            " "
            <button type="button" class="btn small" on:click=move |_| remove.run(key)
                aria-label=move || format!("Remove port row {}", row())>"Remove"</button>
        }
    });
    view! {
        <tr>
            <td data-label=col::ON class="check">
                <input type="checkbox" id=id("enabled") name=n("enabled") value="on" checked=r.enabled />
                <label for=id("enabled") class="sr-only">{move || format!("Port row {} on", row())}</label>
                {remove_button}
            </td>
            <td data-label=col::PORT>
                <label for=id("port") class="sr-only">{move || format!("Port of row {}", row())}</label>
                <input id=id("port") name=n("port") node_ref=port_input type="text" inputmode="numeric" size="6" value=r.port.clone() />
                {msg("port")}
            </td>
            <td data-label=col::PROTOCOL>
                <label for=id("protocol") class="sr-only">{move || format!("Protocol of row {}", row())}</label>
                <select id=id("protocol") name=n("protocol")>
                    {[("tcp", "TCP"), ("udp", "UDP"), ("any", "Any")].into_iter().map(|(v, l)| {
                        view! { <option value=v selected=protocol == v>{l}</option> }
                    }).collect_view()}
                </select>
                {msg("protocol")}
            </td>
            <td data-label=col::ALLOWED_SOURCE_IPS class="wide">
                <label for=id("allowed_sources") class="sr-only">{move || format!("Allowed source IPs of row {}", row())}</label>
                <input id=id("allowed_sources") name=n("allowed_sources") type="text" placeholder="per request" value=r.allowed_sources.clone() />
                {msg("allowed_sources")}
            </td>
            <td data-label=col::MAX_REQUEST_TIME>
                <label for=id("max_minutes") class="sr-only">{move || format!("Max request time of row {}", row())}</label>
                <input id=id("max_minutes") name=n("max_minutes") type="text" inputmode="numeric" size="5" value=r.max_minutes.clone() />
                {msg("max_minutes")}
            </td>
            <td data-label=col::JUSTIFICATION_REQUIRED class="check">
                <input type="checkbox" id=id("justification_required") name=n("justification_required") value="on" checked=r.justification_required />
                <label for=id("justification_required") class="sr-only">{move || format!("Justification required, row {}", row())}</label>
            </td>
            <td data-label=col::APPROVAL_REQUIRED class="check">
                <input type="checkbox" id=id("approval_required") name=n("approval_required") value="on" checked=r.approval_required />
                <label for=id("approval_required") class="sr-only">{move || format!("Approval required, row {}", row())}</label>
            </td>
            <td data-label=col::APPROVERS>
                <label for=id("approvals_required") class="sr-only">{move || format!("Approvers needed, row {}", row())}</label>
                <input id=id("approvals_required") name=n("approvals_required") type="text" inputmode="numeric" size="2" value=r.approvals_required.clone() />
                {msg("approvals_required")}
            </td>
            <td data-label=col::APPROVAL_WITHIN>
                <label for=id("approval_minutes") class="sr-only">{move || format!("Approval within, minutes, row {}", row())}</label>
                <input id=id("approval_minutes") name=n("approval_minutes") type="text" inputmode="numeric" size="5" value=r.approval_minutes.clone() />
                {msg("approval_minutes")}
            </td>
            <td data-label=col::SCHEDULE_AHEAD>
                <label for=id("lead_days") class="sr-only">{move || format!("Schedule ahead at most, days, row {}", row())}</label>
                <input id=id("lead_days") name=n("lead_days") type="text" inputmode="numeric" size="2" value=r.lead_days.clone() />
                {msg("lead_days")}
            </td>
            <td data-label=col::WIDEST_SOURCE class="wide">
                <label for=id("widest_v4") class="sr-only">{move || format!("Widest IPv4 source prefix, row {}", row())}</label>
                "/"<input id=id("widest_v4") name=n("widest_v4") type="text" inputmode="numeric" size="3" value=r.widest_v4.clone() />
                " /"
                <label for=id("widest_v6") class="sr-only">{move || format!("Widest IPv6 source prefix, row {}", row())}</label>
                <input id=id("widest_v6") name=n("widest_v6") type="text" inputmode="numeric" size="3" value=r.widest_v6.clone() />
                {msg("widest_v4")}
                {msg("widest_v6")}
            </td>
        </tr>
    }
}
