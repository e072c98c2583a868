//! The Overview (`/`): what needs the signed-in user first, by what they may do (see
//! `services::overview`): the requests waiting for their decision, their own access, the
//! agents in trouble and recent denials among the VMs they administer, and a new
//! install's first steps. Every section is plain links and text, so it reads the same
//! without JavaScript; hydrated, countdowns and ages move on their own.

use crate::api::overview::{
    AccessView, AgentAlert, DenialView, OverviewData, SetupStepView, TroubleView, WaitingView,
    overview,
};
use crate::components::{Clock, Countdown, LocalTime, Shell, TableHead, UserResource, col, now_ms};
use crate::model::{RequestView, UserView};
use leptos::prelude::*;
use leptos_meta::Title;

#[component]
pub fn HomePage() -> impl IntoView {
    let user = expect_context::<UserResource>();
    let data = Resource::new(|| (), |_| overview());
    let body = move || {
        Suspend::new(async move {
            match user.await {
                Ok(Some(u)) => {
                    let sections = match data.await {
                        Ok(d) => sections(d).into_any(),
                        Err(e) => {
                            view! { <div class="alert error" role="alert">{e.summary()}</div> }
                                .into_any()
                        }
                    };
                    view! {
                        <h1>"Welcome, "{u.display_name.clone()}</h1>
                        {sections}
                        <Roles u />
                    }
                    .into_any()
                }
                Ok(None) => view! { <p>"You are signed out. " <a href="/login">"Sign in"</a></p> }
                    .into_any(),
                Err(e) => {
                    view! { <div class="alert error" role="alert">{e.summary()}</div> }.into_any()
                }
            }
        })
    };
    view! {
        <Title text="Overview" />
        <Shell>
            <Transition fallback=|| view! { <p>"Loading…"</p> }>{body}</Transition>
        </Shell>
    }
}

fn sections(d: OverviewData) -> impl IntoView {
    view! {
        {(!d.setup.is_empty()).then(|| view! { <Checklist steps=d.setup /> })}
        {d.waiting.map(|w| view! { <Waiting w /> })}
        {d.access.map(|a| view! { <Access a /> })}
        {d.trouble.map(|t| view! { <Trouble t /> })}
    }
}

#[component]
fn Roles(u: UserView) -> impl IntoView {
    view! {
        <section class="card">
            <h2>"Your roles"</h2>
            {if u.roles.is_empty() {
                view! { <p>"You have no roles yet. Ask an administrator for access."</p> }.into_any()
            } else {
                view! {
                    <ul class="roles" data-testid="my-roles">
                        {u.roles.iter().map(|r| {
                            let via = r.via_group.as_ref().map(|g| format!(" (via group {g})"));
                            view! { <li><span class="badge">{r.role.clone()}</span>" on "{r.scope.clone()}<span class="muted">{via}</span></li> }
                        }).collect_view()}
                    </ul>
                }.into_any()
            }}
        </section>
    }
}

/// A new install's first steps, each ticked when done, with where it is done.
#[component]
fn Checklist(steps: Vec<SetupStepView>) -> impl IntoView {
    let items = steps
        .into_iter()
        .map(|s| {
            let (label, href, how): (&str, &str, &str) = match s.step.as_str() {
                "add_vm" => ("Add a VM", "/vms/new", "by hand, or with an enrollment command that registers the host when its agent starts"),
                "enable_jit" => ("Enable just-in-time access on a VM", "/jit?tab=all", "pick VMs and choose Enable JIT"),
                "invite_users" => ("Invite users", "/admin/users", "create accounts and give them roles"),
                _ => ("Connect single sign-on", "/admin/users", "add an [[oidc]] provider to the server's configuration, then map its groups to roles"),
            };
            let state = if s.done { "done" } else { "to do" };
            view! {
                <li data-step=s.step.clone() data-done=s.done.to_string() class={if s.done { "done" } else { "todo" }}>
                    <span class="tick" aria-hidden="true">{if s.done { "☑" } else { "☐" }}</span>" "
                    <a href=href>{label}</a>
                    <span class="sr-only">{format!(" ({state})")}</span>
                    <span class="muted">{format!(" — {how}")}</span>
                </li>
            }
        })
        .collect_view();
    view! {
        <section class="card" data-testid="setup-checklist" aria-labelledby="setup-title">
            <h2 id="setup-title">"Getting started"</h2>
            <p class="hint">"What a new installation still needs. This list goes away once every step is done."</p>
            <ul class="checklist">{items}</ul>
        </section>
    }
}

