//! One access request on a page of its own, the page every message about a request links
//! to: an approver decides it from there (approve by link), its requester or a VM
//! administrator revokes it. The buttons only show what the services would allow; they
//! decide again.

use crate::api::jit::{DecideRequest, RevokeRequest};
use crate::api::notify::get_request_detail;
use crate::components::{Confirm, Countdown, FormAlert, LocalTime, Shell, action_error};
use crate::model::ask;
use crate::pages::requests::ports_cell;
use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::hooks::use_params_map;

#[component]
pub fn RequestDetailPage() -> impl IntoView {
    let params = use_params_map();
    let id = move || params.get().get("id").unwrap_or_default();
    // One action each, so that each form shows its own error (success is said by the
    // message the decision carries to the reloaded page).
    let approve = ServerAction::<DecideRequest>::new();
    let deny = ServerAction::<DecideRequest>::new();
    let revoke = ServerAction::<RevokeRequest>::new();
    let data = Resource::new(
        move || {
            (
                id(),
                approve.version().get(),
                deny.version().get(),
                revoke.version().get(),
            )
        },
        |(id, _, _, _)| get_request_detail(id),
    );
    let approve_err = action_error(approve);
    let deny_err = action_error(deny);
    let revoke_err = action_error(revoke);
    let body = move || {
        Suspend::new(async move {
            let d = match data.await {
                Ok(d) => d,
                Err(e) => {
                    return view! {
                        <h1>"Access request"</h1>
                        <div class="alert error" role="alert">{e.summary()}</div>
                        <p><a href="/requests">"All requests"</a></p>
                    }
                    .into_any();
                }
            };
            let r = d.request;
            let ends = match (r.status.as_str(), r.end_at) {
                ("active", Some(end)) => {
                    view! { <Countdown end_ms=end />" (" <LocalTime ms=end />")" }.into_any()
                }
                (_, Some(end)) => view! { <LocalTime ms=end /> }.into_any(),
                _ => view! { <span class="muted">"—"</span> }.into_any(),
            };
            let starts = match (r.start_at, r.planned_start_at) {
                (Some(ms), _) => view! { <LocalTime ms /> }.into_any(),
                (None, Some(ms)) if !r.status_is_final() => {
                    view! { <span data-testid="opens">"scheduled for "<LocalTime ms /></span> }
                        .into_any()
                }
                (None, _) if r.status == "pending_approval" => {
                    view! { <span class="muted">"when approved"</span> }.into_any()
                }
                (None, _) => view! { <span class="muted">"—"</span> }.into_any(),
            };
            let decided = r.decided_by.clone().map(|by| {
                view! {
                    <dt>"Decided by"</dt><dd data-testid="decided-by">{by}</dd>
                }
            });
            let comment = (!r.comment.is_empty()).then(|| {
                view! { <dt>"Comment"</dt><dd>{format!("“{}”", r.comment)}</dd> }
            });
            let justification = if r.justification.is_empty() {
                view! { <span class="muted">"none given"</span> }.into_any()
            } else {
                view! { <span>{r.justification.clone()}</span> }.into_any()
            };
            let ports = ask::ports(
                r.ports
                    .iter()
                    .map(|p| (p.port.to_string(), p.protocol.as_str())),
            );
            let deny_question = ask::deny(&r.requester, &ports, &r.vm_name);
            let revoke_question = ask::revoke(&r.requester, &ports, &r.vm_name);
            let decide = d.can_decide.then(|| {
                let (id_a, id_d) = (r.id.clone(), r.id.clone());
                let deny_href = ask::href(ask::DENY, &r.id, "detail");
                view! {
                    <section class="card narrow" data-testid="decide">
                        <h2>"Your decision"</h2>
                        <FormAlert err=approve_err />
                        <FormAlert err=deny_err />
                        <ActionForm action=approve attr:class="form compact">
                            <input type="hidden" name="id" value=id_a />
                            <input type="hidden" name="decision" value="approve" />
                            <div class="field">
                                <label for="rd-approve-comment">"Approval comment (optional)"</label>
                                <input id="rd-approve-comment" type="text" name="comment" autocomplete="off" />
                            </div>
                            <button type="submit" class="btn primary">"Approve"</button>
                        </ActionForm>
                        <Confirm id="deny" label="Deny…" class="btn" href=deny_href question=deny_question pending=deny.pending()>
                            <ActionForm action=deny attr:class="form compact">
                                <input type="hidden" name="id" value=id_d />
                                <input type="hidden" name="decision" value="deny" />
                                <div class="field">
                                    <label for="rd-deny-comment">"Reason for denial"</label>
                                    <input id="rd-deny-comment" type="text" name="comment" autocomplete="off" />
                                </div>
                                <button type="submit" class="btn danger">"Deny"</button>
                            </ActionForm>
                        </Confirm>
                    </section>
                }
            });
            let end = r.can_end.then(|| {
                let id = r.id.clone();
                let revoke_href = ask::href(ask::REVOKE, &r.id, "detail");
                view! {
                    <section class="card narrow" data-testid="end">
                        <h2>"End it"</h2>
                        <FormAlert err=revoke_err />
                        <p class="muted">"Revoking closes its ports now (or withdraws it while it waits)."</p>
                        <Confirm id="revoke" label="Revoke" href=revoke_href question=revoke_question pending=revoke.pending()>
                            <ActionForm action=revoke attr:class="inline-form">
                                <input type="hidden" name="id" value=id />
                                <button type="submit" class="btn danger">"Revoke"</button>
                            </ActionForm>
                        </Confirm>
                    </section>
                }
            });
            view! {
                <h1>{format!("Access to {}", r.vm_name)}</h1>
                <section class="card" data-request=r.id.clone()>
                    <dl class="facts">
                        <dt>"Status"</dt>
                        <dd>
                            <span class=format!("status {}", r.status) data-testid="request-status">{r.status_label.clone()}</span>
                            {(r.status == "pending_approval" && r.approvals_required > 1).then(|| view! {
                                " "<span class="muted" data-testid="approvals">{format!("{} of {} approvals", r.approvals, r.approvals_required)}</span>
                            })}
                        </dd>
                        <dt>"VM"</dt><dd><a href=format!("/vms/{}", r.vm_id)>{r.vm_name.clone()}</a></dd>
                        <dt>"Group"</dt><dd>{d.vm_group.clone()}</dd>
                        <dt>"Requester"</dt><dd data-testid="requester">{r.requester.clone()}</dd>
                        <dt>"Ports"</dt><dd>{ports_cell(&r)}</dd>
                        <dt>"Source"</dt><dd>{r.source.clone()}</dd>
                        <dt>"Duration"</dt><dd>{format!("{} min", r.duration_minutes)}</dd>
                        <dt>"Justification"</dt><dd>{justification}</dd>
                        <dt>"Requested"</dt><dd><LocalTime ms=r.created_at /></dd>
                        <dt>"Starts"</dt><dd>{starts}</dd>
                        <dt>"Ends"</dt><dd>{ends}</dd>
                        {decided}
                        {comment}
                    </dl>
                </section>
                {decide}
                {end}
                <p><a href="/requests">"All requests"</a></p>
            }
            .into_any()
        })
    };

    view! {
        <Title text="Access request" />
        <Shell>
            <Transition fallback=|| view! { <p>"Loading…"</p> }>{body}</Transition>
        </Shell>
    }
}
