//! My requests (with live countdown, revoke and extend) and the approval queue. An
//! extension's error shows in the row of that request: a hydrated page knows the row from
//! the action's input; after a plain form post the server function names it in the URL
//! it sends the browser back to (`?extend=ID`).

use crate::api::jit::{DecideRequest, ExtendRequest, RevokeRequest, my_requests};
use crate::components::{
    Confirm, Countdown, FormAlert, LocalTime, Shell, StatusBadge, TableHead, action_error, col,
};
use crate::error::AppError;
use crate::model::{RequestView, ask};
use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::hooks::use_query_map;

#[component]
pub fn RequestsPage() -> impl IntoView {
    let revoke = ServerAction::<RevokeRequest>::new();
    let extend = ServerAction::<ExtendRequest>::new();
    let decide = ServerAction::<DecideRequest>::new();
    let query = use_query_map();
    let pages = move || {
        let q = query.get();
        let n = |k: &str| q.get(k).and_then(|p| p.parse::<i64>().ok()).unwrap_or(1);
        (n("page"), n("approvals_page"))
    };
    let data = Resource::new(
        move || {
            (
                revoke.version().get(),
                extend.version().get(),
                decide.version().get(),
                pages(),
            )
        },
        |(_, _, _, (page, approvals_page))| my_requests(page, approvals_page),
    );
    let revoke_err = action_error(revoke);
    let extend_err = action_error(extend);
    // The request whose extension failed last: from the URL after a plain form post, from
    // the action's input once hydrated.
    let extended = RwSignal::new(query.with_untracked(|q| q.get(crate::api::jit::EXTENDED_PARAM)));
    Effect::new(move |_| {
        if let Some(input) = extend.input().get() {
            extended.set(Some(input.id));
        }
    });
    let decide_err = action_error(decide);

    let body = move || {
        Suspend::new(async move {
            let (page, approvals_page) = pages();
            let (mine, queue, more_mine, more_queue) = match data.await {
                Ok(d) => d,
                Err(e) => {
                    return view! { <div class="alert error" role="alert">{e.summary()}</div> }
                        .into_any();
                }
            };
            let queue_view = (!queue.is_empty()).then(|| {
                view! {
                    <section class="card" data-testid="approval-queue">
                        <h2>"Waiting for your approval"</h2>
                        <FormAlert err=decide_err />
                        <table class="table">
                            <TableHead cols=&[col::VM, col::REQUESTER, col::PORTS, col::SOURCE, col::DURATION, col::JUSTIFICATION, col::DECISION] />
                            <tbody>
                                {queue.into_iter().map(|r| view! { <QueueRow r decide /> }).collect_view()}
                            </tbody>
                        </table>
                        <Older more=more_queue prev=approvals_page - 1 next=approvals_page + 1 key="approvals_page" other=("page", page) />
                    </section>
                }
            });
            view! {
                {queue_view}
                <section class="card">
                    <h2>"My requests"</h2>
                    <FormAlert err=revoke_err />
                    {if mine.is_empty() {
                        view! { <p class="muted">"You have made no requests yet. Pick a VM on the " <a href="/jit">"Just-in-time"</a>" page."</p> }.into_any()
                    } else {
                        view! {
                            <table class="table" data-testid="my-requests">
                                <TableHead cols=&[col::VM, col::PORTS, col::SOURCE, col::REQUESTED, col::STATUS, col::ENDS, col::ACTIONS] />
                                <tbody>
                                    {mine.into_iter().map(|r| {
                                        let id = r.id.clone();
                                        let err = Signal::derive(move || {
                                            extended.with(|e| e.as_deref() == Some(id.as_str())).then(|| extend_err.get()).flatten()
                                        });
                                        view! { <MineRow r revoke extend err /> }
                                    }).collect_view()}
                                </tbody>
                            </table>
                            <Older more=more_mine prev=page - 1 next=page + 1 key="page" other=("approvals_page", approvals_page) />
                        }.into_any()
                    }}
                </section>
            }
            .into_any()
        })
    };

    view! {
        <Title text="Requests" />
        <Shell>
            <h1>"Access requests"</h1>
            <Transition fallback=|| view! { <p>"Loading…"</p> }>{body}</Transition>
        </Shell>
    }
}

