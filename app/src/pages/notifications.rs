//! Notifications for administrators: the channels messages go out through (with a test
//! that says at once whether the receiver took it), the routing rules that send events
//! to them, and what was sent lately. And each user's own e-mail settings. Every form
//! works as a plain HTML post too; what an action did is shown after it either way.

use crate::api::notify::{
    AddNotifyRoute, ChannelRow, CreateNotifyChannel, DeleteNotifyChannel, DeleteNotifyRoute, Done,
    MessageRow, RouteRow, SaveMyNotificationSettings, SetNotifyChannelEnabled, TestNotifyChannel,
    my_notification_settings, notifications_page,
};
use crate::components::{
    Confirm, Field, FieldMsg, FormAlert, LocalTime, Shell, TableHead, action_error, col,
};
use crate::domain::notify::{ChannelKind, NotifyEvent};
use crate::error::AppError;
use crate::model::ask;
use leptos::prelude::*;
use leptos_meta::Title;

const SMTP_SECURITY: [(&str, &str); 3] = [
    ("starttls", "STARTTLS (usually port 587)"),
    ("tls", "TLS from the start (usually port 465)"),
    ("none", "None: only for a relay on this host or network"),
];

/// Keeps `done` at the last answer of `action` in the hydrated page (a failure clears it:
/// its message is shown by the form instead).
fn follow<I>(action: ServerAction<I>, done: RwSignal<Option<Done>>)
where
    I: leptos::server_fn::ServerFn<Output = Done, Error = AppError> + Clone + Send + Sync + 'static,
{
    Effect::new(move |_| {
        if let Some(result) = action.value().get() {
            done.set(result.ok());
        }
    });
}

/// A general outcome (not a channel's test), with a new webhook's signing key once.
fn done_view(d: Done) -> impl IntoView {
    let key = d.signing_key.map(|key| {
        view! {
            <p>"The new webhook's signing key. Set it up at the receiver now: it is not shown again."</p>
            <p><code class="token" data-testid="signing-key">{key}</code></p>
        }
    });
    view! {
        <div class="alert success" role="status" data-testid="notify-done">
            <p class="done-message">{d.message}</p>
            {key}
        </div>
    }
}

