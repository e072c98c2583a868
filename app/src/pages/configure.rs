//! The port configuration of a JIT policy, for one VM or many at once.

use crate::api::jit::{EnableJit, RemovePolicy, load_policy_form};
use crate::components::{Breadcrumbs, Confirm, FieldMsg, FormAlert, Shell, action_error};
use crate::model::{RuleView, ask};
use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::hooks::use_query_map;

const EXTRA_ROWS: usize = 2;

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
            let mut rows = f.rows.clone();
            for _ in 0..EXTRA_ROWS {
                rows.push(RuleView::blank());
            }
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
                                <input type="checkbox" id="f-replace_differing" name="replace_differing" value="on" />
                                " "
                                <label for="f-replace_differing">"Replace the differing policies with these rules"</label>
                            </p>
                            <FieldMsg err field="replace_differing".to_owned() />
                        </div>
                    })}
                    <table class="table ports">
                        <thead>
                            <tr>
                                <th scope="col">"On"</th>
                                <th scope="col">"Port"</th>
                                <th scope="col">"Protocol"</th>
                                <th scope="col">"Allowed source IPs"</th>
                                <th scope="col">"Max request time (minutes)"</th>
                                <th scope="col">"Justification required"</th>
                                <th scope="col">"Approval required"</th>
                                <th scope="col">"Approvers"</th>
                                <th scope="col">"Approval within (minutes)"</th>
                                <th scope="col">"Schedule ahead (days)"</th>
                                <th scope="col">"Widest per-request source (IPv4 / IPv6 prefix)"</th>
                            </tr>
                        </thead>
                        <tbody>
                            {rows.into_iter().enumerate().map(|(i, r)| view! { <RuleRow i r err /> }).collect_view()}
                        </tbody>
                    </table>
                    <p class="hint">"Allowed source IPs: leave empty for “per request” (the requester names one source, at most as wide as the widest prefix), or list IPv4/IPv6 CIDRs separated by commas. Maximum request time: 5 to 1440 minutes. Approvers: how many different people (1 to 5) must approve a request that needs approval; one denial ends it. A request that needs approval and gets none within its time is closed."</p>
                    <div class="actions">
                        <button type="submit" class="btn primary">"Save JIT policy"</button>
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

#[component]
fn RuleRow(i: usize, r: RuleView, err: Signal<Option<crate::error::AppError>>) -> impl IntoView {
    let n = |f: &str| format!("rules[{i}][{f}]");
    let id = |f: &str| format!("rule-{i}-{f}");
    let key = |f: &str| format!("rules[{i}].{f}");
    let protocol = r.protocol.clone();
    view! {
        <tr>
            <td>
                <input type="checkbox" id=id("enabled") name=n("enabled") value="on" checked=r.enabled />
                <label for=id("enabled") class="sr-only">{format!("Port row {} on", i + 1)}</label>
            </td>
            <td>
                <label for=id("port") class="sr-only">{format!("Port of row {}", i + 1)}</label>
                <input id=id("port") name=n("port") type="text" inputmode="numeric" size="6" value=r.port.clone() />
                <FieldMsg err field=key("port") />
            </td>
            <td>
                <label for=id("protocol") class="sr-only">{format!("Protocol of row {}", i + 1)}</label>
                <select id=id("protocol") name=n("protocol")>
                    {[("tcp", "TCP"), ("udp", "UDP"), ("any", "Any")].into_iter().map(|(v, l)| {
                        view! { <option value=v selected=protocol == v>{l}</option> }
                    }).collect_view()}
                </select>
                <FieldMsg err field=key("protocol") />
            </td>
            <td>
                <label for=id("allowed_sources") class="sr-only">{format!("Allowed source IPs of row {}", i + 1)}</label>
                <input id=id("allowed_sources") name=n("allowed_sources") type="text" placeholder="per request" value=r.allowed_sources.clone() />
                <FieldMsg err field=key("allowed_sources") />
            </td>
            <td>
                <label for=id("max_minutes") class="sr-only">{format!("Max request time of row {}", i + 1)}</label>
                <input id=id("max_minutes") name=n("max_minutes") type="text" inputmode="numeric" size="5" value=r.max_minutes.clone() />
                <FieldMsg err field=key("max_minutes") />
            </td>
            <td>
                <input type="checkbox" id=id("justification_required") name=n("justification_required") value="on" checked=r.justification_required />
                <label for=id("justification_required") class="sr-only">{format!("Justification required, row {}", i + 1)}</label>
            </td>
            <td>
                <input type="checkbox" id=id("approval_required") name=n("approval_required") value="on" checked=r.approval_required />
                <label for=id("approval_required") class="sr-only">{format!("Approval required, row {}", i + 1)}</label>
            </td>
            <td>
                <label for=id("approvals_required") class="sr-only">{format!("Approvers needed, row {}", i + 1)}</label>
                <input id=id("approvals_required") name=n("approvals_required") type="text" inputmode="numeric" size="2" value=r.approvals_required.clone() />
                <FieldMsg err field=key("approvals_required") />
            </td>
            <td>
                <label for=id("approval_minutes") class="sr-only">{format!("Approval within, minutes, row {}", i + 1)}</label>
                <input id=id("approval_minutes") name=n("approval_minutes") type="text" inputmode="numeric" size="5" value=r.approval_minutes.clone() />
                <FieldMsg err field=key("approval_minutes") />
            </td>
            <td>
                <label for=id("lead_days") class="sr-only">{format!("Schedule ahead at most, days, row {}", i + 1)}</label>
                <input id=id("lead_days") name=n("lead_days") type="text" inputmode="numeric" size="2" value=r.lead_days.clone() />
                <FieldMsg err field=key("lead_days") />
            </td>
            <td>
                <label for=id("widest_v4") class="sr-only">{format!("Widest IPv4 source prefix, row {}", i + 1)}</label>
                "/"<input id=id("widest_v4") name=n("widest_v4") type="text" inputmode="numeric" size="3" value=r.widest_v4.clone() />
                " /"
                <label for=id("widest_v6") class="sr-only">{format!("Widest IPv6 source prefix, row {}", i + 1)}</label>
                <input id=id("widest_v6") name=n("widest_v6") type="text" inputmode="numeric" size="3" value=r.widest_v6.clone() />
                <FieldMsg err field=key("widest_v4") />
                <FieldMsg err field=key("widest_v6") />
            </td>
        </tr>
    }
}