pub(crate) fn ports_cell(r: &RequestView) -> impl IntoView + use<> {
    let items = r
        .ports
        .iter()
        .map(|p| {
            let reason = if p.reason.is_empty() || p.reason == p.status { String::new() } else { format!(" ({})", p.reason) };
            let enforcement = (!p.enforcement.is_empty()).then(|| view! {
                " " <StatusBadge level=p.enforcement_level.clone() text=p.enforcement.clone() />
            });
            view! { <li><span class=format!("status {}", p.status)>{format!("{}/{} {}", p.port, p.protocol, p.status)}</span>{reason}<span data-testid="enforcement">{enforcement}</span></li> }
        })
        .collect_view();
    view! { <ul class="grants">{items}</ul> }
}

/// "Opens …" under a request that waits for the later start it asked for.
fn opens_note(r: &RequestView) -> Option<impl IntoView + use<>> {
    let start = r
        .planned_start_at
        .filter(|_| r.start_at.is_none() && !r.status_is_final())?;
    Some(view! { <span class="muted" data-testid="opens">"Opens "<LocalTime ms=start /></span> })
}

/// "1 of 2 approvals" under a request still waiting for more than one approver.
fn approvals_note(r: &RequestView) -> Option<impl IntoView + use<>> {
    (r.status == "pending_approval" && r.approvals_required > 1).then(|| {
        let text = format!("{} of {} approvals", r.approvals, r.approvals_required);
        view! { <span class="muted" data-testid="approvals">{text}</span> }
    })
}

#[component]
fn MineRow(
    r: RequestView,
    revoke: ServerAction<RevokeRequest>,
    extend: ServerAction<ExtendRequest>,
    /// The last extension's error, if it was this request's.
    err: Signal<Option<AppError>>,
) -> impl IntoView {
    let active = r.status == "active";
    let ends = match (r.status.as_str(), r.end_at) {
        ("active", Some(end)) => view! { <Countdown end_ms=end /> }.into_any(),
        (_, Some(end)) => view! { <LocalTime ms=end /> }.into_any(),
        _ => view! { <span class="muted">"—"</span> }.into_any(),
    };
    let id = r.id.clone();
    let id2 = r.id.clone();
    let ext_id = format!("ext-{}", r.id);
    let ext_err_id = format!("ext-{}-error", r.id);
    let ext_described_by = ext_err_id.clone();
    let ports = ask::ports(
        r.ports
            .iter()
            .map(|p| (p.port.to_string(), p.protocol.as_str())),
    );
    let question = ask::revoke(&r.requester, &ports, &r.vm_name);
    let revoke_href = ask::href(ask::REVOKE, &r.id, "list");
    let revoke_label = format!("Revoke access to {} on {}", ports, r.vm_name);
    let confirm_id = format!("revoke-{}", r.id);
    view! {
        <tr data-request=r.id.clone() data-vm=r.vm_name.clone()>
            <td data-label=col::VM><a href=format!("/vms/{}", r.vm_id)>{r.vm_name.clone()}</a></td>
            <td data-label=col::PORTS>{ports_cell(&r)}</td>
            <td data-label=col::SOURCE>{r.source.clone()}</td>
            <td data-label=col::REQUESTED><LocalTime ms=r.created_at /></td>
            <td data-label=col::STATUS><span class=format!("status {}", r.status) data-testid="request-status">{r.status_label.clone()}</span>
                {approvals_note(&r).map(|note| view! { <br />{note} })}
                {opens_note(&r).map(|note| view! { <br />{note} })}
                {(!r.comment.is_empty()).then(|| view! { <br /><span class="muted">{format!("“{}”", r.comment)}</span> })}
            </td>
            <td data-label=col::ENDS>{ends}</td>
            <td data-label=col::ACTIONS>
                <a href=format!("/requests/{}", r.id) class="link">"Details"</a>
                {r.can_end.then(|| view! {
                    <Confirm id=confirm_id label="Revoke" aria_label=revoke_label class="btn small" href=revoke_href question pending=revoke.pending()>
                        <ActionForm action=revoke attr:class="inline-form">
                            <input type="hidden" name="id" value=id />
                            <button type="submit" class="btn danger">"Revoke"</button>
                        </ActionForm>
                    </Confirm>
                })}
                {(r.can_end && active).then(|| view! {
                    <ActionForm action=extend attr:class="inline-form extend">
                        <input type="hidden" name="id" value=id2 />
                        <label for=ext_id.clone() class="sr-only">"Extend to minutes from now"</label>
                        <input id=ext_id type="text" inputmode="numeric" size="4" name="duration" placeholder="min"
                            aria-invalid=move || err.get().is_some().then_some("true") aria-describedby=ext_described_by />
                        <button type="submit" class="btn small">"Extend"</button>
                    </ActionForm>
                    <p class="field-error" id=ext_err_id aria-live="polite" data-testid="extend-error">
                        {move || err.get().map(|e| e.field_message("duration").unwrap_or_else(|| e.to_string()))}
                    </p>
                })}
            </td>
        </tr>
    }
}