/// `22/tcp, 3389/tcp`.
fn ports_text(r: &RequestView) -> String {
    r.ports
        .iter()
        .map(|p| format!("{}/{}", p.port, p.protocol))
        .collect::<Vec<_>>()
        .join(", ")
}

/// How long ago, coarsely: `just now`, `5 min`, `2 h 05 min`, `3 d`.
fn ago(ms: i64) -> String {
    let minutes = ms.max(0) / 60_000;
    match minutes {
        0 => "just now".to_owned(),
        1..60 => format!("{minutes} min ago"),
        60..1440 => format!("{} h {:02} min ago", minutes / 60, minutes % 60),
        _ => format!("{} d ago", minutes / 1440),
    }
}

/// How long ago `ms` was, moving on once the page is hydrated.
#[component]
fn Age(ms: i64) -> impl IntoView {
    let now = use_context::<Clock>().map(|c| c.0);
    let text = move || ago(now.map(|n| n.get()).unwrap_or_else(now_ms) - ms);
    view! { <span data-testid="age">{text}</span> }
}

/// "1 of 2 approvals" when a request needs more than one approver.
fn approvals_text(r: &RequestView) -> Option<String> {
    (r.approvals_required > 1)
        .then(|| format!("{} of {} approvals", r.approvals, r.approvals_required))
}

#[component]
fn Waiting(w: WaitingView) -> impl IntoView {
    let count = format!("{}{}", w.count, if w.more { "+" } else { "" });
    let body = if w.first.is_empty() {
        view! { <p class="muted">"Nothing waits for your decision."</p> }.into_any()
    } else {
        let shown = w.first.len();
        let rows = w
            .first
            .into_iter()
            .map(|r| {
                let ports = ports_text(&r);
                let approvals = approvals_text(&r);
                view! {
                    <tr data-request=r.id.clone() data-vm=r.vm_name.clone()>
                        <td data-label=col::VM><a href=format!("/requests/{}", r.id)>{r.vm_name.clone()}</a></td>
                        <td data-label=col::REQUESTER>{r.requester.clone()}</td>
                        <td data-label=col::PORTS>{ports}</td>
                        <td data-label=col::ASKED><Age ms=r.created_at /></td>
                        <td data-label=col::APPROVALS><span data-testid="approvals">{approvals}</span></td>
                    </tr>
                }
            })
            .collect_view();
        view! {
            <table class="table">
                <TableHead cols=&[col::VM, col::REQUESTER, col::PORTS, col::ASKED, col::APPROVALS] />
                <tbody>{rows}</tbody>
            </table>
            {(w.count > shown || w.more).then(|| view! {
                <p><a href="/requests">{format!("All {count} waiting for you")}</a></p>
            })}
        }
        .into_any()
    };
    view! {
        <section class="card" data-testid="waiting-for-you" aria-labelledby="waiting-title">
            <h2 id="waiting-title">"Waiting for you "<span class="badge" data-testid="waiting-count">{count.clone()}</span></h2>
            {body}
        </section>
    }
}

