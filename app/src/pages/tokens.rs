//! API tokens: create one (shown once), see when each was last used, revoke.

use crate::api::tokens::{CreateApiToken, RevokeApiToken, list_api_tokens};
use crate::components::{
    Confirm, CopyButton, Field, FormAlert, LastUsed, LocalTime, Shell, TableHead, action_error, col,
};
use crate::model::{TokenInfo, ask};
use leptos::prelude::*;
use leptos_meta::Title;

#[component]
pub fn TokensPage() -> impl IntoView {
    let create = ServerAction::<CreateApiToken>::new();
    let revoke = ServerAction::<RevokeApiToken>::new();
    let create_err = action_error(create);
    let revoke_err = action_error(revoke);
    // Shown once: a later revocation reloads the list without it.
    Effect::new(move |_| {
        if revoke.version().get() > 0 {
            create.value().set(None);
        }
    });
    let data = Resource::new(
        move || (create.version().get(), revoke.version().get()),
        |_| list_api_tokens(),
    );
    let body = move || {
        Suspend::new(async move {
            let page = match data.await {
                Ok(p) => p,
                Err(e) => {
                    return view! { <div class="alert error" role="alert">{e.summary()}</div> }
                        .into_any();
                }
            };
            // From the session after a plain form post, or from the hydrated action's answer.
            let answered = create
                .value()
                .get_untracked()
                .and_then(Result::ok)
                .map(|c| c.token);
            let fresh = page.new_token.or(answered).map(|t| {
                view! {
                    <div class="alert success" role="status" data-testid="new-token">
                        <p>"Your new API token. Copy it now: it is not shown again."</p>
                        <p class="token-line">
                            <code class="token">{t.clone()}</code>
                            <CopyButton text=t label="Copy token" />
                        </p>
                    </div>
                }
            });
            let rows = if page.tokens.is_empty() {
                view! { <p class="muted">"You have no API tokens."</p> }.into_any()
            } else {
                view! {
                    <table class="table" data-testid="tokens">
                        <TableHead cols=&[col::NAME, col::TOKEN, col::CREATED, col::EXPIRES, col::LAST_USED, col::STATUS, col::ACTIONS] />
                        <tbody>
                            {page.tokens.into_iter().map(|t| view! { <TokenRow t revoke /> }).collect_view()}
                        </tbody>
                    </table>
                }
                .into_any()
            };
            view! { {fresh} {rows} }.into_any()
        })
    };
    view! {
        <Title text="API tokens" />
        <Shell>
            <h1>"API tokens"</h1>
            <p>
                "A token lets scripts and the " <code>"portcullis"</code> " command-line tool call the "
                <a href="/api/v1/reference">"REST API"</a>
                " as you, with your roles as they are at each call. Treat it like a password."
            </p>
            <section class="card narrow">
                <h2>"Create a token"</h2>
                <FormAlert err=create_err />
                <ActionForm action=create attr:class="form">
                    <Field label="Name" name="name" hint="What uses it, e.g. deploy script." err=create_err />
                    <Field label="Expires after (days)" name="expires_days" hint="1 to 365; empty means 30." err=create_err />
                    <button type="submit" class="btn primary">"Create token"</button>
                </ActionForm>
            </section>
            <section class="card">
                <h2>"Your tokens"</h2>
                <FormAlert err=revoke_err />
                <Transition fallback=|| view! { <p>"Loading…"</p> }>{body}</Transition>
            </section>
        </Shell>
    }
}

#[component]
fn TokenRow(t: TokenInfo, revoke: ServerAction<RevokeApiToken>) -> impl IntoView {
    let now = crate::components::now_ms();
    let status = if t.revoked_at.is_some() {
        "revoked"
    } else if t.expires_at <= now {
        "expired"
    } else {
        "active"
    };
    let id = t.id.clone();
    let question = ask::revoke_token(&t.name, &t.prefix, None);
    let href = ask::href(ask::TOKEN, &t.id, "mine");
    let (confirm_id, label) = (
        format!("token-{}", t.id),
        format!("Revoke API token {}", t.name),
    );
    view! {
        <tr data-token=t.id.clone()>
            <td data-label=col::NAME>{t.name.clone()}</td>
            <td data-label=col::TOKEN><code>{format!("{}…", t.prefix)}</code></td>
            <td data-label=col::CREATED><LocalTime ms=t.created_at /></td>
            <td data-label=col::EXPIRES><LocalTime ms=t.expires_at /></td>
            <td data-label=col::LAST_USED><LastUsed ms=t.last_used_at /></td>
            <td data-label=col::STATUS><span class=format!("status {status}")>{status}</span></td>
            <td data-label=col::ACTIONS>
                // An expired token can be revoked too: it keeps its name taken until then.
                {(status != "revoked").then(|| view! {
                    <Confirm id=confirm_id label="Revoke" class="btn small" aria_label=label href question pending=revoke.pending()>
                        <ActionForm action=revoke attr:class="inline-form">
                            <input type="hidden" name="id" value=id />
                            <button type="submit" class="btn danger">"Revoke token"</button>
                        </ActionForm>
                    </Confirm>
                })}
            </td>
        </tr>
    }
}
