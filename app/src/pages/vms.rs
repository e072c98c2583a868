//! A VM's page (facts, policy, grants, timeline, requests, admin forms) and the page to
//! add a VM.

use crate::api::jit::{CreateEnrollmentToken, DeleteVm, SaveVm, get_vm, take_new_enrollment};
use crate::components::{
    Breadcrumbs, Confirm, Countdown, Field, FormAlert, LocalTime, SelectField, Shell, StatusBadge,
    TableHead, action_error, col,
};
use crate::model::{NewEnrollment, ask};
use crate::pages::requests::ports_cell;
use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::hooks::use_params_map;

const OSES: &[(&str, &str)] = &[
    ("linux", "Linux"),
    ("windows", "Windows"),
    ("other", "Other"),
];

/// A new enrollment token's install line, with what the token allows and for how long.
/// Shown once: from the hydrated action's answer, or, after a plain form post, from the
/// session.
#[component]
fn EnrollmentShown(e: NewEnrollment, #[prop(into)] testid: String) -> impl IntoView {
    view! {
        {(!e.warning.is_empty()).then(|| view! { <div class="alert warning" role="alert" data-testid="enroll-warning">{e.warning.clone()}</div> })}
        {e.download_missing.then(|| view! {
            <div class="alert warning" role="alert" data-testid="download-missing">
                "This server was built without the agent download (downloads/portcullis-agent-linux-x86_64 in its site root), so the command below fails at its first step. Install portcullis-agent on the host by hand and enroll it with the token (see the agent install guide)."
            </div>
        })}
        <p>"Run on the host, as a user who may use sudo (shown once):"</p>
        <pre class="command" data-testid=testid>{e.command.clone()}</pre>
        <p class="muted" data-testid="enroll-expiry">
            "It downloads the agent, checks its SHA-256, installs and enrolls it and starts its service. The token works once and expires at "
            <LocalTime ms=e.expires_at />
            "."
        </p>
    }
}

#[component]
pub fn NewVmPage() -> impl IntoView {
    let save = ServerAction::<SaveVm>::new();
    let err = action_error(save);
    let register = ServerAction::<CreateEnrollmentToken>::new();
    let register_err = action_error(register);
    // Left in the session by a plain form post (no JavaScript), for this page only.
    let waiting = Resource::new(|| (), |_| take_new_enrollment(String::new()));
    view! {
        <Title text="Add VM" />
        <Shell>
            <h1>"Add a VM"</h1>
            <p>"Adding many? "<a href="/vms/import">"Import them from a CSV file"</a>"."</p>
            <section class="card narrow">
                <FormAlert err />
                <ActionForm action=save attr:class="form">
                    <input type="hidden" name="id" value="" />
                    <Field label="Name" name="name" autocomplete="off" err />
                    <Field label="Group" name="group" autocomplete="off" hint="Like a resource group: roles can be scoped to it." err />
                    <Field label="Addresses" name="addresses" autocomplete="off" hint="IPv4/IPv6, separated by commas." err />
                    <SelectField label="Operating system" name="os" options=OSES err />
                    <Field label="Exposed management ports" name="exposed_ports" autocomplete="off"
                        hint="Management ports known to be listening and reachable (22, 3389, 5985, 5986); the agent will report these." err />
                    <button type="submit" class="btn primary">"Add VM"</button>
                </ActionForm>
            </section>
            <section class="card narrow">
                <h2>"Or let its agent register it"</h2>
                <p>"Create a one-time token (valid for an hour); running the command it shows on the host registers the host as a VM in the group, named after its host name."</p>
                <FormAlert err=register_err />
                <ActionForm action=register attr:class="form">
                    <input type="hidden" name="vm_id" value="" />
                    <div class="field">
                        <label for="r-group">"Group for the new VM"</label>
                        <input id="r-group" type="text" name="group" />
                        <p class="field-error" aria-live="polite">{move || register_err.get().and_then(|e| e.field_message("group"))}</p>
                    </div>
                    <button type="submit" class="btn">"Create registration token"</button>
                </ActionForm>
                <Suspense fallback=|| ()>
                    {move || Suspend::new(async move {
                        let waiting = waiting.await.ok().flatten();
                        move || register.value().get().and_then(Result::ok).or_else(|| waiting.clone())
                            .map(|e| view! { <EnrollmentShown e testid="register-command" /> })
                    })}
                </Suspense>
            </section>
        </Shell>
    }
}

