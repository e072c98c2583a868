//! The request-access blade: choose ports, source, duration and justification.

use crate::api::jit::{RequestAccess, load_request_blade};
use crate::components::{Breadcrumbs, FieldMsg, FormAlert, Shell, action_error};
use crate::model::{RequestBlade, RuleView};
use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::hooks::use_query_map;
use std::collections::BTreeSet;

#[component]
pub fn RequestAccessPage() -> impl IntoView {
    let query = use_query_map();
    let vm_ids = move || query.get().get_all("vm").unwrap_or_default();
    let blade = Resource::new(vm_ids, load_request_blade);
    let action = ServerAction::<RequestAccess>::new();
    let err = action_error(action);
    // The ports ticked so far (hydrated only): the duration bound, the justification's
    // "required" and the approval summary follow them.
    let ticked = RwSignal::new(BTreeSet::<String>::new());

    let body = move || {
        Suspend::new(async move {
            let b = match blade.await {
                Ok(b) => b,
                Err(e) => {
                    return view! { <div class="alert error" role="alert">{e.summary()}</div> }
                        .into_any();
                }
            };
            let limits = Limits::of(&b);
            let mut k = 0usize;
            let mut boxes = Vec::new();
            let vms = b
                .vms
                .iter()
                .enumerate()
                .map(|(i, vm)| {
                    let ports = vm
                        .rules
                        .iter()
                        .map(|r| {
                            k += 1;
                            let id = format!("port-{k}");
                            let value = port_key(&vm.id, r);
                            let sources = if r.allowed_sources.is_empty() { "any source you name".to_owned() } else { r.allowed_sources.clone() };
                            let label = format!(
                                "{} ({}) — from {}, up to {} min{}{}",
                                r.port,
                                r.protocol.to_uppercase(),
                                sources,
                                r.max_minutes,
                                if r.justification_required { ", justification required" } else { "" },
                                match (r.approval_required, r.approvals_required.as_str()) {
                                    (false, _) => String::new(),
                                    (true, "" | "1") => ", needs approval".to_owned(),
                                    (true, n) => format!(", needs {n} approvals"),
                                }
                            );
                            let key = value.clone();
                            let input = NodeRef::<leptos::html::Input>::new();
                            boxes.push((key.clone(), input));
                            let toggle = move |ev| {
                                let on = event_target_checked(&ev);
                                ticked.update(|t| {
                                    if on {
                                        t.insert(key.clone());
                                    } else {
                                        t.remove(&key);
                                    }
                                });
                            };
                            view! {
                                <div class="field checkbox">
                                    <input type="checkbox" id=id.clone() name=format!("ports[{k}]") value=value on:change=toggle node_ref=input />
                                    <label for=id>{label}</label>
                                </div>
                            }
                        })
                        .collect_view();
                    view! {
                        <fieldset class="vm-ports">
                            <legend>{vm.name.clone()}</legend>
                            <input type="hidden" name=format!("vm_ids[{i}]") value=vm.id.clone() />
                            {ports}
                        </fieldset>
                    }
                })
                .collect_view();
            // Boxes ticked before the page hydrated, or restored by the browser on the way
            // back to it, count as ticked too.
            Effect::new(move |_| {
                #[cfg(feature = "hydrate")]
                {
                    let on: BTreeSet<String> = boxes
                        .iter()
                        .filter(|(_, input)| input.get().is_some_and(|i| i.checked()))
                        .map(|(key, _)| key.clone())
                        .collect();
                    if !on.is_empty() {
                        ticked.set(on);
                    }
                }
                #[cfg(not(feature = "hydrate"))]
                let _ = &boxes;
            });
            let default_minutes = b.max_minutes.min(180).to_string();
            let duration_label = {
                let limits = limits.clone();
                move || limits.duration_label(&ticked.read())
            };
            let justification_label = {
                let limits = limits.clone();
                move || limits.justification_label(&ticked.read())
            };
            let summary = move || limits.summary(&ticked.read());
            let lead_days = b
                .vms
                .iter()
                .flat_map(|vm| vm.rules.iter())
                .filter_map(|r| r.lead_days.parse::<i64>().ok())
                .max()
                .unwrap_or(0);
            view! {
                <FormAlert err />
                <ActionForm action attr:class="form">
                    <h2>"Ports"</h2>
                    {vms}
                    <p class="hint" aria-live="polite" data-testid="approval-summary">{summary}</p>
                    <FieldMsg err field="ports".to_owned() />
                    <h2>"Source"</h2>
                    <div class="field checkbox">
                        <input type="radio" id="src-my" name="source_mode" value="my_ip" checked />
                        <label for="src-my">"My IP (" <span data-testid="my-ip">{b.my_ip.clone()}</span> ")"</label>
                    </div>
                    <div class="field checkbox">
                        <input type="radio" id="src-custom" name="source_mode" value="custom" />
                        <label for="src-custom">"Another IP address or CIDR"</label>
                    </div>
                    <div class="field">
                        <label for="f-custom_source">"IP address or CIDR (when not My IP)"</label>
                        <input id="f-custom_source" type="text" name="custom_source" placeholder="198.51.100.0/24 or 2001:db8::/64" />
                        <FieldMsg err field="source".to_owned() />
                    </div>
                    <div class="field">
                        <label for="f-duration" data-testid="duration-label">{duration_label}</label>
                        <input id="f-duration" type="text" inputmode="numeric" name="duration" value=default_minutes />
                        <FieldMsg err field="duration".to_owned() />
                    </div>
                    {(lead_days > 0).then(|| view! {
                        <div class="field">
                            <label for="f-start">"Start, in UTC (leave empty to start now)"</label>
                            <input id="f-start" type="datetime-local" name="start" step="60" aria-describedby="f-start-hint" />
                            <p class="hint muted" id="f-start-hint">{format!(
                                "A later start is decided ahead and opens at that time; up to {lead_days} days ahead, as the ports' policy allows."
                            )}</p>
                            <FieldMsg err field="start".to_owned() />
                        </div>
                    })}
                    <div class="field">
                        <label for="f-justification" data-testid="justification-label">{justification_label}</label>
                        <textarea id="f-justification" name="justification" rows="3" maxlength="500"></textarea>
                        <FieldMsg err field="justification".to_owned() />
                    </div>
                    <div class="actions">
                        <button type="submit" class="btn primary">"Open ports"</button>
                        <a class="btn" href="/jit">"Cancel"</a>
                    </div>
                </ActionForm>
            }
            .into_any()
        })
    };

    view! {
        <Title text="Request access" />
        <Shell>
            <Breadcrumbs trail=vec![("/jit".to_owned(), "Just-in-time".to_owned())] here="Request access" />
            <h1>"Request access"</h1>
            <Transition fallback=|| view! { <p>"Loading…"</p> }>{body}</Transition>
        </Shell>
    }
}