#[component]
fn QueueRow(r: RequestView, decide: ServerAction<DecideRequest>) -> impl IntoView {
    let (id_a, id_d) = (r.id.clone(), r.id.clone());
    let (ca, cd) = (format!("ca-{}", r.id), format!("cd-{}", r.id));
    let ports = ask::ports(
        r.ports
            .iter()
            .map(|p| (p.port.to_string(), p.protocol.as_str())),
    );
    let question = ask::deny(&r.requester, &ports, &r.vm_name);
    let deny_href = ask::href(ask::DENY, &r.id, "list");
    let deny_label = format!(
        "Deny {}'s request for {} on {}",
        r.requester, ports, r.vm_name
    );
    let confirm_id = format!("deny-{}", r.id);
    view! {
        <tr data-request=r.id.clone() data-vm=r.vm_name.clone()>
            <td data-label=col::VM><a href=format!("/requests/{}", r.id)>{r.vm_name.clone()}</a></td>
            <td data-label=col::REQUESTER>{r.requester.clone()}</td>
            <td data-label=col::PORTS>{ports_cell(&r)}</td>
            <td data-label=col::SOURCE>{r.source.clone()}</td>
            <td data-label=col::DURATION>{format!("{} min", r.duration_minutes)}</td>
            <td data-label=col::JUSTIFICATION>{r.justification.clone()}</td>
            <td data-label=col::DECISION>
                {approvals_note(&r).map(|note| view! { {note}<br /> })}
                {opens_note(&r).map(|note| view! { {note}<br /> })}
                <ActionForm action=decide attr:class="inline-form">
                    <input type="hidden" name="id" value=id_a />
                    <input type="hidden" name="decision" value="approve" />
                    <label for=ca.clone() class="sr-only">"Approval comment"</label>
                    <input id=ca type="text" name="comment" placeholder="Comment" size="12" />
                    <button type="submit" class="btn small primary">"Approve"</button>
                </ActionForm>
                <Confirm id=confirm_id label="Deny" aria_label=deny_label class="btn small" href=deny_href question pending=decide.pending()>
                    <ActionForm action=decide attr:class="form compact">
                        <input type="hidden" name="id" value=id_d />
                        <input type="hidden" name="decision" value="deny" />
                        <div class="field">
                            <label for=cd.clone()>"Reason for denial"</label>
                            <input id=cd type="text" name="comment" autocomplete="off" />
                        </div>
                        <button type="submit" class="btn danger">"Deny"</button>
                    </ActionForm>
                </Confirm>
            </td>
        </tr>
    }
}

/// Links to the newer and older pages of a request list (50 a page).
#[component]
fn Older(
    more: bool,
    prev: i64,
    next: i64,
    key: &'static str,
    other: (&'static str, i64),
) -> impl IntoView {
    let link = move |n: i64| format!("/requests?{key}={n}&{}={}", other.0, other.1);
    (more || prev >= 1).then(|| {
        view! {
            <nav class="pager" aria-label="More requests">
                {(prev >= 1).then(|| view! { <a href=link(prev)>"Newer"</a> })}
                {more.then(|| view! { <a href=link(next) data-testid=format!("{key}-older")>"Older"</a> })}
            </nav>
        }
    })
}
