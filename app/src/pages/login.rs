use crate::api::Login;
use crate::components::{Field, FormAlert, action_error};
use leptos::prelude::*;
use leptos_meta::Title;

#[component]
pub fn LoginPage() -> impl IntoView {
    let action = ServerAction::<Login>::new();
    let err = action_error(action);
    view! {
        <Title text="Sign in" />
        <main id="main" class="auth-page">
            <div class="card auth-card">
                <p class="brand big"><span class="brand-mark" aria-hidden="true">"▦"</span>" Portcullis"</p>
                <h1>"Sign in"</h1>
                <FormAlert err />
                <ActionForm action attr:class="form">
                    <Field label="User name" name="username" autocomplete="username" err />
                    <Field label="Password" name="password" kind="password" autocomplete="current-password" err />
                    <button type="submit" class="btn primary">"Sign in"</button>
                </ActionForm>
            </div>
        </main>
    }
}