/// A port's value on the form, as the service reads it: `VM_ID:PORT/PROTOCOL`.
fn port_key(vm_id: &str, rule: &RuleView) -> String {
    format!("{vm_id}:{}/{}", rule.port, rule.protocol)
}

/// What each port on the form allows, keyed by its form value (`VM_ID:PORT/PROTOCOL`), so
/// that the labels can speak of the ports chosen; before any is chosen (and without
/// JavaScript) they speak of all of them.
#[derive(Clone)]
struct Limits(Vec<(String, PortLimit)>);

#[derive(Clone, Copy)]
struct PortLimit {
    max_minutes: i64,
    justification: bool,
    approval: bool,
}

impl Limits {
    fn of(blade: &RequestBlade) -> Self {
        Limits(
            blade
                .vms
                .iter()
                .flat_map(|vm| {
                    vm.rules.iter().map(|r| {
                        (
                            port_key(&vm.id, r),
                            PortLimit {
                                max_minutes: r.max_minutes.parse().unwrap_or(0),
                                justification: r.justification_required,
                                approval: r.approval_required,
                            },
                        )
                    })
                })
                .collect(),
        )
    }

    /// The ports chosen, or every port while none is.
    fn chosen(&self, ticked: &BTreeSet<String>) -> (bool, Vec<PortLimit>) {
        let chosen: Vec<PortLimit> = self
            .0
            .iter()
            .filter(|(key, _)| ticked.contains(key))
            .map(|(_, l)| *l)
            .collect();
        if chosen.is_empty() {
            (false, self.0.iter().map(|(_, l)| *l).collect())
        } else {
            (true, chosen)
        }
    }

    fn duration_label(&self, ticked: &BTreeSet<String>) -> String {
        let (any, ports) = self.chosen(ticked);
        let least = ports.iter().map(|l| l.max_minutes).min().unwrap_or(0);
        let most = ports.iter().map(|l| l.max_minutes).max().unwrap_or(0);
        if any || least == most {
            format!("Duration in minutes (at most {least})")
        } else {
            format!("Duration in minutes (at most {least}, or as long as each chosen port allows)")
        }
    }

    fn justification_label(&self, ticked: &BTreeSet<String>) -> &'static str {
        let (any, ports) = self.chosen(ticked);
        let required = ports.iter().filter(|l| l.justification).count();
        if required == 0 {
            "Justification"
        } else if any || required == ports.len() {
            "Justification (required)"
        } else {
            "Justification (required for the ports that say so)"
        }
    }

    /// Says how a choice of both kinds of port is handled; before any port is chosen, only
    /// when the form offers both kinds.
    fn summary(&self, ticked: &BTreeSet<String>) -> String {
        let (any, ports) = self.chosen(ticked);
        let waiting = ports.iter().filter(|l| l.approval).count();
        let at_once = ports.len() - waiting;
        let n = |n: usize| {
            if n == 1 {
                "1 port".to_owned()
            } else {
                format!("{n} ports")
            }
        };
        match (any, at_once, waiting) {
            (false, a, w) if a > 0 && w > 0 => "Ports that need approval may be chosen with \
                ports that don't: the latter open without waiting, the others wait in a \
                request of their own."
                .to_owned(),
            (false, _, _) => String::new(),
            (true, a, 0) => format!("{} chosen, no approval needed.", n(a)),
            (true, 0, w) => format!("{} chosen, approval needed.", n(w)),
            (true, a, w) => format!(
                "{} without approval, {} waiting for approval in a request of their own.",
                n(a),
                n(w)
            ),
        }
    }
}
