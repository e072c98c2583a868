//! Building blocks shared by pages: the portal layout, form fields that show their own
//! validation message, and alerts.

use crate::api::Logout;
use crate::app::UserResource;
use crate::error::AppError;
use leptos::prelude::*;

/// The layout of every signed-in page: header with product name, navigation and the
/// signed-in user, then the page content.
#[component]
pub fn Shell(children: Children) -> impl IntoView {
    let user = expect_context::<UserResource>();
    let logout = ServerAction::<Logout>::new();
    let user_view = move || {
        Suspend::new(async move {
            match user.await {
                Ok(Some(u)) => {
                    let admin = u.can_manage_users;
                    view! {
                        <nav class="nav" aria-label="Main">
                            <a href="/">"Overview"</a>
                            {admin.then(|| view! { <a href="/admin/users">"Users & roles"</a> })}
                        </nav>
                        <div class="user-box">
                            <span class="user-name" data-testid="signed-in-user">{u.display_name.clone()}" ("{u.username.clone()}")"</span>
                            <a href="/account/password" class="link">"Change password"</a>
                            <ActionForm action=logout attr:class="inline-form">
                                <button type="submit" class="btn small">"Sign out"</button>
                            </ActionForm>
                        </div>
                    }
                    .into_any()
                }
                _ => {
                    view! { <div class="user-box"><a href="/login">"Sign in"</a></div> }.into_any()
                }
            }
        })
    };
    view! {
        <a class="skip-link" href="#main">"Skip to content"</a>
        <header class="topbar">
            <a class="brand" href="/">
                <span class="brand-mark" aria-hidden="true">"▦"</span>
                " Portcullis"
            </a>
            <Transition fallback=|| ()>{user_view}</Transition>
        </header>
        <main id="main" class="content">{children()}</main>
    }
}

/// A labelled input whose validation message, if the last submission had one for this
/// field, is shown under it and announced to assistive technology.
#[component]
pub fn Field(
    label: &'static str,
    name: &'static str,
    #[prop(default = "text")] kind: &'static str,
    #[prop(optional)] autocomplete: &'static str,
    #[prop(optional)] hint: &'static str,
    #[prop(into)] err: Signal<Option<AppError>>,
) -> impl IntoView {
    let id = format!("f-{name}");
    let msg_id = format!("{id}-error");
    let msg = move || err.get().and_then(|e| e.field_message(name));
    view! {
        <div class="field" class:invalid=move || msg().is_some()>
            <label for=id.clone()>{label}</label>
            <input
                id=id.clone()
                type=kind
                name=name
                autocomplete=(!autocomplete.is_empty()).then_some(autocomplete)
                aria-invalid=move || msg().is_some().then_some("true")
                aria-describedby=msg_id.clone()
            />
            {(!hint.is_empty()).then(|| view! { <p class="hint">{hint}</p> })}
            <p class="field-error" id=msg_id aria-live="polite">{msg}</p>
        </div>
    }
}

/// A select whose options are (value, label) pairs.
#[component]
pub fn SelectField(
    label: &'static str,
    name: &'static str,
    options: &'static [(&'static str, &'static str)],
    #[prop(into)] err: Signal<Option<AppError>>,
    #[prop(optional)] id_suffix: String,
) -> impl IntoView {
    let id = format!("f-{name}{id_suffix}");
    let msg = move || err.get().and_then(|e| e.field_message(name));
    view! {
        <div class="field" class:invalid=move || msg().is_some()>
            <label for=id.clone()>{label}</label>
            <select id=id name=name>
                {options.iter().map(|(v, l)| view! { <option value=*v>{*l}</option> }).collect_view()}
            </select>
            <p class="field-error" aria-live="polite">{msg}</p>
        </div>
    }
}

/// The summary of the last submission's error, if any.
#[component]
pub fn FormAlert(#[prop(into)] err: Signal<Option<AppError>>) -> impl IntoView {
    move || {
        err.get().map(|e| {
            view! { <div class="alert error" role="alert">{e.to_string()}</div> }
        })
    }
}

/// Shorthand: the error of an action's last result.
pub fn action_error<I, O>(action: ServerAction<I>) -> Signal<Option<AppError>>
where
    I: leptos::server_fn::ServerFn<Output = O, Error = AppError> + Clone + Send + Sync + 'static,
    O: Clone + Send + Sync + 'static,
{
    Signal::derive(move || action.value().get().and_then(Result::err))
}