#[component]
pub fn NotificationsPage() -> impl IntoView {
    let create = ServerAction::<CreateNotifyChannel>::new();
    let test = ServerAction::<TestNotifyChannel>::new();
    let toggle = ServerAction::<SetNotifyChannelEnabled>::new();
    let remove = ServerAction::<DeleteNotifyChannel>::new();
    let add_route = ServerAction::<AddNotifyRoute>::new();
    let remove_route = ServerAction::<DeleteNotifyRoute>::new();
    let done = RwSignal::new(None::<Done>);
    follow(create, done);
    follow(test, done);
    follow(toggle, done);
    follow(remove, done);
    follow(add_route, done);
    follow(remove_route, done);
    let data = Resource::new(
        move || {
            (
                (create.version().get(), test.version().get()),
                (toggle.version().get(), remove.version().get()),
                (add_route.version().get(), remove_route.version().get()),
            )
        },
        |_| notifications_page(),
    );
    let create_err = action_error(create);
    let route_err = action_error(add_route);
    let channel_err = Signal::derive(move || {
        test.value()
            .get()
            .and_then(Result::err)
            .or_else(|| toggle.value().get().and_then(Result::err))
            .or_else(|| remove.value().get().and_then(Result::err))
    });
    let route_row_err = action_error(remove_route);

    // The hydrated action's answer, or else what a plain form post left for this page.
    let shown = move || {
        Suspend::new(async move {
            let kept = data.await.ok().and_then(|d| d.done);
            move || {
                done.get()
                    .or_else(|| kept.clone())
                    .filter(|d| d.channel_id.is_none())
                    .map(done_view)
            }
        })
    };

    let channels = move || {
        Suspend::new(async move {
            let d = match data.await {
                Ok(d) => d,
                Err(e) => {
                    return view! { <div class="alert error" role="alert">{e.summary()}</div> }
                        .into_any();
                }
            };
            let kept = d.done.clone();
            let outcome = Signal::derive(move || done.get().or_else(|| kept.clone()));
            if d.channels.is_empty() {
                return view! { <p class="muted">"No channel yet. Add one below."</p> }.into_any();
            }
            view! {
                <table class="table" data-testid="channels">
                    <TableHead cols=&[col::NAME, col::KIND, col::TARGET, col::ENABLED, col::LAST_DELIVERY, col::ACTIONS] />
                    <tbody>
                        {d.channels.into_iter().map(|c| view! { <ChannelRowView c outcome test toggle remove /> }).collect_view()}
                    </tbody>
                </table>
            }
            .into_any()
        })
    };

    let routes = move || {
        Suspend::new(async move {
            let d = match data.await {
                Ok(d) => d,
                Err(e) => {
                    return view! { <div class="alert error" role="alert">{e.summary()}</div> }
                        .into_any();
                }
            };
            let table = if d.routes.is_empty() {
                view! { <p class="muted">"No routing rule: channels get only their test messages."</p> }.into_any()
            } else {
                view! {
                    <table class="table" data-testid="routes">
                        <TableHead cols=&[col::CHANNEL, col::EVENT, col::GROUP, col::ACTIONS] />
                        <tbody>
                            {d.routes.into_iter().map(|r| view! { <RouteRowView r remove_route /> }).collect_view()}
                        </tbody>
                    </table>
                }
                .into_any()
            };
            let channel_options: Vec<(String, String)> = d
                .channels
                .iter()
                .map(|c| (c.id.clone(), c.name.clone()))
                .collect();
            view! {
                {table}
                <h3>"Add a rule"</h3>
                {if channel_options.is_empty() {
                    view! { <p class="muted">"Add a channel first."</p> }.into_any()
                } else {
                    view! { <AddRouteForm channels=channel_options add_route /> }.into_any()
                }}
            }
            .into_any()
        })
    };

    let messages = move || {
        Suspend::new(async move {
            let d = match data.await {
                Ok(d) => d,
                Err(e) => {
                    return view! { <div class="alert error" role="alert">{e.summary()}</div> }
                        .into_any();
                }
            };
            let per_channel = d
                .channels
                .into_iter()
                .map(|c| {
                    let summary = format!(
                        "{}: {} recent message{}",
                        c.name,
                        c.messages.len(),
                        if c.messages.len() == 1 { "" } else { "s" }
                    );
                    view! {
                        <details class="messages" data-channel=c.name.clone()>
                            <summary>{summary}</summary>
                            <MessagesTable messages=c.messages personal=false />
                        </details>
                    }
                })
                .collect_view();
            view! {
                <h3>"Users' own e-mails"</h3>
                <MessagesTable messages=d.personal personal=true />
                <h3>"Channels"</h3>
                {per_channel}
            }
            .into_any()
        })
    };

    view! {
        <Title text="Notifications" />
        <Shell>
            <h1>"Notifications"</h1>
            <p>
                "Portcullis tells people what concerns them: approvers when a request waits for them, requesters when it is decided or about to end, and VM administrators when an agent falls silent or cannot apply its rules. Users choose their own e-mail on "
                <a href="/account/notifications">"their notification settings"</a>
                ". Channels below also get the events that routing rules send them."
            </p>
            <Transition fallback=|| ()>{shown}</Transition>
            <section class="card">
                <h2>"Channels"</h2>
                <FormAlert err=channel_err />
                <Transition fallback=|| view! { <p>"Loading…"</p> }>{channels}</Transition>
            </section>
            <section class="card">
                <h2>"Add a channel"</h2>
                <FormAlert err=create_err />
                <AddChannelForm create err=create_err />
            </section>
            <section class="card">
                <h2>"Routing rules"</h2>
                <p class="muted">"A rule sends one kind of event about the VMs of a group (or of every group) to a channel."</p>
                <FormAlert err=route_row_err />
                <FormAlert err=route_err />
                <Transition fallback=|| view! { <p>"Loading…"</p> }>{routes}</Transition>
            </section>
            <section class="card">
                <h2>"Recent messages"</h2>
                <Transition fallback=|| view! { <p>"Loading…"</p> }>{messages}</Transition>
            </section>
        </Shell>
    }
}