#[component]
fn Access(a: AccessView) -> impl IntoView {
    let nothing = a.active.is_empty() && a.scheduled.is_empty() && a.pending.is_empty();
    let link = |r: &RequestView| {
        view! { <a href=format!("/requests/{}", r.id)>{r.vm_name.clone()}</a> }
    };
    let active = (!a.active.is_empty()).then(|| {
        let items = a
            .active
            .iter()
            .map(|r| {
                let end = r.end_at.map(|end| view! { " · "<Countdown end_ms=end />" (until "<LocalTime ms=end />")" });
                view! { <li data-request=r.id.clone() data-vm=r.vm_name.clone()>{link(r)}" "{ports_text(r)}" from "{r.source.clone()}{end}</li> }
            })
            .collect_view();
        view! { <h3>"In force"</h3><ul class="plain" data-testid="access-active">{items}</ul> }
    });
    let scheduled = (!a.scheduled.is_empty()).then(|| {
        let items = a
            .scheduled
            .iter()
            .map(|r| {
                let opens = r.planned_start_at.map(|start| view! { " · opens at "<LocalTime ms=start /> });
                view! { <li data-request=r.id.clone() data-vm=r.vm_name.clone()>{link(r)}" "{ports_text(r)}" from "{r.source.clone()}<span data-testid="opens">{opens}</span></li> }
            })
            .collect_view();
        view! { <h3>"Booked"</h3><ul class="plain" data-testid="access-scheduled">{items}</ul> }
    });
    let pending = (!a.pending.is_empty()).then(|| {
        let items = a
            .pending
            .iter()
            .map(|r| {
                let approvals = approvals_text(r).map(|t| format!(" · {t}"));
                view! { <li data-request=r.id.clone() data-vm=r.vm_name.clone()>{link(r)}" "{ports_text(r)}" · asked "<Age ms=r.created_at /><span data-testid="approvals">{approvals}</span></li> }
            })
            .collect_view();
        view! { <h3>"Waiting for approval"</h3><ul class="plain" data-testid="access-pending">{items}</ul> }
    });
    view! {
        <section class="card" data-testid="your-access" aria-labelledby="access-title">
            <h2 id="access-title">"Your access"</h2>
            {nothing.then(|| view! {
                <p class="muted">"No access in force, booked or waiting. Pick a VM on the " <a href="/jit">"Just-in-time"</a>" page to ask for some."</p>
            })}
            {active}
            {scheduled}
            {pending}
            <p>
                <a href="/requests">{if a.more { "All your requests (more than shown here)" } else { "All your requests" }}</a>
            </p>
        </section>
    }
}

fn agent_item(a: AgentAlert) -> impl IntoView {
    let status = match a.silent_since {
        Some(seen) => view! { "Agent silent since "<LocalTime ms=seen /> }.into_any(),
        None if !a.error.is_empty() => format!("Enforcement error: {}", a.error).into_any(),
        None => "Agent silent, never heard from".into_any(),
    };
    view! {
        <li data-vm=a.vm_name.clone()>
            <a href=format!("/vms/{}", a.vm_id)>{a.vm_name.clone()}</a>
            <span class="muted">{format!(" ({})", a.group)}</span>
            " — "{status}
        </li>
    }
}

fn denial_item(d: DenialView) -> impl IntoView {
    let comment = (!d.comment.is_empty()).then(|| format!(": “{}”", d.comment));
    view! {
        <li data-request=d.request_id.clone() data-vm=d.vm_name.clone()>
            <a href=format!("/requests/{}", d.request_id)>{format!("{} on {}", d.requester, d.vm_name)}</a>
            {format!(" denied by {} ", d.decided_by)}
            <LocalTime ms=d.decided_at />
            {comment}
        </li>
    }
}

#[component]
fn Trouble(t: TroubleView) -> impl IntoView {
    let calm = t.silent.is_empty() && t.errors.is_empty();
    let more_agents = t.more_silent || t.more_errors;
    view! {
        <section class="card" data-testid="needs-attention" aria-labelledby="attention-title">
            <h2 id="attention-title">"Your VMs"</h2>
            <h3>"Agents needing attention"</h3>
            {if calm {
                view! { <p class="muted" data-testid="agents-calm">"No silent agent and no enforcement error among the VMs you administer."</p> }.into_any()
            } else {
                view! {
                    <ul class="plain" data-testid="agent-trouble">
                        {t.silent.into_iter().map(agent_item).collect_view()}
                        {t.errors.into_iter().map(agent_item).collect_view()}
                    </ul>
                    {more_agents.then(|| view! { <p class="muted">"More VMs need attention: see the " <a href="/jit?tab=all">"VM list"</a>"."</p> })}
                }.into_any()
            }}
            <h3>"Denied in the last 24 hours"</h3>
            {if t.denials.is_empty() {
                view! { <p class="muted" data-testid="no-denials">"No request was denied."</p> }.into_any()
            } else {
                view! {
                    <ul class="plain" data-testid="denials">{t.denials.into_iter().map(denial_item).collect_view()}</ul>
                    {t.more_denials.then(|| view! { <p><a href="/activity?action=deny">"All denials in the activity log"</a></p> })}
                }.into_any()
            }}
        </section>
    }
}
