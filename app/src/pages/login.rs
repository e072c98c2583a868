use crate::api::sso::load_sign_in_options;
use crate::api::{Login, encode_query_value, return_path};
use crate::components::{Field, FormAlert, action_error};
use leptos::prelude::*;
use leptos_meta::Title;

#[component]
pub fn LoginPage() -> impl IntoView {
    let action = ServerAction::<Login>::new();
    let err = action_error(action);
    let options = Resource::new(|| (), |_| load_sign_in_options());
    // Where the visitor was going when they were sent here; the server checks it.
    let query = leptos_router::hooks::use_query_map();
    let next = move || query.read().get("next").unwrap_or_default();
    // A provider's button carries `next` too (the server checks it again), so single
    // sign-on comes back to the same page as a password sign-in.
    let start_url = move |provider: &str| match return_path(&next()) {
        Some(path) => format!(
            "/auth/oidc/{provider}/start?next={}",
            encode_query_value(path)
        ),
        None => format!("/auth/oidc/{provider}/start"),
    };
    let body = move || {
        Suspend::new(async move {
            // Without the options (a failed call) the password form is still the safe offer:
            // the server refuses it if it is switched off.
            let options = options
                .await
                .unwrap_or_else(|_| crate::model::SignInOptions {
                    local_accounts: true,
                    providers: Vec::new(),
                });
            let both = options.local_accounts && !options.providers.is_empty();
            let providers = (!options.providers.is_empty()).then(|| {
                view! {
                    <div class="sso-buttons">
                        {options.providers.into_iter().map(|p| {
                            let label = format!("Sign in with {}", p.name);
                            let id = p.id;
                            view! {
                            // rel=external: a full page load, so the browser follows the
                            // server's redirect to the provider instead of the client router.
                            <a class="btn primary sso" rel="external" href=move || start_url(&id)>
                                {label}
                            </a>
                        }}).collect_view()}
                    </div>
                }
            });
            let submit_class = if both { "btn" } else { "btn primary" };
            let form = options.local_accounts.then(|| {
                view! {
                    <FormAlert err />
                    <ActionForm action attr:class="form">
                        <input type="hidden" name="next" value=next />
                        <Field label="User name" name="username" autocomplete="username" err />
                        <Field label="Password" name="password" kind="password" autocomplete="current-password" err />
                        <button type="submit" class=submit_class>"Sign in"</button>
                    </ActionForm>
                }
            });
            view! {
                {providers}
                {both.then(|| view! { <p class="muted or">"or with a local account"</p> })}
                {form}
            }
        })
    };
    view! {
        <Title text="Sign in" />
        <main id="main" class="auth-page">
            <div class="card auth-card">
                <p class="brand big"><span class="brand-mark" aria-hidden="true">"▦"</span>" Portcullis"</p>
                <h1>"Sign in"</h1>
                <Suspense fallback=|| view! { <p>"Loading…"</p> }>{body}</Suspense>
            </div>
        </main>
    }
}