#[component]
fn ChannelRowView(
    c: ChannelRow,
    outcome: Signal<Option<Done>>,
    test: ServerAction<TestNotifyChannel>,
    toggle: ServerAction<SetNotifyChannelEnabled>,
    remove: ServerAction<DeleteNotifyChannel>,
) -> impl IntoView {
    let last = if c.last_status.is_empty() {
        view! { <span class="muted">"none yet"</span> }.into_any()
    } else {
        view! {
            <span class=format!("status {}", c.last_status)>{c.last_status.clone()}</span>
            {c.last_attempt_at.map(|ms| view! { " " <LocalTime ms /> })}
            {(!c.last_error.is_empty()).then(|| view! { <br /><span class="muted">{c.last_error.clone()}</span> })}
        }
        .into_any()
    };
    let id = c.id.clone();
    let sending = {
        let id = id.clone();
        move || test.pending().get() && test.input().get().is_some_and(|i| i.id == id)
    };
    let result = {
        let id = id.clone();
        move || {
            outcome
                .get()
                .filter(|d| d.channel_id.as_deref() == Some(id.as_str()))
        }
    };
    let sending_now = sending.clone();
    let (id_test, id_toggle, id_remove) = (id.clone(), id.clone(), id.clone());
    let remove_label = format!("Remove channel {}", c.name);
    view! {
        <tr data-channel=c.name.clone()>
            <td data-label=col::NAME>{c.name.clone()}</td>
            <td data-label=col::KIND>{c.kind_label.clone()}</td>
            <td data-label=col::TARGET><code>{c.target.clone()}</code></td>
            <td data-label=col::ENABLED>{if c.enabled { "yes" } else { "no" }}</td>
            <td data-label=col::LAST_DELIVERY data-testid="last-delivery">{last}</td>
            <td data-label=col::ACTIONS><div class="channel-actions">
                <ActionForm action=test attr:class="inline-form">
                    <input type="hidden" name="id" value=id_test />
                    <button type="submit" class="btn small" disabled=sending_now>"Send test"</button>
                </ActionForm>
                <ActionForm action=toggle attr:class="inline-form">
                    <input type="hidden" name="id" value=id_toggle />
                    <input type="hidden" name="enabled" value=if c.enabled { "false" } else { "true" } />
                    <button type="submit" class="btn small">{if c.enabled { "Disable" } else { "Enable" }}</button>
                </ActionForm>
                <Confirm id=format!("channel-{id}") label="Remove…" class="btn small" aria_label=remove_label
                    href=ask::href(ask::CHANNEL, &id, "admin") question=ask::remove_channel(&c.name) pending=remove.pending()>
                    <ActionForm action=remove attr:class="inline-form">
                        <input type="hidden" name="id" value=id_remove />
                        <button type="submit" class="btn danger">"Remove channel"</button>
                    </ActionForm>
                </Confirm>
                <div role="status" class="test-result" data-testid="test-result">
                    {move || sending().then(|| view! { <span class="muted">"Sending…"</span> })}
                    {move || result().map(|d| view! {
                        <span class=if d.ok { "status delivered" } else { "status failed" }>{d.message}</span>
                    })}
                </div>
            </div></td>
        </tr>
    }
}

#[component]
fn RouteRowView(r: RouteRow, remove_route: ServerAction<DeleteNotifyRoute>) -> impl IntoView {
    let label = format!(
        "Remove the rule {} to {}",
        r.event_label.to_lowercase(),
        r.channel
    );
    let id = r.id.clone();
    view! {
        <tr data-route=r.id.clone()>
            <td data-label=col::CHANNEL>{r.channel.clone()}</td>
            <td data-label=col::EVENT>{r.event_label.clone()}</td>
            <td data-label=col::GROUP>{if r.group.is_empty() {
                view! { <span class="muted">"every group"</span> }.into_any()
            } else {
                view! { <span>{r.group.clone()}</span> }.into_any()
            }}</td>
            <td data-label=col::ACTIONS>
                <ActionForm action=remove_route attr:class="inline-form">
                    <input type="hidden" name="id" value=id />
                    <button type="submit" class="btn small" aria-label=label>"Remove"</button>
                </ActionForm>
            </td>
        </tr>
    }
}

/// A select with its label and its field's message.
#[component]
fn Choice(
    label: &'static str,
    name: &'static str,
    id: &'static str,
    options: Vec<(String, String)>,
    #[prop(into)] err: Signal<Option<AppError>>,
) -> impl IntoView {
    let msg_id = format!("{name}-error");
    let invalid = move || err.get().and_then(|e| e.field_message(name)).is_some();
    view! {
        <div class="field" class:invalid=invalid>
            <label for=id>{label}</label>
            <select id=id name=name aria-describedby=msg_id>
                {options.into_iter().map(|(v, l)| view! { <option value=v>{l}</option> }).collect_view()}
            </select>
            <FieldMsg err field=name.to_owned() />
        </div>
    }
}