#[component]
pub fn VmPage() -> impl IntoView {
    let params = use_params_map();
    let id = move || params.get().get("id").unwrap_or_default();
    let save = ServerAction::<SaveVm>::new();
    let delete = ServerAction::<DeleteVm>::new();
    let detail = Resource::new(move || (id(), save.version().get()), |(id, _)| get_vm(id));
    let save_err = action_error(save);
    let delete_err = action_error(delete);
    let enroll = ServerAction::<CreateEnrollmentToken>::new();
    let enroll_err = action_error(enroll);
    // Left in the session by a plain form post (no JavaScript), for this VM's page only.
    let waiting = Resource::new(id, take_new_enrollment);

    let body = move || {
        Suspend::new(async move {
            let waiting = waiting.await.ok().flatten();
            let d = match detail.await {
                Ok(d) => d,
                Err(e) => {
                    return view! { <div class="alert error" role="alert">{e.summary()}</div> }
                        .into_any();
                }
            };
            let vm = d.vm.clone();
            let policy_rows = d.policy.clone();
            let grants = vm.grants.clone();
            let configure_label = if d.policy.is_empty() {
                "Enable JIT"
            } else {
                "Edit JIT policy"
            };
            view! {
                <Title text=vm.name.clone() />
                <Breadcrumbs trail=vec![("/jit?tab=all".to_owned(), "Just-in-time".to_owned())] here=vm.name.clone() />
                <h1>{vm.name.clone()}</h1>
                <div class="toolbar">
                    {d.can_request.then(|| view! { <a class="btn primary" href=format!("/jit/request?vm={}", vm.id)>"Request access"</a> })}
                    {d.can_configure.then(|| view! { <a class="btn" href=format!("/jit/configure?vm={}", vm.id)>{configure_label}</a> })}
                    {vm.may.view_log.then(|| view! { <a class="btn" href=format!("/activity?vm={}", crate::pages::jit::urlencode(&format!("\"{}\"", vm.name))) data-testid="vm-activity">"Activity log"</a> })}
                </div>
                <section class="card">
                    <dl class="facts">
                        <dt>"Group"</dt><dd>{vm.group.clone()}</dd>
                        <dt>"Operating system"</dt><dd>{vm.os.clone()}</dd>
                        <dt>"Addresses"</dt><dd>{vm.addresses.clone()}</dd>
                        <dt>"Exposed management ports"</dt><dd>{vm.exposed_ports.clone()}</dd>
                        <dt>"Enforcement"</dt><dd data-testid="vm-enforcement"><StatusBadge level=vm.status_level.clone() text=vm.agent_status.clone() /></dd>
                    </dl>
                </section>
                <section class="card">
                    <h2>"JIT policy"</h2>
                    {if policy_rows.is_empty() {
                        view! { <p class="muted">"Not configured: the management ports of this VM are not under JIT control."</p> }.into_any()
                    } else {
                        view! {
                            <table class="table" data-testid="policy">
                                <TableHead cols=&[col::PORT, col::PROTOCOL, col::ALLOWED_SOURCES, col::MAX_TIME, col::JUSTIFICATION, col::APPROVAL] />
                                <tbody>
                                    {policy_rows.into_iter().map(|r| view! {
                                        <tr>
                                            <td data-label=col::PORT>{r.port}</td><td data-label=col::PROTOCOL>{r.protocol.to_uppercase()}</td>
                                            <td data-label=col::ALLOWED_SOURCES>{if r.allowed_sources.is_empty() { "per request".to_owned() } else { r.allowed_sources }}</td>
                                            <td data-label=col::MAX_TIME>{format!("{} min", r.max_minutes)}</td>
                                            <td data-label=col::JUSTIFICATION>{if r.justification_required { "required" } else { "optional" }}</td>
                                            <td data-label=col::APPROVAL>{match (r.approval_required, r.approvals_required.as_str()) {
                                                (false, _) => "not required".to_owned(),
                                                (true, "" | "1") => "required".to_owned(),
                                                (true, n) => format!("required, {n} approvers"),
                                            }}</td>
                                        </tr>
                                    }).collect_view()}
                                </tbody>
                            </table>
                        }.into_any()
                    }}
                </section>
                <section class="card">
                    <h2>"Access in force"</h2>
                    {if grants.is_empty() {
                        view! { <p class="muted">"No port is open."</p> }.into_any()
                    } else {
                        view! {
                            <ul class="grants" data-testid="vm-grants">
                                {grants.into_iter().map(|g| view! { <li>{format!("{}/{} from {} · ", g.port, g.protocol, g.source)}<Countdown end_ms=g.end_at /></li> }).collect_view()}
                            </ul>
                        }.into_any()
                    }}
                </section>
                <section class="card">
                    <h2>"Access windows, last 7 days"</h2>
                    <div class="timeline-wrap" inner_html=d.timeline_svg.clone()></div>
                </section>
                <section class="card">
                    <h2>"Requests"</h2>
                    <table class="table">
                        <TableHead cols=&[col::REQUESTED, col::BY, col::PORTS, col::SOURCE, col::STATUS] />
                        <tbody>
                            {d.requests.iter().map(|r| view! {
                                <tr>
                                    <td data-label=col::REQUESTED><LocalTime ms=r.created_at /></td>
                                    <td data-label=col::BY>{r.requester.clone()}</td>
                                    <td data-label=col::PORTS>{ports_cell(r)}</td>
                                    <td data-label=col::SOURCE>{r.source.clone()}</td>
                                    <td data-label=col::STATUS>{r.status_label.clone()}</td>
                                </tr>
                            }).collect_view()}
                        </tbody>
                    </table>
                </section>
                {d.can_manage.then(|| {
                    let os = vm.os.clone();
                    let delete_id = vm.id.clone();
                    let ask_href = ask::href(ask::VM, &vm.id, "vm");
                    let question = ask::remove_vm(&vm.name);
                    let enroll_id = vm.id.clone();
                    let enrolled = vm.agent_enrolled;
                    let working = enrolled && matches!(vm.status_level.as_str(), "ok" | "info" | "neutral");
                    let just_made = enroll.value().get_untracked().is_some() || waiting.is_some();
                    let enroll_form = view! {
                        <FormAlert err=enroll_err />
                        <ActionForm action=enroll attr:class="inline-form">
                            <input type="hidden" name="vm_id" value=enroll_id />
                            <button type="submit" class="btn">{if enrolled { "Create a token to replace the agent" } else { "Create enrollment token" }}</button>
                        </ActionForm>
                        {move || enroll.value().get().and_then(Result::ok).or_else(|| waiting.clone())
                            .map(|e| view! { <EnrollmentShown e testid="enroll-command" /> })}
                    };
                    view! {
                        <section class="card" data-testid="agent-card">
                            <h2>"Agent"</h2>
                            {if enrolled {
                                view! {
                                    <p data-testid="agent-summary">
                                        {if working { "portcullis-agent is enrolled on this VM and reporting. " } else { "portcullis-agent is enrolled on this VM, but see its status above. " }}
                                        {vm.agent_last_seen.map(|t| view! { "Last heard from " <LocalTime ms=t /> "." })}
                                    </p>
                                    <details open=just_made || !working>
                                        <summary>"Reinstall or replace the agent"</summary>
                                        <p>"A new one-time token (valid for an hour) enrolls a new agent for this VM; the current agent's identity stops working when the new one enrolls."</p>
                                        {enroll_form}
                                    </details>
                                }.into_any()
                            } else {
                                view! {
                                    <p>"Enforcement needs portcullis-agent on this VM. Create a one-time token (valid for an hour) and run the command it shows on the VM: it installs, enrolls and starts the agent."</p>
                                    {enroll_form}
                                }.into_any()
                            }}
                        </section>
                        <section class="card narrow">
                            <h2>"Edit VM"</h2>
                            <FormAlert err=save_err />
                            <ActionForm action=save attr:class="form">
                                <input type="hidden" name="id" value=vm.id.clone() />
                                <Field label="Name" name="name" value=vm.name.clone() err=save_err id_prefix="e" />
                                <Field label="Group" name="group" value=vm.group.clone() err=save_err id_prefix="e" />
                                <Field label="Addresses" name="addresses" value=vm.addresses.clone() err=save_err id_prefix="e" />
                                <div class="field">
                                    <label for="e-os">"Operating system"</label>
                                    <select id="e-os" name="os">
                                        {OSES.iter().map(|(v, l)| view! { <option value=*v selected=os == *v>{*l}</option> }).collect_view()}
                                    </select>
                                </div>
                                <Field label="Exposed management ports" name="exposed_ports" value=vm.exposed_ports.clone() err=save_err id_prefix="e" />
                                <button type="submit" class="btn primary">"Save"</button>
                            </ActionForm>
                        </section>
                        <section class="card narrow danger-zone" id="remove">
                            <h2>"Remove VM"</h2>
                            <FormAlert err=delete_err />
                            <Confirm id="remove-vm" label="Remove this VM" href=ask_href question pending=delete.pending()>
                                <ActionForm action=delete attr:class="inline-form">
                                    <input type="hidden" name="id" value=delete_id />
                                    <button type="submit" class="btn danger">"Remove VM"</button>
                                </ActionForm>
                            </Confirm>
                        </section>
                    }
                })}
            }
            .into_any()
        })
    };

    view! {
        <Shell>
            <Transition fallback=|| view! { <p>"Loading…"</p> }>{body}</Transition>
        </Shell>
    }
}
