//! The question asked before an action that cannot be undone, as a page of its own: what
//! a browser without JavaScript gets from the trigger of a [`crate::components::Confirm`].
//! It names the object as loaded on the server, offers the action's form only to those the
//! services would let do it, and never acts on GET: the action is the form's POST.

use crate::api::confirm::load_confirm;
use crate::api::jit::{DecideRequest, DeleteVm, RemovePolicy, RevokeRequest};
use crate::api::notify::DeleteNotifyChannel;
use crate::api::tokens::RevokeApiToken;
use crate::api::{RemoveRole, flash};
use crate::components::{FormAlert, Shell, action_error};
use crate::error::AppError;
use crate::model::ask;
use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::hooks::use_query_map;

#[component]
pub fn ConfirmPage() -> impl IntoView {
    let query = use_query_map();
    let param = move |k: &str| query.with(|q| q.get(k).unwrap_or_default());
    let key = move || (param("what"), param("id"), param("from"));
    let info = Resource::new(
        move || (param("what"), param("id")),
        |(what, id)| load_confirm(what, id),
    );
    let delete_vm = ServerAction::<DeleteVm>::new();
    let remove_policy = ServerAction::<RemovePolicy>::new();
    let revoke = ServerAction::<RevokeRequest>::new();
    let deny = ServerAction::<DecideRequest>::new();
    let remove_role = ServerAction::<RemoveRole>::new();
    let revoke_token = ServerAction::<RevokeApiToken>::new();
    let remove_channel = ServerAction::<DeleteNotifyChannel>::new();
    let errors = [
        action_error(delete_vm),
        action_error(remove_policy),
        action_error(revoke),
        action_error(deny),
        action_error(remove_role),
        action_error(revoke_token),
        action_error(remove_channel),
    ];
    let err = Signal::derive(move || errors.iter().find_map(|e| e.get()));

    let body = move || {
        let (what, id, from) = key();
        let back = flash::local_path(&ask::back(&what, &id, &from)).unwrap_or_else(|| "/".into());
        Suspend::new(async move {
            let i = match info.await {
                Ok(i) => i,
                Err(e) => {
                    #[cfg(feature = "ssr")]
                    if matches!(e, AppError::NotFound(_))
                        && let Some(res) = use_context::<leptos_axum::ResponseOptions>()
                    {
                        res.set_status(http::StatusCode::NOT_FOUND);
                    }
                    let heading = if matches!(e, AppError::NotFound(_)) {
                        "Not found"
                    } else {
                        "Not possible"
                    };
                    return view! {
                        <div class="confirm-page">
                            <h1>{heading}</h1>
                            <div class="alert error" role="alert" data-testid="confirm-error">
                                {match e {
                                    AppError::NotFound(_) => format!("{} It may have been removed already.", e.summary()),
                                    e => e.summary(),
                                }}
                            </div>
                            <p><a href=back>"Back"</a></p>
                        </div>
                    }
                    .into_any();
                }
            };
            let form = i.refusal.is_none().then(|| {
                let id = id.clone();
                match what.as_str() {
                    ask::VM => view! {
                        <ActionForm action=delete_vm attr:class="inline-form">
                            <input type="hidden" name="id" value=id />
                            <button type="submit" class="btn danger">"Remove VM"</button>
                        </ActionForm>
                    }.into_any(),
                    ask::POLICY => view! {
                        <ActionForm action=remove_policy attr:class="inline-form">
                            <input type="hidden" name="vm_id" value=id />
                            <button type="submit" class="btn danger">"Remove JIT policy"</button>
                        </ActionForm>
                    }.into_any(),
                    ask::REVOKE => view! {
                        <ActionForm action=revoke attr:class="inline-form">
                            <input type="hidden" name="id" value=id />
                            <button type="submit" class="btn danger">"Revoke"</button>
                        </ActionForm>
                    }.into_any(),
                    ask::DENY => view! {
                        <ActionForm action=deny attr:class="form compact">
                            <input type="hidden" name="id" value=id />
                            <input type="hidden" name="decision" value="deny" />
                            <div class="field">
                                <label for="confirm-deny-comment">"Reason for denial"</label>
                                <input id="confirm-deny-comment" type="text" name="comment" autocomplete="off" />
                            </div>
                            <button type="submit" class="btn danger">"Deny"</button>
                        </ActionForm>
                    }.into_any(),
                    ask::ROLE => view! {
                        <ActionForm action=remove_role attr:class="inline-form">
                            <input type="hidden" name="assignment_id" value=id />
                            <button type="submit" class="btn danger">"Remove role"</button>
                        </ActionForm>
                    }.into_any(),
                    ask::CHANNEL => view! {
                        <ActionForm action=remove_channel attr:class="inline-form">
                            <input type="hidden" name="id" value=id />
                            <button type="submit" class="btn danger">"Remove channel"</button>
                        </ActionForm>
                    }.into_any(),
                    _ => view! {
                        <ActionForm action=revoke_token attr:class="inline-form">
                            <input type="hidden" name="id" value=id />
                            <button type="submit" class="btn danger">"Revoke token"</button>
                        </ActionForm>
                    }.into_any(),
                }
            });
            let refused = i.refusal.clone().map(|why| {
                view! { <div class="alert error" role="alert" data-testid="confirm-refused">{why}</div> }
            });
            view! {
                <div class="confirm-page">
                    <Title text=i.question.clone() />
                    <h1>{i.question.clone()}</h1>
                    <section class="card narrow">
                        <p data-testid="confirm-detail">{i.detail.clone()}</p>
                        <FormAlert err />
                        {refused}
                        <div class="dialog-actions">
                            <a class="btn" href=back>"Cancel"</a>
                            {form}
                        </div>
                    </section>
                </div>
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