#[component]
fn AddChannelForm(
    create: ServerAction<CreateNotifyChannel>,
    err: Signal<Option<AppError>>,
) -> impl IntoView {
    let kinds = ChannelKind::ALL
        .iter()
        .map(|k| (k.as_str().to_owned(), k.label().to_owned()))
        .collect::<Vec<_>>();
    let security = SMTP_SECURITY
        .iter()
        .map(|(v, l)| ((*v).to_owned(), (*l).to_owned()))
        .collect::<Vec<_>>();
    let to_msg = move || err.get().and_then(|e| e.field_message("email_to"));
    view! {
        <ActionForm action=create attr:class="form grid" attr:data-testid="add-channel">
            <Field label="Name" name="name" autocomplete="off" id_prefix="ch" err />
            <Choice label="Kind" name="kind" id="ch-kind" options=kinds err />
            <Field label="URL, or SMTP server host:port" name="target" autocomplete="off" id_prefix="ch"
                hint="Webhook, Slack, Teams: the URL to post to. E-mail: the SMTP server, e.g. mail.example.com:587." err />
            <Field label="Signing key or SMTP password" name="secret" kind="password" autocomplete="new-password" id_prefix="ch"
                hint="Webhook: leave empty to get one made (shown once). E-mail: leave empty if the server needs no password." err />
            <fieldset class="email-settings">
                <legend>"E-mail (SMTP) only"</legend>
                <Choice label="SMTP security" name="smtp_security" id="ch-smtp_security" options=security err />
                <Field label="SMTP user name" name="smtp_username" autocomplete="off" id_prefix="ch"
                    hint="Empty: the server accepts mail without signing in." err />
                <Field label="From" name="email_from" kind="email" autocomplete="off" id_prefix="ch"
                    hint="The sender address, e.g. portcullis@example.com." err />
                <div class="field" class:invalid=move || to_msg().is_some()>
                    <label for="ch-email_to">"To"</label>
                    <textarea id="ch-email_to" name="email_to" rows="3"
                        aria-describedby="ch-email_to-hint ch-email_to-error"
                        aria-invalid=move || to_msg().is_some().then_some("true")></textarea>
                    <p class="hint" id="ch-email_to-hint">"Who gets the events routed to this channel: one address a line, or separated by commas. Users' own messages go to their own addresses."</p>
                    <p class="field-error" id="ch-email_to-error" aria-live="polite">{to_msg}</p>
                </div>
            </fieldset>
            <div class="actions"><button type="submit" class="btn primary">"Add channel"</button></div>
        </ActionForm>
    }
}

#[component]
fn AddRouteForm(
    channels: Vec<(String, String)>,
    add_route: ServerAction<AddNotifyRoute>,
) -> impl IntoView {
    let err = action_error(add_route);
    let events = NotifyEvent::ROUTABLE
        .iter()
        .map(|e| (e.as_str().to_owned(), e.label().to_owned()))
        .collect::<Vec<_>>();
    let group_msg = move || err.get().and_then(|e| e.field_message("group"));
    view! {
        <ActionForm action=add_route attr:class="form grid" attr:data-testid="add-route">
            <Choice label="Channel" name="channel" id="rt-channel" options=channels err />
            <Choice label="Event" name="event" id="rt-event" options=events err />
            <div class="field" class:invalid=move || group_msg().is_some()>
                <label for="rt-group">"VM group"</label>
                <input id="rt-group" type="text" name="group" placeholder="every group" autocomplete="off"
                    aria-describedby="rt-group-hint rt-group-error"
                    aria-invalid=move || group_msg().is_some().then_some("true") />
                <p class="hint" id="rt-group-hint">"Empty or * : every group."</p>
                <p class="field-error" id="rt-group-error" aria-live="polite">{group_msg}</p>
            </div>
            <div class="actions"><button type="submit" class="btn primary">"Add rule"</button></div>
        </ActionForm>
    }
}

#[component]
fn MessagesTable(messages: Vec<MessageRow>, personal: bool) -> impl IntoView {
    if messages.is_empty() {
        return view! { <p class="muted">"None lately."</p> }.into_any();
    }
    view! {
        <table class="table messages">
            <thead><tr>
                <th scope="col">{col::EVENT}</th><th scope="col">{col::SUBJECT}</th>
                {personal.then(|| view! { <th scope="col">{col::RECIPIENT}</th> })}
                <th scope="col">{col::STATUS}</th><th scope="col">{col::ATTEMPTS}</th><th scope="col">{col::LAST_ERROR}</th>
                <th scope="col">{col::QUEUED}</th><th scope="col">{col::LAST_ATTEMPT}</th>
            </tr></thead>
            <tbody>
                {messages.into_iter().map(|m| {
                    let waiting = (m.status == "pending").then(|| view! {
                        <br /><span class="muted">"next try "<LocalTime ms=m.next_attempt_at /></span>
                    });
                    view! {
                        <tr data-message=m.id.clone()>
                            <td data-label=col::EVENT>{m.event_label.clone()}</td>
                            <td data-label=col::SUBJECT>{m.subject.clone()}</td>
                            {personal.then(|| view! { <td data-label=col::RECIPIENT>{m.recipient.clone()}</td> })}
                            <td data-label=col::STATUS><span class=format!("status {}", m.status)>{m.status.clone()}</span>{waiting}</td>
                            <td data-label=col::ATTEMPTS>{m.attempts}</td>
                            <td data-label=col::LAST_ERROR>{m.last_error.clone()}</td>
                            <td data-label=col::QUEUED><LocalTime ms=m.created_at /></td>
                            <td data-label=col::LAST_ATTEMPT>{match m.last_attempt_at {
                                Some(ms) => view! { <LocalTime ms /> }.into_any(),
                                None => view! { <span class="muted">"—"</span> }.into_any(),
                            }}</td>
                        </tr>
                    }
                }).collect_view()}
            </tbody>
        </table>
    }
    .into_any()
}

/// A user's own e-mail settings.
#[component]
pub fn AccountNotificationsPage() -> impl IntoView {
    let save = ServerAction::<SaveMyNotificationSettings>::new();
    let err = action_error(save);
    // Loaded once: after a save the form already holds what was saved, and reloading it
    // under the user's hands could undo what they type next.
    let data = Resource::new(|| (), |_| my_notification_settings());
    let body = move || {
        Suspend::new(async move {
            let s = match data.await {
                Ok(s) => s,
                Err(e) => {
                    return view! { <div class="alert error" role="alert">{e.summary()}</div> }
                        .into_any();
                }
            };
            let kept = s.done.clone();
            let said = move || {
                save.value()
                    .get()
                    .and_then(Result::ok)
                    .or_else(|| kept.clone())
                    .map(|d| view! { <div class="alert success" role="status" data-testid="settings-saved">{d.message}</div> })
            };
            let provider = (!s.provider_email.is_empty()).then(|| {
                view! { <p class="hint">{format!("Left empty, messages go to {}, the address your sign-in provider gives.", s.provider_email)}</p> }
            });
            view! {
                {said}
                <FormAlert err />
                <ActionForm action=save attr:class="form">
                    <Field label="E-mail address" name="email" kind="email" autocomplete="email" id_prefix="me"
                        value=s.email.clone() err />
                    {provider}
                    <div class="field checkbox">
                        <input id="me-notify" type="checkbox" name="notify" value="on" checked=s.notify />
                        <label for="me-notify">"E-mail me about my requests and approvals"</label>
                    </div>
                    <Field label="Minutes before my access ends to warn me" name="warn_minutes" kind="number"
                        id_prefix="me" value=s.warn_minutes.to_string()
                        hint="0 to 1440; 0: no warning." err />
                    <button type="submit" class="btn primary">"Save settings"</button>
                </ActionForm>
            }
            .into_any()
        })
    };
    view! {
        <Title text="My notifications" />
        <Shell>
            <h1>"My notifications"</h1>
            <section class="card narrow">
                <p>"Portcullis e-mails you when a request waits for your approval, when one of yours is decided or revoked, and shortly before your access ends, if an administrator has set up e-mail."</p>
                <Transition fallback=|| view! { <p>"Loading…"</p> }>{body}</Transition>
            </section>
        </Shell>
    }
}
